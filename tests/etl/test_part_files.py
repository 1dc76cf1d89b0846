"""Data files written by a Python task and committed as one Delta append (the ingest's band
path): rows, partitions, file sizes and the row counts of the log, read back through Spark; the
files' statistics equal those of Spark's own writer, and Spark skips files by them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F
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


# -- Delta statistics (data skipping) ------------------------------------------------------------
def _st(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(n, t) for n, t in fields])


STR, INT = T.StringType(), T.IntegerType()
FILLERS = [f"f{k:02d}" for k in range(15)]
# 14 leaves, a struct of 2, 15 fillers: the 32nd leaf is ``tail.a``; ``tail.b`` and ``after``
# are past Delta's 32 indexed columns (the partition column ``split`` is not in the files)
STATS_SCHEMA = T.StructType(
    [
        T.StructField("key", STR, False),
        T.StructField("split", STR),
        *[T.StructField(c, STR) for c in ("t1", "t2", "t3", "t4", "none")],
        T.StructField("n", INT),
        T.StructField("small", T.ByteType()),
        T.StructField("x", T.DoubleType()),
        T.StructField("y", T.DoubleType()),
        T.StructField("at", T.TimestampType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("labels", T.ArrayType(STR)),
        T.StructField("band", T.BinaryType()),
        T.StructField("geo", _st(("epsg", INT), ("name", STR))),
        *[T.StructField(c, T.LongType()) for c in FILLERS],
        T.StructField("tail", _st(("a", STR), ("b", STR))),
        T.StructField("after", STR),
    ]
)
BOUNDARY = "é😀" * 20  # a surrogate pair across the 32nd UTF-16 unit


def _stats_rows(n: int) -> list[dict]:
    """``n`` rows spread over three partitions, with each partition's extremes in different row
    groups: long strings cut in each of Delta's ways, NaN and infinities, timestamps before and
    after 1970 with microseconds, NULLs everywhere (also a NULL struct), an all-NULL column."""
    splits = ["train", "test", None]
    rows = []
    for i in range(n):
        j, s = divmod(i, 3)
        rows.append(
            {
                "key": f"k{i:04d}",
                "split": splits[s],
                "t1": None if j % 7 == 0 else "x" * 40 + str(j),  # max cut, then "\x7f"
                "t2": BOUNDARY if j % 50 == 1 else f"b{j}",  # max cut after the pair, U+10FFFF
                "t3": "y" * 32 + "\U0010ffff" * 2 + "a" if j % 60 == 5 else "y" * 3,
                "t4": "~" * 31 + "\U0010ffff" * 20 if j % 45 == 7 else "~",  # no max fits
                "none": None,
                "n": None if j % 11 == 0 else (j * 37) % 101 - 50,
                "small": j % 200 - 100,
                "x": {(0, 5): float("nan"), (1, 9): float("inf"), (1, 10): float("-inf")}.get(
                    (s, j), j * 1.5 - 100
                ),
                "y": float("nan") if s == 2 else j / 3,  # all NaN in one partition
                "at": None
                if j % 13 == 0
                else datetime(1969, 12, 31, 23, 59, 59, 999_999 - j) + timedelta(days=(j - 1) * 40),
                "flag": None if j % 5 == 0 else j % 2 == 0,
                "labels": None if j % 9 == 0 else [f"l{j % 5}"] * (j % 3),
                "band": None if j % 4 == 0 else bytes([j % 256]) * 3,
                "geo": None
                if j % 17 == 0
                else {"epsg": 32600 + j % 60, "name": None if j % 6 == 0 else f"tile{j}"},
                **{c: j + k for k, c in enumerate(FILLERS)},
                "tail": {"a": f"a{j:03d}", "b": f"b{j}"},
                "after": "after",
            }
        )
    return rows


def _spark_rows(rows: list[dict], schema: T.StructType) -> list[tuple]:
    return [tuple(r[f.name] for f in schema) for r in rows]


def _stats_by_partition(path: str) -> dict[str | None, dict]:
    """The parsed ``stats`` of each live file, by its ``split`` (one file per value)."""
    snap = delta_log.snapshot(path)
    got = {}
    for action in _log_adds(path):
        got[action["partitionValues"].get("split")] = json.loads(action["stats"])
    assert len(got) == len(snap.files)
    return got


def _log_adds(path: str) -> list[dict]:
    log = sorted((Path(path) / "_delta_log").glob("*.json"))
    lines = [json.loads(line) for f in log for line in f.read_text().splitlines()]
    return [a["add"] for a in lines if "add" in a]


def test_file_stats_equal_those_of_sparks_own_writer(spark, tmp_path) -> None:
    """The same rows written by Spark's Delta writer (one file per partition) and by a task
    get the same statistics: columns, truncation, NULLs, NaN, timestamps."""
    rows = _stats_rows(600)  # 200 rows per partition: two row groups each
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    DeltaTable.create(spark).location(ours).addColumns(STATS_SCHEMA).partitionedBy(
        "split"
    ).execute()
    writer = part_files.PartitionedFileWriter(ours, STATS_SCHEMA, "split", [], [])
    write.commit_files(spark, ours, list(writer.write(rows, 0)), ["split"])
    df = spark.createDataFrame(_spark_rows(rows, STATS_SCHEMA), STATS_SCHEMA)
    df.repartition(1).write.format("delta").partitionBy("split").save(theirs)
    got, want = _stats_by_partition(ours), _stats_by_partition(theirs)
    assert set(got) == {"train", "test", None}
    assert got == want
    # what the rows hold, spelled out for one partition: cut strings, NaN, all-NULL columns
    test = got["test"]
    assert test["numRecords"] == 200
    assert test["minValues"]["t1"] == "x" * 32 and test["maxValues"]["t1"] == "x" * 32 + "\x7f"
    assert test["maxValues"]["t2"] == "é😀" * 11 + "\U0010ffff"
    assert test["maxValues"]["t3"] == "y" * 32 + "\U0010ffff" * 2 + "\x7f"
    assert "t4" not in test["maxValues"] and test["minValues"]["t4"] == "~"
    assert "none" not in test["minValues"] and test["nullCount"]["none"] == 200
    assert (test["minValues"]["x"], test["maxValues"]["x"]) == ("-Infinity", "Infinity")
    assert (got["train"]["minValues"]["x"], got["train"]["maxValues"]["x"]) == (-100.0, "NaN")
    assert (got[None]["minValues"]["y"], got[None]["maxValues"]["y"]) == ("NaN", "NaN")
    assert test["minValues"]["at"] == "1969-12-31T23:59:59.999Z"  # .999998 truncated
    assert set(test["nullCount"]) == {
        *[f.name for f in STATS_SCHEMA if f.name not in ("split", "after")]
    }
    assert test["nullCount"]["tail"] == {"a": 0} and test["minValues"]["tail"] == {"a": "a000"}
    for column in ("flag", "labels", "band"):  # NULL counts only
        assert column in test["nullCount"] and column not in test["minValues"]


def test_small_table_file_stats_equal_those_of_sparks_own_writer(spark, tmp_path) -> None:
    """A file of an unpartitioned table (the lease, the lists, ``labels``) written in batches:
    the partition column is a column of the file, so one more leaf falls past the 32nd."""
    rows = _stats_rows(300)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    DeltaTable.create(spark).location(ours).addColumns(STATS_SCHEMA).execute()
    target = to_arrow_schema(STATS_SCHEMA)
    batches = pa.Table.from_pylist(rows, schema=target).to_batches(max_chunksize=70)
    add = json.loads(part_files.write_batches(ours, target, batches))["add"]
    df = spark.createDataFrame(_spark_rows(rows, STATS_SCHEMA), STATS_SCHEMA)
    df.repartition(1).write.format("delta").save(theirs)
    (want,) = [json.loads(a["stats"]) for a in _log_adds(theirs)]
    assert json.loads(add["stats"]) == want
    assert "tail" not in want["nullCount"] and want["nullCount"]["f14"] == 0


def _lookup_table(spark, path: str, tasks: int) -> None:
    """``tasks`` files of one partition, each holding a contiguous range of 50 sorted keys (as
    decode tasks of patch ids in order write them)."""
    DeltaTable.create(spark).location(path).addColumns(SCHEMA).partitionedBy("split").execute()
    writer = part_files.PartitionedFileWriter(path, SCHEMA, "split", ["key"], ["key"])
    rows = [{**r, "split": "train"} for r in _rows(50 * tasks)]
    adds = [a for t in range(tasks) for a in writer.write(rows[t * 50 : (t + 1) * 50], t)]
    write.commit_files(spark, path, adds, ["split"])


def test_point_lookup_reads_the_one_file_that_holds_the_key(spark, tmp_path) -> None:
    """Spark's data skipping uses the files' key ranges: a lookup by key plans (and reads) the
    one file that holds the key, and none for a key outside every file."""
    path = str(tmp_path / "t")
    _lookup_table(spark, path, 4)
    df = spark.read.format("delta").load(path)
    assert len(df.inputFiles()) == 4
    files = {}
    for f in delta_log.snapshot(path).files:
        keys = pq.read_table(f.path, columns=["key"]).column("key").to_pylist()
        files.update({k: f.path for k in keys})
    for key in ("k00000", "k00049", "k00050", "k00123", "k00199"):
        lookup = df.where(F.col("key") == key)
        assert [Path(p).name for p in lookup.inputFiles()] == [Path(files[key]).name]
        assert [r.key for r in lookup.collect()] == [key]
    assert df.where(F.col("key") == "k00200").inputFiles() == []
    assert df.where(F.col("key") == "a").inputFiles() == []
    assert len(df.where(F.col("key").between("k00040", "k00060")).inputFiles()) == 2
