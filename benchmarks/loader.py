"""Reader throughput and balance: PatchLoader (DataLoader workers over a pinned Delta version →
decoded, resampled, normalised S1+S2 float tensors) against, in the same process:
  * the raw pyarrow read of the same row groups and columns, with the same calls on one thread, as
    each worker reads (``ratio_vs_pyarrow``: one worker ÷ that read; what decoding costs on top);
  * itself with one worker, both with a consumer in the loop that touches every batch
    (``worker_scaling``: 2 workers ÷ 1);
  * a per-sample dataset that opens each patch's GeoTIFFs with rasterio, torchgeo-style
    (``ratio_vs_geotiff``, one worker);
and ``shard_balance``: the largest rank's rows ÷ the mean rows per rank at world size 4.

Reader rates are steady state: the workers persist across epochs (as in training), the first
epoch (worker start, first reads) is timed apart, and the rate is that of the next epochs. Each
rate is the median of ``--repeats`` interleaved measurements (this machine's figures vary by
±20 % from run to run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from bigearth_spark import storage
from bigearth_spark.archive.bands import BAND_STATS, MODALITIES
from bigearth_spark.train.data import DataSpec, PatchLoader

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def ensure_lake(pairs: int) -> Path:
    """The benchmark lake (made by benchmarks/ingest.py, or here)."""
    lake = OUT / f"lake_{pairs}"
    if not (lake / "pairs" / "_delta_log").is_dir():
        from benchmarks.ingest import archive
        from bigearth_spark.config import load_config
        from bigearth_spark.etl.ingest import Ingest
        from bigearth_spark.spark import build_spark

        spark = build_spark("bench-loader", "local[*]", load_config("local").spark_conf)
        Ingest(spark, str(lake)).run([str(archive(pairs))])
        spark.stop()
    return lake


def reader_rate(spec: DataSpec, workers: int, epochs: int) -> tuple[int, float, float]:
    """(samples per epoch, seconds of the first epoch, samples/s of the next ``epochs`` epochs)
    of one loader with ``workers`` persistent processes; the consumer touches every batch as a
    training step would (a reduction over the whole input)."""
    loader = PatchLoader(replace(spec, workers=workers))
    times, n = [], 0
    for epoch in range(epochs + 1):
        start, n = time.perf_counter(), 0
        for batch in loader.epoch(epoch):
            batch.x.mean()
            n += len(batch.ids)
        times.append(time.perf_counter() - start)
    return n, times[0], n * epochs / sum(times[1:])


def shard_balance(spec: DataSpec, world: int) -> float:
    """Largest rank's rows (delivered + skipped) ÷ the mean, reading every rank's shard."""
    shares = []
    for rank in range(world):
        skipped: list[str] = []
        loader = PatchLoader(replace(spec, workers=1), rank, world)
        shares.append(sum(len(b.ids) for b in loader.epoch(0, skipped)) + len(skipped))
    return max(shares) / (sum(shares) / world)


def pyarrow_rate(spec: DataSpec, threads: bool) -> float:
    """Rows/s of reading the split's row groups (the loader's columns) into Arrow tables with the
    loader's own calls, nothing else; ``threads``: pyarrow's thread pool (a worker reads on one
    thread)."""
    dataset = PatchLoader(spec).dataset
    files = {g.path: storage.parquet_file(g.path) for g in dataset.groups}  # open, as in a worker
    start = time.perf_counter()
    n = 0
    for g in dataset.groups:
        n += files[g.path].read_row_group(g.index, dataset.columns, use_threads=threads).num_rows
    return n / (time.perf_counter() - start)


def geotiff_rate(archive: Path, ids: list[str], spec: DataSpec) -> float:
    """A per-sample dataset: 12 rasterio opens per patch, resample, normalise, stack."""
    manifest = json.loads((archive / "synth_manifest.json").read_text())["patches"]
    stats = BAND_STATS[spec.stats]
    start = time.perf_counter()
    for pid in ids:
        truth = manifest[pid]
        channels = []
        for b in spec.bands:
            s1 = b.name in ("VV", "VH")
            folder, name = (truth["s1_dir"], truth["s1"]) if s1 else (truth["s2_dir"], pid)
            with rasterio.open(archive / folder / f"{name}_{b.name}.tif") as src:
                a = torch.from_numpy(src.read(1).astype(np.float32))[None, None]
            if b.size != 120:
                a = F.interpolate(a, size=(120, 120), mode=spec.resampling, align_corners=False)
            channels.append((a[0] - stats[b.name][0]) / stats[b.name][1])
        torch.cat(channels)
    return len(ids) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--pairs",
        type=int,
        default=20000,
        help="lake size (a 2,000-pair lake's epoch of 878 rows is mostly the pipeline's refill "
        "between epochs; training epochs have 269,695 rows)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after the first")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--geotiff-samples", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    lake = ensure_lake(args.pairs)
    spec = DataSpec(str(lake), "train", "s1s2", batch_size=args.batch_size, prefetch=4)
    assert set(MODALITIES[spec.modality]) == set(spec.bands)
    pyarrow_rate(spec, False)  # warm-up (page cache, imports)
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, measure in (
            ("one", lambda: reader_rate(spec, 1, args.epochs)),
            ("two", lambda: reader_rate(spec, 2, args.epochs)),
        ):
            n, first, rate = measure()
            runs.setdefault(name, []).append(rate)
            runs.setdefault(f"{name}_first", []).append(first)
        runs.setdefault("raw", []).append(pyarrow_rate(spec, False))
        runs.setdefault("raw_threads", []).append(pyarrow_rate(spec, True))
    one, two, raw = (statistics.median(runs[k]) for k in ("one", "two", "raw"))
    ids = [i for b in PatchLoader(spec).epoch(0) for i in b.ids][: args.geotiff_samples]
    geotiff = geotiff_rate(OUT / f"archive_v1_{args.pairs}", ids, spec)
    balance = shard_balance(spec, 4)
    print(f"{n} samples per epoch, medians of {args.repeats} runs of {args.epochs} epochs each")
    for name, workers in (("one", 1), ("two", 2)):
        rates = ", ".join(f"{r:.0f}" for r in runs[name])
        print(
            f"reader, {workers} worker(s): {statistics.median(runs[name]):.1f} samples/s "
            f"(runs: {rates}; decoded, resampled, normalised); first epoch "
            f"{statistics.median(runs[name + '_first']):.2f} s"
        )
    print(f"raw pyarrow read of the same row groups, one thread: {raw:.1f} rows/s")
    print(f"  the same with pyarrow's threads: {statistics.median(runs['raw_threads']):.1f} rows/s")
    print(f"per-sample GeoTIFF dataset (rasterio): {geotiff:.1f} samples/s")
    print(
        f"ratio_vs_pyarrow={one / raw:.2f} worker_scaling={two / one:.2f} "
        f"shard_balance={balance:.3f} ratio_vs_geotiff={one / geotiff:.2f}"
    )


if __name__ == "__main__":
    main()
