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
import pyarrow.parquet as pq

from bigearth_spark import storage

ROWS_PER_GROUP = 512  # ~150 patch folders of S1, ~40 of S2: a row group read costs ~0.3 ms
GROUPS_KEPT = 64  # row groups kept per tarball and process (~100 KB each as Python lists)

Member = tuple[str, int, int, bytes | None]  # name, offset in the tar, size (-1: a folder), content
COLUMNS = ("name", "offset", "size", "data")


def write_members(members: dict[str, tuple[int, int]], inlined: dict[str, bytes], out) -> None:
    """Write ``members`` (name → (offset, size)) with the content of those in ``inlined``, sorted
    by name, as Parquet, to stream ``out``."""
    names = sorted(members)
    table = pa.table(
        {
            "name": pa.array(names, pa.string()),
            "offset": pa.array([members[n][0] for n in names], pa.int64()),
            "size": pa.array([members[n][1] for n in names], pa.int64()),
            "data": pa.array([inlined.get(n) for n in names], pa.binary()),
        }
    )
    pq.write_table(table, out, compression="zstd", row_group_size=ROWS_PER_GROUP)


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
        """Member ``name``; None when the table has none of that name."""
        for member in self.rows(name, name + "\0"):
            return member
        return None

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
