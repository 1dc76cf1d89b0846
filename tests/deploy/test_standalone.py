"""A real Spark standalone cluster (master + 2 workers, separate JVMs, started by
deploy/standalone/start-cluster.sh) ingests the same synthetic archive as local mode into an
equal lake."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy" / "standalone"
BIN = Path(sys.executable).parent  # the venv's bin/: bigearth-spark, spark-submit
TABLES = ("s2_patches", "s1_patches", "pairs", "labels", "quarantine", "patch_metadata")
RUN_COLUMNS = {"ingest_run", "ingested_at", "first_seen", "updated_at"}  # differ per run
# Small, short-lived JVMs: the quick JIT tier saves CPU on a 2-core machine.
JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
COMPARE_CONF = {
    "spark.driver.extraJavaOptions": JVM_OPTS,
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.databricks.delta.snapshotPartitions": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_env(**extra: str) -> dict[str, str]:
    """Environment of the scripts and spark-submit: the venv first, everything on 127.0.0.1."""
    import pyspark

    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.update(SPARK_HOME=os.path.dirname(pyspark.__file__), SPARK_LOCAL_IP="127.0.0.1")
    env.update(BIGEARTH_VENV=str(BIN.parent), **extra)
    return env


def master_state(webui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json/", timeout=10) as r:
        return json.load(r)


def is_spark_daemon(pid: int) -> bool:
    """A live (not zombie) Spark master or worker JVM."""
    try:
        return b"org.apache.spark.deploy." in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(master URL, web UI port, run dir) of a running master with 2 workers; always stopped."""
    run_dir = tmp_path_factory.mktemp("standalone")
    port, webui = free_port(), free_port()
    env = spark_env(
        BIGEARTH_SPARK_RUN_DIR=str(run_dir), SPARK_MASTER_PORT=str(port),
        SPARK_MASTER_WEBUI_PORT=str(webui), SPARK_WORKER_WEBUI_PORT="0",
        SPARK_WORKER_CORES="1", SPARK_WORKER_MEMORY="2g", START_TIMEOUT="150",
    )  # fmt: skip
    try:
        start = subprocess.run([SCRIPTS / "start-cluster.sh", "2"], env=env, capture_output=True,
                               text=True, timeout=200)  # fmt: skip
        assert start.returncode == 0, start.stderr
        yield start.stdout.strip(), webui, run_dir, env
    finally:
        pids = [int(p.read_text()) for p in run_dir.glob("*.pid")]
        for _ in range(2):  # stopping twice must be harmless
            stop = subprocess.run([SCRIPTS / "stop-cluster.sh"], env=env, capture_output=True,
                                  text=True, timeout=120)  # fmt: skip
            assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not list(run_dir.glob("*.pid"))
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_cluster_has_two_workers_and_refuses_second_start(cluster):
    url, webui, run_dir, env = cluster
    port = url.rsplit(":", 1)[1]
    assert url == f"spark://127.0.0.1:{port}"
    assert (run_dir / "master-url").read_text().strip() == url
    state = master_state(webui)
    assert state["url"] == url
    workers = [w for w in state["workers"] if w["state"] == "ALIVE"]
    assert len(workers) == 2 and {w["cores"] for w in workers} == {1}
    assert {w["memory"] for w in workers} == {2048}
    assert len({int(p.read_text()) for p in run_dir.glob("*.pid")}) == 3  # 3 separate JVMs
    again = subprocess.run([SCRIPTS / "start-cluster.sh", "2"], env=env, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert again.returncode != 0 and "already running" in again.stderr


def submit(master: str, archive: Path, lake: Path, work: Path, env: dict) -> subprocess.Popen:
    """spark-submit jobs/ingest.py in its own working dir (its spark-warehouse lands there)."""
    work.mkdir()
    cmd = [
        BIN / "spark-submit", "--master", master, "--driver-java-options", JVM_OPTS,
        "--conf", f"spark.executor.extraJavaOptions={JVM_OPTS}", "--conf", "spark.ui.enabled=false",
        ROOT / "jobs" / "ingest.py", "--input", archive, "--lake", lake,
    ]  # fmt: skip
    log = (work / "submit.log").open("w")
    return subprocess.Popen([str(c) for c in cmd], cwd=work, env=env, stdout=log, stderr=log)


def band_digests(df) -> tuple[dict[str, str], int]:
    """patch_id → sha256 over all binary (band) columns in schema order; total band bytes."""
    bands = [f.name for f in df.schema if f.dataType.typeName() == "binary"]
    out, size = {}, 0
    for row in df.select("patch_id", *bands).toLocalIterator():
        h = hashlib.sha256()
        for b in bands:
            h.update(b"\0" if row[b] is None else b"\1" + bytes(row[b]))
            size += len(row[b] or b"")
        out[row["patch_id"]] = h.hexdigest()
    return out, size


def test_standalone_ingest_equals_local_mode(cluster, tmp_path):
    url, webui, run_dir, env = cluster
    archive = tmp_path / "archive"
    synth = subprocess.run(
        [BIN / "bigearth-spark", "synth", "--flavor", "v1", "--pairs", "12", "--seed", "3",
         "--defects", "--out", archive], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert synth.returncode == 0, synth.stderr

    started = time.monotonic()
    runs = {
        "standalone": submit(url, archive, tmp_path / "lake1", tmp_path / "standalone", env),
        "local": submit("local[2]", archive, tmp_path / "lake2", tmp_path / "local", env),
    }  # both at once: each driver mostly waits on its own job scheduling
    for name, proc in runs.items():
        rc = proc.wait(timeout=540)
        assert rc == 0, f"{name} ingest failed:\n{tail(tmp_path / name / 'submit.log')}"
    print(f"both ingests took {time.monotonic() - started:.0f} s")
    started = time.monotonic()

    # The standalone run was one application whose tasks ran on both workers' executors.
    apps = master_state(webui)["completedapps"]
    assert [(a["name"], a["state"]) for a in apps] == [("bigearth-ingest", "FINISHED")]
    for i in (1, 2):
        logs = list((run_dir / f"work-{i}").glob("app-*/*/stderr"))
        assert logs and "Running task" in logs[0].read_text(), f"worker {i} ran no task"

    from bigearth_spark.spark import build_spark

    spark = build_spark("compare-lakes", "local[2]", COMPARE_CONF)
    for table in TABLES:
        one = spark.read.format("delta").load(str(tmp_path / "lake1" / table))
        two = spark.read.format("delta").load(str(tmp_path / "lake2" / table))
        assert one.columns == two.columns, table
        cols = [c for c in one.columns if c not in RUN_COLUMNS]
        one, two = one.select(*cols).cache(), two.select(*cols).cache()
        n = one.count()
        assert n > 0 and n == two.count(), (table, n, two.count())
        assert one.exceptAll(two).count() == 0, f"{table}: rows only in the standalone lake"
        assert two.exceptAll(one).count() == 0, f"{table}: rows only in the local lake"
        if table in ("s2_patches", "s1_patches", "pairs"):
            digests, size = band_digests(one)
            assert len(digests) == n and size > n * 1000  # one row per patch, with bands
            assert (digests, size) == band_digests(two), f"{table}: band bytes differ"
        one.unpersist()
        two.unpersist()
    reasons = {r["reason"] for r in spark.read.format("delta").load(
        str(tmp_path / "lake1" / "quarantine")).select("reason").collect()}  # fmt: skip
    assert {"corrupt_tif", "missing_band", "missing_s2_partner"} <= reasons
    print(f"comparing the lakes took {time.monotonic() - started:.0f} s")
