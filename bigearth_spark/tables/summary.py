"""A summary of a lake: rows and version per table, pairs per split, top labels, quarantine."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import SparkSession
from rich.console import Console
from rich.table import Table

from bigearth_spark.tables import delta_log
from bigearth_spark.tables.schema import DATABASE, TABLES
from bigearth_spark.tables.write import table_path, table_state


def table_states(spark: SparkSession, lake: str) -> dict[str, dict[str, int]]:
    """Rows and version of each of the lake's tables, from their logs (no scan of the data)."""
    tables = {}
    for name in TABLES:
        path = table_path(lake, name)
        if delta_log.has_commit(path):
            version, rows = table_state(spark, path)
            tables[name] = {"rows": rows, "version": version}
    return tables


def lake_summary(spark: SparkSession, lake: str, db: str = DATABASE, top: int = 10) -> dict:
    """Counts of the lake's tables as a dict (tables, splits, top_labels, quarantine): queries
    over the views that scan ``pairs``' small columns, ``labels`` and ``quarantine``."""
    queries = {
        "splits": f"SELECT * FROM {db}.split_counts ORDER BY archive, split",
        "top_labels": (
            f"SELECT archive, label, COUNT(*) AS patches FROM {db}.labels "
            "WHERE nomenclature = '19' "
            f"GROUP BY archive, label ORDER BY patches DESC, label LIMIT {top}"
        ),
        "quarantine": f"SELECT * FROM {db}.quarantine_counts ORDER BY reason",
    }

    def rows(sql: str) -> list[dict]:
        return [r.asDict() for r in spark.sql(sql).collect()]

    with ThreadPoolExecutor(len(queries)) as pool:  # small queries: side by side
        results = dict(zip(queries, pool.map(rows, queries.values()), strict=True))
    return {"tables": table_states(spark, lake), **results}


# sections of lake_summary's dict after "tables": key → (title, columns)
SECTIONS = {
    "splits": (
        "Pairs per split",
        ["archive", "split", "pairs", "with_s1", "snow", "cloud_or_shadow", "no_19_label"],
    ),
    "top_labels": ("Top 19-class labels", ["archive", "label", "patches"]),
    "quarantine": ("Quarantine", ["reason", "kind", "items"]),
}


def _print_table(console: Console, title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console.print(table)


def print_summary(summary: dict, console: Console | None = None) -> None:
    """Print :func:`lake_summary`'s dict as tables: the sections it holds (``tables`` alone is
    :func:`table_states`'s)."""
    console = console or Console()
    tables = [[n, v["rows"], v["version"]] for n, v in summary["tables"].items()]
    _print_table(console, "Tables", ["table", "rows", "version"], tables)
    for key, (title, columns) in SECTIONS.items():
        if key in summary:
            _print_table(console, title, columns, [list(r.values()) for r in summary[key]])
