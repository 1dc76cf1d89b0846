"""Real Horovod processes (gloo, CPU): horovodrun -np 2 and Horovod on Spark, resume, MLflow,
evaluation job with the metrics table and the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bigearth_spark.archive.labels import NOMENCLATURES
from bigearth_spark.evaluate.classify import Predictions, predict, split_loader
from bigearth_spark.evaluate.retrieve import retrieval_metrics
from bigearth_spark.tables import catalog, delta_log, schema
from bigearth_spark.tables.write import table_path
from bigearth_spark.train import checkpoint
from bigearth_spark.train.metrics import multilabel_metrics
from bigearth_spark.train.models import build_model
from bigearth_spark.train.shards import row_groups
from tests.conftest import REPO, VENV_BIN, copy_lake, run_cli

pytestmark = pytest.mark.slow
# Batches of 4: the 19 training rows make 3 steps on each rank in epochs 1 and 2 and 3 and 4 in
# epoch 3 (rank 0 joins early), so the runs step both evenly and unevenly.
ARGS = [
    "--model",
    "s-cnn",
    "--modality",
    "s1s2",
    "--batch-size",
    "4",
    "--lr",
    "0.002",
    "--warmup-epochs",
    "0.5",
    "--patience",
    "20",
]


def horovodrun(
    lake: str, out: Path, epochs: int, *extra: str, script: str = "jobs/train.py"
) -> dict:
    """``script`` (``jobs/train.py``'s flags) under ``horovodrun -np 2``; rank 0's result."""
    proc = run_cli(
        "horovodrun",
        "-np",
        "2",
        "-H",
        "localhost:2",
        str(VENV_BIN / "python"),
        script,
        "--lake",
        lake,
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--mlflow-uri",
        str(out.parent / "mlruns"),
        *ARGS,
        *extra,
    )
    lines = [line for line in proc.stdout.splitlines() if '"micro_f1"' in line]
    assert len(lines) == 1, proc.stdout[-3000:]
    return json.loads(lines[0].split(">:", 1)[-1] if lines[0].startswith("[") else lines[0])


def predictions(lake: str, ckpt_path: str | Path, split: str) -> Predictions:
    """The checkpoint's predictions on ``split``, computed here in one process."""
    ckpt = checkpoint.load(Path(ckpt_path))
    cfg = ckpt["config"]
    loader = split_loader(lake, ckpt, split, workers=0)
    classes = len(NOMENCLATURES[cfg["nomenclature"]])
    model = build_model(cfg["model"], len(loader.spec.bands), classes)
    model.load_state_dict(ckpt["model"])
    return predict(model, loader, split)


@pytest.fixture(scope="module")
def trained(v1_lake, tmp_path_factory):
    base = tmp_path_factory.mktemp("hvd")
    lake = copy_lake(v1_lake[0], base / "lake")  # the evaluation appends to its metrics table
    straight = horovodrun(lake, base / "straight", 3)
    first = horovodrun(lake, base / "resumed", 2)
    resumed = horovodrun(lake, base / "resumed", 3)
    return lake, base, straight, first, resumed


def test_two_ranks_train_identically_and_loss_falls(trained):
    lake, _, straight, _, _ = trained
    assert straight["world_size"] == 2 and straight["ranks_identical_weights"]
    # epochs whose step counts differ (which ones follows from where the lake's rows without an
    # S1 partner lie): compared on the steps both ranks took, then aligned by a broadcast
    assert straight["epochs_weights_broadcast"] == 2
    assert straight["train_loss"][-1] < straight["train_loss"][0]
    assert straight["table_version"] == delta_log.snapshot(table_path(lake, schema.PAIRS)).version
    # the ranks' gathered validation scores equal one process scoring the final weights
    val = predictions(lake, Path(straight["checkpoint"]).parent / checkpoint.LATEST, "validation")
    expected = multilabel_metrics(val.y, val.scores)
    for key in ("micro_f1", "macro_f1", "macro_ap", "micro_ap"):
        assert straight[key] == pytest.approx(expected[key], abs=1e-6), key


def test_a_rank_whose_weights_diverge_fails_the_check(v1_lake, tmp_path):
    """Rank 1 perturbs its averaged gradients (tests/train/diverging_rank.py): the comparison of
    the ranks' weights before any broadcast sees it."""
    lake, _ = v1_lake
    result = horovodrun(lake, tmp_path / "run", 1, script="tests/train/diverging_rank.py")
    # its one epoch is uneven: the ranks are compared on the steps both took
    assert result["epochs_weights_broadcast"] == 1
    assert result["ranks_identical_weights"] is False


def test_resumed_run_continues_exactly(trained):
    _, _, straight, first, resumed = trained
    assert first["epochs"] == 2 and resumed["epochs"] == 3
    assert resumed["train_loss"][:2] == first["train_loss"]
    assert resumed["weights_sha256"] == straight["weights_sha256"]


def test_mlflow_recorded_the_run(trained, tmp_path):
    """MLflow holds the run's parameters, its epochs' figures, its result and best model."""
    import mlflow

    _, base, straight, _, _ = trained
    client = mlflow.MlflowClient((base / "mlruns").as_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments, "tags.mlflow.runName = 'straight'")
    params, run_id = run.data.params, run.info.run_id
    assert (params["table_version"], params["world_size"], params["epochs"]) == (
        str(straight["table_version"]),
        "2",
        "3",
    )
    for key in ("micro_f1", "macro_f1", "macro_ap", "micro_ap"):  # the last epoch's
        assert run.data.metrics[key] == straight[key], key
    losses = sorted(client.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in losses] == list(enumerate(straight["train_loss"]))
    assert mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/result.json") == straight
    best = client.download_artifacts(run_id, "model/best.pt", str(tmp_path))
    assert Path(best).read_bytes() == Path(straight["checkpoint"]).read_bytes()


def test_evaluation_writes_metrics_table_and_report(spark, trained):
    lake, base, straight, _, _ = trained
    report = base / "report"
    proc = run_cli(
        "python",
        "jobs/evaluate.py",
        "--lake",
        lake,
        "--checkpoint",
        straight["checkpoint"],
        "--split",
        "test",
        "--report",
        str(report),
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["table_version"] == straight["table_version"]
    test_rows = (
        spark.read.format("delta")
        .option("versionAsOf", result["table_version"])
        .load(table_path(lake, schema.PAIRS))
        .where("split = 'test'")
    )
    without_s1 = test_rows.where("VV IS NULL").count()
    assert (result["rows"], result["rows_without_s1"]) == (
        test_rows.count() - without_s1,
        without_s1,
    )
    test, archive = (predictions(lake, straight["checkpoint"], s) for s in ("test", "train"))
    expected = multilabel_metrics(test.y, test.scores) | retrieval_metrics(
        test.embeddings, test.y, archive.embeddings, archive.y, ks=(10,)
    )
    for key in ("micro_f1", "macro_ap", "cosine_map_at_10", "hamming_precision_at_10"):
        assert result[key] == pytest.approx(expected[key], abs=1e-6), key
    assert "metrics" in catalog.register(spark, lake)  # bigearthnet.metrics, for SQL users
    metrics = spark.table("bigearthnet.metrics")
    rows = metrics.where(f"run_id = '{result['run_id']}'").collect()
    overall = {r["metric"]: r["value"] for r in rows if r["class"] is None}
    assert overall["micro_f1"] == pytest.approx(result["micro_f1"])
    assert len([r for r in rows if r["metric"] == "f1" and r["class"]]) == 19
    html = (report / "index.html").read_text()
    for png in ("per_class_f1.png", "label_frequency.png"):
        assert (report / png).stat().st_size > 0 and png in html


def on_spark(lake: str, out: Path, epochs: int, *extra: str) -> dict:
    """``jobs/train.py --launcher spark`` with 2 ranks in Spark's Python workers; its result."""
    proc = run_cli(
        "python",
        "jobs/train.py",
        "--launcher",
        "spark",
        "--num-proc",
        "2",
        "--lake",
        lake,
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--mlflow-uri",
        str(out.parent / "mlruns"),
        *ARGS,
        *extra,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_distributor(lake: str, out: Path, epochs: int, *extra: str) -> dict:
    """``jobs/train.py --launcher torch-distributor`` with 2 ranks (torch DDP's gloo on the
    driver, Spark's local mode); its result."""
    return on_spark(lake, out, epochs, "--launcher", "torch-distributor", *extra)


@pytest.mark.parametrize("reader", ["default", "petastorm"])
def test_every_launcher_and_reader_keeps_the_contract(trained, tmp_path, reader):
    """Both readers under horovodrun, Horovod on Spark and TorchDistributor, 2 ranks on CPU:
    each epoch read every row of the split exactly once (the run checks it and would stop with
    DataLossError), the ranks' weights agreed, their shares differ by at most one row (default)
    or one row group (Petastorm); the same seed gives the same weights bit for bit under every
    launcher, torch's all-reduce included (two ranks: a sum of two terms has one order)."""
    lake, _, _, first, _ = trained
    extra = ("--reader", reader)
    results = {
        "horovodrun": first if reader == "default" else horovodrun(lake, tmp_path / "h", 2, *extra),
        "horovod-on-spark": on_spark(lake, tmp_path / "s", 2, *extra),
        "torch-distributor": torch_distributor(lake, tmp_path / "t", 2, *extra),
    }
    pairs = delta_log.snapshot(table_path(lake, schema.PAIRS))
    group = max(g.rows for g in row_groups([f.path for f in pairs.where(split="train")]))
    for name, result in results.items():
        assert result["world_size"] == 2 and result["ranks_identical_weights"], name
        assert result["epochs"] == 2 and len(result["train_loss"]) == 2, name
        assert result["table_version"] == pairs.version, name
        assert result["rank_rows_spread"] <= (1 if reader == "default" else group), name
    assert len({r["weights_sha256"] for r in results.values()}) == 1
    assert len({tuple(r["train_loss"]) for r in results.values()}) == 1


def test_torch_distributor_runs_ranks_as_barrier_tasks_on_the_executors(trained, tmp_path):
    """With a cluster master (``local-cluster``: two executor processes) TorchDistributor runs
    the ranks on the executors, in their own working folders: the lake and the output given
    relative to the driver's folder are made absolute first."""
    lake, _, _, first, _ = trained
    relative = os.path.relpath(lake, REPO)
    out = os.path.relpath(tmp_path / "run", REPO)
    proc = run_cli(
        "python",
        "jobs/train.py",
        "--launcher",
        "torch-distributor",
        "--num-proc",
        "2",
        "--master",
        "local-cluster[2,1,1024]",
        "--lake",
        relative,
        "--out",
        out,
        "--epochs",
        "1",
        "--mlflow-uri",
        os.path.relpath(tmp_path / "mlruns", REPO),
        *ARGS,
    )
    assert "Started distributed training with 2 executor processes" in proc.stderr + proc.stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["world_size"] == 2 and result["ranks_identical_weights"]
    assert result["table_version"] == first["table_version"] and result["epochs"] == 1
    assert (tmp_path / "run" / checkpoint.LATEST).is_file()
