"""The index pass's re-pack into frames: the frames hold the stream's bytes exactly, also while
the buffers the stream is read into are used again and compression lags behind; a frame is
stored raw where compression does not pay, as its block's probe found; members read back from
both kinds of frame."""

from __future__ import annotations

import io
import os
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq

from bigearth_spark.archive import tarball, tarball_scan
from bigearth_spark.archive.synth.pack import write_tarball
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


def repack(data: bytes) -> tuple[list[bytes], set[int], list[dict], bytes, SlowCodec]:
    """Re-pack ``data`` read in :data:`SIZE` reads into frames of that size, compression
    slowed: (what each read returned, copied at once; the buffers read into; the frames'
    table; the re-pack; the codec)."""
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
    assert counted.pos == len(data)
    return read, buffers, table, out.getvalue(), slow


def unpacked(table: list[dict], packed: bytes) -> bytes:
    """The stream the frames hold: a raw frame as it is, a zstd frame decompressed."""
    codec, parts = pa.Codec("zstd"), []
    for f in table:
        frame = packed[f["at"] : f["at"] + f["packed"]]
        parts.append(frame if f["raw"] else codec.decompress(frame, f["size"], asbytes=True))
    return b"".join(parts)


def test_frames_hold_the_stream_while_its_buffers_are_read_into_again(monkeypatch):
    """Noise: the first block's frames are each compressed and stored raw; after it, only
    each block's probe is compressed."""
    monkeypatch.setattr(tarball_scan, "READ_SIZE", SIZE)
    monkeypatch.setattr(tarball_scan, "FRAME_SIZE", SIZE)
    data = os.urandom(SIZE * 40 + 123)
    read, buffers, table, packed, slow = repack(data)
    assert b"".join(read) == data
    assert len(table) == 41 and all(f["raw"] for f in table)
    assert slow.calls == tarball_scan.PROBE_EVERY + 2  # then the probes of frames 16 and 32
    assert unpacked(table, packed) == data
    assert len(buffers) <= 2 * tarball_scan.REPACK_THREADS + 2  # 41 reads into a few buffers


def test_a_block_follows_the_verdict_of_the_last_blocks_probe(monkeypatch):
    """Blocks of 4 frames: zeros, zeros, noise, noise, zeros, zeros (and a short zero frame):
    a frame is stored raw where its compression did not pay, or without compressing it where
    the last block's probe did not pay."""
    monkeypatch.setattr(tarball_scan, "READ_SIZE", SIZE)
    monkeypatch.setattr(tarball_scan, "FRAME_SIZE", SIZE)
    monkeypatch.setattr(tarball_scan, "PROBE_EVERY", 4)
    zeros, noise = bytes(4 * SIZE), os.urandom(8 * SIZE)
    data = zeros + zeros + noise + zeros + zeros + bytes(100)
    _, _, table, packed, slow = repack(data)
    raw = [f["raw"] for f in table]
    assert raw == [False] * 8 + [True] * 8 + [False, True, True, True] + [False] * 5
    assert slow.calls == 25 - 6  # frames 13-15 (after noise's probe) and 17-19 are not
    assert sum(f["packed"] for f in table if not f["raw"]) < SIZE  # the zeros compressed
    assert unpacked(table, packed) == data


def test_members_read_from_raw_and_compressed_frames(tmp_path, monkeypatch):
    """A tar.zst of patch folders of compressible and noise files, re-packed into small
    frames of both kinds: every member reads back its bytes."""
    monkeypatch.setattr(tarball_scan, "READ_SIZE", SIZE)
    monkeypatch.setattr(tarball_scan, "FRAME_SIZE", SIZE)
    monkeypatch.setattr(tarball_scan, "PROBE_EVERY", 2)
    top, files = tmp_path / "top", {}
    for p in range(12):
        folder = top / f"patch_{p:02}"
        folder.mkdir(parents=True)
        kind = "noise" if p % 6 < 3 else "text"
        for b in range(3):
            content = os.urandom(3000 + 997 * b) if kind == "noise" else b"band %d " * 900
            (folder / f"{kind}_{b}.tif").write_bytes(content)
            files[f"top/patch_{p:02}/{kind}_{b}.tif"] = content
    source = write_tarball(top, tmp_path / "top.tar.zst", "tar.zst")
    tarball.build_index(str(source))
    frames = pq.read_table(tmp_path / "top.tar.zst.index" / "frames.parquet").column("raw")
    assert 0 < frames.to_pylist().count(True) < len(frames)
    for name, content in sorted(files.items(), reverse=True):  # frames read out of order too
        assert tarball.read_bytes(tarball.member_uri(str(source), name)) == content
