"""Official tarballs read in place: a tarball is a read-only folder tree to the rest of the ingest.

A member of tarball ``T`` is named ``T!/member/path`` (:data:`SEP`); :mod:`bigearth_spark.storage`
lists and reads such names through this module, so discovery, pairing, lists, labels,
quarantine and the lake are those of extracted folders, and every path the lake records names
the tarball and the member.

One sequential pass over a tarball (:func:`index`) writes its index beside it, in ``T.index/``:
the member table (name, offset in the uncompressed tar, size) and what random access needs:

* ``.tar``: nothing more, a member is a ranged read of the file;
* ``.tar.gz``/``.tgz``: the seek points of the gzip stream (``indexed_gzip``, one every
  :data:`GZIP_SPACING` bytes of tar): a member is decompressed from the nearest point before it;
* ``.tar.zst``: the official files are one zstd frame, which cannot be entered in the middle:
  the pass re-packs the tar into independent frames of :data:`FRAME_SIZE` bytes (zstd level 1)
  in ``T.index/frames.zst``, and a member is decompressed from the frames that hold it.

Later runs (and every executor) load the index instead of reading the tarball again; it is
rebuilt when the tarball's size or modification time changed (a re-download). A tarball that
ends early (a partial download) or holds a corrupt block is indexed up to the fault: the patch
folder the fault cut is left out entirely, and :attr:`TarIndex.cut` says where and why, for the
quarantine and the job's report.
"""

from __future__ import annotations

import bisect
import io
import json
import logging
import os
import re
import tarfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bigearth_spark import storage

log = logging.getLogger(__name__)

TRUNCATED, CORRUPT = "truncated_tarball", "corrupt_tarball"  # quarantine reasons of a fault
SEP = "!/"  # between a tarball and a member: T!/BigEarthNet-v1.0/S2A_.../S2A_..._B02.tif
SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst")
_PART = re.compile(r"(\.tar|\.tar\.gz|\.tgz|\.tar\.zst)([a-z]{2})$", re.IGNORECASE)  # split's
_SUFFIX = re.compile(r"[a-z]{2}")  # a split part's suffix
# bytes of tar between two gzip seek points (each keeps a 32 KB window: the index is ~1 % of the
# tar); the index pass inflates a span ahead, so a corrupt block also hides up to one span before it
GZIP_SPACING = 4 << 20
FRAME_SIZE = 1 << 20  # bytes of tar per zstd frame of a re-packed .tar.zst (a random read: ~1 ms)
INDEX_VERSION = 1
MAX_SPAN = 8 << 20  # a folder spread wider in the tar is read member by member
SPANS_KEPT = 64  # patch folders kept decompressed per tarball and process (~300 KB each)
READ_SIZE = 1 << 20  # bytes of tar decompressed per read: what a fault in the stream can hide


class NotATarballError(ValueError):
    """A file named as a tarball that is not one (or holds no top folder)."""


class StorageReadError(OSError):
    """A read of a tarball's own bytes failed (not its content): retried, never recorded."""


class TarballCut(Exception):
    """The tarball's data ends or breaks before its end (raised inside the index pass)."""


def is_tarball(path: str) -> bool:
    """True when ``path``'s name ends as a tarball does (:data:`SUFFIXES`), or as the first of
    its split parts (``BigEarthNet-S2.tar.gzaa``: ``split``'s names, one stream when
    concatenated; the later parts are read with it)."""
    if path.lower().endswith(SUFFIXES):
        return True
    part = _PART.search(path)
    return part is not None and part.group(2).lower() == "aa"


def _whole_name(tarball: str) -> str:
    """The name of the tarball that split parts make (the name itself for one file)."""
    part = _PART.search(tarball)
    return tarball[: part.start(2)] if part else tarball


def parts(tarball: str) -> list[str]:
    """The files of ``tarball`` in stream order: itself, or its split parts (``…aa``, ``…ab``…
    beside it)."""
    if not _PART.search(tarball):
        return [tarball]
    whole = _whole_name(tarball)
    folder, name = whole.rsplit("/", 1)
    return sorted(
        e.path
        for e in storage.list_dir(folder)
        if not e.is_dir and e.name[: len(name)] == name and _SUFFIX.fullmatch(e.name[len(name) :])
    )


def split(uri: str) -> tuple[str, str] | None:
    """(tarball, member path) of a member name ``T!/member``; None for any other path."""
    at = uri.find(SEP)
    if at < 0 or not is_tarball(uri[:at]):
        return None
    return uri[:at], uri[at + len(SEP) :].strip("/")


def member_uri(tarball: str, member: str) -> str:
    """The name of ``member`` of ``tarball``."""
    return f"{tarball}{SEP}{member}"


@dataclass
class TarIndex:
    """A tarball's members (name → offset in the tar, size) and folders (path → entries)."""

    tarball: str
    kind: str  # tar | gz | zst
    members: dict[str, tuple[int, int]]
    cut: dict | None = None  # {"member": ..., "reason": ..., "message": ..., "folders": n}
    folders: dict[str, dict[str, bool]] = field(default_factory=dict)  # path → {name: is_dir}
    _spans: dict[str, tuple[int, int]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name, (_, size) in self.members.items():
            parts = name.split("/")
            for depth in range(len(parts)):
                parent = "/".join(parts[:depth])
                is_dir = depth < len(parts) - 1 or size < 0
                self.folders.setdefault(parent, {})[parts[depth]] = is_dir
            if size < 0:
                self.folders.setdefault(name, {})
        self.folders.setdefault("", {})

    def span(self, member: str) -> tuple[int, int]:
        """(start, end) in the tar of the files of ``member``'s folder (contiguous in a tarball
        written folder by folder; else the member alone)."""
        if self._spans is None:
            spans: dict[str, list[int]] = {}
            for name, (offset, size) in self.members.items():
                if size >= 0:
                    span = spans.setdefault(name.rsplit("/", 1)[0], [offset, offset + size])
                    span[0], span[1] = min(span[0], offset), max(span[1], offset + size)
            self._spans = {k: (a, b) for k, (a, b) in spans.items() if b - a <= MAX_SPAN}
        offset, size = self.members[member]
        return self._spans.get(member.rsplit("/", 1)[0], (offset, offset + size))

    @property
    def top(self) -> list[str]:
        """The folders at the top of the tarball."""
        return sorted(n for n, d in self.folders[""].items() if d)

    def list_dir(self, member: str) -> list[storage.Entry]:
        """Entries of folder ``member`` (``""``: the top), sorted by name."""
        entries = self.folders.get(member.strip("/"))
        if entries is None:
            raise FileNotFoundError(f"no such folder in {self.tarball}: {member}")
        base = member.strip("/")
        return [
            storage.Entry(name, member_uri(self.tarball, f"{base}/{name}" if base else name), d)
            for name, d in sorted(entries.items())
        ]


def _kind(tarball: str) -> str:
    lower = _whole_name(tarball).lower()
    if lower.endswith((".tar.gz", ".tgz")):
        return "gz"
    return "zst" if lower.endswith(".tar.zst") else "tar"


def _index_dir(tarball: str) -> str:
    return f"{tarball}.index"


def _stamp(tarball: str) -> dict:
    """What identifies the tarball's bytes: its files' sizes and modification times."""
    sizes, times = [], []
    for part in parts(tarball):
        fs, path = storage.filesystem(part)
        info = fs.get_file_info(path)
        if info.type != pa.fs.FileType.File:
            raise FileNotFoundError(f"no such tarball: {part}")
        sizes.append(info.size)
        times.append(info.mtime_ns)
    return {"size": sizes, "mtime_ns": times}


def _open(tarball: str):
    """The tarball's bytes as one random-access file (its split parts concatenated)."""
    files = []
    for part in parts(tarball):
        fs, path = storage.filesystem(part)
        files.append(fs.open_input_file(path))
    return files[0] if len(files) == 1 else _Concatenated(files)


class _Concatenated:
    """Random-access files read as one (pyarrow's ``read``/``seek``/``tell``/``read_at``, which
    return bytes)."""

    def __init__(self, files: list) -> None:
        self.files, self.pos = files, 0
        self.starts = [0]
        for f in files:
            self.starts.append(self.starts[-1] + f.size())

    def size(self) -> int:
        return self.starts[-1]

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset + (0, self.pos, self.size())[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int) -> bytes:
        data = self.read_at(n, self.pos)
        self.pos += len(data)
        return data

    def read_at(self, n: int, offset: int) -> bytes:
        out, end = [], min(offset + n, self.size())
        while offset < end:
            i = bisect.bisect_right(self.starts, offset) - 1
            take = min(end, self.starts[i + 1]) - offset
            out.append(bytes(self.files[i].read_at(take, offset - self.starts[i])))
            offset += take
        return b"".join(out)


class _Counted(io.RawIOBase):
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


class _FrameWriter:
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


def _scan(tarball: str, stream: _Counted) -> tuple[dict[str, tuple[int, int]], dict | None]:
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


def build_index(tarball: str) -> TarIndex:
    """Read ``tarball`` once, start to end, and write its index beside it (see the module)."""
    kind, stamp = _kind(tarball), _stamp(tarball)
    out_dir = _index_dir(tarball)
    ofs, opath = storage.filesystem(out_dir)
    if isinstance(ofs, pa.fs.LocalFileSystem):
        ofs.create_dir(opath, recursive=True)
    raw = _Seekable(_open(tarball))
    meta: dict = {"version": INDEX_VERSION, "kind": kind, **stamp}
    try:
        if kind == "gz":
            import indexed_gzip

            gz = indexed_gzip.IndexedGzipFile(
                fileobj=raw, spacing=GZIP_SPACING, buffer_size=READ_SIZE, readbuf_size=1 << 16
            )
            try:
                members, cut = _scan(tarball, _Counted(gz))
                with ofs.open_output_stream(f"{opath}/gzip.idx", compression=None) as out:
                    gz.export_index(fileobj=_Writable(out))
            finally:
                gz.close()
        elif kind == "zst":
            with ofs.open_output_stream(f"{opath}/frames.zst", compression=None) as out:
                frames = _FrameWriter(out)
                unzstd = pa.CompressedInputStream(raw, "zstd")
                members, cut = _scan(tarball, _Counted(unzstd, frames))
                frames.close()
            meta["frames"] = frames.frames
        else:
            members, cut = _scan(tarball, _Counted(raw))
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
    _clear()
    return _from(tarball, meta, table)


class _Writable(io.RawIOBase):
    """A pyarrow output stream as the Python file object ``indexed_gzip`` writes to."""

    def __init__(self, out) -> None:
        self.out = out

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.out.write(bytes(b))
        return len(b)


def _from(tarball: str, meta: dict, table: pa.Table) -> TarIndex:
    cols = [table.column(c).to_pylist() for c in ("name", "offset", "size")]
    members = {n: (o, z) for n, o, z in zip(*cols, strict=True)}
    return TarIndex(tarball, meta["kind"], members, meta.get("cut"))


def _read_meta(tarball: str) -> dict | None:
    try:
        meta = json.loads(storage.read_bytes(f"{_index_dir(tarball)}/index.json"))
    except FileNotFoundError:
        return None
    return meta if meta.get("version") == INDEX_VERSION else None


def index(tarball: str) -> TarIndex:
    """``tarball``'s index: the one beside it when it matches the tarball's bytes, else built
    now (:func:`build_index`)."""
    meta = _read_meta(tarball)
    if meta is not None and {k: meta[k] for k in ("size", "mtime_ns")} == _stamp(tarball):
        return _loaded(tarball)
    return build_index(tarball)


def revalidate() -> None:
    """Forget the indexes (and readers) this process loaded whose tarball was indexed again
    since (a re-download): a task calls it first, since Spark reuses its Python workers."""
    if any(_read_meta(t) != meta for t, meta in list(_LOADED_META.items())):
        _clear()


_LOADED_META: dict[str, dict | None] = {}  # tarball → the index.json its loaded index came from


def index_all(tarballs: list[str]) -> list[TarIndex]:
    """:func:`index` of each of ``tarballs``, side by side (one thread each: a pass is one
    decompression stream, which releases the GIL; S1 and S2 tarballs take two cores)."""
    if len(tarballs) < 2:
        return [index(t) for t in tarballs]
    with ThreadPoolExecutor(len(tarballs), thread_name_prefix="bigearth-index") as pool:
        return list(pool.map(index, tarballs))


@lru_cache(maxsize=16)
def _loaded(tarball: str) -> TarIndex:
    """The stored index of ``tarball`` (once per process)."""
    meta = _read_meta(tarball)
    if meta is None:  # the driver indexes every tarball before any task reads one
        raise FileNotFoundError(f"{tarball} has no index beside it ({_index_dir(tarball)})")
    _LOADED_META[tarball] = meta
    table = pq.read_table(
        pa.BufferReader(storage.read_bytes(f"{_index_dir(tarball)}/members.parquet"))
    )
    return _from(tarball, meta, table)


class _Reader:
    """Random access to the tar inside one tarball (thread-safe; one per process)."""

    def __init__(self, tarball: str, kind: str) -> None:
        self.tarball, self.kind, self.lock = tarball, kind, threading.Lock()
        self.file = _open(tarball)
        if kind == "gz":
            import indexed_gzip

            self.gz = indexed_gzip.IndexedGzipFile(
                fileobj=_Seekable(self.file), buffer_size=READ_SIZE
            )
            idx = storage.read_bytes(f"{_index_dir(tarball)}/gzip.idx")
            self.gz.import_index(fileobj=io.BytesIO(idx))
        elif kind == "zst":
            meta = _read_meta(tarball) or {}
            frames = np.array(meta.get("frames") or [], dtype=np.int64).reshape(-1, 3)
            self.frames = frames
            self.starts = np.concatenate([[0], np.cumsum(frames[:, 2])]).tolist()
            ifs, ipath = storage.filesystem(f"{_index_dir(tarball)}/frames.zst")
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
                data = self._decompressed(start, end - start)
                self.spans[start] = data
                while len(self.spans) > SPANS_KEPT:
                    self.spans.popitem(last=False)
            else:
                self.spans.move_to_end(start)
        return data[offset - start : offset - start + size]

    def _decompressed(self, offset: int, size: int) -> bytes:
        if self.kind == "gz":
            self.gz.seek(offset)  # from the nearest seek point, or on from here if ahead
            return self.gz.read(size)
        return self._read_frames(offset, size)

    def _read_frames(self, offset: int, size: int) -> bytes:
        parts, end = [], offset + size
        frame = bisect.bisect_right(self.starts, offset) - 1
        while offset < end:
            data = self._frame(frame)
            start = self.starts[frame]
            take = data[offset - start : end - start]
            parts.append(take)
            offset += len(take)
            frame += 1
        return b"".join(parts)

    def _frame(self, frame: int) -> bytes:
        if self.cached[0] != frame:
            at, packed, size = (int(v) for v in self.frames[frame])
            data = self.packed.read_at(packed, at)
            self.cached = (frame, self.codec.decompress(data, size, asbytes=True))
        return self.cached[1]


class _Seekable(io.RawIOBase):
    """A pyarrow random-access file as a seekable Python file object whose failed reads raise
    :class:`StorageReadError` (a decompressor above it raises its own errors)."""

    def __init__(self, f) -> None:
        self.f = f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def readinto(self, b) -> int:
        try:
            data = self.f.read(len(b))
        except OSError as e:
            raise StorageReadError(f"reading the tarball failed: {e}") from e
        b[: len(data)] = data
        return len(data)


@lru_cache(maxsize=16)
def _reader(tarball: str) -> _Reader:
    return _Reader(tarball, _loaded(tarball).kind)


def list_dir(uri: str) -> list[storage.Entry]:
    """Entries of the folder ``T!/member`` inside a tarball."""
    tarball, member = split(uri)
    return _loaded(tarball).list_dir(member)


def is_dir(uri: str) -> bool:
    """True for a folder inside a tarball."""
    tarball, member = split(uri)
    return member in _loaded(tarball).folders


def is_file(uri: str) -> bool:
    """True for a complete file inside a tarball."""
    tarball, member = split(uri)
    return _loaded(tarball).members.get(member, (0, -1))[1] >= 0


def read_bytes(uri: str) -> bytes:
    """The content of the member ``T!/member``."""
    tarball, member = split(uri)
    index = _loaded(tarball)
    found = index.members.get(member)
    if found is None or found[1] < 0:
        raise FileNotFoundError(f"no such file in {tarball}: {member}")
    return _reader(tarball).read(*found, index.span(member))


def cut_message(uri: str) -> str:
    """What the quarantine and the job say of the fault of the tarball of member ``uri``."""
    tarball, _ = split(uri)
    cut = _loaded(tarball).cut or {}
    what = "ends" if cut.get("reason") == TRUNCATED else "is corrupt"
    return (
        f"download incomplete: {tarball} {what} inside member {cut.get('member')} "
        f"({cut.get('message')}); the {cut.get('folders')} patch folders before it were read, "
        f"the folder of that member was not: download the tarball again and re-run the ingest"
    )


def tarballs_in(entries: list[storage.Entry]) -> Iterator[storage.Entry]:
    """The tarballs among a folder's entries."""
    return (e for e in entries if not e.is_dir and is_tarball(e.path))


def _clear() -> None:
    _loaded.cache_clear()
    _reader.cache_clear()
    _LOADED_META.clear()


os.register_at_fork(after_in_child=_clear)  # open files and locks do not survive a fork
