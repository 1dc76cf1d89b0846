"""The ingest: archive roots → ``pairs`` (the one band table) and its derived tables.

A run holds the lake's lease (:mod:`bigearth_spark.tables.lease`), so one ingest writes a lake
at a time and concurrent jobs queue instead of racing (on S3 only with the multi-writer LogStore,
:mod:`bigearth_spark.tables.log_store`; without it a run must promise to be the only writer).
Its commits are ordered so that a kill between any two is repaired by the next run:

1. ``nomenclature`` and, beside it, the official lists → ``patch_metadata`` and
   ``official_lists``;
2. discovery on the executors → pair units (paths only) and input issues (the listing starts
   first and runs while the driver does step 1);
3. plan: units anti-joined with the lake on patch ids (never paths: the same archive at another
   mount is a no-op), and with the folders quarantined for a permanent reason;
4. decode + write: a decode task decodes the units of new pairs, computes their derived
   columns and writes the rows into data files of ``pairs`` itself (pyarrow, no shuffle, no
   cache of band bytes, no hop through the JVM); the driver commits all the files as one Delta
   append. Units that complete a stored pair (its S1 arriving later) are MERGEd;
5. derived state, recomputed from the committed lake every run: derived columns of ``pairs``
   whose lists changed, then ``quarantine`` (current state of the lake) and, beside it,
   ``labels`` (stamped with the ``pairs`` version it was built from);
6. register ``<db>.<table>`` and the views.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import TypeVar

import pyarrow as pa
from delta.tables import DeltaTable
from pyspark import TaskContext
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigearth_spark.archive import layout
from bigearth_spark.archive.bands import ALL_BANDS, band
from bigearth_spark.archive.labels import CLASSES_19, CLASSES_43
from bigearth_spark.archive.lists import read_lists
from bigearth_spark.config import normalize_lake
from bigearth_spark.etl import decode, discover, pairs, plan, quarantine
from bigearth_spark.etl.plan import NEED, SIDES
from bigearth_spark.etl.steps import Background, step
from bigearth_spark.tables import catalog, delta_log, part_files, schema, write
from bigearth_spark.tables.lease import IngestLease
from bigearth_spark.tables.log_store import check_concurrent_writes

log = logging.getLogger(__name__)
T_ = TypeVar("T_")
# where a side's columns come from in a MERGE that completes a stored pair
S2_COLUMNS = ("tile", "acquired", "source_product", "epsg", "ulx", "uly", "lrx", "lry")
S1_COLUMNS = ("s1_patch_id", "s1_acquired", "s1_source_product")
# columns a decode task adds to a row of a stored pair before the MERGE
UPDATE_FIELDS = [
    *schema.PAIR_DERIVED,
    T.StructField("_new_s2_path", T.StringType()),
    T.StructField("ingest_run", T.StringType()),
    T.StructField("updated_at", T.TimestampType()),
]
# the columns of pairs that are not band bytes: Parquet dictionaries and statistics
SMALL_COLUMNS = [f.name for f in schema.PAIRS_SCHEMA if f.name not in ALL_BANDS]
# float32 bands (S1 backscatter): zstd level 3 stores them no smaller than level 1 (measured
# 0.860 and 0.845 of the raw bytes for VV and VH at both levels) at twice the cost
FAST_COLUMNS = frozenset(n for n in ALL_BANDS if band(n).dtype == "float32")


@dataclass
class IngestReport:
    """What one ingest run did."""

    run_id: str
    roots: list[str]
    entries: int = 0  # folders and files found in the input
    decoded_ok: int = 0  # pair units of the input whose sides are all in the lake after the run
    inserted: dict[str, int] = field(default_factory=dict)  # rows written per table
    quarantined: dict[str, int] = field(default_factory=dict)  # new quarantine rows by reason
    table_versions: dict[str, int] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """False only when nothing at all could be read."""
        return self.decoded_ok > 0


def _list_folders(
    inputs: list[str], roots: list[layout.ArchiveRoot], extra: list[str]
) -> list[str]:
    folders = [*extra]
    for p in [*inputs, *(r.path for r in roots)]:
        folders += [p, f"{p.rstrip('/')}/lists"]
    return folders


def _nomenclature_rows() -> list[tuple]:
    rows = [
        (
            "43",
            c.index,
            c.name,
            [c.clc_code],
            c.level1,
            c.level2,
            c.target19,
            CLASSES_19[c.target19].name if c.target19 is not None else None,
        )
        for c in CLASSES_43
    ]
    rows += [
        ("19", c.index, c.name, list(c.clc_codes), None, None, c.index, c.name) for c in CLASSES_19
    ]
    return rows


def _content_hash(columns: list[str]) -> Column:
    """A hash of ``columns`` that tells NULLs apart from values and columns from each other."""
    return F.xxhash64(F.to_json(F.struct(*columns), {"ignoreNullFields": "false"}))


def _finisher(
    archive_known: dict[str, set[str]], run_id: str, now: datetime, update: bool
) -> decode.Finish:
    """Completes a decoded row in its task: derived columns (for a stored pair that gets a side
    now, as the pair will be after the MERGE) and the run's stamp."""

    def finish(row: dict, unit: dict) -> None:
        meta = {c: unit[c] for c in pairs.META}
        if update:
            row["_new_s2_path"] = row.get("s2_path")
            row["s2_path"] = row.get("s2_path") or unit["_stored_s2_path"]
            if "s2" not in row["stored_sides"] and unit["_stored_labels43"] is not None:
                row["labels43"] = unit["_stored_labels43"]
        view = {"labels43": None, "s2_path": None, **row, **meta}
        row.update(pairs.derived_values(view, archive_known))
        row.update(ingest_run=run_id, updated_at=now)

    return finish


class Ingest:
    """One ingest run over ``inputs`` into the lake at ``lake``."""

    def __init__(
        self,
        spark: SparkSession,
        lake: str,
        db: str = schema.DATABASE,
        lock_wait_s: float = 3600.0,
        lease_ttl_s: float = 300.0,
        single_writer: bool = False,
    ) -> None:
        self.spark, self.lake, self.db = spark, normalize_lake(lake), db
        check_concurrent_writes(self.lake, lambda k: spark.conf.get(k, None), single_writer)
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
        self.lease = IngestLease(spark, self.lake, self.run_id, lease_ttl_s, lock_wait_s)
        self._known: dict[str, set[str]] = {}  # the official lists known to the lake, per archive
        self._metadata: DataFrame  # patch_metadata after the lists step, cached for the run
        self._background: list[Background] = []  # steps running beside the main thread

    def run(self, inputs: list[str], list_dirs: list[str] | None = None) -> IngestReport:
        """Ingest the archive roots found at ``inputs``; return the report."""
        roots = [r for i in inputs for r in layout.find_roots(i)]
        report = IngestReport(self.run_id, [f"{r.archive_type}:{r.path}" for r in roots])
        log.info("ingest %s: roots %s", self.run_id, report.roots)
        with self.lease:
            try:
                self._steps(inputs, roots, list_dirs or [], report)
            finally:
                for task in self._background:  # nothing commits after the lease is given up
                    task.wait()
        report.table_versions = {
            name: write.table_state(self.spark, self._path(name))[0] for name in schema.TABLES
        }
        return report

    def _start(self, name: str, action: Callable[[], T_]) -> Background[T_]:
        task = Background(self.spark, name, action)
        self._background.append(task)
        return task

    def _steps(
        self,
        inputs: list[str],
        roots: list[layout.ArchiveRoot],
        list_dirs: list[str],
        report: IngestReport,
    ) -> None:
        """The run's steps, in commit order (see the module's docstring)."""
        # the executors list the input while the driver writes the dimensions and lists
        listing = self._start("discovery", lambda: discover.list_input(self.spark, roots))
        with step(self.spark, "tables"):
            self._ensure_tables()
        with step(self.spark, "nomenclature + official lists"):
            nomenclature = self._start("nomenclature", lambda: self._nomenclature(report))
            metadata = self._lists(_list_folders(inputs, roots, list_dirs), report)
            self._known = self._known_lists()
            if metadata is None:
                metadata = self._table(schema.PATCH_METADATA).toDF().cache()
            self._metadata = metadata
            nomenclature.result()
        with step(self.spark, "discovery + plan"):
            found, report.entries = listing.result()
            todo, unit_ids, input_issues = self._plan(found)
        with step(self.spark, "decode + write pairs"):
            self._write_pairs(todo, report)
        with step(self.spark, "derived columns"):
            version, small = self._small_pairs()
            unit_issues = self._failed_units(todo, small)
            if self._refresh_derived(small, report):
                small.unpersist()
                version, small = self._small_pairs()
        with step(self.spark, "quarantine + labels"):
            # two tables, each rebuilt from the same committed pairs: built side by side
            labels = self._start("labels", lambda: self._labels(small, version, report))
            self._quarantine(small, input_issues, unit_issues, report)
            labels.result()
        with step(self.spark, "completeness + catalog"):
            report.decoded_ok = self._complete_units(unit_ids, small)
            for frame in (found, todo, small, unit_issues, input_issues, self._metadata):
                frame.unpersist()
            catalog.register(self.spark, self.lake, self.db)

    def _path(self, name: str) -> str:
        return write.table_path(self.lake, name)

    def _table(self, name: str) -> DeltaTable:
        return DeltaTable.forPath(self.spark, self._path(name))

    def _ensure_tables(self) -> None:
        """Create the lake's missing tables, side by side (each is one Delta commit of its own,
        mostly driver work)."""
        tables = (
            (schema.PAIRS, schema.PAIRS_SCHEMA),
            (schema.LABELS, schema.LABELS_SCHEMA),
            (schema.NOMENCLATURE, schema.NOMENCLATURE_SCHEMA),
            (schema.QUARANTINE, schema.QUARANTINE_SCHEMA),
            (schema.PATCH_METADATA, schema.PATCH_METADATA_SCHEMA),
            (schema.OFFICIAL_LISTS, schema.OFFICIAL_LISTS_SCHEMA),
        )
        created = [
            self._start("tables", partial(write.ensure_table, self.spark, self.lake, name, s))
            for name, s in tables
        ]
        for task in created:
            task.result()

    def _known_lists(self) -> dict[str, set[str]]:
        """The official lists known to the lake, per archive (a few rows, read with pyarrow)."""
        rows = delta_log.read_small(delta_log.snapshot(self._path(schema.OFFICIAL_LISTS)))
        known: dict[str, set[str]] = {}
        for r in rows.to_pylist():
            known.setdefault(r["archive"], set()).add(r["membership"])
        return known

    # -- 1. dimensions and lists --------------------------------------------------------------
    def _nomenclature(self, report: IngestReport) -> None:
        rows = _nomenclature_rows()
        path = self._path(schema.NOMENCLATURE)
        if write.table_state(self.spark, path)[1] == len(rows):
            report.inserted[schema.NOMENCLATURE] = 0
            return
        df = self.spark.createDataFrame(rows, schema.NOMENCLATURE_SCHEMA)
        self.lease.check()
        report.inserted[schema.NOMENCLATURE] = write.insert_new(
            self._table(schema.NOMENCLATURE), path, df, ["nomenclature", "label_index"]
        )

    def _lists(self, folders: list[str], report: IngestReport) -> DataFrame | None:
        """Write the official lists found in ``folders``; return the rows of ``patch_metadata``
        (cached) when they are known without reading the table back: it was empty before."""
        lists = read_lists(folders)
        log.info("official lists: %s; rows %s", lists.sources or "none found", lists.summary())
        report.inserted[schema.PATCH_METADATA] = 0
        if lists.metadata.empty:
            return None
        meta = self.spark.createDataFrame(lists.metadata, schema.PATCH_METADATA_SCHEMA)
        columns = meta.columns
        table, path = self._table(schema.PATCH_METADATA), self._path(schema.PATCH_METADATA)
        was_empty = write.is_empty(path)
        if not was_empty:
            current = table.toDF().select(
                "patch_id", "archive", _content_hash(columns).alias("_hash")
            )
            meta = (
                meta.withColumn("_hash", _content_hash(columns))
                .join(current, ["patch_id", "archive", "_hash"], "left_anti")
                .drop("_hash")
            )
        changed = meta.cache()
        self.lease.check()
        report.inserted[schema.PATCH_METADATA] = write.upsert(
            table, path, changed, ["patch_id", "archive"]
        )
        if not was_empty:
            changed.unpersist()
        known = [(a, m, lists.sources.get(m)) for a, ms in lists.known.items() for m in sorted(ms)]
        known_df = self.spark.createDataFrame(known, schema.OFFICIAL_LISTS_SCHEMA)
        write.replace_where_changed(
            self._table(schema.OFFICIAL_LISTS),
            self._path(schema.OFFICIAL_LISTS),
            known_df,
            ["archive", "membership"],
            F.col("archive").isin(list(lists.known)),
        )
        return changed if was_empty else None

    # -- 2, 3. discovery and plan --------------------------------------------------------------
    def _plan(self, found: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
        """(units to decode with their need flags and metadata, every unit's key and sides,
        input issues) of the folders ``found``; all small and cached."""
        metadata = self._metadata
        units, input_issues = discover.discover(found, metadata)
        units = units.cache()
        input_issues = input_issues.cache()
        if write.is_empty(self._path(schema.PAIRS)) and write.is_empty(
            self._path(schema.QUARANTINE)
        ):
            todo = plan.units_to_decode(units, metadata)  # a new lake: nothing to join with
        else:
            pairs_df = self._table(schema.PAIRS).toDF()
            quarantine_df = self._table(schema.QUARANTINE).toDF()
            todo = plan.units_to_decode(units, metadata, pairs_df, quarantine_df)
        todo = todo.cache()
        n = todo.count()
        # explicit tasks: adaptive execution would coalesce the small shuffles of paths before
        # into too few
        spread = plan.decode_tasks(todo, n, self.spark.sparkContext.defaultParallelism).cache()
        spread.count()
        todo.unpersist()
        tasks = spread.rdd.getNumPartitions()
        log.info("plan: %d units in the input, %d to decode in %d tasks", units.count(), n, tasks)
        return spread, units, input_issues

    # -- 4. decode + write ---------------------------------------------------------------------
    def _finisher(self, update: bool) -> decode.Finish:
        return _finisher(self._known, self.run_id, datetime.now(timezone.utc), update)

    def _write_new_pairs(self, todo: DataFrame) -> list[str]:
        """Decode the units of new pairs and write their rows straight into data files of
        ``pairs`` from the decode tasks; return the files' Delta ``add`` actions."""
        finish = self._finisher(False)
        writer = part_files.PartitionedFileWriter(
            self._path(schema.PAIRS),
            schema.PAIRS_SCHEMA,
            "split",
            dictionary=SMALL_COLUMNS,
            statistics=SMALL_COLUMNS,
            fast=FAST_COLUMNS,
        )

        def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            decoded = (row for rows, _, _ in decode.decoded_rows(batches, finish) for row in rows)
            stored = (row for row in decoded if row["stored_sides"])  # failed: see _failed_units
            for add in writer.write(stored, TaskContext.get().partitionId()):
                yield pa.RecordBatch.from_pydict({"add": [add]})

        units = todo.where(~F.col("is_update"))
        return [r["add"] for r in units.mapInArrow(task, "add string").collect()]

    def _write_pairs(self, todo: DataFrame, report: IngestReport) -> None:
        """Append the new pairs, then MERGE the sides that complete stored pairs; the rows
        written are counted from the commits (the files' statistics, the MERGE's metrics)."""
        path = self._path(schema.PAIRS)
        new, updates = (todo.where(F.col("is_update") == u).count() for u in (False, True))
        written = 0
        if new:
            adds = self._write_new_pairs(todo)
            self.lease.check()
            if adds:
                write.commit_files(self.spark, path, adds, schema.PARTITION_COLUMNS[schema.PAIRS])
                written += sum(part_files.num_records(a) for a in adds)
        if updates:
            self.lease.check()
            passthrough = [*NEED, "_stored_s2_path", "_stored_labels43"]
            rows = decode.decode(
                todo.where(F.col("is_update")), passthrough, self._finisher(True), UPDATE_FIELDS
            )
            # a stored pair also records a side that failed now
            merged = self._merge_sides(
                rows.where((F.size("stored_sides") > 0) | (F.size("issues") > 0))
            )
            written += merged
        report.inserted[schema.PAIRS] = written

    def _merge_sides(self, rows: DataFrame) -> int:
        """Complete stored pairs with the sides decoded now (e.g. S1 after S2): one MERGE;
        return the number of rows it updated."""
        s = lambda c: F.col(f"s.{c}")  # noqa: E731
        t = lambda c: F.col(f"t.{c}")  # noqa: E731
        got = lambda side: F.array_contains(s("stored_sides"), side)  # noqa: E731
        sets: dict[str, Column] = {}
        for side, fields in schema.SIDES.items():
            for c in [*(f.name for f in fields), schema.SIDE_PATH[side]]:
                sets[c] = F.when(got(side), s(c)).otherwise(t(c))
        for c in S2_COLUMNS:
            sets[c] = F.when(got("s2"), s(c)).otherwise(F.coalesce(t(c), s(c)))
        for c in S1_COLUMNS:
            sets[c] = F.when(got("s1"), s(c)).otherwise(t(c))
        sets["s2_path"] = F.when(got("s2"), s("_new_s2_path")).otherwise(t("s2_path"))
        sets["labels43"] = s("labels43")  # as the derived columns saw it (see _decoded)
        tried = F.filter(
            F.array(*[F.when(s(f"need_{x}"), F.lit(x)) for x in SIDES]), lambda x: x.isNotNull()
        )
        kept = F.filter(
            F.coalesce(t("issues"), F.array()), lambda i: ~F.array_contains(tried, i["kind"])
        )
        sets["issues"] = F.concat(kept, s("issues"))
        for c in (*pairs.DERIVED, "ingest_run", "updated_at"):
            sets[c] = s(c)
        metrics = (
            self._table(schema.PAIRS)
            .alias("t")
            .merge(rows.alias("s"), "t.patch_id = s.patch_id")
            .whenMatchedUpdate(set=sets)
            .execute()
        )
        return metrics.first()["num_updated_rows"]

    # -- 5. derived state ----------------------------------------------------------------------
    def _small_pairs(self) -> tuple[int, DataFrame]:
        """(version, the small columns of ``pairs`` at that version), read once and cached in a
        few partitions: every derived step reads this, never the data files again."""
        path = self._path(schema.PAIRS)
        version = write.table_state(self.spark, path)[0]
        small = (
            self.spark.read.format("delta")
            .option("versionAsOf", version)
            .load(path)
            .select(*SMALL_COLUMNS)
            .coalesce(self.spark.sparkContext.defaultParallelism)
            .cache()
        )
        small.count()
        return version, small

    def _failed_units(self, todo: DataFrame, small: DataFrame) -> DataFrame:
        """Issues of the units that this run could not store at all (read again: few)."""
        written = small.where(F.col("ingest_run") == self.run_id)
        failed = todo.join(written.select("patch_id"), "patch_id", "left_anti").coalesce(
            self.spark.sparkContext.defaultParallelism  # few: not one Python task per unit task
        )
        issues = decode.decode(failed, [])
        return issues.select(F.explode("issues").alias("i")).select("i.*").cache()

    def _refresh_derived(self, small: DataFrame, report: IngestReport) -> int:
        """Rewrite the derived columns of the rows of ``pairs`` that the current lists and
        metadata derive differently (one MERGE, none when all are current); return how many.
        Rows this run wrote were derived from the current lists in their decode task."""
        earlier = small.where(F.col("ingest_run") != self.run_id)
        stale = pairs.stale_derived(earlier, self._metadata, self._known).cache()
        n = stale.count()
        report.inserted["pairs_derived"] = n
        if n:
            self.lease.check()
            sets = {c: F.col(f"s.{c}") for c in pairs.DERIVED}
            sets["updated_at"] = F.current_timestamp()
            (
                self._table(schema.PAIRS)
                .alias("t")
                .merge(F.broadcast(stale).alias("s"), "t.patch_id = s.patch_id")
                .whenMatchedUpdate(set=sets)
                .execute()
            )
        stale.unpersist()
        return n

    def _quarantine(
        self,
        small: DataFrame,
        input_issues: DataFrame,
        unit_issues: DataFrame,
        report: IngestReport,
    ) -> None:
        """Make ``quarantine`` the lake's current state (one MERGE, none when unchanged)."""
        table = self._table(schema.QUARANTINE)
        current = table.toDF().cache()  # read by several plans: one Delta scan
        desired = quarantine.desired_state(
            current,
            small,
            self._metadata,
            input_issues,
            unit_issues,
            self.run_id,
        ).cache()
        path = self._path(schema.QUARANTINE)
        new = (
            desired
            if write.is_empty(path)
            else desired.join(current.select("path", "reason"), ["path", "reason"], "left_anti")
        )
        report.quarantined = {
            r["reason"]: r["count"] for r in new.groupBy("reason").count().collect()
        }
        self.lease.check()
        write.replace_where_changed(table, path, desired, ["path", "reason"], F.lit(True))
        desired.unpersist()
        current.unpersist()

    def _labels(self, small: DataFrame, version: int, report: IngestReport) -> None:
        """Rebuild ``labels`` from ``small`` (``pairs`` at ``version``) when it was built from
        another ``pairs`` version."""
        stamp = f"pairs_version={version}"
        last = self._table(schema.LABELS).history(1).first()
        report.inserted[schema.LABELS] = 0
        if last is not None and last["userMetadata"] == stamp:
            return
        labels = pairs.long_labels(small)
        self.lease.check()
        labels.write.format("delta").mode("overwrite").option("userMetadata", stamp).save(
            self._path(schema.LABELS)
        )
        report.inserted[schema.LABELS] = write.table_state(self.spark, self._path(schema.LABELS))[1]

    def _complete_units(self, units: DataFrame, small: DataFrame) -> int:
        """Units of the input whose every side is in the lake now."""
        n = plan.complete(units, small).count()
        units.unpersist()
        return n
