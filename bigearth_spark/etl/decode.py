"""Decoding on the executors: pair units → ``pairs`` rows of band bytes (mapInArrow).

One task reads every folder of a unit (S2, its S1 partner, its reference map) and emits one
row holding all their bands, so each band byte is decoded once, written once and never
shuffled. Output batches are small (:data:`BATCH_ROWS` rows) and nothing is accumulated, so a
task's memory is bounded by a batch whatever the archive's size. A side that cannot be read
becomes an item of the row's ``issues`` (its bands stay NULL); nothing is dropped. I/O errors are
retried before they count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from bigearth_spark import fetch, storage
from bigearth_spark.archive import reader, tarball
from bigearth_spark.archive.bands import encode_band
from bigearth_spark.archive.names import BadNameError
from bigearth_spark.retry import READ_ATTEMPTS, is_storage_error, retried
from bigearth_spark.tables import part_files
from bigearth_spark.tables.schema import (
    ISSUES,
    PAIR_SOURCE,
    S1_JSON,
    SIDE_FILES,
    SIDE_PATH,
    SIDES,
    STRS,
)

BATCH_ROWS = 16  # ~4.5 MB of S1+S2 bands per Arrow batch
STORED = T.StructField("stored_sides", STRS, False)
Finish = Callable[[dict, dict], None]  # (decoded row, its unit): completes the row in place


def output_schema(passthrough: list[T.StructField]) -> T.StructType:
    """Schema of the decoder's output: the pair's source columns, its issues, the sides stored,
    the ``passthrough`` columns of the input, then the band columns."""
    bands = [f for side in SIDES.values() for f in side]
    return T.StructType(
        [*PAIR_SOURCE, T.StructField("issues", ISSUES), STORED, *passthrough, *bands]
    )


def _transient(e: BaseException) -> bool:
    return is_storage_error(e) or (
        isinstance(e, reader.PatchError) and e.reason in reader.TRANSIENT_REASONS
    )


def read_side(
    folder_type: str,
    path: str,
    attempts: int = READ_ATTEMPTS,
    names: set[str] | None = None,
    fetched: fetch.Fetched | None = None,
) -> reader.PatchRecord:
    """Read one patch folder, up to ``attempts`` times with a short backoff while it fails with
    an I/O or storage error (reason ``read_error``: read again by the next run too). ``names``:
    its entries as discovery listed them (None: listed here); ``fetched``: its files' reads
    under way (the first attempt takes them, a retry reads again).

    Raises :class:`reader.PatchError`; an unforeseen exception becomes reason ``unreadable``
    (not retried in the run, read again by the next one)."""
    reads = [fetch.reader(fetched)] if fetched else []

    def attempt() -> reader.PatchRecord:
        read = reads.pop() if reads else storage.read_bytes
        return reader.read_patch(path, folder_type, names, read)

    try:
        return retried(attempt, _transient, attempts)
    except reader.PatchError:
        raise
    except BadNameError as e:
        raise reader.PatchError(reader.BAD_NAME, path, str(e)) from None
    except OSError as e:
        raise reader.PatchError(reader.READ_ERROR, path, f"{type(e).__name__}: {e}") from None
    except Exception as e:  # an unforeseen defect quarantines the side, not the job
        raise reader.PatchError(reader.UNREADABLE, path, f"{type(e).__name__}: {e}") from None


def _fill(row: dict, side: str, rec: reader.PatchRecord) -> None:
    """Copy a side's record into the pair row."""
    row.update({name: encode_band(name, arr) for name, arr in rec.bands.items()})
    row[SIDE_PATH[side]] = rec.path
    row["issues"] += [
        {
            "patch_id": rec.patch_id,
            "kind": side,
            "path": f,
            "reason": "stray_file",
            "message": "stray file in a patch folder",
        }
        for f in rec.stray_files
    ]
    if side == "s1":
        row.update(
            s1_patch_id=rec.patch_id, s1_acquired=rec.acquired, s1_source_product=rec.source_product
        )
    if side in ("s2", "s1"):
        first = side == "s2" or row.get("epsg") is None  # geometry and labels: S2 first
        if first:
            row.update(epsg=rec.epsg, ulx=rec.ulx, uly=rec.uly, lrx=rec.lrx, lry=rec.lry)
        if side == "s2":
            row.update(tile=rec.tile, acquired=rec.acquired, source_product=rec.source_product)
        if rec.labels43 is not None and (first or row.get("labels43") is None):
            row["labels43"] = rec.labels43


def _checked_partner(unit: dict, rec: reader.PatchRecord) -> reader.PatchRecord:
    """``rec``, unless it is a v1 S1 patch whose JSON names another S2 partner than the unit's
    key: discovery could not read that JSON (an I/O error: it keys such a folder by its own id),
    so the pair is formed by the next run (reason ``read_error``)."""
    partner = rec.corresponding_s2_patch
    if partner is None or partner == unit["patch_id"]:
        return rec
    detail = f"its JSON names S2 patch {partner} but could not be read while pairing"
    raise reader.PatchError(reader.READ_ERROR, rec.path, detail)


def _sides(unit: dict) -> Iterator[tuple[str, str, str]]:
    """(side, folder type, path) of the sides of ``unit`` to decode."""
    for side in SIDES:
        path = unit.get(SIDE_PATH[side])
        if unit.get(f"need_{side}") and path is not None:
            yield side, f"{unit['archive']}_{side}", path


def _carried(unit: dict) -> dict[str, bytes]:
    """The files whose content the unit carries: a v1 S1 JSON that discovery read."""
    data, path = unit.get(S1_JSON), unit.get(SIDE_PATH["s1"])
    if data is None or path is None or not unit.get("need_s1"):
        return {}
    folder_id = storage.basename(path)
    return {f"{path}/{folder_id}_labels_metadata.json": data}


def listed_files(unit: dict) -> list[str]:
    """The paths of the patch files that discovery listed in the unit's folders to decode (none
    for folders it did not list: local ones), but those the unit carries."""
    found = []
    carried = _carried(unit)
    for side, folder_type, path in _sides(unit):
        names = unit.get(SIDE_FILES[side])
        if names is not None:
            folder_id = storage.basename(path)
            files = reader.patch_files(folder_type, folder_id)
            found += [f"{path}/{f}" for f in files if f in names]
    return [f for f in found if f not in carried]


def decode_unit(unit: dict, fetched: fetch.Fetched | None = None) -> dict:
    """One pair row of a unit: the sides marked ``need_<side>`` read from their folders
    (``fetched``: reads of their files under way, see :func:`listed_files`; the files the unit
    carries are not read)."""
    row: dict = {"patch_id": unit["patch_id"], "archive": unit["archive"], "issues": []}
    fetched = {**(fetched or {}), **fetch.given(_carried(unit))}
    stored = []
    for side, folder_type, path in _sides(unit):
        names = unit.get(SIDE_FILES[side])
        try:
            listed = None if names is None else set(names)
            rec = read_side(folder_type, path, READ_ATTEMPTS, listed, fetched)
            rec = _checked_partner(unit, rec)
        except reader.PatchError as e:
            folder_id = storage.basename(path)
            row["issues"].append(
                {
                    "patch_id": folder_id,
                    "kind": side,
                    "path": path,
                    "reason": e.reason,
                    "message": str(e)[:2000],
                }
            )
            continue
        _fill(row, side, rec)
        stored.append(side)
    row["stored_sides"] = stored
    return row


def arrow_batch(
    rows: list[dict],
    schema: pa.Schema,
    passthrough: frozenset[str] = frozenset(),
    source: pa.RecordBatch | None = None,
    start: int = 0,
) -> pa.RecordBatch:
    """Arrow batch of decoded rows (:func:`~bigearth_spark.tables.part_files.record_batch`);
    ``passthrough`` columns are sliced from the ``source`` batch from ``start``."""
    given = {
        f.name: source.column(f.name).slice(start, len(rows)).cast(f.type)
        for f in schema
        if source is not None and f.name in passthrough
    }
    return part_files.record_batch(rows, schema, given)


def requests_in_flight(spark: SparkSession) -> int:
    """The reads each task keeps in flight on object stores (``--conf`` :data:`fetch.CONF_KEY`,
    default :data:`fetch.REQUESTS_IN_FLIGHT`)."""
    return fetch.in_flight(spark.conf.get(fetch.CONF_KEY, None))


def _units(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[pa.RecordBatch, int, dict]]:
    for batch in batches:
        for offset, unit in enumerate(batch.to_pylist()):
            yield batch, offset, unit


def decoded_rows(
    batches: Iterator[pa.RecordBatch],
    finish: Finish | None = None,
    in_flight: int = fetch.REQUESTS_IN_FLIGHT,
) -> Iterator[tuple[list[dict], pa.RecordBatch, int]]:
    """(rows, their batch of units, offset in it) per :data:`BATCH_ROWS` units of ``batches``
    (fewer at a batch's end); ``finish(row, unit)`` completes each row in place (derived
    columns, run stamp). The listed files of the next units are fetched ahead, ``in_flight``
    requests at a time."""
    tarball.revalidate()
    rows: list[dict] = []
    batch, start = None, 0
    units = fetch.ahead(_units(batches), lambda u: listed_files(u[2]), in_flight)
    for (source, offset, unit), fetched in units:
        if rows and (source is not batch or len(rows) == BATCH_ROWS):
            yield rows, batch, start
            rows = []
        if not rows:
            batch, start = source, offset
        row = decode_unit(unit, fetched)
        if finish is not None:
            finish(row, unit)
        rows.append(row)
    if rows:
        yield rows, batch, start


def decode(
    units: DataFrame,
    passthrough: list[str],
    finish: Finish | None = None,
    extra: list[T.StructField] | None = None,
) -> DataFrame:
    """Decode planned units (columns of :func:`bigearth_spark.etl.discover.discover` plus
    ``need_s2``, ``need_s1``, ``need_reference_map`` and the ``passthrough`` columns);
    ``finish`` sets the ``extra`` columns of each row."""
    fields = [units.schema[c] for c in passthrough]
    schema = output_schema([*fields, *(extra or [])])
    arrow_schema, copied = to_arrow_schema(schema), frozenset(passthrough)
    requests = requests_in_flight(units.sparkSession)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for rows, batch, start in decoded_rows(batches, finish, requests):
            yield arrow_batch(rows, arrow_schema, copied, batch, start)

    return units.mapInArrow(run, schema)
