"""Small tables that the driver writes itself: each change is one Delta transaction of files
written with pyarrow, and no Spark job (the lease, the nomenclature, the official lists,
``patch_metadata``).

:func:`open_table` starts a transaction, reads the rows of its version with pyarrow and declares
that the transaction read the whole table, so that a commit by anyone else in between makes this
one fail (Delta's conflict check). The caller then appends one file, or replaces every live file
with one file: Spark reads them as its own (the table's column types).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from bigearth_spark.tables import delta_log, part_files, write

_NULL, _ITEM, _FIELD = "\x00", "\x1f", "\x1e"  # fingerprint markers: NULL, list item, column


@dataclass
class SmallTable:
    """A small unpartitioned Delta table, read at the version of an open transaction."""

    spark: SparkSession
    path: str
    txn: object  # the JVM OptimisticTransaction (see write.start_replace)
    snapshot: delta_log.Snapshot
    rows: pa.Table  # every row of the version, in the table's Arrow schema


def arrow_rows(rows: pa.Table | pd.DataFrame | list[tuple], schema: T.StructType) -> pa.Table:
    """``rows`` (a table or DataFrame with the columns of ``schema``, or tuples in its order) as
    an Arrow table of the Spark ``schema``'s types."""
    target = to_arrow_schema(schema)
    if isinstance(rows, pa.Table):
        return rows.select(target.names).cast(target)
    if isinstance(rows, pd.DataFrame):
        return pa.Table.from_pandas(rows[list(schema.names)], schema=target, preserve_index=False)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in target]
    arrays = [pa.array(list(c), f.type) for c, f in zip(columns, target, strict=True)]
    return pa.table(arrays, schema=target)


def open_table(spark: SparkSession, path: str, schema: T.StructType) -> SmallTable:
    """Start a transaction on the table at ``path`` and read its rows (``schema``) with pyarrow
    at the transaction's version."""
    txn, snap = write.start_replace(spark, path)
    return SmallTable(spark, path, txn, snap, read(snap, schema))


def read(snap: delta_log.Snapshot, schema: T.StructType) -> pa.Table:
    """The rows of a small table's version ``snap`` in the Arrow types of ``schema``."""
    target = to_arrow_schema(schema)
    rows = delta_log.read_small(snap)
    return arrow_rows(rows, schema) if rows.num_columns else target.empty_table()


def append(table: SmallTable, rows: pa.Table) -> None:
    """Commit ``rows`` as one new file of ``table`` (none when there is no row)."""
    if rows.num_rows:
        write.commit(table.spark, table.txn, [part_files.write_file(table.path, rows)])


def replace(table: SmallTable, rows: pa.Table | None) -> None:
    """Make ``rows`` (None: no row) the whole content of ``table``: its live files removed and
    one file added, in one commit (none when the table is empty and stays empty)."""
    adds = [part_files.write_file(table.path, rows)] if rows is not None and rows.num_rows else []
    write.replace_files(table.spark, table.txn, table.snapshot, adds)


def fingerprint(rows: pa.Table) -> pa.Array:
    """One string per row that tells the rows' values apart, NULLs from values and NULL lists
    from empty ones included (list items must not be NULL, nor hold the separators ``\\x1e`` and
    ``\\x1f``)."""
    parts = []
    for column in rows.columns:
        if pa.types.is_list(column.type):  # the item count, then the items
            count = pc.cast(pc.list_value_length(column), pa.string())
            items = pc.binary_join(pc.cast(column, pa.list_(pa.string())), _ITEM)
            text = pc.binary_join_element_wise(count, items, ":")
        else:  # a value is "=" and its text: never the NULL marker
            text = pc.binary_join_element_wise("=", pc.cast(column, pa.string()), "")
        parts.append(pc.fill_null(text, _NULL))
    if not parts or not rows.num_rows:
        return pa.array([""] * rows.num_rows, pa.string())
    return pc.binary_join_element_wise(*parts, _FIELD)


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Whether ``a`` and ``b`` hold the same rows (as multisets)."""
    return sorted(fingerprint(a).to_pylist()) == sorted(fingerprint(b).to_pylist())


def changed_rows(current: pa.Table, incoming: pa.Table, keys: list[str]) -> tuple[pa.Table, bool]:
    """(the rows of ``incoming`` whose ``keys`` ``current`` lacks or holds with other values,
    whether any of them has keys that ``current`` holds)."""
    have = pa.table({**{k: current[k] for k in keys}, "_had": fingerprint(current)})
    index = pa.array(range(incoming.num_rows), pa.int64())
    want = pa.table({**{k: incoming[k] for k in keys}, "_new": fingerprint(incoming), "_i": index})
    joined = want.join(have, keys, join_type="left outer")
    differs = pc.invert(pc.fill_null(pc.equal(joined["_new"], joined["_had"]), False))
    changed = joined.filter(differs)
    order = pc.sort_indices(changed["_i"])
    rows = incoming.take(pc.take(changed["_i"], order))
    return rows, bool(pc.any(pc.is_valid(changed["_had"])).as_py() or False)


def upsert(table: SmallTable, changed: pa.Table, keys: list[str], updates: bool) -> pa.Table:
    """Commit ``changed`` rows (see :func:`changed_rows`): appended when they are all new, else
    the table rewritten with them in place of the rows of their keys; return the table's rows
    after the commit."""
    if not updates:
        append(table, changed)
        return pa.concat_tables([table.rows, changed])
    stale = pa.table({**{k: changed[k] for k in keys}, "_stale": pa.array([True] * len(changed))})
    marked = table.rows.append_column("_i", pa.array(range(table.rows.num_rows), pa.int64()))
    joined = marked.select([*keys, "_i"]).join(stale, keys, join_type="left outer")
    keep = pc.filter(joined["_i"], pc.is_null(joined["_stale"]))
    keep = pc.take(keep, pc.sort_indices(keep))
    rows = pa.concat_tables([table.rows.take(keep), changed])
    replace(table, rows)
    return rows
