"""One writer per lake: an ingest holds a lease row in the small Delta table ``ingest_lease``.

Delta commits are atomic per table, not per job, and Delta lets two blind appends of the same
keys both commit. So an ingest takes the lake's lease before it writes anything. Taking,
renewing and giving it up are each one Delta transaction on the one-row table that reads the
whole table (the row is read with pyarrow at the transaction's version) and replaces its file:
Delta's conflict detection serialises them (of two jobs taking a free lease at once, one commit
fails, and that job retries and then sees the lease held). They run no Spark job, so the
holder's heartbeat renews in time however busy its executors are. A lease whose holder stopped
renewing expires after ``ttl_s``, and one held by a dead process of this host is taken over at
once, so a killed run never blocks the next. Other jobs wait for the lease (``wait_s``), then
fail with a message naming the holder.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from pyspark.sql import SparkSession

from bigearth_spark.tables import delta_log, small_tables, write
from bigearth_spark.tables.schema import INGEST_LEASE, INGEST_LEASE_SCHEMA

log = logging.getLogger(__name__)
LEASE = "ingest"
POOL = "lease"  # the heartbeat's scheduler pool (Delta may run small jobs to read the log)


class LakeBusyError(RuntimeError):
    """Another ingest holds the lake's lease and did not release it in time."""


class LeaseLostError(RuntimeError):
    """This run's lease expired or was taken over while it was still writing."""


@dataclass(frozen=True)
class Holder:
    """Who holds the lease."""

    run_id: str
    host: str | None
    pid: int | None
    expires_at: datetime

    def describe(self) -> str:
        """A human-readable description for messages."""
        until = f"{self.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        return f"ingest run {self.run_id} (host {self.host}, pid {self.pid}, lease until {until})"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class IngestLease:
    """The lease of one lake for run ``run_id``; use as a context manager."""

    def __init__(
        self,
        spark: SparkSession,
        lake: str,
        run_id: str,
        ttl_s: float = 300.0,
        wait_s: float = 3600.0,
        poll_s: float = 2.0,
    ) -> None:
        self.spark, self.path, self.run_id = spark, write.table_path(lake, INGEST_LEASE), run_id
        self.ttl_s, self.wait_s, self.poll_s = ttl_s, wait_s, poll_s
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._stop = threading.Event()
        self._lost: str | None = None
        self._thread: threading.Thread | None = None

    # -- public --------------------------------------------------------------------------
    def __enter__(self) -> IngestLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait_s`` for another holder; start the heartbeat."""
        self._lost = None
        self._stop.clear()
        write.ensure_table(
            self.spark, self.path.rsplit("/", 1)[0], INGEST_LEASE, INGEST_LEASE_SCHEMA
        )
        deadline = time.monotonic() + self.wait_s
        announced = False
        while True:
            holder = self.holder()
            if holder is None or holder.run_id == self.run_id or self._takeable(holder):
                if self._try_take(holder):
                    break
                continue  # lost a race: look again at once
            if time.monotonic() > deadline:
                raise LakeBusyError(
                    f"the lake {self.path.rsplit('/', 1)[0]} is being written by "
                    f"{holder.describe()}; waited {self.wait_s:.0f} s. Re-run this job when that "
                    "one has finished (or raise --lock-wait)."
                )
            if not announced:
                log.warning("waiting for the lake's lease, held by %s", holder.describe())
                announced = True
            time.sleep(self.poll_s)
        log.info("ingest %s holds the lake's lease", self.run_id)
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise :class:`LeaseLostError` when the lease was lost; call before each commit."""
        if self._lost:
            raise LeaseLostError(self._lost)

    def release(self) -> None:
        """Stop the heartbeat and give the lease up (if it is still ours); :meth:`check` raises
        from then on."""
        self._lost = self._lost or f"run {self.run_id} gave the lake's lease up"
        self._stop.set()
        if self._thread:
            self._thread.join()
        write.retry_conflicts(lambda: self._replace(self._mine, with_row=False))

    def holder(self) -> Holder | None:
        """The current holder, or None when the lease is free."""
        return _holder(small_tables.read(delta_log.snapshot(self.path), INGEST_LEASE_SCHEMA))

    # -- internals -----------------------------------------------------------------------
    def _takeable(self, holder: Holder) -> bool:
        if holder.expires_at < _now():
            log.warning("taking over the expired lease of %s", holder.describe())
            return True
        if holder.host == self.host and holder.pid is not None and not _pid_alive(holder.pid):
            log.warning("taking over the lease of a dead process: %s", holder.describe())
            return True
        return False

    def _mine(self, holder: Holder | None) -> bool:
        return holder is not None and holder.run_id == self.run_id

    def _replace(self, expected: Callable[[Holder | None], bool], with_row: bool) -> bool:
        """One transaction: if the holder at its version is ``expected``, replace the table's
        rows with this run's lease row (or with none); False when it is not. The transaction
        reads the whole table, so a concurrent commit to it makes this one fail."""
        table = small_tables.open_table(self.spark, self.path, INGEST_LEASE_SCHEMA)
        if not expected(_holder(table.rows)):
            return False
        small_tables.replace(table, self._row() if with_row else None)
        return True

    def _row(self) -> pa.Table:
        now = _now()
        row = (LEASE, self.run_id, self.host, self.pid, now, now + timedelta(seconds=self.ttl_s))
        return small_tables.arrow_rows([row], INGEST_LEASE_SCHEMA)

    def _try_take(self, seen: Holder | None) -> bool:
        """Make the lease ours if its holder is still the one we saw; False when it changed
        or a concurrent commit won."""
        same = (lambda h: h is None) if seen is None else (lambda h: h == seen)
        try:
            return self._replace(same, with_row=True)
        except Exception as e:  # Delta's conflicts may arrive as plain Py4J errors
            if not write.is_conflict(e):
                raise
            return False

    def renew(self) -> bool:
        """Renew the lease once (the heartbeat does this every ``ttl_s / 4``); False, and
        :meth:`check` raises from then on, when the lease was lost."""
        try:
            mine = write.retry_conflicts(lambda: self._replace(self._mine, with_row=True))
        except Exception as e:
            self._lost = f"renewing the lake's lease failed: {e}"
            return False
        if not mine:
            self._lost = f"the lake's lease of run {self.run_id} was taken over"
            return False
        return True

    def _heartbeat(self) -> None:
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", POOL)
        while not self._stop.wait(self.ttl_s / 4) and self.renew():
            pass


def _holder(rows: pa.Table) -> Holder | None:
    """The holder recorded in the rows of the lease table, or None when it is free."""
    rows = [r for r in rows.to_pylist() if r.get("lease") == LEASE]
    if not rows:
        return None
    r = rows[0]
    expires = r["expires_at"].astimezone(timezone.utc).replace(tzinfo=None)  # naive UTC
    return Holder(r["run_id"], r["host"], r["pid"], expires)
