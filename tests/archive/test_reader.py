"""Patch folders → PatchRecord: the real samples, v2 folders written here, every PatchError."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from bigearth_spark.archive import reader
from bigearth_spark.archive.bands import S2_BANDS
from bigearth_spark.archive.reader import PatchError, PatchRecord, read_patch
from bigearth_spark.archive.tiff import read_tiff
from tests.conftest import SAMPLES, needs_shared

from .test_tiff import ULX, ULY, write_tif

S2_ID = "S2A_MSIL2A_20170617T113321_36_85"
S1_ID = "S1A_IW_GRDH_1SDV_20170617T064724_29UPU_36_85"
V2_S2_ID = "S2A_MSIL2A_20170617T113321_N9999_R080_T29UPU_36_85"
LABELS = ["Non-irrigated arable land", "Pastures"]
pytestmark = needs_shared


def copy_patch(name: str, dest: Path, as_name: str | None = None) -> Path:
    """A writable copy of a real sample folder (under another name if ``as_name``)."""
    folder = Path(shutil.copytree(SAMPLES / name, dest / (as_name or name)))
    for f in folder.iterdir():
        f.chmod(0o644)
    folder.chmod(0o755)
    return folder


def assert_sample_geometry(record: PatchRecord) -> None:
    assert record.epsg == 32629
    assert (record.ulx, record.uly, record.lrx, record.lry) == (643200, 5798040, 644400, 5796840)
    assert record.tile == "29UPU"
    assert record.stray_files == []
    assert all(not a.flags.writeable for a in record.bands.values())


def test_real_v1_s2() -> None:
    folder = SAMPLES / S2_ID
    record = reader.read_patch(folder, "v1_s2")
    assert (record.patch_id, record.side, record.archive) == (S2_ID, "s2", "v1")
    assert record.path == str(folder)
    assert list(record.bands) == [b.name for b in S2_BANDS]
    for b in S2_BANDS:
        assert record.bands[b.name].shape == b.shape and record.bands[b.name].dtype == np.uint16
        with rasterio.open(folder / f"{S2_ID}_{b.name}.tif") as src:
            np.testing.assert_array_equal(record.bands[b.name], src.read(1))
    assert_sample_geometry(record)
    assert record.labels43 == LABELS
    assert record.acquired == datetime(2017, 6, 17, 11, 33, 21)
    assert record.source_product == (
        "S2A_MSIL1C_20170617T113321_N0205_R080_T29UPU_20170617T113319.SAFE"
    )
    assert record.corresponding_s2_patch is None


def test_real_v1_s1() -> None:
    record = reader.read_patch(SAMPLES / S1_ID, "v1_s1")
    assert (record.patch_id, record.side, record.archive) == (S1_ID, "s1", "v1")
    assert list(record.bands) == ["VV", "VH"]
    assert all(a.shape == (120, 120) and a.dtype == np.float32 for a in record.bands.values())
    assert_sample_geometry(record)  # the JSON says "lly": read as lry
    assert record.labels43 == LABELS
    assert record.acquired == datetime(2017, 6, 17, 6, 47, 24)
    assert record.corresponding_s2_patch == S2_ID
    assert (
        record.source_product
        == "S1A_IW_GRDH_1SDV_20170617T064724_20170617T064749_017070_01C718_CED2"
    )


def test_labels_sorted_in_nomenclature_order(tmp_path: Path) -> None:
    folder = copy_patch(S2_ID, tmp_path)
    edit_json(folder, lambda doc: doc.update(labels=["Pastures", "Sea and ocean", "Pastures"]))
    assert reader.read_patch(folder, "v1_s2").labels43 == ["Pastures", "Sea and ocean"]


def test_stray_files_do_not_fail_the_read(tmp_path: Path) -> None:
    folder = copy_patch(S2_ID, tmp_path)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "notes.txt").write_text("checked by hand")
    (folder / "old").mkdir()
    record = read_patch(folder, "v1_s2")
    assert record.stray_files == [str(folder / n) for n in (".DS_Store", "notes.txt", "old")]
    assert record.labels43 == LABELS


def test_read_patch_dispatches_and_rejects_unknown_folder_types() -> None:
    assert read_patch(str(SAMPLES / S1_ID), "v1_s1").corresponding_s2_patch == S2_ID
    assert set(reader.FOLDER_TYPES) == {"v1_s2", "v1_s1", "v2_s2", "v2_s1", "v2_reference_map"}
    with pytest.raises(ValueError, match="unknown folder type"):
        read_patch(SAMPLES / S2_ID, "v3_s2")


# ---- v2 folders, written with rasterio in the v2 formats ----


def make_v2_s2(tmp_path: Path) -> Path:
    folder = tmp_path / "S2A_MSIL2A_20170617T113321_N9999_R080_T29UPU" / V2_S2_ID
    folder.mkdir(parents=True)
    for b in S2_BANDS:
        array = read_tiff(SAMPLES / S2_ID / f"{S2_ID}_{b.name}.tif").array
        write_tif(folder / f"{V2_S2_ID}_{b.name}.tif", array, nodata=0)
    return folder


def make_v2_reference_map(tmp_path: Path) -> Path:
    folder = tmp_path / V2_S2_ID
    folder.mkdir()
    codes = np.where(np.arange(14400).reshape(120, 120) % 3, 211, 231).astype(np.uint16)
    write_tif(folder / f"{V2_S2_ID}_reference_map.tif", codes, compress="deflate", nodata=0)
    return folder


def test_v2_s2(tmp_path: Path) -> None:
    record = reader.read_patch(make_v2_s2(tmp_path), "v2_s2")
    assert (record.patch_id, record.side, record.archive) == (V2_S2_ID, "s2", "v2")
    assert list(record.bands) == [b.name for b in S2_BANDS]
    v1 = reader.read_patch(SAMPLES / S2_ID, "v1_s2")
    for name, array in record.bands.items():
        np.testing.assert_array_equal(array, v1.bands[name])
    assert_sample_geometry(record)
    assert record.acquired == datetime(2017, 6, 17, 11, 33, 21)
    assert (record.labels43, record.source_product, record.corresponding_s2_patch) == (None,) * 3


def test_v2_s1(tmp_path: Path) -> None:
    folder = copy_patch(S1_ID, tmp_path)
    (folder / f"{S1_ID}_labels_metadata.json").unlink()  # v2 has no JSON
    record = reader.read_patch(folder, "v2_s1")
    assert (record.side, record.archive, list(record.bands)) == ("s1", "v2", ["VV", "VH"])
    assert_sample_geometry(record)
    assert record.acquired == datetime(2017, 6, 17, 6, 47, 24)
    assert (record.labels43, record.corresponding_s2_patch) == (None, None)


def test_v2_reference_map(tmp_path: Path) -> None:
    record = reader.read_patch(make_v2_reference_map(tmp_path), "v2_reference_map")
    assert (record.side, record.archive, list(record.bands)) == (
        "reference_map",
        "v2",
        ["reference_map"],
    )
    assert set(np.unique(record.bands["reference_map"])) == {211, 231}
    assert_sample_geometry(record)
    assert record.acquired is None


def test_v1_json_is_not_required_in_v2(tmp_path: Path) -> None:
    folder = copy_patch(S1_ID, tmp_path)  # a stray JSON in a v2 S1 folder is just stray
    assert reader.read_patch(folder, "v2_s1").stray_files == [
        str(folder / f"{S1_ID}_labels_metadata.json")
    ]


# ---- every PatchError reason, from a damaged copy of a real folder ----


def edit_json(folder: Path, change: Callable[[dict], object]) -> None:
    path = next(folder.glob("*_labels_metadata.json"))
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def tif(folder: Path, band: str) -> Path:
    return folder / f"{folder.name}_{band}.tif"


def rewrite_band(folder: Path, band: str, **profile: object) -> None:
    path = tif(folder, band)
    array = read_tiff(path).array
    path.unlink()
    write_tif(path, array, **profile)


def only_stray_files(folder: Path) -> None:
    for f in folder.iterdir():
        f.unlink()
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")


DAMAGES: dict[str, tuple[str, str, Callable[[Path], object]]] = {  # (reason, kind, damage)
    "missing_b8a": ("missing_band", "v1_s2", lambda d: tif(d, "B8A").unlink()),
    "missing_vh": ("missing_band", "v1_s1", lambda d: tif(d, "VH").unlink()),
    "truncated_b03": (
        "corrupt_tif",
        "v1_s2",
        lambda d: tif(d, "B03").write_bytes(tif(d, "B03").read_bytes()[:1000]),
    ),
    "garbage_vv": ("corrupt_tif", "v1_s1", lambda d: tif(d, "VV").write_bytes(b"not a tif")),
    "band_is_a_folder": (
        "corrupt_tif",
        "v1_s2",
        lambda d: (tif(d, "B01").unlink(), tif(d, "B01").mkdir()),
    ),
    "b02_at_20m": ("wrong_shape", "v1_s2", lambda d: shutil.copy(tif(d, "B05"), tif(d, "B02"))),
    "b02_float32": (
        "wrong_dtype",
        "v1_s2",
        lambda d: shutil.copy(tif(SAMPLES / S1_ID, "VV"), tif(d, "B02")),
    ),
    "no_json": ("missing_json", "v1_s2", lambda d: next(d.glob("*.json")).unlink()),
    "no_json_s1": ("missing_json", "v1_s1", lambda d: next(d.glob("*.json")).unlink()),
    "json_syntax": ("malformed_json", "v1_s2", lambda d: next(d.glob("*.json")).write_text("{")),
    "json_no_coordinates": (
        "malformed_json",
        "v1_s2",
        lambda d: edit_json(d, lambda j: j.pop("coordinates")),
    ),
    "json_bad_date": (
        "malformed_json",
        "v1_s2",
        lambda d: edit_json(d, lambda j: j.update(acquisition_date="17/06/2017")),
    ),
    "json_no_tile": (
        "malformed_json",
        "v1_s2",
        lambda d: edit_json(d, lambda j: j.update(tile_source="unknown")),
    ),
    "json_labels_not_list": (
        "malformed_json",
        "v1_s2",
        lambda d: edit_json(d, lambda j: j.update(labels="Pastures")),
    ),
    "json_bad_s2_partner": (
        "malformed_json",
        "v1_s1",
        lambda d: edit_json(d, lambda j: j.update(corresponding_s2_patch="S2A_nothing")),
    ),
    "unknown_label": (
        "unknown_label",
        "v1_s2",
        lambda d: edit_json(d, lambda j: j["labels"].append("Moon base")),
    ),
    "unknown_label_s1": (
        "unknown_label",
        "v1_s1",
        lambda d: edit_json(d, lambda j: j.update(labels=["pastures"])),
    ),
    "json_corner_off": (
        "inconsistent_geo",
        "v1_s2",
        lambda d: edit_json(d, lambda j: j["coordinates"].update(ulx=643210)),
    ),
    "json_lly_off": (
        "inconsistent_geo",
        "v1_s1",
        lambda d: edit_json(d, lambda j: j["coordinates"].update(lly=5796000)),
    ),
    "b01_other_utm_zone": (
        "inconsistent_geo",
        "v1_s2",
        lambda d: rewrite_band(d, "B01", crs="EPSG:32630"),
    ),
    "b05_shifted": (
        "inconsistent_geo",
        "v1_s2",
        lambda d: rewrite_band(d, "B05", transform=from_origin(ULX + 20, ULY, 20, 20)),
    ),
    "b09_pixel_size": (
        "inconsistent_geo",
        "v1_s2",
        lambda d: rewrite_band(d, "B09", transform=from_origin(ULX, ULY, 10, 10)),
    ),
    "vh_no_crs": ("inconsistent_geo", "v1_s1", lambda d: rewrite_band(d, "VH", crs=None)),
    "only_stray_files": ("empty_folder", "v1_s2", only_stray_files),
}


@pytest.mark.parametrize("case", DAMAGES)
def test_each_damage_raises_its_reason(case: str, tmp_path: Path) -> None:
    reason, kind, damage = DAMAGES[case]
    folder = copy_patch(S2_ID if kind == "v1_s2" else S1_ID, tmp_path)
    damage(folder)
    with pytest.raises(PatchError) as info:
        read_patch(folder, kind)
    assert info.value.reason == reason
    assert info.value.path.startswith(str(folder))
    assert str(info.value).startswith(f"{reason}: {info.value.path}: ")


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    for folder in (tmp_path / S2_ID, tmp_path / "gone" / S2_ID):
        if folder.parent == tmp_path:
            folder.mkdir()
        with pytest.raises(PatchError) as info:
            reader.read_patch(folder, "v1_s2")
        assert (info.value.reason, info.value.path) == ("empty_folder", str(folder))


@pytest.mark.parametrize(
    ("kind", "sample", "name"),
    [
        ("v1_s2", S2_ID, "S2A_MSIL2A_20170617_36_85"),
        ("v1_s1", S1_ID, S2_ID),
        ("v2_s2", S2_ID, S2_ID),  # a v1 name is not a v2 id
        ("v2_reference_map", S2_ID, "reference_map"),
    ],
)
def test_bad_names(kind: str, sample: str, name: str, tmp_path: Path) -> None:
    folder = copy_patch(sample, tmp_path, as_name=name)
    with pytest.raises(PatchError) as info:
        read_patch(folder, kind)
    assert info.value.reason == "bad_name"


def test_v2_damages(tmp_path: Path) -> None:
    folder = make_v2_s2(tmp_path)
    b11 = tif(folder, "B11")
    array = read_tiff(b11).array.astype(np.int16)
    b11.unlink()
    write_tif(b11, array)
    with pytest.raises(PatchError, match="wrong_dtype"):
        reader.read_patch(folder, "v2_s2")
    ref = make_v2_reference_map(tmp_path)
    tif(ref, "reference_map").write_bytes(tif(ref, "reference_map").read_bytes()[:-200])
    with pytest.raises(PatchError) as info:
        reader.read_patch(ref, "v2_reference_map")
    assert info.value.reason == "corrupt_tif"


def test_reasons_are_exported_and_errors_pickle() -> None:
    assert reader.REASONS == (
        reader.EMPTY_FOLDER,
        reader.MISSING_BAND,
        reader.CORRUPT_TIF,
        reader.WRONG_SHAPE,
        reader.WRONG_DTYPE,
        reader.MISSING_JSON,
        reader.MALFORMED_JSON,
        reader.UNKNOWN_LABEL,
        reader.INCONSISTENT_GEO,
        reader.BAD_NAME,
        reader.MULTI_SAMPLE,
        reader.READ_ERROR,
        reader.UNREADABLE,
    )
    assert reader.BAD_NAME == "bad_name" and reader.INCONSISTENT_GEO == "inconsistent_geo"
    # bad_name: test_bad_names; multi_sample: test_band_with_two_samples_per_pixel_is_rejected;
    # read_error, unreadable: tests/etl/test_decode.py, tests/etl/test_faults.py
    tested = {reason for reason, _, _ in DAMAGES.values()} | {"bad_name", "multi_sample"}
    tested |= {"read_error", "unreadable"}
    assert tested == set(reader.REASONS)
    error = pickle.loads(pickle.dumps(PatchError(reader.MISSING_BAND, "/x", "missing band(s) B01")))
    assert (error.reason, error.path, str(error)) == (
        "missing_band",
        "/x",
        "missing_band: /x: missing band(s) B01",
    )
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("interleave", ["pixel", "band"])
def test_band_with_two_samples_per_pixel_is_rejected(tmp_path: Path, interleave: str) -> None:
    folder = copy_patch(S2_ID, tmp_path)
    tif = folder / f"{S2_ID}_B02.tif"
    with rasterio.open(tif) as src:
        array = src.read(1)
    tif.unlink()
    write_tif(tif, array, count=2, interleave=interleave)
    with pytest.raises(PatchError) as caught:
        reader.read_patch(folder, "v1_s2")
    assert caught.value.reason == reader.MULTI_SAMPLE
    assert "2 samples per pixel" in caught.value.detail and caught.value.path == str(tif)
