"""Official tarballs read in place: a tarball is a read-only folder tree to the rest of the ingest.

A member of tarball ``T`` is named ``T!/member/path`` (:data:`SEP`); :mod:`bigearth_spark.storage`
lists and reads such names through this module, so discovery, pairing, lists, labels,
quarantine and the lake are those of extracted folders, and every path the lake records names
the tarball and the member.

One sequential pass over a tarball (:func:`index`, :mod:`.tarball_scan`) writes its index
beside it, in ``T.index/``: the member table (name, offset in the uncompressed tar, size) and
what random access (:mod:`.tarball_reader`) needs:

* ``.tar``: nothing more, a member is a ranged read of the file;
* ``.tar.gz``/``.tgz`` and ``.tar.zst``: a gzip stream can only be entered at a seek point with
  the 32 KB window before it, and the official ``.tar.zst`` files are one zstd frame, which
  cannot be entered in the middle at all: the pass (``rapidgzip`` on every core for gzip, one
  zstd stream for zstd) re-packs the tar into independent zstd frames of ``FRAME_SIZE`` bytes
  in ``T.index/frames.zst``, and a member is decompressed from the frames that hold it.

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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import pyarrow as pa
import pyarrow.parquet as pq

from bigearth_spark import storage
from bigearth_spark.archive import tarball_files, tarball_scan
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


def is_tarball(path: str) -> bool:
    """True when ``path``'s name ends as a tarball does (:data:`SUFFIXES`), or as the first of
    its split parts (``BigEarthNet-S2.tar.gzaa``: ``split``'s names, one stream when
    concatenated; the later parts are read with it)."""
    return path.lower().endswith(SUFFIXES) or tarball_files.first_part(path) is True


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
    lower = tarball_files.whole_name(tarball).lower()
    if lower.endswith((".tar.gz", ".tgz")):
        return "gz"
    return "zst" if lower.endswith(".tar.zst") else "tar"


def _index_dir(tarball: str) -> str:
    return f"{tarball}.index"


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
    meta, table = tarball_scan.write_index(tarball, _kind(tarball), out_dir)
    _clear()
    return _from(tarball, meta, table)


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


@lru_cache(maxsize=16)
def _reader(tarball: str) -> Reader:
    return Reader(
        tarball, _loaded(tarball).kind, _index_dir(tarball), _LOADED_META[tarball].get("frames")
    )


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
