"""Ingest throughput and memory vs a plain per-file rasterio loop and vs the decode alone.

How the decode baselines measure (changed by issue 27, item 11): the decode-only run used to
send every decoded band byte through ``mapInArrow`` into the JVM, work the ingest never does
(its tasks write the bytes themselves), so it was slower than a decode alone and flattered
``ratio_vs_decode``. Its tasks now decode in Spark's Python workers and discard the rows there:
each task returns one row of counts (``decode_rows_to_jvm`` = the tasks, ``decode_bytes_to_jvm``
= what those rows weigh; no band byte crosses). New: an in-process decode without Spark
(``per_core_vs_decode``) and the decode + write step's ``decode_write_cost_growth``.

For each ``--pairs`` size (e.g. ``--pairs 2000,20000``) it generates (once, cached) a synthetic
v1 archive and plans its units (once, cached: ``units_v1_<pairs>.parquet``, paths only, the
ingest's plan of a new lake), then measures, all on this machine, in ``--rounds`` rounds
(default 3):
  * rasterio loop: every tif of up to 1,000 pairs opened and read with rasterio, JSON parsed,
    before the first round and after each: a round's baseline is the rate of the loops just
    before and just after it (this machine's speed drifts by up to ±20 % within minutes);
  * decode only: a plain ``spark-submit`` of this script with ``--decode-only``: discovery, the
    ingest's plan (the same units in the same number of tasks) and the same decode in Spark's
    Python workers (:func:`bigearth_spark.etl.decode.decoded_rows`), the rows discarded in the
    worker, nothing written: the rate of the whole run, as the ingest's, and of its discovery,
    plan and decode timed inside the run (no Spark start);
  * full ingest: plain ``spark-submit jobs/ingest.py`` with Spark's defaults into a fresh lake,
    with the peak RSS of its whole process tree (JVM + Python workers), sampled, and its
    decode + write step's seconds (from its log);
  * in-process decode: the planned units decoded by the same function in this process, on one
    core, without Spark, the rows discarded: patches/s per core;
  * lake bytes on disk vs the raw tifs (the last round's lake, kept in ``--out``).
Each round's figures and ratios are printed, then per size the median of each over the rounds
(peak RSS: the largest). Every run reads the archive from the page cache (it is read once
first). The last full ingest's output is kept in ``<out>/ingest_<pairs>.log``; its step times
are printed.
Last lines, medians over the rounds of the largest size: ``cores=`` (the ingest's cores:
Spark's default parallelism), with two sizes ``cost_growth=`` (seconds per patch of the whole
run at the largest ÷ smallest size) and ``decode_write_cost_growth=`` (the same for the
decode + write step), ``per_core_vs_decode=`` (the ingest's patches/s ÷ cores ÷ the in-process
decode's patches/s), ``ratio_vs_decode_stage=`` (full ingest ÷ the decode-only run's discovery,
plan and decode, patches/s), ``ratio_vs_decode=`` (full ingest ÷ decode-only run, both whole
``spark-submit`` runs), ``ratio_vs_rasterio=`` (full ingest ÷ rasterio loop).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
BIN = Path(sys.executable).parent
FULL_ARCHIVE = 590_326
RASTERIO_PAIRS = 1000
DECODE_COUNTS = pa.schema([("units", pa.int64()), ("patches", pa.int64())])
DECODE_COUNTS_DDL = "units long, patches long"  # the same, as Spark reads it
DECODE_WRITE_STEP = re.compile(r"step decode \+ write pairs done in ([0-9.]+) s")


def archive(pairs: int, out: Path = OUT) -> Path:
    """The cached synthetic archive of ``pairs`` pairs below ``out``."""
    from bigearth_spark.archive.synth import write_archive

    root = out / f"archive_v1_{pairs}"
    if not (root / "synth_manifest.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        write_archive(root, "v1", pairs, seed=1)
    return root


def patch_folders(root: Path) -> list[Path]:
    return [
        p for r in ("BigEarthNet-v1.0", "BigEarthNet-S1-v1.0") for p in sorted((root / r).iterdir())
    ]


def rasterio_loop(folders: list[Path]) -> float:
    """Seconds to read every band of ``folders`` with rasterio (and parse the JSONs)."""
    start = time.perf_counter()
    for folder in folders:
        for f in sorted(folder.iterdir()):
            if f.suffix == ".tif":
                with rasterio.open(f) as src:
                    src.read(1)
            elif f.suffix == ".json":
                json.loads(f.read_text())
    return time.perf_counter() - start


def warm(root: Path) -> None:
    """Read every file of ``root`` once, so that every timed run below reads the archive from
    the page cache (a cold file costs the run that reads it first, the rasterio loop included)."""
    for f in root.rglob("*"):
        if f.is_file():
            f.read_bytes()


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _counted(p: psutil.Process) -> bool:
    """Whether ``p``'s RSS counts in the tree's: not a JVM's child that has not exec'd yet (the
    JVM spawning a shell command, e.g. Hadoop's chmod: for a moment the child shares all of the
    JVM's pages and would count the JVM twice)."""
    try:
        parent = p.parent()
        return (
            not (parent is not None and p.exe() == parent.exe() and p.exe().endswith("/java"))
            and p.is_running()
        )
    except psutil.Error:
        return False


def run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """(seconds, peak RSS of the process tree in bytes, stdout and stderr) of a command."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        top = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [top, *top.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if _counted(p)))
            except psutil.Error:
                pass
            done.wait(0.25)

    start = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd} exited {proc.returncode}:\n{out[-3000:]}")
    return seconds, peak, out


def printed(out: str, name: str) -> float:
    """The value of the last ``name=value`` line of a run's output."""
    values = [line.split("=", 1)[1] for line in out.splitlines() if line.startswith(f"{name}=")]
    if not values:
        raise RuntimeError(f"no {name}= line in:\n{out[-3000:]}")
    return float(values[-1])


# -- the runs inside a spark-submit of this script ---------------------------------------------
def _session():
    """The Spark session of ``spark-submit jobs/ingest.py``: the CLI's default profile."""
    from bigearth_spark.config import load_config
    from bigearth_spark.spark import build_spark

    cfg = load_config("local")
    spark = build_spark("bench-decode", cfg.master, cfg.spark_conf)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def planned_units(spark, root: Path):
    """The archive's units to decode as the ingest plans them into a new lake (its discovery,
    :func:`~bigearth_spark.etl.plan.units_to_decode`, the same tasks), without the official
    lists (the ingest's work, not the decode's)."""
    from pyspark.sql import functions as F

    from bigearth_spark.archive.layout import find_roots
    from bigearth_spark.etl import discover, plan
    from bigearth_spark.tables.schema import PATCH_METADATA_SCHEMA

    metadata = spark.createDataFrame([], PATCH_METADATA_SCHEMA)
    found = discover.list_input(spark, find_roots(str(root)))[0]
    units, _ = discover.discover(found, metadata)
    todo = plan.units_to_decode(units, metadata).cache()
    n = todo.count()
    spread = plan.decode_tasks(todo, n, spark.sparkContext.defaultParallelism).cache()
    return spread.where(~F.col("is_update"))


def decode_counts(batches: Iterator[pa.RecordBatch]) -> tuple[int, int]:
    """(units, patches stored) of decoding the units of ``batches`` as the ingest's tasks decode
    them (:func:`~bigearth_spark.etl.decode.decoded_rows`), each row dropped once decoded."""
    from bigearth_spark.etl import decode

    units = patches = 0
    for rows, _, _ in decode.decoded_rows(batches):
        units += len(rows)
        patches += sum(len(row["stored_sides"]) for row in rows)
    return units, patches


def decode_discarding(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A decode task that keeps nothing (:func:`decode_counts`): one row of counts per task."""
    units, patches = decode_counts(batches)
    yield pa.RecordBatch.from_pydict({"units": [units], "patches": [patches]}, DECODE_COUNTS)


def decode_only(root: Path) -> None:
    """(In a spark-submit of this script.) Discovery, plan and decode of ``root`` in Spark's
    Python workers, nothing kept: print the patches decoded, their rate from after Spark's
    start, the rows and bytes the workers returned to the JVM and the cores."""
    spark = _session()
    start = time.perf_counter()
    counts = planned_units(spark, root).mapInArrow(decode_discarding, DECODE_COUNTS_DDL).toArrow()
    seconds = time.perf_counter() - start
    patches = sum(counts["patches"].to_pylist())
    print(f"decode_units={sum(counts['units'].to_pylist())}")
    print(f"decode_patches={patches}")
    print(f"decode_patches_per_s={patches / seconds:.1f}")
    print(f"decode_rows_to_jvm={counts.num_rows}")
    print(f"decode_bytes_to_jvm={counts.nbytes}")
    print(f"cores={spark.sparkContext.defaultParallelism}")


def plan_units(root: Path, file: Path) -> None:
    """(In a spark-submit of this script.) Write the planned units of ``root`` (paths, no band
    byte) to the Parquet file ``file``, in the decode tasks' order."""
    pq.write_table(planned_units(_session(), root).toArrow(), file)


# -- the measurements ----------------------------------------------------------------------------
def units_file(root: Path, out: Path) -> Path:
    """The cached file of the archive's planned units (a ``spark-submit`` of this script)."""
    file = out / f"units_{root.name.removeprefix('archive_')}.parquet"
    if not file.is_file():
        run_measured([str(BIN / "spark-submit"), __file__, "--plan-units", str(root), str(file)])
    return file


def decode_in_process(units: pa.Table) -> tuple[float, int]:
    """(seconds, patches stored) of decoding ``units`` in this process, on one core, as a decode
    task does (:func:`decode_counts`), without Spark."""
    start = time.perf_counter()
    _, patches = decode_counts(iter(units.to_batches()))
    return time.perf_counter() - start, patches


def one_round(root: Path, lake: Path, units: pa.Table) -> tuple[dict[str, float], str]:
    """One decode-only run, one full ingest of ``root`` into a fresh ``lake`` and one in-process
    decode of ``units``: (their figures, the ingest's log)."""
    submit = [str(BIN / "spark-submit")]
    decode_s, _, out = run_measured([*submit, __file__, "--decode-only", str(root)])
    shutil.rmtree(lake, ignore_errors=True)
    job = [*submit, str(ROOT / "jobs" / "ingest.py"), "--input", str(root), "--lake", str(lake)]
    seconds, peak, log = run_measured(job)
    step = DECODE_WRITE_STEP.findall(log)
    if len(step) != 1:
        raise RuntimeError(f"no decode + write step time in the ingest's log:\n{log[-3000:]}")
    in_process_s, in_process_patches = decode_in_process(units)
    figures = {
        "decode_run_s": decode_s,
        "decode_stage_patches_per_s": printed(out, "decode_patches_per_s"),
        "decode_patches": printed(out, "decode_patches"),
        "decode_rows_to_jvm": printed(out, "decode_rows_to_jvm"),
        "decode_bytes_to_jvm": printed(out, "decode_bytes_to_jvm"),
        "cores": printed(out, "cores"),
        "ingest_s": seconds,
        "decode_write_s": float(step[0]),
        "in_process_decode_patches_per_s": in_process_patches / in_process_s,
        "peak_rss_mb": peak / 2**20,
    }
    return figures, log


def measure(pairs: int, rounds: int, out: Path) -> dict[str, float]:
    """The figures of one archive size over ``rounds`` rounds, each a decode-only run, a full
    ingest and an in-process decode between two rasterio loops (the loop after one round is the
    loop before the next): the median of each rate and ratio over the rounds, the largest peak
    RSS. This machine's speed drifts by up to ±20 % within minutes; a round's ratios compare runs
    minutes apart."""
    root = archive(pairs, out)
    units = pq.read_table(units_file(root, out))
    folders = patch_folders(root)
    patches = len(folders)
    sample = [f for f in folders if f.parent.name == "BigEarthNet-v1.0"][:RASTERIO_PAIRS]
    sample += [f for f in folders if f.parent.name == "BigEarthNet-S1-v1.0"][:RASTERIO_PAIRS]
    lake = out / f"lake_{pairs}"
    warm(root)
    loops = [rasterio_loop(sample)]
    per_round = []
    for i in range(1, rounds + 1):
        if i > 1:
            shutil.rmtree(lake)  # the last round's lake stays (benchmarks/compression.py)
        r, log = one_round(root, lake, units)
        loops.append(rasterio_loop(sample))
        r["rasterio_patches_per_s"] = 2 * len(sample) / (loops[-2] + loops[-1])
        r["decode_run_patches_per_s"] = patches / r.pop("decode_run_s")
        r["ingest_patches_per_s"] = patches / r["ingest_s"]
        r["decode_write_patches_per_s"] = patches / r["decode_write_s"]
        r["ratio_vs_rasterio"] = r["ingest_patches_per_s"] / r["rasterio_patches_per_s"]
        r["ratio_vs_decode"] = r["ingest_patches_per_s"] / r["decode_run_patches_per_s"]
        r["ratio_vs_decode_stage"] = r["ingest_patches_per_s"] / r["decode_stage_patches_per_s"]
        r["per_core_vs_decode"] = (
            r["ingest_patches_per_s"] / r["cores"] / r["in_process_decode_patches_per_s"]
        )
        print(f"  {pairs} pairs, round {i}: " + ", ".join(f"{k} {v:,.2f}" for k, v in r.items()))
        per_round.append(r)
    (out / f"ingest_{pairs}.log").write_text(log)
    for line in log.splitlines():  # the last ingest's own step times
        if " done in " in line:
            print(f"  {pairs} pairs: {line.split('ingest: ', 1)[-1]}")
    raw = sum(f.stat().st_size for d in folders for f in d.iterdir() if f.suffix == ".tif")
    stored = du(lake)
    figures = {k: statistics.median(r[k] for r in per_round) for k in per_round[0]}
    figures["peak_rss_mb"] = max(r["peak_rss_mb"] for r in per_round)
    figures.update(pairs=pairs, patches=patches, lake_bytes=stored, raw_tif_bytes=raw)
    figures["lake_vs_raw"] = stored / raw
    for k, v in figures.items():
        print(f"  {pairs} pairs: {k} = {v:,.2f}" if isinstance(v, float) else f"  {k} = {v:,}")
    return figures


def growth(large: dict[str, float], small: dict[str, float], seconds: str) -> float:
    """Seconds per patch of the figure ``seconds`` at the large size ÷ at the small size."""
    return (large[seconds] / large["patches"]) / (small[seconds] / small["patches"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pairs", default="2000", help="comma-separated sizes, e.g. 2000,20000")
    p.add_argument("--rounds", type=int, default=3, help="rounds per size (medians are printed)")
    p.add_argument("--out", type=Path, default=OUT, help="archives, units, lakes and logs")
    p.add_argument("--decode-only", metavar="ARCHIVE", help=argparse.SUPPRESS)
    p.add_argument("--plan-units", nargs=2, metavar=("ARCHIVE", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.decode_only:
        decode_only(Path(args.decode_only))
        return
    if args.plan_units:
        plan_units(*map(Path, args.plan_units))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    results = [measure(int(n), args.rounds, args.out) for n in args.pairs.split(",")]
    small, large = results[0], results[-1]
    cores = int(large["cores"])
    per_core_s = FULL_ARCHIVE * 2 / large["ingest_patches_per_s"] * cores
    print(f"sizes={[r['pairs'] for r in results]} rounds={args.rounds} (medians)")
    print(
        f"full archive ({FULL_ARCHIVE:,} pairs) extrapolated: {per_core_s / 3600:,.1f} core-hours"
        f" ({per_core_s / 3600 / cores:,.1f} h on this machine)"
    )
    print(f"peak_rss_mb={large['peak_rss_mb']:.0f} lake_vs_raw={large['lake_vs_raw']:.2f}")
    print(f"cores={cores}")
    if len(results) > 1:
        print(f"peak_rss_growth={large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
        print(f"cost_growth={growth(large, small, 'ingest_s'):.2f}")
        print(f"decode_write_cost_growth={growth(large, small, 'decode_write_s'):.2f}")
    for name in (
        "per_core_vs_decode",
        "ratio_vs_decode_stage",
        "ratio_vs_decode",
        "ratio_vs_rasterio",
    ):
        print(f"{name}={large[name]:.3g}")


if __name__ == "__main__":
    main()
