"""Catalog registration: every lake table as ``<db>.<table>`` plus the views of ``views.sql``.

The lake location is the truth; registration is re-derived in each session (it is a no-op where
a persistent metastore already has the tables).
"""

from __future__ import annotations

from importlib.resources import files

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from bigearth_spark.tables.schema import CATALOG_TABLES, DATABASE
from bigearth_spark.tables.write import table_path


def view_statements(db: str = DATABASE) -> list[str]:
    """The CREATE VIEW statements of ``views.sql`` for database ``db``."""
    text = files("bigearth_spark.tables").joinpath("views.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip().format(db=db) for s in body.split("\n;") if s.strip()]


def _location(spark: SparkSession, table: str) -> str:
    location = spark.sql(f"DESCRIBE DETAIL {table}").first()["location"]
    return location.removeprefix("file:")


def outlives_session(spark: SparkSession) -> bool:
    """Whether the session's catalog is a metastore that outlives it (Hive, Glue...), rather
    than Spark's in-memory catalog, which a batch job's end discards."""
    return spark.conf.get("spark.sql.catalogImplementation", "in-memory") != "in-memory"


def register(spark: SparkSession, lake: str, db: str = DATABASE) -> list[str]:
    """Register the lake's existing tables and the views; return the table names registered."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    registered = []
    for name in CATALOG_TABLES:
        path = table_path(lake, name)
        if not DeltaTable.isDeltaTable(spark, path):
            continue
        if spark.catalog.tableExists(f"{db}.{name}") and _location(spark, f"{db}.{name}") != path:
            spark.sql(f"DROP TABLE {db}.{name}")  # registered for another lake: re-point it
        spark.sql(f"CREATE TABLE IF NOT EXISTS {db}.{name} USING DELTA LOCATION '{path}'")
        registered.append(name)
    if {"labels", "pairs", "quarantine"} <= set(registered):
        for statement in view_statements(db):
            spark.sql(statement)
    return registered
