"""The ingest: archive roots → ``pairs`` (the one band table) and its derived tables.

A run holds the lake's lease (:mod:`bigearth_spark.tables.lease`), so one ingest writes a lake
at a time and concurrent jobs queue instead of racing (on S3 only with the multi-writer LogStore,
:mod:`bigearth_spark.tables.log_store`; without it a run must promise to be the only writer).
Its commits are ordered so that a kill between any two is repaired by the next run:

1. ``nomenclature``, then the official lists → ``patch_metadata`` and ``official_lists``: small
   tables that the driver reads and writes itself (:mod:`bigearth_spark.tables.small_tables`);
2. discovery on the executors → pair units (paths only) and input issues (the listing only
   reads: it starts before the lease and runs while the driver takes it and does step 1);
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

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from delta.tables import DeltaTable
from pyspark import TaskContext
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigearth_spark.archive import layout
from bigearth_spark.archive.bands import ALL_BANDS, band
from bigearth_spark.archive.labels import CLASSES_19, CLASSES_43
from bigearth_spark.archive.lists import OfficialLists, read_lists
from bigearth_spark.config import normalize_lake
from bigearth_spark.etl import decode, discover, pairs, plan, quarantine
from bigearth_spark.etl.plan import NEED, SIDES
from bigearth_spark.etl.steps import Background, step
from bigearth_spark.tables import catalog, part_files, schema, small_tables, write
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
METADATA_KEYS = ["patch_id", "archive"]
# what a decode task of new pairs returns: a file's Delta add action, or a failed unit's issue
TASK_OUTPUT = pa.schema([("add", pa.string()), ("failed", pa.string())])
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


def _issue_keys(rows: pa.Table) -> list[tuple[str, str]]:
    """(path, reason) of each quarantine row: what identifies it."""
    return list(zip(rows["path"].to_pylist(), rows["reason"].to_pylist(), strict=True))


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
        self._cached: list[DataFrame] = []  # persisted for the run, unpersisted at its end
        self._pairs_was_empty = False  # before this run's commits (known from the plan on)

    def run(self, inputs: list[str], list_dirs: list[str] | None = None) -> IngestReport:
        """Ingest the archive roots found at ``inputs``; return the report."""
        roots = [r for i in inputs for r in layout.find_roots(i)]
        report = IngestReport(self.run_id, [f"{r.archive_type}:{r.path}" for r in roots])
        log.info("ingest %s: roots %s", self.run_id, report.roots)
        # the executors list the input (it only reads) while the driver takes the lease and
        # writes the small tables
        listing = self._start("discovery", lambda: discover.list_input(self.spark, roots))
        try:
            with self.lease:
                try:
                    self._steps(inputs, roots, list_dirs or [], listing, report)
                finally:
                    for task in self._background:  # nothing commits after the lease is given up
                        task.wait()
        finally:
            listing.wait()
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
        listing: Background[tuple[DataFrame, int]],
        report: IngestReport,
    ) -> None:
        """The run's steps, in commit order (see the module's docstring)."""
        with step(self.spark, "tables"):
            self._ensure_tables()
        with step(self.spark, "nomenclature + official lists"):
            self._nomenclature(report)
            metadata = self._lists(_list_folders(inputs, roots, list_dirs), report)
            self._metadata = self.spark.createDataFrame(
                metadata, schema.PATCH_METADATA_SCHEMA
            ).cache()
            self._cached.append(self._metadata)
        with step(self.spark, "discovery + plan"):
            found, report.entries = listing.result()
            todo, counts, unit_ids, input_issues = self._plan(found)
        with step(self.spark, "decode + write pairs"):
            unit_issues = self._write_pairs(todo, counts, report)
        with step(self.spark, "derived columns"):
            version, small = self._small_pairs()
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
            for frame in (found, todo, small, input_issues, *self._cached):
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

    # -- 1. dimensions and lists --------------------------------------------------------------
    def _nomenclature(self, report: IngestReport) -> None:
        """Make ``nomenclature`` the 43 and 19 classes (no commit when it holds them)."""
        table = small_tables.open_table(
            self.spark, self._path(schema.NOMENCLATURE), schema.NOMENCLATURE_SCHEMA
        )
        rows = small_tables.arrow_rows(_nomenclature_rows(), schema.NOMENCLATURE_SCHEMA)
        report.inserted[schema.NOMENCLATURE] = 0
        if not small_tables.same_rows(table.rows, rows):
            self.lease.check()
            small_tables.replace(table, rows)
            report.inserted[schema.NOMENCLATURE] = rows.num_rows

    def _lists(self, folders: list[str], report: IngestReport) -> pa.Table:
        """Write the official lists found in ``folders`` into ``patch_metadata`` (rows new or
        changed) and ``official_lists``; return the rows of ``patch_metadata`` after that. Small
        tables: read and written by the driver (pyarrow), one commit each at most."""
        lists = read_lists(folders)
        log.info("official lists: %s; rows %s", lists.sources or "none found", lists.summary())
        meta = small_tables.open_table(
            self.spark, self._path(schema.PATCH_METADATA), schema.PATCH_METADATA_SCHEMA
        )
        incoming = small_tables.arrow_rows(lists.metadata, schema.PATCH_METADATA_SCHEMA)
        changed, updates = small_tables.changed_rows(meta.rows, incoming, METADATA_KEYS)
        report.inserted[schema.PATCH_METADATA] = changed.num_rows
        rows = meta.rows
        if changed.num_rows:
            self.lease.check()
            rows = small_tables.upsert(meta, changed, METADATA_KEYS, updates)
        self._official_lists(lists)
        return rows

    def _official_lists(self, lists: OfficialLists) -> None:
        """Record the memberships that ``lists`` tell for their archives in ``official_lists``
        (other archives' rows stay); keep the lake's lists, per archive, for the derived
        columns."""
        known = small_tables.open_table(
            self.spark, self._path(schema.OFFICIAL_LISTS), schema.OFFICIAL_LISTS_SCHEMA
        )
        other = pc.invert(pc.is_in(known.rows["archive"], pa.array(list(lists.known), pa.string())))
        found = [(a, m, lists.sources.get(m)) for a, ms in lists.known.items() for m in sorted(ms)]
        desired = pa.concat_tables(
            [
                known.rows.filter(other),
                small_tables.arrow_rows(found, schema.OFFICIAL_LISTS_SCHEMA),
            ]
        )
        if not small_tables.same_rows(known.rows, desired):
            self.lease.check()
            small_tables.replace(known, desired)
        self._known = {}
        for r in desired.to_pylist():
            self._known.setdefault(r["archive"], set()).add(r["membership"])

    # -- 2, 3. discovery and plan --------------------------------------------------------------
    def _plan(self, found: DataFrame) -> tuple[DataFrame, dict[bool, int], DataFrame, DataFrame]:
        """(units to decode with their need flags and metadata, how many of them are new pairs
        (False) and stored pairs that get a side (True), every unit's key and sides, input
        issues) of the folders ``found``; all small and cached."""
        metadata = self._metadata
        units, input_issues = discover.discover(found, metadata)
        units = units.cache()
        input_issues = input_issues.cache()
        self._pairs_was_empty = write.is_empty(self._path(schema.PAIRS))
        if self._pairs_was_empty and write.is_empty(self._path(schema.QUARANTINE)):
            todo = plan.units_to_decode(units, metadata)  # a new lake: nothing to join with
        else:
            pairs_df = self._table(schema.PAIRS).toDF()
            quarantine_df = self._table(schema.QUARANTINE).toDF()
            todo = plan.units_to_decode(units, metadata, pairs_df, quarantine_df)
        todo = todo.cache()
        self._cached.append(todo)  # read by the counts and the decode tasks' shuffle
        counts = {False: 0, True: 0}
        counts.update({r[0]: r[1] for r in todo.groupBy("is_update").count().collect()})
        n = sum(counts.values())
        # explicit tasks: adaptive execution would coalesce the small shuffles of paths before
        # into too few
        spread = plan.decode_tasks(todo, n, self.spark.sparkContext.defaultParallelism).cache()
        tasks = spread.rdd.getNumPartitions()
        log.info("plan: %d units in the input, %d to decode in %d tasks", units.count(), n, tasks)
        return spread, counts, units, input_issues

    # -- 4. decode + write ---------------------------------------------------------------------
    def _finisher(self, update: bool) -> decode.Finish:
        return _finisher(self._known, self.run_id, datetime.now(timezone.utc), update)

    def _write_new_pairs(self, todo: DataFrame) -> tuple[list[str], list[dict]]:
        """Decode the units of new pairs and write their rows straight into data files of
        ``pairs`` from the decode tasks; return the files' Delta ``add`` actions, and the issues
        of the units that stored no side (no row of theirs is written)."""
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
            failed: list[dict] = []

            def stored() -> Iterator[dict]:
                for rows, _, _ in decode.decoded_rows(batches, finish):
                    for row in rows:
                        if row["stored_sides"]:
                            yield row
                        else:
                            failed.extend(row["issues"])

            for add in writer.write(stored(), TaskContext.get().partitionId()):
                yield pa.RecordBatch.from_pydict({"add": [add], "failed": [None]}, TASK_OUTPUT)
            issues = [json.dumps(i) for i in failed]
            out = {"add": [None] * len(issues), "failed": issues}
            yield pa.RecordBatch.from_pydict(out, TASK_OUTPUT)

        units = todo.where(~F.col("is_update"))
        out = units.mapInArrow(task, "add string, failed string").collect()
        adds = [r["add"] for r in out if r["add"] is not None]
        return adds, [json.loads(r["failed"]) for r in out if r["failed"] is not None]

    def _write_pairs(
        self, todo: DataFrame, counts: dict[bool, int], report: IngestReport
    ) -> DataFrame:
        """Append the new pairs, then MERGE the sides that complete stored pairs (``counts``:
        how many units of each, by ``is_update``); the rows written are counted from the commits
        (the files' statistics, the MERGE's metrics). Return the issues of the units that stored
        nothing (a stored pair records its failed sides itself)."""
        path = self._path(schema.PAIRS)
        new, updates = counts[False], counts[True]
        written, failed = 0, []
        if new:
            adds, failed = self._write_new_pairs(todo)
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
        return self.spark.createDataFrame(failed, schema.ISSUE)

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

    def _refresh_derived(self, small: DataFrame, report: IngestReport) -> int:
        """Rewrite the derived columns of the rows of ``pairs`` that the current lists and
        metadata derive differently (one MERGE, none when all are current); return how many.
        Rows this run wrote were derived from the current lists in their decode task: none to
        look at when ``pairs`` was empty before this run."""
        report.inserted["pairs_derived"] = 0
        if self._pairs_was_empty:
            return 0
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
        """Make ``quarantine`` the lake's current state: its rows are computed by Spark from the
        committed lake and collected (open issues: few), and the small table is replaced in one
        commit when they changed (none when unchanged)."""
        table = small_tables.open_table(
            self.spark, self._path(schema.QUARANTINE), schema.QUARANTINE_SCHEMA
        )
        current = self.spark.createDataFrame(table.rows, schema.QUARANTINE_SCHEMA)
        desired = quarantine.desired_state(
            current, small, self._metadata, input_issues, unit_issues, self.run_id
        )
        rows = small_tables.arrow_rows(desired.toArrow(), schema.QUARANTINE_SCHEMA)
        known = set(_issue_keys(table.rows))
        new = Counter(reason for path, reason in _issue_keys(rows) if (path, reason) not in known)
        report.quarantined = dict(new)
        if not small_tables.same_rows(table.rows, rows):
            self.lease.check()
            small_tables.replace(table, rows)

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
