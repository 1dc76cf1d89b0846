"""Faults that must lose no patch, through ``spark-submit`` as users run it: folder names that
are not UTF-8, and storage errors (a local folder that cannot be listed, an S3 listing that is
throttled) that the next run must read again instead of recording them as defects."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import rasterio

from bigearth_spark import storage
from bigearth_spark.archive import layout
from bigearth_spark.archive.bands import decode_band
from bigearth_spark.archive.synth import write_archive
from bigearth_spark.etl import discover
from bigearth_spark.tables import delta_log, schema
from bigearth_spark.tables.write import table_path
from tests.conftest import REPO, VENV_BIN, run_cli
from tests.storage.s3_proxy import flat_listing_of, object_read, s3_proxy
from tests.storage.s3_server import upload
from tests.storage.test_s3 import s3  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow


def rows(lake: str, name: str, columns: tuple[str, ...]) -> list[dict]:
    """``columns`` of a table's rows (latest version, read through the Delta log, no Spark)."""
    files = delta_log.snapshot(table_path(lake, name)).files
    return [r for f in files for r in storage.parquet_file(f.path).read(columns).to_pylist()]


def pairs(lake: str) -> dict[str, dict]:
    """Stored pairs by patch id: their paths and B02 bytes."""
    got = rows(lake, schema.PAIRS, ("patch_id", "s2_path", "s1_path", "B02"))
    return {r["patch_id"]: r for r in got}


def quarantine(lake: str) -> set[tuple]:
    """(patch_id, kind, reason, path) of every quarantine row."""
    got = rows(lake, "quarantine", ("patch_id", "kind", "reason", "path"))
    return {(r["patch_id"], r["kind"], r["reason"], r["path"]) for r in got}


def quarantine_messages(lake: str) -> list[str]:
    """The ``message`` of every quarantine row."""
    return [r["message"] for r in rows(lake, "quarantine", ("message",))]


def ingest(archive: str, lake: str, env: dict[str, str] | None = None) -> str:
    """``spark-submit jobs/ingest.py`` of ``archive`` into ``lake`` (exit 0 required); stdout."""
    args = ("spark-submit", "jobs/ingest.py", "--input", archive, "--lake", lake)
    return run_cli(*args, env=env).stdout


def test_folder_names_that_are_not_utf8(tmp_path: Path) -> None:
    """An archive below a folder whose name is not UTF-8 is stored whole (its paths as
    ``file://`` URIs that read back), and a patch folder whose name is not UTF-8 is quarantined
    as ``bad_name``: the job neither crashes nor loses a patch."""
    made = tmp_path / "made"
    manifest = write_archive(made, "v1", 3, seed=4)
    parent = os.fsdecode(os.fsencode(tmp_path) + b"/lake\xe9s")  # Latin-1 bytes: not UTF-8
    os.mkdir(parent)
    archive = os.path.join(parent, "archive")
    os.rename(made, archive)
    s2_root = os.path.join(archive, manifest["roots"]["s2"])
    good = manifest["s2_patches"][0]
    odd = os.fsdecode(os.fsencode(good) + b"\xff")
    shutil.copytree(os.path.join(s2_root, good), os.path.join(s2_root, odd))

    lake = str(tmp_path / "lake")
    # the JVM of spark-submit turns argv bytes that are not UTF-8 into U+FFFD: such an input is
    # given as the file:// URI of its bytes, the same text the lake stores for it
    given = storage.as_text(archive)
    assert given.startswith("file://") and "lake%E9s" in given
    assert "readable patches" in ingest(given, lake)

    stored = pairs(lake)
    assert set(stored) == set(manifest["s2_patches"])
    row = stored[good]
    s2_dir = os.path.join(s2_root, good)
    assert row["s2_path"] == "file://" + quote(os.fsencode(s2_dir), safe="/")
    assert storage.local_path(row["s2_path"]) == s2_dir  # the OS's bytes, decoded back
    with open(os.path.join(s2_dir, f"{good}_B02.tif"), "rb") as f:
        expected = rasterio.open(io.BytesIO(f.read())).read(1)
    np.testing.assert_array_equal(decode_band("B02", row["B02"]), expected)

    odd_path = storage.as_text(os.path.join(s2_root, odd))
    assert odd_path.endswith("%FF") and storage.local_path(odd_path).endswith(odd)
    assert quarantine(lake) == {(storage.basename(odd_path), "s2", "bad_name", odd_path)}


def unprivileged(args: list[str]) -> list[str]:
    """``args`` run without root's power to read what its permissions deny (as CI runs the
    tests as root: capabilities DAC_OVERRIDE and DAC_READ_SEARCH dropped)."""
    if os.geteuid() != 0:
        return args
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *args]


def test_a_folder_that_cannot_be_listed_is_read_by_the_next_run(tmp_path: Path) -> None:
    """A patch folder that cannot be listed (permission denied during the first run) is a
    ``read_error``, not a defect: the next run reads and stores it."""
    archive = tmp_path / "archive"
    manifest = write_archive(archive, "v1", 3, seed=5)
    locked_id = manifest["s2_patches"][1]
    locked = archive / manifest["roots"]["s2"] / locked_id
    locked.chmod(0)
    lake = str(tmp_path / "lake")
    args = ["jobs/ingest.py", "--input", str(archive), "--lake", lake]
    proc = subprocess.run(
        unprivileged([str(VENV_BIN / "spark-submit"), *args]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    locked.chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stored = {p for p, r in pairs(lake).items() if r["s2_path"]}
    assert stored == set(manifest["s2_patches"]) - {locked_id}
    partner = manifest["patches"][locked_id]
    assert quarantine(lake) == {
        (locked_id, "s2", "read_error", str(locked)),
        (partner["s1"], "s1", "missing_s2_partner", str(archive / partner["s1_dir"])),
    }
    message = next(m for m in quarantine_messages(lake) if m.startswith("read_error"))
    assert message.startswith(f"read_error: {locked}: listing failed: PermissionError")

    ingest(str(archive), lake)
    second = pairs(lake)
    assert {p for p, r in second.items() if r["s2_path"]} == set(manifest["s2_patches"])
    assert all(r["s1_path"] for r in second.values())
    assert quarantine(lake) == set()


def test_a_throttled_s3_range_listing_is_read_by_the_next_run(s3: str, tmp_path: Path) -> None:  # noqa: F811
    """The flat listing of a range of S2 folders keeps answering 503 SlowDown during the first
    run (a real S3 server behind a proxy): each folder of the range is a ``read_error`` (none
    missing silently); the next run, unthrottled, stores them all."""
    made = tmp_path / "archive"
    manifest = write_archive(made, "v1", 3, seed=6)
    archive = f"{s3}/faults/ranges"
    upload(made, archive)
    s2_root = f"{archive}/{manifest['roots']['s2']}"
    lake = str(tmp_path / "lake")
    with s3_proxy(os.environ["AWS_ENDPOINT_URL"], flat_listing_of(s2_root)) as proxy:
        out = ingest(archive, lake, env={"AWS_ENDPOINT_URL": proxy.url})
    assert "readable patches" in out and proxy.failed > 0
    s2, s1 = manifest["s2_patches"], [manifest["patches"][p] for p in manifest["s2_patches"]]
    first = pairs(lake)  # the pairs keep their S1 side: their S2 side is read by the next run
    assert set(first) == set(s2)
    assert all(r["s2_path"] is None and r["s1_path"] for r in first.values())
    assert quarantine(lake) == {
        *[(p, "folder", "read_error", f"{s2_root}/{p}") for p in s2],
        *[(p["s1"], "s1", "missing_s2_partner", f"{archive}/{p['s1_dir']}") for p in s1],
    }
    messages = [m for m in quarantine_messages(lake) if m.startswith("listing failed")]
    assert len(messages) == len(s2) and all("SlowDown" in m for m in messages)

    ingest(archive, lake)
    second = pairs(lake)
    assert set(second) == set(s2) and all(r["s1_path"] for r in second.values())
    assert quarantine(lake) == set()


def test_an_s3_object_that_fails_to_read_is_read_by_the_next_run(s3: str, tmp_path: Path) -> None:  # noqa: F811
    """One band tif answers 503 SlowDown to every read of the first run: its side is a
    ``read_error`` (the pair's other side is stored); the next run reads it and completes the
    pair, bit for bit."""
    made = tmp_path / "archive"
    manifest = write_archive(made, "v1", 3, seed=7)
    archive = f"{s3}/faults/objects"
    upload(made, archive)
    flaky_id = manifest["s2_patches"][1]
    folder = f"{archive}/{manifest['roots']['s2']}/{flaky_id}"
    bucket, key = storage.s3_location(f"{folder}/{flaky_id}_B8A.tif")
    lake = str(tmp_path / "lake")
    with s3_proxy(os.environ["AWS_ENDPOINT_URL"], object_read(f"{bucket}/{key}", 99)) as proxy:
        ingest(archive, lake, env={"AWS_ENDPOINT_URL": proxy.url})
    assert proxy.failed > 0
    first = pairs(lake)
    assert set(first) == set(manifest["s2_patches"])
    assert first[flaky_id]["s2_path"] is None and first[flaky_id]["s1_path"] is not None
    partner = manifest["patches"][flaky_id]
    assert quarantine(lake) == {
        (flaky_id, "s2", "read_error", folder),
        (partner["s1"], "s1", "missing_s2_partner", f"{archive}/{partner['s1_dir']}"),
    }
    [message] = [m for m in quarantine_messages(lake) if m.startswith("read_error")]
    assert f"{flaky_id}_B8A.tif: OSError" in message and "SlowDown" in message

    ingest(archive, lake)
    second = pairs(lake)
    assert second[flaky_id]["s2_path"] == folder
    with rasterio.open(made / manifest["roots"]["s2"] / flaky_id / f"{flaky_id}_B02.tif") as src:
        want = src.read(1)
    assert np.array_equal(decode_band("B02", second[flaky_id]["B02"]), want)
    assert quarantine(lake) == set()


def test_a_tile_folder_that_cannot_be_listed_is_reported_not_fatal(tmp_path: Path) -> None:
    """Discovery on the executors: a v2 tile folder whose listing keeps failing with an OS error
    (here ELOOP) becomes one ``unlisted_folder`` row that the quarantine reports as
    ``read_error``, instead of failing the task and the job."""
    tile = tmp_path / "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
    tile.symlink_to(tile)
    [row] = discover._expand_entry(layout.Entry("v2_s2", str(tile), True))
    folder_type, path, name, key, error, files, json_bytes = row
    assert files is None and json_bytes is None  # a local folder: listed by the decoder
    assert (folder_type, path, name, key) == (discover.UNLISTED, str(tile), tile.name, None)
    assert error.startswith("listing failed: OSError: [Errno 40] Too many levels of symbolic")
