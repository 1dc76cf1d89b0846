"""The storage layer on local paths and URI parsing (S3 itself: test_s3.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from bigearth_spark import storage


def test_paths_and_uris_are_told_apart() -> None:
    assert [storage.scheme(u) for u in ("/a/b", "a", "file:/a", "file:///a")] == [None] * 4
    assert storage.scheme("s3a://b/k") == "s3a" and storage.scheme("GS://b/k") == "gs"
    assert storage.local_path("file:///data/x") == "/data/x" == storage.local_path("file:/data/x")
    assert storage.normalize("s3a://b/lake/") == "s3a://b/lake"
    assert storage.normalize("rel/dir") == os.path.join(os.getcwd(), "rel/dir")
    assert storage.join("s3a://b/lake/", "pairs", "x.parquet") == "s3a://b/lake/pairs/x.parquet"
    assert storage.join("/data", "a") == "/data/a"
    assert storage.basename("s3a://b/root/S2A_x/") == "S2A_x" == storage.basename("/r/S2A_x")


def test_uris_map_to_pyarrow_filesystems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    fs, path = storage.filesystem("s3a://bucket/a/b/")
    assert isinstance(fs, pafs.S3FileSystem) and path == "bucket/a/b"
    assert fs.region == "eu-west-1"
    fs, path = storage.filesystem("file:///tmp/x")
    assert isinstance(fs, pafs.LocalFileSystem) and path == "/tmp/x"
    # other schemes and their errors: test_uris.py


def test_local_listing_and_reads(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.csv.bz2").write_bytes(b"raw")
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "t.parquet")
    assert storage.list_dir(f"file://{tmp_path}") == [
        storage.Entry("a.csv.bz2", str(tmp_path / "a.csv.bz2"), False),
        storage.Entry("b", str(tmp_path / "b"), True),
        storage.Entry("t.parquet", str(tmp_path / "t.parquet"), False),
    ]
    assert storage.list_names(f"file://{tmp_path}") == {"a.csv.bz2", "b", "t.parquet"}
    assert storage.read_bytes(str(tmp_path / "a.csv.bz2")) == b"raw"
    big = os.urandom(3 << 20)
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "empty").write_bytes(b"")
    assert storage.read_bytes(str(tmp_path / "big")) == big
    assert storage.read_bytes(f"file://{tmp_path}/empty") == b""
    # a file whose size says 0 and that has content is read to its end
    assert storage.read_bytes("/proc/self/cmdline") == Path("/proc/self/cmdline").read_bytes()
    with pytest.raises(IsADirectoryError):
        storage.read_bytes(str(tmp_path / "b"))
    assert storage.is_dir(str(tmp_path / "b")) and not storage.is_file(str(tmp_path / "b"))
    assert storage.is_file(str(tmp_path / "t.parquet"))
    assert storage.parquet_file(str(tmp_path / "t.parquet")).read().column("x").to_pylist() == [
        1,
        2,
        3,
    ]
    with pytest.raises(FileNotFoundError):
        storage.list_dir(str(tmp_path / "missing"))
