"""The benchmarks at a tiny size (20 pairs, one round): each runs, prints its figures as
``name=value`` lines, and the decode-only baseline returns no band byte to the JVM; the GPU
training benchmark runs its CPU smoke test."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks.loader import geotiff_batches, geotiff_samples, training_spec
from bigearth_spark.etl.plan import task_count
from bigearth_spark.train.data import PatchLoader
from bigearth_spark.train.loop import TrainConfig
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

PAIRS = 20


def printed(stdout: str) -> dict[str, str]:
    """Every ``name=value`` of the output (several may share a line)."""
    return dict(re.findall(r"(?:^|\s)([a-z0-9_]+)=(\S+)", stdout, re.MULTILINE))


def assert_positive(figures: dict[str, str], names: list[str]) -> None:
    """Each of the figures ``names`` is a positive number."""
    values = {name: float(figures[name]) for name in names}
    assert {n: v for n, v in values.items() if not v > 0} == {}


def manifest(out: Path) -> dict:
    """The manifest of the benchmarks' archive below ``out``."""
    return json.loads((out / f"archive_v1_{PAIRS}" / "synth_manifest.json").read_text())


def train_rows(out: Path) -> int:
    """Rows of the training split (every pair of the archive has its S1 partner)."""
    return sum(p["split"] == "train" for p in manifest(out)["patches"].values())


@pytest.fixture(scope="module")
def ingest_bench(tmp_path_factory) -> tuple[Path, str]:
    """One run of benchmarks/ingest.py at 20 pairs, 1 round: (its --out folder, its output)."""
    out = tmp_path_factory.mktemp("bench")
    args = ("--pairs", str(PAIRS), "--rounds", "1", "--out", str(out))
    return out, run_cli("python", "benchmarks/ingest.py", *args).stdout


def test_ingest_benchmark_prints_its_ratios(ingest_bench):
    _, stdout = ingest_bench
    figures = printed(stdout)
    assert_positive(
        figures,
        [
            "cores",
            "peak_rss_mb",
            "lake_vs_raw",
            "per_core_vs_decode",
            "ratio_vs_decode_stage",
            "ratio_vs_decode",
            "ratio_vs_rasterio",
        ],
    )
    # growth needs two sizes
    assert "cost_growth" not in figures and "decode_write_cost_growth" not in figures
    assert stdout.rstrip().splitlines()[-1].startswith("ratio_vs_rasterio=")


def test_decode_only_baseline_returns_counts_not_bands(ingest_bench):
    """The decode-only run decodes every patch as the ingest plans it (same tasks) and returns
    one row of counts per task to the JVM: 16 bytes each, no band byte."""
    out, stdout = ingest_bench
    medians = dict(re.findall(rf"^  {PAIRS} pairs: (\w+) = ([0-9.,]+)$", stdout, re.MULTILINE))
    archive = manifest(out)
    patches = len(archive["s2_patches"]) + len(archive["s1_patches"])
    tasks = task_count(PAIRS, int(float(medians["cores"])))
    assert float(medians["decode_patches"]) == patches == 2 * PAIRS
    assert float(medians["decode_rows_to_jvm"]) == tasks
    assert float(medians["decode_bytes_to_jvm"]) == 16 * tasks


def test_loader_benchmark_prints_its_ratios(ingest_bench):
    out, _ = ingest_bench  # its archive and lake
    args = ("--pairs", str(PAIRS), "--out", str(out), "--repeats", "1", "--epochs", "1")
    stdout = run_cli("python", "-m", "benchmarks.loader", *args, "--geotiff-samples", "8").stdout
    figures = printed(stdout)
    assert_positive(
        figures,
        [
            "one_worker_samples_per_s",
            "two_workers_samples_per_s",
            "pyarrow_rows_per_s",
            "geotiff_samples_per_s",
            "ratio_vs_pyarrow",
            "worker_scaling",
            "ratio_vs_geotiff",
            "device_samples_per_s",
        ],
    )
    # CPU times tick by 10 ms: a 20-pair epoch's worker may count 0 of them (no ratio then)
    for lake in ("", "_zstd"):  # the lake with uncompressed bands, and the default lake
        cpu_ratio = float(figures[f"worker_cpu_ratio{lake}"])
        assert cpu_ratio >= 0 or math.isnan(cpu_ratio)
    # S1+S2 per sample: native blocks (uint16 4×120², 6×60², float32 2×120²) + targets + the
    # transform code, against float32 12×120² + targets
    native, decoded = 4 * 120**2 * 2 + 6 * 60**2 * 2 + 2 * 120**2 * 4 + 19 * 4 + 8, 691276
    for runs in ("", "feed_"):
        assert float(figures[f"{runs}device_ipc_bytes_per_sample"]) == native
        assert float(figures[f"{runs}one_worker_ipc_bytes_per_sample"]) == decoded
    for lake in ("", "_zstd"):
        ratio = float(figures[f"ipc_bytes_ratio{lake}"])
        assert ratio == pytest.approx(native / decoded, abs=5e-5)
    assert (out / f"lake_{PAIRS}_bands_none" / "pairs" / "_delta_log").is_dir()
    rows = train_rows(out)
    balance = math.ceil(rows / 4) / (rows / 4)
    assert float(figures["shard_balance"]) == pytest.approx(balance, abs=5e-4)
    cfg = TrainConfig()  # the training configuration it reads with
    assert f"batch {cfg.batch_size}, {cfg.resampling}, stats {cfg.stats}, augment True" in stdout
    assert stdout.rstrip().splitlines()[-1].startswith("ratio_vs_geotiff=")


def test_geotiff_baseline_delivers_the_readers_batches(ingest_bench):
    """The per-sample GeoTIFF dataset does the reader's work: the same inputs (decoded,
    resampled, normalised, augmented as in training) and targets, batch by batch."""
    out, _ = ingest_bench
    rows = train_rows(out)
    spec = training_spec(out / f"lake_{PAIRS}", None, 3)  # batches of 3 rows
    files, targets = geotiff_samples(spec, out / f"archive_v1_{PAIRS}", rows)
    reader = PatchLoader(replace(spec, workers=0)).epoch(0)
    sizes = []
    for batch, (x, y) in zip(reader, geotiff_batches(spec, files, targets), strict=True):
        assert torch.equal(x, batch.x) and torch.equal(y, batch.y)
        sizes.append(len(x))
    assert sizes == [3] * (rows // 3) + [rows % 3] * (rows % 3 > 0)


def test_gpu_train_benchmark_runs_its_cpu_smoke_test(ingest_bench):
    """Without CUDA: S-CNN at batch 4, fed by both decode paths; each run's figures, the bytes
    each path copies to the device per sample, and ``reader_vs_synthetic=`` last."""
    out, _ = ingest_bench
    lake = str(out / f"lake_{PAIRS}")
    stdout = run_cli("python", "-m", "benchmarks.gpu_train", "--lake", lake).stdout
    runs = {
        decode: printed(line)
        for line in stdout.splitlines()
        for decode in ("device", "worker")
        if line.startswith(f"s-cnn batch 4 decode {decode}:")
    }
    assert runs.keys() == {"device", "worker"}
    for figures in runs.values():
        assert_positive(figures, ["samples_per_s", "vs_synthetic", "cpu_ms_per_batch", "fill_s"])
        assert figures["gpu_util_pct"] == "nan"
    native = 4 * 120**2 * 2 + 6 * 60**2 * 2 + 2 * 120**2 * 4 + 19 * 4 + 8
    assert float(runs["device"]["bytes_to_device_per_sample"]) == native
    assert float(runs["worker"]["bytes_to_device_per_sample"]) == 12 * 120**2 * 4 + 19 * 4
    last = stdout.rstrip().splitlines()[-1]
    assert last == f"reader_vs_synthetic={float(runs['device']['vs_synthetic']):.3f}"


def test_object_store_benchmark_prints_its_figures(ingest_bench):
    """At 20 pairs, one round: every figure, the three goals last; the ingest from the store
    makes one GET per file (v1 pair: 13 + 3 files, the S1 JSON read once; no HEAD before a GET:
    see test_object_store_ingest), listings amortised."""
    out, _ = ingest_bench  # its archive
    args = ("--pairs", str(PAIRS), "--rounds", "1", "--out", str(out))
    stdout = run_cli("python", "-m", "benchmarks.object_store", *args).stdout
    figures = printed(stdout)
    assert_positive(figures, ["s3_vs_local", "latency_hiding_loader", "latency_hiding_ingest"])
    medians = dict(re.findall(r"^(\w+@\w+) = ([0-9.,]+)$", stdout, re.MULTILINE))
    archive = out / f"archive_v1_{PAIRS}"
    lists = [p for p in archive.rglob("*") if p.is_file() and p.parent.name == "lists"]
    gets = 16 + len(lists) / PAIRS  # and each official list file once
    assert float(medians["get_per_pair@20ms"]) == float(medians["get_per_pair@0ms"])
    assert float(medians["get_per_pair@0ms"]) == pytest.approx(gets, abs=0.005)
    # + the driver's listings and probes of roots and list folders: ~20, whatever the size
    assert gets < float(figures["requests_per_pair"]) <= gets + 30 / PAIRS
    last = [line.split("=")[0] for line in stdout.rstrip().splitlines()[-3:]]
    assert last == ["requests_per_pair", "latency_hiding_loader", "latency_hiding_ingest"]


def test_tarball_benchmark_prints_its_ratios(ingest_bench):
    out, _ = ingest_bench  # its archive
    args = ("--pairs", str(PAIRS), "--out", str(out), "--rounds", "1")
    stdout = run_cli("python", "-m", "benchmarks.tarball", *args).stdout
    figures = printed(stdout)
    assert_positive(
        figures,
        [
            "folders_pairs_per_s",
            "tar_gz_pairs_per_s",
            "tar_zst_pairs_per_s",
            "extract_then_ingest_pairs_per_s",
            "index_gz_mb_per_s",
            "index_gz_seek_points_mb_per_s",
            "index_zst_mb_per_s",
            "ratio_vs_folders_gz",
            "ratio_vs_folders_zst",
            "ratio_vs_extract_then_ingest",
        ],
    )
    assert stdout.rstrip().splitlines()[-1].startswith("rss_vs_folders_gz=")
    assert not (out / "extracted").exists()
