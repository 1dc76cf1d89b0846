"""Flat listings of object-store folders by ranges of keys: one request per ~1,000 keys.

An archive root on an object store holds up to ~590,000 patch folders (v1) or tile folders of
thousands (v2), and listing each folder costs a round trip. The driver lists a root's top level
anyway (one request per ~1,000 folders); it cuts those names into :func:`ranges` of consecutive
folders in the store's key order, and an executor lists each range's keys flat with
:func:`list_folders`: S3's ListObjectsV2 without a delimiter, from the range's first key and
within the longest prefix its folders share, so every page brings ~1,000 keys of the range and
every folder gets the names of its files without a listing of its own. Ranges are listed in
parallel on the executors. Object stores without a ranged flat listing in pyarrow (GCS, ADLS,
HDFS) list each top folder recursively (flat below it: one listing per v2 tile folder, one per
v1 patch folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from bigearth_spark import storage

RANGE_FOLDERS = 256  # v1 patch folders per range: ~3,500 keys, 4 listing pages


def key_order(name: str) -> str:
    """The sort key of a folder's name in the order an object store lists its keys, which all
    start ``name/`` (UTF-8 byte order, which is code point order): folder ``a-b`` comes before
    folder ``a`` (``-`` < ``/``) though the name ``a`` sorts first."""
    return name + "/"


def ranges(names: list[str], size: int) -> list[list[str]]:
    """``names`` in key order, cut into runs of at most ``size`` consecutive folders."""
    ordered = sorted(names, key=key_order)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


@dataclass
class Listing:
    """The folders of a range, each with the names of its entries (files and sub-folders), and
    the files found where folders belong; paths relative to the range's parent."""

    folders: dict[str, set[str]] = field(default_factory=dict)
    stray_files: list[str] = field(default_factory=list)


def list_folders(parent: str, names: list[str], depth: int) -> Listing:
    """The patch folders below folders ``names`` (a range: see :func:`ranges`) of ``parent``,
    listed flat: ``depth`` 1 when they are the patch folders (v1), 2 when they are tile folders
    of patch folders (v2). A name without objects below it is an empty patch folder (depth 1;
    the reader reports it) or no tile folder (depth 2). Raises ``OSError`` on a storage error
    (an S3 error as :func:`bigearth_spark.storage.s3_error` maps it)."""
    found = Listing()
    if depth == 1:
        found.folders = {n: set() for n in names}
    for rel in _keys(parent, names):
        marker = rel.endswith("/")  # "x/": a folder marker (the folder exists, maybe empty)
        parts = rel.rstrip("/").split("/")
        if len(parts) < depth:  # a tile folder's marker
            continue
        if len(parts) == depth and not marker:  # a file where a patch folder belongs
            found.stray_files.append(rel)
            continue
        entries = found.folders.setdefault("/".join(parts[:depth]), set())
        if len(parts) > depth:
            entries.add(parts[depth])
    return found


def _keys(parent: str, names: list[str]) -> Iterator[str]:
    """The keys below ``parent``/``name``/ for ``names``, relative to ``parent`` (a folder
    marker ``x/`` as such)."""
    if storage.scheme(parent) in storage.S3_SCHEMES:
        yield from _s3_keys(parent, names)
        return
    fs, base = storage.filesystem(parent)
    for name in names:
        selector = pafs.FileSelector(f"{base}/{name}", allow_not_found=True, recursive=True)
        for info in fs.get_file_info(selector):
            rel = info.path[len(base) + 1 :]
            yield rel + "/" if info.type == pafs.FileType.Directory else rel


def _s3_keys(parent: str, names: list[str]) -> Iterator[str]:
    """ListObjectsV2 pages from the range's first folder to its last (boto3: pyarrow's S3
    listing has no start key)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, base = storage.s3_location(parent)
    base = base.rstrip("/") + "/" if base.strip("/") else ""
    first, last = key_order(names[0]), key_order(names[-1])
    wanted = set(names)
    pages = (
        storage.s3_client()
        .get_paginator("list_objects_v2")
        .paginate(
            Bucket=bucket,
            Prefix=base + os.path.commonprefix([first, last]),  # noqa: RUF071 (a key prefix)
            StartAfter=base + names[0],  # the first folder's keys all follow its bare name
        )
    )
    try:
        for page in pages:
            for obj in page.get("Contents", ()):
                rel = obj["Key"][len(base) :]
                top = rel.split("/", 1)[0]
                if key_order(top) > last:
                    return  # past the range: its last page may hold the next range's keys
                if top in wanted and "/" in rel:
                    yield rel
    except (ClientError, BotoCoreError) as e:
        raise storage.s3_error(e, parent) from None
