"""Archive roots: which type of BigEarthNet archive a folder is, and where its patches live.

Pure Python (no Spark), on paths or URIs (:mod:`bigearth_spark.storage`). Listing a root is cheap
(one listing); listing the inside of patch or tile folders is left to the Spark executors (see
:mod:`bigearth_spark.etl.discover`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from bigearth_spark import storage
from bigearth_spark.archive import names, tarball

V1_S2, V1_S1, V2 = "v1_s2", "v1_s1", "v2"
V2_S2_DIR, V2_S1_DIR, V2_REF_DIR = "BigEarthNet-S2", "BigEarthNet-S1", "Reference_Maps"
V2_METADATA = "metadata.parquet"
V2_FLAGGED_METADATA = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
# v2 sub-folder → the folder type of its patches (see archive.reader.read_patch)
V2_PARTS = {V2_S2_DIR: "v2_s2", V2_S1_DIR: "v2_s1", V2_REF_DIR: "v2_reference_map"}
_SNIFF = 64  # entries looked at to recognise a flat v1 root


class NotAnArchiveError(ValueError):
    """A folder that holds no recognisable BigEarthNet archive."""


@dataclass(frozen=True)
class ArchiveRoot:
    """A recognised archive root, with the entries its detection listed (listed once: a v1
    root holds ~590,000 folders, an object store's listing of them ~590 requests)."""

    archive_type: str  # V1_S2 | V1_S1 | V2
    path: str
    entries: tuple[storage.Entry, ...] = field(default=(), compare=False, repr=False)


def _sniff_flat(entries: list[storage.Entry]) -> str | None:
    seen = 0
    for entry in entries:
        if not entry.is_dir:
            continue
        if names.is_v1_s2(entry.name):
            return V1_S2
        if names.is_s1(entry.name):
            return V1_S1
        seen += 1
        if seen >= _SNIFF:
            break
    return None


def detect_root(path: str | os.PathLike[str]) -> ArchiveRoot | None:
    """Recognise ``path`` (a path or URI) as a v1 S2, v1 S1 or v2 archive root (None if it is
    none of them)."""
    path = storage.normalize(os.fspath(path))
    try:
        entries = tuple(storage.list_dir(path))
    except (FileNotFoundError, NotADirectoryError):
        return None
    top = {e.name: e.is_dir for e in entries}
    packed = {e.name.split(".tar")[0] for e in tarball.tarballs_in(list(entries))}
    if any(top.get(d) or d in packed for d in V2_PARTS) or top.get(V2_METADATA) is False:
        return ArchiveRoot(V2, path, entries)
    archive_type = _sniff_flat(entries)
    return ArchiveRoot(archive_type, path, entries) if archive_type else None


def tarball_roots(path: str) -> list[ArchiveRoot]:
    """The archive roots inside tarball ``path`` (its top folders; indexed first, see
    :mod:`bigearth_spark.archive.tarball`)."""
    path = storage.normalize(path)
    found = [
        r for top in tarball.index(path).top if (r := detect_root(tarball.member_uri(path, top)))
    ]
    if not found:
        raise NotAnArchiveError(f"tarball {path} holds no BigEarthNet archive root")
    return found


def find_roots(path: str | os.PathLike[str]) -> list[ArchiveRoot]:
    """Archive roots at ``path`` (a path or URI): a tarball's, the folder itself, or else its
    sub-folders' and its tarballs'."""
    path = os.fspath(path)
    if tarball.is_tarball(path) and storage.is_file(path):
        return tarball_roots(path)
    root = detect_root(path)
    if root:
        return [root]
    if not storage.is_dir(path):
        raise NotAnArchiveError(f"input {path} does not exist or is not a folder")
    children = storage.list_dir(storage.normalize(path))
    found = [r for child in children if child.is_dir and (r := detect_root(child.path))]
    packed = [t.path for t in tarball.tarballs_in(children)]
    tarball.index_all(packed)  # side by side, before their roots are read
    found += [r for t in packed for r in tarball_roots(t)]
    if not found:
        raise NotAnArchiveError(
            f"{path} is not a BigEarthNet archive root (v1 S2, v1 S1 or v2) and holds none"
        )
    return found


def roots_of(inputs: list[str]) -> list[ArchiveRoot]:
    """The archive roots at each of ``inputs`` (:func:`find_roots`), in order."""
    return [r for i in inputs for r in find_roots(i)]


def roots_in_background(inputs: list[str]) -> Future[list[ArchiveRoot]]:
    """:func:`roots_of` ``inputs`` in a thread of its own: the index pass over tarball inputs
    (seconds to an hour) runs while the caller starts Spark (seconds of its own)."""
    future: Future[list[ArchiveRoot]] = Future()

    def find() -> None:
        try:
            future.set_result(roots_of(inputs))
        except BaseException as e:  # the caller's result() raises it
            future.set_exception(e)

    threading.Thread(target=find, name="bigearth-roots", daemon=True).start()
    return future


@dataclass(frozen=True)
class Entry:
    """One entry at the top of an archive root: a patch folder (v1), a tile folder (v2) or a
    stray file. ``folder_type`` is the reader's folder type (``v1_s2``...), or ``stray_file``."""

    folder_type: str
    path: str
    nested: bool  # True: a v2 tile/scene folder whose sub-folders are the patches


def _entries(listed: Sequence[storage.Entry], folder_type: str, nested: bool) -> list[Entry]:
    return [
        Entry(folder_type if e.is_dir else "stray_file", e.path, nested and e.is_dir)
        for e in listed
    ]


def top_entries(root: ArchiveRoot) -> list[Entry]:
    """The entries below a root that executors expand and read (the root's own, as its
    detection listed them; a v2 root's parts listed here)."""
    listed = root.entries or tuple(storage.list_dir(root.path))
    if root.archive_type in (V1_S2, V1_S1):
        return _entries(listed, root.archive_type, False) + _cut(root.path)
    entries: list[Entry] = []
    tarball.index_all([t.path for t in tarball.tarballs_in(list(listed))])  # side by side
    for sub, folder_type in V2_PARTS.items():
        part = v2_part(root, listed, sub)
        if part is not None:
            entries += _entries(storage.list_dir(part), folder_type, True) + _cut(part)
    return entries


def _cut(folder: str) -> list[Entry]:
    """The entry of the fault of the tarball that holds ``folder`` (none for a folder outside a
    tarball or a tarball read to its end): its folder type is the reason (``truncated_tarball``,
    ``corrupt_tarball``), its path the member where the tarball's data stopped."""
    inside = tarball.split(folder)
    cut = tarball.index(inside[0]).cut if inside else None
    if cut is None:
        return []
    return [Entry(cut["reason"], tarball.member_uri(inside[0], cut["member"]), False)]


def v2_part(root: ArchiveRoot, listed: Sequence[storage.Entry], sub: str) -> str | None:
    """The folder of v2 part ``sub`` (``BigEarthNet-S2``...) below ``root``: a sub-folder, or
    the folder of that name inside a tarball beside them (``BigEarthNet-S2.tar.zst``)."""
    for e in listed:
        if e.name == sub and e.is_dir:
            return e.path
    for e in tarball.tarballs_in(list(listed)):
        if e.name.split(".tar")[0].split(".tgz")[0] == sub and sub in tarball.index(e.path).top:
            return tarball.member_uri(e.path, sub)
    return None


def expand(entry: Entry) -> list[Entry]:
    """Patch folders (and stray files) of an entry: itself, or the inside of a v2 tile folder."""
    if not entry.nested:
        return [entry]
    return _entries(storage.list_dir(entry.path), entry.folder_type, False)
