"""One filesystem layer for archives and lakes read outside Spark: local paths and URIs.

Plain paths and ``file:`` URIs go through ``os`` (the executors' hot path stays one ``scandir``
per folder and one unbuffered read per file). Object stores and HDFS go through pyarrow's
filesystems: ``s3a://``, ``s3://`` (S3 and S3-compatible servers), ``gs://``, ``hdfs://``, and
``abfss://`` where ``adlfs`` (fsspec) is installed. Spark's own reads and writes use Hadoop's
filesystems with the same URIs (see :mod:`bigearth_spark.spark`).

Credentials come from the standard environment of each SDK (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, instance roles; ``GOOGLE_APPLICATION_CREDENTIALS``; Azure's
``DefaultAzureCredential``) and never from code. An S3-compatible server other than AWS is named
by ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (the AWS SDKs' own variables).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import pyarrow.fs as pafs
import pyarrow.parquet as pq

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
S3_SCHEMES = frozenset({"s3", "s3a", "s3n"})


class StorageError(ValueError):
    """A URI whose filesystem is unknown or not installed."""


@dataclass(frozen=True)
class Entry:
    """One entry of a folder listing."""

    name: str
    path: str  # the folder's path or URI joined with ``name``
    is_dir: bool


def scheme(uri: str) -> str | None:
    """The URI scheme of ``uri`` (``s3a``, ``gs``...), or None for a plain path or ``file:``."""
    if "://" not in uri:  # a plain path (the executors' hot path: no regex per file)
        return None
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m and m.group(1).lower() != "file" else None


def is_local(uri: str) -> bool:
    """True for a plain path or a ``file:`` URI."""
    return scheme(uri) is None


def local_path(uri: str) -> str:
    """The path of a plain path or ``file:`` URI."""
    return re.sub(r"^file:(//)?", "", uri) if uri.startswith("file:") else uri


def normalize(uri: str) -> str:
    """An absolute local path, or the URI without a trailing slash."""
    if is_local(uri):
        return os.path.abspath(local_path(uri))
    return uri.rstrip("/")


def join(base: str, *names: str) -> str:
    """``base``/``names`` for a path or URI."""
    if is_local(base):
        return os.path.join(local_path(base), *names)
    return "/".join([base.rstrip("/"), *names])


def basename(uri: str) -> str:
    """The last component of a path or URI."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def s3_endpoint() -> str | None:
    """The S3 endpoint from the environment (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None) -> pafs.FileSystem:
    if not endpoint:
        return pafs.S3FileSystem(region=region)
    url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return pafs.S3FileSystem(endpoint_override=url.netloc, scheme=url.scheme, region=region)


def _azure(uri: str) -> pafs.FileSystem:
    try:
        import adlfs
    except ImportError:
        raise StorageError(f"{uri}: abfss:// needs the adlfs package (pip install adlfs)") from None
    account = urlsplit(uri).netloc.split("@")[-1].split(".")[0]
    return pafs.PyFileSystem(pafs.FSSpecHandler(adlfs.AzureBlobFileSystem(account_name=account)))


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``uri`` and the path within it."""
    s = scheme(uri)
    if s is None:
        return pafs.LocalFileSystem(), os.path.abspath(local_path(uri))
    url = urlsplit(uri)
    if s in S3_SCHEMES:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return _s3(s3_endpoint(), region), url.netloc + url.path.rstrip("/")
    if s in ("gs", "gcs"):
        return pafs.GcsFileSystem(), url.netloc + url.path.rstrip("/")
    if s in ("abfs", "abfss"):
        return _azure(uri), url.netloc.split("@")[0] + url.path.rstrip("/")
    if s in ("hdfs", "viewfs"):
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    raise StorageError(f"{uri}: no filesystem for scheme {s}://")


def list_dir(uri: str) -> list[Entry]:
    """The entries of folder ``uri`` sorted by name. Raises ``FileNotFoundError`` when it does
    not exist (an object store: when no object lies below it)."""
    if is_local(uri):
        with os.scandir(local_path(uri)) as it:
            return sorted((Entry(e.name, e.path, e.is_dir()) for e in it), key=lambda e: e.name)
    fs, path = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    if not infos and fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no such folder: {uri}")
    entries = (
        Entry(i.base_name, join(uri, i.base_name), i.type == pafs.FileType.Directory) for i in infos
    )
    return sorted(entries, key=lambda e: e.name)


def list_names(uri: str) -> set[str]:
    """The names in folder ``uri`` (its entries' names only: one ``listdir`` for a local folder,
    read once per patch folder). Raises as :func:`list_dir`."""
    if is_local(uri):
        return set(os.listdir(local_path(uri)))
    return {e.name for e in list_dir(uri)}


def read_bytes(uri: str) -> bytes:
    """The whole content of file ``uri`` in one read."""
    if is_local(uri):
        return _read_local(local_path(uri))
    fs, path = filesystem(uri)
    with fs.open_input_stream(path, compression=None) as f:  # no decompression by extension
        return f.read()


def _read_local(path: str) -> bytes:
    """A local file's content: open, one fstat, one read of its size (``open()`` costs a third
    more per file, and the executors read ~16 small files per pair). A short read, or a file
    whose size says 0 (procfs, some FUSE mounts), is read on to its end."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size) if size else b""
        if size and len(data) == size:
            return data
        parts = [data]
        while chunk := os.read(fd, max(size, 1 << 16)):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def is_dir(uri: str) -> bool:
    """True when ``uri`` is a folder (an object store: a prefix with objects below it)."""
    if is_local(uri):
        return os.path.isdir(local_path(uri))
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def is_file(uri: str) -> bool:
    """True when ``uri`` is a file (an object)."""
    if is_local(uri):
        return os.path.isfile(local_path(uri))
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def parquet_file(uri: str) -> pq.ParquetFile:
    """A ``ParquetFile`` on ``uri`` (memory-mapped when local)."""
    if is_local(uri):
        return pq.ParquetFile(local_path(uri), memory_map=True)
    fs, path = filesystem(uri)
    return pq.ParquetFile(fs.open_input_file(path))
