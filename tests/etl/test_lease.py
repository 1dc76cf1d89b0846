"""The lake's ingest lease on a real Delta table: one holder, a clear error for a waiting job,
takeover of an expired lease, and the holder noticing that it lost the lease."""

from __future__ import annotations

import time

import pytest

from bigearth_spark.tables.lease import IngestLease, LakeBusyError, LeaseLostError


def test_second_job_waits_then_fails_naming_the_holder(spark, tmp_path):
    lake = str(tmp_path / "lake")
    with IngestLease(spark, lake, "run-a") as a:
        assert a.holder().run_id == "run-a"
        b = IngestLease(spark, lake, "run-b", wait_s=0.5, poll_s=0.1)
        with pytest.raises(LakeBusyError, match=r"ingest run run-a .*--lock-wait"):
            b.acquire()
    assert a.holder() is None  # released on exit
    with IngestLease(spark, lake, "run-b") as b:
        assert b.holder().run_id == "run-b"


def test_expired_lease_is_taken_over_and_the_old_holder_loses_it(spark, tmp_path):
    lake = str(tmp_path / "lake")
    a = IngestLease(spark, lake, "run-a", ttl_s=4.0)
    a.acquire()
    a._stop.set()  # a holder that stopped renewing (a hung or partitioned driver)
    a._thread.join()
    b = IngestLease(spark, lake, "run-b", ttl_s=60.0, wait_s=30.0, poll_s=0.2)
    start = time.monotonic()
    b.acquire()
    assert b.holder().run_id == "run-b" and time.monotonic() - start < 30
    assert not a.renew()
    with pytest.raises(LeaseLostError, match="run-a"):
        a.check()
    b.release()
    assert b.holder() is None
