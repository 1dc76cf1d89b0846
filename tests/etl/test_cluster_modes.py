"""spark-submit of jobs/ingest.py in local-cluster mode (separate executor JVMs) gives the same
tables as the in-process local-mode ingest."""

from __future__ import annotations

import pytest

from bigearth_spark.tables import schema
from bigearth_spark.tables.write import table_path
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
VOLATILE = {"ingest_run", "ingested_at", "first_seen", "updated_at", "message"}


def content(spark, lake, name):
    df = spark.read.format("delta").load(table_path(lake, name))
    return df.select(*[c for c in df.columns if c not in VOLATILE])


def test_local_cluster_ingest_equals_local_mode(spark, v1_archive, v1_lake, tmp_path):
    root, _ = v1_archive
    lake = str(tmp_path / "lake")
    proc = run_cli(
        "spark-submit",
        "--master",
        "local-cluster[2,1,1024]",
        "jobs/ingest.py",
        "--input",
        str(root),
        "--lake",
        lake,
    )
    assert "readable patches" in proc.stdout
    report = v1_lake[1]  # rows per table as the local-mode run's commits counted them
    expected = {
        schema.PAIRS: report.inserted[schema.PAIRS],
        schema.LABELS: report.inserted[schema.LABELS],
        schema.QUARANTINE: sum(report.quarantined.values()),
        schema.PATCH_METADATA: report.inserted[schema.PATCH_METADATA],
    }
    for name, rows in expected.items():
        a, b = content(spark, lake, name), content(spark, v1_lake[0], name)
        assert a.count() == b.count() == rows, name
        assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0, name
