"""Tarballs of a generated archive, named and laid out as the official downloads.

v1: ``BigEarthNet-S2-v1.0.tar.gz`` (top folder ``BigEarthNet-v1.0/``) and
``BigEarthNet-S1-v1.0.tar.gz`` (``BigEarthNet-S1-v1.0/``), the lists beside them; v2:
``BigEarthNet-S2.tar.zst``, ``BigEarthNet-S1.tar.zst`` and ``Reference_Maps.tar.zst`` (one zstd
frame each, as ``zstd -T0`` writes them), the metadata parquet files beside them.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa

from .roots import MANIFEST_NAME, V1_S1_ROOT, V1_S2_EXTRA_ROOT, V1_S2_ROOT

PACKS = ("tar", "tar.gz", "tar.zst")
# folder → the official tarball's name without its suffix
TARBALL_NAMES = {
    V1_S2_ROOT: "BigEarthNet-S2-v1.0",
    V1_S1_ROOT: "BigEarthNet-S1-v1.0",
    V1_S2_EXTRA_ROOT: V1_S2_EXTRA_ROOT,
}


def _add_sorted(tar: tarfile.TarFile, folder: Path) -> None:
    """``folder`` and everything below it, in name order (the same bytes for the same input)."""
    paths = sorted(folder.rglob("*"))
    for path in [folder, *paths]:
        info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder.parent)))
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        if info.isfile():
            with path.open("rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)


def write_tarball(folder: Path, dest: Path, pack: str) -> Path:
    """``folder`` (with its name as the top folder) as tarball ``dest`` (``pack``: one of
    :data:`PACKS`; ``tar.zst``: one zstd frame)."""
    if pack not in PACKS:
        raise ValueError(f"pack must be one of {PACKS}, not {pack!r}")
    if pack == "tar.zst":
        with (
            pa.OSFile(str(dest), "wb") as raw,
            pa.CompressedOutputStream(raw, "zstd") as out,
            tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar,
        ):
            _add_sorted(tar, folder)
        return dest
    mode = "w:gz" if pack == "tar.gz" else "w"
    with tarfile.open(dest, mode, format=tarfile.GNU_FORMAT) as tar:
        _add_sorted(tar, folder)
    return dest


def pack_archive(src: Path, dest: Path, pack: str) -> dict:
    """The archive generated at ``src`` as the official downloads at ``dest`` (created): each
    root folder as a tarball, other files (lists, metadata) copied; return the manifest, whose
    ``roots`` name the tarballs (also written to ``dest``)."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((src / MANIFEST_NAME).read_text())
    tarballs = {}
    for entry in sorted(src.iterdir()):
        if entry.is_dir() and entry.name != "lists":
            name = f"{TARBALL_NAMES.get(entry.name, entry.name)}.{pack}"
            write_tarball(entry, dest / name, pack)
            tarballs[entry.name] = name
        elif entry.is_dir():
            shutil.copytree(entry, dest / entry.name)
        elif entry.name != MANIFEST_NAME:
            shutil.copy2(entry, dest / entry.name)
    manifest["roots"] = {k: tarballs.get(v, v) for k, v in manifest["roots"].items()}
    manifest["packed"] = pack
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest
