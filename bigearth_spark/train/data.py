"""Training data: a ``torch.utils.data`` pipeline over the live files of a pinned ``pairs``
version.

:class:`PairsDataset` is an ``IterableDataset``: the live parquet files of exactly one table
version (``tables.delta_log``) and one split (the table is partitioned by split) are planned into
equal row ranges, one per rank × DataLoader worker (:mod:`bigearth_spark.train.shards`); each
worker reads only its row groups with pyarrow (the band columns and the target), re-batches the
rows while they are still bytes and, with ``decode="worker"``, decodes each batch at once: bytes
→ float32, normalised at native resolution, resampled to the 10 m grid per native size; with
``decode="device"`` it only copies the native bytes into one block per native size and the
training process decodes them on its device (:mod:`bigearth_spark.train.device_decode`).
:class:`PatchLoader` wraps it in a ``DataLoader`` (``workers`` persistent processes,
``prefetch`` batches each, pinned memory on CUDA) and :meth:`PatchLoader.to_device` delivers
either path's batches decoded on a device.
Every batch carries its patch ids and the ids skipped for a missing S1 partner, so the training
loop and the evaluation prove that each row of the split was delivered exactly once.

Petastorm's reader is not used here: it deals whole row groups to shards by index (unbalanced:
one rank got ten times the rows of another) and cannot read part of a row group.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from bigearth_spark import fetch, storage
from bigearth_spark.archive.bands import BAND_STATS, MODALITIES, S1_BANDS, Band
from bigearth_spark.archive.labels import NOMENCLATURES
from bigearth_spark.archive.lists import SPLITS
from bigearth_spark.config import normalize_lake
from bigearth_spark.tables import delta_log
from bigearth_spark.tables.schema import PAIRS
from bigearth_spark.tables.write import table_path
from bigearth_spark.train import buffers, device_decode, resample, shards
from bigearth_spark.train.epoch_check import DataLossError

READ_AHEAD = 2  # row groups read ahead per reader from object stores (~22 MB each of S1+S2)
_OPENING = threading.Lock()  # a process opens each file once, read-ahead threads included


READERS = ("default", "petastorm")


class EmptySplitError(ValueError):
    """The pinned table version has no rows in the requested split."""


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
    decode: str = "worker"  # worker | device: where bytes become normalised 10 m tensors
    reader: str = "default"  # default | petastorm (train.petastorm_reader)

    @property
    def bands(self) -> tuple[Band, ...]:
        """Input bands in channel order."""
        return MODALITIES[self.modality]

    @property
    def needs_s1(self) -> bool:
        """True when the modality has S1 bands (rows without an S1 partner are skipped)."""
        return any(b in S1_BANDS for b in self.bands)

    def validate(self) -> None:
        """Raise ValueError on an unknown split, modality, nomenclature, resampling or decode
        path, or on a batch size, worker count or prefetch depth out of range."""
        for value, allowed in (
            (self.split, SPLITS),
            (self.modality, tuple(MODALITIES)),
            (self.nomenclature, tuple(NOMENCLATURES)),
            (self.resampling, resample.MODES),
            (self.stats, tuple(BAND_STATS)),
            (self.decode, device_decode.DECODES),
            (self.reader, READERS),
        ):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {allowed}")
        if self.batch_size < 1 or self.workers < 0 or self.prefetch < 1:
            raise ValueError("batch_size and prefetch must be >= 1 and workers >= 0")


@dataclass
class Batch:
    """One batch: inputs N×C×120×120 float32, multi-hot targets N×K float32, patch ids, and the
    ids of rows skipped since the previous batch (no S1 partner for an S1 modality).

    With ``decode="device"`` the inputs are not decoded: ``x`` is None and ``native`` holds the
    bands' native bytes, one N×C×size×size block per native size and dtype
    (:func:`device_decode.native_groups`), and ``codes`` the drawn augmentation."""

    x: torch.Tensor | None
    y: torch.Tensor
    ids: list[str]
    skipped: list[str] = field(default_factory=list)
    slot: int = -1  # the worker buffer x was written into (see train.buffers); -1: none
    pool: tuple[int, int] = (0, 0)  # the key of that buffer's pool
    native: dict[str, torch.Tensor] = field(default_factory=dict)
    native_slots: dict[str, tuple[tuple[int, int], int]] = field(default_factory=dict)
    codes: torch.Tensor | None = None  # per-sample transforms (device_decode.draw_transforms)

    def pin_memory(self) -> Batch:
        """The batch with its tensors in page-locked memory (DataLoader's ``pin_memory``)."""
        native = {k: v.pin_memory() for k, v in self.native.items()}
        x = None if self.x is None else self.x.pin_memory()
        return Batch(
            x, self.y.pin_memory(), self.ids, self.skipped, native=native, codes=self.codes
        )

    @property
    def tensor_bytes(self) -> int:
        """Bytes of the batch's tensors: what its inputs, targets and codes occupy in shared
        memory or on the way to a device."""
        tensors = [self.y, *self.native.values()]
        tensors += [t for t in (self.x, self.codes) if t is not None]
        return sum(t.nbytes for t in tensors)

    def __reduce__(self) -> tuple:
        # Sent by a worker: an input in a pool slot travels as the slot's number (the main
        # process maps the slot already), the small target as bytes.
        x = None if self.slot >= 0 else self.x
        native = {k: v for k, v in self.native.items() if k not in self.native_slots}
        state = (self.ids, self.skipped, self.slot, self.pool, native, self.native_slots)
        return _arrived, (x, self.y.numpy(), self.codes, len(self.y), *state)


def _arrived(
    x: torch.Tensor | None,
    y: np.ndarray,
    codes: torch.Tensor | None,
    rows: int,
    ids: list[str],
    skipped: list[str],
    slot: int,
    pool: tuple[int, int],
    native: dict[str, torch.Tensor],
    native_slots: dict[str, tuple[tuple[int, int], int]],
) -> Batch:
    if slot >= 0:
        x = buffers.arrived(pool, slot, rows)
    native.update({k: buffers.arrived(key, s, rows) for k, (key, s) in native_slots.items()})
    return Batch(x, torch.from_numpy(y), ids, skipped, slot, pool, native, native_slots, codes)


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
    resolution, read straight from Arrow's buffers chunk by chunk; coarser bands are resampled
    straight into their channels of ``out`` (:func:`device_decode.decode_parts`, the same
    functions as the device path's).
    ``out``: the tensor to write into (a new one by default); ``scratch``: where to keep work
    tensors between calls.
    """
    n = len(columns[bands[0].name])
    shape = (n, len(bands), 120, 120)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    elif out.shape != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the batch needs {shape}")
    parts = functools.partial(_column_parts, columns)
    return device_decode.decode_parts(
        parts, bands, resampling, stats, out, scratch or buffers.Scratch()
    )


def _column_parts(
    columns: dict[str, pa.ChunkedArray], _: int, band: Band
) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, native pixels) of each chunk of ``band``'s column, zero-copy."""
    row = 0
    for chunk in columns[band.name].chunks:
        yield row, torch.from_numpy(band_array(chunk, band))
        row += len(chunk)


def native_block(
    columns: dict[str, pa.ChunkedArray],
    group: device_decode.NativeGroup,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The native bytes of ``group``'s bands as one N×C×size×size block (into ``out``, a new
    tensor by default): one copy from Arrow's buffers, nothing converted."""
    n = len(columns[group.bands[0].name])
    if out is None:
        out = torch.empty((n, len(group.bands), group.size, group.size), dtype=group.torch_dtype)
    for j, b in enumerate(group.bands):
        for row, pixels in _column_parts(columns, j, b):
            out[row : row + len(pixels), j].copy_(pixels)
    return out


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips and 90° rotations, drawn per sample (in place).

    Sample i becomes ``rot90(flip_v(flip_h(x[i])), k[i])``
    (:func:`device_decode.draw_transforms`, :func:`device_decode.transform`).
    """
    return device_decode.transform(x, device_decode.draw_transforms(x.shape[0], generator))


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
    ``pinned``: page-lock the native blocks' buffers of ``decode="device"`` for CUDA.
    """

    def __init__(
        self,
        spec: DataSpec,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        pinned: bool = False,
    ) -> None:
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
        # (device decode: also those being copied to the device, device_decode.AHEAD)
        self.pool: buffers.BufferPool | None = None
        self.native_pools: dict[str, buffers.BufferPool] = {}
        rows = spec.batch_size
        if spec.decode == "worker":
            shape = (rows, len(spec.bands), 120, 120)
            self.pool = buffers.BufferPool(spec.workers, spec.prefetch + 2, shape)
        for g in device_decode.native_groups(spec.bands) if spec.decode == "device" else ():
            per_worker = spec.prefetch + 2 + device_decode.AHEAD
            shape = (rows, len(g.bands), g.size, g.size)
            pool = buffers.BufferPool(spec.workers, per_worker, shape, g.torch_dtype, pinned)
            self.native_pools[g.name] = pool

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
        if info:
            # Arrow's default pool (jemalloc) hands freed row groups back to the OS, and the next
            # read faults them in again; mimalloc keeps them: ~0.1 ms less CPU per S1+S2 sample
            pa.set_memory_pool(pa.mimalloc_memory_pool())
        part = self.rank * workers + worker
        epoch = self.epoch
        yield from self._batches(self._rows(epoch, part, self.world_size * workers), epoch, part)

    def _rows(self, epoch: int, part: int, parts: int) -> Iterator[pa.Table]:
        """The rows of reader ``part`` of ``parts`` in ``epoch`` (its row-group slices)."""
        return self._tables(self.slices(epoch, part, parts))

    def _tables(self, slices: list[shards.Slice]) -> Iterator[pa.Table]:
        """The slices' rows; a DataLoader worker reads on its own thread only (like torch, which
        gives each worker one thread: N workers use N cores, not N × pyarrow's pool). Row groups
        on object stores are read :data:`READ_AHEAD` ahead, to hide the requests' latency."""
        threads = get_worker_info() is None

        def read(s: shards.Slice) -> pa.Table:
            file = self._file(s.group.path)
            group = file.read_row_group(s.group.index, columns=self.columns, use_threads=threads)
            return group.slice(s.start, s.rows)

        if all(storage.is_local(s.group.path) for s in slices):
            yield from map(read, slices)  # memory-mapped: nothing to wait for
        else:
            yield from fetch.read_ahead(read, slices, READ_AHEAD)

    def _file(self, path: str) -> pq.ParquetFile:
        """The open file of ``path`` (opened once per process, also by read-ahead threads)."""
        with _OPENING:
            if path not in self._files:
                self._files[path] = storage.parquet_file(path)
            return self._files[path]

    def _batches(self, tables: Iterator[pa.Table], epoch: int, part: int) -> Iterator[Batch]:
        """Re-batch the tables' rows while still bytes; decode each batch once."""
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

        for table in tables:
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
        flat = pc.list_flatten(table.column(self.target)).to_numpy(zero_copy_only=False)
        y = torch.from_numpy(flat.astype(np.float32)).view(len(table), -1)
        ids = table.column("patch_id").to_pylist()
        worker = get_worker_info()
        if self.spec.decode == "device":
            codes = device_decode.draw_transforms(len(table), gen) if self.spec.augment else None
            batch = Batch(None, y, ids, skipped, codes=codes)
            for g in device_decode.native_groups(bands):
                pool = self.native_pools[g.name]
                slot, block = pool.take(worker.id, len(table)) if worker else (-1, None)
                batch.native[g.name] = native_block(cols, g, block)
                if slot >= 0:
                    batch.native_slots[g.name] = (pool.key, slot)
            return batch
        assert self.pool is not None
        slot, out = self.pool.take(worker.id, len(table)) if worker else (-1, None)
        x = decode_bands(cols, bands, self.spec.resampling, stats, out, self._scratch)
        if self.spec.augment:
            x = augment(x, gen)
        return Batch(x, y, ids, skipped, slot, self.pool.key)


class PatchLoader:
    """A rank's batches of one split per epoch: :class:`PairsDataset` in a ``DataLoader`` with
    ``spec.workers`` persistent processes (started with the first epoch, kept for the next ones
    with their open files and buffers), ``spec.prefetch`` batches each, pinned memory on CUDA
    (decoded batches copied into it by DataLoader's pin thread; native blocks written straight
    into page-locked shared buffers)."""

    def __init__(self, spec: DataSpec, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        cuda = torch.cuda.is_available()
        if spec.reader == "petastorm":
            from bigearth_spark.train.petastorm_reader import PetastormPairs

            self.dataset: PairsDataset = PetastormPairs(spec, rank, world_size, seed, pinned=cuda)
        else:
            self.dataset = PairsDataset(spec, rank, world_size, seed, pinned=cuda)
        self.spec, self.version = spec, self.dataset.version
        self._decoders: dict[torch.device, device_decode.Decoder] = {}
        workers = spec.workers
        self.loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=workers,
            prefetch_factor=spec.prefetch if workers else None,
            persistent_workers=workers > 0,
            pin_memory=cuda and spec.decode == "worker",
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

    def to_device(
        self, device: torch.device | str, epoch: int = 0, skipped: list[str] | None = None
    ) -> Iterator[device_decode.OnDevice]:
        """:meth:`epoch`'s batches decoded on ``device`` (inputs and targets there), whichever
        the decode path (:func:`device_decode.feed`: copied ahead on a side stream on CUDA)."""
        yield from device_decode.feed(self.epoch(epoch, skipped), self.decoder(device))

    def decoder(self, device: torch.device | str) -> device_decode.Decoder:
        """This loader's decoder of batches moved to ``device`` (one per device, kept)."""
        device = torch.device(device)
        if device not in self._decoders:
            stats = BAND_STATS[self.spec.stats]
            self._decoders[device] = device_decode.Decoder(self.spec, stats, device)
        return self._decoders[device]
