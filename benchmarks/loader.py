"""Reader throughput and balance, with the training configuration: PatchLoader (DataLoader
workers over a pinned Delta version → decoded, resampled, normalised, augmented S1+S2 float
tensors) against, in the same process:
  * the raw pyarrow read of the same row groups and columns, with the same calls on one thread, as
    each worker reads (``ratio_vs_pyarrow``: one worker ÷ that read; what decoding costs on top);
  * itself with one worker, both with a consumer in the loop that touches every batch
    (``worker_scaling``: 2 workers ÷ 1);
  * a per-sample GeoTIFF dataset (``ratio_vs_geotiff``: one worker ÷ it): each sample's bands
    read with rasterio, one open per file, torchgeo-style, straight into the batch's native
    arrays; then the same work as the reader's worker, by the same functions: the batch
    converted, normalised and resampled (``train.data.decode_bands`` into a reused tensor),
    augmented as in training, targets as a float tensor; in this process on one thread, with no
    consumer (the reader's consumer runs beside its worker, in the main process);
and ``shard_balance``: the largest rank's rows ÷ the mean rows per rank at world size 4.

The Petastorm reader (issue 30, ``reader: petastorm``) with one worker, the same decode and
augmentation: ``petastorm_vs_default`` (its samples/s ÷ the default reader's with one worker)
and ``petastorm_shard_balance`` (Petastorm's row-group shards at world size 4: the largest ÷ the
mean).

The device decode path (issue 28: workers hand over native band bytes, the training process
decodes them; here on this machine's CPU, ``PatchLoader.to_device("cpu")``) against the worker
path, both with one worker: ``ipc_bytes_ratio``, the bytes per sample crossing processes (the
shared-memory tensors of a batch: inputs or native blocks, targets, transform codes; the
pickled rest, ids and slot numbers, is the same for both), and ``worker_cpu_ratio``, the worker
process's CPU time per sample (user + system, read with psutil over the timed epochs). Both
ratios are printed for two lakes of the same archive: the default one (band columns zstd, what
``--pairs`` names; ``*_zstd=``) and a lake for feeding GPUs, ingested with
``spark.bigearth.bandCodec`` ``--feed-codec`` (default ``none``; ``ipc_bytes_ratio=``,
``worker_cpu_ratio=``, its runs ``feed_*``). Reading zstd band bytes is most of a device-path
worker's CPU, and the same work in both paths, so the lake's codec sets how far the ratio falls.

How it measures (changed by issue 27, item 12): the reader used to read without augmentation
(training augments) at batch 64 with prefetch 4, and the GeoTIFF baseline was one cold run that
stacked per-sample tensors (torch's 2-D resampling, a new tensor per band, no augmentation, no
targets). Now both read as training does: ``TrainConfig``'s defaults (bilinear resampling, v1
band statistics, S1+S2, 19 classes, augmentation, batch 32, prefetch 2) or ``--config``'s YAML;
the GeoTIFF dataset does the reader's work and no more; one untimed pass of each path first
(page cache, imports, GDAL), then ``--repeats`` interleaved rounds; every rate and ratio printed
is the median over the rounds (a ratio: of the rounds' ratios; this machine's figures vary by
±20 % from run to run).

Reader rates are steady state: the workers persist across epochs (as in training), the first
epoch (worker start, first reads) is timed apart, and the rate is that of the next epochs.
Output: ``name=value`` lines, ``ratio_vs_geotiff=`` last.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import rasterio
import torch

from benchmarks.ingest import OUT, archive
from bigearth_spark import storage
from bigearth_spark.archive.bands import BAND_STATS, Band
from bigearth_spark.etl.write_pairs import BAND_CODEC_KEY, BAND_CODECS
from bigearth_spark.train.buffers import Scratch
from bigearth_spark.train.data import Batch, DataSpec, PatchLoader, augment, decode_bands
from bigearth_spark.train.device_decode import feed
from bigearth_spark.train.loop import TrainConfig, _spec
from bigearth_spark.train.petastorm_reader import row_group_shares


def ensure_lake(pairs: int, out: Path, band_codec: str = "zstd") -> Path:
    """The benchmark lake below ``out`` with band columns in ``band_codec`` (the default zstd
    one made by benchmarks/ingest.py, or here)."""
    lake = out / (f"lake_{pairs}" if band_codec == "zstd" else f"lake_{pairs}_bands_{band_codec}")
    if not (lake / "pairs" / "_delta_log").is_dir():
        from bigearth_spark.config import load_config
        from bigearth_spark.etl.ingest import Ingest
        from bigearth_spark.spark import build_spark

        conf = load_config("local").spark_conf | {BAND_CODEC_KEY: band_codec}
        spark = build_spark("bench-loader", "local[*]", conf)
        Ingest(spark, str(lake)).run([str(archive(pairs, out))])
        spark.stop()
    return lake


def training_spec(lake: str | Path, config: Path | None, batch_size: int | None) -> DataSpec:
    """The training split's DataSpec of a training run (``config``'s YAML, else TrainConfig's
    defaults) over ``lake``, as the training loop builds it."""
    cfg = TrainConfig.from_yaml(config) if config else TrainConfig()
    cfg = replace(cfg, lake=str(lake), batch_size=batch_size or cfg.batch_size)
    return _spec(cfg, "train", None)


@dataclass
class ReaderRun:
    """One loader's figures: samples per epoch, seconds of the first epoch, samples/s of the
    next ones, and per sample over those: bytes of shared-memory tensors handed over, and the
    worker processes' CPU milliseconds."""

    samples: int
    first_epoch_s: float
    samples_per_s: float
    ipc_bytes_per_sample: float
    worker_cpu_ms_per_sample: float


def _cpu_s(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``processes`` so far."""
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def reader_run(spec: DataSpec, workers: int, epochs: int) -> ReaderRun:
    """A loader with ``workers`` persistent processes over ``epochs`` epochs after the first;
    the consumer takes each batch decoded on the CPU (``PatchLoader.to_device``: the device path
    decodes there, in this process) and touches it as a training step would (a reduction over
    the whole input)."""
    before = {p.pid for p in psutil.Process().children()}
    loader = PatchLoader(replace(spec, workers=workers))
    handed: list[int] = []

    def counted(batches: Iterable[Batch]) -> Iterator[Batch]:
        for batch in batches:
            handed.append(batch.tensor_bytes)
            yield batch

    times, n, cpu = [], 0, 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:  # the workers exist now: count their CPU from here
            procs = [p for p in psutil.Process().children() if p.pid not in before]
            handed.clear()
            cpu = _cpu_s(procs)
        start, n = time.perf_counter(), 0
        for batch in feed(counted(loader.epoch(epoch)), loader.decoder("cpu")):
            batch.x.mean()
            n += len(batch.ids)
        times.append(time.perf_counter() - start)
    samples = n * epochs
    cpu = _cpu_s(procs) - cpu
    return ReaderRun(
        n, times[0], samples / sum(times[1:]), sum(handed) / samples, 1000 * cpu / samples
    )


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


def geotiff_samples(
    spec: DataSpec, archive: Path, count: int
) -> tuple[list[list[Path]], np.ndarray]:
    """The first ``count`` samples of the reader's epoch 0 as a per-sample dataset sees them:
    each sample's GeoTIFF files in channel order, and the samples' targets (N×K float32)."""
    patches = json.loads((archive / "synth_manifest.json").read_text())["patches"]
    files, targets = [], []
    for batch in PatchLoader(replace(spec, workers=0)).epoch(0):
        for pid, y in zip(batch.ids, batch.y.numpy(), strict=True):
            truth = patches[pid]
            files.append(
                [
                    archive / truth["s1_dir"] / f"{truth['s1']}_{b.name}.tif"
                    if b.name in ("VV", "VH")
                    else archive / truth["s2_dir"] / f"{pid}_{b.name}.tif"
                    for b in spec.bands
                ]
            )
            targets.append(y)
        if len(files) >= count:
            break
    return files[:count], np.stack(targets[:count])


def binary_column(native: np.ndarray, band: Band) -> pa.ChunkedArray:
    """N native bands (a contiguous N×size×size array) as a column of ``pairs`` holds them: one
    binary value of the band's bytes per row, without a copy."""
    offsets = np.arange(0, (len(native) + 1) * band.nbytes, band.nbytes, dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(native)]
    return pa.chunked_array([pa.Array.from_buffers(pa.binary(), len(native), buffers)])


def geotiff_batches(
    spec: DataSpec, files: list[list[Path]], targets: np.ndarray
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches (inputs, targets) of a per-sample GeoTIFF dataset that does the reader's
    work: each file opened and read with rasterio into the batch's native arrays, then the batch
    decoded and augmented by the reader's own functions (augmentation drawn as the reader's
    epoch 0 draws it), its targets as a tensor. Each batch is written into the same tensor."""
    bands, size, stats = spec.bands, spec.batch_size, BAND_STATS[spec.stats]
    native = {b.name: np.empty((size, b.size, b.size), b.numpy_dtype) for b in bands}
    out, scratch = torch.empty((size, len(bands), 120, 120)), Scratch()
    gen = torch.Generator().manual_seed(0)  # the reader's for seed 0, epoch 0, first reader
    for first in range(0, len(files), size):
        n = len(files[first : first + size])
        for i, sample in enumerate(files[first : first + size]):
            for b, path in zip(bands, sample, strict=True):
                with rasterio.open(path) as src:
                    src.read(1, out=native[b.name][i])
        columns = {b.name: binary_column(native[b.name][:n], b) for b in bands}
        x = decode_bands(columns, bands, spec.resampling, stats, out[:n], scratch)
        if spec.augment:
            augment(x, gen)
        yield x, torch.from_numpy(targets[first : first + n])


def geotiff_rate(spec: DataSpec, files: list[list[Path]], targets: np.ndarray) -> float:
    """Samples/s of :func:`geotiff_batches` (in this process, on one thread, no consumer)."""
    start = time.perf_counter()
    for _ in geotiff_batches(spec, files, targets):
        pass
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--pairs",
        type=int,
        default=20000,
        help="lake size (a 2,000-pair lake's epoch of 878 rows is mostly the pipeline's refill "
        "between epochs; training epochs have 269,695 rows)",
    )
    p.add_argument("--out", type=Path, default=OUT, help="where the archive and lake are")
    p.add_argument("--config", type=Path, help="a training YAML (default: TrainConfig's)")
    p.add_argument("--batch-size", type=int, help="default: the training configuration's")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after the first")
    p.add_argument("--repeats", type=int, default=3, help="rounds after the untimed one")
    p.add_argument("--geotiff-samples", type=int, default=320)
    p.add_argument(
        "--feed-codec",
        choices=[c for c in BAND_CODECS if c != "zstd"],
        default="none",
        help="band codec of the lake for feeding GPUs (ipc_bytes_ratio=, worker_cpu_ratio=)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    lake = ensure_lake(args.pairs, args.out)
    spec = training_spec(lake, args.config, args.batch_size)
    feed_spec = replace(spec, lake=str(ensure_lake(args.pairs, args.out, args.feed_codec)))
    files, targets = geotiff_samples(spec, archive(args.pairs, args.out), args.geotiff_samples)
    pyarrow_rate(spec, False)  # untimed: page cache, imports, GDAL
    geotiff_rate(spec, files, targets)
    runs: dict[str, list[float]] = {}
    readers = (
        ("one_worker", spec, 1, "worker"),
        ("two_workers", spec, 2, "worker"),
        ("device", spec, 1, "device"),
        ("feed_one_worker", feed_spec, 1, "worker"),
        ("feed_device", feed_spec, 1, "device"),
        ("petastorm", replace(spec, reader="petastorm"), 1, "worker"),
    )
    for _ in range(args.repeats):
        for name, lake_spec, workers, decode in readers:
            run = reader_run(replace(lake_spec, decode=decode), workers, args.epochs)
            n = run.samples
            runs.setdefault(f"{name}_samples_per_s", []).append(run.samples_per_s)
            runs.setdefault(f"{name}_first_epoch_s", []).append(run.first_epoch_s)
            if workers == 1:
                runs.setdefault(f"{name}_ipc_bytes_per_sample", []).append(run.ipc_bytes_per_sample)
                cpu = run.worker_cpu_ms_per_sample
                runs.setdefault(f"{name}_worker_cpu_ms_per_sample", []).append(cpu)
        runs.setdefault("pyarrow_rows_per_s", []).append(pyarrow_rate(spec, False))
        runs.setdefault("pyarrow_threads_rows_per_s", []).append(pyarrow_rate(spec, True))
        runs.setdefault("geotiff_samples_per_s", []).append(geotiff_rate(spec, files, targets))
    one, two = runs["one_worker_samples_per_s"], runs["two_workers_samples_per_s"]
    runs["petastorm_vs_default"] = [
        a / b for a, b in zip(runs["petastorm_samples_per_s"], one, strict=True)
    ]
    runs["ratio_vs_pyarrow"] = [a / b for a, b in zip(one, runs["pyarrow_rows_per_s"], strict=True)]
    runs["worker_scaling"] = [b / a for a, b in zip(one, two, strict=True)]
    for ratio, figure in (
        ("ipc_bytes_ratio", "ipc_bytes_per_sample"),
        ("worker_cpu_ratio", "worker_cpu_ms_per_sample"),
    ):
        for lake_ratio, runs_of in ((f"{ratio}_zstd", ""), (ratio, "feed_")):
            worker = runs[f"{runs_of}one_worker_{figure}"]
            device = runs[f"{runs_of}device_{figure}"]
            # a tiny lake's epoch may take less CPU than the clock's tick (10 ms): no ratio then
            runs[lake_ratio] = [
                d / w if w else math.nan for d, w in zip(device, worker, strict=True)
            ]
    runs["ratio_vs_geotiff"] = [
        a / b for a, b in zip(one, runs["geotiff_samples_per_s"], strict=True)
    ]
    print(
        f"{n} samples per epoch; {spec.modality}, batch {spec.batch_size}, {spec.resampling}, "
        f"stats {spec.stats}, augment {spec.augment}, prefetch {spec.prefetch}; medians of "
        f"{args.repeats} rounds ({args.epochs} timed epochs each), {len(files)} GeoTIFF samples; "
        f"feed_* and the unsuffixed ratios: the lake with band codec {args.feed_codec}"
    )
    print(f"shard_balance={shard_balance(spec, 4):.3f}")
    petastorm_shares = row_group_shares(spec, 4)
    print(f"petastorm_shard_balance={max(petastorm_shares) / (sum(petastorm_shares) / 4):.3f}")
    for name, values in runs.items():
        exact = name.endswith("_bytes_per_sample")  # whole bytes, the same in every round
        print(f"{name}={statistics.median(values):{'.0f' if exact else '.4g'}}")


if __name__ == "__main__":
    main()
