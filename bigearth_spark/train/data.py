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
# pairs.issues (a list of structs, quarantine items) is not read by training; Petastorm warns
# that it skips it when it infers the schema.
warnings.filterwarnings("ignore", message=r"\[ARROW-1644\] Ignoring unsupported structure")
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
    """Band byte columns → normalised N×C×120×120 float32, resampled to the 10 m grid.

    Bands of one native size are stacked and resampled in one call; normalisation is in place.
    """
    n = len(columns[bands[0].name])
    out = torch.empty((n, len(bands), 120, 120), dtype=torch.float32)
    by_size: dict[int, list[int]] = {}
    for c, b in enumerate(bands):
        by_size.setdefault(b.size, []).append(c)
    for size, channels in by_size.items():
        group = np.empty((n, len(channels), size, size), dtype=np.float32)
        for j, c in enumerate(channels):
            b = bands[c]
            raw = np.frombuffer(b"".join(columns[b.name]), dtype=b.numpy_dtype)
            group[:, j] = raw.reshape(n, size, size)
        t = torch.from_numpy(group)
        if size != 120:
            kw = {} if resampling == "nearest" else {"align_corners": False}
            t = F.interpolate(t, size=(120, 120), mode=resampling, **kw)
        out[:, channels] = t
    mean = torch.tensor([stats[b.name][0] for b in bands]).view(1, -1, 1, 1)
    std = torch.tensor([stats[b.name][1] for b in bands]).view(1, -1, 1, 1)
    return out.sub_(mean).div_(std)


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

    def _rows(self, epoch: int, skipped: list[str] | None) -> Iterator[dict[str, np.ndarray]]:
        """Column dicts of this rank's rows, row group by row group (still band bytes)."""
        with self._reader(epoch) as reader:
            for rb in reader:
                cols = {k: np.asarray(v) for k, v in rb._asdict().items()}
                cols["patch_id"] = cols["patch_id"].astype(str)
                keep = np.ones(len(cols["patch_id"]), dtype=bool)
                if self.hash_sharding:
                    keep &= np.array([_shard_of(i, self.world_size) == self.rank
                                      for i in cols["patch_id"]], dtype=bool)  # fmt: skip
                if self.spec.needs_s1:
                    has_s1 = np.array([v is not None for v in cols[S1_BANDS[0].name]], dtype=bool)
                    if skipped is not None:
                        skipped += cols["patch_id"][keep & ~has_s1].tolist()
                    keep &= has_s1
                if keep.any():
                    yield {k: v[keep] for k, v in cols.items()}

    def epoch(self, epoch: int = 0, skipped: list[str] | None = None) -> Iterator[Batch]:
        """Batches of this rank's shard for one epoch (the last one may be smaller).

        Rows are re-batched while still bytes, so each batch is decoded once. Ids of rows
        skipped because the modality needs a missing S1 partner go to ``skipped``.
        """
        stats = BAND_STATS[self.spec.stats]
        gen = torch.Generator().manual_seed(self.seed * 1000 + epoch * 10 + self.rank)
        pending: list[dict[str, np.ndarray]] = []
        size = 0

        def emit(n: int) -> Batch:
            nonlocal pending, size
            cols = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
            head = {k: v[:n] for k, v in cols.items()}
            pending = [{k: v[n:] for k, v in cols.items()}] if size > n else []
            size -= n
            x = decode_bands(head, self.spec.bands, self.spec.resampling, stats)
            if self.spec.augment:
                x = augment(x, gen)
            y = torch.from_numpy(np.stack(head[self.target]).astype(np.float32))
            return Batch(x, y, head["patch_id"].tolist())

        for cols in self._rows(epoch, skipped):
            pending.append(cols)
            size += len(cols["patch_id"])
            while size >= self.spec.batch_size:
                yield emit(self.spec.batch_size)
        if size:
            yield emit(size)


def _shard_of(patch_id: str, world_size: int) -> int:
    return zlib.crc32(patch_id.encode()) % world_size


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
