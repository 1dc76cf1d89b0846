"""Statistics of the ingest's ``pairs`` files in the Delta log, and what Spark skips by them: a
lake of its own (the session's v1 archive, ingested into this module's folder)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bigearth_spark.etl.ingest import Ingest
from bigearth_spark.tables import delta_log, schema
from bigearth_spark.tables.write import table_path
from tests.conftest import run_cli

# what Delta's writer indexes by default: the first 32 columns of the files (no struct in pairs)
INDEXED = [f for f in schema.PAIRS_SCHEMA if f.name != "split"][:32]
RANGED = (T.StringType, T.IntegerType, T.DoubleType, T.TimestampType)


@pytest.fixture(scope="module")
def pairs_files(spark, v1_archive, tmp_path_factory) -> tuple[str, dict[str, dict]]:
    """(the ``pairs`` table of a lake ingested here, each live file's parsed ``stats`` by its
    path)."""
    lake = str(tmp_path_factory.mktemp("skipping") / "lake")
    Ingest(spark, lake).run([str(v1_archive[0])])
    path = table_path(lake, schema.PAIRS)
    adds = {}
    for f in sorted((Path(path) / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                adds[action["add"]["path"]] = action["add"]
    stats = {f.path: json.loads(adds[f.log_path]["stats"]) for f in delta_log.snapshot(path).files}
    return path, stats


def test_pairs_files_carry_exact_key_ranges_and_null_counts(pairs_files) -> None:
    """Each file's statistics equal what its rows, read back, hold: rows, the patch-id range,
    NULL counts of the first 32 columns (band bytes: NULL counts only)."""
    _, stats = pairs_files
    indexed = [f.name for f in INDEXED]
    assert [f.name for f in INDEXED[-4:]] == ["B01", "B02", "B03", "B04"]
    for file, s in stats.items():
        rows = pq.read_table(file, columns=indexed)
        ids = rows.column("patch_id").to_pylist()
        assert s["numRecords"] == len(ids) == rows.num_rows
        assert (s["minValues"]["patch_id"], s["maxValues"]["patch_id"]) == (min(ids), max(ids))
        assert s["nullCount"] == {c: rows.column(c).null_count for c in indexed}
        ranged = {
            f.name
            for f in INDEXED
            if isinstance(f.dataType, RANGED) and rows.column(f.name).null_count < rows.num_rows
        }
        assert set(s["minValues"]) == set(s["maxValues"]) == ranged
        assert s["minValues"]["epsg"] == pc.min(rows.column("epsg")).as_py()
        assert s["maxValues"]["ulx"] == pc.max(rows.column("ulx")).as_py()


def test_pairs_file_stats_equal_sparks_for_the_same_rows(spark, pairs_files, tmp_path) -> None:
    """One file of each split rewritten by Spark's own Delta writer gets the same statistics."""
    _, stats = pairs_files
    by_split = {Path(f).parent.name: f for f in sorted(stats)}
    assert len(by_split) == 4  # train, validation, test and the pairs without a split
    for i, file in enumerate(by_split.values()):
        scratch = str(tmp_path / f"t{i}")
        spark.read.parquet(file).coalesce(1).write.format("delta").save(scratch)
        (theirs,) = [json.loads(a["add"]["stats"]) for a in _adds(scratch)]
        assert stats[file] == theirs


def _adds(table: str) -> list[dict]:
    log = sorted((Path(table) / "_delta_log").glob("*.json"))
    actions = [json.loads(line) for f in log for line in f.read_text().splitlines()]
    return [a for a in actions if "add" in a]


def test_point_lookup_reads_only_the_files_whose_key_range_holds_the_id(spark, pairs_files):
    """``WHERE patch_id = x`` (``export``, SQL): Spark plans the files whose patch-id range, as
    read back from the files, holds ``x`` (the file of its row among them), and with the split
    as well only the file of its row."""
    path, stats = pairs_files
    ranges, holder = {}, {}
    for file in stats:
        ids = pq.read_table(file, columns=["patch_id"]).column("patch_id").to_pylist()
        ranges[file] = (min(ids), max(ids))
        holder.update({i: file for i in ids})
    pairs = spark.read.format("delta").load(path)
    assert len(pairs.inputFiles()) == len(stats)
    ids = sorted(holder)
    for patch_id in [*ids[::8], ids[-1]]:
        file, split = holder[patch_id], _split_of(holder[patch_id])
        want = {f for f, (lo, hi) in ranges.items() if lo <= patch_id <= hi}
        assert file in want and len(want) < len(stats)
        lookup = pairs.where(F.col("patch_id") == patch_id)
        assert {_local(p) for p in lookup.inputFiles()} == want
        in_split = lookup.where(F.col("split").eqNullSafe(split))
        # decode tasks take ranges of ids (plan.decode_tasks): a split's files do not overlap
        assert [_local(p) for p in in_split.inputFiles()] == [file]
    # the lake's least id is in one file's range only: that file is the one read
    first = pairs.where(F.col("patch_id") == ids[0])
    assert [_local(p) for p in first.inputFiles()] == [holder[ids[0]]]
    assert [r.patch_id for r in first.select("patch_id").collect()] == [ids[0]]


def _local(uri: str) -> str:
    return uri.removeprefix("file:")


def _split_of(file: str) -> str | None:
    value = Path(file).parent.name.split("=", 1)[1]
    return None if value == "__HIVE_DEFAULT_PARTITION__" else value


@pytest.mark.slow
def test_point_lookup_benchmark_counts_the_files_spark_reads(pairs_files) -> None:
    """benchmarks/point_lookup.py on this lake: its first lookup (the least id) reads one file
    with data skipping and every file without; the statistics' cost is printed."""
    path, stats = pairs_files
    lake = str(Path(path).parent)
    out = run_cli(
        "python",
        "-m",
        "benchmarks.point_lookup",
        "--lake",
        lake,
        "--lookups",
        "2",
        "--repeats",
        "1",
    ).stdout
    assert re.search(r"^files_in_table=(\d+)$", out, re.MULTILINE).group(1) == str(len(stats))
    lines = [line for line in out.splitlines() if line.startswith("lookup ")]
    assert len(lines) == 8  # 2 ids x (id, id and split) x (skipping on, off)
    holder = {}
    for file in stats:
        ids = pq.read_table(file, columns=["patch_id"]).column("patch_id").to_pylist()
        holder.update(dict.fromkeys(ids, file))
    least = min(holder)
    read = {
        line.split()[2].rstrip(":"): int(re.search(r"files_read=(\d+)", line).group(1))
        for line in lines
        if line.split()[1] == least
    }
    in_split = [f for f in stats if _split_of(f) == _split_of(holder[least])]
    assert read == {
        "id_skipping": 1,
        "id_no_skipping": len(stats),
        "id_and_split_skipping": 1,
        "id_and_split_no_skipping": len(in_split),
    }
    assert float(re.search(r"^stats_ms_per_file_median=(\S+)$", out, re.MULTILINE).group(1)) > 0
