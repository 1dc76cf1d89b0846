"""Export one patch from the lake to ``.npz``: bands at native resolution and archive dtype,
its paired S1 bands and reference map where stored, and its labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bigearth_spark.archive.bands import decode_band
from bigearth_spark.tables.schema import PAIRS, SIDE_PATH, SIDES
from bigearth_spark.tables.write import table_path


def export_patch(spark: SparkSession, lake: str, patch_id: str, out: str | Path) -> dict:
    """Write patch ``patch_id`` (an S2 id gives the whole pair, an S1 id the S1 patch) to
    ``out``; return the arrays written."""
    pairs = spark.read.format("delta").load(table_path(lake, PAIRS))
    row = pairs.where(F.col("patch_id") == patch_id).first()
    sides = [s for s in SIDES if row is not None and row[SIDE_PATH[s]] is not None]
    if row is None:
        row = pairs.where(F.col("s1_patch_id") == patch_id).first()
        sides = ["s1"] if row is not None else []
    if not sides:
        raise KeyError(
            f"patch {patch_id!r} is stored neither as an S2 nor as an S1 patch in {lake}"
        )
    arrays = {f.name: decode_band(f.name, row[f.name]) for s in sides for f in SIDES[s]}
    arrays["labels43"] = np.array(row["labels43"] or [], dtype=str)
    arrays["labels19"] = np.array((row["labels19"] if "s2" in sides else None) or [], dtype=str)
    np.savez(out, **arrays)
    return arrays
