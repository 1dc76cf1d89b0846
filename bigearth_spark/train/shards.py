"""Balanced, exactly-once shards of a split: row ranges of Parquet row groups per reader.

Dealing whole row groups to ranks (Petastorm's sharding) is exactly-once but unbalanced when
row groups differ in size: Spark's writer ends every file with a small group, so one rank could
get ten times the rows of another. Here an epoch is planned on rows instead: the split's row
groups (their row counts come from the Parquet footers) are put in one order (shuffled per epoch
for training), that sequence of rows is cut into ``parts`` contiguous ranges of equal length
(±1 row), and each reader — one per rank × DataLoader worker — reads only the row groups its
range touches and keeps only its rows. Every row is read once per epoch, every part gets the
same number of rows, and at most two row groups per part are read partly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pyarrow.parquet as pq

from bigearth_spark import fetch, storage


@dataclass(frozen=True)
class RowGroup:
    """One row group of a live data file."""

    path: str
    index: int
    rows: int
    first_key: str = ""  # the smallest key in the group (footer statistics), "" if unknown


@dataclass(frozen=True)
class Slice:
    """Rows ``start:stop`` of one row group, to be read by one part."""

    group: RowGroup
    start: int
    stop: int

    @property
    def rows(self) -> int:
        """Rows in the slice."""
        return self.stop - self.start


def _min(meta: pq.FileMetaData, group: int, column: int | None) -> str:
    stats = meta.row_group(group).column(column).statistics if column is not None else None
    return str(stats.min) if stats is not None and stats.has_min_max else ""


def _footer(path: str) -> pq.FileMetaData:
    return storage.parquet_file(path).metadata


def row_groups(paths: list[str], key: str = "patch_id") -> list[RowGroup]:
    """The row groups of ``paths`` with their row counts and smallest ``key``, from the Parquet
    footers."""
    groups = []
    footers = fetch.pool(fetch.REQUESTS_IN_FLIGHT).map(_footer, paths)  # in flight together
    for path, meta in zip(paths, footers, strict=True):
        names = [meta.schema.column(j).name for j in range(meta.num_columns)]
        column = names.index(key) if key in names else None
        groups += [
            RowGroup(path, i, meta.row_group(i).num_rows, _min(meta, i, column))
            for i in range(meta.num_row_groups)
        ]
    return groups


def epoch_order(groups: list[RowGroup], seed: int, epoch: int, shuffle: bool) -> list[RowGroup]:
    """The row groups in this epoch's reading order (the same on every rank and worker).

    The order before shuffling is by content (smallest key, rows), then by file: the same table
    content gives the same order wherever it is stored and whatever its files are named."""
    ordered = sorted(groups, key=lambda g: (g.first_key, g.rows, g.path, g.index))
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(ordered)
    return ordered


def part_range(total: int, parts: int, part: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of part ``part`` of ``parts`` equal ranges (±1) of ``total``."""
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not in [0, {parts})")
    return total * part // parts, total * (part + 1) // parts


def plan(ordered: list[RowGroup], parts: int, part: int) -> list[Slice]:
    """The slices of part ``part``: its contiguous range of the ordered rows."""
    start, stop = part_range(sum(g.rows for g in ordered), parts, part)
    slices, offset = [], 0
    for g in ordered:
        lo, hi = max(start, offset), min(stop, offset + g.rows)
        if lo < hi:
            slices.append(Slice(g, lo - offset, hi - offset))
        offset += g.rows
        if offset >= stop:
            break
    return slices
