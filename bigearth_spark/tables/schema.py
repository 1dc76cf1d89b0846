"""The one definition of the Delta tables: names, Spark schemas, keys, partitioning.

Band columns hold raw little-endian bytes at native resolution; each band field carries its
dtype and shape as column metadata (``{"dtype": "uint16", "shape": [60, 60]}``), taken from
:mod:`bigearth_spark.archive.bands`.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigearth_spark.archive.bands import REFERENCE_MAP, S1_BANDS, S2_BANDS, Band

DATABASE = "bigearthnet"
PAIRS, LABELS, NOMENCLATURE = "pairs", "labels", "nomenclature"
QUARANTINE, PATCH_METADATA, OFFICIAL_LISTS = "quarantine", "patch_metadata", "official_lists"
INGEST_LEASE, METRICS = "ingest_lease", "metrics"
TABLES = (PAIRS, LABELS, NOMENCLATURE, QUARANTINE, PATCH_METADATA, OFFICIAL_LISTS)
# registered in the catalog when they exist: the ingest's tables, the lease and the evaluations
CATALOG_TABLES = (*TABLES, INGEST_LEASE, METRICS)
PARTITION_COLUMNS = {PAIRS: ["split"]}
# Tables read file-by-file outside Spark (the training reader) must not use deletion vectors.
TABLE_PROPERTIES = {PAIRS: {"delta.enableDeletionVectors": "false"}}


def band_field(b: Band, nullable: bool = False) -> T.StructField:
    """A binary column for one band, with dtype and shape as column metadata."""
    meta = {"dtype": b.dtype, "shape": list(b.shape), "resolution_m": b.resolution_m}
    return T.StructField(b.name, T.BinaryType(), nullable, metadata=meta)


def _f(name: str, dtype: T.DataType, nullable: bool = True) -> T.StructField:
    return T.StructField(name, dtype, nullable)


STR, INT, DBL, TS, BOOL = (
    T.StringType(),
    T.IntegerType(),
    T.DoubleType(),
    T.TimestampType(),
    T.BooleanType(),
)
STRS = T.ArrayType(T.StringType(), True)

GEOMETRY = [_f("epsg", INT), _f("ulx", DBL), _f("uly", DBL), _f("lrx", DBL), _f("lry", DBL)]
# One quarantine item: what was rejected (``kind``: s2, s1, reference_map, file), where, why.
ISSUE = T.StructType(
    [_f("patch_id", STR), _f("kind", STR), _f("path", STR), _f("reason", STR), _f("message", STR)]
)
ISSUES = T.ArrayType(ISSUE, True)


def issue(
    patch_id: Column, side: str, path: Column, reason: str | Column, message: Column | str
) -> Column:
    """A struct of :data:`ISSUE`: ``side`` is s2, s1, reference_map or file."""
    text = F.lit(message) if isinstance(message, str) else message
    return F.struct(
        patch_id.alias("patch_id"),
        F.lit(side).alias("kind"),
        path.alias("path"),
        F.lit(reason).alias("reason"),
        text.alias("message"),
    )


# Where a quarantine row comes from: ``input`` (discovery: stray files at a root, duplicate ids),
# ``unit`` (a patch folder that could not be stored), ``pair`` (a problem recorded with a stored
# pair, e.g. a stray file in its folder or a partner that failed) and ``lake`` (lake-wide checks:
# a missing partner or metadata). ``pair`` and ``lake`` rows are recomputed from the lake on
# every run; ``input`` and ``unit`` rows stay until their patch is stored.
ORIGINS = ("input", "unit", "pair", "lake")
QUARANTINE_SCHEMA = T.StructType(
    [
        _f("patch_id", STR),
        _f("kind", STR),
        _f("path", STR, False),
        _f("reason", STR, False),
        _f("message", STR),
        _f("origin", STR, False),
        _f("ingest_run", STR, False),
        _f("first_seen", TS, False),
    ]
)

PATCH_METADATA_SCHEMA = T.StructType(
    [
        _f("patch_id", STR, False),
        _f("archive", STR, False),
        _f("split", STR),
        _f("is_snow", BOOL),
        _f("is_cloud_or_shadow", BOOL),
        _f("in_no19_list", BOOL),
        _f("s1_patch_id", STR),
        _f("labels19", STRS),
        _f("country", STR),
        _f("s2v1_name", STR),
    ]
)

OFFICIAL_LISTS_SCHEMA = T.StructType(
    [
        _f("archive", STR, False),
        _f("membership", STR, False),
        _f("source", STR),
    ]
)

MULTI_HOT = T.ArrayType(T.ByteType(), True)
# Read from the patch folders (one decode task reads the S2, S1 and reference-map folders of a
# pair): the pair key, the patch metadata and the source folder of each stored side.
PAIR_SOURCE = [
    _f("patch_id", STR, False),
    _f("archive", STR, False),
    _f("s1_patch_id", STR),
    _f("tile", STR),
    _f("acquired", TS),
    _f("s1_acquired", TS),
    *GEOMETRY,
    _f("source_product", STR),
    _f("s1_source_product", STR),
    _f("labels43", STRS),
    _f("s2_path", STR),
    _f("s1_path", STR),
    _f("reference_map_path", STR),
]
# Derived from the official lists (patch_metadata, official_lists) and labels43; refreshed in
# place when the lists change.
PAIR_DERIVED = [
    _f("split", STR),
    _f("is_snow", BOOL),
    _f("is_cloud_or_shadow", BOOL),
    _f("has_no_19_label", BOOL),
    _f("labels19", STRS),
    _f("multi_hot_43", MULTI_HOT),
    _f("multi_hot_19", MULTI_HOT),
    _f("country", STR),
    _f("s2v1_name", STR),
]
S2_BAND_FIELDS = [band_field(b, True) for b in S2_BANDS]
S1_BAND_FIELDS = [band_field(b, True) for b in S1_BANDS]
REFERENCE_MAP_FIELD = band_field(REFERENCE_MAP, True)
# ``pairs`` is the one table holding band bytes: one row per S2 patch id (the pair key), each
# side's bands stored once at native resolution. A side that is not in the lake is NULL; a row
# whose S2 patch is not stored (an S1 patch whose S2 partner is missing or broken) has no split.
PAIRS_SCHEMA = T.StructType(
    [
        *PAIR_SOURCE,
        *PAIR_DERIVED,
        _f("issues", ISSUES),
        _f("ingest_run", STR, False),
        _f("updated_at", TS, False),
        *S2_BAND_FIELDS,
        *S1_BAND_FIELDS,
        REFERENCE_MAP_FIELD,
    ]
)
SIDES = {"s2": S2_BAND_FIELDS, "s1": S1_BAND_FIELDS, "reference_map": [REFERENCE_MAP_FIELD]}
SIDE_PATH = {"s2": "s2_path", "s1": "s1_path", "reference_map": "reference_map_path"}
# a unit's column of a side's file names where discovery listed them (object stores: see
# bigearth_spark.key_ranges), NULL where the decoder lists the folder itself (local paths)
SIDE_FILES = {side: f"{side}_files" for side in SIDE_PATH}
S1_JSON = "s1_json"  # a unit's v1 S1 JSON content where discovery read it (object stores)

LABELS_SCHEMA = T.StructType(
    [
        _f("patch_id", STR, False),
        _f("archive", STR, False),
        _f("split", STR),
        _f("nomenclature", STR, False),
        _f("label_index", INT, False),
        _f("label", STR, False),
    ]
)

NOMENCLATURE_SCHEMA = T.StructType(
    [
        _f("nomenclature", STR, False),
        _f("label_index", INT, False),
        _f("label", STR, False),
        _f("clc_codes", T.ArrayType(INT, False)),
        _f("level1", STR),
        _f("level2", STR),
        _f("target19_index", INT),
        _f("target19_label", STR),
    ]
)

INGEST_LEASE_SCHEMA = T.StructType(
    [
        _f("lease", STR, False),
        _f("run_id", STR, False),
        _f("host", STR),
        _f("pid", INT),
        _f("acquired_at", TS, False),
        _f("expires_at", TS, False),
    ]
)

METRICS_SCHEMA = T.StructType(
    [
        _f("run_id", STR, False),
        _f("model", STR, False),
        _f("modality", STR, False),
        _f("table_version", T.LongType(), False),
        _f("split", STR, False),
        _f("metric", STR, False),
        _f("class", STR),
        _f("value", DBL),
        _f("evaluated_at", TS, False),
    ]
)
