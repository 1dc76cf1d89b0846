"""The index pass's re-pack into zstd frames: the frames hold the stream's bytes exactly, also
while the buffers the stream is read into are used again and compression lags behind."""

from __future__ import annotations

import io
import os
import threading
import time

import pyarrow as pa

from bigearth_spark.archive import tarball_scan
from bigearth_spark.archive.tarball_files import Seekable

SIZE = 4096  # bytes per read and per frame in these tests


class SlowCodec:
    """zstd that waits before it reads what it compresses (the threads lag behind the pass)."""

    def __init__(self) -> None:
        self.codec, self.calls = pa.Codec("zstd", compression_level=-1), 0
        self.lock = threading.Lock()

    def compress(self, data, asbytes: bool = False):
        with self.lock:
            self.calls += 1
        time.sleep(0.005)
        return self.codec.compress(data, asbytes=asbytes)


def test_frames_hold_the_stream_while_its_buffers_are_read_into_again(monkeypatch):
    monkeypatch.setattr(tarball_scan, "READ_SIZE", SIZE)
    monkeypatch.setattr(tarball_scan, "FRAME_SIZE", SIZE)
    data = os.urandom(SIZE * 40 + 123)
    out = io.BytesIO()
    raw = Seekable(pa.BufferReader(data))
    with tarball_scan.FrameWriter(out) as frames:
        frames.codec = slow = SlowCodec()
        counted = tarball_scan.Counted(raw, raw, frames)
        read, buffers = [], set()
        while chunk := counted():
            read.append(bytes(chunk))
            buffers.add(id(chunk))
        frames.close()
        table = frames.table().to_pylist()
    assert b"".join(read) == data and counted.pos == len(data)
    assert slow.calls == len(table) == 41
    codec, packed = pa.Codec("zstd"), out.getvalue()
    unpacked = [
        codec.decompress(packed[f["at"] : f["at"] + f["packed"]], f["size"], asbytes=True)
        for f in table
    ]
    assert b"".join(unpacked) == data
    assert len(buffers) <= 2 * tarball_scan.REPACK_THREADS + 2  # 41 reads into a few buffers
