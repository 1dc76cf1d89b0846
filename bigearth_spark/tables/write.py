"""Delta tables of the lake: create-if-missing, state from the log, and Delta transactions that
commit files written outside Spark (see also :mod:`bigearth_spark.tables.small_tables`).

Each commit is atomic, so a killed run leaves every table at its last version. Appends of rows
known to be new are safe only for the one writer of a lake: the ingest holds the lake's lease
(:mod:`bigearth_spark.tables.lease`) while it writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from delta.exceptions import DeltaConcurrentModificationException
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from bigearth_spark.retry import retried
from bigearth_spark.tables import delta_log, part_files
from bigearth_spark.tables.schema import PARTITION_COLUMNS, TABLE_PROPERTIES

T_ = TypeVar("T_")


def table_path(lake: str, name: str) -> str:
    """Location of table ``name`` under the lake URI (``file:``, ``s3a:``, ``abfss:`` ...)."""
    return f"{lake.rstrip('/')}/{name}"


def table_state(spark: SparkSession, path: str) -> tuple[int, int]:
    """(version, rows) of the Delta table at ``path``: read from the log's statistics for
    local tables (no Spark job), through Spark otherwise."""
    try:
        snap = delta_log.snapshot(path)
        if all(f.num_records is not None for f in snap.files):
            return snap.version, sum(f.num_records for f in snap.files)
    except delta_log.DeltaLogError:
        pass
    table = DeltaTable.forPath(spark, path)
    return table.history(1).first()["version"], table.toDF().count()


def ensure_table(spark: SparkSession, lake: str, name: str, schema: T.StructType) -> None:
    """Create the Delta table at its lake location if it does not exist yet (a table whose log
    has a commit is left alone, without a Spark call). Another job creating it at the same time
    is no error: one creation commits, and the other finds the table there."""
    path = table_path(lake, name)
    if delta_log.has_commit(path):
        return
    builder = (
        DeltaTable.createIfNotExists(spark)
        .location(path)
        .addColumns(schema)
        .partitionedBy(*PARTITION_COLUMNS.get(name, []))
    )
    for key, value in TABLE_PROPERTIES.get(name, {}).items():
        builder = builder.property(key, value)
    retry_conflicts(lambda: delta_log.has_commit(path) or builder.execute())


def is_empty(path: str) -> bool:
    """Whether the Delta table at ``path`` holds no row, by its log alone (no Spark job, also
    on object stores): no live file, or files whose statistics count 0 rows. False when the log
    cannot tell (files without statistics, a log this reader does not replay): callers then
    take their general path."""
    try:
        snap = delta_log.snapshot(path)
    except delta_log.DeltaLogError:
        return False
    return all(f.num_records == 0 for f in snap.files)


def start_transaction(spark: SparkSession, path: str):
    """A Delta transaction (JVM ``OptimisticTransaction``) on the table at ``path``, at its
    latest version: commit it with :func:`commit`."""
    jvm = spark._jvm
    return jvm.org.apache.spark.sql.delta.DeltaLog.forTable(
        spark._jsparkSession, path
    ).startTransaction()


def commit(
    spark: SparkSession,
    txn,
    actions: list[str],
    mode: str = "Append",
    partition_by: list[str] | None = None,
    user_metadata: str | None = None,
) -> int:
    """Commit ``actions`` (Delta ``add``/``remove`` actions as JSON) in ``txn``, recorded in the
    history as a ``WRITE`` in ``mode`` (with ``user_metadata`` in its ``commitInfo``); return
    the version. Delta's own transaction checks them (LogStore, protocol, conflicts with what
    ``txn`` read) and writes checkpoints."""
    jvm = spark._jvm
    action = getattr(jvm.org.apache.spark.sql.delta.actions, "Action$").__getattr__("MODULE$")
    operation = getattr(jvm.org.apache.spark.sql.delta, "DeltaOperations$Write")(
        getattr(jvm.org.apache.spark.sql.SaveMode, mode),
        jvm.scala.Option.apply(jvm.PythonUtils.toSeq(partition_by or [])),
        jvm.scala.Option.empty(),
        jvm.scala.Option.apply(user_metadata),
    )
    return txn.commit(jvm.PythonUtils.toSeq([action.fromJson(a) for a in actions]), operation)


def start_replace(spark: SparkSession, path: str) -> tuple[object, delta_log.Snapshot]:
    """(a transaction on the table at ``path`` that declares it read the whole table, so that
    any commit by someone else in between makes it fail; the live files of its version)."""
    txn = start_transaction(spark, path)
    snap = delta_log.snapshot(path, txn.readVersion())
    txn.readWholeTable()
    return txn, snap


def replace_files(
    spark: SparkSession,
    txn,
    snap: delta_log.Snapshot,
    adds: list[str],
    user_metadata: str | None = None,
) -> None:
    """Commit, in ``txn`` (see :func:`start_replace`), the removal of every live file of
    ``snap`` and the files of ``adds`` as the table's whole content; no commit when there is
    nothing to remove, add or record."""
    actions = [*(part_files.remove_action(f) for f in snap.files), *adds]
    if actions or user_metadata is not None:
        commit(spark, txn, actions, "Overwrite", user_metadata=user_metadata)


def commit_files(spark: SparkSession, path: str, adds: list[str], partition_by: list[str]) -> int:
    """Commit data files already written into the table at ``path`` (Delta ``add`` actions as
    JSON, see :mod:`bigearth_spark.tables.part_files`) as one append; return the version.
    Callers hold the lake's lease, as for :func:`append`."""
    return commit(spark, start_transaction(spark, path), adds, "Append", partition_by)


def is_conflict(e: BaseException) -> bool:
    """True for Delta's concurrent-commit errors (also when they arrive as Py4J/Spark errors)."""
    text = f"{type(e).__name__} {e}"
    return isinstance(e, DeltaConcurrentModificationException) or any(
        k in text
        for k in (
            "Concurrent",
            "DELTA_CONCURRENT",
            "FileAlreadyExists",
            "DELTA_PROTOCOL_CHANGED",
            "already exists",
            # creating a table that another job is creating: its log is there, its first
            # commit not yet
            "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION",
            "DELTA_TABLE_NOT_FOUND",
        )
    )


def retry_conflicts(action: Callable[[], T_], attempts: int = 8) -> T_:
    """Run ``action`` and retry it on Delta's concurrent-commit conflicts."""
    return retried(action, is_conflict, attempts, backoff=lambda attempt: 0.2 * (attempt + 1))
