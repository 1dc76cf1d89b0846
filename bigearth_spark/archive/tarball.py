"""Official tarballs read in place: a tarball is a read-only folder tree to the rest of the ingest.

A member of tarball ``T`` is named ``T!/member/path`` (:data:`SEP`); :mod:`bigearth_spark.storage`
lists and reads such names through this module, so discovery, pairing, lists, labels,
quarantine and the lake are those of extracted folders, and every path the lake records names
the tarball and the member.

One sequential pass over a tarball (:func:`index`, :mod:`.tarball_scan`) writes its index
beside it, in ``T.index/``: the member table (name, offset in the uncompressed tar, size; sorted
by name and looked up a folder at a time, :mod:`.tarball_members`) and what random access
(:mod:`.tarball_reader`) needs:

* ``.tar``: nothing more, a member is a ranged read of the file;
* ``.tar.gz``/``.tgz`` and ``.tar.zst``: a gzip stream can only be entered at a seek point with
  the 32 KB window before it, and the official ``.tar.zst`` files are one zstd frame, which
  cannot be entered in the middle at all: the pass (``rapidgzip`` for gzip, in parallel on
  many cores; one zstd stream for zstd) re-packs the tar into independent frames of
  ``FRAME_SIZE`` bytes in ``T.index/frames.zst`` (zstd, or raw where compression does not pay),
  and a member is read from the frames that hold it.

Split parts (``…tar.gzaa``, ``…ab``) are one stream (:mod:`.tarball_files`).

Later runs (and every executor) load the index instead of reading the tarball again; it is
rebuilt when the tarball's size or modification time changed (a re-download). A tarball that
ends early (a partial download) or holds a corrupt block is indexed up to the fault: the patch
folder the fault cut is left out entirely, and :attr:`TarIndex.cut` says where and why, for the
quarantine and the job's report.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa

from bigearth_spark import storage
from bigearth_spark.archive import tarball_files, tarball_members, tarball_scan
from bigearth_spark.archive.tarball_members import MemberTable
from bigearth_spark.archive.tarball_reader import Reader
from bigearth_spark.archive.tarball_scan import (  # noqa: F401 (this module's public names)
    CORRUPT,
    INDEX_VERSION,
    TRUNCATED,
    NotATarballError,
)

SEP = "!/"  # between a tarball and a member: T!/BigEarthNet-v1.0/S2A_.../S2A_..._B02.tif
SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst")
MAX_SPAN = 8 << 20  # a folder spread wider in the tar is read member by member
FOLDERS_KEPT = 256  # folders looked up kept per tarball and process


def is_tarball(path: str) -> bool:
    """True when ``path``'s name ends as a tarball does (:data:`SUFFIXES`), or as the first of
    its split parts (``BigEarthNet-S2.tar.gzaa``: ``split``'s names, one stream when
    concatenated; the later parts are read with it)."""
    return path.lower().endswith(SUFFIXES) or tarball_files.first_part(path) is True


@lru_cache(maxsize=4096)  # a task asks of each of its members' names several times
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
class Folder:
    """One folder of a tarball: its entries (name → is a folder), its files (name → offset in
    the tar, size), the content of those the index keeps, and the span of the tar its files
    lie in (None: wider than :data:`MAX_SPAN`, each file is read alone)."""

    entries: dict[str, bool]
    files: dict[str, tuple[int, int]]
    inlined: dict[str, bytes]
    span: tuple[int, int] | None


class TarIndex:
    """A tarball's index: its kind, top folders, fault, and member table (looked up a folder at
    a time, :data:`FOLDERS_KEPT` folders kept; thread-safe)."""

    def __init__(self, tarball: str, meta: dict, table: MemberTable) -> None:
        self.tarball, self.kind, self.table = tarball, meta["kind"], table
        self.top: list[str] = meta["top"]  # the folders at the top of the tarball
        self.cut: dict | None = meta.get("cut")  # {"member", "reason", "message", "folders"}
        self.tar_bytes: int = meta["tar_bytes"]  # the members' bytes
        self.lock = threading.Lock()
        self.folders: OrderedDict[str, Folder | None] = OrderedDict()

    def members(self) -> Iterator[tarball_members.Member]:
        """Every member (name, offset, size: -1 for a folder, content kept or None), by name."""
        return self.table.rows("")

    def folder(self, path: str) -> Folder | None:
        """Folder ``path`` (``""``: the top); None when the tarball holds no such folder."""
        with self.lock:
            if path in self.folders:
                self.folders.move_to_end(path)
                return self.folders[path]
        found = self._read_folder(path)
        with self.lock:
            self.folders[path] = found
            while len(self.folders) > FOLDERS_KEPT:
                self.folders.popitem(last=False)
        return found

    def _read_folder(self, path: str) -> Folder | None:
        prefix = f"{path}/" if path else ""
        entries: dict[str, bool] = {}
        files: dict[str, tuple[int, int]] = {}
        inlined: dict[str, bytes] = {}
        # every name below path: from "path/" to "path0" ("0" follows "/")
        for name, offset, size, data in self.table.rows(prefix, f"{path}0" if path else None):
            child, sep, _ = name[len(prefix) :].partition("/")
            if sep or size < 0:
                entries[child] = True
                continue
            entries[child], files[child] = False, (offset, size)
            if data is not None:
                inlined[child] = data
        if not entries and path and (self.table.get(path) or (0, 0, 0))[2] >= 0:
            return None  # no member below path, and no empty folder of that name
        ends = [(o, o + z) for o, z in files.values()]
        span = (min(a for a, _ in ends), max(b for _, b in ends)) if ends else None
        wide = span is None or span[1] - span[0] > MAX_SPAN
        return Folder(dict(sorted(entries.items())), files, inlined, None if wide else span)

    def list_dir(self, member: str) -> list[storage.Entry]:
        """Entries of folder ``member`` (``""``: the top), sorted by name."""
        base = member.strip("/")
        found = self.folder(base)
        if found is None:
            raise FileNotFoundError(f"no such folder in {self.tarball}: {member}")
        return [
            storage.Entry(name, member_uri(self.tarball, f"{base}/{name}" if base else name), d)
            for name, d in found.entries.items()
        ]

    def file(self, member: str) -> tuple[int, int, tuple[int, int], bytes | None] | None:
        """(offset, size, span, content) of file ``member``: the span of its folder's files (or
        of the file alone), the content when the index keeps it (None: no such file)."""
        parent, _, name = member.rpartition("/")
        found = self.folder(parent)
        where = found.files.get(name) if found is not None else None
        if where is None:
            return None
        offset, size = where
        return offset, size, found.span or (offset, offset + size), found.inlined.get(name)


def _kind(tarball: str) -> str:
    lower = tarball_files.whole_name(tarball).lower()
    if lower.endswith((".tar.gz", ".tgz")):
        return "gz"
    return "zst" if lower.endswith(".tar.zst") else "tar"


def _index_dir(tarball: str) -> str:
    return f"{tarball}.index"


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
    if meta is not None and {k: meta[k] for k in ("size", "mtime_ns")} == tarball_files.stamp(
        tarball
    ):
        return _loaded(tarball)
    return build_index(tarball)


def build_index(tarball: str) -> TarIndex:
    """Read ``tarball`` once, start to end, and write its index beside it
    (:func:`tarball_scan.write_index`)."""
    out_dir = _index_dir(tarball)
    fs, path = storage.filesystem(out_dir)
    if isinstance(fs, pa.fs.LocalFileSystem):  # object stores have no folders to create
        fs.create_dir(path, recursive=True)
    tarball_scan.write_index(tarball, _kind(tarball), out_dir)
    _clear()
    return _loaded(tarball)


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
    return TarIndex(tarball, meta, MemberTable(f"{_index_dir(tarball)}/members.parquet"))


@lru_cache(maxsize=16)
def _reader(tarball: str) -> Reader:
    return Reader(tarball, _loaded(tarball).kind, _index_dir(tarball))


def list_dir(uri: str) -> list[storage.Entry]:
    """Entries of the folder ``T!/member`` inside a tarball."""
    tarball, member = split(uri)
    return _loaded(tarball).list_dir(member)


def list_names(uri: str) -> set[str]:
    """The names in the folder ``T!/member`` inside a tarball."""
    tarball, member = split(uri)
    found = _loaded(tarball).folder(member.strip("/"))
    if found is None:
        raise FileNotFoundError(f"no such folder in {tarball}: {member}")
    return set(found.entries)


def is_dir(uri: str) -> bool:
    """True for a folder inside a tarball."""
    tarball, member = split(uri)
    return _loaded(tarball).folder(member) is not None


def is_file(uri: str) -> bool:
    """True for a complete file inside a tarball."""
    tarball, member = split(uri)
    return _loaded(tarball).file(member) is not None


def read_bytes(uri: str) -> bytes:
    """The content of the member ``T!/member``."""
    tarball, member = split(uri)
    found = _loaded(tarball).file(member)
    if found is None:
        raise FileNotFoundError(f"no such file in {tarball}: {member}")
    offset, size, span, content = found
    return content if content is not None else _reader(tarball).read(offset, size, span)


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
