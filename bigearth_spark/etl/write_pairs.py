"""Step 4 of the ingest: decode the planned units and write them into ``pairs``.

A decode task of new pairs decodes its units, computes their derived columns and writes the
rows into data files of ``pairs`` itself (pyarrow, no shuffle, no cache of band bytes, no hop
through the JVM); the driver commits all the files as one Delta append. Units that complete a
stored pair (its S1 arriving later) are decoded the same way and MERGEd.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
from delta.tables import DeltaTable
from pyspark import TaskContext
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigearth_spark.archive.bands import ALL_BANDS
from bigearth_spark.etl import decode, pairs
from bigearth_spark.etl.plan import NEED, SIDES
from bigearth_spark.tables import part_files, schema, write

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
# what a decode task of new pairs returns: a file's Delta add action, or a failed unit's issue
TASK_OUTPUT = pa.schema([("add", pa.string()), ("failed", pa.string())])
# the columns of pairs that are not band bytes: Parquet dictionaries and statistics
SMALL_COLUMNS = [f.name for f in schema.PAIRS_SCHEMA if f.name not in ALL_BANDS]
# zstd level of the data files of pairs. Level 3 (parquet-mr's default) on the 10 m visible
# bands B02-B04 saved 2.2 % of the lake's bytes and cost a quarter of a decode task's CPU: a
# 20,000-pair ingest's decode + write step took 38.6 s at level 1 against 50-54 s with those
# bands at level 3 (benchmarks/compression.py prints the per-band table of both levels).
ZSTD_LEVEL = 1
# the Parquet codec of the band columns (every other column is zstd): zstd (the default: the
# smallest lake) or, for a lake that feeds GPUs, lz4 or none. Reading zstd band bytes is most of
# a training reader's CPU: ~0.19 ms of the ~0.23 ms per S1+S2 sample of the device decode path,
# against ~0.03 ms with lz4 and ~0.01 ms with none, for 14 % more bytes on real patches
# (``deploy/README.md``, section 5; benchmarks/loader.py prints both lakes).
BAND_CODEC_KEY = "spark.bigearth.bandCodec"
BAND_CODECS = ("zstd", "lz4", "none")


def band_codec(value: str | None) -> str:
    """A band-codec setting (``--conf`` :data:`BAND_CODEC_KEY`), checked; None: zstd."""
    codec = (value or "zstd").lower()
    if codec not in BAND_CODECS:
        raise ValueError(f"{BAND_CODEC_KEY} is {value!r}: it must be one of {BAND_CODECS}")
    return codec


def finisher(
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


@dataclass
class PairsWriter:
    """Writes a run's planned units into the ``pairs`` table at ``path``; ``known``: the
    official lists of the lake, per archive (for the derived columns); ``check`` is called
    before each commit (the lease's check)."""

    spark: SparkSession
    path: str
    run_id: str
    known: dict[str, set[str]]
    check: Callable[[], None]

    def write(self, todo: DataFrame, counts: dict[bool, int]) -> tuple[int, DataFrame]:
        """Append the new pairs of ``todo``, then MERGE the sides that complete stored pairs
        (``counts``: how many units of each, by ``is_update``). Return (the rows written,
        counted from the commits: the files' statistics, the MERGE's metrics; the issues of the
        units that stored nothing — a stored pair records its failed sides itself)."""
        written, failed = 0, []
        if counts[False]:
            adds, failed = self._write_new(todo.where(~F.col("is_update")))
            self.check()
            if adds:
                write.commit_files(
                    self.spark, self.path, adds, schema.PARTITION_COLUMNS[schema.PAIRS]
                )
                written += sum(part_files.num_records(a) for a in adds)
        if counts[True]:
            self.check()
            passthrough = [*NEED, "_stored_s2_path", "_stored_labels43"]
            rows = decode.decode(
                todo.where(F.col("is_update")), passthrough, self._finisher(True), UPDATE_FIELDS
            )
            # a stored pair also records a side that failed now
            written += self._merge_sides(
                rows.where((F.size("stored_sides") > 0) | (F.size("issues") > 0))
            )
        return written, self.spark.createDataFrame(failed, schema.ISSUE)

    def _finisher(self, update: bool) -> decode.Finish:
        return finisher(self.known, self.run_id, datetime.now(timezone.utc), update)

    def _write_new(self, units: DataFrame) -> tuple[list[str], list[dict]]:
        """Decode ``units`` (new pairs) and write their rows straight into data files of
        ``pairs`` from the decode tasks; return the files' Delta ``add`` actions, and the issues
        of the units that stored no side (no row of theirs is written)."""
        finish = self._finisher(False)
        requests = decode.requests_in_flight(self.spark)
        codec = band_codec(self.spark.conf.get(BAND_CODEC_KEY, None))
        writer = part_files.PartitionedFileWriter(
            self.path,
            schema.PAIRS_SCHEMA,
            "split",
            dictionary=SMALL_COLUMNS,
            statistics=SMALL_COLUMNS,
            compression_level=ZSTD_LEVEL,
            codecs=dict.fromkeys(ALL_BANDS, codec),
        )

        def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            failed: list[dict] = []

            def stored() -> Iterator[dict]:
                for rows, _, _ in decode.decoded_rows(batches, finish, requests):
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

        out = units.mapInArrow(task, "add string, failed string").collect()
        adds = [r["add"] for r in out if r["add"] is not None]
        return adds, [json.loads(r["failed"]) for r in out if r["failed"] is not None]

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
        sets["labels43"] = s("labels43")  # as the derived columns saw it (see finisher)
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
            DeltaTable.forPath(self.spark, self.path)
            .alias("t")
            .merge(rows.alias("s"), "t.patch_id = s.patch_id")
            .whenMatchedUpdate(set=sets)
            .execute()
        )
        return metrics.first()["num_updated_rows"]
