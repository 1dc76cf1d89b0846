"""Point lookups by patch id on a lake's ``pairs`` (``export``, SQL ``WHERE patch_id = ...``):
the data files Spark reads with Delta's data skipping on the files' statistics, against the same
lookup with data skipping off (what a lake whose ``add`` actions carry ``numRecords`` only gets:
every file's footer read), and what the statistics cost the ingest.

For ``--lookups`` patch ids spread evenly over the table's sorted ids, each lookup as ``export``
runs it (the whole row, band bytes included), with skipping on and off in turn, ``--repeats``
times: files in the table, files planned (``DataFrame.inputFiles``), files the scan read (the
``numFiles`` metric of Spark's scan node, "number of files read"), and the median wall seconds;
the same with the row's split in the predicate. Then the cost of the statistics: Delta's stats
(:class:`~bigearth_spark.tables.file_stats.FileStats`) of every data file recomputed from its
indexed columns in row groups of :data:`~bigearth_spark.tables.part_files.ROWS_PER_GROUP`, as
a decode task computes them, in milliseconds per file.

Output: ``name=value`` lines.

    .venv/bin/python -m benchmarks.point_lookup --lake /tmp/bench20k_stats_lake
"""

from __future__ import annotations

import argparse
import statistics
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bigearth_spark import storage
from bigearth_spark.tables import delta_log, file_stats, part_files, schema
from bigearth_spark.tables.write import table_path

SKIPPING = "spark.databricks.delta.stats.skipping"  # Delta's switch for data skipping


def files_read(df: DataFrame) -> int:
    """Run ``df`` and return its scan's "number of files read" (Spark's ``numFiles`` metric)."""
    df.collect()
    plan = df._jdf.queryExecution().executedPlan()
    if plan.nodeName() == "AdaptiveSparkPlan":
        plan = plan.executedPlan()
    leaves = plan.collectLeaves().iterator()
    counts = []
    while leaves.hasNext():
        leaf = leaves.next()
        if leaf.metrics().contains("numFiles"):
            counts.append(leaf.metrics().apply("numFiles").value())
    (count,) = counts
    return count


def lookup(spark: SparkSession, path: str, where, skipping: bool, repeats: int) -> dict:
    """Files planned, files read and median seconds of ``where`` on ``pairs``."""
    spark.conf.set(SKIPPING, str(skipping).lower())
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        df = spark.read.format("delta").load(path).where(where)
        read = files_read(df)
        seconds.append(time.perf_counter() - start)
    planned = len(spark.read.format("delta").load(path).where(where).inputFiles())
    return {"planned": planned, "read": read, "seconds": statistics.median(seconds)}


def stats_cost(snap: delta_log.Snapshot) -> tuple[float, float]:
    """(median, max) milliseconds to compute the statistics of one data file of ``snap``."""
    per_file = []
    for f in snap.files:
        pf = storage.parquet_file(f.path)
        arrow = pf.schema_arrow
        indexed = [arrow.field(i).name for i in range(min(file_stats.INDEXED_COLUMNS, len(arrow)))]
        rows = pf.read(columns=indexed)
        batches = rows.to_batches(max_chunksize=part_files.ROWS_PER_GROUP)
        start = time.perf_counter()
        stats = file_stats.FileStats(rows.schema)
        for batch in batches:
            stats.add(batch)
        stats.json()
        per_file.append((time.perf_counter() - start) * 1000)
    return statistics.median(per_file), max(per_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--lookups", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from bigearth_spark.config import load_config
    from bigearth_spark.spark import build_spark

    conf = {**load_config("local").spark_conf, "spark.ui.showConsoleProgress": "false"}
    spark = build_spark("point-lookup", conf=conf)
    path = table_path(args.lake, schema.PAIRS)
    snap = delta_log.snapshot(path)
    split_of = {}
    for f in snap.files:
        ids = storage.parquet_file(f.path).read(columns=["patch_id"]).column("patch_id")
        split_of.update(dict.fromkeys(ids.to_pylist(), f.partition_values))
    ids = sorted(split_of)
    chosen = [
        ids[round(i * (len(ids) - 1) / max(args.lookups - 1, 1))] for i in range(args.lookups)
    ]
    print(f"pairs={len(ids)}")
    print(f"files_in_table={len(snap.files)}")
    for patch_id in chosen:
        split = split_of[patch_id]["split"]
        key = F.col("patch_id") == patch_id
        for label, where in (("id", key), ("id_and_split", key & F.col("split").eqNullSafe(split))):
            for skipping in (True, False):
                got = lookup(spark, path, where, skipping, args.repeats)
                name = f"{label}_{'skipping' if skipping else 'no_skipping'}"
                print(
                    f"lookup {patch_id} {name}: planned_files={got['planned']} "
                    f"files_read={got['read']} seconds={got['seconds']:.3f}"
                )
    median, worst = stats_cost(snap)
    print(f"stats_ms_per_file_median={median:.2f}")
    print(f"stats_ms_per_file_max={worst:.2f}")
    spark.stop()


if __name__ == "__main__":
    main()
