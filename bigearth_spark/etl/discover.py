"""Discovery: archive roots → a DataFrame of patch folders, listed on the executors.

The driver only lists the top of each root (one ``scandir``: patch folders for v1, tile
folders for v2). Executors expand v2 tile folders; the result is repartitioned so that the
decode stage gets balanced tasks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from bigearth_spark.archive import layout

ENTRY_SCHEMA = T.StructType(
    [
        T.StructField("kind", T.StringType(), False),
        T.StructField("path", T.StringType(), False),
        T.StructField("nested", T.BooleanType(), False),
    ]
)
PATCHES_PER_TASK = 256


def _expand(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for frame in frames:
        out = [
            e
            for kind, path, nested in frame.itertuples(index=False)
            for e in layout.expand(layout.Entry(kind, path, nested))
        ]
        yield pd.DataFrame(
            {"kind": [e.kind for e in out], "path": [e.path for e in out], "nested": False}
        )


def discover(spark: SparkSession, roots: list[layout.ArchiveRoot]) -> tuple[DataFrame, int]:
    """All patch folders (and stray files) of ``roots`` as ``(kind, path)`` rows, spread evenly
    over decode tasks, and their count."""
    top = [e for root in roots for e in layout.top_entries(root)]
    frame = pd.DataFrame(
        {"kind": [e.kind for e in top], "path": [e.path for e in top],
         "nested": [e.nested for e in top]}
    )  # fmt: skip
    parallelism = spark.sparkContext.defaultParallelism
    entries = spark.createDataFrame(frame, schema=ENTRY_SCHEMA)
    nested = int(frame["nested"].sum()) if len(frame) else 0
    if nested:
        entries = entries.repartition(min(nested, 4 * parallelism)).mapInPandas(
            _expand, ENTRY_SCHEMA
        )
    entries = entries.select("kind", "path").cache()
    count = entries.count()
    return entries.repartition(max(2 * parallelism, count // PATCHES_PER_TASK + 1)), count
