"""Archive roots: which type of BigEarthNet archive a folder is, and where its patches live.

Pure Python (no Spark). Listing a root is cheap (one ``scandir``); listing the inside of patch or
tile folders is left to the Spark executors (see :mod:`bigearth_spark.etl.discover`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bigearth_spark.archive import names

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
    """A recognised archive root."""

    archive_type: str  # V1_S2 | V1_S1 | V2
    path: str


def _sniff_flat(path: Path) -> str | None:
    seen = 0
    with os.scandir(path) as it:
        for entry in it:
            if not entry.is_dir():
                continue
            if names.is_v1_s2(entry.name):
                return V1_S2
            if names.is_s1(entry.name):
                return V1_S1
            seen += 1
            if seen >= _SNIFF:
                break
    return None


def detect_root(path: str | Path) -> ArchiveRoot | None:
    """Recognise ``path`` as a v1 S2, v1 S1 or v2 archive root (None if it is none of them)."""
    p = Path(path)
    if not p.is_dir():
        return None
    if any((p / d).is_dir() for d in V2_PARTS) or (p / V2_METADATA).is_file():
        return ArchiveRoot(V2, str(p.resolve()))
    archive_type = _sniff_flat(p)
    return ArchiveRoot(archive_type, str(p.resolve())) if archive_type else None


def find_roots(path: str | Path) -> list[ArchiveRoot]:
    """Archive roots at ``path``: the folder itself, or else its direct sub-folders."""
    root = detect_root(path)
    if root:
        return [root]
    p = Path(path)
    if not p.is_dir():
        raise NotAnArchiveError(f"input {path} does not exist or is not a folder")
    found = [r for child in sorted(p.iterdir()) if (r := detect_root(child))]
    if not found:
        raise NotAnArchiveError(
            f"{path} is not a BigEarthNet archive root (v1 S2, v1 S1 or v2) and holds none"
        )
    return found


@dataclass(frozen=True)
class Entry:
    """One entry at the top of an archive root: a patch folder (v1), a tile folder (v2) or a
    stray file. ``folder_type`` is the reader's folder type (``v1_s2``...), or ``stray_file``."""

    folder_type: str
    path: str
    nested: bool  # True: a v2 tile/scene folder whose sub-folders are the patches


def top_entries(root: ArchiveRoot) -> list[Entry]:
    """The entries below a root that executors expand and read (one ``scandir`` per folder)."""
    if root.archive_type in (V1_S2, V1_S1):
        with os.scandir(root.path) as it:
            return [
                Entry(root.archive_type if e.is_dir() else "stray_file", e.path, False)
                for e in sorted(it, key=lambda e: e.name)
            ]
    entries: list[Entry] = []
    for sub, folder_type in V2_PARTS.items():
        part = Path(root.path) / sub
        if part.is_dir():
            with os.scandir(part) as it:
                entries += [
                    Entry(folder_type if e.is_dir() else "stray_file", e.path, e.is_dir())
                    for e in sorted(it, key=lambda e: e.name)
                ]
    return entries


def expand(entry: Entry) -> list[Entry]:
    """Patch folders (and stray files) of an entry: itself, or the inside of a v2 tile folder."""
    if not entry.nested:
        return [entry]
    with os.scandir(entry.path) as it:
        return [
            Entry(entry.folder_type if e.is_dir() else "stray_file", e.path, False)
            for e in sorted(it, key=lambda e: e.name)
        ]
