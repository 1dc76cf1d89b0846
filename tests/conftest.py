"""Shared fixtures: one real SparkSession (local[2], Delta), generated archives and lakes; the
real samples and official lists of ``../shared/bigearthnet``, which a run must have."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real samples and official lists that the bit-exact and format checks compare against.
SHARED = Path(os.environ.get("BIGEARTH_SHARED") or REPO.parent / "shared" / "bigearthnet")
SAMPLES = SHARED / "samples" / "v1"
LISTS = SHARED / "lists"
SHARED_NEEDED = (SAMPLES, LISTS, SHARED / "label_indices.json")
# A developer who knowingly runs without them sets this to 1 (CI cannot): their tests are skipped.
ALLOW_NO_SHARED = "BIGEARTH_ALLOW_NO_SHARED"
VENV_BIN = Path(sys.executable).parent
# Session fixtures read by many tests: a test that writes into one fails (see no_shared_writes).
SHARED_FIXTURES = ("v1_archive", "v1_lake", "v2_archive", "v2_lake")


def missing_shared() -> list[Path]:
    """What the run needs of ``SHARED`` and does not find."""
    return [p for p in SHARED_NEEDED if not p.exists()]


needs_shared = pytest.mark.skipif(
    bool(missing_shared()), reason=f"{SHARED} is absent and {ALLOW_NO_SHARED}=1"
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to run without the real samples unless the developer opted out: the checks that
    compare against them must never drop out of a run silently (CI has them)."""
    missing = missing_shared()
    opted_out = os.environ.get(ALLOW_NO_SHARED) == "1" and os.environ.get("CI") != "true"
    if missing and not opted_out:
        raise pytest.UsageError(
            f"the real BigEarthNet samples and lists are missing: {', '.join(map(str, missing))}. "
            f"The tests compare against them bit for bit: provide {SHARED} (or point "
            f"BIGEARTH_SHARED at a copy), or set {ALLOW_NO_SHARED}=1 to skip those tests knowingly."
        )


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
    # getOrCreate would hand back a session that a test built before, with its settings
    assert session.sparkContext.appName == "bigearth-tests", (
        f"a test built SparkSession {session.sparkContext.appName!r} first: use this fixture"
    )
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


@pytest.fixture(scope="session")
def v1_tarballs(v1_archive, tmp_path_factory) -> Path:
    """The v1 archive as its official downloads: ``BigEarthNet-S2-v1.0.tar.gz``, ``…-S1-…``
    and the lists (read only: a test that changes them works on a copy)."""
    from bigearth_spark.archive.synth.pack import pack_archive

    out = tmp_path_factory.mktemp("v1_tar") / "download"
    pack_archive(v1_archive[0], out, "tar.gz")
    return out


def copy_lake(lake: str, dest: Path) -> str:
    """A copy of ``lake`` at ``dest`` for a test that writes: a Delta table's log names its files
    relative to the table, so the copy is a lake of its own."""
    shutil.copytree(lake, dest)
    return str(dest)


@pytest.fixture
def v1_lake_copy(v1_lake, tmp_path) -> str:
    """The ingested v1 lake as this test's own copy, to write to."""
    return copy_lake(v1_lake[0], tmp_path / "lake")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: relative path -> (size, modification time in ns)."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.fixture(autouse=True)
def no_shared_writes(request):
    """Fail a test that wrote into a session archive or lake: the others read them, so they
    would pass or fail by test order. A test that writes takes a copy (``copy_lake``)."""
    roots = {
        n: Path(request.getfixturevalue(n)[0]) for n in SHARED_FIXTURES if n in request.fixturenames
    }
    before = {n: _files(root) for n, root in roots.items()}
    yield
    for name, root in roots.items():
        after = _files(root)
        changed = sorted(
            p for p in before[name].keys() | after.keys() if before[name].get(p) != after.get(p)
        )
        assert not changed, (
            f"the test wrote into the session fixture {name} ({root}): {changed[:10]}"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``spark`` every test that uses the Spark session (the ``spark`` fixture, directly or
    through the lake fixtures): ``make test-fast`` runs the tests that are neither ``spark`` nor
    ``slow``."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)
