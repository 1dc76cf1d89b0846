"""Ingest straight from tarballs (issue 29): the official downloads' forms written by
``synth --pack``, against the ingest of the same archive's extracted folders."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import pytest

from bigearth_spark.archive import tarball, tarball_files, tarball_scan
from bigearth_spark.archive.layout import find_roots, roots_in_background
from bigearth_spark.archive.synth.pack import pack_archive
from bigearth_spark.etl.ingest import Ingest
from bigearth_spark.tables import schema
from tests.etl.test_ingest import table

PAIR_COLUMNS = ["patch_id", "s1_patch_id", "split", "labels43", "labels19", "B02", "B8A", "VV"]


def member(path: str | None) -> str | None:
    """A lake path without its tarball and the top folder above the archive's folders: what
    it names inside the archive (a folder ingest's path without its archive root)."""
    if path is None:
        return None
    inside = tarball.split(path)
    return inside[1].split("/", 1)[1] if inside else path


def folder_member(path: str | None, root: Path) -> str | None:
    if path is None:
        return None
    return str(Path(path).relative_to(root)).split("/", 1)[1]


def pairs_rows(spark, lake: str, paths) -> set[tuple]:
    rows = table(spark, lake, schema.PAIRS).select(*PAIR_COLUMNS, "s2_path", "s1_path").collect()
    return {
        (*(_hashable(r[c]) for c in PAIR_COLUMNS), paths(r["s2_path"]), paths(r["s1_path"]))
        for r in rows
    }


def _hashable(value):
    if isinstance(value, list):
        return tuple(value)
    return bytes(value) if isinstance(value, bytearray) else value


def quarantine_rows(spark, lake: str, paths) -> set[tuple]:
    rows = table(spark, lake, schema.QUARANTINE).collect()
    return {(r["reason"], r["patch_id"], r["kind"], paths(r["path"])) for r in rows}


def ingest(spark, source: Path, lake: Path):
    return Ingest(spark, str(lake)).run([str(source)])


@pytest.mark.parametrize(("flavor", "pack"), [("v1", "tar.gz"), ("v2", "tar.zst"), ("v1", "tar")])
def test_tarballs_ingest_into_the_tables_of_their_folders(
    spark, flavor, pack, v1_archive, v1_lake, v2_archive, v2_lake, v1_tarballs, tmp_path
):
    """Same pairs (ids, splits, labels, band bytes), same quarantine (reasons, ids, the member
    paths), paths naming tarball and member; a second run reads no tarball again."""
    (root, _), (folder_lake, _) = (v1_archive, v1_lake) if flavor == "v1" else (v2_archive, v2_lake)
    if pack == "tar.gz":
        source = v1_tarballs
    else:
        source = tmp_path / "download"
        pack_archive(root, source, pack)
    lake = tmp_path / "lake"
    report = ingest(spark, source, lake)
    assert report.success
    want = pairs_rows(spark, folder_lake, lambda p: folder_member(p, root))
    got = pairs_rows(spark, str(lake), member)
    assert got == want and len(got) > 20
    stored = table(spark, str(lake), schema.PAIRS).select("s2_path").collect()
    assert all(
        r["s2_path"].startswith(str(source)) and tarball.SEP in r["s2_path"]
        for r in stored
        if r["s2_path"]
    )
    folder_q = quarantine_rows(spark, folder_lake, lambda p: p and folder_member(p, root))
    assert quarantine_rows(spark, str(lake), member) == folder_q
    kept = {p: p.stat().st_mtime_ns for p in source.glob("*.index/*")}
    again = ingest(spark, source, lake)
    assert again.success and {p: p.stat().st_mtime_ns for p in source.glob("*.index/*")} == kept


def test_truncated_download_keeps_what_came_and_the_redownload_completes(
    spark, v1_archive, v1_lake, v1_tarballs, tmp_path
):
    root, _ = v1_archive
    source = tmp_path / "download"
    shutil.copytree(v1_tarballs, source, ignore=shutil.ignore_patterns("*.index"))
    s2 = source / "BigEarthNet-S2-v1.0.tar.gz"
    whole = s2.read_bytes()
    s2.write_bytes(whole[: len(whole) * 6 // 10])  # a partial download
    lake = tmp_path / "lake"
    ingest(spark, source, lake)
    cut = [
        r
        for r in table(spark, str(lake), schema.QUARANTINE).collect()
        if r["reason"] == tarball.TRUNCATED
    ]
    assert (
        len(cut) == 1 and str(s2) in cut[0]["path"] and "download incomplete" in cut[0]["message"]
    )
    folders = tarball.index(str(s2)).cut["folders"]
    assert f"the {folders} patch folders before it were read" in cut[0]["message"]
    partial = pairs_rows(spark, str(lake), member)
    want = pairs_rows(spark, v1_lake[0], lambda p: folder_member(p, root))
    with_s2 = {r for r in partial if r[-2] is not None}
    assert with_s2 and with_s2 < {r for r in want if r[-2] is not None}
    s2.write_bytes(whole)  # downloaded again
    ingest(spark, source, lake)
    assert pairs_rows(spark, str(lake), member) == want
    reasons = {r["reason"] for r in table(spark, str(lake), schema.QUARANTINE).collect()}
    assert tarball.TRUNCATED not in reasons


def corrupted(gz: bytes) -> bytes:
    """``gz`` with 256 bytes from its middle on overwritten where zlib's inflate then finds a
    broken block (most overwrites only change content, which the CRC at the end catches: the
    first one that breaks the structure)."""
    for at in range(len(gz) // 2, len(gz) - 4096, 4099):
        bad = gz[:at] + b"\xff" * 256 + gz[at + 256 :]
        try:
            zlib.decompressobj(wbits=31).decompress(bad)
        except zlib.error as e:
            if "incorrect data check" not in str(e):  # the CRC at the end: no block is broken
                return bad
    raise AssertionError("no overwrite broke the stream")


def test_corrupt_block_stops_only_that_stream(spark, v1_lake, v1_tarballs, tmp_path, monkeypatch):
    """A corrupt block in the S1 tarball: its fault quarantined, S1 sides stored up to it, the
    S2 stream whole. (rapidgzip chunks of 512 KiB: a corrupt block loses the chunk it is in, and
    this tarball is ~5 MB.)"""
    monkeypatch.setattr(tarball_scan, "GZIP_CHUNK", 512 << 10)
    source = tmp_path / "download"
    shutil.copytree(v1_tarballs, source, ignore=shutil.ignore_patterns("*.index"))
    s1 = source / "BigEarthNet-S1-v1.0.tar.gz"
    s1.write_bytes(corrupted(s1.read_bytes()))
    lake = tmp_path / "lake"
    ingest(spark, source, lake)
    q = table(spark, str(lake), schema.QUARANTINE).collect()
    faults = [r for r in q if r["reason"] in (tarball.CORRUPT, tarball.TRUNCATED)]
    assert len(faults) == 1 and faults[0]["reason"] == tarball.CORRUPT
    assert faults[0]["path"].startswith(f"{s1}{tarball.SEP}")
    pairs = table(spark, str(lake), schema.PAIRS).collect()
    folder_pairs = table(spark, v1_lake[0], schema.PAIRS).collect()
    assert sum(r["s2_path"] is not None for r in pairs) == sum(
        r["s2_path"] is not None for r in folder_pairs
    )
    with_s1 = sum(r["s1_path"] is not None for r in pairs)
    assert 0 < with_s1 < sum(r["s1_path"] is not None for r in folder_pairs)


def test_a_file_named_as_a_tarball_that_is_none_is_a_clear_error(tmp_path):
    fake = tmp_path / "BigEarthNet-S2-v1.0.tar.gz"
    fake.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 8)
    with pytest.raises(
        tarball.NotATarballError, match=r"BigEarthNet-S2-v1\.0\.tar\.gz is not a tar"
    ):
        find_roots(str(fake))
    with pytest.raises(tarball.NotATarballError, match=r"is not a tar"):
        roots_in_background([str(fake)]).result(timeout=60)  # the CLI's, while Spark starts


def test_roots_found_in_background_are_the_inputs_roots(v1_tarballs):
    inputs = [str(p) for p in sorted(v1_tarballs.glob("*.tar.gz"))]
    found = roots_in_background(inputs).result(timeout=600)
    assert found == [r for i in inputs for r in find_roots(i)]
    assert {r.archive_type for r in found} == {"v1_s1", "v1_s2"}


def test_tarballs_on_s3_ingest_as_the_local_ones(spark, v1_archive, v1_lake, v1_tarballs, tmp_path):
    """The official tarballs in a bucket (the tests' S3 server), through plain spark-submit:
    the folders' tables, paths naming the objects; the index is written beside them."""
    from tests.conftest import run_cli
    from tests.storage.s3_server import moto_server, upload

    local = tmp_path / "download"
    shutil.copytree(v1_tarballs, local, ignore=shutil.ignore_patterns("*.index"))
    with moto_server("bigearth-tarballs") as bucket:
        source, lake = f"{bucket}/download", str(tmp_path / "lake")
        upload(local, source)
        run_cli("spark-submit", "jobs/ingest.py", "--input", source, "--lake", lake)
        from bigearth_spark import storage

        assert storage.is_file(f"{source}/BigEarthNet-S2-v1.0.tar.gz.index/index.json")
    root = v1_archive[0]
    got = pairs_rows(spark, lake, member)
    assert got == pairs_rows(spark, v1_lake[0], lambda p: folder_member(p, root))
    paths = table(spark, lake, schema.PAIRS).select("s2_path").collect()
    assert all(r["s2_path"].startswith(f"{source}/") for r in paths if r["s2_path"])


def split_into_parts(tarball_file: Path, count: int) -> list[Path]:
    """``tarball_file`` cut into ``count`` parts named as ``split`` names them (…aa, …ab…)."""
    data = tarball_file.read_bytes()
    step = -(-len(data) // count)
    names = [tarball_file.with_name(tarball_file.name + "a" + chr(97 + i)) for i in range(count)]
    for i, name in enumerate(names):
        name.write_bytes(data[i * step : (i + 1) * step])
    tarball_file.unlink()
    return names


def test_split_parts_read_as_one_stream(spark, v1_archive, v1_lake, v1_tarballs, tmp_path):
    """Tarballs downloaded in parts (…tar.gzaa, …ab, …ac): a folder of them, or the first part
    named alone, ingest as the whole tarballs."""
    source = tmp_path / "download"
    shutil.copytree(v1_tarballs, source, ignore=shutil.ignore_patterns("*.index"))
    s2_parts = split_into_parts(source / "BigEarthNet-S2-v1.0.tar.gz", 3)
    split_into_parts(source / "BigEarthNet-S1-v1.0.tar.gz", 2)
    assert tarball_files.parts(str(s2_parts[0])) == [str(p) for p in s2_parts]
    assert not tarball.is_tarball(str(s2_parts[1]))
    roots = find_roots(str(s2_parts[0]))
    assert [r.archive_type for r in roots] == ["v1_s2"]
    lake = tmp_path / "lake"
    assert ingest(spark, source, lake).success
    want = pairs_rows(spark, v1_lake[0], lambda p: folder_member(p, v1_archive[0]))
    assert pairs_rows(spark, str(lake), member) == want
