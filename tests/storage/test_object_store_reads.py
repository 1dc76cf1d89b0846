"""Reads that hide an object store's latency, on the tests' real S3 server behind a real proxy
that delays every request and counts them: flat listings by ranges of keys, many reads in flight
(bounded), row groups read ahead by the training reader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from bigearth_spark import fetch, key_ranges, storage
from bigearth_spark.archive.bands import S1_BANDS, S2_BANDS
from bigearth_spark.etl import decode
from bigearth_spark.train.data import DataSpec, PairsDataset
from tests.conftest import needs_shared
from tests.etl.test_decode import sample_unit
from tests.storage.s3_proxy import object_read, s3_proxy
from tests.storage.s3_server import upload
from tests.storage.test_s3 import s3  # noqa: F401 (a fixture)


@pytest.fixture
def proxied(s3: str) -> Iterator:  # noqa: F811
    """A 50 ms proxy in front of the S3 server, named by the environment (as a user's endpoint
    would be) for the test; yields (bucket URI, proxy)."""
    with s3_proxy(os.environ["AWS_ENDPOINT_URL"], delay_ms=50) as proxy:
        saved = os.environ["AWS_ENDPOINT_URL"]
        os.environ["AWS_ENDPOINT_URL"] = proxy.url
        try:
            yield s3, proxy
        finally:
            os.environ["AWS_ENDPOINT_URL"] = saved


def put(uri: str, objects: dict[str, bytes]) -> None:
    """Write ``objects`` (key below ``uri`` → content) to the bucket, many at once."""
    bucket, prefix = storage.s3_location(uri)
    client = storage.s3_client()
    with ThreadPoolExecutor(16) as threads:
        list(
            threads.map(
                lambda kv: client.put_object(Bucket=bucket, Key=f"{prefix}/{kv[0]}", Body=kv[1]),
                objects.items(),
            )
        )


def test_ranges_follow_the_stores_key_order() -> None:
    # keys "a-b/..." sort before "a/..." ("-" < "/"), though the name "a" sorts before "a-b"
    assert key_ranges.ranges(["b", "a", "a-b", "a_c"], 2) == [["a-b", "a"], ["a_c", "b"]]
    assert key_ranges.ranges([], 2) == []


def test_patch_folders_are_listed_flat_by_ranges(proxied) -> None:
    bucket, proxy = proxied
    root = f"{bucket}/ranges/root"
    objects = {f"f{i:03}/f{i:03}_B0{j}.tif": b"x" for i in range(300) for j in range(4)}
    objects |= {"f-x/": b"", "f150/sub/deep.txt": b"y", "zz.txt": b"stray at the root"}
    put(root, objects)
    names = ["f-x", *[f"f{i:03}" for i in range(300)]]
    parts = key_ranges.ranges(names, 256)
    assert [len(p) for p in parts] == [256, 45] and parts[0][0] == "f-x"

    proxy.reset()
    listings = [key_ranges.list_folders(root, part, 1) for part in parts]
    # 1,022 keys in the first range (two pages of 1,000), 180 in the second: one request per
    # 1,000 keys, never one per folder (301 requests)
    assert proxy.requests == {"LIST": 3}
    folders = {}
    for listing in listings:
        assert listing.stray_files == []  # zz.txt lies outside every range
        assert folders.keys().isdisjoint(listing.folders)
        folders |= listing.folders
    want = {f"f{i:03}": {f"f{i:03}_B0{j}.tif" for j in range(4)} for i in range(300)}
    want["f150"].add("sub")
    want["f-x"] = set()
    assert folders == want


def test_tile_folders_are_listed_flat(proxied) -> None:
    bucket, proxy = proxied
    parent = f"{bucket}/tiles/BigEarthNet-S2"
    put(
        parent,
        {
            "T1/": b"",
            "T1/readme.txt": b"a stray file in a tile folder",
            "T1/p1/p1_B02.tif": b"1",
            "T1/p1/p1_B03.tif": b"2",
            "T1/p2/": b"",
            "T2/p3/p3_B02.tif": b"3",
        },
    )
    proxy.reset()
    listing = key_ranges.list_folders(parent, ["T1"], 2)
    assert proxy.requests == {"LIST": 1}
    assert listing.folders == {"T1/p1": {"p1_B02.tif", "p1_B03.tif"}, "T1/p2": set()}
    assert listing.stray_files == ["T1/readme.txt"]


def test_reads_are_in_flight_together_and_bounded(proxied) -> None:
    bucket, proxy = proxied
    root = f"{bucket}/reads"
    content = {f"o{i:02}": os.urandom(1000 + i) for i in range(48)}
    put(root, content)
    proxy.reset()
    fetched = fetch.fetch([f"{root}/{k}" for k in content], 12)
    got = {storage.basename(uri): read.result() for uri, read in fetched.items()}
    assert got == content
    assert proxy.requests == {"GET": 48}  # one GET per file: no HEAD before it
    assert proxy.max_in_flight == 12  # the pool's size, all of it used


def test_a_read_that_fails_is_retried_and_errors_are_kept(proxied) -> None:
    bucket, proxy = proxied
    root = f"{bucket}/errors"
    put(root, {"ok": b"fine", "flaky": b"read at last"})
    name, prefix = storage.s3_location(root)
    proxy.failing = object_read(f"{name}/{prefix}/flaky", 2)  # the SDK's retry + one of ours
    fetched = fetch.fetch([f"{root}/ok", f"{root}/flaky", f"{root}/missing"], 4)
    assert fetched[f"{root}/ok"].result() == b"fine"
    assert fetched[f"{root}/flaky"].result() == b"read at last"
    assert proxy.failed == 2
    with pytest.raises(FileNotFoundError, match="NoSuchKey"):
        fetched[f"{root}/missing"].result()
    proxy.failing = object_read(f"{name}/{prefix}/ok", 99)
    with pytest.raises(OSError, match="SlowDown") as e:
        fetch.fetch([f"{root}/ok"], 4)[f"{root}/ok"].result()
    assert not isinstance(e.value, FileNotFoundError)  # a storage error: retried by a later run


def test_files_of_the_next_items_are_requested_ahead(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"{i}.a").write_bytes(b"a%d" % i)
        (tmp_path / f"{i}.b").write_bytes(b"b%d" % i)
    pulled = []

    def items() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            yield i

    def files(i: int) -> list[str]:
        return [str(tmp_path / f"{i}.a"), str(tmp_path / f"{i}.b")]

    seen = []
    for i, fetched in fetch.ahead(items(), files, 3):
        if i == 0:
            assert pulled == [0, 1, 2]  # 2 × 3 files requested before the first is handed over
        read = fetch.reader(fetched)
        seen.append((i, read(files(i)[0]), read(files(i)[1])))
    assert seen == [(i, b"a%d" % i, b"b%d" % i) for i in range(10)]
    # an item with more files than the window is still handed over, alone
    big = list(fetch.ahead(iter([0]), lambda _: [str(p) for p in tmp_path.iterdir()], 1))
    assert len(big) == 1 and len(big[0][1]) == 20


def test_work_is_done_ahead_in_order() -> None:
    assert list(fetch.read_ahead(lambda x: x * x, range(7), 3)) == [x * x for x in range(7)]
    assert list(fetch.read_ahead(lambda x: x, [], 2)) == []


def test_the_training_reader_reads_row_groups_ahead_from_a_slow_store(
    proxied,
    v1_lake,
    tmp_path: Path,
) -> None:
    bucket, proxy = proxied
    lake = f"{bucket}/reader/lake"
    upload(Path(v1_lake[0]), lake)
    batches = {}
    for where, source in (("local", v1_lake[0]), ("s3", lake)):
        dataset = PairsDataset(DataSpec(source, batch_size=4, workers=0, augment=True), seed=5)
        dataset.set_epoch(1)
        proxy.reset()
        batches[where] = list(dataset)
    assert proxy.max_in_flight >= 2  # the next row group requested beside the current one
    assert proxy.requests["HEAD"] <= len({g.path for g in dataset.groups})  # opened once
    local, remote = batches["local"], batches["s3"]
    assert [b.ids for b in remote] == [b.ids for b in local] and sum(len(b.ids) for b in local)
    for a, b in zip(remote, local, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.skipped == b.skipped


@needs_shared
@pytest.mark.parametrize("in_flight", [1, 12])
def test_the_decoder_fetches_the_next_units_files_ahead(proxied, in_flight: int) -> None:
    """Units whose files discovery listed: their bytes are fetched ``in_flight`` at a time (the
    setting is the bound, and it is reached), and decode as the local folders do."""
    bucket, proxy = proxied
    local = sample_unit(need_s1=True)
    units = []
    for i in range(6):  # the real sample pair, six times over
        unit = dict(local)
        for side in ("s2", "s1"):
            folder = Path(local[f"{side}_path"])
            uri = f"{bucket}/units/{in_flight}/{i}/{folder.name}"
            upload(folder, uri)
            unit[f"{side}_path"] = uri
            unit[f"{side}_files"] = sorted(p.name for p in folder.iterdir())
        units.append(unit)
    batch = pa.RecordBatch.from_pylist(units)
    proxy.reset()
    rows = [r for rs, _, _ in decode.decoded_rows(iter([batch]), None, in_flight) for r in rs]
    assert proxy.requests == {"GET": 6 * 16}  # 13 + 3 files per pair, each once, no listing
    assert proxy.max_in_flight == in_flight
    want = decode.decode_unit(local)
    assert want["stored_sides"] == ["s2", "s1"]
    for row, unit in zip(rows, units, strict=True):
        assert row["stored_sides"] == want["stored_sides"] and row["issues"] == []
        assert row["s2_path"] == unit["s2_path"] and row["s1_path"] == unit["s1_path"]
        for band in (*S2_BANDS, *S1_BANDS):
            assert row[band.name] == want[band.name], band.name  # the encoded band bytes


def test_the_requests_in_flight_setting_is_checked() -> None:
    assert fetch.in_flight(None) == fetch.REQUESTS_IN_FLIGHT == 32
    assert fetch.in_flight("64") == 64 and fetch.in_flight(fetch.MAX_IN_FLIGHT) == 128
    for bad in ("0", "129", -1):
        with pytest.raises(ValueError, match=r"spark\.bigearth\.requestsInFlight is -?\d+"):
            fetch.in_flight(bad)
