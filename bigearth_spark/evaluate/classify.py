"""Evaluation of a checkpoint on a split of the pinned table version: multi-label metrics,
retrieval against an archive split, a ``metrics`` Delta table and an HTML report."""

from __future__ import annotations

import argparse
import json
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context, set_start_method
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from tqdm import tqdm

from bigearth_spark.archive.labels import NOMENCLATURES
from bigearth_spark.config import load_config, normalize_lake
from bigearth_spark.evaluate.report import write_report
from bigearth_spark.evaluate.retrieve import retrieval_metrics
from bigearth_spark.spark import build_spark
from bigearth_spark.tables.schema import METRICS, METRICS_SCHEMA, T
from bigearth_spark.tables.write import table_path
from bigearth_spark.train import checkpoint
from bigearth_spark.train.data import DataSpec, PatchLoader
from bigearth_spark.train.device_decode import default_decode
from bigearth_spark.train.epoch_check import verify_epoch
from bigearth_spark.train.metrics import multilabel_metrics
from bigearth_spark.train.models import build_model, embed

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Targets, scores and embeddings of one split."""

    ids: list[str]
    y: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    skipped: list[str]  # rows of the split without an S1 partner (S1 modalities only)


def predict(model: torch.nn.Module, loader: PatchLoader, desc: str) -> Predictions:
    """Run the model over a whole split (one process, on CPU: batches decoded by the loader's
    decode path); verify that every row of the split was either scored or skipped for a missing
    S1 partner, exactly once."""
    model.eval()
    ids, ys, ps, es, skipped = [], [], [], [], []
    with torch.no_grad():
        for batch in tqdm(loader.to_device("cpu", 0, skipped), desc=desc, unit="batch"):
            ps.append(torch.sigmoid(model(batch.x)).numpy())
            es.append(embed(model, batch.x).numpy())
            ys.append(batch.y.numpy())
            ids += batch.ids
    verify_epoch([ids], loader.rows_in_split, [skipped])
    if skipped:
        log.warning(
            "%s: %d rows have no S1 partner and were not scored (modality %s)",
            desc,
            len(skipped),
            loader.spec.modality,
        )
    return Predictions(ids, np.concatenate(ys), np.concatenate(ps), np.concatenate(es), skipped)


def frequency_baseline(train_y: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Metrics of predicting, for every patch, the m most frequent training labels (m = mean
    labels per training patch, rounded): the label-frequency baseline."""
    freq = train_y.mean(axis=0)
    m = max(1, round(float(train_y.sum(axis=1).mean())))
    scores = np.zeros_like(y, dtype=np.float64)
    scores[:, np.argsort(-freq)[:m]] = 1.0
    return multilabel_metrics(y, scores)


def split_loader(lake: str, ckpt: dict[str, Any], split: str, workers: int | None) -> PatchLoader:
    """A reader of ``split`` at the checkpoint's table version, with its training settings (the
    decode path a run configured, else the CPU's default: this process scores on CPU)."""
    cfg = ckpt["config"]
    spec = DataSpec(
        lake,
        split,
        cfg["modality"],
        cfg["nomenclature"],
        ckpt["state"].table_version,
        64,
        cfg["resampling"],
        False,
        cfg["stats"],
        cfg.get("workers", 2) if workers is None else workers,
        cfg.get("prefetch", 2),
        cfg.get("decode") or default_decode(cuda=False),
        cfg.get("reader", "default"),
    )
    return PatchLoader(spec)


def _retrieval(
    test: Predictions, archive: Predictions, same_set: bool, ks: tuple[int, ...]
) -> dict[str, float]:
    """Retrieval of the test embeddings in the archive's (k capped by the archive's size), and
    the label-frequency baseline's micro F1."""
    size = len(archive.ids) - same_set
    usable = tuple(k for k in ks if k <= size) or (size,)
    result = retrieval_metrics(
        test.embeddings, test.y, archive.embeddings, archive.y, ks=usable, same_set=same_set
    )
    result["baseline_micro_f1"] = float(frequency_baseline(archive.y, test.y)["micro_f1"])
    return result


def _metric_rows(
    key: tuple, result: dict[str, Any], per_class: list[dict], classes: Sequence[str]
) -> list[tuple]:
    """Rows of the ``metrics`` table: ``key`` (run, model, modality, version, split) + metric,
    class (None for overall metrics) and value."""
    rows = [(*key, k, None, v) for k, v in result.items()]
    for c in per_class:
        name = classes[c["class_index"]]
        rows += [
            (*key, k, name, float(c[k])) for k in ("precision", "recall", "f1", "ap", "support")
        ]
    return rows


@dataclass
class Evaluation:
    """A checkpoint's figures on a split and the rows they add to the ``metrics`` table."""

    result: dict[str, Any]
    rows: list[tuple]


def score_checkpoint(
    lake: str,
    ckpt_path: str | Path,
    split: str = "test",
    archive_split: str | None = "train",
    report_dir: str | Path | None = None,
    ks: tuple[int, ...] = (10, 20),
    workers: int | None = None,
) -> Evaluation:
    """Score a checkpoint on ``split`` (retrieval against ``archive_split``) and write the
    report, without Spark: :func:`append_metrics` records the rows.

    ``workers`` reader processes (default: the training run's setting), forked from this
    process: call it before this process starts a Spark session, or through
    :func:`evaluate_checkpoint`."""
    ckpt = checkpoint.load(Path(ckpt_path))
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint at {ckpt_path}")
    cfg, version = ckpt["config"], ckpt["state"].table_version
    classes = NOMENCLATURES[cfg["nomenclature"]]
    test_loader = split_loader(lake, ckpt, split, workers)
    model = build_model(cfg["model"], len(test_loader.spec.bands), len(classes))
    model.load_state_dict(ckpt["model"])
    test = predict(model, test_loader, split)
    metrics = multilabel_metrics(test.y, test.scores)
    result: dict[str, Any] = {k: float(v) for k, v in metrics.items() if np.isscalar(v)}
    if archive_split:
        archive = predict(model, split_loader(lake, ckpt, archive_split, workers), archive_split)
        result.update(_retrieval(test, archive, archive_split == split, ks))
    run_id = uuid.uuid4().hex[:12]
    key = (run_id, cfg["model"], cfg["modality"], version, split)
    rows = _metric_rows(key, result, metrics["per_class"], classes)
    if report_dir:
        counts = dict(zip(classes, test.y.sum(axis=0).astype(int).tolist(), strict=False))
        result["report"] = str(
            write_report(report_dir, metrics | result, test.y, test.scores, list(classes), counts)
        )
    result.update(
        {
            "run_id": run_id,
            "table_version": version,
            "split": split,
            "rows": len(test.ids),
            "rows_without_s1": len(test.skipped),
        }
    )
    return Evaluation(result, rows)


def append_metrics(spark: SparkSession, lake: str, rows: list[tuple]) -> None:
    """Append an evaluation's rows to the lake's ``metrics`` table, stamped with the time."""
    df = spark.createDataFrame(rows, T.StructType(METRICS_SCHEMA.fields[:-1]))
    df.withColumn("evaluated_at", F.current_timestamp()).write.format("delta").mode("append").save(
        table_path(lake, METRICS)
    )


def _scoring_process() -> None:
    """Set up a scoring process of :func:`evaluate_checkpoint`: log warnings like a script, and
    fork its readers, as any other process does (multiprocessing makes a process that a fork
    server started start its own children the same way)."""
    logging.basicConfig()
    set_start_method(None, force=True)


def evaluate_checkpoint(
    spark: SparkSession,
    lake: str,
    ckpt_path: str | Path,
    split: str = "test",
    archive_split: str | None = "train",
    report_dir: str | Path | None = None,
    ks: tuple[int, ...] = (10, 20),
    workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint (:func:`score_checkpoint`); append rows to the ``metrics`` table;
    write the report.

    The scoring runs in another process, which holds no Spark session: its readers are forked,
    and a process forked from one that holds ``spark``'s Py4J gateway shuts down the socket of
    py4j's finalizer thread, which they share (a fork drops every thread but the caller, and
    py4j closes a thread's connection when the thread's state goes): that thread's next command
    fails with ``ConnectionResetError``, which py4j logs with its traceback (INFO, root logger)
    before it reconnects. That process forks from multiprocessing's fork server, a fresh Python
    that imports this module once (~5 s at the first call, then ~0.06 s a call), so the calling
    script needs the usual ``if __name__ == "__main__":`` guard of multiprocessing."""
    context = get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(1, context, initializer=_scoring_process) as pool:
        evaluation = pool.submit(
            score_checkpoint, lake, ckpt_path, split, archive_split, report_dir, ks, workers
        ).result()
    append_metrics(spark, lake, evaluation.rows)
    return evaluation.result


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate a checkpoint, write the metrics table and the report, print a JSON line."""
    p = argparse.ArgumentParser(prog="jobs/evaluate.py", description=main.__doc__)
    p.add_argument("--lake", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--archive-split", default="train", help="retrieval archive ('' to skip)")
    p.add_argument("--report", help="report folder (PNG charts + index.html)")
    p.add_argument("--profile", default="local")
    p.add_argument("--workers", type=int, help="reader processes (default: the training run's)")
    args = p.parse_args(argv)
    cfg = load_config(args.profile, lake=args.lake)
    lake = normalize_lake(cfg.lake)
    # scored before Spark starts (see evaluate_checkpoint: forks and the Py4J gateway)
    evaluation = score_checkpoint(
        lake,
        args.checkpoint,
        args.split,
        args.archive_split or None,
        args.report,
        workers=args.workers,
    )
    append_metrics(
        build_spark("bigearth-evaluate", cfg.master, cfg.spark_conf), lake, evaluation.rows
    )
    result = evaluation.result
    if "baseline_micro_f1" in result:
        print(
            f"{args.split}: micro-F1 {result['micro_f1']:.3f} vs label-frequency baseline "
            f"{result['baseline_micro_f1']:.3f}; macro-AP {result['macro_ap']:.3f}"
        )
    print(json.dumps(result), flush=True)
    return 0
