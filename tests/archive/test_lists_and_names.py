"""Official lists and names: counts against the official files, every official name parses."""

from __future__ import annotations

from datetime import datetime

import pytest

from bigearth_spark.archive import labels as L
from bigearth_spark.archive import names
from bigearth_spark.archive.lists import read_lists
from tests.conftest import LISTS, SHARED, needs_shared


@pytest.fixture(scope="module")
def official():
    return read_lists([LISTS])


@needs_shared
def test_v1_counts_match_the_official_files(official):
    v1 = official.metadata[official.metadata["archive"] == "v1"]
    splits = v1["split"].value_counts().to_dict()
    assert splits == {"train": 269_695, "validation": 123_723, "test": 125_866}
    assert int(v1["is_snow"].sum()) == 61_707 and int(v1["is_cloud_or_shadow"].sum()) == 9_280
    assert int(v1["in_no19_list"].sum()) == 57
    assert official.known["v1"] == {"split", "is_snow", "is_cloud_or_shadow", "in_no19_list"}
    recommended = v1["split"].notna().sum()
    assert recommended == 519_284 == 590_326 - 61_707 - 9_280 - 57 + 2


@needs_shared
def test_v2_counts_match_the_official_parquets(official):
    v2 = official.metadata[official.metadata["archive"] == "v2"]
    assert len(v2) == 480_038 + 69_450
    flagged = v2["is_snow"].astype(bool) | v2["is_cloud_or_shadow"].astype(bool)
    recommended = v2[~flagged]["split"].value_counts().to_dict()
    assert recommended == {"train": 237_871, "validation": 122_342, "test": 119_825}
    assert all(set(labels) <= set(L.NAMES_19) for labels in v2["labels19"].head(5000))


@needs_shared
def test_every_official_name_parses(official):
    meta = official.metadata
    for name in meta.loc[meta["archive"] == "v1", "patch_id"]:
        parsed = names.parse_v1_s2(name)
        assert parsed.acquired.year in (2017, 2018)
    v2 = meta[meta["archive"] == "v2"]
    for pid, s1, v1name in v2[["patch_id", "s1_patch_id", "s2v1_name"]].itertuples(index=False):
        p = names.parse_v2_s2(pid)
        assert names.v2_s2_tile_folder(pid).endswith("_T" + p.tile)
        assert names.parse_s1(s1).tile and names.is_v1_s2(v1name)


def test_name_quirks():
    five = names.parse_v1_s2("S2B_MSIL2A_20170924T93020_69_24")
    assert five.acquired == datetime(2017, 9, 24, 9, 30, 20) and (five.col, five.row) == (69, 24)
    assert names.parse_v1_s2("S2B_MSIL2A_20180204T94160_1_2").acquired == datetime(
        2018, 2, 4, 9, 42, 0
    )
    s1 = names.parse_s1("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48")
    assert s1.tile == "33UUP" and names.v2_s1_scene_folder(s1.name) == (
        "S1A_IW_GRDH_1SDV_20170613T165043"
    )
    with pytest.raises(names.BadNameError):
        names.parse_any("notes.txt")


@needs_shared
def test_nomenclature_matches_label_indices():
    import json

    official = json.loads((SHARED / "label_indices.json").read_text())
    assert {n: i for i, n in enumerate(L.NAMES_43)} == official["original_labels"]
    assert {n: i for i, n in enumerate(L.NAMES_19)} == official["BigEarthNet-19_labels"]
    assert [list(c.sources43) for c in L.CLASSES_19] == official["label_conversion"]
    dropped = [c.name for c in L.CLASSES_43 if c.target19 is None]
    assert len(dropped) == 11 and "Burnt areas" in dropped
    codes = [c.clc_code for c in L.CLASSES_43]
    assert codes[:3] == [111, 112, 121] and codes[-1] == 523 and len(set(codes)) == 43
