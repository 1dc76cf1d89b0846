"""Ingest throughput vs a plain per-file rasterio loop over the same folders, same process.

Generates (once, cached) a synthetic v1 archive of --pairs S1+S2 pairs, then measures:
  * rasterio loop: every tif of every patch opened and read with rasterio, JSON parsed;
  * decode stage: discovery + decode on the executors (mapInArrow), counted, nothing written;
  * full ingest: the whole job into a fresh lake (Delta writes, pairs, labels, checks);
  * bytes per pair on disk (s2_patches + s1_patches) vs the raw tifs;
  * scaling: decode stage on local-cluster with 1 and 2 executors (separate JVMs).
Last line: ratio_vs_rasterio=<full ingest patches/s ÷ rasterio loop patches/s>.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import rasterio

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


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


def decode_stage(spark, root: Path) -> tuple[int, float]:
    """(patches decoded, seconds) of discovery + decode, nothing written."""
    from bigearth_spark.archive.layout import find_roots
    from bigearth_spark.etl import decode, discover

    start = time.perf_counter()
    entries, _ = discover.discover(spark, find_roots(root))
    n = sum(decode.decode(entries, g).where("error_reason IS NULL").count() for g in ("s2", "s1"))
    return n, time.perf_counter() - start


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def scaling_run(pairs: int, executors: int) -> float:
    """Decode-stage patches/s on local-cluster[executors, 1 core, 2 GiB] (own process)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--pairs", str(pairs), "--decode-only",
         "--master", f"local-cluster[{executors},1,2048]"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(proc.stdout.strip().splitlines()[-1].split("=")[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--master", default="local[*]")
    p.add_argument("--decode-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-scaling", action="store_true")
    args = p.parse_args()
    from bigearth_spark.config import load_config
    from bigearth_spark.etl.ingest import Ingest
    from bigearth_spark.spark import build_spark

    root = archive(args.pairs)
    spark = build_spark("bench-ingest", args.master, load_config("local").spark_conf)
    spark.sparkContext.setLogLevel("ERROR")
    if args.decode_only:
        decode_stage(spark, root)  # warm-up: JVM, Python workers
        n, secs = decode_stage(spark, root)
        print(f"decode_patches_per_s={n / secs:.1f}")
        return
    folders = patch_folders(root)
    raster_s = rasterio_loop(folders)
    raster_rate = len(folders) / raster_s
    print(
        f"rasterio loop: {len(folders)} patches in {raster_s:.1f} s = {raster_rate:.1f} patches/s"
    )
    n, secs = decode_stage(spark, root)
    print(f"decode stage (executors): {n} patches in {secs:.1f} s = {n / secs:.1f} patches/s "
          f"({n / secs / raster_rate:.2f}x rasterio)")  # fmt: skip
    lake = OUT / f"lake_{args.pairs}"
    shutil.rmtree(lake, ignore_errors=True)
    start = time.perf_counter()
    report = Ingest(spark, str(lake)).run([str(root)])
    ingest_s = time.perf_counter() - start
    rate = report.decoded_ok / ingest_s
    print(f"full ingest: {report.decoded_ok} patches in {ingest_s:.1f} s = {rate:.1f} patches/s")
    raw = sum(f.stat().st_size for d in folders for f in d.iterdir() if f.suffix == ".tif")
    stored = du(lake / "s2_patches") + du(lake / "s1_patches")
    print(f"bytes per pair: raw tifs {raw / args.pairs:,.0f}, bronze tables "
          f"{stored / args.pairs:,.0f} ({stored / raw:.2f}x)")  # fmt: skip
    spark.stop()
    if not args.no_scaling:
        one, two = scaling_run(args.pairs, 1), scaling_run(args.pairs, 2)
        print(f"local-cluster decode: 1 executor {one:.1f}/s, 2 executors {two:.1f}/s "
              f"= {two / one:.2f}x")  # fmt: skip
    print(f"cpus={os.cpu_count()} pairs={args.pairs}")
    print(f"ratio_vs_rasterio={rate / raster_rate:.2f}")


if __name__ == "__main__":
    main()
