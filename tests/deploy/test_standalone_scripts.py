"""The failure paths of deploy/standalone/start-cluster.sh and stop-cluster.sh (the happy path
is test_standalone.py): they fail fast, say why, and leave no daemon behind."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from .test_standalone import SCRIPTS, free_port, is_spark_daemon, spark_env


def run(script: str, *args: str, run_dir: Path, **env: str) -> subprocess.CompletedProcess:
    env = spark_env(BIGEARTH_SPARK_RUN_DIR=str(run_dir), **env)
    cmd = [str(SCRIPTS / script), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def test_usage_error(tmp_path):
    done = run("start-cluster.sh", "two", run_dir=tmp_path)
    assert done.returncode == 2 and "usage" in done.stderr
    assert not list(tmp_path.iterdir())


def test_taken_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            "start-cluster.sh",
            "1",
            run_dir=tmp_path,
            SPARK_MASTER_PORT=str(port),
            SPARK_MASTER_WEBUI_PORT=str(free_port()),
        )
    assert done.returncode == 1 and f"port 127.0.0.1:{port} is in use" in done.stderr
    assert not list(tmp_path.glob("*.pid")) and not list(tmp_path.glob("*.log"))


def test_a_worker_that_dies_stops_the_cluster(tmp_path):
    done = run(
        "start-cluster.sh",
        "1",
        run_dir=tmp_path,
        SPARK_MASTER_PORT=str(free_port()),
        SPARK_MASTER_WEBUI_PORT=str(free_port()),
        SPARK_WORKER_WEBUI_PORT="0",
        SPARK_WORKER_MEMORY="lots",
    )
    assert done.returncode == 1
    assert "worker-1 exited during start" in done.stderr
    assert "Failed to parse byte string: lots" in done.stderr  # the worker log's tail
    assert "stopped master" in done.stderr
    assert not list(tmp_path.glob("*.pid"))
    master_pid = int(done.stderr.split("stopped master (pid ")[1].split(")")[0])
    assert not is_spark_daemon(master_pid)


def test_stop_without_a_cluster_is_fine(tmp_path):
    assert run("stop-cluster.sh", run_dir=tmp_path / "never-started").returncode == 0
    (tmp_path / "master.pid").write_text("999999\n")  # stale
    done = run("stop-cluster.sh", run_dir=tmp_path)
    assert done.returncode == 0 and not (tmp_path / "master.pid").exists()
