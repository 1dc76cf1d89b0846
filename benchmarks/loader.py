"""Reader throughput: PatchLoader (Petastorm over a pinned Delta version → decoded, resampled,
normalised S1+S2 float tensors) vs a raw pyarrow read of the same files and vs a per-sample
dataset that opens each patch's GeoTIFFs with rasterio (torchgeo-style), in one process.
Last line: ratio_vs_pyarrow=<x> ratio_vs_geotiff=<y>.
"""

from __future__ import annotations

import argparse
import json
import time
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


def reader_rate(spec: DataSpec) -> tuple[int, float]:
    loader = PatchLoader(spec)
    start = time.perf_counter()
    n = sum(len(b.ids) for b in loader.epoch(0))
    return n, n / (time.perf_counter() - start)


def pyarrow_rate(spec: DataSpec) -> float:
    loader = PatchLoader(spec)
    start = time.perf_counter()
    n = 0
    for f in loader.files:
        n += pq.read_table(f.path, columns=loader.columns).num_rows
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
    spec = DataSpec(str(lake), "train", "s1s2", batch_size=args.batch_size)
    assert set(MODALITIES[spec.modality]) == set(spec.bands)
    reader_rate(spec)  # warm-up (page cache, imports)
    n, reader = reader_rate(spec)
    raw = pyarrow_rate(spec)
    ids = [i for b in PatchLoader(spec).epoch(0) for i in b.ids][: args.geotiff_samples]
    geotiff = geotiff_rate(OUT / f"archive_v1_{args.pairs}", ids, spec)
    print(f"reader: {n} samples, {reader:.1f} samples/s (decoded, resampled, normalised)")
    print(f"raw pyarrow read of the same files and columns: {raw:.1f} rows/s")
    print(f"per-sample GeoTIFF dataset (rasterio): {geotiff:.1f} samples/s")
    print(f"ratio_vs_pyarrow={reader / raw:.2f} ratio_vs_geotiff={reader / geotiff:.2f}")


if __name__ == "__main__":
    main()
