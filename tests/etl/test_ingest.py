"""The ingest on real Spark + Delta: generated v1/v2 archives and the real samples."""

from __future__ import annotations

import bz2
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import rasterio

from bigearth_spark.archive import labels as L
from bigearth_spark.archive.bands import REFERENCE_MAP, S1_BANDS, S2_BANDS, decode_band
from bigearth_spark.archive.synth import DEFECTS_V1
from bigearth_spark.etl.ingest import Ingest
from bigearth_spark.etl.pairs import LAKE_REASONS
from bigearth_spark.tables import catalog, schema
from bigearth_spark.tables.write import table_path
from tests import expected
from tests.conftest import SAMPLES, SHARED, needs_shared


def table(spark, lake, name):
    return spark.read.format("delta").load(table_path(lake, name))


KEYS = {
    schema.PAIRS: ["patch_id"],
    schema.LABELS: ["patch_id", "nomenclature", "label_index"],
    schema.NOMENCLATURE: ["nomenclature", "label_index"],
    schema.QUARANTINE: ["path", "reason"],
    schema.PATCH_METADATA: ["patch_id", "archive"],
    schema.OFFICIAL_LISTS: ["archive", "membership"],
}


def assert_keys_unique(spark, lake) -> dict[str, int]:
    """Every table's key is unique (counted by Spark, not through a dict); rows per table."""
    rows = {}
    for name, key in KEYS.items():
        df = table(spark, lake, name)
        rows[name] = df.count()
        assert df.select(*key).distinct().count() == rows[name], name
    assert (
        table(spark, lake, schema.PAIRS)
        .where("s1_patch_id IS NOT NULL")
        .select("s1_patch_id")
        .distinct()
        .count()
        == table(spark, lake, schema.PAIRS).where("s1_patch_id IS NOT NULL").count()
    )
    return rows


def assert_rows(spark, lake, root, manifest) -> None:
    """Keys unique, and the rows of the ingest of one archive."""
    rows = assert_keys_unique(spark, lake)
    want = expected.table_rows(root, manifest)
    assert {name: rows[name] for name in want} == want


def rows_by_id(spark, lake, name):
    rows = table(spark, lake, name).collect()
    by_id = {r["patch_id"]: r for r in rows}
    assert len(by_id) == len(rows), f"duplicate patch ids in {name}"
    return by_id


def rasterio_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_v1_pairs_match_the_generated_truth(spark, v1_lake, v1_archive):
    lake, _ = v1_lake
    _root, manifest = v1_archive
    pairs = rows_by_id(spark, lake, schema.PAIRS)
    for s2, truth in manifest["patches"].items():
        row = pairs[s2]
        assert row["s1_patch_id"] == truth["s1"]
        assert row["labels43"] == L.sort_labels(truth["labels43"], "43")
        assert (
            row["labels19"] == L.to_19(truth["labels43"]) == L.sort_labels(truth["labels19"], "19")
        )
        assert list(row["multi_hot_19"]) == list(L.multi_hot(truth["labels19"], "19"))
        assert list(row["multi_hot_43"]) == list(L.multi_hot(truth["labels43"], "43"))
        assert row["split"] == expected.SPLIT_NAMES.get(truth["split"], truth["split"])
        assert (row["is_snow"], row["is_cloud_or_shadow"]) == (truth["snow"], truth["cloud"])
        assert row["has_no_19_label"] == truth["no_19_labels"]
        assert row["epsg"] == truth["epsg"] and (row["ulx"], row["uly"]) == (
            truth["ulx"],
            truth["uly"],
        )
    assert len(manifest["patches"]) == manifest["pairs"]
    # and the defect pairs: a row for each pair with a readable side, no other row
    assert {pid: row["split"] for pid, row in pairs.items()} == expected.pair_splits(manifest)


def test_v1_bands_are_bit_exact_with_rasterio(spark, v1_lake, v1_archive):
    lake, _ = v1_lake
    root, manifest = v1_archive
    pairs = rows_by_id(spark, lake, schema.PAIRS)
    for s2 in sorted(manifest["patches"])[:5]:
        truth = manifest["patches"][s2]
        for b in S2_BANDS:
            expected = rasterio_band(root / truth["s2_dir"] / f"{s2}_{b.name}.tif")
            got = decode_band(b.name, pairs[s2][b.name])
            assert got.dtype == expected.dtype and np.array_equal(got, expected)
        for b in S1_BANDS:
            expected = rasterio_band(root / truth["s1_dir"] / f"{truth['s1']}_{b.name}.tif")
            assert np.array_equal(decode_band(b.name, pairs[s2][b.name]), expected)


def test_every_v1_defect_is_quarantined_and_nothing_is_lost(spark, v1_lake, v1_archive):
    lake, report = v1_lake
    root, manifest = v1_archive
    q = table(spark, lake, schema.QUARANTINE).collect()
    assert set(manifest["defects"]) == set(DEFECTS_V1)
    want = expected.quarantine(root, manifest)
    assert sorted((r["reason"], r["patch_id"] or r["path"]) for r in q) == sorted(want)
    # every S2 folder of the input is either a stored S2 side or quarantined with a reason
    s2_folders = {
        str(p)
        for r in ("BigEarthNet-v1.0", "BigEarthNet-v1.0-extra")
        for p in (root / r).iterdir()
        if p.is_dir()
    }
    pairs = table(spark, lake, schema.PAIRS)
    stored = {r["s2_path"] for r in pairs.where("s2_path IS NOT NULL").collect()}
    rejected = {
        r["path"]
        for r in q
        if r["kind"] == "s2" and r["reason"] not in (*LAKE_REASONS, "stray_file")
    }
    assert stored | rejected == s2_folders and not stored & rejected
    # and every S1 folder a stored S1 side or quarantined (its S2 partner missing or broken
    # leaves it stored, with a missing_s2_partner row)
    s1_folders = {str(p) for p in (root / "BigEarthNet-S1-v1.0").iterdir() if p.is_dir()}
    stored_s1 = {r["s1_path"] for r in pairs.where("s1_path IS NOT NULL").collect()}
    rejected_s1 = {r["path"] for r in q if r["kind"] == "s1" and r["reason"] not in LAKE_REASONS}
    assert stored_s1 | rejected_s1 == s1_folders and not stored_s1 & rejected_s1
    lonely = {r["path"] for r in q if r["reason"] == "missing_s2_partner"}
    assert lonely == {r["s1_path"] for r in pairs.where("s2_path IS NULL").collect()}
    assert report.success and report.quarantined == Counter(reason for reason, _ in want)
    assert report.quarantined["stray_file"] == 2
    assert_rows(spark, lake, root, manifest)


def test_rerun_is_idempotent(spark, v1_lake_copy, v1_archive):
    lake = v1_lake_copy  # a run takes the lake's lease: a write
    from delta.tables import DeltaTable

    def versions():
        return {
            n: DeltaTable.forPath(spark, table_path(lake, n)).history(1).first()["version"]
            for n in schema.TABLES
        }

    before = versions()
    report = Ingest(spark, lake, db="unregistered").run([str(v1_archive[0])])
    assert versions() == before
    assert set(report.inserted.values()) == {0} and report.quarantined == {}
    # the test session's in-memory catalog dies with it: a run registers only when asked
    assert not spark.catalog.databaseExists("unregistered")
    Ingest(spark, lake, db="registered", register=True).run([str(v1_archive[0])])
    assert versions() == before
    names = {t.name for t in spark.catalog.listTables("registered")}
    views = {re.search(r"VIEW \S+\.(\w+)", v)[1] for v in catalog.view_statements()}
    assert names == {*schema.TABLES, schema.INGEST_LEASE, *views}  # no metrics table yet


def test_same_archive_at_another_path_is_a_no_op(spark, v1_lake_copy, v1_archive, tmp_path):
    lake = v1_lake_copy
    root, _ = v1_archive
    from delta.tables import DeltaTable

    copy = tmp_path / "mounted-elsewhere"
    shutil.copytree(root, copy)
    band_tables = [schema.PAIRS, schema.LABELS, schema.PATCH_METADATA, schema.NOMENCLATURE]
    before = {
        n: DeltaTable.forPath(spark, table_path(lake, n)).history(1).first()["version"]
        for n in band_tables
    }
    q_before = {
        (r["patch_id"], r["reason"]) for r in table(spark, lake, schema.QUARANTINE).collect()
    }
    report = Ingest(spark, lake).run([str(copy)])
    after = {
        n: DeltaTable.forPath(spark, table_path(lake, n)).history(1).first()["version"]
        for n in band_tables
    }
    assert after == before
    # only the stray file at the new root is new: no patch is quarantined again
    assert report.quarantined == {"stray_file": 1}
    q_after = {
        (r["patch_id"], r["reason"]) for r in table(spark, lake, schema.QUARANTINE).collect()
    }
    assert q_after == q_before
    paths = {r["s2_path"] for r in table(spark, lake, schema.PAIRS).collect() if r["s2_path"]}
    assert all(p.startswith(str(root)) for p in paths)


def test_incremental_s2_then_s1_and_a_killed_run(spark, v1_archive, v1_lake, tmp_path, monkeypatch):
    root, manifest = v1_archive
    lake = str(tmp_path / "lake")
    lists = str(root / "lists")
    # an S2-only ingest is normal: no partner complaints, pairs without S1
    Ingest(spark, lake).run(
        [str(root / "BigEarthNet-v1.0"), str(root / "BigEarthNet-v1.0-extra")], [lists]
    )
    pairs = table(spark, lake, schema.PAIRS)
    assert pairs.where("s1_patch_id IS NOT NULL").count() == 0
    assert table(spark, lake, schema.QUARANTINE).where("reason = 'missing_s1_partner'").count() == 0
    n_pairs = pairs.count()
    # a run that dies after the pairs MERGE, before the derived tables, leaves labels and the
    # quarantine of the last run behind ...
    monkeypatch.setattr(Ingest, "_derived_columns", lambda self, *args: sys.exit(9))
    with pytest.raises(SystemExit):
        Ingest(spark, lake, lock_wait_s=0).run([str(root / "BigEarthNet-S1-v1.0")], [lists])
    monkeypatch.undo()
    with_s1 = "s1_patch_id IS NOT NULL"
    n_with_s1 = table(spark, v1_lake[0], schema.PAIRS).where(with_s1).count()
    assert table(spark, lake, schema.PAIRS).where(with_s1).count() == n_with_s1
    # ... which the next run repairs without reading a band again
    report = Ingest(spark, lake, lock_wait_s=0).run([str(root / "BigEarthNet-S1-v1.0")], [lists])
    n_labels = table(spark, v1_lake[0], schema.LABELS).count()
    assert report.inserted[schema.PAIRS] == 0 and report.inserted[schema.LABELS] == n_labels
    pairs = rows_by_id(spark, lake, schema.PAIRS)
    for s2, truth in manifest["patches"].items():
        assert pairs[s2]["s1_patch_id"] == truth["s1"]
    # S2 first, then S1 (with a kill in between) gives the lake of one ingest of both
    full = {r["patch_id"]: r for r in table(spark, v1_lake[0], schema.PAIRS).collect()}
    assert (
        len(pairs) == len(full) == n_pairs + len([r for r in full.values() if r["s2_path"] is None])
    )
    compare = ["s1_patch_id", "split", "labels19", "multi_hot_19", "is_snow", "VV", "B02"]
    for pid, row in full.items():
        assert [pairs[pid][c] for c in compare] == [row[c] for c in compare], pid
    got = {(r["reason"], r["patch_id"]) for r in table(spark, lake, schema.QUARANTINE).collect()}
    want = {
        (r["reason"], r["patch_id"]) for r in table(spark, v1_lake[0], schema.QUARANTINE).collect()
    }
    assert got == want
    assert table(spark, lake, schema.LABELS).count() == n_labels
    assert_keys_unique(spark, lake)


def test_v2_pairs_reference_maps_and_defects(spark, v2_lake, v2_archive):
    lake, report = v2_lake
    root, manifest = v2_archive
    pairs = rows_by_id(spark, lake, schema.PAIRS)
    refs = pairs
    for s2, truth in manifest["patches"].items():
        row = pairs[s2]
        assert row["archive"] == "v2" and row["s1_patch_id"] == truth["s1"]
        assert row["labels19"] == L.sort_labels(truth["labels19"], "19")
        assert row["labels43"] is None and row["split"] == truth["split"]
        assert row["country"] == truth["country"] and row["s2v1_name"] == truth["s2v1_name"]
    s2 = sorted(manifest["patches"])[0]
    ref_tif = root / manifest["patches"][s2]["reference_map"]
    got = decode_band(REFERENCE_MAP.name, refs[s2][REFERENCE_MAP.name])
    assert np.array_equal(got, rasterio_band(ref_tif))
    q = table(spark, lake, schema.QUARANTINE).collect()
    want = expected.quarantine(root, manifest)
    assert sorted((r["reason"], r["patch_id"] or r["path"]) for r in q) == sorted(want)
    assert {pid: row["split"] for pid, row in pairs.items()} == expected.pair_splits(manifest)
    assert report.quarantined == Counter(reason for reason, _ in want)
    assert_rows(spark, lake, root, manifest)


def test_v2_metadata_arriving_later(spark, v2_lake, v2_archive, tmp_path):
    root, _ = v2_archive
    bare = tmp_path / "v2"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns("*.parquet"))
    meta = tmp_path / "lists"
    meta.mkdir()
    for f in root.glob("*.parquet"):
        shutil.copy(f, meta)
    lake = str(tmp_path / "lake")
    Ingest(spark, lake).run([str(bare)])
    first = rows_by_id(spark, lake, schema.PAIRS)
    assert all(r["split"] is None and r["s1_patch_id"] is None for r in first.values())
    q = table(spark, lake, schema.QUARANTINE).where("reason = 'missing_metadata'")
    s1_folders = {p.name for p in (bare / "BigEarthNet-S1").glob("*/*") if p.is_dir()}
    assert {r["patch_id"] for r in q.where("kind = 's1'").collect()} == s1_folders
    Ingest(spark, lake).run([str(bare)], [str(meta)])
    got = rows_by_id(spark, lake, schema.PAIRS)
    want = rows_by_id(spark, v2_lake[0], schema.PAIRS)
    assert set(got) == set(want)
    compare = ["s1_patch_id", "split", "labels19", "multi_hot_19", "country", "VH", "B8A"]
    for pid, row in want.items():
        assert [got[pid][c] for c in compare] == [row[c] for c in compare], pid
    got_q = {(r["reason"], r["patch_id"]) for r in table(spark, lake, schema.QUARANTINE).collect()}
    want_q = {
        (r["reason"], r["patch_id"]) for r in table(spark, v2_lake[0], schema.QUARANTINE).collect()
    }
    assert got_q == want_q


def test_sql_views_and_export(spark, v1_lake, v1_archive, tmp_path, capsys):
    from bigearth_spark.cli import main

    lake, _ = v1_lake
    root, manifest = v1_archive
    query = (
        "SELECT label, split, patches FROM bigearthnet.label_counts_per_split "
        "WHERE nomenclature = '19'"
    )
    assert main(["sql", "--lake", lake, "--json", query]) == 0
    got = {
        (r["label"], r["split"]): r["patches"]
        for r in map(json.loads, capsys.readouterr().out.strip().splitlines())
    }
    # defect pairs whose S2 side is readable count too
    assert got == expected.label_counts(manifest)
    s2 = sorted(manifest["patches"])[0]
    truth = manifest["patches"][s2]
    out = tmp_path / "patch.npz"
    assert main(["export", "--lake", lake, "--patch-id", s2, "--out", str(out)]) == 0
    npz = np.load(out)
    assert set(npz.files) == {b.name for b in (*S2_BANDS, *S1_BANDS)} | {"labels43", "labels19"}
    assert np.array_equal(npz["B8A"], rasterio_band(root / truth["s2_dir"] / f"{s2}_B8A.tif"))
    assert npz["B01"].shape == (20, 20) and npz["VV"].dtype == np.float32
    assert sorted(npz["labels19"]) == sorted(truth["labels19"])


def _official_lines(name: str, keep: set[str]) -> list[str]:
    with bz2.open(SHARED / "lists" / f"{name}.csv.bz2", "rt") as f:
        return [line.strip() for line in f if line.strip() in keep]


@needs_shared
def test_real_samples_ingest_bit_exact_with_official_labels(spark, tmp_path):
    s2_dir = next(SAMPLES.glob("S2*"))
    s1_dir = next(SAMPLES.glob("S1*"))
    archive = tmp_path / "archive"
    shutil.copytree(s2_dir, archive / "BigEarthNet-v1.0" / s2_dir.name)
    shutil.copytree(s1_dir, archive / "BigEarthNet-S1-v1.0" / s1_dir.name)
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in (
        "train",
        "val",
        "test",
        "patches_with_seasonal_snow",
        "patches_with_cloud_and_shadow",
    ):
        (lists / f"{name}.csv").write_text(
            "".join(f"{x}\r\n" for x in _official_lines(name, {s2_dir.name}))
        )
    lake = str(tmp_path / "lake")
    Ingest(spark, lake).run([str(archive)], [str(lists)])
    pair = rows_by_id(spark, lake, schema.PAIRS)[s2_dir.name]
    for b in S2_BANDS:
        expected = rasterio_band(s2_dir / f"{s2_dir.name}_{b.name}.tif")
        assert np.array_equal(decode_band(b.name, pair[b.name]), expected)
    for b in S1_BANDS:
        expected = rasterio_band(s1_dir / f"{s1_dir.name}_{b.name}.tif")
        assert np.array_equal(decode_band(b.name, pair[b.name]), expected)
    meta = json.loads((s2_dir / f"{s2_dir.name}_labels_metadata.json").read_text())
    official = json.loads((SHARED / "label_indices.json").read_text())
    idx43 = [official["original_labels"][n] for n in meta["labels"]]
    want19 = [i for i, src in enumerate(official["label_conversion"]) if set(src) & set(idx43)]
    assert pair["labels43"] == sorted(meta["labels"], key=lambda n: official["original_labels"][n])
    assert [official["BigEarthNet-19_labels"][n] for n in pair["labels19"]] == want19
    assert pair["s1_patch_id"] == s1_dir.name and pair["split"] == "train"
    assert pair["is_snow"] is False and pair["is_cloud_or_shadow"] is False
    assert (pair["epsg"], pair["ulx"], pair["uly"], pair["lrx"], pair["lry"]) == (
        32629,
        643200,
        5798040,
        644400,
        5796840,
    )


def test_nothing_readable_exits_non_zero_and_the_summary_shows_why(spark, tmp_path, capsys):
    from bigearth_spark.cli import main

    (tmp_path / "BigEarthNet-v1.0" / "S2A_MSIL2A_20170617T113321_1_2").mkdir(parents=True)
    lake = str(tmp_path / "lake")
    code = main(["ingest", "--input", str(tmp_path / "BigEarthNet-v1.0"), "--lake", lake])
    assert code == 1
    q = table(spark, lake, schema.QUARANTINE).collect()
    assert [(r["reason"], r["patch_id"]) for r in q] == [
        ("empty_folder", "S2A_MSIL2A_20170617T113321_1_2")
    ]
    # the ingest prints each table's rows from the logs; the lake's counts only when asked
    out = capsys.readouterr().out
    assert re.search(r"│ quarantine\s+│ 1\s+│ 1 ", out) and "Pairs per split" not in out
    assert main(["summary", "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert re.search(r"│ empty_folder │ s2\s+│ 1 ", out) and "Pairs per split" in out


def test_change_detection_tells_nulls_apart():
    from bigearth_spark.tables.small_tables import changed_rows

    stored = pa.table({"k": ["a", "b", "c"], "x": [True, None, None], "y": [None, True, None]})
    same = pa.table({"k": ["c", "b", "a"], "x": [None, None, True], "y": [None, True, None]})
    assert changed_rows(stored, same, ["k"])[0].num_rows == 0
    # the flags swapped: (true, NULL) and (NULL, true) are different rows
    swapped = pa.table({"k": ["a", "b"], "x": [None, True], "y": [True, None]})
    rows, updates = changed_rows(stored, swapped, ["k"])
    assert rows.to_pylist() == swapped.to_pylist() and updates
    lists = pa.table({"k": ["a", "b", "c"], "l": pa.array([None, [], [""]], pa.list_(pa.string()))})
    other = pa.table({"k": ["a", "b", "c"], "l": pa.array([[], None, []], pa.list_(pa.string()))})
    assert changed_rows(lists, other, ["k"])[0].num_rows == 3
    new, updates = changed_rows(stored, pa.table({"k": ["d"], "x": [True], "y": [None]}), ["k"])
    assert new["k"].to_pylist() == ["d"] and not updates
