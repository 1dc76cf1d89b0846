"""The quarantine's desired state: one row per issue identity, the best origin winning."""

from __future__ import annotations

from datetime import datetime

from bigearth_spark.etl import quarantine
from bigearth_spark.etl.derived import SMALL_SCHEMA
from bigearth_spark.tables import schema


def _pair(**values) -> tuple:
    values = {"ingest_run": "run-0", "updated_at": datetime(2026, 1, 1), **values}
    return tuple(values.get(name) for name in SMALL_SCHEMA.fieldNames())


def _issue(patch_id, kind, path, reason) -> dict:
    return {"patch_id": patch_id, "kind": kind, "path": path, "reason": reason, "message": "m"}


def test_an_empty_quarantine_gives_the_rows_of_the_joins_with_it(spark) -> None:
    stray = _issue("A", "s2", "/in/A/x.txt", "stray_file")
    pairs_df = spark.createDataFrame(
        [
            # a stored pair with a stray file: reported by its row and by the input listing
            _pair(patch_id="A", archive="v1", s1_patch_id="a", s2_path="/in/A", s1_path="/in/a",
                  issues=[stray]),
            # an S1 patch whose S2 partner is not stored (a lake-wide issue)
            _pair(patch_id="B", archive="v1", s1_patch_id="b", s1_path="/in/b", issues=[]),
        ],
        SMALL_SCHEMA,
    )  # fmt: skip
    metadata = spark.createDataFrame([], schema.PATCH_METADATA_SCHEMA)
    input_issues = spark.createDataFrame(
        [stray, _issue(None, "file", "/in/notes.txt", "stray_file")], schema.ISSUE
    )
    unit_issues = spark.createDataFrame(
        [_issue("C", "s2", "/in/C/C_B02.tif", "corrupt_tif")], schema.ISSUE
    )
    args = (pairs_df, metadata, input_issues, unit_issues, "run-1")
    empty = spark.createDataFrame([], schema.QUARANTINE_SCHEMA)

    def rows(current) -> list[tuple]:
        got = quarantine.desired_state(current, *args).drop("first_seen").collect()
        return sorted((tuple(r) for r in got), key=lambda r: [v or "" for v in r])

    lonely = "S2 partner not in the lake: B"
    without = rows(None)
    assert without == rows(empty)
    assert without == [
        (None, "file", "/in/notes.txt", "stray_file", "m", "input", "run-1"),
        ("A", "s2", "/in/A/x.txt", "stray_file", "m", "pair", "run-1"),
        ("C", "s2", "/in/C/C_B02.tif", "corrupt_tif", "m", "unit", "run-1"),
        ("b", "s1", "/in/b", "missing_s2_partner", lonely, "lake", "run-1"),
    ]
