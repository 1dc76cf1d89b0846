"""The ingest: archive roots → bronze, silver and dimension Delta tables, with a quarantine.

Steps (each table write is one atomic, idempotent Delta commit):
1. official lists → ``patch_metadata`` and ``official_lists``;
2. discover patch folders (executors list v2 tile folders) → decode on the executors
   (``mapInArrow``) → ``s2_patches`` / ``s1_patches`` / ``reference_maps`` + ``quarantine``;
3. ``pairs`` (only rows whose content changed), ``labels``, lake-wide quarantine reasons;
4. register ``<db>.<table>`` and the views.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bigearth_spark.archive import layout
from bigearth_spark.archive.labels import CLASSES_19, CLASSES_43
from bigearth_spark.archive.lists import read_lists
from bigearth_spark.config import normalize_lake
from bigearth_spark.etl import decode, discover, pairs, quality
from bigearth_spark.tables import catalog, schema, write

log = logging.getLogger(__name__)
GROUPS = ("s2", "s1", "reference_map")


@dataclass
class IngestReport:
    """What one ingest run did."""

    run_id: str
    roots: list[str]
    entries: int = 0
    decoded_ok: int = 0  # readable patches of this input, new or already in the lake
    inserted: dict[str, int] = field(default_factory=dict)
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
        folders += [p, str(Path(p) / "lists")]
    return folders


def _nomenclature_rows() -> list[tuple]:
    rows = [
        ("43", c.index, c.name, [c.clc_code], c.level1, c.level2, c.target19,
         CLASSES_19[c.target19].name if c.target19 is not None else None)
        for c in CLASSES_43
    ]  # fmt: skip
    rows += [("19", c.index, c.name, list(c.clc_codes), None, None, c.index, c.name)
             for c in CLASSES_19]  # fmt: skip
    return rows


@contextmanager
def _step(name: str) -> Iterator[None]:
    start = time.perf_counter()
    log.info("step %s ...", name)
    yield
    log.info("step %s done in %.1f s", name, time.perf_counter() - start)


class Ingest:
    """One ingest run over ``inputs`` into the lake at ``lake``."""

    def __init__(self, spark: SparkSession, lake: str, db: str = schema.DATABASE) -> None:
        self.spark, self.lake, self.db = spark, normalize_lake(lake), db
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
        self.tables = {
            name: write.ensure_table(spark, self.lake, name, s)
            for name, s in (
                (schema.S2, schema.BRONZE["s2"]), (schema.S1, schema.BRONZE["s1"]),
                (schema.REFERENCE_MAPS, schema.BRONZE["reference_map"]),
                (schema.PAIRS, schema.PAIRS_SCHEMA), (schema.LABELS, schema.LABELS_SCHEMA),
                (schema.NOMENCLATURE, schema.NOMENCLATURE_SCHEMA),
                (schema.QUARANTINE, schema.QUARANTINE_SCHEMA),
                (schema.PATCH_METADATA, schema.PATCH_METADATA_SCHEMA),
                (schema.OFFICIAL_LISTS, schema.OFFICIAL_LISTS_SCHEMA),
            )
        }  # fmt: skip

    def run(self, inputs: list[str], list_dirs: list[str] | None = None) -> IngestReport:
        """Ingest the archive roots found at ``inputs``; return the report."""
        roots = [r for i in inputs for r in layout.find_roots(i)]
        report = IngestReport(self.run_id, [f"{r.kind}:{r.path}" for r in roots])
        log.info("ingest %s: roots %s", self.run_id, report.roots)
        with _step("nomenclature"):
            self._nomenclature(report)
        with _step("official lists"):
            self._lists(_list_folders(inputs, roots, list_dirs or []), report)
        with _step("discovery"):
            entries, report.entries = discover.discover(self.spark, roots)
            self._quarantine(quality.stray_entries(entries), report)
            kinds = {r.kind for r in entries.select("kind").distinct().collect()}
        for group in GROUPS:
            if any(decode.KIND_GROUP.get(k) == group for k in kinds):
                with _step(f"decode + write {group}"):
                    self._bronze(entries, group, report)
        with _step("pairs, labels, lake-wide checks"):
            self._silver(report)
        catalog.register(self.spark, self.lake, self.db)
        report.table_versions = {
            name: write.table_state(self.spark, write.table_path(self.lake, name))[0]
            for name in self.tables
        }
        return report

    def _path(self, name: str) -> str:
        return write.table_path(self.lake, name)

    # -- steps -----------------------------------------------------------------------------
    def _nomenclature(self, report: IngestReport) -> None:
        rows = _nomenclature_rows()
        path = write.table_path(self.lake, schema.NOMENCLATURE)
        if write.table_state(self.spark, path)[1] == len(rows):
            report.inserted[schema.NOMENCLATURE] = 0
            return
        df = self.spark.createDataFrame(rows, schema.NOMENCLATURE_SCHEMA)
        report.inserted[schema.NOMENCLATURE] = write.insert_new(
            self.tables[schema.NOMENCLATURE], path, df, ["nomenclature", "label_index"]
        )

    def _lists(self, folders: list[str], report: IngestReport) -> None:
        lists = read_lists(folders)
        log.info("official lists: %s; rows %s", lists.sources or "none found", lists.summary())
        if lists.metadata.empty:
            return
        meta = self.spark.createDataFrame(lists.metadata, schema.PATCH_METADATA_SCHEMA)
        meta = meta.withColumn("_hash", F.xxhash64(*meta.columns))
        table = self.tables[schema.PATCH_METADATA]
        current = table.toDF().withColumn("_hash", F.xxhash64(*meta.columns[:-1]))
        changed = meta.join(current.select("patch_id", "archive", "_hash"),
                            ["patch_id", "archive", "_hash"], "left_anti")  # fmt: skip
        changed = changed.drop("_hash")
        changed = changed.persist()
        report.inserted[schema.PATCH_METADATA] = write.upsert(
            table, self._path(schema.PATCH_METADATA), changed, ["patch_id", "archive"]
        )
        changed.unpersist()
        known = [(a, m, lists.sources.get(m)) for a, ms in lists.known.items() for m in sorted(ms)]
        known_df = self.spark.createDataFrame(known, schema.OFFICIAL_LISTS_SCHEMA)
        write.replace_where_changed(
            self.tables[schema.OFFICIAL_LISTS], known_df, ["archive", "membership"],
            F.col("archive").isin(list(lists.known)),
        )  # fmt: skip

    def _bronze(self, entries: DataFrame, group: str, report: IngestReport) -> None:
        table_name = schema.KIND_TABLE[group]
        table = self.tables[table_name]
        decoded = decode.decode(entries, group).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            existing = table.toDF().select("patch_id", "source_path")
            good, bad = quality.split_decoded(decoded, group, existing)
            good = good.persist(StorageLevel.MEMORY_AND_DISK)
            report.decoded_ok += good.count()
            rows = good.withColumn("ingest_run", F.lit(self.run_id)).withColumn(
                "ingested_at", F.current_timestamp()
            )
            report.inserted[table_name] = write.insert_new(
                table, self._path(table_name), rows.select(*table.toDF().columns), ["patch_id"]
            )
            self._quarantine(bad, report)
            good.unpersist()
        finally:
            decoded.unpersist()

    def _quarantine(self, rows: DataFrame, report: IngestReport) -> None:
        table = self.tables[schema.QUARANTINE]
        rows = rows.withColumn("ingest_run", F.lit(self.run_id)).withColumn(
            "first_seen", F.current_timestamp()
        )
        new = write.new_rows(table, rows.select(*schema.QUARANTINE_SCHEMA.fieldNames()),
                             ["path", "reason"]).persist()  # fmt: skip
        counts = {r["reason"]: r["count"] for r in new.groupBy("reason").count().collect()}
        if counts:
            write.append(self._path(schema.QUARANTINE), new)
        for reason, n in counts.items():
            report.quarantined[reason] = report.quarantined.get(reason, 0) + n
        new.unpersist()

    def _silver(self, report: IngestReport) -> None:
        s2 = self.tables[schema.S2].toDF()
        s1 = self.tables[schema.S1].toDF()
        meta = self.tables[schema.PATCH_METADATA].toDF()
        known: dict[str, set[str]] = {}
        for r in self.tables[schema.OFFICIAL_LISTS].toDF().collect():
            known.setdefault(r["archive"], set()).add(r["membership"])
        keys = pairs.pair_keys(s2, s1, meta, known).persist()
        table = self.tables[schema.PAIRS]
        changed = keys.join(table.toDF().select("patch_id", "row_hash"),
                            ["patch_id", "row_hash"], "left_anti")  # fmt: skip
        changed = pairs.with_bands(changed, s2, s1).persist(StorageLevel.MEMORY_AND_DISK)
        report.inserted[schema.PAIRS] = write.upsert(
            table, self._path(schema.PAIRS), changed, ["patch_id"]
        )
        changed.unpersist()
        if report.inserted[schema.PAIRS]:
            labels = pairs.long_labels(self.tables[schema.PAIRS].toDF())
            labels.write.format("delta").mode("overwrite").save(
                write.table_path(self.lake, schema.LABELS)
            )
        links = keys.where(F.col("s1_patch_id").isNotNull()).select("patch_id", "s1_patch_id")
        issues = (
            pairs.derived_issues(s2, s1, meta, links)
            .withColumn("ingest_run", F.lit(self.run_id))
            .withColumn("first_seen", F.current_timestamp())
            .select(*schema.QUARANTINE_SCHEMA.fieldNames())
            .persist()
        )
        scope = F.col("reason").isin(list(pairs.DERIVED_REASONS))
        current = self.tables[schema.QUARANTINE].toDF().where(scope).select("path", "reason")
        for r in (
            issues.join(current, ["path", "reason"], "left_anti")
            .groupBy("reason")
            .count()
            .collect()
        ):
            report.quarantined[r["reason"]] = r["count"]
        write.replace_where_changed(
            self.tables[schema.QUARANTINE], issues, ["path", "reason"], scope
        )
        issues.unpersist()
        keys.unpersist()
