"""Data files written by a Python task and committed as one Delta append (the ingest's band
path): rows, partitions, file sizes and the row counts of the log, read back through Spark."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa
import pytest
from delta.tables import DeltaTable
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from bigearth_spark.tables import delta_log, part_files, write

SCHEMA = T.StructType(
    [
        T.StructField("key", T.StringType(), False),
        T.StructField("split", T.StringType()),
        T.StructField("labels", T.ArrayType(T.StringType())),
        T.StructField("band", T.BinaryType(), metadata={"dtype": "uint16"}),
    ]
)


def _rows(n: int) -> list[dict]:
    splits = ["train", "test", None]
    return [
        {
            "key": f"k{i:05d}",
            "split": splits[i % 3],
            "labels": [f"l{i % 7}"],
            "band": bytes([i % 251]) * (i % 5),
        }
        for i in range(n)
    ]


def _create(spark, path: str) -> None:
    DeltaTable.create(spark).location(path).addColumns(SCHEMA).partitionedBy("split").execute()


def test_task_files_committed_as_one_append_read_back_equal(spark, tmp_path) -> None:
    path = str(tmp_path / "t")
    _create(spark, path)
    writer = part_files.PartitionedFileWriter(path, SCHEMA, "split", ["key"], ["key"])
    # the second task writes 2,050 rows per split: each rolls over into a second file
    rows = _rows(3 * (part_files.ROWS_PER_FILE + 150))
    adds = [*writer.write(rows[:300], 0), *writer.write(rows[300:], 1)]
    assert write.commit_files(spark, path, adds, ["split"]) == 1
    table = DeltaTable.forPath(spark, path)
    got = table.toDF().collect()
    assert sorted((r.key, r.split, list(r.labels), bytes(r.band)) for r in got) == sorted(
        (r["key"], r["split"], r["labels"], r["band"]) for r in rows
    )
    last = table.history(1).first()
    assert (last["operation"], last["operationParameters"]["mode"]) == ("WRITE", "Append")
    snap = delta_log.snapshot(path)
    assert sorted(f.num_records for f in snap.files) == [50] * 3 + [100] * 3 + [2000] * 3
    assert {f.partition_values["split"] for f in snap.files} == {"train", "test", None}
    assert write.table_state(spark, path) == (1, len(rows))
    assert sum(part_files.num_records(a) for a in adds) == len(rows)
    # the band column keeps its Spark metadata in the files
    assert spark.read.format("delta").load(path).schema["band"].metadata == {"dtype": "uint16"}


def test_uncommitted_files_are_never_read(spark, tmp_path) -> None:
    path = str(tmp_path / "t")
    _create(spark, path)
    writer = part_files.PartitionedFileWriter(path, SCHEMA, "split", ["key"], ["key"])
    list(writer.write(_rows(30), 0))  # a task whose results never reached the driver
    kept = list(writer.write(_rows(9), 1))
    write.commit_files(spark, path, kept, ["split"])
    assert spark.read.format("delta").load(path).count() == 9


SMALL = T.StructType(
    [
        T.StructField("name", T.StringType(), False),
        T.StructField("n", T.IntegerType()),
        T.StructField("at", T.TimestampType()),
    ]
)


def _rows_of(*names: str) -> list[dict]:
    at = datetime(2026, 1, 2, 3, 4, 5, 6)  # naive UTC, microseconds
    return [{"name": n, "n": i, "at": at} for i, n in enumerate(names)]


def _small_rows(*names: str) -> pa.Table:
    return pa.Table.from_pylist(_rows_of(*names), schema=to_arrow_schema(SMALL))


def test_small_table_replaced_in_one_transaction_and_read_without_spark(spark, tmp_path) -> None:
    path = str(tmp_path / "small")
    DeltaTable.create(spark).location(path).addColumns(SMALL).execute()
    assert write.is_empty(path)
    first = _small_rows("a", "b")
    txn = write.start_transaction(spark, path)
    assert write.commit(spark, txn, [part_files.write_file(path, first)]) == 1
    assert not write.is_empty(path)
    snap = delta_log.snapshot(path)
    assert delta_log.read_small(snap).to_pylist() == _rows_of("a", "b")
    # replace the rows: remove the live file, add a new one, in one transaction
    second = _small_rows("c")
    txn = write.start_transaction(spark, path)
    txn.readWholeTable()
    actions = [part_files.remove_action(f) for f in snap.files]
    write.commit(spark, txn, [*actions, part_files.write_file(path, second)], "Overwrite")
    got = spark.read.format("delta").load(path).collect()
    assert [r.asDict() for r in got] == _rows_of("c")  # Spark reads what pyarrow wrote
    assert delta_log.read_small(delta_log.snapshot(path)).to_pylist() == _rows_of("c")
    assert write.table_state(spark, path) == (2, 1)
    # removing every file empties the table, by its log
    snap = delta_log.snapshot(path)
    removes = [part_files.remove_action(f) for f in snap.files]
    write.commit(spark, write.start_transaction(spark, path), removes, "Overwrite")
    assert write.is_empty(path) and spark.read.format("delta").load(path).count() == 0


def test_transaction_that_read_the_table_conflicts_with_a_later_commit(spark, tmp_path) -> None:
    """What the lease relies on: of two jobs replacing the row they both read, one fails."""
    path = str(tmp_path / "small")
    DeltaTable.create(spark).location(path).addColumns(SMALL).execute()
    mine = write.start_transaction(spark, path)
    mine.readWholeTable()
    theirs = write.start_transaction(spark, path)
    theirs.readWholeTable()
    write.commit(spark, theirs, [part_files.write_file(path, _small_rows("theirs"))])
    with pytest.raises(Exception, match="Concurrent"):
        write.commit(spark, mine, [part_files.write_file(path, _small_rows("mine"))])
    names = [r.name for r in spark.read.format("delta").load(path).collect()]
    assert names == ["theirs"]


def test_replacing_a_small_table_runs_no_spark_job(spark, tmp_path) -> None:
    """A replace commit's ``remove`` actions carry the files' sizes, so Delta derives the new
    version's checksum from the last one: no state rebuilt with Spark jobs after the commit
    (each such rebuild cost the ingest 2-4 s, the lease's release included)."""
    path = str(tmp_path / "small")
    DeltaTable.create(spark).location(path).addColumns(SMALL).execute()
    write.commit(
        spark, write.start_transaction(spark, path), [part_files.write_file(path, _small_rows("a"))]
    )
    sc = spark.sparkContext
    for i, name in enumerate(("b", "c")):
        snap = delta_log.snapshot(path)
        removes = [part_files.remove_action(f) for f in snap.files]
        assert [json.loads(r)["remove"]["size"] for r in removes] == [f.size for f in snap.files]
        txn = write.start_transaction(spark, path)
        txn.readWholeTable()
        sc.setJobGroup(f"replace-{i}", "replace a small table")
        try:
            write.commit(
                spark, txn, [*removes, part_files.write_file(path, _small_rows(name))], "Overwrite"
            )
        finally:
            sc.setJobGroup("", "")
        assert list(sc.statusTracker().getJobIdsForGroup(f"replace-{i}")) == []
        assert delta_log.read_small(delta_log.snapshot(path)).to_pylist() == _rows_of(name)
    assert write.table_state(spark, path) == (3, 1)
