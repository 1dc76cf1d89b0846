"""What ``pairs`` derives from the official lists, the lake-wide checks, and the long labels.

Everything here is a narrow projection or works on the small columns of ``pairs`` (never on band
bytes): the derived columns are computed right after decoding (the unit carries its metadata
row) and refreshed in place when the lists change; the checks and ``labels`` are recomputed
from the committed table, so a run that dies before them is repaired by the next one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from bigearth_spark.archive.labels import CLASSES_43, INDEX_19, INDEX_43, NAMES_19, NAMES_43
from bigearth_spark.tables.schema import PAIR_DERIVED, issue

META_COLUMNS = ("split", "is_snow", "is_cloud_or_shadow", "labels19", "country", "s2v1_name")
META = [f"meta_{c}" for c in META_COLUMNS]
DERIVED = [f.name for f in PAIR_DERIVED]
TO_19 = [c.target19 for c in CLASSES_43]  # 43-class index → 19-class index (None: dropped)
LAKE_REASONS = ("missing_s2_partner", "missing_s1_partner", "missing_metadata")


def _index_map(index: dict[str, int]) -> Column:
    return F.create_map(*[x for name, i in index.items() for x in (F.lit(name), F.lit(i))])


def _indices(labels: list[str | None] | None, index: dict[str, int]) -> list[int | None] | None:
    """Distinct indices of ``labels`` in ascending order, an unknown name as a trailing None."""
    if labels is None:
        return None
    found = {index.get(n) for n in labels}
    return [*sorted(i for i in found if i is not None), *([None] if None in found else [])]


def _names(indices: list[int | None] | None, names: tuple[str, ...]) -> list[str | None] | None:
    return None if indices is None else [None if i is None else names[i] for i in indices]


def _multi_hot(indices: list[int | None] | None, n: int) -> list[int | None]:
    """1 for a listed class; 0 for the others, or None where the set is unknown or has an
    unknown name (SQL's three-valued ``array_contains``)."""
    if indices is None:
        return [None] * n
    absent = None if None in indices else 0
    return [1 if i in indices else absent for i in range(n)]


def _flag(column: str, row: Mapping, archive_known: dict[str, set[str]]) -> bool | None:
    """A membership flag: listed → true, not listed but the list is known → false, else null."""
    if column not in archive_known.get(row["archive"], ()):
        return None
    return bool(row[f"meta_{column}"])


def with_metadata(rows: DataFrame, metadata: DataFrame) -> DataFrame:
    """``rows`` (keyed by ``patch_id``, ``archive``) with their ``meta_*`` columns (a join on
    small columns: call it before decoding, never on band bytes)."""
    meta = metadata.select(
        "patch_id", "archive", *[F.col(c).alias(f"meta_{c}") for c in META_COLUMNS]
    )
    return rows.join(meta, ["patch_id", "archive"], "left")


def derived_values(row: Mapping, archive_known: dict[str, set[str]]) -> dict[str, object]:
    """The columns of ``pairs`` derived from a row's ``archive``, ``labels43``, ``s2_path`` and
    ``meta_*`` values: labels of both nomenclatures (v1: 43 → 19 by the official mapping; v2:
    the metadata's 19 labels), multi-hot targets, split (only for a stored S2 patch) and
    membership flags. Plain Python: it runs in the decode task, next to the bands."""
    idx43 = _indices(row["labels43"], INDEX_43)
    if row["archive"] != "v1":
        idx19 = _indices(row["meta_labels19"], INDEX_19)
    elif idx43 is None:
        idx19 = None
    else:
        idx19 = sorted({j for i in idx43 if i is not None and (j := TO_19[i]) is not None})
    return {
        "split": row["meta_split"] if row["s2_path"] is not None else None,
        "is_snow": _flag("is_snow", row, archive_known),
        "is_cloud_or_shadow": _flag("is_cloud_or_shadow", row, archive_known),
        "has_no_19_label": None if idx19 is None else not idx19,
        "labels19": _names(idx19, NAMES_19),
        "multi_hot_43": _multi_hot(idx43, len(NAMES_43)),
        "multi_hot_19": _multi_hot(idx19, len(NAMES_19)),
        "country": row["meta_country"],
        "s2v1_name": row["meta_s2v1_name"],
    }


def stale_derived(
    pairs: DataFrame, metadata: DataFrame, archive_known: dict[str, set[str]]
) -> DataFrame:
    """``patch_id`` and the new derived columns of the rows of ``pairs`` whose derived columns
    differ from what the current lists give (every column is compared, NULLs included)."""
    base = pairs.select("patch_id", "archive", "labels43", "s2_path", *DERIVED)
    out = T.StructType([T.StructField("patch_id", T.StringType(), False), *PAIR_DERIVED])
    arrow_schema = to_arrow_schema(out)

    def stale(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = []
            for row in batch.to_pylist():
                new = derived_values(row, archive_known)
                if any(new[c] != row[c] for c in DERIVED):
                    rows.append({"patch_id": row["patch_id"], **new})
            yield pa.RecordBatch.from_pylist(rows, schema=arrow_schema)

    return with_metadata(base, metadata).mapInArrow(stale, out)


def lake_issues(pairs: DataFrame, metadata: DataFrame) -> DataFrame:
    """Issues that depend on the whole lake (reasons :data:`LAKE_REASONS`): S1 patches whose S2
    partner is not stored, S2 patches without an S1 partner in archives whose S1 patches are in
    the lake, v2 S2 patches absent from the v2 metadata. Rows of ``ISSUE``."""
    p = pairs.select("patch_id", "archive", "s1_patch_id", "s2_path", "s1_path")
    s1_archives = p.where("s1_path IS NOT NULL").select("archive").distinct()
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
    lonely_s2 = (
        p.where(no_s1)
        .join(F.broadcast(s1_archives), "archive", "left_semi")
        .select(
            issue(
                F.col("patch_id"),
                "s2",
                F.col("s2_path"),
                "missing_s1_partner",
                "no S1 partner in the lake",
            ).alias("i")
        )
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
