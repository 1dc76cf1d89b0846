"""Ingest throughput and memory vs a plain per-file rasterio loop over the same folders.

For each ``--pairs`` size (e.g. ``--pairs 2000,20000``) it generates (once, cached) a synthetic
v1 archive and measures, all on this machine, in ``--rounds`` rounds (default 3):
  * rasterio loop: every tif of up to 1,000 pairs opened and read with rasterio, JSON parsed,
    before the first round and after each: a round's baseline is the rate of the loops just
    before and just after it (this machine's speed drifts by up to ±20 % within minutes);
  * decode only: discovery + decode on the executors, counted, nothing written (a plain
    ``spark-submit`` of this script with ``--decode-only``): the rate of the whole run, as the
    ingest's, and of its decode stage alone, timed inside the run (no Spark start);
  * full ingest: plain ``spark-submit jobs/ingest.py`` with Spark's defaults into a fresh lake,
    with the peak RSS of its whole process tree (JVM + Python workers), sampled;
  * lake bytes on disk vs the raw tifs (the last round's lake, kept in ``benchmarks/out``).
Each round's figures and ratios are printed, then per size the median of each over the rounds
(peak RSS: the largest). Every run reads the archive from the page cache (it is read once
first). The last full ingest's output is kept in ``benchmarks/out/ingest_<pairs>.log``; its step
times are printed.
Last lines, medians over the rounds of the largest size: ratio_vs_rasterio= (full ingest ÷
rasterio loop, patches/s), ratio_vs_decode= (full ingest ÷ decode-only run, both whole
``spark-submit`` runs), ratio_vs_decode_stage= (full ingest ÷ the decode stage timed without
Spark's start), cost_growth= (median seconds per patch at the largest ÷ smallest size).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import rasterio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
BIN = Path(sys.executable).parent
FULL_ARCHIVE = 590_326
RASTERIO_PAIRS = 1000


def archive(pairs: int) -> Path:
    """The cached synthetic archive of ``pairs`` pairs."""
    from bigearth_spark.archive.synth import write_archive

    root = OUT / f"archive_v1_{pairs}"
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


def decode_only(root: Path) -> None:
    """(In a spark-submit of this script.) Print patches decoded per second, nothing written."""
    from pyspark.sql import functions as F

    from bigearth_spark.archive.layout import find_roots
    from bigearth_spark.etl import decode, discover, plan
    from bigearth_spark.spark import build_spark
    from bigearth_spark.tables.schema import PATCH_METADATA_SCHEMA

    spark = build_spark("bench-decode")
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter()
    metadata = spark.createDataFrame([], PATCH_METADATA_SCHEMA)
    units, _ = discover.discover(discover.list_input(spark, find_roots(root))[0], metadata)
    need = [F.lit(True).alias(f"need_{s}") for s in discover.SIDES]
    spread = plan.decode_tasks(  # as the ingest plans
        units.select("*", *need), units.count(), spark.sparkContext.defaultParallelism
    )
    rows = decode.decode(spread, [])
    stored = rows.select(F.sum(F.size("stored_sides")).alias("n")).first()["n"]
    print(f"decode_patches_per_s={stored / (time.perf_counter() - start):.1f}")


def one_round(root: Path, lake: Path) -> tuple[dict[str, float], str]:
    """One decode-only run and one full ingest of ``root`` into a fresh ``lake``: (their
    figures, the ingest's log)."""
    submit = [str(BIN / "spark-submit")]
    decode_s, _, out = run_measured([*submit, str(HERE / "ingest.py"), "--decode-only", str(root)])
    rate = [line for line in out.splitlines() if line.startswith("decode_patches_per_s=")]
    shutil.rmtree(lake, ignore_errors=True)
    job = [*submit, str(ROOT / "jobs" / "ingest.py"), "--input", str(root), "--lake", str(lake)]
    seconds, peak, log = run_measured(job)
    figures = {
        "decode_run_s": decode_s,
        "decode_stage_patches_per_s": float(rate[-1].split("=")[1]),
        "ingest_s": seconds,
        "peak_rss_mb": peak / 2**20,
    }
    return figures, log


def measure(pairs: int, rounds: int) -> dict[str, float]:
    """The figures of one archive size over ``rounds`` rounds, each a decode-only run and a full
    ingest between two rasterio loops (the loop after one round is the loop before the next):
    the median of each rate and ratio over the rounds, the largest peak RSS. This machine's
    speed drifts by up to ±20 % within minutes; a round's ratios compare runs minutes apart."""
    root = archive(pairs)
    folders = patch_folders(root)
    patches = len(folders)
    sample = [f for f in folders if f.parent.name == "BigEarthNet-v1.0"][:RASTERIO_PAIRS]
    sample += [f for f in folders if f.parent.name == "BigEarthNet-S1-v1.0"][:RASTERIO_PAIRS]
    lake = OUT / f"lake_{pairs}"
    warm(root)
    loops = [rasterio_loop(sample)]
    per_round = []
    for i in range(1, rounds + 1):
        if i > 1:
            shutil.rmtree(lake)  # the last round's lake stays (benchmarks/compression.py)
        r, log = one_round(root, lake)
        loops.append(rasterio_loop(sample))
        r["rasterio_patches_per_s"] = 2 * len(sample) / (loops[-2] + loops[-1])
        r["decode_run_patches_per_s"] = patches / r.pop("decode_run_s")
        r["ingest_patches_per_s"] = patches / r["ingest_s"]
        r["ratio_vs_rasterio"] = r["ingest_patches_per_s"] / r["rasterio_patches_per_s"]
        r["ratio_vs_decode"] = r["ingest_patches_per_s"] / r["decode_run_patches_per_s"]
        r["ratio_vs_decode_stage"] = r["ingest_patches_per_s"] / r["decode_stage_patches_per_s"]
        print(f"  {pairs} pairs, round {i}: " + ", ".join(f"{k} {v:,.2f}" for k, v in r.items()))
        per_round.append(r)
    (OUT / f"ingest_{pairs}.log").write_text(log)
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pairs", default="2000", help="comma-separated sizes, e.g. 2000,20000")
    p.add_argument("--rounds", type=int, default=3, help="rounds per size (medians are printed)")
    p.add_argument("--decode-only", metavar="ARCHIVE", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.decode_only:
        decode_only(Path(args.decode_only))
        return
    results = [measure(int(n), args.rounds) for n in args.pairs.split(",")]
    small, large = results[0], results[-1]
    cores = os.cpu_count() or 1
    per_core_s = FULL_ARCHIVE * 2 / large["ingest_patches_per_s"] * cores
    print(f"cpus={cores} sizes={[r['pairs'] for r in results]} rounds={args.rounds} (medians)")
    print(
        f"full archive ({FULL_ARCHIVE:,} pairs) extrapolated: {per_core_s / 3600:,.1f} core-hours"
        f" ({per_core_s / 3600 / cores:,.1f} h on this machine)"
    )
    print(f"peak_rss_mb={large['peak_rss_mb']:.0f} lake_vs_raw={large['lake_vs_raw']:.2f}")
    if len(results) > 1:
        growth = (large["ingest_s"] / large["patches"]) / (small["ingest_s"] / small["patches"])
        print(f"peak_rss_growth={large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
        print(f"cost_growth={growth:.2f}")
    for name in ("ratio_vs_decode_stage", "ratio_vs_decode", "ratio_vs_rasterio"):
        print(f"{name}={large[name]:.2f}")


if __name__ == "__main__":
    main()
