"""Delta's per-file statistics of a data file written with pyarrow, as Delta's Spark writer
(delta-spark 4.0, ``StatisticsCollection``) collects them: the ``stats`` of an ``add`` action.

``{"numRecords": n, "minValues": {...}, "maxValues": {...}, "nullCount": {...}}`` over the first
:data:`INDEXED_COLUMNS` leaf columns of the file (Delta's default
``delta.dataSkippingNumIndexedCols``; struct fields are leaves, nested as JSON objects; the
partition column is not in the file). Every such column gets a ``nullCount``; strings, integers,
floats and timestamps get a min and a max, which let Spark (and other engines) skip the files
that a predicate rules out, e.g. every file but the one holding ``patch_id = '...'``. A column
whose values are all NULL has no min or max (as Spark writes them). Binary (band bytes),
booleans, lists and other types get no min and max, as with Spark, and neither do dates and
decimals here, which no table of the lake has (no file is skipped on such a column).

Strings keep Delta's rules: a min is cut to its first :data:`STRING_PREFIX` characters; a longer
max is cut and given a tie-breaker character so that it still bounds every value (in UTF-16
units, as Java counts them). Timestamps are written in milliseconds, UTC, truncated (Delta's
reader widens a max by one millisecond). Float NaN is the largest value, as in Spark.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

INDEXED_COLUMNS = 32  # delta.dataSkippingNumIndexedCols' default
STRING_PREFIX = 32  # spark.databricks.delta.stats.skipping.string.prefixLength's default
_ASCII_MAX, _UTF8_MAX = "\x7f", "\U0010ffff"  # Delta's tie-breakers for a cut max
_EPOCH = datetime(1970, 1, 1)


def _leaves(fields: list[pa.Field], budget: int) -> list[tuple[tuple[str, ...], pa.DataType]]:
    """(path, type) of the first ``budget`` leaf columns of ``fields`` (Delta's
    ``truncateSchema``: a struct's fields are leaves)."""
    leaves: list[tuple[tuple[str, ...], pa.DataType]] = []
    for f in fields:
        if len(leaves) >= budget:
            break
        if pa.types.is_struct(f.type):
            inner = _leaves(list(f.type), budget - len(leaves))
            leaves += [((f.name, *p), t) for p, t in inner]
        else:
            leaves.append(((f.name,), f.type))
    return leaves


def _kind(t: pa.DataType) -> str | None:
    """How a column of type ``t`` gets a min and max (None: it gets none)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_timestamp(t) and t.tz is not None:  # Spark's TimestampType (UTC instants)
        return "timestamp"
    return None


def _truncate_max(value: str) -> str | None:
    """A column's max ``value`` cut to about :data:`STRING_PREFIX` characters and still >= it
    (Delta's ``truncateMaxStringAgg``, on Java's UTF-16 units): the prefix (a surrogate pair is
    not cut, characters U+10FFFF after it are kept), then ``\\x7f`` when the next character is
    ASCII, else U+10FFFF. None (no max) when no such bound fits in twice the prefix."""
    prefix = STRING_PREFIX
    units = value.encode("utf-16-le")
    n = len(units) // 2
    if n <= prefix:
        return value
    unit = lambda i: int.from_bytes(units[2 * i : 2 * i + 2], "little")  # noqa: E731
    cut = prefix + 1 if 0xD800 <= unit(prefix - 1) < 0xDC00 <= unit(prefix) < 0xE000 else prefix
    while cut <= 2 * prefix:
        if cut >= n:
            return value
        if cut + 1 < n and (unit(cut), unit(cut + 1)) == (0xDBFF, 0xDFFF):  # U+10FFFF
            cut += 2
        elif unit(cut) < 0x7F:
            return units[: 2 * cut].decode("utf-16-le") + _ASCII_MAX
        else:
            return units[: 2 * cut].decode("utf-16-le") + _UTF8_MAX
    return None


def _timestamp(micros: int) -> str:
    """Spark's JSON form of a timestamp (session time zone UTC), truncated to milliseconds."""
    t = _EPOCH + timedelta(milliseconds=micros // 1000)
    return t.isoformat(timespec="milliseconds") + "Z"


def _float(value: float) -> float | str:
    """Jackson's form of a double: non-finite values as quoted names."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class _Column:
    """The statistics of one leaf column, folded over the batches of a file."""

    def __init__(self, path: tuple[str, ...], kind: str | None) -> None:
        self.path, self.kind = path, kind
        self.nulls, self.nan = 0, False
        self.min = self.max = None

    def add(self, values: pa.Array) -> None:
        self.nulls += values.null_count
        if self.kind is None or values.null_count == len(values):
            return
        if self.kind == "timestamp":
            values = values.cast(pa.int64())
        elif self.kind == "float":
            nan = pc.is_nan(values)
            if pc.any(nan).as_py():
                self.nan = True
                values = values.filter(pc.invert(nan))
        if len(values) == values.null_count:
            return
        bounds = pc.min_max(values).as_py()
        low, high = bounds["min"], bounds["max"]
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)

    def bounds(self) -> tuple[object, object]:
        """(min, max) in the stats' JSON form; (None, None) when the file has no value."""
        low, high = self.min, self.max
        if self.nan:  # NaN is the largest double in Spark's order
            low, high = float("nan") if low is None else low, float("nan")
        if low is None:
            return None, None
        if self.kind == "string":
            return low[:STRING_PREFIX], _truncate_max(high)
        if self.kind == "timestamp":
            return _timestamp(low), _timestamp(high)
        if self.kind == "float":
            return _float(low), _float(high)
        return low, high


def _put(tree: dict, path: tuple[str, ...], value: object) -> None:
    """Set ``value`` at ``path`` in nested dicts (the struct's object is made even when the
    value is None, as Spark's ``to_json`` writes an empty struct ``{}``)."""
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    if value is not None:
        tree[path[-1]] = value


class FileStats:
    """Delta's statistics of the rows written into one data file of Arrow ``schema``: call
    :meth:`add` with every batch written, then :meth:`json`."""

    def __init__(self, schema: pa.Schema) -> None:
        self.rows = 0
        self.columns = [_Column(p, _kind(t)) for p, t in _leaves(list(schema), INDEXED_COLUMNS)]

    def add(self, batch: pa.RecordBatch) -> None:
        """Fold the rows of ``batch`` (of the schema) into the statistics."""
        self.rows += batch.num_rows
        for c in self.columns:
            values = batch.column(c.path[0])
            for name in c.path[1:]:
                values = pc.struct_field(values, name)  # NULL where the struct is NULL
            c.add(values)

    def json(self) -> str:
        """The ``stats`` JSON string of the file's ``add`` action."""
        stats: dict = {"numRecords": self.rows}
        ranged = [c for c in self.columns if c.kind is not None]
        if ranged:
            low: dict = {}
            high: dict = {}
            for c in ranged:
                lo, hi = c.bounds()
                _put(low, c.path, lo)
                _put(high, c.path, hi)
            stats.update(minValues=low, maxValues=high)
        if self.columns:
            nulls: dict = {}
            for c in self.columns:
                _put(nulls, c.path, c.nulls)
            stats["nullCount"] = nulls
        return json.dumps(stats, separators=(",", ":"))
