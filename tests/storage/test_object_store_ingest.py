"""The ingest from an object store that answers every request 20 ms late (the tests' S3 server
behind a real delaying proxy), through plain ``spark-submit``: the same tables as the local
ingest, row for row, with one GET per file and listings of ranges of folders, not one per
folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bigearth_spark import key_ranges, storage
from bigearth_spark.tables import schema
from tests.conftest import run_cli
from tests.storage.s3_proxy import s3_proxy
from tests.storage.s3_server import upload
from tests.storage.test_s3 import s3, table_rows  # noqa: F401 (s3: a fixture)

TABLES = (schema.PAIRS, schema.LABELS, schema.QUARANTINE, schema.PATCH_METADATA)


@pytest.mark.slow
@pytest.mark.parametrize("flavor", ["v1", "v2"])
def test_ingest_from_a_slow_store_equals_the_local_ingest(
    flavor: str,
    s3: str,  # noqa: F811
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    root, _ = request.getfixturevalue(f"{flavor}_archive")
    local_lake, _ = request.getfixturevalue(f"{flavor}_lake")
    archive, lake = f"{s3}/slow/{flavor}", str(tmp_path / "lake")
    upload(root, archive)
    with s3_proxy(os.environ["AWS_ENDPOINT_URL"], delay_ms=20) as proxy:
        args = ("spark-submit", "jobs/ingest.py", "--input", archive, "--lake", lake)
        run_cli(*args, env={"AWS_ENDPOINT_URL": proxy.url})
    # each decode task keeps its next units' files in flight (32 reads), where reading them in
    # turn would keep one per task (see also test_object_store_reads's decoder test)
    assert proxy.max_in_flight >= 16
    roots = {archive: "<archive>", str(root): "<archive>"}
    for name in TABLES:
        remote, local = table_rows(lake, name, roots), table_rows(local_lake, name, roots)
        assert len(remote) == len(local) > 0, name
        assert remote == local, name  # band bytes included

    bucket, prefix = storage.s3_location(archive)
    files = {
        f"{bucket}/{prefix}/{p.relative_to(root).as_posix()}": p.name
        for p in root.rglob("*")
        if p.is_file()
    }
    read = {key: n for (kind, key), n in proxy.objects.items() if kind == "GET"}
    assert not {key for kind, key in proxy.objects if kind == "HEAD"} & files.keys()
    assert read.keys() <= files.keys()  # nothing but the archive's files is read from it
    # every file once: a v1 S1 JSON read by discovery (for its S2 partner) is handed to the
    # decoder with the unit
    assert set(read.values()) == {1}
    # listings below the roots' top level: one per range of folders (here each v1 root's
    # folders make one range, each v2 tile or scene folder its own), never one per folder
    below = [
        key.removeprefix(f"{prefix}/").rstrip("/")
        for (kind, key), n in proxy.objects.items()
        for _ in range(n)
        if kind == "LIST"
    ]
    below = [k for k in below if "/" in k and not k.endswith("lists")]
    if flavor == "v1":
        v1_roots = [d for d in root.iterdir() if d.is_dir() and d.name != "lists"]
        assert all(sum(1 for _ in d.iterdir()) < key_ranges.RANGE_FOLDERS for d in v1_roots)
        assert len(below) == len(v1_roots) == 3
    else:
        parts = [p for p in root.iterdir() if p.is_dir() and p.name != "lists"]
        tiles = [t for part in parts for t in part.iterdir() if t.is_dir()]
        assert len(below) == len(tiles) == len(set(below))
    patch_folders = {p.parent for p in root.rglob("*.tif")}
    assert proxy.requests["LIST"] < len(patch_folders) / 4  # the driver's few, and the ranges
