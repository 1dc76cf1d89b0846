"""The index pass over a tarball: one sequential read that records its members (name, offset
in the uncompressed tar, size), and what random access needs: gzip seek points
(``indexed_gzip``), or for a single-frame ``.tar.zst`` a re-pack into independent zstd frames.
A fault of the stream (the data ends early, or a block is corrupt) ends the pass; everything
before it is kept, less the patch folder it cut."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

from bigearth_spark import storage
from bigearth_spark.archive.tarball_files import (
    Seekable,
    StorageReadError,
    Writable,
    open_tarball,
    stamp,
)

log = logging.getLogger(__name__)

TRUNCATED, CORRUPT = "truncated_tarball", "corrupt_tarball"  # quarantine reasons of a fault
# bytes of tar between two gzip seek points (each keeps a 32 KB window: the index is ~1 % of the
# tar); the index pass inflates a span ahead, so a corrupt block also hides up to one span before it
GZIP_SPACING = 4 << 20
FRAME_SIZE = 1 << 20  # bytes of tar per zstd frame of a re-packed .tar.zst (a random read: ~1 ms)
READ_SIZE = 1 << 20  # bytes of tar decompressed per read: what a fault in the stream can hide
INDEX_VERSION = 1


class NotATarballError(ValueError):
    """A file named as a tarball that is not one (or holds no top folder)."""


class TarballCut(Exception):
    """The tarball's data ends or breaks before its end (raised inside the index pass)."""


class Counted(io.RawIOBase):
    """A read-only stream that counts the bytes read through it and keeps a copy of them in
    ``sink`` (the zstd re-pack), raising :class:`TarballCut` when the stream beneath fails on
    its data (a storage error of the file itself passes as it is)."""

    def __init__(self, stream, sink=None) -> None:
        self.stream, self.sink, self.pos = stream, sink, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            data = self.stream.read(len(b))
        except StorageReadError:
            raise  # the storage's: retried by the job, never a property of the data
        except (OSError, zlib.error, EOFError, pa.ArrowInvalid) as e:
            raise TarballCut(str(e)) from e  # the decompressor's: the data is cut or corrupt
        n = len(data)
        b[:n] = data
        self.pos += n
        if self.sink is not None:
            self.sink.write(data)
        return n


class FrameWriter:
    """Re-packs a byte stream into independent zstd frames of :data:`FRAME_SIZE` bytes."""

    def __init__(self, out) -> None:
        self.out, self.pending, self.frames, self.written = out, bytearray(), [], 0
        self.codec = pa.Codec("zstd", compression_level=1)

    def write(self, data: bytes) -> None:
        self.pending += data
        while len(self.pending) >= FRAME_SIZE:
            self._frame(bytes(self.pending[:FRAME_SIZE]))
            del self.pending[:FRAME_SIZE]

    def close(self) -> None:
        if self.pending:
            self._frame(bytes(self.pending))
            self.pending = bytearray()

    def _frame(self, data: bytes) -> None:
        packed = self.codec.compress(data, asbytes=True)
        self.out.write(packed)
        self.frames.append((self.written, len(packed), len(data)))
        self.written += len(packed)


def scan(tarball: str, stream: Counted) -> tuple[dict[str, tuple[int, int]], dict | None]:
    """One pass over the tar stream: its complete members, and the cut (None: none)."""
    members: dict[str, tuple[int, int]] = {}
    last: tarfile.TarInfo | None = None
    cut = None
    try:
        with tarfile.open(fileobj=io.BufferedReader(stream, READ_SIZE), mode="r|") as tar:
            for info in tar:  # the next header is read once the previous data was skipped
                _add(members, last)
                last = info
            _add(members, last)
            last = None
    except (TarballCut, tarfile.ReadError, EOFError) as e:
        if not members and last is None:
            raise NotATarballError(f"{tarball} is not a tar archive: {e}") from None
        where = last.name if last is not None else "after the last complete member"
        reason = TRUNCATED if _truncated(e) else CORRUPT
        cut = {"member": where, "reason": reason, "message": str(e), "at": stream.pos}
    return members, cut


def _add(members: dict[str, tuple[int, int]], info: tarfile.TarInfo | None) -> None:
    """Record a complete member: a file (offset of its data, size) or a folder (-1, -1: an
    empty patch folder is listed as the extracted archive lists it)."""
    if info is not None and (info.isfile() or info.isdir()):
        name = info.name.rstrip("/")
        members[name] = (info.offset_data, info.size) if info.isfile() else (-1, -1)


def _truncated(e: Exception) -> bool:
    text = str(e).lower()
    return isinstance(e, EOFError) or any(
        s in text for s in ("unexpected end", "end of", "truncated", "premature", "eof")
    )


def _without_cut_folder(members: dict[str, tuple[int, int]], cut: dict) -> int:
    """Drop the members of the patch folder the cut fell in (a folder is stored whole or not
    at all); return how many patch folders remain."""
    member = cut["member"]
    folder = member.rsplit("/", 1)[0] if "/" in member else None
    if folder is not None and folder.count("/") >= 1:
        for name in [n for n in members if n == folder or n.startswith(folder + "/")]:
            del members[name]
        cut["folder"] = folder
    return len(
        {n.rsplit("/", 1)[0] for n, (_, z) in members.items() if z >= 0 and n.count("/") >= 2}
    )


def write_index(tarball: str, kind: str, out_dir: str) -> tuple[dict, pa.Table]:
    """Read ``tarball`` (``kind``: tar, gz or zst) once, start to end, and write its index into
    ``out_dir``: ``members.parquet``, ``gzip.idx`` or ``frames.zst``, then ``index.json`` (last:
    its presence says the index is complete). Returns (index.json's content, the members)."""
    ofs, opath = storage.filesystem(out_dir)
    if isinstance(ofs, pa.fs.LocalFileSystem):
        ofs.create_dir(opath, recursive=True)
    raw = Seekable(open_tarball(tarball))
    meta: dict = {"version": INDEX_VERSION, "kind": kind, **stamp(tarball)}
    try:
        if kind == "gz":
            import indexed_gzip

            gz = indexed_gzip.IndexedGzipFile(
                fileobj=raw, spacing=GZIP_SPACING, buffer_size=READ_SIZE, readbuf_size=1 << 16
            )
            try:
                members, cut = scan(tarball, Counted(gz))
                with ofs.open_output_stream(f"{opath}/gzip.idx", compression=None) as out:
                    gz.export_index(fileobj=Writable(out))
            finally:
                gz.close()
        elif kind == "zst":
            with ofs.open_output_stream(f"{opath}/frames.zst", compression=None) as out:
                frames = FrameWriter(out)
                unzstd = pa.CompressedInputStream(raw, "zstd")
                members, cut = scan(tarball, Counted(unzstd, frames))
                frames.close()
            meta["frames"] = frames.frames
        else:
            members, cut = scan(tarball, Counted(raw))
    finally:
        raw.close()
    if cut is not None:
        cut["folders"] = _without_cut_folder(members, cut)
        log.warning("tarball %s ends early or is corrupt: %s", tarball, cut)
    meta["cut"] = cut
    names = sorted(members, key=lambda n: members[n][0])
    table = pa.table(
        {
            "name": names,
            "offset": [members[n][0] for n in names],
            "size": [members[n][1] for n in names],
        }
    )
    with ofs.open_output_stream(f"{opath}/members.parquet", compression=None) as out:
        pq.write_table(table, out, compression="zstd")
    with ofs.open_output_stream(
        f"{opath}/index.json", compression=None
    ) as out:  # last: the index is complete
        out.write(json.dumps(meta).encode())
    return meta, table
