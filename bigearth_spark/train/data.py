"""Training data: a ``torch.utils.data`` pipeline over the live files of a pinned ``pairs``
version.

:class:`PairsDataset` is an ``IterableDataset``: the live parquet files of exactly one table
version (``tables.delta_log``) and one split (the table is partitioned by split) are planned into
equal row ranges, one per rank × DataLoader worker (:mod:`bigearth_spark.train.shards`); each
worker reads only its row groups with pyarrow (the band columns and the target), re-batches the
rows while they are still bytes and decodes each batch at once: bytes → float32, normalised at
native resolution, resampled to the 10 m grid per native size. :class:`PatchLoader` wraps it in
a ``DataLoader`` (``workers`` persistent processes, ``prefetch`` batches each, pinned memory
on CUDA).
Every batch carries its patch ids and the ids skipped for a missing S1 partner, so the training
loop and the evaluation prove that each row of the split was delivered exactly once.

Petastorm's reader is not used here: it deals whole row groups to shards by index (unbalanced:
one rank got ten times the rows of another) and cannot read part of a row group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from bigearth_spark import storage
from bigearth_spark.archive.bands import BAND_STATS, MODALITIES, S1_BANDS, Band
from bigearth_spark.archive.labels import NOMENCLATURES
from bigearth_spark.archive.lists import SPLITS
from bigearth_spark.config import normalize_lake
from bigearth_spark.tables import delta_log
from bigearth_spark.tables.schema import PAIRS
from bigearth_spark.tables.write import table_path
from bigearth_spark.train import buffers, resample, shards


class EmptySplitError(ValueError):
    """The pinned table version has no rows in the requested split."""


class DataLossError(RuntimeError):
    """An epoch did not deliver every row of the split exactly once."""


@dataclass(frozen=True)
class DataSpec:
    """What to read and how: a split of a pinned ``pairs`` version, its bands and targets, the
    batch size and the DataLoader's worker processes and prefetch depth."""

    lake: str
    split: str = "train"
    modality: str = "s1s2"
    nomenclature: str = "19"
    version: int | None = None  # None: the latest version (the one read is recorded)
    batch_size: int = 32
    resampling: str = "bilinear"
    augment: bool = False
    stats: str = "v1"  # band statistics of which archive version normalise the input
    workers: int = 2  # DataLoader worker processes per rank (0: decode in the calling process)
    prefetch: int = 2  # batches each worker prepares ahead

    @property
    def bands(self) -> tuple[Band, ...]:
        """Input bands in channel order."""
        return MODALITIES[self.modality]

    @property
    def needs_s1(self) -> bool:
        """True when the modality has S1 bands (rows without an S1 partner are skipped)."""
        return any(b in S1_BANDS for b in self.bands)

    def validate(self) -> None:
        """Raise ValueError on an unknown split, modality, nomenclature or resampling, or on a
        batch size, worker count or prefetch depth out of range."""
        for value, allowed in (
            (self.split, SPLITS),
            (self.modality, tuple(MODALITIES)),
            (self.nomenclature, tuple(NOMENCLATURES)),
            (self.resampling, resample.MODES),
            (self.stats, tuple(BAND_STATS)),
        ):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {allowed}")
        if self.batch_size < 1 or self.workers < 0 or self.prefetch < 1:
            raise ValueError("batch_size and prefetch must be >= 1 and workers >= 0")


@dataclass
class Batch:
    """One batch: inputs N×C×120×120 float32, multi-hot targets N×K float32, patch ids, and the
    ids of rows skipped since the previous batch (no S1 partner for an S1 modality)."""

    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]
    skipped: list[str] = field(default_factory=list)
    slot: int = -1  # the worker buffer x was written into (see train.buffers); -1: none
    pool: tuple[int, int] = (0, 0)  # the key of that buffer's pool

    def pin_memory(self) -> Batch:
        """The batch with its tensors in page-locked memory (DataLoader's ``pin_memory``)."""
        return Batch(self.x.pin_memory(), self.y.pin_memory(), self.ids, self.skipped)

    def __reduce__(self) -> tuple:
        # Sent by a worker: an input in a pool slot travels as the slot's number (the main
        # process maps the slot already), the small target as bytes.
        x = None if self.slot >= 0 else self.x
        rows = len(self.x)
        return _arrived, (x, self.y.numpy(), self.ids, self.skipped, self.slot, self.pool, rows)


def _arrived(
    x: torch.Tensor | None,
    y: np.ndarray,
    ids: list[str],
    skipped: list[str],
    slot: int,
    pool: tuple[int, int],
    rows: int,
) -> Batch:
    if x is None:
        x = buffers.arrived(pool, slot, rows)
    return Batch(x, torch.from_numpy(y), ids, skipped, slot, pool)


def band_array(column: pa.Array, band: Band) -> np.ndarray:
    """A binary column of one band → N×size×size native array, zero-copy from Arrow's buffer."""
    n, shape = len(column), (len(column), band.size, band.size)
    if column.null_count:
        raise ValueError(f"band {band.name} has {column.null_count} missing values")
    if n == 0:
        return np.empty(shape, band.numpy_dtype)
    _, offsets_buffer, data = column.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, count=n + 1, offset=4 * column.offset)
    width = band.nbytes
    start = int(offsets[0])
    if not np.array_equal(offsets, np.arange(start, start + (n + 1) * width, width, np.int32)):
        raise ValueError(f"band {band.name}: values are not {width} bytes each")
    pixels = np.frombuffer(data, band.numpy_dtype, count=n * band.size**2, offset=start)
    return pixels.reshape(shape)


def decode_bands(
    columns: dict[str, pa.ChunkedArray],
    bands: tuple[Band, ...],
    resampling: str,
    stats: dict[str, tuple[float, float]],
    out: torch.Tensor | None = None,
    scratch: buffers.Scratch | None = None,
) -> torch.Tensor:
    """Band byte columns → normalised N×C×120×120 float32, resampled to the 10 m grid.

    Conversion and normalisation take one pass per band (two for integers) at native
    resolution, ``x / std - mean / std`` (``(x - mean) / std`` up to float rounding), read
    straight from Arrow's buffers chunk by chunk (cheaper for the 20 m and 60 m bands; the
    resampling kernels are linear, so the order does not matter); bands of a coarser native size
    are converted into one scratch tensor per size and resampled straight into their channels of
    ``out`` (:mod:`bigearth_spark.train.resample`, without a copy of the result).
    ``out``: the tensor to write into (a new one by default); ``scratch``: where to keep work
    tensors between calls.
    """
    n = len(columns[bands[0].name])
    scratch = scratch or buffers.Scratch()
    shape = (n, len(bands), 120, 120)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    elif out.shape != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the batch needs {shape}")
    by_size: dict[int, list[int]] = {}
    for c, b in enumerate(bands):
        by_size.setdefault(b.size, []).append(c)
    for size, channels in by_size.items():
        coarse = (n, len(channels), size, size)
        native = out if size == 120 else scratch.get(f"native{size}", coarse)
        for j, c in enumerate(channels):
            b = bands[c]
            mean, std = stats[b.name]
            shift = torch.tensor(-mean / std)
            target, row = native[:, c] if size == 120 else native[:, j], 0
            for chunk in columns[b.name].chunks:
                part = target[row : row + len(chunk)]
                pixels = torch.from_numpy(band_array(chunk, b))
                if pixels.dtype != torch.float32:  # convert in place (add would copy first)
                    pixels = part.copy_(pixels)
                torch.add(shift, pixels, alpha=1 / std, out=part)  # (x - mean) / std, one pass
                row += len(chunk)
            if size != 120:
                resample.upsample(native[:, j], out[:, c], resampling, scratch)
    return out


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips and 90° rotations, drawn per sample (in place).

    Sample i becomes ``rot90(flip_v(flip_h(x[i])), k[i])``; samples that draw the same
    transform are transformed together (at most 16 groups), not one by one.
    """
    n = x.shape[0]
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    k = torch.randint(0, 4, (n,), generator=generator)
    code = flip_h.long() + 2 * flip_v.long() + 4 * k
    for c in code.unique().tolist():
        if c == 0:
            continue
        idx = (code == c).nonzero().flatten()
        sub = x[idx]
        if c & 1:
            sub = sub.flip(-1)
        if c & 2:
            sub = sub.flip(-2)
        x[idx] = torch.rot90(sub, c >> 2, dims=(-2, -1))
    return x


def split_files(spec: DataSpec) -> tuple[int, list[delta_log.LiveFile]]:
    """(version, live files of the split) of the pinned ``pairs`` version.

    Raises :class:`EmptySplitError`, saying how many rows have no split and how to give them
    one, when the split has no rows.
    """
    snap = delta_log.snapshot(table_path(normalize_lake(spec.lake), PAIRS), spec.version)
    files = [f for f in snap.where(split=spec.split) if f.num_records != 0]
    if files:
        return snap.version, files
    unassigned = sum(f.num_records or 0 for f in snap.where(split=None))
    hint = (
        f"; {unassigned} rows of this version have no split because the official lists were "
        "not ingested: re-run the ingest with --lists <folder of train.csv, val.csv, test.csv "
        "(v1) or metadata.parquet (v2)>"
        if unassigned
        else "; the table has no rows of any unassigned split either"
    )
    raise EmptySplitError(f"split {spec.split!r} has no rows in pairs version {snap.version}{hint}")


class PairsDataset(IterableDataset):
    """One rank's share of a split, as :class:`Batch` es, split again among DataLoader workers.

    Rank ``rank`` of ``world_size`` reads rows ``[N·rank/W, N·(rank+1)/W)`` of the epoch's row
    order (±1 row: balanced whatever the row-group sizes), each worker an equal part of that.
    Call :meth:`set_epoch` before iterating (the row order and augmentation depend on it).
    """

    def __init__(self, spec: DataSpec, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        spec.validate()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.spec, self.rank, self.world_size, self.seed = spec, rank, world_size, seed
        self.version, files = split_files(spec)
        self.groups = shards.row_groups([f.path for f in files])
        self.rows_in_split = sum(g.rows for g in self.groups)
        logged = sum(f.num_records or 0 for f in files)
        if all(f.num_records is not None for f in files) and logged != self.rows_in_split:
            raise DataLossError(
                f"the Delta log counts {logged} rows in split {spec.split!r}, "
                f"the parquet footers {self.rows_in_split}"
            )
        self.target = f"multi_hot_{spec.nomenclature}"
        self.columns = ["patch_id", self.target, *[b.name for b in spec.bands]]
        # shared memory: persistent DataLoader workers see the epoch the main process sets
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._files: dict[str, pq.ParquetFile] = {}  # opened once per process
        self._scratch = buffers.Scratch()  # decoding's work tensors, one set per process
        # a buffer for each batch a worker may have queued, the one it writes and the one in use
        shape = (spec.batch_size, len(spec.bands), 120, 120)
        self.pool = buffers.BufferPool(spec.workers, spec.prefetch + 2, shape)

    @property
    def epoch(self) -> int:
        """The epoch of the next iteration."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (row order and augmentation) of the next iteration, also in the
        DataLoader's persistent workers."""
        self._epoch.fill_(epoch)

    def slices(self, epoch: int, part: int, parts: int) -> list[shards.Slice]:
        """The row-group slices of reader ``part`` of ``parts`` in ``epoch``."""
        order = shards.epoch_order(self.groups, self.seed, epoch, self.spec.split == "train")
        return shards.plan(order, parts, part)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        part = self.rank * workers + worker
        epoch = self.epoch
        yield from self._batches(self.slices(epoch, part, self.world_size * workers), epoch, part)

    def _tables(self, slices: list[shards.Slice]) -> Iterator[pa.Table]:
        """The slices' rows; a DataLoader worker reads on its own thread only (like torch, which
        gives each worker one thread: N workers use N cores, not N × pyarrow's pool)."""
        threads = get_worker_info() is None
        for s in slices:
            if s.group.path not in self._files:
                self._files[s.group.path] = storage.parquet_file(s.group.path)
            file = self._files[s.group.path]
            group = file.read_row_group(s.group.index, columns=self.columns, use_threads=threads)
            yield group.slice(s.start, s.rows)

    def _batches(self, slices: list[shards.Slice], epoch: int, part: int) -> Iterator[Batch]:
        """Re-batch the slices' rows while still bytes; decode each batch once."""
        stats = BAND_STATS[self.spec.stats]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 1009 + part)
        pending: list[pa.Table] = []
        size, skipped = 0, []
        size_cap = self.spec.batch_size

        def emit(n: int) -> Batch:
            nonlocal pending, size, skipped
            table = pa.concat_tables(pending) if pending else None  # no copy of band bytes
            head = table.slice(0, n) if table is not None else None
            pending = [table.slice(n)] if table is not None and size > n else []
            size -= n
            batch = self._decode(head, stats, gen, skipped)
            skipped = []
            return batch

        for table in self._tables(slices):
            if self.spec.needs_s1 and table.column(S1_BANDS[0].name).null_count:
                has_s1 = table.column(S1_BANDS[0].name).is_valid()
                skipped += table.filter(pc.invert(has_s1)).column("patch_id").to_pylist()
                table = table.filter(has_s1)
            pending.append(table)
            size += table.num_rows
            while size >= size_cap:
                yield emit(size_cap)
        if size or skipped:
            yield emit(size)

    def _decode(
        self,
        table: pa.Table | None,
        stats: dict[str, tuple[float, float]],
        gen: torch.Generator,
        skipped: list[str],
    ) -> Batch:
        bands, k = self.spec.bands, len(NOMENCLATURES[self.spec.nomenclature])
        if table is None or table.num_rows == 0:
            empty = torch.empty((0, len(bands), 120, 120)), torch.empty((0, k))
            return Batch(*empty, [], skipped)
        cols = {b.name: table.column(b.name) for b in bands}
        info = get_worker_info()
        slot, out = self.pool.take(info.id, len(table)) if info else (-1, None)
        x = decode_bands(cols, bands, self.spec.resampling, stats, out, self._scratch)
        if self.spec.augment:
            x = augment(x, gen)
        flat = pc.list_flatten(table.column(self.target)).to_numpy(zero_copy_only=False)
        y = torch.from_numpy(flat.astype(np.float32))
        ids = table.column("patch_id").to_pylist()
        return Batch(x, y.view(len(table), -1), ids, skipped, slot, self.pool.key)


class PatchLoader:
    """A rank's batches of one split per epoch: :class:`PairsDataset` in a ``DataLoader`` with
    ``spec.workers`` persistent processes (started with the first epoch, kept for the next ones
    with their open files and buffers), ``spec.prefetch`` batches each, pinned memory on CUDA."""

    def __init__(self, spec: DataSpec, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        self.dataset = PairsDataset(spec, rank, world_size, seed)
        self.spec, self.version = spec, self.dataset.version
        workers = spec.workers
        self.loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=workers,
            prefetch_factor=spec.prefetch if workers else None,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            # its own generator for the workers' base seed: starting an iterator then never
            # draws from torch's global RNG, which dropout uses (a resumed run stays exact)
            generator=torch.Generator().manual_seed(seed),
        )

    @property
    def rows_in_split(self) -> int:
        """Rows of the split in the pinned version (all ranks together)."""
        return self.dataset.rows_in_split

    def epoch(self, epoch: int = 0, skipped: list[str] | None = None) -> Iterator[Batch]:
        """This rank's batches of one epoch (the last one of each worker may be smaller).

        Ids of rows skipped because the modality needs a missing S1 partner go to ``skipped``.
        Starting the next epoch ends this one: iterate one epoch at a time.
        """
        self.dataset.set_epoch(epoch)
        for batch in self.loader:
            if skipped is not None:
                skipped += batch.skipped
            if batch.ids:
                yield batch


def verify_epoch(
    ids_per_rank: Sequence[Sequence[str]],
    expected: int,
    skipped_per_rank: Sequence[Sequence[str]] = (),
) -> int:
    """Check that the ranks together delivered every row of the split exactly once, each either
    scored (``ids_per_rank``) or skipped for a missing S1 partner (``skipped_per_rank``); return
    the number scored.

    Raises :class:`DataLossError` on an id scored or skipped more than once, one both scored and
    skipped, or a number of ids that differs from the Delta log's count of the split.
    """
    scored = Counter(i for ids in ids_per_rank for i in ids)
    skipped = Counter(i for ids in skipped_per_rank for i in ids)
    for what, counts in (("delivered", scored), ("skipped", skipped)):
        repeated = sorted(i for i, n in counts.items() if n > 1)
        if repeated:
            raise DataLossError(
                f"{len(repeated)} rows {what} more than once in an epoch: {repeated[:5]}"
            )
    both = sorted(scored.keys() & skipped.keys())
    if both:
        raise DataLossError(f"{len(both)} rows both delivered and skipped: {both[:5]}")
    if len(scored) + len(skipped) != expected:
        raise DataLossError(
            f"epoch delivered {len(scored)} rows (+{len(skipped)} skipped without S1) but the "
            f"split has {expected} rows in the pinned table version"
        )
    return len(scored)
