"""URIs beyond local paths and S3: Databricks' ``dbfs:/`` (read through its FUSE view, here a
temporary folder), the arguments of the ADLS, GCS and HDFS filesystems (built without a
server), and the errors of URIs that no filesystem serves."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from delta.tables import DeltaTable
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from bigearth_spark import storage
from bigearth_spark.config import normalize_lake
from bigearth_spark.tables import delta_log, part_files, write
from bigearth_spark.tables.log_store import check_concurrent_writes


@pytest.fixture
def dbfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder as the FUSE view of DBFS (Databricks mounts it at /dbfs)."""
    monkeypatch.setattr(storage, "DBFS_ROOT", str(tmp_path))
    return tmp_path


def test_dbfs_uris_name_paths_under_the_fuse_view() -> None:
    assert storage.DBFS_ROOT == "/dbfs"
    uris = ("dbfs:/lake", "dbfs:///lake", "DBFS:/lake", "dbfs:/")
    assert [storage.scheme(u) for u in uris] == ["dbfs"] * 4
    assert all(storage.is_local(u) and storage.is_uri(u) for u in uris)
    assert [storage.local_path(u) for u in uris] == ["/dbfs/lake"] * 3 + ["/dbfs/"]
    assert [storage.normalize(u) for u in ("dbfs:/lake/", "dbfs:///lake//", "dbfs:///")] == [
        "dbfs:/lake",
        "dbfs:/lake",
        "dbfs:/",
    ]
    assert storage.join("dbfs:/lake/", "pairs", "_delta_log") == "dbfs:/lake/pairs/_delta_log"
    assert storage.join("dbfs:/", "lake") == "dbfs:/lake" == storage.join("dbfs:///", "lake")
    assert storage.basename("dbfs:/lake/pairs/") == "pairs"
    fs, path = storage.filesystem("dbfs:///lake/pairs/")
    assert isinstance(fs, pafs.LocalFileSystem) and path == "/dbfs/lake/pairs"
    # the lake stays a dbfs: URI for Spark, which reads it itself
    assert normalize_lake("dbfs:/bigearthnet/lake") == "dbfs:/bigearthnet/lake"
    assert write.table_path("dbfs:/bigearthnet/lake/", "pairs") == "dbfs:/bigearthnet/lake/pairs"
    check_concurrent_writes("dbfs:/bigearthnet/lake", {}.get, single_writer=False)  # not S3


def test_what_is_a_uri_and_what_a_path() -> None:
    assert [storage.is_uri(u) for u in ("/a", "rel/a", "a:b", "file:/a", "s3a://b/k")] == [
        False,
        False,
        False,
        True,
        True,
    ]
    assert normalize_lake("file:/data/lake") == "file:/data/lake"
    assert normalize_lake("rel/lake") == os.path.join(os.getcwd(), "rel/lake")


@pytest.mark.parametrize("uri", ["dbfs:lake", "dbfs://lake/x", "dbfs:"])
def test_a_dbfs_uri_that_is_not_a_path_is_refused(uri: str) -> None:
    message = f"{uri}: a DBFS URI is dbfs:/path or dbfs:///path"
    for use in (storage.local_path, storage.normalize, storage.read_bytes, storage.filesystem):
        with pytest.raises(storage.StorageError, match=f"^{re.escape(message)}$"):
            use(uri)


def test_files_are_listed_and_read_through_dbfs_uris(dbfs: Path) -> None:
    root = dbfs / "archive"
    (root / "S2A_x").mkdir(parents=True)
    (root / "S2A_x" / "B02.tif").write_bytes(b"band bytes")
    pq.write_table(pa.table({"x": [4, 5]}), root / "t.parquet")
    assert storage.list_dir("dbfs:/archive/") == [
        storage.Entry("S2A_x", "dbfs:/archive/S2A_x", True),
        storage.Entry("t.parquet", "dbfs:/archive/t.parquet", False),
    ]
    assert storage.list_names("dbfs:///archive/S2A_x") == {"B02.tif"}
    assert storage.read_bytes("dbfs:/archive/S2A_x/B02.tif") == b"band bytes"
    assert storage.is_dir("dbfs:/archive/S2A_x") and not storage.is_file("dbfs:/archive/S2A_x")
    assert storage.is_file("dbfs:/archive/t.parquet") and not storage.is_dir("dbfs:/nothing")
    assert storage.parquet_file("dbfs:/archive/t.parquet").read().column("x").to_pylist() == [4, 5]
    fs, path = storage.filesystem("dbfs:/archive/S2A_x/B02.tif")
    with fs.open_input_stream(path) as f:
        assert f.read() == b"band bytes"
    with pytest.raises(FileNotFoundError):
        storage.list_dir("dbfs:/nothing")


def test_a_delta_table_is_written_and_replayed_through_its_dbfs_uri(spark, dbfs: Path) -> None:
    schema = T.StructType([T.StructField("name", T.StringType()), T.StructField("n", T.LongType())])
    rows = [{"name": "a", "n": 1}, {"name": "b", "n": 2}]
    uri = write.table_path("dbfs:/lake", "small")
    # Spark here has no dbfs: filesystem: it works on the folder that the URI names
    local = storage.local_path(uri)
    assert local == str(dbfs / "lake" / "small")
    DeltaTable.create(spark).location(local).addColumns(schema).execute()
    add = part_files.write_file(uri, pa.Table.from_pylist(rows, schema=to_arrow_schema(schema)))
    assert write.commit(spark, write.start_transaction(spark, local), [add]) == 1
    snap = delta_log.snapshot(uri)
    [live] = snap.files
    assert snap.version == 1 and live.num_records == 2
    assert re.fullmatch(r"dbfs:/lake/small/part-00000-[0-9a-f-]{36}-c000\.zstd\.parquet", live.path)
    assert delta_log.read_small(snap).to_pylist() == rows
    got = spark.read.format("delta").load(local).collect()
    assert sorted((r.name, r.n) for r in got) == [("a", 1), ("b", 2)]


def test_adls_uris_give_adlfs_the_account_and_the_credential_chain() -> None:
    azure = storage.azure_options
    assert azure("abfss://lake@acct.dfs.core.windows.net/bigearthnet/lake/") == (
        {"account_name": "acct", "account_host": "acct.blob.core.windows.net", "anon": False},
        "lake/bigearthnet/lake",
    )
    assert azure("abfs://lake@Acct2.dfs.core.chinacloudapi.cn") == (
        {
            "account_name": "acct2",
            "account_host": "acct2.blob.core.chinacloudapi.cn",
            "anon": False,
        },
        "lake",
    )


@pytest.mark.parametrize(
    "uri",
    [
        "abfss://lake/bigearthnet",  # no account
        "abfss://@acct.dfs.core.windows.net/x",  # no container
        "abfss://lake@acct.example.com/x",  # not an Azure storage endpoint
    ],
)
def test_a_malformed_adls_uri_is_refused(uri: str) -> None:
    message = f"{uri}: an ADLS URI is abfss://<container>@<account>.dfs.core.windows.net/<path>"
    with pytest.raises(storage.StorageError, match=f"^{re.escape(message)}$"):
        storage.filesystem(uri)


def test_adls_without_adlfs_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "adlfs", None)  # adlfs not installed
    uri = "abfss://lake@nolib.dfs.core.windows.net/x"
    message = f"{uri}: abfss:// needs the adlfs package (pip install 'adlfs>=2024.7')"
    with pytest.raises(storage.StorageError, match=f"^{re.escape(message)}$"):
        storage.filesystem(uri)


@pytest.mark.skipif(importlib.util.find_spec("adlfs") is None, reason="adlfs is optional")
def test_adlfs_is_built_with_the_default_credential_or_its_own_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.identity.aio import DefaultAzureCredential

    for name in [k for k in os.environ if k.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    fs, path = storage.filesystem("abfss://lake@chain.dfs.core.windows.net/bigearthnet")
    blob = fs.handler.fs  # no request is sent until a file is read
    assert path == "lake/bigearthnet"
    assert (blob.account_name, blob.account_url) == ("chain", "https://chain.blob.core.windows.net")
    assert blob.anon is False and isinstance(blob.credential, DefaultAzureCredential)
    # adlfs' own variables come before the default credential
    endpoint = "http://127.0.0.1:10000/devstoreaccount1"
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint={endpoint};",
    )
    blob = storage.filesystem("abfss://lake@connstr.dfs.core.windows.net/x")[0].handler.fs
    assert blob.credential is None and blob.service_client.url == endpoint + "/"


def test_gcs_uris_use_the_default_credentials() -> None:
    fs, path = storage.filesystem("gs://bucket/bigearthnet/lake/")
    assert path == "bucket/bigearthnet/lake"
    assert fs.equals(pafs.GcsFileSystem()) and not fs.equals(pafs.GcsFileSystem(anonymous=True))
    alias, path = storage.filesystem("gcs://bucket/x")
    assert alias is fs and path == "bucket/x"  # one client per process


def test_hdfs_uris_name_the_namenode_and_the_path() -> None:
    assert storage.hdfs_root("hdfs://nn:8020/bigearthnet/lake/") == (
        "hdfs://nn:8020/",
        "/bigearthnet/lake",
    )
    assert storage.hdfs_root("viewfs://cluster/lake") == ("viewfs://cluster/", "/lake")
    assert storage.hdfs_root("HDFS://nn:8020/lake?user=spark") == (
        "hdfs://nn:8020/?user=spark",
        "/lake",
    )
    assert storage.hdfs_root("hdfs://nn:8020") == ("hdfs://nn:8020/", "/")


def test_an_unknown_scheme_names_the_supported_ones() -> None:
    message = (
        "ftp://host/x: no filesystem for scheme ftp:// (supported: paths, file:, dbfs:/, s3a://, "
        "s3://, s3n://, gs://, abfss://, abfs://, hdfs://, viewfs://)"
    )
    for use in (storage.filesystem, storage.read_bytes, storage.list_dir):
        with pytest.raises(storage.StorageError, match=f"^{re.escape(message)}$"):
            use("ftp://host/x")
