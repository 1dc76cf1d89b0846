"""Reader throughput and balance: PatchLoader (DataLoader workers over a pinned Delta version →
decoded, resampled, normalised S1+S2 float tensors) against, in the same process:
  * a raw pyarrow read of the same files and columns (``ratio_vs_pyarrow``, one worker);
  * itself with one worker, both with a consumer in the loop that touches every batch
    (``worker_scaling``: 2 workers ÷ 1);
  * a per-sample dataset that opens each patch's GeoTIFFs with rasterio, torchgeo-style
    (``ratio_vs_geotiff``, one worker);
and ``shard_balance``: the largest rank's rows ÷ the mean rows per rank at world size 4.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import rasterio
import torch
import torch.nn.functional as F

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


def reader_rate(spec: DataSpec, workers: int) -> tuple[int, float]:
    """(samples, samples/s) of one epoch with ``workers`` processes; the consumer touches every
    batch as a training step would (a reduction over the whole input)."""
    loader = PatchLoader(replace(spec, workers=workers))
    start = time.perf_counter()
    n = 0
    for batch in loader.epoch(0):
        batch.x.mean()
        n += len(batch.ids)
    return n, n / (time.perf_counter() - start)


def shard_balance(spec: DataSpec, world: int) -> float:
    """Largest rank's rows (delivered + skipped) ÷ the mean, reading every rank's shard."""
    shares = []
    for rank in range(world):
        skipped: list[str] = []
        loader = PatchLoader(replace(spec, workers=1), rank, world)
        shares.append(sum(len(b.ids) for b in loader.epoch(0, skipped)) + len(skipped))
    return max(shares) / (sum(shares) / world)


def pyarrow_rate(spec: DataSpec) -> float:
    """Rows/s of reading the split's files (same columns) into Arrow tables, nothing else."""
    dataset = PatchLoader(spec).dataset
    start = time.perf_counter()
    n = 0
    for path in sorted({g.path for g in dataset.groups}):
        n += pq.read_table(path, columns=dataset.columns).num_rows
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
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--geotiff-samples", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    lake = ensure_lake(args.pairs)
    spec = DataSpec(str(lake), "train", "s1s2", batch_size=args.batch_size, prefetch=4)
    assert set(MODALITIES[spec.modality]) == set(spec.bands)
    reader_rate(spec, 1)  # warm-up (page cache, imports)
    n, one = reader_rate(spec, 1)
    _, two = reader_rate(spec, 2)
    raw = pyarrow_rate(spec)
    ids = [i for b in PatchLoader(spec).epoch(0) for i in b.ids][: args.geotiff_samples]
    geotiff = geotiff_rate(OUT / f"archive_v1_{args.pairs}", ids, spec)
    balance = shard_balance(spec, 4)
    print(f"reader, 1 worker: {n} samples, {one:.1f} samples/s (decoded, resampled, normalised)")
    print(f"reader, 2 workers: {two:.1f} samples/s")
    print(f"raw pyarrow read of the same files and columns: {raw:.1f} rows/s")
    print(f"per-sample GeoTIFF dataset (rasterio): {geotiff:.1f} samples/s")
    print(
        f"ratio_vs_pyarrow={one / raw:.2f} worker_scaling={two / one:.2f} "
        f"shard_balance={balance:.3f} ratio_vs_geotiff={one / geotiff:.2f}"
    )


if __name__ == "__main__":
    main()
