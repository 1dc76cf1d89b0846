"""Derived columns of ``pairs``: the values of the SQL expressions they replaced, edge cases
included (unknown label sets, flags of lists that are not known, v2 labels from metadata)."""

from __future__ import annotations

import pytest

from bigearth_spark.archive import labels as L
from bigearth_spark.etl.pairs import derived_values

KNOWN = {"v1": {"is_snow"}, "v2": {"is_snow", "is_cloud_or_shadow"}}
NO_META = {
    "meta_labels19": None,
    "meta_is_snow": None,
    "meta_is_cloud_or_shadow": None,
    "meta_split": None,
    "meta_country": "AT",
    "meta_s2v1_name": None,
}


def _row(archive: str, labels43, s2_path, **meta) -> dict:
    return {"archive": archive, "labels43": labels43, "s2_path": s2_path, **NO_META, **meta}


def test_v1_labels_map_43_to_19_sorted_and_distinct() -> None:
    row = _row("v1", ["Sea and ocean", "Pastures", "Pastures"], "/s2", meta_split="train")
    got = derived_values(row, KNOWN)
    assert got["labels19"] == ["Pastures", "Marine waters"]
    assert got["multi_hot_43"] == list(L.multi_hot(["Pastures", "Sea and ocean"], "43"))
    assert got["multi_hot_19"] == list(L.multi_hot(["Pastures", "Marine waters"], "19"))
    assert (got["split"], got["has_no_19_label"], got["country"]) == ("train", False, "AT")
    # v1 knows the snow list only: not listed → False; cloud list unknown → NULL
    assert (got["is_snow"], got["is_cloud_or_shadow"]) == (False, None)


def test_v2_labels_come_from_the_metadata() -> None:
    row = _row("v2", None, "/s2", meta_labels19=["Marine waters"], meta_is_snow=True)
    got = derived_values(row, KNOWN)
    assert got["labels19"] == ["Marine waters"]
    assert got["multi_hot_19"] == [0] * 18 + [1]
    assert got["multi_hot_43"] == [None] * 43  # no 43-class labels: unknown, not zero
    assert (got["is_snow"], got["is_cloud_or_shadow"]) == (True, False)


@pytest.mark.parametrize(
    ("labels43", "s2_path", "split", "no_19"),
    [(None, None, None, None), ([], "/s2", "test", True)],
)
def test_unknown_and_empty_label_sets(labels43, s2_path, split, no_19) -> None:
    got = derived_values(_row("v1", labels43, s2_path, meta_split="test"), KNOWN)
    assert (got["split"], got["has_no_19_label"]) == (split, no_19)
    hot = [None] * 19 if labels43 is None else [0] * 19
    assert got["multi_hot_19"] == hot
    assert got["labels19"] == (None if labels43 is None else [])


def test_a_label_dropped_by_the_19_class_nomenclature_leaves_no_19_label() -> None:
    dropped = next(c.name for c in L.CLASSES_43 if c.target19 is None)
    got = derived_values(_row("v1", [dropped], "/s2"), KNOWN)
    assert (got["labels19"], got["has_no_19_label"]) == ([], True)
    assert sum(got["multi_hot_43"]) == 1
