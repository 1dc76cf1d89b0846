"""What ``pairs`` derives from the official lists, the lake-wide checks, and the long labels.

Everything here is a narrow projection or works on the small columns of ``pairs`` (never on band
bytes): the derived columns are computed right after decoding (the unit carries its metadata
row) and refreshed in place when the lists change; the checks and ``labels`` are recomputed
from the committed table, so a run that dies before them is repaired by the next one.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from bigearth_spark.archive.labels import CLASSES_43, INDEX_19, INDEX_43, NAMES_19, NAMES_43
from bigearth_spark.tables.schema import PAIR_DERIVED, issue

META_COLUMNS = ("split", "is_snow", "is_cloud_or_shadow", "labels19", "country", "s2v1_name")
META = [f"meta_{c}" for c in META_COLUMNS]
DERIVED = [f.name for f in PAIR_DERIVED]
LAKE_REASONS = ("missing_s2_partner", "missing_s1_partner", "missing_metadata")


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
    return F.when(F.col("archive").isin(known), F.coalesce(F.col(f"meta_{column}"), F.lit(False)))


def with_metadata(rows: DataFrame, metadata: DataFrame) -> DataFrame:
    """``rows`` (keyed by ``patch_id``, ``archive``) with their ``meta_*`` columns (a join on
    small columns: call it before decoding, never on band bytes)."""
    meta = metadata.select(
        "patch_id", "archive", *[F.col(c).alias(f"meta_{c}") for c in META_COLUMNS]
    )
    return rows.join(meta, ["patch_id", "archive"], "left")


def derived_columns(archive_known: dict[str, set[str]]) -> dict[str, Column]:
    """The columns of ``pairs`` derived from ``labels43``, ``s2_path`` and ``meta_*``: labels of
    both nomenclatures (v1: 43 → 19 by the official mapping; v2: the metadata's 19 labels),
    multi-hot targets, split (only for a stored S2 patch) and membership flags."""
    to19 = F.array(*[F.lit(c.target19 if c.target19 is not None else -1) for c in CLASSES_43])
    idx43 = _sorted_indices(F.col("labels43"), INDEX_43)
    idx19_from43 = F.array_sort(
        F.array_distinct(
            F.filter(F.transform(idx43, lambda i: F.element_at(to19, i + 1)), lambda j: j >= 0)
        )
    )
    idx19 = F.when(F.col("archive") == "v1", idx19_from43).otherwise(
        _sorted_indices(F.col("meta_labels19"), INDEX_19)
    )
    return {
        "split": F.when(F.col("s2_path").isNotNull(), F.col("meta_split")),
        "is_snow": _flag("is_snow", archive_known),
        "is_cloud_or_shadow": _flag("is_cloud_or_shadow", archive_known),
        "has_no_19_label": F.size(idx19) == 0,
        "labels19": _names(idx19, NAMES_19),
        "multi_hot_43": _multi_hot(idx43, len(NAMES_43)),
        "multi_hot_19": _multi_hot(idx19, len(NAMES_19)),
        "country": F.col("meta_country"),
        "s2v1_name": F.col("meta_s2v1_name"),
    }


def derive(rows: DataFrame, archive_known: dict[str, set[str]]) -> DataFrame:
    """``rows`` with the derived columns set (a projection: safe on band bytes)."""
    return rows.withColumns(derived_columns(archive_known)).drop(*META)


def stale_derived(
    pairs: DataFrame, metadata: DataFrame, archive_known: dict[str, set[str]]
) -> DataFrame:
    """``patch_id`` and the new derived columns of the rows of ``pairs`` whose derived columns
    differ from what the current lists give (NULL-safe: every column is compared)."""
    base = pairs.select("patch_id", "archive", "labels43", "s2_path", *DERIVED)
    desired = with_metadata(base, metadata).select(
        "patch_id",
        *[c.alias(f"new_{n}") for n, c in derived_columns(archive_known).items()],
        *DERIVED,
    )
    same = F.lit(True)
    for name in DERIVED:
        same = same & F.col(name).eqNullSafe(F.col(f"new_{name}"))
    return desired.where(~same).select("patch_id", *[F.col(f"new_{n}").alias(n) for n in DERIVED])


def lake_issues(pairs: DataFrame, metadata: DataFrame) -> DataFrame:
    """Issues that depend on the whole lake (reasons :data:`LAKE_REASONS`): S1 patches whose S2
    partner is not stored, S2 patches without an S1 partner in archives whose S1 patches are in
    the lake, v2 S2 patches absent from the v2 metadata. Rows of ``ISSUE``."""
    p = pairs.select("patch_id", "archive", "s1_patch_id", "s2_path", "s1_path")
    s1_archives = [
        r.archive for r in p.where("s1_path IS NOT NULL").select("archive").distinct().collect()
    ]
    lonely_s1 = p.where("s1_path IS NOT NULL AND s2_path IS NULL").select(
        issue(
            F.col("s1_patch_id"),
            "s1",
            F.col("s1_path"),
            "missing_s2_partner",
            F.concat(F.lit("S2 partner not in the lake: "), F.col("patch_id")),
        ).alias("i")
    )
    no_s1 = F.col("s2_path").isNotNull() & F.col("s1_path").isNull()
    lonely_s2 = p.where(no_s1 & F.col("archive").isin(s1_archives)).select(
        issue(
            F.col("patch_id"),
            "s2",
            F.col("s2_path"),
            "missing_s1_partner",
            "no S1 partner in the lake",
        ).alias("i")
    )
    v2_meta = metadata.where(F.col("archive") == "v2").select("patch_id")
    no_metadata = (
        p.where((F.col("archive") == "v2") & F.col("s2_path").isNotNull())
        .join(v2_meta, "patch_id", "left_anti")
        .select(
            issue(
                F.col("patch_id"),
                "s2",
                F.col("s2_path"),
                "missing_metadata",
                "not in the v2 metadata parquets: labels and split unknown",
            ).alias("i")
        )
    )
    return lonely_s1.unionByName(lonely_s2).unionByName(no_metadata).select("i.*")


def long_labels(pairs: DataFrame) -> DataFrame:
    """The long-form labels table (patch, nomenclature, index, label) of the stored S2 patches."""
    stored = pairs.where(F.col("s2_path").isNotNull())
    parts = []
    for nomenclature, column, index in (("43", "labels43", INDEX_43), ("19", "labels19", INDEX_19)):
        parts.append(
            stored.select("patch_id", "archive", "split", F.explode(column).alias("label"))
            .withColumn("nomenclature", F.lit(nomenclature))
            .withColumn("label_index", _index_map(index)[F.col("label")])
        )
    out = parts[0].unionByName(parts[1])
    return out.select("patch_id", "archive", "split", "nomenclature", "label_index", "label")
