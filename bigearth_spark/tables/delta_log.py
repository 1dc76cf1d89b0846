"""Live files of a Delta table version, read from its transaction log without Spark.

Local paths and URIs (``s3a://``...) are read through :mod:`bigearth_spark.storage`. A Delta
folder also holds dead parquet files (rewritten by MERGE, not yet vacuumed): only the
files that a version's log replay keeps may be handed to a reader (the training reader reads
their row groups with pyarrow). Supports classic checkpoints (single and multi-part) and JSON
commits; refuses deletion vectors (a file with one has rows that must not be read) and v2
checkpoints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from bigearth_spark import storage

_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")


class DeltaLogError(RuntimeError):
    """The log cannot be replayed into a list of plain parquet files."""


@dataclass(frozen=True)
class LiveFile:
    """One live data file of a version."""

    path: str  # absolute local path or URI
    partition_values: dict[str, str | None]
    num_records: int | None
    log_path: str  # the path as the log records it (what a ``remove`` action must name)
    size: int | None = None  # bytes, as the ``add`` action records them


@dataclass
class Snapshot:
    """A Delta table version and its live files."""

    version: int
    files: list[LiveFile] = field(default_factory=list)

    def where(self, **partition: str | None) -> list[LiveFile]:
        """Live files whose partition values equal ``partition`` (e.g. ``split="train"``)."""
        return [
            f
            for f in self.files
            if all(f.partition_values.get(k) == v for k, v in partition.items())
        ]


def _apply(actions: dict[str, dict], action: dict) -> None:
    """Replay one log action onto ``actions`` (live path → its add action)."""
    if action.get("add"):
        add = action["add"]
        if add.get("deletionVector"):
            raise DeltaLogError(f"{add['path']} has a deletion vector; disable them on the table")
        actions[add["path"]] = add
    elif action.get("remove"):
        actions.pop(action["remove"]["path"], None)
    elif action.get("checkpointMetadata") or action.get("sidecar"):
        raise DeltaLogError("v2 checkpoints are not supported")


def _checkpoint_actions(log: list[storage.Entry], version: int) -> tuple[int, dict[str, dict]]:
    parts: dict[int, list[str]] = {}
    for p in log:
        m = _CHECKPOINT.match(p.name)
        if m and int(m.group(1)) <= version:
            parts.setdefault(int(m.group(1)), []).append(p.path)
    if not parts:
        return -1, {}
    start = max(parts)
    adds: dict[str, dict] = {}
    for p in sorted(parts[start]):
        data = pa.BufferReader(storage.read_bytes(p))
        table = pq.read_table(data, columns=["add"]).column("add").to_pylist()
        for add in table:
            if add:
                _apply(adds, {"add": add})
    return start, adds


def has_commit(table: str) -> bool:
    """Whether a Delta table exists at ``table`` (a path or URI): its log holds a commit (one
    listing of ``_delta_log``, no replay)."""
    try:
        log = storage.list_dir(storage.join(storage.normalize(table), "_delta_log"))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return any(_COMMIT.match(p.name) for p in log)


def _log(table: str) -> tuple[str, list[storage.Entry], list[int]]:
    """(the table's root, the listing of its ``_delta_log``, its commit versions in order)."""
    root = storage.normalize(table)
    try:
        log = storage.list_dir(storage.join(root, "_delta_log"))
    except (FileNotFoundError, NotADirectoryError):
        raise DeltaLogError(f"{table} is not a Delta table (no _delta_log)") from None
    commits = sorted(int(m.group(1)) for p in log if (m := _COMMIT.match(p.name)))
    if not commits:
        raise DeltaLogError(f"{table}: empty log")
    return root, log, commits


def _commit_actions(root: str, version: int) -> list[dict]:
    commit = storage.read_bytes(storage.join(root, "_delta_log", f"{version:020d}.json"))
    return [json.loads(line) for line in commit.decode().splitlines() if line.strip()]


def last_commit_info(table: str) -> dict:
    """The ``commitInfo`` of the latest commit of the Delta table at ``table`` (e.g. its
    ``userMetadata``); empty when that commit records none."""
    root, _, commits = _log(table)
    infos = [a["commitInfo"] for a in _commit_actions(root, commits[-1]) if "commitInfo" in a]
    return infos[0] if infos else {}


def snapshot(table: str, version: int | None = None) -> Snapshot:
    """The live files of ``version`` (default: the latest) of the Delta table at ``table`` (a
    path or URI, see :mod:`bigearth_spark.storage`)."""
    root, log, commits = _log(table)
    latest = commits[-1]
    version = latest if version is None else version
    if version > latest or version < 0:
        raise DeltaLogError(f"{table}: version {version} does not exist (latest {latest})")
    start, adds = _checkpoint_actions(log, version)
    if start < 0 and commits[0] != 0:
        raise DeltaLogError(f"{table}: log before version {commits[0]} was cleaned up")
    for v in (c for c in commits if start < c <= version):
        for action in _commit_actions(root, v):
            _apply(adds, action)
    files = []
    for rel, add in sorted(adds.items()):
        stats = json.loads(add["stats"]) if add.get("stats") else {}
        files.append(
            LiveFile(
                unquote(rel) if storage.scheme(rel) else storage.join(root, unquote(rel)),
                dict(add.get("partitionValues") or {}),
                stats.get("numRecords"),
                rel,
                add.get("size"),
            )
        )
    return Snapshot(version, files)


def read_small(snap: Snapshot) -> pa.Table:
    """Every row of a small unpartitioned table's ``snap`` (e.g. the lease row), read with
    pyarrow: no Spark job. Timestamps come back as naive UTC microseconds."""
    if any(f.partition_values for f in snap.files):
        raise DeltaLogError("read_small reads unpartitioned tables only")
    parts = [storage.parquet_file(f.path).read() for f in snap.files]
    if not parts:
        return pa.table({})
    table = pa.concat_tables(parts)
    for i, col in enumerate(table.schema):
        if pa.types.is_timestamp(col.type):  # Spark's INT96 (ns) or pyarrow's (us, UTC)
            table = table.set_column(i, col.name, table.column(i).cast(pa.timestamp("us")))
    return table
