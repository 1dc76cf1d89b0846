"""Export one patch from the lake to ``.npz``: bands at native resolution and archive dtype,
its paired S1 bands and reference map where present, and its labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bigearth_spark.archive.bands import REFERENCE_MAP, S1_BANDS, S2_BANDS, decode_band
from bigearth_spark.tables.schema import PAIRS, REFERENCE_MAPS, S1, S2
from bigearth_spark.tables.write import table_path


def _row(spark: SparkSession, lake: str, table: str, patch_id: str):
    df = spark.read.format("delta").load(table_path(lake, table))
    return df.where(F.col("patch_id") == patch_id).first()


def export_patch(spark: SparkSession, lake: str, patch_id: str, out: str | Path) -> dict:
    """Write patch ``patch_id`` (an S2 id gives the whole pair, an S1 id the S1 patch) to
    ``out``; return the arrays written."""
    arrays: dict[str, np.ndarray] = {}
    s2 = _row(spark, lake, S2, patch_id)
    if s2 is not None:
        arrays.update({b.name: decode_band(b.name, s2[b.name]) for b in S2_BANDS})
        pair = _row(spark, lake, PAIRS, patch_id)
        s1_id = pair["s1_patch_id"] if pair is not None else None
        labels43 = pair["labels43"] if pair is not None else s2["labels43"]
        labels19 = pair["labels19"] if pair is not None else None
        ref = _row(spark, lake, REFERENCE_MAPS, patch_id)
        if ref is not None:
            arrays[REFERENCE_MAP.name] = decode_band(REFERENCE_MAP.name, ref[REFERENCE_MAP.name])
    else:
        s1_id, labels43, labels19 = patch_id, None, None
    s1 = _row(spark, lake, S1, s1_id) if s1_id else None
    if s1 is not None:
        arrays.update({b.name: decode_band(b.name, s1[b.name]) for b in S1_BANDS})
        labels43 = labels43 if labels43 is not None else s1["labels43"]
    if not arrays:
        raise KeyError(f"patch {patch_id!r} is in neither {S2} nor {S1} of {lake}")
    arrays["labels43"] = np.array(labels43 or [], dtype=str)
    arrays["labels19"] = np.array(labels19 or [], dtype=str)
    np.savez(out, **arrays)
    return arrays
