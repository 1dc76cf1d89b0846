"""Silver tables: S1+S2 pairs with both label sets, multi-hot targets, split and flags; the
long-form labels table. Derived from the bronze tables, so a re-run recomputes only what
changed (row hash) and a later S1 ingest completes the pairs of an earlier S2 ingest.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from bigearth_spark.archive.bands import S1_BANDS, S2_BANDS
from bigearth_spark.archive.labels import CLASSES_43, INDEX_19, INDEX_43, NAMES_19, NAMES_43
from bigearth_spark.tables.schema import PAIRS_SCHEMA


def _index_map(index: dict[str, int]) -> Column:
    return F.create_map(*[x for name, i in index.items() for x in (F.lit(name), F.lit(i))])


def _names(indices: Column, names: tuple[str, ...]) -> Column:
    lookup = F.array(*[F.lit(n) for n in names])
    return F.transform(indices, lambda i: F.element_at(lookup, i + 1))


def _multi_hot(indices: Column, n: int) -> Column:
    return F.transform(
        F.sequence(F.lit(0), F.lit(n - 1)), lambda i: F.array_contains(indices, i).cast("tinyint")
    )


def _sorted_indices(labels: Column, index: dict[str, int]) -> Column:
    m = _index_map(index)
    return F.array_sort(F.array_distinct(F.transform(labels, lambda n: m[n])))


def _flag(column: str, archive_known: dict[str, set[str]]) -> Column:
    """A membership flag: listed → true, not listed but the list is known → false, else null."""
    known = [a for a, cols in archive_known.items() if column in cols]
    return F.when(F.col("archive").isin(known), F.coalesce(F.col(column), F.lit(False)))


def partner_links(s2: DataFrame, s1: DataFrame, meta: DataFrame) -> DataFrame:
    """(patch_id, s1_patch_id) for every S2 patch with an S1 partner in the lake.

    v1: the S1 JSON's ``corresponding_s2_patch`` is the authority. v2: ``s1_name`` of the
    metadata. One S2 with several S1 candidates keeps the smallest S1 id (deterministic).
    """
    v1 = s1.where(F.col("corresponding_s2_patch").isNotNull()).select(
        F.col("corresponding_s2_patch").alias("patch_id"), F.col("patch_id").alias("s1_patch_id")
    )
    v2 = (
        meta.where((F.col("archive") == "v2") & F.col("s1_patch_id").isNotNull())
        .select("patch_id", "s1_patch_id")
        .join(s1.select(F.col("patch_id").alias("s1_patch_id")), "s1_patch_id")
    )
    links = v1.unionByName(v2).join(s2.select("patch_id"), "patch_id")
    first = Window.partitionBy("patch_id").orderBy("s1_patch_id")
    return links.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")


def pair_keys(
    s2: DataFrame, s1: DataFrame, meta: DataFrame, archive_known: dict[str, set[str]]
) -> DataFrame:
    """Every column of ``pairs`` except the bands, for every S2 patch of the lake."""
    links = partner_links(s2, s1, meta)
    s1_small = s1.select(
        F.col("patch_id").alias("s1_patch_id"), F.col("acquired").alias("s1_acquired")
    )
    m = meta.select("patch_id", "split", "is_snow", "is_cloud_or_shadow", "labels19", "country",
                    "s2v1_name")  # fmt: skip
    df = (
        s2.select(
            "patch_id",
            "archive",
            "tile",
            "acquired",
            "epsg",
            "ulx",
            "uly",
            "lrx",
            "lry",
            "labels43",
        )
        .join(links, "patch_id", "left")
        .join(s1_small, "s1_patch_id", "left")
        .join(m, "patch_id", "left")
    )
    to19 = F.array(*[F.lit(c.target19 if c.target19 is not None else -1) for c in CLASSES_43])
    idx43 = _sorted_indices(F.col("labels43"), INDEX_43)
    idx19_from43 = F.array_sort(
        F.array_distinct(
            F.filter(F.transform(idx43, lambda i: F.element_at(to19, i + 1)), lambda j: j >= 0)
        )
    )
    idx19 = F.when(F.col("archive") == "v1", idx19_from43).otherwise(
        _sorted_indices(F.col("labels19"), INDEX_19)
    )
    df = (
        df.withColumn("_idx43", idx43)
        .withColumn("_idx19", idx19)
        .withColumn("labels43", _names(F.col("_idx43"), NAMES_43))
        .withColumn("labels19", _names(F.col("_idx19"), NAMES_19))
        .withColumn("multi_hot_43", _multi_hot(F.col("_idx43"), len(NAMES_43)))
        .withColumn("multi_hot_19", _multi_hot(F.col("_idx19"), len(NAMES_19)))
        .withColumn("has_no_19_label", F.size("_idx19") == 0)
        .withColumn("is_snow", _flag("is_snow", archive_known))
        .withColumn("is_cloud_or_shadow", _flag("is_cloud_or_shadow", archive_known))
    )
    hashed = ["s1_patch_id", "split", "is_snow", "is_cloud_or_shadow", "labels43", "labels19",
              "country", "s2v1_name", "s1_acquired"]  # fmt: skip
    return df.withColumn("row_hash", F.xxhash64(*hashed)).drop("_idx43", "_idx19")


def with_bands(keys: DataFrame, s2: DataFrame, s1: DataFrame) -> DataFrame:
    """Full pairs rows: ``keys`` joined with the S2 band bytes and their S1 partner's bands."""
    s2_bands = s2.select("patch_id", *[b.name for b in S2_BANDS])
    s1_bands = s1.select(F.col("patch_id").alias("s1_patch_id"), *[b.name for b in S1_BANDS])
    full = (
        keys.join(s2_bands, "patch_id")
        .join(s1_bands, "s1_patch_id", "left")
        .withColumn("updated_at", F.current_timestamp())
    )
    return full.select(*PAIRS_SCHEMA.fieldNames())


def long_labels(pairs: DataFrame) -> DataFrame:
    """The long-form labels table (patch, nomenclature, index, label) of ``pairs``."""
    parts = []
    for nomenclature, column, index in (("43", "labels43", INDEX_43), ("19", "labels19", INDEX_19)):
        parts.append(
            pairs.select("patch_id", "archive", "split", F.explode(column).alias("label"))
            .withColumn("nomenclature", F.lit(nomenclature))
            .withColumn("label_index", _index_map(index)[F.col("label")])
        )
    out = parts[0].unionByName(parts[1])
    return out.select("patch_id", "archive", "split", "nomenclature", "label_index", "label")


DERIVED_REASONS = ("missing_s2_partner", "missing_s1_partner", "missing_metadata")


def derived_issues(s2: DataFrame, s1: DataFrame, meta: DataFrame, links: DataFrame) -> DataFrame:
    """Quarantine rows that depend on the whole lake (reasons ``DERIVED_REASONS``): S1 patches
    without their S2 partner, S2 patches without their S1 partner (for archives where the
    partner's modality is in the lake), v2 S2 patches absent from the v2 metadata."""
    s2_archives = [r.archive for r in s2.select("archive").distinct().collect()]
    s1_archives = [r.archive for r in s1.select("archive").distinct().collect()]
    lonely_s1 = (
        s1.where(F.col("archive").isin(s2_archives))
        .join(links.select(F.col("s1_patch_id").alias("patch_id")), "patch_id", "left_anti")
        .select("patch_id", "source_path", F.lit("s1").alias("kind"),
                F.lit("missing_s2_partner").alias("reason"),
                F.concat(F.lit("S2 partner not in the lake: "),
                         F.coalesce("corresponding_s2_patch", F.lit("(no metadata row)"))
                         ).alias("message"))
    )  # fmt: skip
    lonely_s2 = (
        s2.where(F.col("archive").isin(s1_archives))
        .join(links.select("patch_id"), "patch_id", "left_anti")
        .select("patch_id", "source_path", F.lit("s2").alias("kind"),
                F.lit("missing_s1_partner").alias("reason"),
                F.lit("no S1 partner in the lake").alias("message"))
    )  # fmt: skip
    no_metadata = (
        s2.where(F.col("archive") == "v2")
        .join(meta.select("patch_id"), "patch_id", "left_anti")
        .select("patch_id", "source_path", F.lit("s2").alias("kind"),
                F.lit("missing_metadata").alias("reason"),
                F.lit("not in the v2 metadata parquets: labels and split unknown").alias("message"))
    )  # fmt: skip
    issues = lonely_s1.unionByName(lonely_s2).unionByName(no_metadata)
    return issues.withColumnRenamed("source_path", "path")
