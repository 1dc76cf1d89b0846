"""Epoch plans over row groups of uneven size: every row once, every part the same size (±1)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bigearth_spark.train.shards import RowGroup, epoch_order, part_range, plan


def uneven_groups(seed: int) -> list[RowGroup]:
    rng = random.Random(seed)  # Spark-like files: full groups, then a small last one
    groups = []
    for f in range(rng.randint(1, 9)):
        sizes = [100] * rng.randint(0, 3) + [rng.randint(1, 99)]
        groups += [RowGroup(f"s{seed}/f{f}.parquet", i, n) for i, n in enumerate(sizes)]
    return groups


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 7, 16])
def test_every_row_once_and_parts_within_one_row(seed, parts):
    groups = uneven_groups(seed)
    total = sum(g.rows for g in groups)
    order = epoch_order(groups, seed=3, epoch=seed, shuffle=True)
    rows = Counter()
    sizes = []
    for part in range(parts):
        slices = plan(order, parts, part)
        sizes.append(sum(s.rows for s in slices))
        for s in slices:
            assert 0 <= s.start < s.stop <= s.group.rows
            rows.update((s.group.path, s.group.index, r) for r in range(s.start, s.stop))
    assert sum(sizes) == total and len(rows) == total and set(rows.values()) == {1}
    assert max(sizes) - min(sizes) <= 1


def test_order_is_shared_and_changes_per_epoch():
    groups = uneven_groups(1) + uneven_groups(2)
    a = epoch_order(groups, seed=0, epoch=0, shuffle=True)
    assert a == epoch_order(list(reversed(groups)), seed=0, epoch=0, shuffle=True)
    assert a != epoch_order(groups, seed=0, epoch=1, shuffle=True)


def test_order_follows_content_not_file_names():
    keyed = [RowGroup(f"f{i % 3}.parquet", i, 5 + i % 2, f"S2_{7 * i % 10:02d}") for i in range(10)]
    renamed = [RowGroup(f"copy/{i}.parquet", 0, g.rows, g.first_key) for i, g in enumerate(keyed)]
    unshuffled = epoch_order(keyed, 0, 5, shuffle=False)
    assert [g.first_key for g in unshuffled] == [f"S2_{k:02d}" for k in range(10)]

    def content(order: list[RowGroup]) -> list[tuple[str, int]]:
        return [(g.first_key, g.rows) for g in order]

    for shuffle in (False, True):
        a, b = epoch_order(keyed, 3, 1, shuffle), epoch_order(renamed[::-1], 3, 1, shuffle)
        assert content(a) == content(b)


def test_part_range():
    assert [part_range(10, 3, p) for p in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert plan([RowGroup("f", 0, 2)], 4, 0) == []  # more parts than rows: some are empty
    with pytest.raises(ValueError, match="part 3"):
        part_range(10, 3, 3)
