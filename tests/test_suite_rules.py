"""The suite's own rules, enforced by tests/conftest.py: a run without the real samples fails
unless a developer opts out, and a test that writes into a session archive or lake fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ALLOW_NO_SHARED, REPO


def pytest_in(folder: Path, files: dict[str, str], **env: str) -> subprocess.CompletedProcess:
    """Run pytest on ``files`` (name -> source) written to ``folder``, with tests/conftest.py as
    a plugin (its hooks and fixtures) and ``env`` added to the environment."""
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    environ = {k: v for k, v in os.environ.items() if k not in ("CI", ALLOW_NO_SHARED)}
    environ.update(PYTHONPATH=str(REPO), **env)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "tests.conftest",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:warnings",
    ]
    return subprocess.run(
        [*cmd, "-q", "-rs", str(folder)],
        cwd=folder,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


NEEDS_SHARED = {
    "test_x.py": """
        from tests.conftest import needs_shared

        @needs_shared
        def test_compares_with_the_samples():
            pass

        def test_needs_nothing():
            pass
    """
}


def test_a_run_without_the_shared_samples_fails_and_says_why(tmp_path):
    absent = tmp_path / "nowhere"
    for env in ({"CI": "true"}, {}, {"CI": "true", ALLOW_NO_SHARED: "1"}):
        proc = pytest_in(tmp_path / str(len(env)), NEEDS_SHARED, BIGEARTH_SHARED=str(absent), **env)
        assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
        assert "ERROR: the real BigEarthNet samples and lists are missing: " in proc.stderr
        assert f"{absent}/samples/v1" in proc.stderr and ALLOW_NO_SHARED in proc.stderr
        assert "passed" not in proc.stdout


def test_a_developer_may_opt_out_knowingly(tmp_path):
    proc = pytest_in(
        tmp_path / "opted", NEEDS_SHARED, BIGEARTH_SHARED=str(tmp_path), **{ALLOW_NO_SHARED: "1"}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SKIPPED [1] test_x.py:4: {tmp_path} is absent and {ALLOW_NO_SHARED}=1" in proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout


def test_a_test_that_writes_into_a_session_lake_fails(tmp_path):
    files = {
        "conftest.py": """
            import pytest

            @pytest.fixture(scope="session")
            def v1_lake(tmp_path_factory):
                lake = tmp_path_factory.mktemp("lake") / "lake"
                (lake / "pairs" / "_delta_log").mkdir(parents=True)
                (lake / "pairs" / "_delta_log" / "0.json").write_text("{}")
                return str(lake), None

            @pytest.fixture(scope="module")
            def trained(v1_lake):
                return v1_lake[0]
        """,
        "test_lake.py": """
            from pathlib import Path

            from tests.conftest import copy_lake

            def test_reads(v1_lake):
                assert (Path(v1_lake[0]) / "pairs/_delta_log/0.json").read_text() == "{}"

            def test_adds_a_table(v1_lake):
                (Path(v1_lake[0]) / "metrics").mkdir()
                (Path(v1_lake[0]) / "metrics" / "part-0.parquet").write_bytes(b"x")

            def test_commits_through_a_module_fixture(trained):
                (Path(trained) / "pairs/_delta_log/1.json").write_text("{}")

            def test_writes_its_own_copy(v1_lake, tmp_path):
                lake = copy_lake(v1_lake[0], tmp_path / "lake")
                (Path(lake) / "pairs/_delta_log/0.json").write_text('{"add": 1}')
        """,
    }
    proc = pytest_in(tmp_path / "t", files)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "4 passed, 2 errors" in out  # the two writers pass, then fail at their teardown
    for test, written in (
        ("adds_a_table", "metrics/part-0.parquet"),
        ("commits_through_a_module_fixture", "pairs/_delta_log/1.json"),
    ):
        report = out.split(f"ERROR at teardown of test_{test}", 1)[1].split("\n___", 1)[0]
        assert "the test wrote into the session fixture v1_lake (" in report
        assert f"): ['{written}']" in report


def test_a_test_that_builds_its_own_spark_session_first_breaks_the_fixture(tmp_path):
    files = {
        "test_first.py": """
            from pyspark.sql import SparkSession

            def test_builds_its_own():
                SparkSession.builder.master("local[1]").appName("mine").getOrCreate()

            def test_uses_the_fixture(spark):
                pass
        """
    }
    proc = pytest_in(tmp_path / "t", files, PYSPARK_PYTHON=sys.executable)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed, 1 error" in proc.stdout
    assert "a test built SparkSession 'mine' first: use this fixture" in proc.stdout
