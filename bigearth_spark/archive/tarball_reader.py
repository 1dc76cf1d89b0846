"""Random access to the members of an indexed tarball: a ranged read of a ``.tar``; for a
compressed one, the span of a member's patch folder read once from the frames the index pass
re-packed (a ranged read of a raw frame, a zstd frame decompressed), and kept while its other
members are read."""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bigearth_spark import storage
from bigearth_spark.archive.tarball_files import open_tarball

SPANS_KEPT = 64  # patch folders kept decompressed per tarball and process (~300 KB each)


class Reader:
    """Random access to the tar inside one tarball (thread-safe; one per process)."""

    def __init__(self, tarball: str, kind: str, index_dir: str) -> None:
        """``index_dir``: where the index pass wrote (the zstd frames of a compressed one)."""
        self.tarball, self.kind, self.lock = tarball, kind, threading.Lock()
        if kind == "tar":
            self.file = open_tarball(tarball)
        else:
            stored = storage.read_bytes(f"{index_dir}/frames.parquet")
            table = pq.read_table(pa.BufferReader(stored))
            columns = ("at", "packed", "size", "raw")
            frames = np.stack([table.column(c).to_numpy().astype(np.int64) for c in columns], 1)
            self.frames = frames.reshape(-1, 4)
            self.starts = np.concatenate([[0], np.cumsum(frames[:, 2])]).tolist()
            ifs, ipath = storage.filesystem(f"{index_dir}/frames.zst")
            self.packed = ifs.open_input_file(ipath)
            self.codec = pa.Codec("zstd")
            self.cached: tuple[int, bytes] = (-1, b"")
        self.spans: OrderedDict[int, bytes] = OrderedDict()  # span start → its bytes

    def read(self, offset: int, size: int, span: tuple[int, int]) -> bytes:
        """``size`` bytes of tar at ``offset``, inside ``span`` (its patch folder's members):
        a compressed tarball's span is decompressed once, kept while its other members are
        read (:data:`SPANS_KEPT` spans, the newest), however the reading threads interleave."""
        if self.kind == "tar":
            return bytes(self.file.read_at(size, offset))
        start, end = span
        with self.lock:
            data = self.spans.get(start)
            if data is None:
                data = self._read_frames(start, end - start)
                self.spans[start] = data
                while len(self.spans) > SPANS_KEPT:
                    self.spans.popitem(last=False)
            else:
                self.spans.move_to_end(start)
        return data[offset - start : offset - start + size]

    def _read_frames(self, offset: int, size: int) -> bytes:
        parts, end = [], offset + size
        frame = bisect.bisect_right(self.starts, offset) - 1
        while offset < end:
            start = self.starts[frame]
            at, packed, stored, raw = (int(v) for v in self.frames[frame])
            if raw:  # just the bytes wanted
                take = self.packed.read_at(min(end, start + stored) - offset, at + offset - start)
            else:
                take = self._frame(frame, at, packed, stored)[offset - start : end - start]
            parts.append(take)
            offset += len(take)
            frame += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _frame(self, frame: int, at: int, packed: int, size: int) -> bytes:
        """The zstd frame ``frame`` decompressed (the last one read is kept)."""
        if self.cached[0] != frame:
            data = self.packed.read_at(packed, at)
            self.cached = (frame, self.codec.decompress(data, size, asbytes=True))
        return self.cached[1]
