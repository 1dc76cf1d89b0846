"""Tests of the synthetic archive generator against the real formats (samples and official lists
in ../shared/bigearthnet)."""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.transform import from_origin

from bigearth_spark.archive import names
from bigearth_spark.archive.bands import PATCH_SIZE_M, S1_BANDS, S2_BANDS
from bigearth_spark.archive.labels import (
    CLASSES_43,
    INDEX_43,
    NAMES_19,
    NAMES_43,
    reference_map_to_19,
    to_19,
)
from bigearth_spark.archive.synth import (
    DEFECTS_V1,
    DEFECTS_V2,
    LABEL_FREQUENCIES,
    MANIFEST_NAME,
    SIGNATURES_S1,
    SIGNATURES_S2,
    geotiff_bytes,
    projection_wkt,
    sample_labels43,
    write_archive,
)
from bigearth_spark.archive.synth.render import render_patch
from tests.conftest import LISTS, SAMPLES, needs_shared

EPSGS = {32629, *range(32631, 32637)}
PAIRS = 20


def _sample_dir(prefix: str) -> Path:
    return next(p for p in SAMPLES.iterdir() if p.name.startswith(prefix))


def _sample_json(prefix: str) -> tuple[str, dict]:
    folder = _sample_dir(prefix)
    text = (folder / f"{folder.name}_labels_metadata.json").read_text()
    return text, json.loads(text)


def _profile(path: Path | str) -> dict:
    with rasterio.open(path) as ds:
        return {
            "dtype": ds.dtypes[0],
            "shape": ds.shape,
            "count": ds.count,
            "epsg": ds.crs.to_epsg(),
            "transform": ds.transform,
            "nodata": ds.nodata,
            "compression": ds.compression.value if ds.compression else None,
            "tiled": ds.profile.get("tiled"),
            "block": ds.block_shapes[0],
            "array": ds.read(1),
        }


def _lines(path: Path) -> tuple[list[str], str]:
    """(names, line end) of a bz2 list."""
    raw = bz2.decompress(path.read_bytes()).decode("ascii")
    eol = "\r\n" if "\r\n" in raw else "\n"
    return [x for x in raw.split(eol) if x], eol


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).as_posix()
        h.update(f"D {rel}\n".encode())
        for f in sorted(filenames):
            h.update(f"F {rel}/{f}\n".encode())
            h.update(hashlib.sha256((Path(dirpath) / f).read_bytes()).digest())
    return h.hexdigest()


@pytest.fixture(scope="module")
def v1(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "v1"
    return out, write_archive(out, "v1", PAIRS, seed=7, defects=True)


@pytest.fixture(scope="module")
def v2(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "v2"
    return out, write_archive(out, "v2", PAIRS, seed=7, defects=True)


# ----------------------------------------------------------------------------------------------
# GeoTIFF bytes
# ----------------------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("prefix", ["S2A_", "S1A_"])
def test_tiff_writer_reproduces_the_real_files_byte_for_byte(prefix):
    tifs = sorted(_sample_dir(prefix).glob("*.tif"))
    assert tifs
    for tif in tifs:
        p = _profile(tif)
        t = p["transform"]
        assert geotiff_bytes(p["array"], t.c, t.f, t.a, p["epsg"]) == tif.read_bytes(), tif.name


@pytest.mark.parametrize("dtype", ["uint16", "float32", "int32"])
@pytest.mark.parametrize("size", [20, 60, 100, 120])
@pytest.mark.parametrize("nodata", [None, 0])
def test_tiff_writer_gdal3_layout_equals_rasterio(tmp_path, dtype, size, nodata):
    a = np.random.default_rng(size).integers(1, 9000, (size, size)).astype(dtype)
    res = PATCH_SIZE_M / size
    path = tmp_path / "x.tif"
    kw = {} if nodata is None else {"nodata": nodata}
    transform = from_origin(700_000, 5_600_040, res, res)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype=dtype,
        crs="EPSG:32631",
        transform=transform,
        **kw,
    ) as ds:
        ds.write(a, 1)
    mine = geotiff_bytes(a, 700_000, 5_600_040, res, 32631, nodata=nodata, gdal3=True)
    assert mine == path.read_bytes()


def test_tiff_writer_deflate_reads_back(tmp_path):
    a = np.random.default_rng(0).choice([112, 211, 311, 523], (120, 120)).astype(np.uint16)
    path = tmp_path / "ref.tif"
    path.write_bytes(
        geotiff_bytes(a, 400_000, 6_100_020, 10, 32635, nodata=0, deflate=True, gdal3=True)
    )
    p = _profile(path)
    assert p["compression"] == "DEFLATE" and p["nodata"] == 0 and p["epsg"] == 32635
    assert p["block"] == (34, 120) and not p["tiled"]
    np.testing.assert_array_equal(p["array"], a)


@needs_shared
def test_projection_wkt_equals_the_real_json():
    _, doc = _sample_json("S2A_")
    assert projection_wkt(29) == doc["projection"]
    with rasterio.open(next(_sample_dir("S2A_").glob("*_B02.tif"))) as ds:
        assert rasterio.crs.CRS.from_wkt(projection_wkt(29)) == ds.crs
    for zone in (31, 32, 33, 34, 35, 36):
        assert rasterio.crs.CRS.from_wkt(projection_wkt(zone)).to_epsg() == 32600 + zone


# ----------------------------------------------------------------------------------------------
# v1
# ----------------------------------------------------------------------------------------------


def test_v1_manifest(v1):
    out, m = v1
    assert json.loads((out / MANIFEST_NAME).read_text()) == m
    assert m["flavor"] == "v1" and m["pairs"] == PAIRS
    assert len(m["s2_patches"]) == len(m["s1_patches"]) == len(m["patches"]) == PAIRS
    assert m["pairs_s2_to_s1"] == {k: v["s1"] for k, v in m["patches"].items()}
    assert len(set(m["pairs_s2_to_s1"].values())) == PAIRS
    for root in ("s2", "s1", "lists", "s2_extra"):
        assert (out / m["roots"][root]).is_dir()
    c = m["counts"]
    assert c == {"train": 8, "val": 4, "test": 4, "snow": 2, "cloud": 1, "no_19": 1, "defects": 15}
    # the counts are the patches': a flagged patch is in no split (the recommended set)
    patches = m["patches"].values()
    assert Counter(v["split"] for v in patches) == {
        "train": c["train"],
        "val": c["val"],
        "test": c["test"],
        None: c["snow"] + c["cloud"] + c["no_19"],
    }
    assert Counter((v["snow"], v["cloud"], v["no_19_labels"]) for v in patches) == {
        (False, False, False): c["train"] + c["val"] + c["test"],
        (True, False, False): c["snow"],
        (False, True, False): c["cloud"],
        (False, False, True): c["no_19"],
    }


def test_v1_names(v1):
    _, m = v1
    s2, s1 = m["s2_patches"], m["s1_patches"]
    assert all(names.is_v1_s2(n) for n in s2)
    assert all(names.is_s1(n) for n in s1)
    times = [n.split("_")[2] for n in s2]
    assert any(len(t) == 14 for t in times), "some v1 names have the 5-digit time quirk"
    assert any(len(t) == 15 for t in times)
    tile_dates = Counter("_".join(n.split("_")[:3]) for n in s2)
    assert sorted(tile_dates.values()) == [1, 1, 4, 6, 8], "several patches share one tile-date"
    for s2_name, s1_name in m["pairs_s2_to_s1"].items():
        info = m["patches"][s2_name]
        assert s1_name.split("_")[5] == info["tile"]  # the S1 name carries the MGRS tile
        assert s1_name.split("_")[-2:] == s2_name.split("_")[-2:]
        assert s1_name.split("_")[4] != s2_name.split("_")[2]  # unrelated timestamps


def test_v1_s2_tifs(v1):
    out, m = v1
    for pid, info in m["patches"].items():
        folder = out / info["s2_dir"]
        assert folder.name == pid and folder.parent.name == m["roots"]["s2"]
        expected = {f"{pid}_{b.name}.tif" for b in S2_BANDS} | {f"{pid}_labels_metadata.json"}
        assert {f.name for f in folder.iterdir()} == expected
        for b in S2_BANDS:
            p = _profile(folder / f"{pid}_{b.name}.tif")
            assert p["dtype"] == "uint16" and p["shape"] == b.shape and p["count"] == 1
            assert p["nodata"] is None and p["compression"] is None and not p["tiled"]
            assert p["block"] == (min(b.size, 8192 // (2 * b.size)), b.size)  # GDAL strips
            assert p["epsg"] == info["epsg"] and p["epsg"] in EPSGS
            t = p["transform"]
            assert (t.a, t.e) == (b.resolution_m, -b.resolution_m)
            assert (t.c, t.f) == (info["ulx"], info["uly"])
            assert float(t.c).is_integer() and float(t.f).is_integer()
            assert p["array"].min() >= 1 and p["array"].max() <= 10000


def test_v1_s1_tifs_share_crs_and_corner_with_their_s2_partner(v1):
    out, m = v1
    for pid, info in m["patches"].items():
        s1 = info["s1"]
        with rasterio.open(out / info["s2_dir"] / f"{pid}_B02.tif") as ds:
            s2_crs, s2_transform = ds.crs, ds.transform
        for b in S1_BANDS:
            p = _profile(out / info["s1_dir"] / f"{s1}_{b.name}.tif")
            assert p["dtype"] == "float32" and p["shape"] == (120, 120)
            assert p["nodata"] is None and p["compression"] is None
            assert p["epsg"] == s2_crs.to_epsg() and p["transform"] == s2_transform
            assert -40 < p["array"].mean() < 0 and np.isfinite(p["array"]).all()


@needs_shared
def test_v1_json_like_the_real_sample(v1):
    out, m = v1
    real_s2_text, real_s2 = _sample_json("S2A_")
    real_s1_text, real_s1 = _sample_json("S1A_")
    assert "\n" not in real_s2_text.strip() and "\n" not in real_s1_text.strip()
    for pid, info in m["patches"].items():
        text = (out / info["s2_dir"] / f"{pid}_labels_metadata.json").read_text()
        doc = json.loads(text)
        # keys, their order, the single-line layout and the separators of the real files
        assert list(doc) == list(real_s2) and list(doc["coordinates"]) == list(
            real_s2["coordinates"]
        )
        assert text.count("\n") == real_s2_text.count("\n")
        assert json.dumps(doc) == text
        assert doc["labels"] == info["labels43"]
        assert doc["labels"] == sorted(doc["labels"], key=INDEX_43.__getitem__)
        c = doc["coordinates"]
        assert all(isinstance(v, int) for v in c.values())
        assert (c["ulx"], c["uly"]) == (info["ulx"], info["uly"])
        assert c["lrx"] - c["ulx"] == c["uly"] - c["lry"] == PATCH_SIZE_M
        assert doc["projection"] == projection_wkt(info["epsg"] - 32600)
        assert re.fullmatch(
            r"S2[AB]_MSIL1C_\d{8}T\d{6}_N0205_R\d{3}_T" + info["tile"] + r"_\d{8}T\d{6}\.SAFE",
            doc["tile_source"],
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", doc["acquisition_date"])

        s1 = info["s1"]
        text = (out / info["s1_dir"] / f"{s1}_labels_metadata.json").read_text()
        doc1 = json.loads(text)
        assert list(doc1) == list(real_s1) and list(doc1["coordinates"]) == list(
            real_s1["coordinates"]
        )
        assert text.count("\n") == real_s1_text.count("\n") and json.dumps(doc1) == text
        assert "lly" in doc1["coordinates"] and "lry" not in doc1["coordinates"]
        assert doc1["corresponding_s2_patch"] == pid
        assert doc1["labels"] == doc["labels"] and doc1["projection"] == doc["projection"]
        assert list(doc1["coordinates"].values()) == list(c.values())
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", doc1["acquisition_time"])
        assert doc1["scene_source"].startswith(s1.rsplit("_", 3)[0] + "_")
        scene = r"S1[AB]_IW_GRDH_1SDV_\d{8}T\d{6}_\d{8}T\d{6}_\d{6}_[0-9A-F]{6}_[0-9A-F]{4}"
        assert re.fullmatch(scene, doc1["scene_source"])


def test_v1_labels_are_valid(v1):
    _, m = v1
    for info in m["patches"].values():
        assert 1 <= len(info["labels43"]) <= 5
        assert set(info["labels43"]) <= set(NAMES_43)
        assert info["labels19"] == to_19(info["labels43"])
        assert info["no_19_labels"] == (not info["labels19"])


@needs_shared
def test_v1_lists_like_the_official_ones(v1):
    out, m = v1
    lists = out / m["roots"]["lists"]
    found = sorted(p.name for p in lists.iterdir())
    assert found == sorted(p.name for p in LISTS.glob("*.csv.bz2"))
    for name in found:
        ours, eol = _lines(lists / name)
        official_head = bz2.BZ2Decompressor().decompress(
            (LISTS / name).read_bytes()[:100_000], max_length=2000
        )
        official_eol = "\r\n" if b"\r\n" in official_head else "\n"
        assert eol == official_eol, name  # CRLF, except the no-19 list (LF)
        assert all(names.is_v1_s2(n) for n in ours) and len(set(ours)) == len(ours)
    split = {s: set(_lines(lists / f"{s}.csv.bz2")[0]) for s in ("train", "val", "test")}
    snow = set(_lines(lists / "patches_with_seasonal_snow.csv.bz2")[0])
    cloud = set(_lines(lists / "patches_with_cloud_and_shadow.csv.bz2")[0])
    no19 = set(_lines(lists / "patches_with_no_19_class_targets.csv.bz2")[0])
    assert not (split["train"] & split["val"]) and not (split["val"] & split["test"])
    assert not (split["train"] & split["test"]) and not (snow & cloud)
    listed = split["train"] | split["val"] | split["test"]
    assert not (listed & (snow | cloud | no19))  # the recommended set excludes them
    everything = {**m["patches"], **m["defect_patches"]}
    for s, members in split.items():
        assert members == {k for k, v in everything.items() if v["split"] == s}
    assert snow == {k for k, v in m["patches"].items() if v["snow"]}
    assert cloud == {k for k, v in m["patches"].items() if v["cloud"]}
    assert no19 == {k for k, v in m["patches"].items() if v["no_19_labels"]} != set()


# ----------------------------------------------------------------------------------------------
# v2
# ----------------------------------------------------------------------------------------------


def test_v2_layout_and_tifs(v2):
    out, m = v2
    assert len(m["patches"]) == PAIRS
    assert m["counts"] == {
        "train": 10,
        "validation": 5,
        "test": 5,
        "snow": 2,
        "cloud": 1,
        "no_19": 0,
        "defects": 12,
    }
    # v2 keeps the split of a flagged patch (its metadata is in the second parquet)
    splits = Counter(v["split"] for v in m["patches"].values())
    assert splits == {s: m["counts"][s] for s in ("train", "validation", "test")}
    for pid, info in m["patches"].items():
        assert names.is_v2_s2(pid) and names.is_s1(info["s1"]) and names.is_v1_s2(info["s2v1_name"])
        assert info["s2_dir"] == f"{m['roots']['s2']}/{names.v2_s2_tile_folder(pid)}/{pid}"
        s1 = info["s1"]
        assert info["s1_dir"] == f"{m['roots']['s1']}/{names.v2_s1_scene_folder(s1)}/{s1}"
        folder = out / info["s2_dir"]
        assert {f.name for f in folder.iterdir()} == {f"{pid}_{b.name}.tif" for b in S2_BANDS}
        for b in S2_BANDS:
            p = _profile(folder / f"{pid}_{b.name}.tif")
            assert p["dtype"] == "uint16" and p["shape"] == b.shape
            assert p["nodata"] == 0 and p["compression"] is None and not p["tiled"]
            assert p["epsg"] == info["epsg"] in EPSGS
            assert p["transform"] == from_origin(
                info["ulx"], info["uly"], b.resolution_m, b.resolution_m
            )
            assert p["array"].min() >= 1  # 0 is nodata
        for b in S1_BANDS:
            p = _profile(out / info["s1_dir"] / f"{s1}_{b.name}.tif")
            assert p["dtype"] == "float32" and p["shape"] == (120, 120)
            assert p["transform"] == from_origin(info["ulx"], info["uly"], 10, 10)
        ref = _profile(out / info["reference_map"])
        assert ref["dtype"] == "uint16" and ref["shape"] == (120, 120)
        assert ref["compression"] == "DEFLATE" and ref["nodata"] == 0
        codes = {c.clc_code for c in CLASSES_43 if c.name in info["labels43"]}
        assert set(np.unique(ref["array"]).tolist()) == codes
        idx19 = set(np.unique(reference_map_to_19(ref["array"])).tolist()) - {255}
        assert [NAMES_19[i] for i in sorted(idx19)] == info["labels19"]


@needs_shared
def test_v2_metadata_parquets_like_the_official_ones(v2):
    out, m = v2
    official = pq.read_schema(LISTS / "v2_metadata.parquet")
    flagged_official = pq.read_schema(
        LISTS / "v2_metadata_for_patches_with_snow_cloud_or_shadow.parquet"
    )
    ours = pq.read_schema(out / m["roots"]["metadata"])
    ours_flagged = pq.read_schema(out / m["roots"]["metadata_flagged"])
    assert ours.equals(official) and ours_flagged.equals(flagged_official)
    assert ours.names == official.names and [f.type for f in ours] == [f.type for f in official]
    rec = pq.read_table(out / m["roots"]["metadata"]).to_pylist()
    flagged = pq.read_table(out / m["roots"]["metadata_flagged"]).to_pylist()
    assert rec == sorted(rec, key=lambda r: r["patch_id"])
    everything = {**m["patches"], **m["defect_patches"]}
    for r in rec + flagged:
        info = everything[r["patch_id"]]
        assert r["split"] in ("train", "validation", "test") and r["split"] == info["split"]
        assert r["labels"] and set(r["labels"]) <= set(NAMES_19)
        assert r["labels"] == sorted(r["labels"]) == sorted(info["labels19"])  # alphabetical
        assert r["s1_name"] == info["s1"] and r["s2v1_name"] == info["s2v1_name"]
        assert r["country"] == info["country"]
        assert (r["contains_seasonal_snow"], r["contains_cloud_or_shadow"]) == (
            info["snow"],
            info["cloud"],
        )
    assert not any(r["contains_seasonal_snow"] or r["contains_cloud_or_shadow"] for r in rec)
    assert all(r["contains_seasonal_snow"] != r["contains_cloud_or_shadow"] for r in flagged)
    assert {r["patch_id"] for r in flagged} == {
        k for k, v in m["patches"].items() if v["snow"] or v["cloud"]
    }
    good_rows = {r["patch_id"] for r in rec + flagged} & set(m["patches"])
    assert good_rows == set(m["patches"])


# ----------------------------------------------------------------------------------------------
# Determinism, defects, labels, pixels
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["v1", "v2"])
def test_same_seed_same_bytes(tmp_path, flavor):
    a = write_archive(tmp_path / "a", flavor, 6, seed=3, defects=True)
    b = write_archive(tmp_path / "b", flavor, 6, seed=3, defects=True)
    write_archive(tmp_path / "c", flavor, 6, seed=4, defects=True)
    d = write_archive(tmp_path / "d", flavor, 6, seed=3)
    assert a == b
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")
    assert d["patches"] == a["patches"] and d["defects"] == {}  # defects are extra pairs
    for info in d["patches"].values():
        for f in (tmp_path / "d" / info["s2_dir"]).iterdir():
            assert f.read_bytes() == (tmp_path / "a" / info["s2_dir"] / f.name).read_bytes()


def test_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_archive(tmp_path / "x", "v3", 2)
    with pytest.raises(ValueError):
        write_archive(tmp_path / "x", "v1", 0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(FileExistsError):
        write_archive(tmp_path / "full", "v1", 2)


def _check_defect(out: Path, flavor: str, m: dict, reason: str, entry: dict) -> None:
    path = out / entry["path"]
    pid = entry["patch_id"]
    if reason == "corrupt_tif":
        with pytest.raises(rasterio.errors.RasterioError), rasterio.open(path) as ds:
            ds.read(1)
    elif reason == "missing_band":
        assert not path.exists() and path.parent.is_dir()
    elif reason == "wrong_shape":
        assert _profile(path)["shape"] == (100, 100)
    elif reason == "wrong_dtype":
        assert _profile(path)["dtype"] in ("float32", "int32")
        assert _profile(path)["dtype"] != ("float32" if names.is_s1(pid) else "uint16")
    elif reason == "missing_json":
        assert not path.exists() and len(list(path.parent.glob("*.tif"))) == 12
    elif reason == "malformed_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(path.read_text())
    elif reason == "unknown_label":
        assert set(json.loads(path.read_text())["labels"]) - set(NAMES_43)
    elif reason == "missing_s2_partner":
        assert path.is_dir() and names.is_s1(pid)
        if flavor == "v1":
            partner = json.loads(next(path.glob("*.json")).read_text())["corresponding_s2_patch"]
        else:
            partner = next(k for k, v in m["defect_patches"].items() if v["s1"] == pid)
        assert not list(out.glob(f"{m['roots']['s2']}/**/{partner}"))
    elif reason == "missing_s1_partner":
        assert path.is_dir()
        s1 = m["defect_patches"][pid]["s1"]
        assert not list(out.glob(f"{m['roots']['s1']}/**/{s1}"))
    elif reason == "duplicate_patch_id":
        copies = [p for p in out.rglob(pid) if p.is_dir() and "Reference_Maps" not in p.parts]
        assert len(copies) == 2 and path in copies
        assert sorted(f.name for f in copies[0].iterdir()) == sorted(
            f.name for f in copies[1].iterdir()
        )
    elif reason == "empty_folder":
        assert path.is_dir() and not list(path.iterdir())
    elif reason == "stray_file":
        assert path.is_file() and path.name == "notes.txt"
    else:
        raise AssertionError(reason)


@pytest.mark.parametrize("flavor", ["v1", "v2"])
def test_defects_manifest_lists_each_kind(request, flavor):
    out, m = request.getfixturevalue(flavor)
    expected = DEFECTS_V1 if flavor == "v1" else DEFECTS_V2
    assert set(m["defects"]) == set(expected)
    assert m["counts"]["defects"] == sum(len(v) for v in m["defects"].values())
    for reason, entries in m["defects"].items():
        assert entries
        for entry in entries:
            assert set(entry) == {"patch_id", "path", "detail"}
            assert entry["patch_id"] is None or entry["patch_id"] not in m["patches"]
            _check_defect(out, flavor, m, reason, entry)
    # every defect pair is extra: the good pairs are all there
    assert not set(m["defect_patches"]) & set(m["patches"])
    assert {v["reason"] for v in m["defect_patches"].values()} == set(expected)
    roots_with_stray = [e for e in m["defects"]["stray_file"] if e["patch_id"] is None]
    assert roots_with_stray and (out / roots_with_stray[0]["path"]).parent.name == m["roots"]["s2"]


def test_label_distribution_like_the_archive():
    rng = np.random.default_rng(0)
    draws = [sample_labels43(rng) for _ in range(5000)]
    counts = [len(d) for d in draws]
    assert min(counts) == 1 and max(counts) == 5 and 2.7 < np.mean(counts) < 3.1
    assert all(d == sorted(set(d)) and to_19([NAMES_43[i] for i in d]) for d in draws)
    freq = Counter(i for d in draws for i in d)
    top = {NAMES_43[i] for i, _ in freq.most_common(5)}
    assert top == {NAMES_43[i] for i in np.argsort(LABEL_FREQUENCIES)[-5:]}
    mixed = INDEX_43["Mixed forest"]
    assert 0.30 < freq[mixed] / 5000 < 0.42  # 217k of 590k patches
    assert freq[INDEX_43["Burnt areas"]] < 20


def test_pixels_follow_the_class_signatures():
    sig = np.concatenate([SIGNATURES_S2, SIGNATURES_S1], axis=1)
    scale = np.array([1000.0] * 12 + [3.0, 3.0])
    for c in range(43):
        s2, s1, codes = render_patch(np.random.default_rng(c), [c], False, False)
        assert set(np.unique(codes).tolist()) == {CLASSES_43[c].clc_code}
        for b in S2_BANDS:
            assert s2[b.name].shape == b.shape and s2[b.name].dtype == np.uint16
        mean = np.array([s2[b.name].mean() for b in S2_BANDS] + [s1["VV"].mean(), s1["VH"].mean()])
        assert (((sig - mean) / scale) ** 2).sum(axis=1).argmin() == c
    # a two-label patch: both regions are visible at 60 m too
    s2, _, codes = render_patch(
        np.random.default_rng(1), [INDEX_43["Sea and ocean"], INDEX_43["Bare rock"]], False, False
    )
    assert Counter(np.unique(codes).tolist()) == Counter([332, 523])
    b01 = s2["B01"].astype(float)
    assert b01.max() > 2 * b01.min()  # rock is much brighter than sea: both regions show
