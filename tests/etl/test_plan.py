"""Decode tasks: every unit once, in whole rounds of the cores, sorted by patch id in a task."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from bigearth_spark.etl import plan


@pytest.mark.parametrize(
    ("count", "parallelism", "tasks"),
    [(10, 2, 4), (2500, 2, 4), (2999, 3, 6), (20_000, 2, 20), (20_001, 2, 22), (9_001, 4, 12)],
)
def test_decode_tasks_are_whole_rounds_of_the_cores(spark, count, parallelism, tasks):
    units = spark.range(count).select(F.format_string("p%06d", "id").alias("patch_id"))
    spread = plan.decode_tasks(units, count, parallelism)
    per_task = spread.rdd.glom().map(lambda rows: [r["patch_id"] for r in rows]).collect()
    assert len(per_task) == tasks
    assert all(ids == sorted(ids) for ids in per_task)
    ids = [i for task in per_task for i in task]
    assert len(ids) == count
    assert sorted(ids) == [f"p{i:06d}" for i in range(count)]
    assert max(len(task) for task in per_task) <= plan.UNITS_PER_TASK * 1.2


def test_only_verified_defects_stop_a_side_from_being_read_again(spark):
    """Sides quarantined (or recorded on a stored pair) for a storage error or an unforeseen
    exception are planned again; a verified defect of the data is not."""
    from pyspark.sql import types as T

    from bigearth_spark.archive import reader
    from bigearth_spark.tables import schema

    reasons = {
        "a": reader.READ_ERROR,
        "b": reader.UNREADABLE,
        "c": reader.CORRUPT_TIF,
        "d": reader.MALFORMED_JSON,
    }
    quarantined = spark.createDataFrame(
        [(p, "s2", r, "unit") for p, r in reasons.items()],
        "patch_id string, kind string, reason string, origin string",
    )
    recorded = spark.createDataFrame(
        [([("e", "s1", "/e", reader.READ_ERROR, ""), ("f", "s1", "/f", reader.BAD_NAME, "")],)],
        T.StructType([T.StructField("issues", schema.ISSUES)]),
    )
    bad = plan._permanently_bad(quarantined, recorded).collect()
    assert {(r["patch_id"], r["kind"]) for r in bad} == {("c", "s2"), ("d", "s2"), ("f", "s1")}
