"""Discovery: archive roots → pair units, listed on the executors, without reading a band.

A *unit* is everything the lake stores in one ``pairs`` row: an S2 patch folder, its S1
partner's folder and (v2) its reference-map folder, keyed by the S2 patch id. The driver lists
only the top of each root; executors expand v2 tile folders and read each v1 S1 JSON (a few
hundred bytes) for its ``corresponding_s2_patch``; v2 S1 folders get their key from the v2
metadata (``patch_metadata.s1_patch_id``). Units are formed by a group-by on paths only, so no
band byte is ever shuffled. A second folder with the same patch id in the input is a
``duplicate_patch_id`` quarantine item (the folder whose path sorts first is the one read).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigearth_spark import storage
from bigearth_spark.archive import layout
from bigearth_spark.archive.reader import READ_ERROR
from bigearth_spark.retry import retried
from bigearth_spark.tables.schema import issue

# folder type (archive.reader.read_patch) → the side of a pair it fills
SIDE_OF_FOLDER_TYPE = {
    "v1_s2": "s2",
    "v2_s2": "s2",
    "v1_s1": "s1",
    "v2_s1": "s1",
    "v2_reference_map": "reference_map",
}
STRAY_FILE, DUPLICATE = "stray_file", "duplicate_patch_id"
UNLISTED = "unlisted_folder"  # folder type of a v2 tile folder whose listing failed
DUPLICATE_PARTNER, MISSING_METADATA = "duplicate_partner", "missing_metadata"
ENTRY_SCHEMA = T.StructType(
    [
        T.StructField("folder_type", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("nested", T.BooleanType(), False),
    ]
)
FOLDER_SCHEMA = T.StructType(
    [
        T.StructField("folder_type", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("folder_id", T.StringType(), False),  # the folder's name: its patch id
        T.StructField("key", T.StringType()),  # the pair key (S2 id) where known on executors
        T.StructField("error", T.StringType()),  # why an UNLISTED folder could not be listed
    ]
)
SIDES = ("s2", "s1", "reference_map")


def v1_s1_partner(folder: str) -> str | None:
    """``corresponding_s2_patch`` of a v1 S1 folder's JSON, or None when it cannot be read (the
    decoder then reports why: a defect of the JSON, or a read error that the decoder checks
    against the partner it reads, see :func:`bigearth_spark.etl.decode.decode_unit`)."""
    name = storage.basename(folder)
    try:
        json_path = storage.join(folder, f"{name}_labels_metadata.json")
        partner = json.loads(retried(lambda: storage.read_bytes(json_path)))
        partner = partner.get("corresponding_s2_patch")
    except (OSError, ValueError, AttributeError):
        return None
    return partner if isinstance(partner, str) else None


def _key(folder_type: str, path: str, name: str) -> str | None:
    if folder_type == "v1_s1":
        return v1_s1_partner(path) or name  # unreadable JSON: a unit of its own, quarantined
    if folder_type == "v2_s1" or folder_type == STRAY_FILE:
        return None  # v2: the metadata pairs it (driver-side join); strays are not patches
    return name


def _expand_entry(entry: layout.Entry) -> list[tuple]:
    """Rows of :data:`FOLDER_SCHEMA` for one top entry; a folder whose listing keeps failing
    with an I/O error is one :data:`UNLISTED` row (listed again by the next run)."""
    try:
        found = retried(lambda: layout.expand(entry))
    except OSError as e:
        name = storage.basename(entry.path)
        return [(UNLISTED, entry.path, name, None, f"listing failed: {type(e).__name__}: {e}")]
    rows = []
    for e in found:
        name = storage.basename(e.path)
        rows.append((e.folder_type, e.path, name, _key(e.folder_type, e.path, name), None))
    return rows


def _expand(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Executors: top entries → patch folders (and stray files) with their pair keys."""
    for frame in frames:
        rows = []
        for folder_type, path, nested in frame.itertuples(index=False):
            rows += _expand_entry(layout.Entry(folder_type, path, nested))
        yield pd.DataFrame(rows, columns=FOLDER_SCHEMA.fieldNames())


def folders(spark: SparkSession, roots: list[layout.ArchiveRoot]) -> DataFrame:
    """Every patch folder and stray file below ``roots`` (listed on the executors).

    The driver's list of top entries is the tasks' input as it stands (Spark slices it into
    one task per core: no shuffle), in the order of a hash of each path, so that every task
    gets its share of each root (v1 S1 folders, whose JSON is read, and S2 folders, which are
    not) whatever order the roots come in."""
    top = sorted(
        (e for root in roots for e in layout.top_entries(root)),
        key=lambda e: (zlib.crc32(e.path.encode()), e.path),
    )
    frame = pd.DataFrame(
        {
            "folder_type": [e.folder_type for e in top],
            "path": [e.path for e in top],
            "nested": [e.nested for e in top],
        }
    )
    entries = spark.createDataFrame(frame, schema=ENTRY_SCHEMA)
    return entries.mapInPandas(_expand, FOLDER_SCHEMA)


def _issue(side: str, reason: str, message: Column | str, patch_id: Column) -> Column:
    return issue(patch_id, side, F.col("path"), reason, message)


def list_input(spark: SparkSession, roots: list[layout.ArchiveRoot]) -> tuple[DataFrame, int]:
    """(every patch folder and stray file below ``roots``, cached; how many): the input of
    :func:`discover`."""
    found = folders(spark, roots).cache()
    return found, found.count()


def discover(found: DataFrame, metadata: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(units, input issues) of the folders ``found`` by :func:`list_input`.

    ``units``: ``patch_id`` (pair key), ``archive``, ``s2_path``, ``s1_patch_id``, ``s1_path``,
    ``reference_map_path`` (NULL where the input has no such side). ``input issues``: rows of
    :data:`bigearth_spark.tables.schema.ISSUE` for stray files at the roots, duplicate folders
    and v2 S1 folders that no metadata row pairs. Both are small (paths, no bands); the caller
    caches them.
    """
    side = F.element_at(
        F.create_map(*[F.lit(x) for kv in SIDE_OF_FOLDER_TYPE.items() for x in kv]),
        F.col("folder_type"),
    )
    v2_s1_keys = metadata.where(F.col("s1_patch_id").isNotNull()).select(
        F.col("s1_patch_id").alias("folder_id"), F.col("patch_id").alias("_meta_key")
    )
    is_v2_s1 = F.col("folder_type") == "v2_s1"
    patches = (
        found.where(~F.col("folder_type").isin(STRAY_FILE, UNLISTED))
        .join(v2_s1_keys, "folder_id", "left")
        .withColumn("key", F.coalesce("key", F.when(is_v2_s1, F.col("_meta_key"))))
        .withColumn("side", side)
        .withColumn("archive", F.substring_index("folder_type", "_", 1))
    )
    strays = found.where(F.col("folder_type") == STRAY_FILE).select(
        _issue(
            "file", STRAY_FILE, "a file where patch folders belong", F.lit(None).cast("string")
        ).alias("issue")
    )
    unlisted = found.where(F.col("folder_type") == UNLISTED).select(
        _issue("folder", READ_ERROR, F.col("error"), F.col("folder_id")).alias("issue")
    )
    unpaired = patches.where(F.col("key").isNull()).select(
        _issue(
            "s1",
            MISSING_METADATA,
            "v2 S1 patch that no metadata row pairs with an S2 patch",
            F.col("folder_id"),
        ).alias("issue")
    )

    def members(name: str) -> Column:
        item = F.struct(F.col("folder_id"), F.col("path"))
        return F.array_sort(F.collect_list(F.when(F.col("side") == name, item))).alias(name)

    grouped = (
        patches.where(F.col("key").isNotNull())
        .groupBy(F.col("key").alias("patch_id"))
        .agg(F.min("archive").alias("archive"), *[members(s) for s in SIDES])
        .cache()
    )
    units = grouped.select(
        "patch_id",
        "archive",
        F.get("s2", 0)["path"].alias("s2_path"),
        F.get("s1", 0)["folder_id"].alias("s1_patch_id"),
        F.get("s1", 0)["path"].alias("s1_path"),
        F.get("reference_map", 0)["path"].alias("reference_map_path"),
    )
    issues = strays.unionByName(unlisted).unionByName(unpaired)
    for name in SIDES:
        extra = grouped.select(
            F.get(name, 0)["folder_id"].alias("_first"),
            F.explode(F.slice(name, 2, 1 << 30)).alias("x"),
        ).select("_first", "x.folder_id", "x.path")
        issues = issues.unionByName(extra.select(_extra_issue(name).alias("issue")))
    # one partition: a union of five small parts would carry all their partitions (~40) into
    # every later step that reads the issues (the quarantine's state, each run)
    return units, issues.select("issue.*").coalesce(1)


def _extra_issue(side: str) -> Column:
    """The issue of a folder beyond the first one of its side in a unit."""
    duplicate = _issue(
        side, DUPLICATE, "patch id also read from another folder of this input", F.col("folder_id")
    )
    if side != "s1":
        return duplicate
    other = _issue(
        "s1",
        DUPLICATE_PARTNER,
        F.concat(F.lit("its S2 patch already pairs with S1 patch "), F.col("_first")),
        F.col("folder_id"),
    )
    return F.when(F.col("folder_id") == F.col("_first"), duplicate).otherwise(other)
