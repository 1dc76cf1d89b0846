"""The ``quarantine`` table's desired state: every open issue of the lake, one row each.

Recomputed each run from the committed ``pairs`` (issues recorded on stored pairs, lake-wide
checks) and this run's discovery and decode issues, plus earlier rows of folders that are still
not stored; so a fixed input, a transient read error that later succeeded, or a v2 S1 patch that
the metadata pairs now, leave the table.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from bigearth_spark.archive import tarball
from bigearth_spark.archive.reader import READ_ERROR
from bigearth_spark.etl import discover, pairs
from bigearth_spark.tables import schema

# which origin's row wins when several report the same issue
ORIGIN_RANK = {"pair": 0, "lake": 1, "unit": 2, "input": 3}
# reasons that a stored patch does not resolve
_UNRESOLVABLE = (discover.DUPLICATE, discover.DUPLICATE_PARTNER, discover.STRAY_FILE)


def _stored_sides(pairs_df: DataFrame) -> DataFrame:
    """(patch_id, kind) of every side stored in ``pairs`` (S1 by its own patch id)."""
    sides = [
        pairs_df.where(f"{schema.SIDE_PATH[side]} IS NOT NULL").select(
            F.col("s1_patch_id" if side == "s1" else "patch_id").alias("patch_id"),
            F.lit(side).alias("kind"),
        )
        for side in schema.SIDE_PATH
    ]
    stored = sides[0]
    for s in sides[1:]:
        stored = stored.unionByName(s)
    return stored


def unresolved(rows: DataFrame, pairs_df: DataFrame, metadata: DataFrame) -> DataFrame:
    """Quarantine rows of folders whose patch is not stored (since) — resolved ones go, and
    so do v2 S1 patches that the metadata pairs now (``missing_metadata``)."""
    stored = _stored_sides(pairs_df).withColumn("_resolved", F.lit(True))
    paired = metadata.where("s1_patch_id IS NOT NULL").select(
        F.col("s1_patch_id").alias("patch_id"),
        F.lit("s1").alias("kind"),
        F.lit(discover.MISSING_METADATA).alias("reason"),
        F.lit(True).alias("_paired"),
    )
    joined = rows.join(stored, ["patch_id", "kind"], "left")
    joined = joined.join(paired, ["patch_id", "kind", "reason"], "left")
    resolved = F.col("_resolved").isNotNull() | F.col("_paired").isNotNull()
    resolvable = ~F.col("reason").isin(*_UNRESOLVABLE)
    return joined.where(~resolvable | ~resolved).drop("_resolved", "_paired")


def desired_state(
    current: DataFrame | None,
    pairs_df: DataFrame,
    metadata: DataFrame,
    input_issues: DataFrame,
    unit_issues: DataFrame,
    run_id: str,
) -> DataFrame:
    """The rows ``quarantine`` should hold: one per patch (id, not mount path), side and reason
    (stray files by their path); rows already in ``current`` keep their run and first_seen.
    ``current`` None: the table holds no row (a new lake, or one without open issues), and the
    joins with it are left out."""
    pair_issues = pairs_df.select(F.explode("issues").alias("i")).select("i.*")
    fresh = (
        pair_issues.withColumn("origin", F.lit("pair"))
        .unionByName(pairs.lake_issues(pairs_df, metadata).withColumn("origin", F.lit("lake")))
        .unionByName(unit_issues.withColumn("origin", F.lit("unit")))
        .unionByName(input_issues.withColumn("origin", F.lit("input")))
        .withColumn("ingest_run", F.lit(run_id))
        .withColumn("first_seen", F.current_timestamp())
        .withColumn("_old", F.lit(1))
    )
    candidates = fresh
    if current is not None:
        # rows of this run's input are found again by its listing: a folder that could not be
        # listed (read_error) is listed again by each run and reported only while it fails; a
        # tarball's fault only while the tarball is cut (a re-download is indexed again)
        again = F.col("reason").isin(READ_ERROR, tarball.TRUNCATED, tarball.CORRUPT)
        relisted = (F.col("origin") == "input") & again
        earlier = current.where(F.col("origin").isin("unit", "input") & ~relisted)
        kept = unresolved(earlier, pairs_df, metadata)
        candidates = kept.withColumn("_old", F.lit(0)).unionByName(fresh)
    rank = F.create_map(*[F.lit(x) for kv in ORIGIN_RANK.items() for x in kv])
    identity = [F.coalesce("patch_id", "path"), "kind", "reason"]
    best = Window.partitionBy(*identity).orderBy(rank[F.col("origin")], "_old")
    columns = schema.QUARANTINE_SCHEMA.fieldNames()
    desired = (
        candidates.withColumn("_n", F.row_number().over(best)).where("_n = 1").select(*columns)
    )
    if current is None:
        return desired
    first = current.select(
        "path", "reason", F.col("first_seen").alias("_fs"), F.col("ingest_run").alias("_run")
    )
    return (
        desired.join(first, ["path", "reason"], "left")
        .withColumn("first_seen", F.coalesce("_fs", "first_seen"))
        .withColumn("ingest_run", F.coalesce("_run", "ingest_run"))
        .select(*columns)
    )
