"""Shared fixtures: one real SparkSession (local[2], Delta), generated archives and lakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "bigearthnet"
SAMPLES = SHARED / "samples" / "v1"
VENV_BIN = Path(sys.executable).parent


def run_cli(
    *args: str, check: bool = True, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a console command of the venv (``bigearth-spark``, ``spark-submit`` ...), with
    ``env`` added to this process's environment."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [str(VENV_BIN / args[0]), *args[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def spark():
    from bigearth_spark.config import load_config
    from bigearth_spark.spark import build_spark

    cfg = load_config("local")
    session = build_spark("bigearth-tests", "local[2]", cfg.spark_conf)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _archive(tmp_path_factory, flavor: str, pairs: int, seed: int) -> tuple[Path, dict]:
    from bigearth_spark.archive.synth import write_archive

    out = tmp_path_factory.mktemp(flavor) / "archive"
    return out, write_archive(out, flavor, pairs, seed=seed, defects=True)


def _ingest(spark, archive: Path, tmp_path_factory):
    from bigearth_spark.etl.ingest import Ingest

    lake = str(tmp_path_factory.mktemp("lake") / "lake")
    return lake, Ingest(spark, lake).run([str(archive)])


@pytest.fixture(scope="session")
def v1_archive(tmp_path_factory) -> tuple[Path, dict]:
    """A synthetic v1 archive (S2, S1, lists) with every kind of defect; (root, manifest)."""
    return _archive(tmp_path_factory, "v1", 40, 11)


@pytest.fixture(scope="session")
def v1_lake(spark, v1_archive, tmp_path_factory):
    """The v1 archive ingested once; (lake path, ingest report)."""
    return _ingest(spark, v1_archive[0], tmp_path_factory)


@pytest.fixture(scope="session")
def v2_archive(tmp_path_factory) -> tuple[Path, dict]:
    """A synthetic v2 archive (S2, S1, reference maps, metadata) with defects."""
    return _archive(tmp_path_factory, "v2", 30, 5)


@pytest.fixture(scope="session")
def v2_lake(spark, v2_archive, tmp_path_factory):
    """The v2 archive ingested once; (lake path, ingest report)."""
    return _ingest(spark, v2_archive[0], tmp_path_factory)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``spark`` every test that uses the Spark session (the ``spark`` fixture, directly or
    through the lake fixtures): ``make test-fast`` runs the tests that are neither ``spark`` nor
    ``slow``."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)
