"""The ingest on real Spark + Delta: generated v1/v2 archives and the real samples."""

from __future__ import annotations

import bz2
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from bigearth_spark.archive import labels as L
from bigearth_spark.archive.bands import REFERENCE_MAP, S1_BANDS, S2_BANDS, decode_band
from bigearth_spark.etl.ingest import Ingest
from bigearth_spark.etl.pairs import DERIVED_REASONS
from bigearth_spark.tables import schema
from bigearth_spark.tables.write import table_path
from tests.conftest import SAMPLES, SHARED

V1_SPLIT = {"val": "validation"}


def table(spark, lake, name):
    return spark.read.format("delta").load(table_path(lake, name))


def rows_by_id(spark, lake, name):
    return {r["patch_id"]: r for r in table(spark, lake, name).collect()}


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
        assert row["split"] == V1_SPLIT.get(truth["split"], truth["split"])
        assert (row["is_snow"], row["is_cloud_or_shadow"]) == (truth["snow"], truth["cloud"])
        assert row["has_no_19_label"] == truth["no_19_labels"]
        assert row["epsg"] == truth["epsg"] and (row["ulx"], row["uly"]) == (
            truth["ulx"],
            truth["uly"],
        )
    assert len(manifest["patches"]) == manifest["pairs"]


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
    by_reason_id = {(r["reason"], r["patch_id"]) for r in q}
    by_reason_path = {(r["reason"], r["path"]) for r in q}
    assert set(manifest["defects"]) == {
        "corrupt_tif", "missing_band", "wrong_shape", "wrong_dtype", "missing_json",
        "malformed_json", "unknown_label", "missing_s2_partner", "missing_s1_partner",
        "duplicate_patch_id", "empty_folder", "stray_file",
    }  # fmt: skip
    for reason, items in manifest["defects"].items():
        for item in items:
            if item["patch_id"] is None:
                assert (reason, str(root / item["path"])) in by_reason_path
            else:
                assert (reason, item["patch_id"]) in by_reason_id, (reason, item)
    # every S2 folder of the input is either a row of s2_patches or quarantined with a reason
    s2_folders = {str(p) for r in ("BigEarthNet-v1.0", "BigEarthNet-v1.0-extra")
                  for p in (root / r).iterdir() if p.is_dir()}  # fmt: skip
    stored = {r["source_path"] for r in table(spark, lake, schema.S2).collect()}
    rejected = {r["path"] for r in q if r["kind"] == "s2"
                and r["reason"] not in (*DERIVED_REASONS, "stray_file")}  # fmt: skip
    assert stored | rejected == s2_folders and not stored & rejected
    assert report.success and report.quarantined["stray_file"] == 2


def test_rerun_is_idempotent(spark, v1_lake, v1_archive):
    lake, _ = v1_lake
    from delta.tables import DeltaTable

    def versions():
        return {n: DeltaTable.forPath(spark, table_path(lake, n)).history(1).first()["version"]
                for n in schema.TABLES}  # fmt: skip

    before = versions()
    report = Ingest(spark, lake).run([str(v1_archive[0])])
    assert versions() == before
    assert set(report.inserted.values()) == {0} and report.quarantined == {}


def test_incremental_s2_then_s1_and_a_killed_run(spark, v1_archive, tmp_path, monkeypatch):
    root, manifest = v1_archive
    lake = str(tmp_path / "lake")
    lists = str(root / "lists")
    # an S2-only ingest is normal: no partner complaints, pairs without S1
    Ingest(spark, lake).run([str(root / "BigEarthNet-v1.0")], [lists])
    pairs = table(spark, lake, schema.PAIRS)
    assert pairs.where("s1_patch_id IS NOT NULL").count() == 0
    assert table(spark, lake, schema.QUARANTINE).where("reason = 'missing_s1_partner'").count() == 0
    n_pairs = pairs.count()
    # a run killed after writing the S1 bronze table leaves pairs at their last version
    monkeypatch.setattr(
        Ingest, "_silver", lambda self, report: (_ for _ in ()).throw(SystemExit(9))
    )
    with pytest.raises(SystemExit):
        Ingest(spark, lake).run([str(root / "BigEarthNet-S1-v1.0")], [lists])
    assert table(spark, lake, schema.S1).count() > 0
    assert table(spark, lake, schema.PAIRS).where("s1_patch_id IS NOT NULL").count() == 0
    monkeypatch.undo()
    # the re-run completes the pairs and inserts no S1 row twice
    report = Ingest(spark, lake).run([str(root / "BigEarthNet-S1-v1.0")], [lists])
    assert report.inserted[schema.S1] == 0 and report.inserted[schema.PAIRS] > 0
    pairs = rows_by_id(spark, lake, schema.PAIRS)
    assert len(pairs) == n_pairs
    for s2, truth in manifest["patches"].items():
        assert pairs[s2]["s1_patch_id"] == truth["s1"]
    missing = table(spark, lake, schema.QUARANTINE).where("reason = 'missing_s1_partner'")
    assert {r["patch_id"] for r in missing.collect()} >= {
        d["patch_id"] for d in manifest["defects"]["missing_s1_partner"]
    }


def test_v2_pairs_reference_maps_and_defects(spark, v2_lake, v2_archive):
    lake, _report = v2_lake
    root, manifest = v2_archive
    pairs = rows_by_id(spark, lake, schema.PAIRS)
    refs = rows_by_id(spark, lake, schema.REFERENCE_MAPS)
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
    q = {(r["reason"], r["patch_id"]) for r in table(spark, lake, schema.QUARANTINE).collect()}
    for reason, items in manifest["defects"].items():
        for item in items:
            if item["patch_id"]:
                assert (reason, item["patch_id"]) in q, (reason, item)
    splits = {r["split"] for r in table(spark, lake, schema.PAIRS).collect()}
    assert splits <= {"train", "validation", "test", None}


def test_sql_views_and_export(spark, v1_lake, v1_archive, tmp_path, capsys):
    from bigearth_spark.cli import main

    lake, _ = v1_lake
    root, manifest = v1_archive
    query = ("SELECT label, split, patches FROM bigearthnet.label_counts_per_split "
             "WHERE nomenclature = '19'")  # fmt: skip
    assert main(["sql", "--lake", lake, "--json", query]) == 0
    got = {(r["label"], r["split"]): r["patches"]
           for r in map(json.loads, capsys.readouterr().out.strip().splitlines())}  # fmt: skip
    expected: dict = {}
    for truth in manifest["patches"].values():
        split = V1_SPLIT.get(truth["split"], truth["split"])
        for label in truth["labels19"]:
            expected[(label, split)] = expected.get((label, split), 0) + 1
    for key, n in expected.items():
        assert got[key] >= n  # defect patches that stayed readable add to the counts
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


def test_real_samples_ingest_bit_exact_with_official_labels(spark, tmp_path):
    s2_dir = next(SAMPLES.glob("S2*"))
    s1_dir = next(SAMPLES.glob("S1*"))
    archive = tmp_path / "archive"
    shutil.copytree(s2_dir, archive / "BigEarthNet-v1.0" / s2_dir.name)
    shutil.copytree(s1_dir, archive / "BigEarthNet-S1-v1.0" / s1_dir.name)
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train", "val", "test", "patches_with_seasonal_snow",
                 "patches_with_cloud_and_shadow"):  # fmt: skip
        (lists / f"{name}.csv").write_text("".join(
            f"{x}\r\n" for x in _official_lines(name, {s2_dir.name})))  # fmt: skip
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
        32629, 643200, 5798040, 644400, 5796840,
    )  # fmt: skip


def test_nothing_readable_exits_non_zero(spark, tmp_path):
    from bigearth_spark.cli import main

    (tmp_path / "BigEarthNet-v1.0" / "S2A_MSIL2A_20170617T113321_1_2").mkdir(parents=True)
    code = main(["ingest", "--input", str(tmp_path / "BigEarthNet-v1.0"),
                 "--lake", str(tmp_path / "lake")])  # fmt: skip
    assert code == 1
    q = table(spark, str(tmp_path / "lake"), schema.QUARANTINE).collect()
    assert [(r["reason"], r["patch_id"]) for r in q] == [
        ("empty_folder", "S2A_MSIL2A_20170617T113321_1_2")
    ]
