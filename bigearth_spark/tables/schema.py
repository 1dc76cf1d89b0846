"""The one definition of the Delta tables: names, Spark schemas, keys, partitioning.

Band columns hold raw little-endian bytes at native resolution; each band field carries its
dtype and shape as column metadata (``{"dtype": "uint16", "shape": [60, 60]}``), taken from
:mod:`bigearth_spark.archive.bands`.
"""

from __future__ import annotations

from pyspark.sql import types as T

from bigearth_spark.archive.bands import REFERENCE_MAP, S1_BANDS, S2_BANDS, Band

DATABASE = "bigearthnet"
S2, S1, REFERENCE_MAPS = "s2_patches", "s1_patches", "reference_maps"
PAIRS, LABELS, NOMENCLATURE = "pairs", "labels", "nomenclature"
QUARANTINE, PATCH_METADATA, OFFICIAL_LISTS = "quarantine", "patch_metadata", "official_lists"
TABLES = (S2, S1, REFERENCE_MAPS, PAIRS, LABELS, NOMENCLATURE, QUARANTINE, PATCH_METADATA,
          OFFICIAL_LISTS)  # fmt: skip
PARTITION_COLUMNS = {PAIRS: ["split"]}
# Tables read file-by-file outside Spark (Petastorm) must not use deletion vectors.
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
PROVENANCE = [
    _f("source_path", STR, False),
    _f("ingest_run", STR, False),
    _f("ingested_at", TS, False),
]

# What a decoder emits per patch kind, before provenance is added (see etl.decode).
DECODED_COMMON = [
    _f("patch_id", STR, False), _f("archive", STR, False), _f("satellite", STR),
    _f("acquired", TS), _f("tile", STR), *GEOMETRY,
]  # fmt: skip
DECODED = {
    "s2": T.StructType([
        *DECODED_COMMON, _f("source_product", STR), _f("labels43", STRS),
        *[band_field(b, True) for b in S2_BANDS],
    ]),
    "s1": T.StructType([
        *DECODED_COMMON, _f("source_product", STR), _f("corresponding_s2_patch", STR),
        _f("labels43", STRS), *[band_field(b, True) for b in S1_BANDS],
    ]),
    "reference_map": T.StructType([*DECODED_COMMON, band_field(REFERENCE_MAP, True)]),
}  # fmt: skip
BRONZE = {group: T.StructType([*fields.fields, *PROVENANCE]) for group, fields in DECODED.items()}
KIND_TABLE = {"s2": S2, "s1": S1, "reference_map": REFERENCE_MAPS}

QUARANTINE_SCHEMA = T.StructType([
    _f("patch_id", STR), _f("kind", STR), _f("path", STR, False), _f("reason", STR, False),
    _f("message", STR), _f("ingest_run", STR, False), _f("first_seen", TS, False),
])  # fmt: skip

PATCH_METADATA_SCHEMA = T.StructType([
    _f("patch_id", STR, False), _f("archive", STR, False), _f("split", STR), _f("is_snow", BOOL),
    _f("is_cloud_or_shadow", BOOL), _f("in_no19_list", BOOL), _f("s1_patch_id", STR),
    _f("labels19", STRS), _f("country", STR), _f("s2v1_name", STR),
])  # fmt: skip

OFFICIAL_LISTS_SCHEMA = T.StructType([
    _f("archive", STR, False), _f("membership", STR, False), _f("source", STR),
])  # fmt: skip

MULTI_HOT = T.ArrayType(T.ByteType(), True)
PAIRS_SCHEMA = T.StructType([
    _f("patch_id", STR, False), _f("s1_patch_id", STR), _f("archive", STR, False),
    _f("split", STR), _f("is_snow", BOOL), _f("is_cloud_or_shadow", BOOL),
    _f("has_no_19_label", BOOL), _f("labels43", STRS), _f("labels19", STRS),
    _f("multi_hot_43", MULTI_HOT), _f("multi_hot_19", MULTI_HOT), _f("country", STR),
    _f("tile", STR), _f("acquired", TS), _f("s1_acquired", TS), *GEOMETRY, _f("s2v1_name", STR),
    *[band_field(b, True) for b in (*S2_BANDS, *S1_BANDS)],
    _f("row_hash", T.LongType(), False), _f("updated_at", TS, False),
])  # fmt: skip

LABELS_SCHEMA = T.StructType([
    _f("patch_id", STR, False), _f("archive", STR, False), _f("split", STR),
    _f("nomenclature", STR, False), _f("label_index", INT, False), _f("label", STR, False),
])  # fmt: skip

NOMENCLATURE_SCHEMA = T.StructType([
    _f("nomenclature", STR, False), _f("label_index", INT, False), _f("label", STR, False),
    _f("clc_codes", T.ArrayType(INT, False)), _f("level1", STR), _f("level2", STR),
    _f("target19_index", INT), _f("target19_label", STR),
])  # fmt: skip
