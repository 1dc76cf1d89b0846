"""The band columns' Parquet codec (``spark.bigearth.bandCodec``): what the ingest writes, that
the readers deliver the same batches from a lake of either codec, and that a bad value stops
the job before anything is written."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from bigearth_spark.archive.bands import ALL_BANDS
from bigearth_spark.etl.ingest import Ingest
from bigearth_spark.etl.write_pairs import BAND_CODEC_KEY
from bigearth_spark.tables import delta_log
from bigearth_spark.train.data import DataSpec, PatchLoader


def codecs(lake: str) -> dict[str, set[str]]:
    """Column → the codecs of its chunks in every live data file of ``pairs``."""
    found: dict[str, set[str]] = {}
    for f in delta_log.snapshot(f"{lake}/pairs").files:
        meta = pq.ParquetFile(f.path).metadata
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                chunk = meta.row_group(g).column(c)
                found.setdefault(chunk.path_in_schema.split(".")[0], set()).add(chunk.compression)
    return found


def ingested(spark, archive: Path, lake: Path, codec: str | None) -> str:
    """``archive`` ingested into ``lake`` with the band codec ``codec`` (None: unset)."""
    if codec is not None:
        spark.conf.set(BAND_CODEC_KEY, codec)
    try:
        Ingest(spark, str(lake)).run([str(archive)])
    finally:
        spark.conf.unset(BAND_CODEC_KEY)
    return str(lake)


def batches(lake: str, decode: str) -> list[tuple[list[str], torch.Tensor, torch.Tensor]]:
    spec = DataSpec(lake, "train", "s1s2", batch_size=7, decode=decode)
    return [(b.ids, b.x.clone(), b.y.clone()) for b in PatchLoader(spec).to_device("cpu")]


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_band_codec_applies_to_band_columns_and_reads_back_the_same(
    spark, v1_archive, v1_lake, tmp_path, codec
):
    """Band columns carry the codec, the other columns stay zstd, and both decode paths deliver
    the default lake's batches bit for bit."""
    lake = ingested(spark, v1_archive[0], tmp_path / "lake", codec)
    stored = codecs(lake)
    parquet_name = {"none": "UNCOMPRESSED", "lz4": "LZ4"}[codec]
    bands = {c for c in stored if c in ALL_BANDS}
    assert bands >= {"B02", "B8A", "VV", "VH"}
    assert all(stored[c] == {parquet_name} for c in bands)
    assert {c: z for c, z in stored.items() if c not in ALL_BANDS and z != {"ZSTD"}} == {}
    assert set().union(*codecs(v1_lake[0]).values()) == {"ZSTD"}  # the default
    for decode in ("worker", "device"):
        want, got = batches(v1_lake[0], decode), batches(lake, decode)
        assert [ids for ids, _, _ in got] == [ids for ids, _, _ in want] and want
        for (_, x, y), (_, wx, wy) in zip(got, want, strict=True):
            assert torch.equal(x, wx) and torch.equal(y, wy)


def test_unknown_band_codec_stops_the_job_before_writing(spark, v1_archive, tmp_path):
    with pytest.raises(ValueError, match=r"spark\.bigearth\.bandCodec is 'brotli'"):
        ingested(spark, v1_archive[0], tmp_path / "lake", "brotli")
    assert not (tmp_path / "lake").exists()
