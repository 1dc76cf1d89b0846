"""Training data: Petastorm over the live files of a pinned Delta version of ``pairs``.

The reader resolves the live parquet files of exactly one table version (``tables.delta_log``),
keeps the files of one split (the table is partitioned by split), reads only the needed columns
with ``petastorm.make_batch_reader`` sharded by rank, and turns band bytes into normalised,
resampled float tensors (vectorised per batch). Petastorm's PyTorch loaders reject binary
columns, so batching to tensors happens here. Every epoch's patch ids are kept so the training
loop can prove that each row of the split was delivered exactly once across all ranks.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from petastorm import make_batch_reader

from bigearth_spark.archive.bands import BAND_STATS, MODALITIES, S1_BANDS, Band
from bigearth_spark.config import normalize_lake
from bigearth_spark.tables import delta_log
from bigearth_spark.tables.schema import PAIRS
from bigearth_spark.tables.write import table_path

# petastorm 0.13.1 uses pyarrow's legacy dataset API; its deprecation warnings are expected.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm\..*")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyarrow\..*")
RESAMPLING = ("bilinear", "bicubic", "nearest")
SPLITS = ("train", "validation", "test")
# Petastorm's thread pool was seen returning no rows for whole sharded reads: default to the
# in-process pool, whose output the loop verifies every epoch anyway.
DEFAULT_POOL = "dummy"


class DataLossError(RuntimeError):
    """An epoch did not deliver every row of the split exactly once."""


@dataclass(frozen=True)
class DataSpec:
    """What to read: a split of a pinned ``pairs`` version, its bands and targets."""

    lake: str
    split: str = "train"
    modality: str = "s1s2"
    nomenclature: str = "19"
    version: int | None = None  # None: the latest version (the one read is recorded)
    batch_size: int = 32
    resampling: str = "bilinear"
    augment: bool = False
    stats: str = "v1"  # band statistics of which archive version normalise the input

    @property
    def bands(self) -> tuple[Band, ...]:
        """Input bands in channel order."""
        return MODALITIES[self.modality]

    @property
    def needs_s1(self) -> bool:
        """True when the modality has S1 bands (rows without an S1 partner are skipped)."""
        return any(b in S1_BANDS for b in self.bands)

    def validate(self) -> None:
        """Raise ValueError on an unknown split, modality, nomenclature or resampling."""
        for value, allowed in (
            (self.split, SPLITS), (self.modality, tuple(MODALITIES)),
            (self.nomenclature, ("19", "43")), (self.resampling, RESAMPLING),
            (self.stats, tuple(BAND_STATS)),
        ):  # fmt: skip
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {allowed}")


@dataclass
class Batch:
    """One batch: inputs N×C×120×120 float32, multi-hot targets N×K float32, patch ids."""

    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]


def decode_bands(columns: dict[str, np.ndarray], bands: tuple[Band, ...], resampling: str,
                 stats: dict[str, tuple[float, float]]) -> torch.Tensor:  # fmt: skip
    """Band byte columns → normalised N×C×120×120 float32, resampled to the 10 m grid."""
    channels = []
    for b in bands:
        raw = b"".join(columns[b.name])
        a = np.frombuffer(raw, dtype=b.numpy_dtype).reshape(-1, 1, b.size, b.size)
        t = torch.from_numpy(a.astype(np.float32))
        if b.size != 120:
            kw = {} if resampling == "nearest" else {"align_corners": False}
            t = F.interpolate(t, size=(120, 120), mode=resampling, **kw)
        mean, std = stats[b.name]
        channels.append((t - mean) / std)
    return torch.cat(channels, dim=1)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips and 90° rotations, drawn per sample."""
    n = x.shape[0]
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(-1), x)
    x = torch.where(flip_v[:, None, None, None], x.flip(-2), x)
    k = torch.randint(0, 4, (n,), generator=generator)
    return torch.cat([torch.rot90(x[i : i + 1], int(k[i]), dims=(-2, -1)) for i in range(n)])


class PatchLoader:
    """Sharded, version-pinned reader of one split of ``pairs`` producing :class:`Batch` es."""

    def __init__(self, spec: DataSpec, rank: int = 0, world_size: int = 1, seed: int = 0,
                 reader_pool: str = DEFAULT_POOL, workers: int = 2) -> None:  # fmt: skip
        spec.validate()
        self.spec, self.rank, self.world_size, self.seed = spec, rank, world_size, seed
        self.reader_pool, self.workers = reader_pool, workers
        snap = delta_log.snapshot(table_path(normalize_lake(spec.lake), PAIRS), spec.version)
        self.version = snap.version
        self.files = snap.where(split=spec.split)
        if not self.files:
            raise ValueError(f"split {spec.split!r} has no rows in pairs version {self.version}")
        row_groups = sum(pq.ParquetFile(f.path).metadata.num_row_groups for f in self.files)
        # Petastorm shards by row group; with fewer row groups than ranks, every rank reads the
        # split and keeps the rows whose id hashes to it (still exactly once, more reading).
        self.hash_sharding = world_size > row_groups
        self.target = f"multi_hot_{spec.nomenclature}"
        self.columns = ["patch_id", self.target, *[b.name for b in spec.bands]]

    @property
    def rows_in_split(self) -> int:
        """Rows of the split in this version, from the Delta log's statistics."""
        return sum(f.num_records or 0 for f in self.files)

    def _reader(self, epoch: int):
        return make_batch_reader(
            [f"file://{f.path}" for f in self.files],
            schema_fields=self.columns,
            reader_pool_type=self.reader_pool,
            workers_count=self.workers,
            shuffle_row_groups=self.spec.split == "train",
            seed=self.seed + epoch,
            cur_shard=None if self.hash_sharding or self.world_size == 1 else self.rank,
            shard_count=None if self.hash_sharding or self.world_size == 1 else self.world_size,
            num_epochs=1,
        )

    def epoch(self, epoch: int = 0, skipped: list[str] | None = None) -> Iterator[Batch]:
        """Batches of this rank's shard for one epoch (the last one may be smaller).

        Ids of rows skipped because the modality needs a missing S1 partner go to ``skipped``.
        """
        stats = BAND_STATS[self.spec.stats]
        gen = torch.Generator().manual_seed(self.seed * 1000 + epoch * 10 + self.rank)
        pending: list[Batch] = []
        size = 0
        with self._reader(epoch) as reader:
            for rb in reader:
                cols = rb._asdict()
                ids = [str(i) for i in cols["patch_id"]]
                if self.hash_sharding:
                    mine = np.array([_shard_of(i, self.world_size) == self.rank for i in ids])
                    cols = {k: np.asarray(v)[mine] for k, v in cols.items()}
                    ids = [i for i, m in zip(ids, mine, strict=False) if m]
                keep = np.ones(len(ids), dtype=bool)
                if self.spec.needs_s1:
                    keep = np.array([v is not None for v in cols[S1_BANDS[0].name]], dtype=bool)
                    if skipped is not None:
                        skipped += [i for i, k in zip(ids, keep, strict=False) if not k]
                if not keep.any():
                    continue
                cols = {k: np.asarray(v)[keep] for k, v in cols.items()}
                x = decode_bands(cols, self.spec.bands, self.spec.resampling, stats)
                if self.spec.augment:
                    x = augment(x, gen)
                y = torch.from_numpy(np.stack(cols[self.target]).astype(np.float32))
                pending.append(Batch(x, y, [i for i, k in zip(ids, keep, strict=False) if k]))
                size += len(pending[-1].ids)
                while size >= self.spec.batch_size:
                    batch, pending, size = _take(pending, self.spec.batch_size)
                    yield batch
        if size:
            yield _take(pending, size)[0]


def _shard_of(patch_id: str, world_size: int) -> int:
    return zlib.crc32(patch_id.encode()) % world_size


def _take(pending: list[Batch], n: int) -> tuple[Batch, list[Batch], int]:
    x = torch.cat([b.x for b in pending])
    y = torch.cat([b.y for b in pending])
    ids = [i for b in pending for i in b.ids]
    head = Batch(x[:n], y[:n], ids[:n])
    rest = [Batch(x[n:], y[n:], ids[n:])] if len(ids) > n else []
    return head, rest, len(ids) - n


def verify_epoch(ids_per_rank: list[list[str]], expected: int, skipped: int = 0) -> int:
    """Check that the ranks together saw every row of the split exactly once; return the count.

    Raises :class:`DataLossError` on duplicates or a count that differs from the Delta log's.
    """
    seen = [i for ids in ids_per_rank for i in ids]
    distinct = len(set(seen))
    if distinct != len(seen):
        raise DataLossError(f"{len(seen) - distinct} rows delivered more than once in an epoch")
    if distinct + skipped != expected:
        raise DataLossError(
            f"epoch delivered {distinct} rows (+{skipped} skipped without S1) but the split has "
            f"{expected} rows in the pinned table version"
        )
    return distinct
