"""The plan of a run: which sides of the discovered pair units still need decoding.

Units are matched with the lake by patch id, never by path (the same archive at another mount is
a no-op), and a side that already failed for a verified defect of its data is not read again;
storage errors and unforeseen exceptions (:data:`~bigearth_spark.archive.reader.RETRIED_LATER`)
and folder-level findings (stray files, duplicates) do not block a side.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from bigearth_spark.archive.reader import RETRIED_LATER
from bigearth_spark.etl import discover, pairs
from bigearth_spark.tables import schema

UNITS_PER_TASK = 1000  # pairs decoded per task, streamed to one open file per split

SIDES = tuple(schema.SIDE_PATH)
NEED = [f"need_{s}" for s in SIDES]
# reasons that do not stop a later run from reading the side again
_RETRIED = (*RETRIED_LATER, discover.STRAY_FILE, discover.DUPLICATE, discover.DUPLICATE_PARTNER)


def has_side(side: str) -> Column:
    """``_has_<side>``: whether a row of ``pairs`` stores ``side``."""
    return F.col(schema.SIDE_PATH[side]).isNotNull().alias(f"_has_{side}")


def _permanently_bad(quarantine_df: DataFrame, pairs_df: DataFrame) -> DataFrame:
    """(patch_id, kind) of the sides that failed for a permanent reason, by patch id and side."""
    recorded = pairs_df.select(F.explode("issues").alias("i"))
    return (
        quarantine_df.where(F.col("origin") == "unit")
        .select("patch_id", "kind", "reason")
        .unionByName(recorded.select("i.patch_id", "i.kind", "i.reason"))
        .where(~F.col("reason").isin(*_RETRIED))
        .select("patch_id", "kind")
        .distinct()
    )


def units_to_decode(
    units: DataFrame,
    metadata: DataFrame,
    pairs_df: DataFrame | None = None,
    quarantine_df: DataFrame | None = None,
) -> DataFrame:
    """The units with a side to decode, with their ``need_<side>`` flags, ``is_update`` (the
    pair is stored and gets a side now), the stored S2 path and 43 labels, and their metadata.
    ``pairs_df`` None: the lake stores and quarantines nothing yet (its first run: no join)."""
    if pairs_df is None or quarantine_df is None:
        todo = units.select(
            *units.columns,
            *[F.col(schema.SIDE_PATH[s]).isNotNull().alias(f"need_{s}") for s in SIDES],
            F.lit(False).alias("is_update"),
            F.lit(None).cast("string").alias("_stored_s2_path"),
            F.lit(None).cast(schema.PAIRS_SCHEMA["labels43"].dataType).alias("_stored_labels43"),
        )
        return pairs.with_metadata(todo.where(F.greatest(*[F.col(c) for c in NEED])), metadata)
    stored = pairs_df.select(
        "patch_id",
        F.lit(True).alias("_stored"),
        *[has_side(s) for s in SIDES],
        F.col("s2_path").alias("_stored_s2_path"),
        F.col("labels43").alias("_stored_labels43"),
    )
    bad = _permanently_bad(quarantine_df, pairs_df)
    planned = units.join(stored, "patch_id", "left")
    for s in SIDES:
        side_id = "s1_patch_id" if s == "s1" else "patch_id"
        known_bad = bad.where(F.col("kind") == s).select(
            F.col("patch_id").alias(f"_bad_{s}"), F.lit(True).alias(f"_is_bad_{s}")
        )
        planned = planned.join(known_bad, F.col(side_id) == F.col(f"_bad_{s}"), "left")
        planned = planned.withColumn(
            f"need_{s}",
            F.col(schema.SIDE_PATH[s]).isNotNull()
            & ~F.coalesce(f"_has_{s}", F.lit(False))
            & F.col(f"_is_bad_{s}").isNull(),
        )
    need = F.greatest(*[F.col(c) for c in NEED])  # any side to decode
    todo = planned.where(need).select(
        *units.columns,
        *NEED,
        F.col("_stored").isNotNull().alias("is_update"),
        "_stored_s2_path",
        "_stored_labels43",
    )
    return pairs.with_metadata(todo, metadata)


def complete(units: DataFrame, pairs_df: DataFrame) -> DataFrame:
    """The units whose every side is stored in ``pairs``."""
    joined = units.join(pairs_df.select("patch_id", *[has_side(s) for s in SIDES]), "patch_id")
    ok = F.lit(True)
    for s in SIDES:
        ok = ok & (F.col(schema.SIDE_PATH[s]).isNull() | F.col(f"_has_{s}"))
    return joined.where(ok)


def task_count(count: int, parallelism: int) -> int:
    """Decode tasks for ``count`` units on ``parallelism`` cores: at most ~:data:`UNITS_PER_TASK`
    units each, a multiple of the cores, at least two per core."""
    tasks = max(2 * parallelism, -(-count // UNITS_PER_TASK))
    return -(-tasks // parallelism) * parallelism  # whole rounds: no core idles at the end


def decode_tasks(units: DataFrame, count: int, parallelism: int) -> DataFrame:
    """``count`` units dealt into :func:`task_count` decode tasks by ranges of patch id, in
    patch-id order within a task: each file the task writes (one per split) then holds a narrow
    range of ids, so that the Delta statistics of its ``patch_id`` let a lookup by id skip every
    other file (a lookup by id and split reads one). The same input through the same job writes
    the same rows in the same order wherever it is stored (Spark's range bounds come from a
    sample seeded by the plan), so a copy of an archive gives the same lake layout and the same
    training run. Units are paths only: no band byte is shuffled or sorted here."""
    tasks = task_count(count, parallelism)
    return units.repartitionByRange(tasks, "patch_id").sortWithinPartitions("patch_id")
