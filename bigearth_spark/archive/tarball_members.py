"""A tarball's member table: each member's name, the offset of its data in the tar, its size
(-1 for a folder) and the content of the small members the index keeps (else null), sorted by
name into Parquet row groups of :data:`ROWS_PER_GROUP` rows.

A process looks members up by name ranges and reads only the row groups that hold them (the
members of one patch folder are adjacent), keeping the :data:`GROUPS_KEPT` newest: an executor
never loads the whole table, which for the full S2 tarball holds ~7.7 million rows.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bigearth_spark import storage

ROWS_PER_GROUP = 512  # ~150 patch folders of S1, ~40 of S2: a row group read costs ~0.3 ms
GROUPS_KEPT = 64  # row groups kept per tarball and process (~100 KB each as Python lists)

Member = tuple[str, int, int, bytes | None]  # name, offset in the tar, size (-1: a folder), content
COLUMNS = ("name", "offset", "size", "data")


SCHEMA = pa.schema(
    [("name", pa.string()), ("offset", pa.int64()), ("size", pa.int64()), ("data", pa.binary())]
)
LOG_BATCH = 1 << 16  # members per Arrow batch of the log: ~6 MB of Python objects at a time


class MemberLog:
    """The members an index pass finds, as it finds them, kept in Arrow batches: ~100 bytes a
    member (its name's), where a dict of Python objects took ~300 (~2.5 GB for the ~7.7 million
    members of the full S2 tarball, on the driver)."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.rows: tuple[list, ...] = ([], [], [], [])

    def add(self, name: str, offset: int, size: int, content: bytes | None = None) -> None:
        """Record a member: a file (offset of its data in the tar, size) or a folder (-1, -1),
        with its content when the index keeps it."""
        names, offsets, sizes, contents = self.rows
        names.append(name)
        offsets.append(offset)
        sizes.append(size)
        contents.append(content)
        if len(names) == LOG_BATCH:
            self._flush()

    def table(self) -> pa.Table:
        """Every member recorded, in the order recorded."""
        self._flush()
        return pa.Table.from_batches(self.batches, SCHEMA)

    def _flush(self) -> None:
        if self.rows[0]:
            self.batches.append(pa.RecordBatch.from_arrays(list(self.rows), schema=SCHEMA))
            self.rows = ([], [], [], [])


def write_members(members: pa.Table, out) -> None:
    """Write the member table ``members`` (:data:`SCHEMA`, in tar order) sorted by name, as
    Parquet, to stream ``out``, a slice of the sorted order at a time (one sorted copy would
    double it). The sort is stable: a name the tar holds twice has its later member last, which
    a folder's listing keeps (as ``tar -x`` does)."""
    order = pc.sort_indices(members, [("name", "ascending")])
    with pq.ParquetWriter(out, SCHEMA, compression="zstd") as writer:
        for start in range(0, len(order), LOG_BATCH):
            rows = members.take(order.slice(start, LOG_BATCH))
            writer.write_table(rows, row_group_size=ROWS_PER_GROUP)


class MemberTable:
    """The member table at ``path`` (:func:`write_members`), read a row group at a time
    (thread-safe; opened at its first lookup)."""

    def __init__(self, path: str) -> None:
        self.path, self.lock = path, threading.Lock()
        self.file: pq.ParquetFile | None = None
        self.firsts: list[str] = []  # each row group's first name
        self.groups: OrderedDict[int, tuple[list, ...]] = OrderedDict()  # the newest read

    def rows(self, lo: str, hi: str | None = None) -> Iterator[Member]:
        """The members whose names are in ``[lo, hi)`` (``hi`` None: to the end), by name."""
        firsts = self._firsts()
        group = max(bisect.bisect_right(firsts, lo) - 1, 0)
        while group < len(firsts) and (hi is None or firsts[group] < hi):
            names, offsets, sizes, data = self._group(group)
            end = len(names) if hi is None else bisect.bisect_left(names, hi)
            for i in range(bisect.bisect_left(names, lo), end):
                yield names[i], offsets[i], sizes[i], data[i]
            group += 1

    def get(self, name: str) -> Member | None:
        """Member ``name`` (the later of two of that name); None when the table has none."""
        found = None
        for found in self.rows(name, name + "\0"):  # noqa: B007 (the last one is kept)
            pass
        return found

    def _firsts(self) -> list[str]:
        with self.lock:
            if self.file is None:
                # the compressed table in memory (~5 bytes a member): one read on object stores
                self.file = pq.ParquetFile(pa.BufferReader(storage.read_bytes(self.path)))
                meta = self.file.metadata
                self.firsts = [
                    meta.row_group(g).column(0).statistics.min for g in range(meta.num_row_groups)
                ]
            return self.firsts

    def _group(self, group: int) -> tuple[list, ...]:
        with self.lock:
            found = self.groups.get(group)
            if found is not None:
                self.groups.move_to_end(group)
                return found
            rows = self.file.read_row_group(group)
            found = tuple(rows.column(c).to_pylist() for c in COLUMNS)
            self.groups[group] = found
            while len(self.groups) > GROUPS_KEPT:
                self.groups.popitem(last=False)
            return found
