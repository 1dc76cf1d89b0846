"""The Petastorm reader (``reader: petastorm``, issue 30): Petastorm's own sharding over the live
files of a pinned version, into the default reader's batches."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bigearth_spark.tables import delta_log, schema
from bigearth_spark.tables.write import table_path
from bigearth_spark.train.data import DataSpec, PatchLoader
from bigearth_spark.train.epoch_check import verify_epoch
from bigearth_spark.train.petastorm_reader import make_pairs_reader, row_group_shares
from bigearth_spark.train.shards import row_groups
from tests.train.test_data import train_ids


def shares(spec: DataSpec, world: int, epoch: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    """Each rank's delivered ids and skipped ids (no S1 partner) in ``epoch``."""
    delivered, skipped = [], []
    for rank in range(world):
        missing: list[str] = []
        loader = PatchLoader(spec, rank, world, seed=5)
        delivered.append([i for b in loader.epoch(epoch, missing) for i in b.ids])
        skipped.append(missing)
    return delivered, skipped


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (2, 0), (2, 2), (3, 1)])
def test_every_row_once_per_epoch_in_petastorms_shards(spark, v1_lake, world, workers):
    spec = DataSpec(v1_lake[0], "train", "s1s2", batch_size=4, workers=workers, reader="petastorm")
    truth = train_ids(spark, v1_lake[0])
    for epoch in (0, 1):
        delivered, skipped = shares(spec, world, epoch)
        assert verify_epoch(delivered, len(truth), skipped) == len(truth) - 1  # one S1-less row
        assert sorted(i for ids in delivered + skipped for i in ids) == sorted(truth)
    if workers == 0:  # one reader per rank: Petastorm's shards are the ranks' shares
        got = [len(d) + len(s) for d, s in zip(delivered, skipped, strict=True)]
        assert got == row_group_shares(spec, world)


def test_shares_differ_by_at_most_one_row_group(v1_lake):
    spec = DataSpec(v1_lake[0], "train", "s1s2", reader="petastorm")
    groups = row_groups(
        [
            f.path
            for f in delta_log.snapshot(table_path(v1_lake[0], schema.PAIRS)).where(split="train")
        ]
    )
    for world in (2, 3):
        got = row_group_shares(spec, world)
        assert sum(got) == sum(g.rows for g in groups)
        assert max(got) - min(got) <= max(g.rows for g in groups)


@pytest.mark.parametrize("decode", ["worker", "device"])
def test_petastorm_batches_hold_the_default_readers_samples(v1_lake, decode):
    """Per patch id: the same decoded input and target as the default reader (the order of
    rows is Petastorm's)."""
    spec = DataSpec(v1_lake[0], "train", "s1s2", batch_size=5, workers=1, decode=decode)

    def samples(reader: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        loader = PatchLoader(replace(spec, reader=reader))
        return {
            i: (b.x[k].clone(), b.y[k].clone())
            for b in loader.to_device("cpu")
            for k, i in enumerate(b.ids)
        }

    want, got = samples("default"), samples("petastorm")
    assert got.keys() == want.keys() and len(got) > 10
    for i, (x, y) in got.items():
        assert torch.equal(x, want[i][0]) and torch.equal(y, want[i][1]), i


def test_a_pinned_version_is_read_from_its_live_files_only(spark, v1_lake_copy):
    """A DELETE rewrites a data file: the folder then holds the dead one too. The reader of
    each version reads exactly that version's rows."""
    pairs = table_path(v1_lake_copy, schema.PAIRS)
    before = delta_log.snapshot(pairs).version
    victim = sorted(train_ids(spark, v1_lake_copy))[0]
    spark.sql(f"DELETE FROM delta.`{pairs}` WHERE patch_id = '{victim}'")
    for version, want in ((before, True), (None, False)):
        spec = DataSpec(v1_lake_copy, "train", "s1s2", version=version, reader="petastorm")
        with make_pairs_reader(spec, ["patch_id"], num_epochs=1, reader_pool_type="dummy") as r:
            ids = [i for batch in r for i in batch.patch_id]
        assert len(ids) == len(set(ids)) == len(train_ids(spark, v1_lake_copy, version=version))
        assert (victim in ids) == want
