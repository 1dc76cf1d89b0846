"""Discovery: archive roots → pair units, listed on the executors, without reading a band.

A *unit* is everything the lake stores in one ``pairs`` row: an S2 patch folder, its S1
partner's folder and (v2) its reference-map folder, keyed by the S2 patch id. The driver lists
only the top of each root; executors expand v2 tile folders and read each v1 S1 JSON (a few
hundred bytes) for its ``corresponding_s2_patch``; v2 S1 folders get their key from the v2
metadata (``patch_metadata.s1_patch_id``). On object stores the executors list ranges of
folders flat (:mod:`bigearth_spark.key_ranges`: one request per ~1,000 keys instead of one per
folder), several ranges and the JSONs' reads in flight at once, and every unit carries its
folders' file names (``<side>_files``) so that the decoder lists nothing. Units are formed by a
group-by on paths only, so no band byte is ever shuffled. A second folder with the same patch id
in the input is a ``duplicate_patch_id`` quarantine item (the folder whose path sorts first is
the one read).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigearth_spark import fetch, key_ranges, storage
from bigearth_spark.archive import layout, tarball
from bigearth_spark.archive.reader import READ_ERROR
from bigearth_spark.etl.decode import requests_in_flight
from bigearth_spark.retry import retried
from bigearth_spark.tables.schema import S1_JSON, SIDE_FILES, STRS, issue

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
TARBALL_FAULTS = (tarball.TRUNCATED, tarball.CORRUPT)  # folder types of a tarball's fault
ENTRY_SCHEMA = T.StructType(
    [
        T.StructField("folder_type", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("nested", T.BooleanType(), False),
        # names of consecutive folders below ``path`` listed together (object stores: see
        # bigearth_spark.key_ranges); NULL: ``path`` is the entry
        T.StructField("range", STRS),
    ]
)
FOLDER_SCHEMA = T.StructType(
    [
        T.StructField("folder_type", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("folder_id", T.StringType(), False),  # the folder's name: its patch id
        T.StructField("key", T.StringType()),  # the pair key (S2 id) where known on executors
        T.StructField("error", T.StringType()),  # why an UNLISTED folder could not be listed
        T.StructField("files", STRS),  # the folder's entries where listed here (object stores)
        # the v1 S1 JSON's content where read here from an object store: not read again
        T.StructField("json", T.BinaryType()),
    ]
)
SIDES = ("s2", "s1", "reference_map")


def v1_s1_partner(folder: str) -> str | None:
    """``corresponding_s2_patch`` of a v1 S1 folder's JSON, or None when it cannot be read (the
    decoder then reports why: a defect of the JSON, or a read error that the decoder checks
    against the partner it reads, see :func:`bigearth_spark.etl.decode.decode_unit`)."""
    try:
        return partner_in(retried(lambda: storage.read_bytes(_json_of(folder))))
    except OSError:
        return None


def _json_of(folder: str) -> str:
    return storage.join(folder, f"{storage.basename(folder)}_labels_metadata.json")


def partner_in(data: bytes) -> str | None:
    """``corresponding_s2_patch`` of a v1 S1 JSON's content, or None when it has none."""
    try:
        partner = json.loads(data).get("corresponding_s2_patch")
    except (ValueError, AttributeError):
        return None
    return partner if isinstance(partner, str) else None


def _key(folder_type: str, name: str, partner: Callable[[], str | None]) -> str | None:
    """The pair key of a folder named ``name``: a v1 S1 folder's is its JSON's ``partner()``."""
    if folder_type == "v1_s1":
        return partner() or name  # unreadable JSON: a unit of its own, quarantined
    if folder_type == "v2_s1" or folder_type == STRAY_FILE:
        return None  # v2: the metadata pairs it (driver-side join); strays are not patches
    return name


def _expand_entry(entry: layout.Entry) -> list[tuple]:
    """Rows of :data:`FOLDER_SCHEMA` for one top entry; a folder whose listing keeps failing
    with an I/O error is one :data:`UNLISTED` row (listed again by the next run)."""
    if entry.folder_type in TARBALL_FAULTS:
        message = tarball.cut_message(entry.path)
        return [
            (entry.folder_type, entry.path, storage.basename(entry.path), None, message, None, None)
        ]
    try:
        found = retried(lambda: layout.expand(entry))
    except OSError as e:
        return _unlisted(entry.path, e)
    rows = []
    for e in found:
        name = storage.basename(e.path)
        key = _key(e.folder_type, name, lambda p=e.path: v1_s1_partner(p))
        rows.append((e.folder_type, e.path, name, key, None, None, None))
    return rows


def _unlisted(path: str, error: OSError) -> list[tuple]:
    """The :data:`UNLISTED` row of a folder whose listing kept failing."""
    message = f"listing failed: {type(error).__name__}: {error}"
    return [(UNLISTED, path, storage.basename(path), None, message, None, None)]


def _list_range(parent: str, names: list[str], nested: bool) -> key_ranges.Listing | OSError:
    try:
        return retried(lambda: key_ranges.list_folders(parent, names, 2 if nested else 1))
    except OSError as e:
        return e


def _range_rows(
    folder_type: str, parent: str, names: list[str], listed: key_ranges.Listing | OSError, n: int
) -> list[tuple]:
    """Rows of :data:`FOLDER_SCHEMA` for a range of folders listed flat; the v1 S1 JSONs are
    read ``n`` at a time (an unreadable one keys its folder by its own id, as in
    :func:`_key`)."""
    if isinstance(listed, OSError):
        return [row for name in names for row in _unlisted(storage.join(parent, name), listed)]
    rows = [
        (STRAY_FILE, storage.join(parent, rel), storage.basename(rel), None, None, None, None)
        for rel in listed.stray_files
    ]
    folders = {storage.join(parent, rel): entries for rel, entries in listed.folders.items()}
    jsons: dict[str, Future[bytes]] = {}
    if folder_type == "v1_s1":
        listed_json = {p: _json_of(p) for p, entries in folders.items()}
        listed_json = {p: j for p, j in listed_json.items() if storage.basename(j) in folders[p]}
        reads = fetch.fetch(listed_json.values(), n)
        jsons = {p: reads[j] for p, j in listed_json.items()}
    for path, entries in sorted(folders.items()):
        name = storage.basename(path)
        json_bytes = _content(jsons.get(path))
        key = _key(folder_type, name, lambda j=json_bytes: j and partner_in(j))
        rows.append((folder_type, path, name, key, None, sorted(entries), json_bytes))
    return rows


def _content(read: Future[bytes] | None) -> bytes | None:
    """The content of a read under way (None: not read, or unreadable)."""
    if read is None or read.exception() is not None:
        return None
    return read.result()


def _expand(in_flight: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Executors: top entries → patch folders (and stray files) with their pair keys; ranges of
    folders listed ``in_flight`` at a time."""

    def expand(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        tarball.revalidate()
        for frame in frames:
            rows = []
            ranged = frame[frame["range"].notna()]
            listings = [
                fetch.pool(in_flight).submit(_list_range, path, list(names), nested)
                for _, path, nested, names in ranged.itertuples(index=False)
            ]
            for (folder_type, path, _, names), listing in zip(
                ranged.itertuples(index=False), listings, strict=True
            ):
                rows += _range_rows(folder_type, path, list(names), listing.result(), in_flight)
            for folder_type, path, nested, _ in frame[frame["range"].isna()].itertuples(
                index=False
            ):
                rows += _expand_entry(layout.Entry(folder_type, path, nested))
            yield pd.DataFrame(rows, columns=FOLDER_SCHEMA.fieldNames())

    return expand


def _top_rows(root: layout.ArchiveRoot) -> list[tuple]:
    """Rows of :data:`ENTRY_SCHEMA` for a root: its top entries, or on an object store, ranges
    of its folders (one tile folder each when nested) and its stray files."""
    entries = layout.top_entries(root)
    if storage.is_local(root.path) or tarball.split(root.path):  # a tarball's index lists
        return [(e.folder_type, e.path, e.nested, None) for e in entries]
    rows, grouped = [], {}
    for e in entries:
        if e.folder_type == STRAY_FILE:
            rows.append((e.folder_type, e.path, e.nested, None))
        else:
            parent, name = e.path.rsplit("/", 1)
            grouped.setdefault((e.folder_type, parent, e.nested), []).append(name)
    for (folder_type, parent, nested), names in grouped.items():
        size = 1 if nested else key_ranges.RANGE_FOLDERS
        rows += [(folder_type, parent, nested, r) for r in key_ranges.ranges(names, size)]
    return rows


def folders(spark: SparkSession, roots: list[layout.ArchiveRoot]) -> DataFrame:
    """Every patch folder and stray file below ``roots`` (listed on the executors).

    The driver's list of top entries (or ranges) is the tasks' input as it stands (Spark slices
    it into one task per core: no shuffle), ordered by each entry's rank in its root's name
    order as a fraction of the root's size (:func:`interleaved`), so that every task gets its
    share of each root (v1 S1 folders, whose JSON is read, and S2 folders, which are not)
    whatever order the roots come in, and a consecutive run of each root's names."""
    top = interleaved([_top_rows(root) for root in roots])
    frame = pd.DataFrame(top, columns=ENTRY_SCHEMA.fieldNames())
    entries = spark.createDataFrame(frame, schema=ENTRY_SCHEMA)
    return entries.mapInPandas(_expand(requests_in_flight(spark)), FOLDER_SCHEMA)


def interleaved(groups: list[list[tuple]]) -> list[tuple]:
    """The entry rows of all ``groups`` (one per root), each group in name order, merged by
    each row's rank in its group as a fraction of the group's size: any consecutive slice of
    the result holds the same share of every group, and of each group a run of adjacent names.
    A tarball's member table is read a row group of adjacent names at a time: in the order of
    a hash of the paths, each JSON read of the 20,000-pair S1 tarball read a row group of its
    own (16.7 s against 0.5 s in name order)."""
    ranked = []
    for rows in groups:
        ordered = sorted(rows, key=_first)
        ranked += [(i / len(ordered), _first(row), row) for i, row in enumerate(ordered)]
    return [row for _, _, row in sorted(ranked, key=lambda r: r[:2])]


def _first(row: tuple) -> str:
    """The path of an entry row's (first) folder."""
    _, path, _, names = row
    return path if names is None else f"{path}/{names[0]}"


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
        found.where(~F.col("folder_type").isin(STRAY_FILE, UNLISTED, *TARBALL_FAULTS))
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
    faults = found.where(F.col("folder_type").isin(*TARBALL_FAULTS)).select(
        issue(
            F.lit(None).cast("string"), "file", F.col("path"), F.col("folder_type"), F.col("error")
        ).alias("issue")
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
        item = F.struct(F.col("folder_id"), F.col("path"), F.col("files"), F.col("json"))
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
        *[F.get(side, 0)["files"].alias(SIDE_FILES[side]) for side in SIDES],
        F.get("s1", 0)["json"].alias(S1_JSON),
    )
    issues = strays.unionByName(unlisted).unionByName(faults).unionByName(unpaired)
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
