"""Data files of a partitioned Delta table written straight from a Python task (pyarrow).

The ingest decodes bands in Python; handing them to the JVM only to have Spark's Parquet writer
encode them again cost three copies of every band byte (Arrow → rows → Parquet pages). A decode
task instead writes its rows here, into one open file per partition value, in row groups of
:data:`ROWS_PER_GROUP` rows (what Spark's writer gave), and returns one Delta ``add`` action per
file, with the statistics Spark's writer would record (:mod:`~bigearth_spark.tables.file_stats`:
min, max and NULL counts, so that readers skip the files a predicate rules out). The driver
commits those actions in one transaction (:func:`bigearth_spark.tables.write.commit_files`):
files of a task that failed or was killed are never committed, so they stay dead files, as with
Spark's own writer.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from urllib.parse import quote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from bigearth_spark import storage
from bigearth_spark.tables import delta_log
from bigearth_spark.tables.file_stats import FileStats

ROWS_PER_GROUP = 100  # ~28 MB of S2+S1 bands before compression: what Spark's writer made
ROWS_PER_FILE = 2000  # as spark.sql.files.maxRecordsPerFile
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's (and Spark's) folder for a NULL value
SPARK_SCHEMA_KEY = "org.apache.spark.sql.parquet.row.metadata"  # where Spark keeps its schema


def record_batch(
    rows: list[dict], schema: pa.Schema, given: dict[str, pa.Array] | None = None
) -> pa.RecordBatch:
    """Arrow batch of ``rows`` (dicts keyed by the fields of ``schema``), built column by column
    (~20x faster than ``from_pylist``); columns in ``given`` are taken as they are."""
    given = given or {}
    arrays = [
        given[f.name] if f.name in given else pa.array([r.get(f.name) for r in rows], f.type)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def leaf_paths(schema: pa.Schema | pa.DataType, prefix: str = "") -> Iterator[str]:
    """The Parquet column paths of ``schema``'s leaves, as pyarrow's per-column options name
    them (``labels43.list.element``, ``issues.list.element.kind``)."""
    fields = (
        schema
        if isinstance(schema, pa.Schema)
        else [schema.field(i) for i in range(schema.num_fields)]
    )
    for f in fields:
        path = f"{prefix}{f.name}"
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            yield from leaf_paths(pa.struct([f.type.value_field]), f"{path}.list.")
        elif pa.types.is_struct(f.type):
            yield from leaf_paths(f.type, f"{path}.")
        else:
            yield path


class _OpenFile:
    """One data file being written: a Parquet writer, the rows waiting for a row group and the
    statistics of the rows written."""

    def __init__(self, fs, root: str, relative: str, schema: pa.Schema, options: dict) -> None:
        self.fs, self.relative, self.rows, self.pending = fs, relative, 0, []
        self.stats = FileStats(schema)
        self.path = f"{root}/{relative}"
        if isinstance(fs, pafs.LocalFileSystem):  # object stores have no folders to create
            fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        self.stream = fs.open_output_stream(self.path)
        self.writer = pq.ParquetWriter(self.stream, schema, **options)

    def flush(self, schema: pa.Schema) -> None:
        if self.pending:
            batch = record_batch(self.pending, schema)
            self.stats.add(batch)
            self.writer.write_batch(batch)
            self.pending = []

    def close(self) -> tuple[str, int]:
        """Close the file; return its path relative to the table and its size."""
        self.writer.close()
        self.stream.close()
        return self.relative, self.fs.get_file_info(self.path).size


class PartitionedFileWriter:
    """Writes rows (dicts with every column of ``schema``) into data files of the table at
    ``table_uri``, partitioned by ``partition``; one instance per task."""

    def __init__(
        self,
        table_uri: str,
        schema: T.StructType,
        partition: str,
        dictionary: list[str],
        statistics: list[str],
        compression_level: int = 3,
        codecs: dict[str, str] | None = None,
    ) -> None:
        """``dictionary`` and ``statistics``: the columns that get Parquet dictionaries and
        statistics; ``compression_level``: zstd's level (3: parquet-mr's default); ``codecs``:
        the Parquet codec of some columns (``"zstd"``, ``"lz4"``, ``"none"``), zstd for the
        others."""
        self.table_uri, self.partition = table_uri, partition
        stored = T.StructType([f for f in schema.fields if f.name != partition])
        nullable = T.StructType(
            [T.StructField(f.name, f.dataType, True, f.metadata) for f in stored]
        )
        self.schema = to_arrow_schema(nullable).with_metadata({SPARK_SCHEMA_KEY: nullable.json()})
        codec = {
            path: (codecs or {}).get(path.split(".")[0], "zstd") for path in leaf_paths(self.schema)
        }
        self.options = {
            "compression": codec,
            "compression_level": {c: compression_level for c, z in codec.items() if z == "zstd"},
            "use_dictionary": dictionary,
            "write_statistics": statistics,
            "coerce_timestamps": "us",
            "allow_truncated_timestamps": True,
        }

    def write(self, rows: Iterable[dict], task: int) -> Iterator[str]:
        """Write ``rows``; yield the Delta ``add`` action (JSON) of each file once it is
        closed."""
        fs, root = storage.filesystem(self.table_uri)
        open_files: dict[str | None, _OpenFile] = {}
        for row in rows:
            value = row.get(self.partition)
            f = open_files.get(value)
            if f is None:
                folder = quote(value if value is not None else NULL_PARTITION, safe="")
                name = f"part-{task:05d}-{uuid.uuid4()}.c000.zstd.parquet"
                f = _OpenFile(
                    fs, root, f"{self.partition}={folder}/{name}", self.schema, self.options
                )
                open_files[value] = f
            f.pending.append(row)
            f.rows += 1
            if len(f.pending) == ROWS_PER_GROUP:
                f.flush(self.schema)
            if f.rows == ROWS_PER_FILE:
                yield self._add(open_files.pop(value), value)
        for value, f in open_files.items():
            yield self._add(f, value)

    def _add(self, f: _OpenFile, value: str | None) -> str:
        f.flush(self.schema)
        relative, size = f.close()
        return add_action(relative, {self.partition: value}, size, f.stats.json())


def add_action(
    relative: str, partition_values: dict[str, str | None], size: int, stats: str
) -> str:
    """The Delta ``add`` action (JSON) of a data file written at ``relative`` in its table, with
    its ``stats`` (JSON, :meth:`FileStats.json`)."""
    add = {
        "path": quote(relative, safe="/="),
        "partitionValues": partition_values,
        "size": size,
        "modificationTime": int(time.time() * 1000),
        "dataChange": True,
        "stats": stats,
    }
    return json.dumps({"add": add})


def write_file(table_uri: str, rows: pa.Table) -> str:
    """Write ``rows`` (at least one) as one data file of the unpartitioned table at
    ``table_uri`` (a few rows, e.g. the lease); return its ``add`` action."""
    add = write_batches(table_uri, rows.schema, rows.to_batches())
    if add is None:
        raise ValueError(f"{table_uri}: no row to write")
    return add


def write_batches(
    table_uri: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
) -> str | None:
    """Stream ``batches`` (of ``schema``) into one data file of the unpartitioned table at
    ``table_uri``; return its ``add`` action, or None (and no file) when they hold no row."""
    fs, root = storage.filesystem(table_uri)
    relative = f"part-00000-{uuid.uuid4()}-c000.zstd.parquet"
    path, stats = f"{root}/{relative}", FileStats(schema)
    batches = (b for b in batches if b.num_rows)
    first = next(batches, None)
    if first is None:
        return None
    with fs.open_output_stream(path) as out, pq.ParquetWriter(out, schema, compression="zstd") as w:
        for batch in itertools.chain([first], batches):
            w.write_batch(batch)
            stats.add(batch)
    return add_action(relative, {}, fs.get_file_info(path).size, stats.json())


def remove_action(file: delta_log.LiveFile) -> str:
    """The Delta ``remove`` action (JSON) of a live file, named as its log names it. With the
    file's size and partition values (``extendedFileMetadata``) where its ``add`` recorded the
    size: Delta then derives the new version's checksum from the last one and the commit's
    actions; a ``remove`` without a size makes every commit rebuild the table's state with
    Spark jobs."""
    remove = {
        "path": file.log_path,
        "deletionTimestamp": int(time.time() * 1000),
        "dataChange": True,
    }
    if file.size is not None:
        remove.update(
            extendedFileMetadata=True, partitionValues=file.partition_values, size=file.size
        )
    return json.dumps({"remove": remove})


def num_records(add: str) -> int:
    """The rows of the file of an ``add`` action (JSON) made by :class:`PartitionedFileWriter`."""
    return json.loads(json.loads(add)["add"]["stats"])["numRecords"]
