"""A 2×2 experiment grid on the synthetic lake with tiny epochs: every cell trains and is
evaluated, a re-run skips finished cells and runs failed ones again, the report holds ours
beside the published figures."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from pyspark.sql import functions as F

from bigearth_spark.archive.bands import MODALITIES
from bigearth_spark.archive.labels import NAMES_19
from bigearth_spark.experiments.grid import ERROR, RESULT, Grid, cell_dir, run_grid
from bigearth_spark.experiments.report import NOT_PUBLISHED, write_report
from bigearth_spark.tables.write import table_path
from bigearth_spark.train.models import build_model
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
RUN_KEYS = {"run_id", "table_version", "split", "rows", "rows_without_s1"}  # not figures
PER_CLASS = ("precision", "recall", "f1", "ap", "support")
PNG = b"\x89PNG\r\n\x1a\n"


def grid_file(tmp_path, start):
    cells = [
        {"name": f"{m}-{mod}", "model": m, "modality": mod}
        for m in ("s-cnn", "k-branch")
        for mod in ("s2-rgb", "s1s2")
    ]
    cells[0]["published"] = {"micro_f1": 0.5}
    cells[3]["init"] = str(start)  # fine-tunes from a checkpoint that does not exist yet
    cells.append(
        {
            "name": "unavailable",
            "model": None,
            "note": "not in the zoo",
            "published": {"micro_f1": 0.4},
        }
    )
    doc = {
        "name": "tiny",
        "title": "A tiny grid",
        "source": "a test",
        "split": "test",
        "metrics": ["micro_f1", "macro_ap"],
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "workers": 0,
            "augment": False,
            "mlflow_uri": str(tmp_path / "mlruns"),
        },
        "cells": cells,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Grid.load(path)


def test_grid_runs_resumes_and_reports(spark, v1_lake_copy, tmp_path):
    lake = v1_lake_copy  # the evaluations append to its metrics table
    start = tmp_path / "start.pt"
    grid = grid_file(tmp_path, start)
    out = tmp_path / "runs"
    status = run_grid(spark, grid, lake, out, archive_split=None)
    assert status == {
        "s-cnn-s2-rgb": "done",
        "s-cnn-s1s2": "done",
        "k-branch-s2-rgb": "done",
        "k-branch-s1s2": "failed",
        "unavailable": "not runnable",
    }
    failed = cell_dir(out, grid, grid.cells[3])
    assert "no checkpoint or state dict" in (failed / ERROR).read_text()
    assert "| failed (see error.txt) |" in write_report(grid, out)[0]
    # the failed cell's start (a state dict) now exists: the next run trains it and skips the
    # finished ones
    torch.save(build_model("k-branch", len(MODALITIES["s1s2"]), 19).state_dict(), start)
    stamps = {c.name: (cell_dir(out, grid, c) / RESULT).stat().st_mtime_ns for c in grid.cells[:3]}
    status = run_grid(spark, grid, lake, out, archive_split=None)
    assert status == {
        "s-cnn-s2-rgb": "skipped",
        "s-cnn-s1s2": "skipped",
        "k-branch-s2-rgb": "skipped",
        "k-branch-s1s2": "done",
        "unavailable": "not runnable",
    }
    assert not (failed / ERROR).exists()
    assert stamps == {
        c.name: (cell_dir(out, grid, c) / RESULT).stat().st_mtime_ns for c in grid.cells[:3]
    }
    results = {
        c.name: json.loads((cell_dir(out, grid, c) / RESULT).read_text()) for c in grid.cells[:4]
    }
    assert {r["config"]["modality"] for r in results.values()} == {"s2-rgb", "s1s2"}
    # the metrics table holds the four evaluations, each run's figures as its result says
    metrics = spark.read.format("delta").load(table_path(lake, "metrics")).collect()
    assert {r.run_id for r in metrics} == {r["metrics"]["run_id"] for r in results.values()}
    for result in results.values():
        figures, cfg = result["metrics"], result["config"]
        rows = [r for r in metrics if r.run_id == figures["run_id"]]
        overall = {k: v for k, v in figures.items() if k not in RUN_KEYS}
        assert {r.metric: r.value for r in rows if r["class"] is None} == overall
        per_class = [(r.metric, r["class"]) for r in rows if r["class"] is not None]
        assert sorted(per_class) == sorted((m, c) for m in PER_CLASS for c in NAMES_19)
        assert {(r.model, r.modality, r.table_version, r.split) for r in rows} == {
            (cfg["model"], cfg["modality"], figures["table_version"], "test")
        }

    text, page = write_report(grid, out)
    ours = results["s-cnn-s2-rgb"]["metrics"]["micro_f1"]
    row = next(line for line in text.splitlines() if line.startswith("| s-cnn-s2-rgb "))
    assert f"{ours:.4f} | 0.5000 | {ours - 0.5:+.4f}" in row
    assert NOT_PUBLISHED in next(line for line in text.splitlines() if "| k-branch-s1s2 " in line)
    assert "not in the zoo" in text and "0.4000" in text
    assert page.is_file() and (page.parent / "report.png").read_bytes()[:8] == PNG
    assert "A tiny grid" in page.read_text()


def test_experiment_run_prints_no_traceback(spark, v1_lake_copy, tmp_path):
    """`experiment run` holds a Spark session while each cell is evaluated by forked reader
    processes (workers: 2): a reader forked from a process with a Py4J gateway shut down the
    gateway's socket of py4j's finalizer thread, and py4j logged the resulting
    ConnectionResetError with its traceback. A successful run prints none."""
    lake = v1_lake_copy  # the evaluation appends to its metrics table
    doc = {
        "name": "quiet",
        "title": "One cell",
        "source": "a test",
        "split": "test",
        "metrics": ["micro_f1"],
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "workers": 2,
            "augment": False,
            "mlflow_uri": str(tmp_path / "mlruns"),
        },
        "cells": [{"name": "s-cnn", "model": "s-cnn", "modality": "s2-rgb"}],
    }
    path = tmp_path / "quiet.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "runs"
    proc = run_cli(
        "bigearth-spark", "experiment", "run", str(path), "--lake", lake, "--out", str(out)
    )
    for noise in ("Traceback", "Py4JNetworkError", "ConnectionResetError"):
        assert noise not in proc.stderr, proc.stderr
    result = json.loads((out / "quiet" / "s-cnn" / RESULT).read_text())["metrics"]
    pairs = spark.read.format("delta").load(table_path(lake, "pairs"))
    assert result["rows"] == pairs.where("split = 'test'").count()
    metrics = spark.read.format("delta").load(table_path(lake, "metrics"))
    per_class = metrics.where(F.col("run_id") == result["run_id"]).where("class IS NOT NULL")
    assert per_class.count() == 5 * 19  # precision, recall, f1, ap, support of each class
