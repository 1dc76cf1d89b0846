"""``make test-fast`` selects ``-m "not slow and not spark"``: tests/conftest.py marks ``spark``
every test that uses the Spark session fixture, also through a lake fixture, so a new test that
needs Spark leaves the fast run without anyone marking it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

FAST = "not slow and not spark"  # the Makefile's selection
TESTS = """
    import pytest

    def test_plain():
        pass

    def test_session(spark):
        pass

    def test_lake(v1_lake):
        pass

    @pytest.mark.slow
    def test_slow():
        pass
"""


def test_fast_selection_leaves_out_every_test_that_uses_spark(tmp_path):
    (tmp_path / "test_x.py").write_text(textwrap.dedent(TESTS))
    plugins = ["-p", "tests.conftest", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *plugins,
            "--collect-only",
            "-q",
            "-m",
            FAST,
            str(tmp_path),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert collected == ["test_x.py::test_plain"]
    assert "1/4 tests collected (3 deselected)" in done.stdout
