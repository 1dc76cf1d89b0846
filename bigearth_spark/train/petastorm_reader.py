"""The Petastorm reader (``reader: petastorm``): Petastorm's ``make_batch_reader`` over the live
files of one pinned ``pairs`` version and split, decoded into the default reader's batches.

The only module that imports petastorm (0.13.1, its last release: it needs pyarrow < 15 and
numpy < 2), so that a later upgrade of pyarrow can drop it here alone.

* The files come from the Delta log (:func:`bigearth_spark.train.data.split_files`), never from
  the table's folder, which also holds dead files of earlier versions.
* Sharding is Petastorm's: reader ``part`` of ``parts`` (rank × DataLoader workers) gets the
  row groups whose index in the files' order is ``part`` modulo ``parts`` (``cur_shard``,
  ``shard_count``); their order is shuffled per epoch for training. The balance is in the data:
  the ingest writes row groups of a fixed row count (:data:`part_files.ROWS_PER_GROUP`; the
  last of a file may be shorter), so shares differ by at most about one row group
  (:func:`row_group_shares` gives them exactly). Ranks with fewer batches ``join`` in the
  training loop, as with the default reader.
* Rows become the default reader's batches: the same re-batching, decode (worker or device),
  augmentation and skipped-row bookkeeping (:class:`~bigearth_spark.train.data.PairsDataset`);
  the exactly-once check of each epoch is the loop's, as for the default reader.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pyarrow as pa
from petastorm import make_batch_reader
from petastorm.reader import Reader

from bigearth_spark import storage
from bigearth_spark.train import shards
from bigearth_spark.train.data import DataSpec, PairsDataset, split_files

# petastorm 0.13.1 reads through pyarrow's legacy dataset API, deprecated since pyarrow 11: the
# warnings say nothing a user can act on (the pinned pyarrow 14 still has that API)
for _category in (DeprecationWarning, FutureWarning):
    warnings.filterwarnings("ignore", category=_category, module=r"petastorm(\.|$)")
# nor the note that its schema leaves out pairs' nested ``issues`` column, which it never reads
warnings.filterwarnings("ignore", message=r"\[ARROW-1644\]", module=r"petastorm(\.|$)")


def file_url(path: str) -> str:
    """A live file's path as the URL Petastorm opens (``file://`` for a local path)."""
    return path if storage.is_uri(path) else f"file://{path}"


def make_pairs_reader(
    spec: DataSpec,
    columns: list[str],
    cur_shard: int = 0,
    shard_count: int = 1,
    **options,
) -> Reader:
    """A Petastorm batch reader of ``columns`` over the live files of ``spec``'s pinned
    ``pairs`` version and split (for users' own Petastorm code; ``options`` go to
    ``make_batch_reader``, e.g. ``shuffle_row_groups``, ``seed``, ``num_epochs``,
    ``workers_count``). Each item is a namedtuple of numpy arrays, one row group's rows."""
    _, files = split_files(spec)
    urls = [file_url(f.path) for f in files]
    return make_batch_reader(
        urls, schema_fields=columns, cur_shard=cur_shard, shard_count=shard_count, **options
    )


def row_group_shares(spec: DataSpec, shard_count: int) -> list[int]:
    """Rows per shard under Petastorm's sharding (row group ``i`` to shard ``i % shard_count``,
    in the files' order)."""
    _, files = split_files(spec)
    sizes = [g.rows for g in shards.row_groups([f.path for f in files])]
    return [sum(sizes[s::shard_count]) for s in range(shard_count)]


class PetastormPairs(PairsDataset):
    """:class:`PairsDataset` whose rows come from Petastorm: reader ``part`` of ``parts`` reads
    Petastorm's shard ``part`` (one reading thread, like a default worker; row groups shuffled
    per epoch in training)."""

    def _rows(self, epoch: int, part: int, parts: int) -> Iterator[pa.Table]:
        schema = self._schema()
        if len(self.groups) < parts:  # Petastorm refuses more shards than row groups
            if part >= len(self.groups):
                return
            parts = len(self.groups)
        reader = make_pairs_reader(
            self.spec,
            self.columns,
            cur_shard=part,
            shard_count=parts,
            reader_pool_type="dummy",  # in this process: a DataLoader worker is the parallelism
            shuffle_row_groups=self.spec.split == "train",
            seed=self.seed * 1_000_003 + epoch,
            num_epochs=1,
        )
        try:
            for batch in reader:
                columns = [pa.array(list(getattr(batch, f.name)), f.type) for f in schema]
                yield pa.table(columns, schema=schema)
        finally:  # the context manager would also print a line from its (null) cache's cleanup
            reader.stop()
            reader.join()

    def _schema(self) -> pa.Schema:
        """The read columns' Arrow types (from the first file's footer)."""
        stored = storage.parquet_file(self.groups[0].path).schema_arrow
        return pa.schema([stored.field(c) for c in self.columns])
