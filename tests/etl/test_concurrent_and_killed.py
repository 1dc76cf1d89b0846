"""Real ``spark-submit`` processes: ingests of one lake at the same time, and runs killed with
SIGKILL at several points, each followed by a re-run, give the lake of one uninterrupted ingest.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bigearth_spark.tables import schema
from bigearth_spark.tables.write import table_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_COLUMNS = {"ingest_run", "updated_at", "first_seen", "issues"}
CONF = {  # small, short-lived JVMs on a 2-core machine
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.databricks.delta.snapshotPartitions": "1",
}


def submit(inputs: list[Path], lake: Path, log: Path, lists: Path | None = None):
    """Start ``spark-submit jobs/ingest.py`` in its own process group; output to ``log``."""
    cmd = [str(BIN / "spark-submit"), "--master", "local[1]"]
    for key, value in CONF.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [str(ROOT / "jobs" / "ingest.py"), "--lake", str(lake)]
    for i in inputs:
        cmd += ["--input", str(i)]
    if lists:
        cmd += ["--lists", str(lists)]
    out = log.open("w")
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def failure(log: Path) -> str:
    """The first error lines and the end of a job's log, for an assertion message."""
    lines = log.read_text(errors="replace").splitlines()
    errors = [ln for ln in lines if "Error" in ln or "Exception" in ln][:15]
    return "\n".join([*errors, "...", *lines[-15:]])


def wait(proc, log: Path, timeout: int = 400) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(failure(log)) from None


def kill_when(proc, log: Path, marker: str, timeout: int = 400) -> None:
    """SIGKILL the job's whole process group (JVM, Python driver and workers) once ``marker``
    appears in its log."""
    deadline = time.monotonic() + timeout
    while marker not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"ended before {marker!r}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {marker!r} in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def lake_content(spark, lake: str) -> dict[str, object]:
    """The lake's rows without per-run columns: pairs (bands as digests), labels, metadata,
    and quarantine items as (patch or path, kind, reason); asserts unique keys."""
    out = {}
    for name in (schema.PAIRS, schema.LABELS, schema.PATCH_METADATA, schema.QUARANTINE):
        df = spark.read.format("delta").load(table_path(lake, name))
        rows = []
        for r in df.toLocalIterator():
            d = {k: v for k, v in r.asDict(recursive=True).items() if k not in RUN_COLUMNS}
            if name == schema.QUARANTINE:
                d = (d["patch_id"] or d["path"], d["kind"], d["reason"])
            else:
                d = tuple(
                    (k, hashlib.sha256(v).hexdigest() if isinstance(v, bytearray) else repr(v))
                    for k, v in sorted(d.items())
                )
            rows.append(d)
        assert len(rows) == len(set(rows)), f"duplicate rows in {name}"
        out[name] = sorted(rows)
    pairs = spark.read.format("delta").load(table_path(lake, schema.PAIRS))
    assert pairs.select("patch_id").distinct().count() == pairs.count()
    return out


@pytest.fixture(scope="module")
def reference(spark, v1_lake):
    return lake_content(spark, v1_lake[0])


def test_concurrent_jobs_give_one_ingest(spark, v1_archive, reference, tmp_path):
    root, _ = v1_archive
    lake = tmp_path / "lake"
    jobs = {  # the whole input twice, and the S1 archive as a job of its own
        "all-1": [root],
        "all-2": [root],
        "s1": [root / "BigEarthNet-S1-v1.0"],
    }
    procs = {n: submit(i, lake, tmp_path / f"{n}.log", root / "lists") for n, i in jobs.items()}
    codes = {n: wait(p, tmp_path / f"{n}.log", 900) for n, p in procs.items()}
    assert codes == dict.fromkeys(jobs, 0), {
        n: failure(tmp_path / f"{n}.log") for n, c in codes.items() if c
    }
    logs = [(tmp_path / f"{n}.log").read_text() for n in jobs]
    assert any(
        "waiting for the lake's lease" in log for log in logs
    )  # they really ran at the same time and queued on the lease
    assert lake_content(spark, str(lake)) == reference


@pytest.mark.parametrize(
    "marker",
    ["step decode + write pairs ...", "step derived columns ...", "step quarantine + labels ..."],
    ids=["while-decoding", "after-pairs-commit", "after-quarantine-commit"],
)
def test_killed_run_then_rerun_gives_one_ingest(spark, v1_archive, reference, tmp_path, marker):
    root, _ = v1_archive
    lake = tmp_path / "lake"
    kill_when(submit([root], lake, tmp_path / "killed.log"), tmp_path / "killed.log", marker)
    rerun = submit([root], lake, tmp_path / "rerun.log")
    assert wait(rerun, tmp_path / "rerun.log") == 0, failure(tmp_path / "rerun.log")
    assert "taking over the lease of a dead process" in (tmp_path / "rerun.log").read_text()
    assert lake_content(spark, str(lake)) == reference
