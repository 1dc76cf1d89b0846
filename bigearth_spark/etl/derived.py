"""Step 5 of the ingest: state derived from the committed ``pairs``, recomputed every run.

The derived columns of stored pairs whose lists or metadata changed, and ``labels`` (stamped
with the ``pairs`` version it was built from). Both read the small columns of ``pairs`` once
(:func:`small_pairs`), never its band bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from bigearth_spark import storage
from bigearth_spark.etl import pairs
from bigearth_spark.etl.write_pairs import SMALL_COLUMNS
from bigearth_spark.tables import delta_log, part_files, small_tables, write
from bigearth_spark.tables.schema import LABELS_SCHEMA, PAIRS, PAIRS_SCHEMA, PARTITION_COLUMNS

SMALL_SCHEMA = T.StructType([f for f in PAIRS_SCHEMA if f.name in SMALL_COLUMNS])
(_SPLIT,) = PARTITION_COLUMNS[PAIRS]
_ADDS = pa.schema([("add", pa.string())])
_FILES = T.StructType(
    [T.StructField("path", T.StringType()), T.StructField(_SPLIT, T.StringType())]
)


def _read_small_columns(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executors: the small columns of each data file (path, split) of ``pairs``, read with
    pyarrow (only those columns' chunks), in the Arrow types of :data:`SMALL_SCHEMA`."""
    stored = [c for c in SMALL_SCHEMA.fieldNames() if c != _SPLIT]
    for batch in batches:
        for path, split in zip(batch["path"].to_pylist(), batch[_SPLIT].to_pylist(), strict=True):
            fs, inner = storage.filesystem(path)
            rows = pq.read_table(inner, columns=stored, filesystem=fs)
            rows = rows.append_column(_SPLIT, pa.array([split] * rows.num_rows, pa.string()))
            yield from small_tables.arrow_rows(rows, SMALL_SCHEMA).to_batches()


def small_pairs(spark: SparkSession, path: str) -> tuple[int, DataFrame]:
    """(latest version, the small columns of the ``pairs`` table at ``path`` at that version),
    read once and cached in a few partitions: every derived step reads this, never the data
    files again. The version's live files come from the log (:mod:`~bigearth_spark.tables.
    delta_log`, no Spark job) and the executors read their small columns with pyarrow (Delta's
    own snapshot of a table just committed costs a few Spark jobs, and Spark's Parquet source a
    listing job of the files); a log that replay cannot read takes Delta's path."""
    try:
        snap = delta_log.snapshot(path)
        files = [(f.path, f.partition_values.get(_SPLIT)) for f in snap.files]
        version = snap.version
        table = spark.createDataFrame(files, _FILES).mapInArrow(_read_small_columns, SMALL_SCHEMA)
    except delta_log.DeltaLogError:
        version = write.table_state(spark, path)[0]
        table = spark.read.format("delta").option("versionAsOf", version).load(path)
        table = table.select(*SMALL_SCHEMA.fieldNames())
    small = table.coalesce(spark.sparkContext.defaultParallelism).cache()
    small.count()
    return version, small


def refresh_columns(
    path: str,
    earlier: DataFrame,
    metadata: DataFrame,
    known: dict[str, set[str]],
    check: Callable[[], None],
) -> int:
    """Rewrite the derived columns of the rows ``earlier`` (small columns of rows of the
    ``pairs`` table at ``path`` that another run wrote) that the current ``metadata`` and lists
    (``known``, per archive) derive differently: one MERGE, none when all are current; return
    how many. ``check`` is called before the commit."""
    stale = pairs.stale_derived(earlier, metadata, known).cache()
    n = stale.count()
    if n:
        check()
        sets = {c: F.col(f"s.{c}") for c in pairs.DERIVED}
        sets["updated_at"] = F.current_timestamp()
        (
            DeltaTable.forPath(earlier.sparkSession, path)
            .alias("t")
            .merge(F.broadcast(stale).alias("s"), "t.patch_id = s.patch_id")
            .whenMatchedUpdate(set=sets)
            .execute()
        )
    stale.unpersist()
    return n


def _write_labels(path: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Executors: a task's rows of ``labels`` streamed into one data file of the table at
    ``path``; yields its ``add`` action (none for a task without rows)."""
    target = to_arrow_schema(LABELS_SCHEMA)

    def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tables = (
            small_tables.arrow_rows(pa.Table.from_batches([b]), LABELS_SCHEMA) for b in batches
        )
        add = part_files.write_batches(path, target, (b for t in tables for b in t.to_batches()))
        if add is not None:
            yield pa.RecordBatch.from_pydict({"add": [add]}, _ADDS)

    return task


def rebuild_labels(path: str, small: DataFrame, version: int, check: Callable[[], None]) -> int:
    """Rebuild the ``labels`` table at ``path`` from ``small`` (``pairs`` at ``version``) when
    it was built from another ``pairs`` version; return the rows written (0 when current).
    The executors write the new data files; one commit replaces the table's live files with
    them, stamped with the ``pairs`` version (Delta's own overwrite rebuilt the table's state
    with Spark jobs first). ``check`` is called before the commit."""
    stamp = f"pairs_version={version}"
    if delta_log.last_commit_info(path).get("userMetadata") == stamp:
        return 0
    spark = small.sparkSession
    written = pairs.long_labels(small).mapInArrow(_write_labels(path), "add string").collect()
    adds = [r["add"] for r in written]
    txn, snap = write.start_replace(spark, path)
    check()
    write.replace_files(spark, txn, snap, adds, user_metadata=stamp)
    return sum(part_files.num_records(a) for a in adds)
