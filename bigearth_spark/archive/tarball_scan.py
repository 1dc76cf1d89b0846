"""The index pass over a tarball: one sequential read that records its members (name, offset
in the uncompressed tar, size) and, for a compressed tarball, re-packs the tar into independent
frames (zstd, or raw where compression does not pay) that members are read from at random. A
``.tar.gz`` is inflated by ``rapidgzip`` (ISA-L; on many cores in parallel,
:data:`GZIP_THREADS`; it checks the CRC32); a ``.tar.zst`` (one frame in the official files) by
one zstd stream. A fault of the stream (the data ends early, a
block is corrupt, the CRC32 does not match) ends the pass; everything before it is kept, less
the patch folder it cut."""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bigearth_spark import storage
from bigearth_spark.archive.tar_walk import Chunks, TarEnded, TarFormatError, Walk
from bigearth_spark.archive.tarball_files import (
    Seekable,
    StorageReadError,
    open_tarball,
    stamp,
)
from bigearth_spark.archive.tarball_members import MemberLog, write_members

log = logging.getLogger(__name__)

TRUNCATED, CORRUPT = "truncated_tarball", "corrupt_tarball"  # quarantine reasons of a fault
FRAME_SIZE = 1 << 20  # bytes of tar per zstd frame of the re-pack (a random read: ~1 ms)
# zstd level -1: on the synthetic tar, 0.91 of the tar's bytes at ~930 MB/s of compression and
# ~1,400 MB/s of decompression on one core here; level 1: 0.73 at ~520 and ~620 MB/s
REPACK_LEVEL, REPACK_THREADS = -1, 2
# a frame is stored as it is (raw) when compression keeps more than RAW_ABOVE of its bytes: the
# band files barely compress at level -1 (the real sample patch's S2 files: 0.94, its S1 files:
# 1.00; the synthetic ones 0.98 and 1.00), and a raw frame costs no compression in the pass and
# no decompression in the decode tasks, which read just the bytes they need. One frame in
# PROBE_EVERY is compressed to see whether compression pays; the next block follows its verdict
RAW_ABOVE, PROBE_EVERY = 0.9, 16
READ_SIZE = 1 << 20  # bytes of tar decompressed per read: what a fault in the stream can hide
INDEX_VERSION = 5  # 5: raw frames; 4: JSON inlined; 3: sorted by name, .tar.gz re-packed too
# rapidgzip's threads per .tar.gz, two tarballs (S1, S2) indexed side by side: its parallel
# inflate decodes a chunk without the window before it by a decoder of its own, slower than the
# ISA-L inflate of one thread; at 2 threads it took twice the CPU for less speed on the
# synthetic S2 tarball here (327 MB/s of tar against 371), so it is used from 4 threads a stream
GZIP_THREADS = (os.cpu_count() or 1) // 2 if (os.cpu_count() or 1) >= 8 else 1
# compressed bytes per rapidgzip chunk (its default): a corrupt block loses the chunk it is in
GZIP_CHUNK = 4 << 20
# rapidgzip names where its inflate failed; a failure this close to the end of the compressed
# bytes is the end of a partial download, not a corrupt block
_FAILED_AT = re.compile(r"from offset (\d+) B")
TAIL = 1 << 20
# members whose content the index keeps: the discovery reads every v1 patch folder's JSON (S1-S2
# pairing, labels), which would otherwise decompress every frame of the re-pack once more
INLINED, INLINED_SIZE = (".json",), 64 << 10


class NotATarballError(ValueError):
    """A file named as a tarball that is not one (or holds no top folder)."""


class TarballCut(Exception):
    """The tarball's data ends or breaks before its end (raised inside the index pass)."""


class Counted:
    """A tar stream's bytes in reads of :data:`READ_SIZE` (a callable: the next read, b"" at
    its end; the last may be shorter), counted, with each passed on to ``sink`` (the zstd
    re-pack); :class:`TarballCut` when the stream beneath fails on its data. A storage error of
    the tarball's file (``raw``) passes as it is, also when the decompressor reported it as its
    own (rapidgzip reads from threads of its own).

    Each read fills a buffer that is used again (the sink's, :meth:`FrameWriter.buffer`, else
    one of its own): a new ``bytes`` object a read took fresh pages from the kernel each time
    (``read`` of the 20,000-pair S2 tar.zst: 4.1 s, 1.7 s of it in the kernel; ``readinto``
    one buffer: 2.6 s). What is read is valid until the next read (:class:`Chunks` copies out
    what it keeps)."""

    def __init__(self, stream, raw: Seekable, sink: FrameWriter | None = None) -> None:
        self.stream, self.raw, self.sink, self.pos = stream, raw, sink, 0
        self.own = bytearray(READ_SIZE) if sink is None else None

    def __call__(self) -> bytes | bytearray:
        buffer = self.own if self.sink is None else self.sink.buffer()
        try:
            filled = self._fill(buffer)
        except StorageReadError:
            raise  # the storage's: retried by the job, never a property of the data
        except (OSError, ValueError, zlib.error, EOFError, pa.ArrowInvalid) as e:
            if self.raw.failure is not None:
                raise self.raw.failure from e
            raise TarballCut(str(e)) from e  # the decompressor's: the data is cut or corrupt
        data = buffer if filled == READ_SIZE else bytes(memoryview(buffer)[:filled])
        self.pos += filled
        if self.sink is not None:
            self.sink.write(data)
        return data

    def _fill(self, buffer: bytearray) -> int:
        """Read into ``buffer`` until it is full or the stream ends; how many bytes were read."""
        view, filled = memoryview(buffer), 0
        while filled < len(buffer):
            n = self.stream.readinto(view[filled:])
            if not n:
                break
            filled += n
        return filled


class FrameWriter:
    """Re-packs a byte stream into independent frames of :data:`FRAME_SIZE` bytes, zstd or
    raw where compression does not pay (:data:`RAW_ABOVE`, probed every :data:`PROBE_EVERY`
    frames), each compressed in a thread of its own (:data:`REPACK_THREADS`: zstd releases the
    GIL) while the pass reads on, and written in order. A context manager: leaving it stops the
    threads; :meth:`close` writes what is pending first. The buffers a whole frame was read into
    (:meth:`buffer`) are used again once the frame is written."""

    def __init__(self, out) -> None:
        self.out, self.pending, self.frames, self.written = out, bytearray(), [], 0
        self.codec = pa.Codec("zstd", compression_level=REPACK_LEVEL)
        self.pool = ThreadPoolExecutor(REPACK_THREADS, thread_name_prefix="bigearth-repack")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="bigearth-repack-write")
        self.writing: deque[Future] = deque()  # frames being compressed, then written
        self.free: list[bytearray] = []  # buffers whose frame was written
        # frames so far; the last block's probe and this one's
        self.count, self.probes = 0, deque(maxlen=2)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.writer.shutdown(wait=True, cancel_futures=True)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def buffer(self) -> bytearray:
        """A buffer of :data:`FRAME_SIZE` bytes to read the stream's next bytes into (and
        :meth:`write`): one no frame under way holds."""
        return self.free.pop() if self.free else bytearray(FRAME_SIZE)

    def write(self, data: bytes | bytearray) -> None:
        """Re-pack the stream's next bytes: a buffer of :meth:`buffer`'s that is full is
        compressed as it is, and held until its frame is written."""
        if not self.pending and len(data) == FRAME_SIZE and isinstance(data, bytearray):
            self._frame(data, data)
            return
        self.pending += data
        if isinstance(data, bytearray):  # copied: free now (the reader copies out first)
            self.free.append(data)
        while len(self.pending) >= FRAME_SIZE:
            self._frame(bytes(self.pending[:FRAME_SIZE]), None)
            del self.pending[:FRAME_SIZE]

    def close(self) -> None:
        if self.pending:
            self._frame(bytes(self.pending), None)
            self.pending = bytearray()
        while self.writing:
            self.writing.popleft().result()

    def table(self) -> pa.Table:
        """The frames written: each one's offset in the re-pack, its size there and in the tar,
        and whether it is stored raw (else one zstd frame)."""
        columns = list(zip(*self.frames, strict=True)) if self.frames else [[], [], [], []]
        types = {"at": pa.int64(), "packed": pa.int64(), "size": pa.int64(), "raw": pa.bool_()}
        return pa.table(
            {n: pa.array(v, t) for (n, t), v in zip(types.items(), columns, strict=True)}
        )

    def _frame(self, data: bytes | bytearray, held: bytearray | None) -> None:
        if self.count % PROBE_EVERY == 0:
            packed = self.pool.submit(self._pack, data)
            self.probes.append(packed)
        elif len(self.probes) < 2 or not self.probes[0].result()[1]:
            packed = self.pool.submit(self._pack, data)  # the first block, or the last paid
        else:
            packed = Future()
            packed.set_result((data, True))
        self.count += 1
        # written in order by a thread of its own: the pass reads on meanwhile
        self.writing.append(self.writer.submit(self._write, len(data), packed, held))
        while len(self.writing) > 2 * REPACK_THREADS:
            self.writing.popleft().result()

    def _pack(self, data: bytes | bytearray) -> tuple[object, bool]:
        """(the frame as stored, whether raw): zstd unless it keeps over :data:`RAW_ABOVE`."""
        # into Arrow's memory pool, which keeps its pages (a bytes object took new ones)
        compressed = self.codec.compress(data, asbytes=False)
        if compressed.size > RAW_ABOVE * len(data):
            return data, True
        return compressed, False

    def _write(self, size: int, packed: Future, held: bytearray | None) -> None:
        frame, raw = packed.result()
        self.out.write(frame)
        stored = len(frame) if raw else frame.size
        self.frames.append((self.written, stored, size, raw))
        self.written += stored
        if held is not None:
            self.free.append(held)


def scan(tarball: str, stream: Counted) -> tuple[pa.Table, dict | None]:
    """One pass over the tar stream: the table of its complete members (a file: offset of its
    data, size; a folder: -1, -1, an empty patch folder is listed as the extracted archive lists
    it; the content of those the index keeps, :data:`INLINED`), and the cut (None: none)."""
    members = MemberLog()
    walk = Walk(Chunks(stream), _inlined)
    cut, last = None, None
    try:
        for member in walk:
            last = member.name + ("/" if member.kind == "dir" else "")  # a folder's own name
            if member.kind == "file":
                members.add(member.name, member.offset, member.size, member.content)
            elif member.kind == "dir":
                members.add(member.name, -1, -1)
        walk.chunks.drain()  # to the stream's end: gzip's CRC32 is checked there
    except (TarballCut, TarFormatError, TarEnded) as e:
        if last is None and walk.current is None:
            raise NotATarballError(
                f"{tarball} is not a tar archive, or its data is corrupt from its start: {e}"
            ) from None
        # the member the cut fell in, else the last one read: its patch folder may go on
        where = walk.current or last
        corrupt = isinstance(e, TarFormatError) or not _truncated(e, stream.raw)
        cut = {"member": where, "reason": CORRUPT if corrupt else TRUNCATED, "message": str(e)}
        cut["at"] = stream.pos
    return members.table(), cut


def _inlined(name: str, size: int) -> bool:
    """Whether the index keeps the content of the file ``name`` (:data:`INLINED`)."""
    return name.endswith(INLINED) and size <= INLINED_SIZE


def _truncated(e: Exception, raw: Seekable) -> bool:
    """Whether the fault ``e`` is the end of a partial download (else a corrupt block)."""
    text = str(e).lower()
    failed_at = _FAILED_AT.search(str(e))
    if failed_at is not None:  # rapidgzip's: where in the compressed bytes
        return raw.size() - int(failed_at.group(1)) <= TAIL
    return isinstance(e, TarEnded) or any(
        s in text for s in ("unexpected end", "end of", "truncated", "premature", "eof")
    )


def _without_cut_folder(members: pa.Table, cut: dict) -> pa.Table:
    """The members less those of the patch folder the cut fell in (a folder is stored whole or
    not at all); ``cut["folders"]``: how many patch folders remain."""
    member = cut["member"]
    folder = member.rsplit("/", 1)[0] if "/" in member else None
    if folder is not None and folder.count("/") >= 1:
        names = members.column("name")
        inside = pc.or_(pc.equal(names, folder), pc.starts_with(names, folder + "/"))
        members = members.filter(pc.invert(inside))
        cut["folder"] = folder
    files = members.filter(pc.greater_equal(members.column("size"), 0)).column("name")
    in_folders = files.filter(pc.greater_equal(pc.count_substring(files, "/"), 2))
    folders = pc.replace_substring_regex(in_folders, "/[^/]*$", "")
    cut["folders"] = pc.count_distinct(folders).as_py()
    return members


def summary(members: pa.Table) -> dict:
    """The index's top folders and how many bytes of files the tar holds."""
    names, sizes = members.column("name"), members.column("size")
    tops = names.filter(pc.or_(pc.less(sizes, 0), pc.greater(pc.count_substring(names, "/"), 0)))
    top = pc.unique(pc.replace_substring_regex(tops, "/.*$", "")).to_pylist()
    tar_bytes = pc.sum(sizes.filter(pc.greater(sizes, 0))).as_py() or 0
    return {"top": sorted(top), "tar_bytes": tar_bytes}


def _decompressed(raw: Seekable, kind: str):
    """The tar stream inside a compressed tarball (``kind``: gz or zst)."""
    if kind == "gz":
        import rapidgzip

        return rapidgzip.RapidgzipFile(raw, parallelization=GZIP_THREADS, chunk_size=GZIP_CHUNK)
    return pa.CompressedInputStream(raw, "zstd")


def write_index(tarball: str, kind: str, out_dir: str) -> dict:
    """Read ``tarball`` (``kind``: tar, gz or zst) once, start to end, and write its index into
    ``out_dir``: for gz and zst ``frames.zst`` and ``frames.parquet``, ``members.parquet``,
    then ``index.json`` (last: its presence says the index is complete; returned)."""
    ofs, opath = storage.filesystem(out_dir)
    if isinstance(ofs, pa.fs.LocalFileSystem):
        ofs.create_dir(opath, recursive=True)
    raw = Seekable(open_tarball(tarball))
    meta: dict = {"version": INDEX_VERSION, "kind": kind, **stamp(tarball)}
    try:
        if kind == "tar":
            members, cut = scan(tarball, Counted(raw, raw))
        else:
            with (
                ofs.open_output_stream(f"{opath}/frames.zst", compression=None) as out,
                _decompressed(raw, kind) as tar_stream,
                FrameWriter(out) as frames,
            ):
                members, cut = scan(tarball, Counted(tar_stream, raw, frames))
                frames.close()
            with ofs.open_output_stream(f"{opath}/frames.parquet", compression=None) as out:
                pq.write_table(frames.table(), out)
    finally:
        raw.close()
    if cut is not None:
        members = _without_cut_folder(members, cut)
        log.warning("tarball %s ends early or is corrupt: %s", tarball, cut)
    meta.update(cut=cut, **summary(members))
    with ofs.open_output_stream(f"{opath}/members.parquet", compression=None) as out:
        write_members(members, out)
    with ofs.open_output_stream(f"{opath}/index.json", compression=None) as out:
        out.write(json.dumps(meta).encode())  # last: the index is complete
    return meta
