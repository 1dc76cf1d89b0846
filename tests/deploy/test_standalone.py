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

from bigearth_spark.archive.synth import MANIFEST_NAME
from tests import expected
from tests.train.test_horovod import ARGS, horovodrun

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy" / "standalone"
BIN = Path(sys.executable).parent  # the venv's bin/: bigearth-spark, spark-submit
TABLES = ("pairs", "labels", "quarantine", "patch_metadata")
RUN_COLUMNS = {"ingest_run", "ingested_at", "first_seen", "updated_at"}  # differ per run
# Small, short-lived JVMs: the quick JIT tier saves CPU on a 2-core machine.
JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


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


def script(name: str, *args: str, env: dict, timeout: int) -> subprocess.CompletedProcess:
    cmd = [str(SCRIPTS / name), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(master URL, web UI port, run dir, env) of a master with 2 workers; always stopped."""
    run_dir = tmp_path_factory.mktemp("standalone")
    webui = free_port()
    env = spark_env(
        BIGEARTH_SPARK_RUN_DIR=str(run_dir),
        SPARK_MASTER_PORT=str(free_port()),
        SPARK_MASTER_WEBUI_PORT=str(webui),
        SPARK_WORKER_WEBUI_PORT="0",
        SPARK_WORKER_CORES="1",
        SPARK_WORKER_MEMORY="2g",
        START_TIMEOUT="150",
    )
    try:
        start = script("start-cluster.sh", "2", env=env, timeout=200)
        assert start.returncode == 0, start.stderr
        yield start.stdout.strip(), webui, run_dir, env
    finally:
        pids = [int(p.read_text()) for p in run_dir.glob("*.pid")]
        for _ in range(2):  # stopping twice must be harmless
            stop = script("stop-cluster.sh", env=env, timeout=120)
            assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not list(run_dir.glob("*.pid"))
        assert not [pid for pid in pids if is_spark_daemon(pid)]


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
    again = script("start-cluster.sh", "2", env=env, timeout=60)
    assert again.returncode != 0 and "already running" in again.stderr


def submit(master: str, archive: Path, lake: Path, work: Path, env: dict) -> subprocess.Popen:
    """spark-submit jobs/ingest.py in its own working dir (its spark-warehouse lands there),
    with an uncompressed event log in ``work/events``."""
    (work / "events").mkdir(parents=True)
    spark_args = ["--master", master, "--driver-java-options", JVM_OPTS]
    for key, value in {
        "spark.executor.extraJavaOptions": JVM_OPTS,
        "spark.ui.enabled": "false",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": (work / "events").as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
    }.items():
        spark_args += ["--conf", f"{key}={value}"]
    job = [str(ROOT / "jobs" / "ingest.py"), "--input", str(archive), "--lake", str(lake)]
    cmd = [str(BIN / "spark-submit"), *spark_args, *job]
    with (work / "submit.log").open("w") as log:
        return subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)


def executors_with_tasks(events_dir: Path) -> tuple[str, set[str]]:
    """(application id, ids of the executors that finished tasks) from the event log."""
    (log,) = events_dir.iterdir()
    ids = set()
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if (
            event["Event"] == "SparkListenerTaskEnd"
            and event["Task End Reason"]["Reason"] == "Success"
        ):
            ids.add(event["Task Info"]["Executor ID"])
    return log.name, ids


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


def assert_same_table(spark, lake1: Path, lake2: Path, table: str) -> tuple[int, int]:
    """Same rows (as multisets, run columns aside) and same band bytes; returns the row count
    and the bytes of the band columns."""
    one = spark.read.format("delta").load(str(lake1 / table))
    two = spark.read.format("delta").load(str(lake2 / table))
    assert one.columns == two.columns, table
    cols = [c for c in one.columns if c not in RUN_COLUMNS]
    one, two = one.select(*cols).cache(), two.select(*cols).cache()
    n = one.count()
    assert n == two.count(), (table, n, two.count())
    assert one.exceptAll(two).count() == 0, f"{table}: rows only in the standalone lake"
    assert two.exceptAll(one).count() == 0, f"{table}: rows only in the local lake"
    size = 0
    if any(f.dataType.typeName() == "binary" for f in one.schema):
        digests, size = band_digests(one)
        assert len(digests) == n, table  # one row per patch
        assert (digests, size) == band_digests(two), f"{table}: band bytes differ"
    one.unpersist()
    two.unpersist()
    return n, size


def test_standalone_ingest_equals_local_mode(spark, cluster, tmp_path):
    url, webui, run_dir, env = cluster
    archive = tmp_path / "archive"
    synth = [str(BIN / "bigearth-spark"), "synth", "--flavor", "v1", "--pairs", "12"]
    synth += ["--seed", "3", "--defects", "--out", str(archive)]
    done = subprocess.run(synth, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    started = time.monotonic()
    runs = {  # both at once: each driver spends most of its time scheduling its small jobs
        "standalone": submit(url, archive, tmp_path / "lake1", tmp_path / "standalone", env),
        "local": submit("local[2]", archive, tmp_path / "lake2", tmp_path / "local", env),
    }
    try:
        for name, proc in runs.items():
            rc = proc.wait(timeout=540)
            assert rc == 0, f"{name} ingest failed:\n{tail(tmp_path / name / 'submit.log')}"
    finally:
        for proc in runs.values():
            if proc.poll() is None:  # the other run, when one failed
                proc.kill()
                proc.wait()
    print(f"both ingests took {time.monotonic() - started:.0f} s")

    # The standalone run was one application of the master whose tasks ran in executors that
    # both workers launched (work-i/<app id>/<executor id>/), none in the driver.
    apps = master_state(webui)["completedapps"]
    assert [(a["name"], a["state"]) for a in apps] == [("bigearth-ingest", "FINISHED")]
    app_id, task_executors = executors_with_tasks(tmp_path / "standalone" / "events")
    assert app_id == apps[0]["id"]
    per_worker = [{p.name for p in (run_dir / f"work-{i}" / app_id).iterdir()} for i in (1, 2)]
    assert all(per_worker) and not per_worker[0] & per_worker[1], per_worker
    assert task_executors <= per_worker[0] | per_worker[1], task_executors
    assert task_executors & per_worker[0] and task_executors & per_worker[1], task_executors
    _, local_executors = executors_with_tasks(tmp_path / "local" / "events")
    assert local_executors == {"driver"}  # the reference run really was local mode

    started = time.monotonic()  # in the tests' session: its settings are the fixture's
    rows = {t: assert_same_table(spark, tmp_path / "lake1", tmp_path / "lake2", t) for t in TABLES}
    # the rows the archive's manifest says: the comparison is neither vacuous nor of two
    # equally wrong lakes
    manifest = json.loads((archive / MANIFEST_NAME).read_text())
    want = expected.table_rows(archive, manifest)
    assert rows == {
        t: (n, expected.band_bytes(manifest) if t == "pairs" else 0) for t, n in want.items()
    }
    quarantine = spark.read.format("delta").load(str(tmp_path / "lake1" / "quarantine"))
    got = sorted((r["reason"], r["patch_id"] or r["path"]) for r in quarantine.collect())
    assert got == sorted(expected.quarantine(archive, manifest))
    print(f"comparing the lakes took {time.monotonic() - started:.0f} s: {rows}")

    # Horovod on Spark: the training launcher's 2 ranks run as barrier tasks on that cluster.
    train = [
        str(BIN / "python"),
        str(ROOT / "jobs" / "train.py"),
        "--launcher",
        "spark",
        "--master",
        url,
        "--num-proc",
        "2",
        "--lake",
        str(tmp_path / "lake1"),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "1",
        "--mlflow-uri",
        str(tmp_path / "mlruns"),
        *ARGS,
    ]
    done = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["world_size"] == 2 and result["ranks_identical_weights"]
    assert result["epochs"] == 1 and (tmp_path / "run" / "best.pt").is_file()
    state = master_state(webui)
    names = sorted(a["name"] for a in state["completedapps"] + state["activeapps"])
    assert names == ["bigearth-ingest", "bigearth-train"]
    # the same training as horovodrun's on this host, bit for bit
    reference = horovodrun(str(tmp_path / "lake1"), tmp_path / "horovodrun" / "run", 1)
    for key in ("table_version", "weights_sha256", "train_loss", "macro_ap"):
        assert result[key] == reference[key], key
