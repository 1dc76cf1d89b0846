"""Archives and lakes on S3, against a real S3 API server on localhost (moto's server mode):
the storage layer, bit-exact decoding from objects, and the whole product end to end —
``spark-submit`` ingest from and into ``s3a://``, ``bigearth-spark sql``, 2-rank ``horovodrun``
training and the evaluation job — with the same results as the local lake."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio

from bigearth_spark import storage
from bigearth_spark.archive.reader import read_patch
from bigearth_spark.archive.tiff import read_tiff
from bigearth_spark.tables import delta_log, schema
from bigearth_spark.tables.log_store import (
    MULTI_WRITER_S3,
    UnsafeLogStoreError,
    check_concurrent_writes,
)
from bigearth_spark.tables.write import table_path
from tests.conftest import SAMPLES, needs_shared, run_cli
from tests.etl.test_cluster_modes import VOLATILE
from tests.storage.s3_server import moto_server, upload
from tests.train.test_horovod import horovodrun, on_spark

BUCKET = "bigearth-tests"
S2_ID = "S2A_MSIL2A_20170617T113321_36_85"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server on localhost with one bucket; the environment names it (as a user's
    would) for this module and every process it starts. Yields the bucket's s3a:// URI."""
    with moto_server(BUCKET) as bucket:
        yield bucket


def test_listing_and_reading_objects(s3: str, tmp_path: Path) -> None:
    (tmp_path / "a" / "empty").mkdir(parents=True)
    (tmp_path / "a" / "x.csv.bz2").write_bytes(b"not bz2 at all")
    (tmp_path / "a" / "b.txt").write_bytes(b"hello")
    assert upload(tmp_path / "a", f"{s3}/listing") == 3
    root = f"{s3}/listing"
    assert [(e.name, e.path, e.is_dir) for e in storage.list_dir(root + "/")] == [
        ("b.txt", f"{root}/b.txt", False),
        ("empty", f"{root}/empty", True),
        ("x.csv.bz2", f"{root}/x.csv.bz2", False),
    ]
    assert storage.list_dir(f"{root}/empty") == []
    assert storage.list_names(root) == {"b.txt", "empty", "x.csv.bz2"}
    # bytes as stored: no decompression guessed from the name
    assert storage.read_bytes(f"{root}/x.csv.bz2") == b"not bz2 at all"
    assert storage.is_dir(root) and storage.is_dir(f"{root}/empty")
    assert storage.is_file(f"{root}/b.txt") and not storage.is_dir(f"{root}/b.txt")
    assert not storage.is_dir(f"{root}/nothing") and not storage.is_file(f"{root}/nothing")
    with pytest.raises(FileNotFoundError):
        storage.list_dir(f"{root}/nothing")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{root}/nothing.txt")


@needs_shared
def test_patches_decode_bit_exact_from_objects(s3: str) -> None:
    upload(SAMPLES, f"{s3}/samples")
    folder = f"{s3}/samples/{S2_ID}"
    tifs = sorted(p.name for p in (SAMPLES / S2_ID).glob("*.tif"))
    assert len(tifs) == 12
    for name in tifs:
        got = read_tiff(f"{folder}/{name}")
        with rasterio.open(SAMPLES / S2_ID / name) as src:
            want = src.read(1)
            assert got.transform == tuple(float(v) for v in src.transform.to_gdal())
            assert got.epsg == src.crs.to_epsg()
        assert got.array.dtype == want.dtype and got.array.tobytes() == want.tobytes(), name
    remote, local = read_patch(folder, "v1_s2"), read_patch(SAMPLES / S2_ID, "v1_s2")
    assert remote.path == folder and remote.patch_id == local.patch_id == S2_ID
    assert remote.bands.keys() == local.bands.keys()
    for band, array in local.bands.items():
        np.testing.assert_array_equal(remote.bands[band], array)
    assert (remote.labels43, remote.acquired, remote.tile) == (
        local.labels43,
        local.acquired,
        local.tile,
    )


@pytest.mark.parametrize(
    ("lake", "conf", "single_writer", "safe"),
    [
        ("s3a://b/lake", {}, False, False),
        ("s3://b/lake", {"spark.delta.logStore.class": "x.Other"}, False, False),
        ("s3a://b/lake", {}, True, True),
        ("s3a://b/lake", {"spark.delta.logStore.s3a.impl": MULTI_WRITER_S3}, False, True),
        ("s3a://b/lake", {"spark.delta.logStore.class": MULTI_WRITER_S3}, False, True),
        ("/data/lake", {}, False, True),
        ("hdfs://nn/lake", {}, False, True),
        ("abfss://c@acct.dfs.core.windows.net/lake", {}, False, True),
    ],
)
def test_concurrent_writes_need_a_multi_writer_log_store_on_s3(
    lake: str, conf: dict[str, str], single_writer: bool, safe: bool
) -> None:
    if safe:
        check_concurrent_writes(lake, conf.get, single_writer)
        return
    with pytest.raises(UnsafeLogStoreError, match="--single-writer") as e:
        check_concurrent_writes(lake, conf.get, single_writer)
    assert MULTI_WRITER_S3 in str(e.value)


def relocated(value: object, roots: dict[str, str]) -> object:
    """``value`` with every archive root in its strings (nested too) replaced by a marker."""
    if isinstance(value, str):
        for root, marker in roots.items():
            value = value.replace(root, marker)
        return value
    if isinstance(value, list):
        return [relocated(v, roots) for v in value]
    if isinstance(value, dict):
        return {k: relocated(v, roots) for k, v in value.items()}
    return value


def table_rows(lake: str, name: str, roots: dict[str, str]) -> list[tuple]:
    """Every row of a table's latest version (read without Spark, through the Delta log),
    volatile columns dropped and paths made relative to the archive root; sorted."""
    snap = delta_log.snapshot(table_path(lake, name))
    tables = []
    for f in snap.files:
        t = storage.parquet_file(f.path).read()
        for k, v in f.partition_values.items():  # partition columns live in the log
            t = t.append_column(k, pa.array([v] * len(t), pa.string()))
        tables.append(t)
    rows = pa.concat_tables(tables, promote_options="default").to_pylist() if tables else []
    kept = [
        tuple((k, relocated(v, roots)) for k, v in sorted(row.items()) if k not in VOLATILE)
        for row in rows
    ]
    return sorted(kept, key=repr)


@pytest.mark.slow
def test_ingest_sql_train_evaluate_on_s3_equal_local(s3: str, v1_archive, tmp_path: Path) -> None:
    root, _ = v1_archive
    archive, lake, local_lake = f"{s3}/archive", f"{s3}/lake", str(tmp_path / "lake")
    # an object per file, and a marker per empty folder (the empty_folder defect)
    leaves = [p for p in root.rglob("*") if p.is_file() or not any(p.iterdir())]
    assert upload(root, archive) == len(leaves)
    timings = {}
    for where, source, target, extra in (
        ("s3", archive, lake, ["--single-writer"]),
        ("local", str(root), local_lake, []),
    ):
        start = time.perf_counter()
        proc = run_cli(
            "spark-submit", "jobs/ingest.py", "--input", source, "--lake", target, *extra
        )
        timings[f"ingest_{where}_s"] = time.perf_counter() - start
        assert "readable patches" in proc.stdout
    roots = {archive: "<archive>", str(root): "<archive>"}
    for name in (schema.PAIRS, schema.LABELS, schema.QUARANTINE, schema.PATCH_METADATA):
        remote, local = table_rows(lake, name, roots), table_rows(local_lake, name, roots)
        logged = sum(f.num_records for f in delta_log.snapshot(table_path(local_lake, name)).files)
        assert len(remote) == len(local) == logged, name  # and the local log's row count
        assert remote == local, name  # band bytes included
    ids = [dict(r)["patch_id"] for r in table_rows(lake, schema.PAIRS, roots)]
    assert len(ids) == len(set(ids))

    # export of a whole pair from the bucket's lake: bit-exact with rasterio on the local tifs
    local_pairs = [dict(r) for r in table_rows(local_lake, schema.PAIRS, {})]
    pair = min(
        (r for r in local_pairs if r["s2_path"] and r["s1_path"]), key=lambda r: r["patch_id"]
    )
    out = tmp_path / "pair.npz"
    run_cli(
        "bigearth-spark",
        "export",
        "--lake",
        lake,
        "--patch-id",
        pair["patch_id"],
        "--out",
        str(out),
    )
    exported = np.load(out)
    tifs = [*Path(pair["s2_path"]).glob("*.tif"), *Path(pair["s1_path"]).glob("*.tif")]
    assert len(tifs) == 14
    for tif in tifs:
        with rasterio.open(tif) as src:
            want = src.read(1)
        got = exported[tif.stem.rsplit("_", 1)[-1]]
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), tif.name

    query = "SELECT split, count(*) AS n FROM bigearthnet.pairs GROUP BY split ORDER BY split"
    proc = run_cli("bigearth-spark", "sql", "--lake", lake, "--json", query)
    got = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    want: dict[str | None, int] = {}
    for f in delta_log.snapshot(table_path(local_lake, schema.PAIRS)).files:
        split = f.partition_values.get("split")
        want[split] = want.get(split, 0) + f.num_records
    assert {r["split"]: r["n"] for r in got} == want

    results = {}
    for where, source in (("s3", lake), ("local", local_lake)):
        start = time.perf_counter()
        results[where] = horovodrun(source, tmp_path / where / "run", 2, "--seed", "3")
        timings[f"train_{where}_s"] = time.perf_counter() - start
    assert results["s3"]["weights_sha256"] == results["local"]["weights_sha256"]
    assert results["s3"]["micro_f1"] == results["local"]["micro_f1"]
    # Horovod on Spark: the ranks run in Spark's Python workers and read the bucket from there
    start = time.perf_counter()
    spark_run = on_spark(lake, tmp_path / "spark" / "run", 2, "--seed", "3")
    timings["train_s3_spark_launcher_s"] = time.perf_counter() - start
    # the same training, bit for bit: a CPU rank's thread count does not depend on the launcher
    assert spark_run["table_version"] == results["s3"]["table_version"]
    assert spark_run["ranks_identical_weights"] and spark_run["world_size"] == 2
    assert spark_run["weights_sha256"] == results["s3"]["weights_sha256"]
    assert spark_run["train_loss"] == results["s3"]["train_loss"]
    assert spark_run["macro_ap"] == results["s3"]["macro_ap"]

    evaluations = {}
    for where, source in (("s3", lake), ("local", local_lake)):
        start = time.perf_counter()
        proc = run_cli(
            "python",
            "jobs/evaluate.py",
            "--lake",
            source,
            "--checkpoint",
            str(tmp_path / "s3" / "run" / "latest.pt"),
            "--split",
            "test",
            "--report",
            str(tmp_path / where / "report"),
        )
        timings[f"evaluate_{where}_s"] = time.perf_counter() - start
        evaluations[where] = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("micro_f1", "macro_ap", "cosine_map_at_10", "rows", "rows_without_s1"):
        assert evaluations["s3"][key] == evaluations["local"][key], key
    assert evaluations["s3"]["rows"] + evaluations["s3"]["rows_without_s1"] == want["test"]
    print("timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
