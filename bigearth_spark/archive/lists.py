"""Official lists: v1 split CSVs (plain or the MM ``S2,S1`` form), cloud/snow/no-label CSVs and
the v2 metadata parquets (paths or URIs), merged into one membership table (pure Python, pandas).

Split names follow v2: ``train`` | ``validation`` | ``test`` (v1's ``val.csv`` → ``validation``).
A membership that no provided list can tell stays unknown (None), never a guessed False.
"""

from __future__ import annotations

import bz2
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bigearth_spark import fetch, storage
from bigearth_spark.archive.layout import V2_FLAGGED_METADATA, V2_METADATA
from bigearth_spark.archive.reader import Read

SPLITS = ("train", "validation", "test")
V1_SPLIT_FILES = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
V1_FLAG_FILES = {
    "patches_with_seasonal_snow": "is_snow",
    "patches_with_cloud_and_shadow": "is_cloud_or_shadow",
    "patches_with_no_19_class_targets": "in_no19_list",
}
V2_FILES = {
    V2_METADATA: V2_METADATA,
    "v2_metadata.parquet": V2_METADATA,
    V2_FLAGGED_METADATA: V2_FLAGGED_METADATA,
    "v2_metadata_for_patches_with_snow_cloud_or_shadow.parquet": V2_FLAGGED_METADATA,
}
METADATA_COLUMNS = (
    "patch_id",
    "archive",
    "split",
    "is_snow",
    "is_cloud_or_shadow",
    "in_no19_list",
    "s1_patch_id",
    "labels19",
    "country",
    "s2v1_name",
)


@dataclass
class OfficialLists:
    """Memberships read from the official list files found."""

    metadata: pd.DataFrame  # columns METADATA_COLUMNS, one row per listed patch
    sources: dict[str, str] = field(default_factory=dict)  # list name → file read
    known: dict[str, set[str]] = field(default_factory=dict)  # archive → memberships known

    def summary(self) -> dict[str, int]:
        """Rows per archive and split, for logs."""
        if self.metadata.empty:
            return {}
        g = self.metadata.groupby(["archive", self.metadata["split"].fillna("none")]).size()
        return {f"{a}/{s}": int(n) for (a, s), n in g.items()}


def _csv_lines(path: str, read: Read) -> list[str]:
    data = read(path)
    text = (bz2.decompress(data) if path.endswith(".bz2") else data).decode()
    return [line.strip() for line in text.splitlines() if line.strip()]


def _stem(name: str) -> str:
    for suffix in (".bz2", ".csv"):
        name = name.removesuffix(suffix)
    return name


def _entries(folder: str) -> list[storage.Entry]:
    """A folder's entries; none when it is missing or not a folder."""
    try:
        return storage.list_dir(storage.normalize(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def find_list_files(
    folders: list[str | Path], listed: Mapping[str, Sequence[storage.Entry]] | None = None
) -> dict[str, str]:
    """Official list files present in ``folders`` (paths or URIs; the first folder wins), keyed
    by list name. ``listed``: the entries of folders listed before (an archive root's), by
    path; the others are listed here, all at once."""
    listed = listed or {}
    names = [str(f) for f in folders]
    todo = [f for f in names if f not in listed]
    listings = fetch.pool(fetch.REQUESTS_IN_FLIGHT).map(_entries, todo)
    found_entries = dict(zip(todo, listings, strict=True))
    found: dict[str, str] = {}
    for folder in names:
        for f in listed[folder] if folder in listed else found_entries[folder]:
            key = V2_FILES.get(f.name) or (
                _stem(f.name) if f.name.endswith((".csv", ".csv.bz2")) else None
            )
            if key and (key in V1_SPLIT_FILES or key in V1_FLAG_FILES or key in V2_FILES.values()):
                found.setdefault(key, f.path)
    return found


def _v1_frame(files: dict[str, str], read: Read) -> tuple[pd.DataFrame, set[str]]:
    rows: dict[str, dict] = {}
    known: set[str] = set()

    def row(name: str) -> dict:
        return rows.setdefault(name, {"patch_id": name})

    for key, split in V1_SPLIT_FILES.items():
        if key in files:
            known.add("split")
            for line in _csv_lines(files[key], read):
                s2, _, s1 = line.partition(",")  # MM split files: "S2name,S1name"
                r = row(s2.strip())
                r["split"] = split
                if s1:
                    r["s1_patch_id"] = s1.strip()
    for key, column in V1_FLAG_FILES.items():
        if key in files:
            known.add(column)
            for name in _csv_lines(files[key], read):
                row(name)[column] = True
    frame = pd.DataFrame(list(rows.values()))
    for column in V1_FLAG_FILES.values():
        if column in known:
            listed = frame[column] if column in frame else pd.Series(False, index=frame.index)
            frame[column] = listed.map(lambda v: v is True)
    frame["archive"] = "v1"
    return frame, known


def _v2_frame(files: dict[str, str], read: Read) -> tuple[pd.DataFrame, set[str]]:
    parts = []
    for key in (V2_METADATA, V2_FLAGGED_METADATA):
        if key in files:
            t = pq.read_table(pa.BufferReader(read(files[key]))).to_pandas()
            parts.append(t)
    frame = pd.concat(parts, ignore_index=True).rename(
        columns={
            "s1_name": "s1_patch_id",
            "labels": "labels19",
            "contains_seasonal_snow": "is_snow",
            "contains_cloud_or_shadow": "is_cloud_or_shadow",
        }
    )
    frame["labels19"] = frame["labels19"].map(list)
    frame["archive"] = "v2"
    return frame, {"split", "is_snow", "is_cloud_or_shadow", "labels19"}


def read_lists(
    folders: list[str | Path], listed: Mapping[str, Sequence[storage.Entry]] | None = None
) -> OfficialLists:
    """Read every official list found in ``folders`` into one membership table (``listed``: see
    :func:`find_list_files`); the files are read all at once."""
    files = find_list_files(folders, listed)
    read = fetch.reader(fetch.fetch(files.values(), fetch.REQUESTS_IN_FLIGHT))
    frames, known = [], {}
    v1_files = {k: v for k, v in files.items() if k in V1_SPLIT_FILES or k in V1_FLAG_FILES}
    v2_files = {k: v for k, v in files.items() if k in V2_FILES.values()}
    if v1_files:
        frame, known["v1"] = _v1_frame(v1_files, read)
        frames.append(frame)
    if v2_files:
        frame, known["v2"] = _v2_frame(v2_files, read)
        frames.append(frame)
    metadata = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    metadata = metadata.reindex(columns=list(METADATA_COLUMNS))
    metadata = metadata.astype(object).where(metadata.notna(), None)
    return OfficialLists(metadata, files, known)
