"""The ingest: archive roots → ``pairs`` (the one band table) and its derived tables.

A run holds the lake's lease (:mod:`bigearth_spark.tables.lease`), so one ingest writes a lake
at a time and concurrent jobs queue instead of racing (on S3 only with the multi-writer LogStore,
:mod:`bigearth_spark.tables.log_store`; without it a run must promise to be the only writer).
Its commits are ordered so that a kill between any two is repaired by the next run. What the
steps need to know of the lake as it was is read once, when the run holds the lease
(:class:`LakeAtStart`):

1. ``nomenclature``, then the official lists → ``patch_metadata`` and ``official_lists``: small
   tables that the driver reads and writes itself (:mod:`bigearth_spark.tables.small_tables`);
2. discovery on the executors → pair units (paths only) and input issues (the listing only
   reads: it starts before the lease and runs while the driver creates the missing tables,
   takes the lease and does step 1);
3. plan: units anti-joined with the lake on patch ids (never paths: the same archive at another
   mount is a no-op), and with the folders quarantined for a permanent reason;
4. decode + write (:mod:`bigearth_spark.etl.write_pairs`): new pairs appended in one commit
   of files that the decode tasks wrote; units that complete a stored pair MERGEd;
5. derived state, recomputed from the committed lake every run
   (:mod:`bigearth_spark.etl.derived`): derived columns of ``pairs`` whose lists changed, then
   ``quarantine`` (current state of the lake) and, beside it, ``labels``;
6. register ``<db>.<table>`` and the views in a metastore that outlives the job (they name
   locations, not rows: done beside the other steps from step 1 on). Spark's in-memory catalog
   dies with the job: a session that wants the names calls
   :func:`bigearth_spark.tables.catalog.register` (the CLI's ``sql`` and ``summary`` do).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bigearth_spark import storage
from bigearth_spark.archive import layout
from bigearth_spark.archive.labels import CLASSES_19, CLASSES_43
from bigearth_spark.archive.lists import OfficialLists, read_lists
from bigearth_spark.config import normalize_lake
from bigearth_spark.etl import derived, discover, plan, quarantine, write_pairs
from bigearth_spark.etl.steps import Background, step
from bigearth_spark.etl.write_pairs import PairsWriter
from bigearth_spark.tables import catalog, schema, small_tables, write
from bigearth_spark.tables.lease import IngestLease
from bigearth_spark.tables.log_store import check_concurrent_writes

log = logging.getLogger(__name__)
T_ = TypeVar("T_")
METADATA_KEYS = ["patch_id", "archive"]


@dataclass
class IngestReport:
    """What one ingest run did."""

    run_id: str
    roots: list[str]
    entries: int = 0  # folders and files found in the input
    decoded_ok: int = 0  # pair units of the input whose sides are all in the lake after the run
    inserted: dict[str, int] = field(default_factory=dict)  # rows written per table
    quarantined: dict[str, int] = field(default_factory=dict)  # new quarantine rows by reason

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


@dataclass(frozen=True)
class LakeAtStart:
    """What a run's steps need to know of the lake as it was when the run took its lease."""

    pairs_empty: bool
    quarantine_empty: bool

    @classmethod
    def read(cls, lake: str) -> LakeAtStart:
        """Read it from the tables' logs (no Spark job)."""
        return cls(
            pairs_empty=write.is_empty(write.table_path(lake, schema.PAIRS)),
            quarantine_empty=write.is_empty(write.table_path(lake, schema.QUARANTINE)),
        )


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
        register: bool | None = None,
    ) -> None:
        """``register``: whether the run registers the lake in the session's catalog (default:
        when the catalog outlives the session, :func:`catalog.outlives_session`)."""
        self.spark, self.lake, self.db = spark, normalize_lake(lake), db
        self.register = catalog.outlives_session(spark) if register is None else register
        check_concurrent_writes(self.lake, lambda k: spark.conf.get(k, None), single_writer)
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
        self.lease = IngestLease(spark, self.lake, self.run_id, lease_ttl_s, lock_wait_s)
        self._known: dict[str, set[str]] = {}  # the official lists known to the lake, per archive
        self._metadata: DataFrame  # patch_metadata after the lists step, cached for the run
        self._background: list[Background] = []  # steps running beside the main thread
        self._cached: list[DataFrame] = []  # persisted for the run, unpersisted at its end

    def run(
        self,
        inputs: list[str],
        list_dirs: list[str] | None = None,
        roots: Future[list[layout.ArchiveRoot]] | None = None,
    ) -> IngestReport:
        """Ingest the archive roots found at ``inputs`` (``roots``: their
        :func:`layout.roots_in_background` when already under way); return the report."""
        write_pairs.band_codec(self.spark.conf.get(write_pairs.BAND_CODEC_KEY, None))  # checked
        roots = roots.result() if roots is not None else layout.roots_of(inputs)
        report = IngestReport(self.run_id, [f"{r.archive_type}:{r.path}" for r in roots])
        log.info("ingest %s: roots %s", self.run_id, report.roots)
        # the executors list the input (it only reads) while the driver takes the lease and
        # writes the small tables
        listing = self._start("discovery", lambda: discover.list_input(self.spark, roots))
        # and the driver creates the lake's missing tables beside taking the lease (creating a
        # table is idempotent, also for jobs racing to create it)
        created = self._create_tables()
        try:
            with self.lease:
                try:
                    self._steps(inputs, roots, list_dirs or [], listing, created, report)
                finally:
                    for task in self._background:  # nothing commits after the lease is given up
                        task.wait()
        finally:
            listing.wait()
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
        created: list[Background[None]],
        report: IngestReport,
    ) -> None:
        """The run's steps, in commit order (see the module's docstring)."""
        with step(self.spark, "tables"):
            for task in created:
                task.result()
            start = LakeAtStart.read(self.lake)
            # the catalog names locations and views: nothing in it depends on the rows
            registered = (
                self._start("catalog", lambda: catalog.register(self.spark, self.lake, self.db))
                if self.register
                else None
            )
        with step(self.spark, "nomenclature + official lists"):
            self._nomenclature(report)
            listed = {r.path: r.entries for r in roots}  # no second listing of a root
            metadata = self._lists(_list_folders(inputs, roots, list_dirs), listed, report)
            self._metadata = self.spark.createDataFrame(
                metadata, schema.PATCH_METADATA_SCHEMA
            ).cache()
            self._cached.append(self._metadata)
        with step(self.spark, "discovery + plan"):
            found, report.entries = listing.result()
            todo, counts, unit_ids, input_issues = self._plan(found, start)
        with step(self.spark, "decode + write pairs"):
            writer = PairsWriter(
                self.spark, self._path(schema.PAIRS), self.run_id, self._known, self.lease.check
            )
            report.inserted[schema.PAIRS], unit_issues = writer.write(todo, counts)
        with step(self.spark, "derived columns"):
            version, small = self._derived_columns(start, report)
        with step(self.spark, "quarantine + labels"):
            # two tables, each rebuilt from the same committed pairs: built side by side
            labels_path = self._path(schema.LABELS)
            labels = self._start(
                "labels",
                lambda: derived.rebuild_labels(labels_path, small, version, self.lease.check),
            )
            self._quarantine(small, input_issues, unit_issues, report)
            report.inserted[schema.LABELS] = labels.result()
        with step(self.spark, "completeness + catalog"):
            report.decoded_ok = self._complete_units(unit_ids, small)
            for frame in (found, todo, small, input_issues, *self._cached):
                frame.unpersist()
            if registered is not None:
                registered.result()

    def _path(self, name: str) -> str:
        return write.table_path(self.lake, name)

    def _create_tables(self) -> list[Background[None]]:
        """Start creating the lake's missing tables, side by side (each is one Delta commit of
        its own, mostly driver work)."""
        tables = (
            (schema.PAIRS, schema.PAIRS_SCHEMA),
            (schema.LABELS, schema.LABELS_SCHEMA),
            (schema.NOMENCLATURE, schema.NOMENCLATURE_SCHEMA),
            (schema.QUARANTINE, schema.QUARANTINE_SCHEMA),
            (schema.PATCH_METADATA, schema.PATCH_METADATA_SCHEMA),
            (schema.OFFICIAL_LISTS, schema.OFFICIAL_LISTS_SCHEMA),
        )
        return [
            self._start("tables", partial(write.ensure_table, self.spark, self.lake, name, s))
            for name, s in tables
        ]

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

    def _lists(
        self,
        folders: list[str],
        listed: dict[str, tuple[storage.Entry, ...]],
        report: IngestReport,
    ) -> pa.Table:
        """Write the official lists found in ``folders`` into ``patch_metadata`` (rows new or
        changed) and ``official_lists``; return the rows of ``patch_metadata`` after that. Small
        tables: read and written by the driver (pyarrow), one commit each at most."""
        lists = read_lists(folders, listed)
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
    def _plan(
        self, found: DataFrame, start: LakeAtStart
    ) -> tuple[DataFrame, dict[bool, int], DataFrame, DataFrame]:
        """(units to decode with their need flags and metadata, how many of them are new pairs
        (False) and stored pairs that get a side (True), every unit's key and sides, input
        issues) of the folders ``found``; all small and cached."""
        metadata = self._metadata
        units, input_issues = discover.discover(found, metadata)
        units = units.cache()
        input_issues = input_issues.cache()
        counts = {False: 0, True: 0}
        if start.pairs_empty and start.quarantine_empty:
            # a new lake: nothing to join with, and every unit is a new pair
            todo = plan.units_to_decode(units, metadata).cache()
            counts[False] = todo.count()
        else:
            pairs_df, quarantine_df = (
                self.spark.read.format("delta").load(self._path(name))
                for name in (schema.PAIRS, schema.QUARANTINE)
            )
            todo = plan.units_to_decode(units, metadata, pairs_df, quarantine_df).cache()
            counts.update({r[0]: r[1] for r in todo.groupBy("is_update").count().collect()})
        self._cached.append(todo)  # read by the counts and the decode tasks' shuffle
        n = sum(counts.values())
        # explicit tasks: adaptive execution would coalesce the small shuffles of paths before
        # into too few
        cores = self.spark.sparkContext.defaultParallelism
        spread = plan.decode_tasks(todo, n, cores).cache()
        tasks = plan.task_count(n, cores)
        log.info("plan: %d units in the input, %d to decode in %d tasks", units.count(), n, tasks)
        return spread, counts, units, input_issues

    # -- 5. derived state ----------------------------------------------------------------------
    def _derived_columns(self, start: LakeAtStart, report: IngestReport) -> tuple[int, DataFrame]:
        """Refresh the derived columns of stored pairs that the current lists derive
        differently; return (the ``pairs`` version after that, its small columns, cached). Rows
        this run wrote were derived from the current lists in their decode task: none to look
        at when ``pairs`` was empty before this run."""
        path = self._path(schema.PAIRS)
        version, small = derived.small_pairs(self.spark, path)
        report.inserted["pairs_derived"] = 0
        if start.pairs_empty:
            return version, small
        earlier = small.where(F.col("ingest_run") != self.run_id)
        n = derived.refresh_columns(path, earlier, self._metadata, self._known, self.lease.check)
        report.inserted["pairs_derived"] = n
        if not n:
            return version, small
        small.unpersist()
        return derived.small_pairs(self.spark, path)

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
        current = None  # an empty table: nothing to keep or to carry over
        if table.rows.num_rows:
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

    def _complete_units(self, units: DataFrame, small: DataFrame) -> int:
        """Units of the input whose every side is in the lake now."""
        n = plan.complete(units, small).count()
        units.unpersist()
        return n
