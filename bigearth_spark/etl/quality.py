"""Quality gates: split decoded rows into good patches and quarantine rows with a reason.

Reasons: the reader's codes (``corrupt_tif``, ``missing_band``, ...), ``stray_file``,
``duplicate_patch_id`` (the same id twice in the input, or already in the lake from another
path), and the lake-wide ones of :mod:`bigearth_spark.etl.pairs`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

STRAY_FILE, DUPLICATE = "stray_file", "duplicate_patch_id"


def stray_entries(entries: DataFrame) -> DataFrame:
    """Quarantine rows for files found where patch folders belong."""
    return entries.where(F.col("kind") == STRAY_FILE).select(
        F.lit(None).cast("string").alias("patch_id"), F.lit("file").alias("kind"), "path",
        F.lit(STRAY_FILE).alias("reason"),
        F.lit("a file where patch folders belong").alias("message"),
    )  # fmt: skip


def split_decoded(
    decoded: DataFrame, group: str, existing: DataFrame
) -> tuple[DataFrame, DataFrame]:
    """(good rows to insert, quarantine rows) of one decoded group.

    ``existing`` is the target table (``patch_id``, ``source_path``): a patch already there from
    the same path is an idempotent re-run; from another path it is a duplicate.
    """
    failed = decoded.where(F.col("error_reason").isNotNull()).select(
        "patch_id", F.lit(group).alias("kind"), F.col("source_path").alias("path"),
        F.col("error_reason").alias("reason"), F.col("error_message").alias("message"),
    )  # fmt: skip
    strays = decoded.select(
        "patch_id", F.lit(group).alias("kind"), F.explode("stray_files").alias("path"),
        F.lit(STRAY_FILE).alias("reason"), F.lit("stray file in a patch folder").alias("message"),
    )  # fmt: skip
    ok = decoded.where(F.col("error_reason").isNull())
    rank = F.row_number().over(Window.partitionBy("patch_id").orderBy("source_path"))
    ok = ok.withColumn("_rank", rank).join(
        existing.select("patch_id", F.col("source_path").alias("_existing")), "patch_id", "left"
    )
    is_duplicate = (F.col("_rank") > 1) | (
        F.col("_existing").isNotNull() & (F.col("_existing") != F.col("source_path"))
    )
    duplicates = ok.where(is_duplicate).select(
        "patch_id", F.lit(group).alias("kind"), F.col("source_path").alias("path"),
        F.lit(DUPLICATE).alias("reason"),
        F.concat(F.lit("patch id also read from "),
                 F.coalesce("_existing", F.lit("another folder of this input"))).alias("message"),
    )  # fmt: skip
    good = ok.where(~is_duplicate).drop("_rank", "_existing", "error_reason", "error_message",
                                        "stray_files")  # fmt: skip
    return good, failed.unionByName(strays).unionByName(duplicates)
