"""The training reader over pinned Delta versions: live files, balanced exactly-once shards across
ranks × DataLoader workers, decoding, and a clear error for an empty split."""

from __future__ import annotations

import gc
import shutil
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F

from bigearth_spark.archive.bands import BAND_STATS, MODALITIES
from bigearth_spark.tables import delta_log, schema
from bigearth_spark.tables.write import table_path
from bigearth_spark.train.data import DataSpec, EmptySplitError, PatchLoader, augment
from bigearth_spark.train.epoch_check import DataLossError, verify_epoch
from bigearth_spark.train.shards import row_groups


def spark_files(spark, path, version=None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return {f.removeprefix("file:") for f in reader.load(path).inputFiles()}


def test_live_files_equal_sparks_for_every_version(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.range(30).withColumn("p", F_mod(10)).write.format("delta").partitionBy("p").option(
        "delta.checkpointInterval", "2"
    ).save(path)
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES (delta.checkpointInterval = 2)")
    spark.range(30, 40).withColumn("p", F_mod(10)).write.format("delta").mode("append").save(path)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id % 3 = 0")
    spark.sql(f"UPDATE delta.`{path}` SET id = id + 100 WHERE p = 1")
    spark.range(5).withColumn("p", F_mod(2)).write.format("delta").mode("overwrite").save(path)
    assert list((tmp_path / "t" / "_delta_log").glob("*.checkpoint.parquet"))
    latest = delta_log.snapshot(path).version
    assert latest == 5  # create, set properties, append, delete, update, overwrite
    for v in range(latest + 1):
        snap = delta_log.snapshot(path, v)
        assert {f.path for f in snap.files} == spark_files(spark, path, v), v
        rows = spark.read.format("delta").option("versionAsOf", v).load(path).count()
        assert sum(f.num_records for f in snap.files) == rows
    with pytest.raises(delta_log.DeltaLogError):
        delta_log.snapshot(path, latest + 1)


def F_mod(n):
    from pyspark.sql import functions as SF

    return (SF.col("id") % n).cast("string")


def train_ids(spark, lake, split="train", version=None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    df = reader.load(table_path(lake, schema.PAIRS)).where(f"split = '{split}'")
    return {r.patch_id: r.s1_patch_id for r in df.select("patch_id", "s1_patch_id").collect()}


@pytest.fixture(scope="module")
def uneven_lake(spark, v1_lake, tmp_path_factory):
    """The v1 lake with ``pairs`` rewritten into files of at most 3 rows, so that the split's
    row groups differ in size (its row count is not a multiple of 3) wherever the rows land."""
    lake = tmp_path_factory.mktemp("uneven") / "lake"
    shutil.copytree(v1_lake[0], lake)
    path = table_path(str(lake), schema.PAIRS)
    conf = {
        "parquet.block.size": "700000",
        "parquet.block.size.row.check.min": "1",
        "parquet.block.size.row.check.max": "1",
        "spark.sql.files.maxRecordsPerFile": "3",
    }
    before = {k: spark.conf.get(k, None) for k in conf}
    try:
        for k, v in conf.items():
            spark.conf.set(k, v)
        df = spark.read.format("delta").load(path)
        df.repartition(3).write.format("delta").mode("overwrite").save(path)
    finally:
        for k, v in before.items():
            spark.conf.unset(k) if v is None else spark.conf.set(k, v)
    files = delta_log.snapshot(path).where(split="train")
    sizes = [g.rows for g in row_groups([f.path for f in files])]
    assert sum(sizes) == len(train_ids(spark, str(lake))) and max(sizes) == 3, sizes
    assert min(sizes) < 3, sizes
    return str(lake)


@pytest.mark.parametrize(("world", "workers"), [(1, 2), (2, 0), (3, 2), (4, 1), (4, 2)])
def test_ranks_and_workers_get_every_row_once_in_equal_shares(spark, uneven_lake, world, workers):
    truth = train_ids(spark, uneven_lake)
    for epoch in (0, 1):
        per_rank, skipped = [], []
        for rank in range(world):
            spec = DataSpec(uneven_lake, "train", "s1s2", batch_size=4, workers=workers)
            loader = PatchLoader(spec, rank, world)
            skipped.append([])
            per_rank.append([i for b in loader.epoch(epoch, skipped[-1]) for i in b.ids])
        shares = [len(ids) + len(s) for ids, s in zip(per_rank, skipped, strict=True)]
        n = len(truth)  # rank r reads rows [n·r/world, n·(r+1)/world) whatever the row groups
        assert shares == [n * (r + 1) // world - n * r // world for r in range(world)]
        n_skipped = sum(map(len, skipped))
        assert verify_epoch(per_rank, loader.rows_in_split, skipped) == len(truth) - n_skipped
        assert {i for ids in per_rank for i in ids} == {p for p, s1 in truth.items() if s1}
        assert {i for s in skipped for i in s} == {p for p, s1 in truth.items() if not s1}


def test_a_split_without_rows_says_why_and_how_to_fix(spark, v1_lake, tmp_path):
    lake = str(tmp_path / "lake")
    shutil.copytree(v1_lake[0], lake)
    pairs = table_path(lake, schema.PAIRS)
    spark.sql(f"UPDATE delta.`{pairs}` SET split = NULL")  # as if no official lists were given
    rows = spark.read.format("delta").load(pairs).count()
    with pytest.raises(EmptySplitError, match=rf"'train' has no rows .*; {rows} rows .*--lists"):
        PatchLoader(DataSpec(lake, "train"))


def test_verify_epoch_fails_loudly():
    assert verify_epoch([["a", "b"], ["c"]], 5, [["d"], ["e"]]) == 3
    with pytest.raises(DataLossError, match=r"1 rows delivered more than once .*\['b'\]"):
        verify_epoch([["a", "b"], ["b"]], 3)
    with pytest.raises(DataLossError, match="split has 3 rows"):
        verify_epoch([["a"], []], 3)


def test_verify_epoch_checks_skipped_rows_as_ids():
    # "d" skipped twice and "e" never seen: the counts add up (3 + 2 = 5), the ids do not
    with pytest.raises(DataLossError, match=r"1 rows skipped more than once .*\['d'\]"):
        verify_epoch([["a", "b"], ["c"]], 5, [["d"], ["d"]])
    # "b" scored by rank 0 and skipped by rank 1, "e" never seen
    with pytest.raises(DataLossError, match=r"1 rows both delivered and skipped: \['b'\]"):
        verify_epoch([["a", "b"], ["c"]], 5, [["d"], ["b"]])
    with pytest.raises(DataLossError, match=r"delivered 3 rows \(\+1 skipped .* split has 5"):
        verify_epoch([["a", "b"], ["c"]], 5, [["d"], []])


def test_batches_are_resampled_normalised_bands(spark, v1_lake, v1_archive):
    lake, _ = v1_lake
    root, manifest = v1_archive
    spec = DataSpec(lake, "train", "s1s2-12", batch_size=64, resampling="bilinear")
    batch = next(PatchLoader(spec).epoch(0))
    assert batch.x.shape == (len(batch.ids), 14, 120, 120) and batch.x.dtype == torch.float32
    assert batch.y.shape == (len(batch.ids), 19)
    pid = batch.ids[0]
    truth = manifest["patches"][pid]
    stats = BAND_STATS["v1"]
    for c, band in enumerate(MODALITIES["s1s2-12"]):
        folder = truth["s2_dir"] if band.name not in ("VV", "VH") else truth["s1_dir"]
        name = pid if band.name not in ("VV", "VH") else truth["s1"]
        with rasterio.open(root / folder / f"{name}_{band.name}.tif") as src:
            a = torch.from_numpy(src.read(1).astype(np.float32))[None, None]
        if band.size != 120:
            a = F.interpolate(a, size=(120, 120), mode="bilinear", align_corners=False)
        want = (a[0, 0] - stats[band.name][0]) / stats[band.name][1]
        torch.testing.assert_close(batch.x[0, c], want)
    labels = manifest["patches"][pid]["labels19"]
    assert int(batch.y[0].sum()) == len(labels)


def test_a_pinned_version_reads_its_own_rows(spark, v1_lake, tmp_path):
    lake = str(tmp_path / "lake")
    shutil.copytree(v1_lake[0], lake)
    pairs = table_path(lake, schema.PAIRS)
    before = delta_log.snapshot(pairs).version
    old = train_ids(spark, lake)
    moved = sorted(old)[:3]
    spark.sql(f"UPDATE delta.`{pairs}` SET split = 'test' WHERE patch_id IN {tuple(moved)}")

    def read(version):
        loader = PatchLoader(DataSpec(lake, "train", "s2", version=version, batch_size=8))
        return loader.version, {i for b in loader.epoch(0) for i in b.ids}

    assert read(before) == (before, set(old))
    assert read(None) == (before + 1, set(old) - set(moved))


def test_augment_applies_the_drawn_transform_to_each_sample() -> None:
    x = torch.randn(40, 3, 8, 8)
    gen = torch.Generator().manual_seed(7)
    out = augment(x.clone(), gen)
    draws = torch.Generator().manual_seed(7)
    flip_h = torch.rand(40, generator=draws) < 0.5
    flip_v = torch.rand(40, generator=draws) < 0.5
    k = torch.randint(0, 4, (40,), generator=draws)
    for i in range(40):
        expected = x[i]
        if flip_h[i]:
            expected = expected.flip(-1)
        if flip_v[i]:
            expected = expected.flip(-2)
        assert torch.equal(out[i], torch.rot90(expected, int(k[i]), dims=(-2, -1))), i
    drawn = {(bool(h), bool(v), int(r)) for h, v, r in zip(flip_h, flip_v, k, strict=True)}
    assert len(drawn) == 15  # of the 16 transforms


@pytest.mark.parametrize("hold", [True, False])
def test_worker_batches_equal_in_process_ones_whether_held_or_dropped(spark, v1_lake, hold):
    """Workers write batches into reused shared buffers: a batch the consumer still holds is
    never overwritten, and a dropped one's buffer is reused without mixing rows."""
    spec = DataSpec(v1_lake[0], "train", "s1s2", batch_size=4, prefetch=1, workers=0)
    want = {i: x for b in PatchLoader(spec).epoch(0) for i, x in zip(b.ids, b.x, strict=True)}
    loader = PatchLoader(replace(spec, workers=2))
    got = {}
    held = []
    for batch in loader.epoch(0):
        rows = batch.x if hold else batch.x.clone()
        got.update(zip(batch.ids, rows, strict=True))
        if hold:
            held.append(batch)
    if not hold:
        assert loader.dataset.pool.in_use.sum() == 1  # the last batch, still bound to batch
    with_s1 = [p for p, s1 in train_ids(spark, v1_lake[0]).items() if s1]
    assert got.keys() == want.keys() == set(with_s1)
    for i, x in want.items():
        assert torch.equal(got[i], x), i


def test_persistent_workers_follow_the_epoch_and_free_their_buffers(spark, uneven_lake):
    """One loader's persistent workers read the epoch the main process sets (the same batches
    as a fresh loader's), also after an epoch abandoned midway, whose buffers are released."""
    spec = DataSpec(uneven_lake, "train", "s1s2", batch_size=4, workers=2, prefetch=2)

    def sequence(loader, epoch):
        return [(tuple(b.ids), b.x.sum().item()) for b in loader.epoch(epoch)]

    fresh = {e: sequence(PatchLoader(spec), e) for e in (0, 1)}
    assert fresh[0] != fresh[1] and sorted(fresh[0]) != sorted(fresh[1])  # reshuffled rows
    loader = PatchLoader(spec)
    assert sequence(loader, 1) == fresh[1]
    next(loader.epoch(0))  # abandoned after one batch
    assert sequence(loader, 0) == fresh[0]
    assert sequence(loader, 1) == fresh[1]
    gc.collect()
    assert loader.dataset.pool.in_use.sum() == 0  # nothing held: every slot is free again
