"""One filesystem layer for archives and lakes read outside Spark: local paths and URIs.

Plain paths and ``file:`` URIs go through ``os`` (the executors' hot path stays one ``scandir``
per folder and one unbuffered read per file), and so do Databricks' ``dbfs:/path`` URIs, through
the FUSE view of DBFS that Databricks mounts at ``/dbfs`` on every node (:data:`DBFS_ROOT`).
Object stores and HDFS go through pyarrow's filesystems: ``s3a://``, ``s3://`` (S3 and
S3-compatible servers), ``gs://``, ``hdfs://``, and ``abfss://`` where ``adlfs`` (fsspec) is
installed; a whole S3 object is read with one GET through boto3 (pyarrow's input files ask for
the object's size with a HEAD first: two round trips per file). Spark's own reads and writes use
Hadoop's filesystems with the same URIs (see :mod:`bigearth_spark.spark`); functions that name a
file return ``dbfs:`` URIs as such, so what is handed to Spark stays a URI that Spark reads
itself.

Credentials come from the standard environment of each SDK (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, instance roles; ``GOOGLE_APPLICATION_CREDENTIALS`` or the node's service
account; Azure: adlfs' ``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCOUNT_KEY`` or
``AZURE_STORAGE_SAS_TOKEN``, else ``DefaultAzureCredential``: ``AZURE_CLIENT_ID``/
``AZURE_TENANT_ID``/``AZURE_CLIENT_SECRET``, workload or managed identity, ``az login``) and
never from code. An S3-compatible server other than AWS is named by ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` (the AWS SDKs' own variables).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes, urlsplit

import pyarrow.fs as pafs
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from botocore.client import BaseClient

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
S3_SCHEMES = frozenset({"s3", "s3a", "s3n"})
DBFS_ROOT = "/dbfs"  # where Databricks mounts DBFS on every node (its FUSE view)
_DBFS = re.compile(r"^dbfs:(?:///|/(?!/))(.*)$", re.IGNORECASE)  # dbfs:/path, dbfs:///path
# abfss://container@account.dfs.<cloud's suffix>/path (Hadoop's ABFS URI; .blob. also accepted)
_ABFS = re.compile(r"^abfss?://([^@/]+)@([a-z0-9]+)\.(?:dfs|blob)\.([^/?#]+)([^?#]*)$", re.I)
_LOCAL = (None, "dbfs")  # the schemes read through ``os``


class StorageError(ValueError):
    """A URI that is malformed, or whose filesystem is unknown or not installed."""


@dataclass(frozen=True)
class Entry:
    """One entry of a folder listing."""

    name: str
    path: str  # the folder's path or URI joined with ``name``
    is_dir: bool


def scheme(uri: str) -> str | None:
    """The URI scheme of ``uri`` (``s3a``, ``gs``, ``dbfs``...), or None for a plain path or
    ``file:``."""
    if "://" not in uri:  # a plain path (the executors' hot path: no regex per file) or dbfs:/
        return "dbfs" if uri[:5].lower() == "dbfs:" else None
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m and m.group(1).lower() != "file" else None


def is_uri(uri: str) -> bool:
    """True for a URI with a scheme (``file:`` and ``dbfs:`` included), False for a plain path."""
    return scheme(uri) is not None or uri.startswith("file:")


def is_local(uri: str) -> bool:
    """True for what is read through ``os``: a plain path, a ``file:`` or a ``dbfs:`` URI."""
    return scheme(uri) in _LOCAL


def local_path(uri: str) -> str:
    """The path of a plain path, ``file:`` or ``dbfs:`` URI as the OS names it (a ``file:``
    URI's percent-encoded bytes decoded, RFC 8089: see :func:`as_text`; a ``dbfs:`` URI's path
    under :data:`DBFS_ROOT`)."""
    if uri.startswith("file:"):
        return os.fsdecode(unquote_to_bytes(re.sub(r"^file:(//)?", "", uri)))
    if uri[:5].lower() == "dbfs:":
        return DBFS_ROOT + dbfs_path(uri)
    return uri


def dbfs_path(uri: str) -> str:
    """The absolute path within DBFS of ``dbfs:/path`` or ``dbfs:///path`` (Spark's forms)."""
    m = _DBFS.match(uri)
    if m is None:
        raise StorageError(f"{uri}: a DBFS URI is dbfs:/path or dbfs:///path")
    return "/" + m.group(1)


def as_text(path: str) -> str:
    """A local path as text that Arrow, Spark and the lake can hold, and that every function of
    this module reads back as the same path.

    Linux allows any bytes but ``/`` and NUL in a name, and Python hands undecodable ones over as
    surrogate escapes, which no UTF-8 column can store. A path that is valid UTF-8 is returned
    as it is; any other becomes a ``file://`` URI with its bytes percent-encoded (RFC 8089),
    which :func:`local_path` decodes back to the OS's bytes."""
    if path.isascii():  # the executors' hot path: archives' names are ASCII
        return path
    try:
        path.encode()
    except UnicodeEncodeError:
        return "file://" + quote(os.fsencode(path), safe="/")
    return path


def normalize(uri: str) -> str:
    """An absolute local path (:func:`as_text`), a ``dbfs:/path`` URI, or the URI without a
    trailing slash."""
    s = scheme(uri)
    if s is None:
        return as_text(os.path.abspath(local_path(uri)))
    if s == "dbfs":
        return "dbfs:" + (dbfs_path(uri).rstrip("/") or "/")
    return uri.rstrip("/")


def join(base: str, *names: str) -> str:
    """``base``/``names`` for a path or URI; a plain path's result is :func:`as_text`."""
    if scheme(base) is None:
        return as_text(os.path.join(local_path(base), *names))
    return "/".join([base.rstrip("/"), *names])


def basename(uri: str) -> str:
    """The last component of a path or URI."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def s3_endpoint() -> str | None:
    """The S3 endpoint from the environment (None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_region() -> str | None:
    """The AWS region from the environment (None: the SDK's own resolution)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


S3_CONNECTIONS = 128  # boto3's connection pool per process: the most requests it keeps in flight


@lru_cache(maxsize=8)
def _s3_client(endpoint: str | None, region: str | None) -> BaseClient:
    import boto3  # the S3 reads' and flat listings' client (thread-safe: shared by a pool)
    from botocore.config import Config

    config = Config(
        max_pool_connections=S3_CONNECTIONS,
        retries={"mode": "standard", "total_max_attempts": 2},  # ours: retry.retried
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )


def s3_client() -> BaseClient:
    """The process's boto3 S3 client for the environment's endpoint and region."""
    return _s3_client(s3_endpoint(), s3_region())


def s3_location(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3a://``, ``s3://`` or ``s3n://`` URI."""
    url = urlsplit(uri)
    return url.netloc, url.path.lstrip("/")


def s3_error(e: Exception, uri: str) -> OSError:
    """The ``OSError`` of a failed boto3 call on ``uri``: ``FileNotFoundError`` for a missing
    object or bucket, ``PermissionError`` for a denied one (both as :mod:`os` raises them, so
    that callers classify object stores and local files alike), else ``OSError`` with S3's
    error code (``SlowDown``, ``InternalError``, a timeout...)."""
    from botocore.exceptions import ClientError

    if not isinstance(e, ClientError):  # connection errors, timeouts: BotoCoreError
        return OSError(f"{uri}: {type(e).__name__}: {e}")
    error = e.response.get("Error", {})
    code, message = str(error.get("Code", "")), error.get("Message", "")
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = f"{uri}: {code}: {message}"
    if code in ("NoSuchKey", "NoSuchBucket", "404") or status == 404:
        return FileNotFoundError(text)
    if code in ("AccessDenied", "403") or status == 403:
        return PermissionError(text)
    return OSError(text)


@lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None) -> pafs.FileSystem:
    if not endpoint:
        return pafs.S3FileSystem(region=region)
    url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return pafs.S3FileSystem(endpoint_override=url.netloc, scheme=url.scheme, region=region)


@lru_cache(maxsize=1)
def _gcs() -> pafs.FileSystem:
    return pafs.GcsFileSystem()  # Google's default credentials, resolved by the GCS client


def azure_options(uri: str) -> tuple[dict[str, str | bool], str]:
    """The arguments of adlfs' ``AzureBlobFileSystem`` for an ``abfss://`` URI, and the path
    (``container/path``) within it.

    The account and its cloud come from the URI's host (its blob endpoint: Hadoop's URI names
    the ``dfs`` one). ``anon=False``: adlfs then authenticates with its own variables
    (``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCOUNT_KEY``,
    ``AZURE_STORAGE_SAS_TOKEN``) or else ``DefaultAzureCredential``, never anonymously."""
    m = _ABFS.match(uri)
    if m is None:
        raise StorageError(
            f"{uri}: an ADLS URI is abfss://<container>@<account>.dfs.core.windows.net/<path>"
        )
    container, account, suffix, path = m.groups()
    account, suffix = account.lower(), suffix.lower()
    options = {"account_name": account, "account_host": f"{account}.blob.{suffix}", "anon": False}
    return options, container + path.rstrip("/")


def _azure(uri: str) -> tuple[pafs.FileSystem, str]:
    options, path = azure_options(uri)
    try:
        return _adlfs(**options), path
    except ModuleNotFoundError as e:
        if e.name != "adlfs":
            raise
        raise StorageError(
            f"{uri}: abfss:// needs the adlfs package (pip install 'adlfs>=2024.7')"
        ) from None


@lru_cache(maxsize=8)
def _adlfs(account_name: str, account_host: str, anon: bool) -> pafs.FileSystem:
    import adlfs  # an optional dependency: only abfss:// needs it

    fs = adlfs.AzureBlobFileSystem(account_name=account_name, account_host=account_host, anon=anon)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def hdfs_root(uri: str) -> tuple[str, str]:
    """The filesystem URI handed to pyarrow's ``FileSystem.from_uri`` for an ``hdfs://`` or
    ``viewfs://`` URI (``hdfs://namenode:port/``, with the URI's query: pyarrow's ``user``,
    ``replication``... options), and the path within it."""
    url = urlsplit(uri)
    query = f"?{url.query}" if url.query else ""
    return f"{url.scheme.lower()}://{url.netloc}/{query}", url.path.rstrip("/") or "/"


@lru_cache(maxsize=8)
def _hdfs(root: str) -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(root)[0]  # one connection per namenode


# a forked process (DataLoader workers) opens connections of its own: clients and their pooled
# connections are not shared across a fork (the parent's sockets would carry both's answers)
for _cached in (_s3_client, _s3, _gcs, _adlfs, _hdfs):
    os.register_at_fork(after_in_child=_cached.cache_clear)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``uri`` and the path within it. Raises :class:`StorageError`
    for a malformed URI, an unknown scheme, or a filesystem that is not installed."""
    s = scheme(uri)
    if s in _LOCAL:
        return pafs.LocalFileSystem(), os.path.abspath(local_path(uri))
    url = urlsplit(uri)
    if s in S3_SCHEMES:
        return _s3(s3_endpoint(), s3_region()), url.netloc + url.path.rstrip("/")
    if s in ("gs", "gcs"):
        return _gcs(), url.netloc + url.path.rstrip("/")
    if s in ("abfs", "abfss"):
        return _azure(uri)
    if s in ("hdfs", "viewfs"):
        root, path = hdfs_root(uri)
        return _hdfs(root), path
    raise StorageError(
        f"{uri}: no filesystem for scheme {s}:// (supported: paths, file:, dbfs:/, s3a://, "
        f"s3://, s3n://, gs://, abfss://, abfs://, hdfs://, viewfs://)"
    )


def _in_tarball(uri: str) -> bool:
    """True for the name of a member of a tarball (``T!/member``, :mod:`archive.tarball`)."""
    from bigearth_spark.archive import tarball

    return tarball.SEP in uri and tarball.split(uri) is not None


def list_dir(uri: str) -> list[Entry]:
    """The entries of folder ``uri`` sorted by name. Raises ``FileNotFoundError`` when it does
    not exist (an object store: when no object lies below it)."""
    if _in_tarball(uri):
        from bigearth_spark.archive import tarball

        return tarball.list_dir(uri)
    if is_local(uri):
        with os.scandir(local_path(uri)) as it:
            found = sorted((e.name, e.path, e.is_dir()) for e in it)
        if scheme(uri) == "dbfs":  # named by URI, as the folder is
            return [Entry(name, join(uri, name), d) for name, _, d in found]
        return [Entry(name, as_text(path), d) for name, path, d in found]
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
    if _in_tarball(uri):
        from bigearth_spark.archive import tarball

        return tarball.list_names(uri)
    if is_local(uri):
        return set(os.listdir(local_path(uri)))
    return {e.name for e in list_dir(uri)}


def read_bytes(uri: str) -> bytes:
    """The whole content of file ``uri`` in one read (an S3 object: one GET)."""
    if _in_tarball(uri):
        from bigearth_spark.archive import tarball

        return tarball.read_bytes(uri)
    if is_local(uri):
        return _read_local(local_path(uri))
    if scheme(uri) in S3_SCHEMES:
        return _read_s3(uri)
    fs, path = filesystem(uri)
    with fs.open_input_stream(path, compression=None) as f:  # no decompression by extension
        return f.read()


def _read_s3(uri: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = s3_location(uri)
    try:
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as e:
        raise s3_error(e, uri) from None


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
    if _in_tarball(uri):
        from bigearth_spark.archive import tarball

        return tarball.is_dir(uri)
    if is_local(uri):
        return os.path.isdir(local_path(uri))
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def is_file(uri: str) -> bool:
    """True when ``uri`` is a file (an object)."""
    if _in_tarball(uri):
        from bigearth_spark.archive import tarball

        return tarball.is_file(uri)
    if is_local(uri):
        return os.path.isfile(local_path(uri))
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def parquet_file(uri: str) -> pq.ParquetFile:
    """A ``ParquetFile`` on ``uri`` (memory-mapped when local; elsewhere each read of a row
    group fetches its column chunks at once, as a few coalesced ranges in flight together)."""
    if is_local(uri):
        return pq.ParquetFile(local_path(uri), memory_map=True)
    fs, path = filesystem(uri)
    return pq.ParquetFile(fs.open_input_file(path), pre_buffer=True)
