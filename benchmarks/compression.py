"""What zstd level 3 would buy over the ingest's level, band by band, on rows of ``pairs``.

The ingest writes every column of ``pairs`` at zstd ``ZSTD_LEVEL``
(:mod:`bigearth_spark.etl.write_pairs`). This measures the choice on ``--rows`` rows of a lake's
``pairs`` table (default: the one ``benchmarks/ingest.py`` made; rows from every data file),
writing each band column alone as the ingest does (row groups of
:data:`part_files.ROWS_PER_GROUP`, no dictionary, no statistics): per band, milliseconds per row
and stored size ÷ raw bytes at the ingest's level and at level 3, and the bytes that level 3
saves per millisecond of extra CPU (n/a where it was not slower).

Last lines, against all bands at level 3 (parquet-mr's default, the baseline, measured in the
same process): ``cpu_ratio=`` (compression time at the ingest's level ÷ at level 3) and
``size_ratio=`` (stored bytes ÷ at level 3).
"""

from __future__ import annotations

import argparse
import glob
import io
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bigearth_spark.archive.bands import ALL_BANDS
from bigearth_spark.etl.write_pairs import ZSTD_LEVEL
from bigearth_spark.tables.part_files import ROWS_PER_GROUP

OUT = Path(__file__).resolve().parent / "out"


def sample(lake: Path, rows: int) -> pa.Table:
    """The band columns of ``rows`` rows of the lake's ``pairs`` table, taken evenly from all
    of its data files (every split, every task)."""
    paths = sorted(glob.glob(str(lake / "pairs" / "split=*" / "*.parquet")))
    if not paths:
        raise SystemExit(f"no pairs data files below {lake}: run benchmarks/ingest.py first")
    each = -(-rows // len(paths))
    bands = [c for c in ALL_BANDS if c != "reference_map"]
    tables = [pq.ParquetFile(p).read_row_group(0, columns=bands).slice(0, each) for p in paths]
    return pa.concat_tables(tables).slice(0, rows).combine_chunks()


def compress(column: pa.Table, level: int, repeats: int = 3) -> tuple[float, int]:
    """(best seconds, bytes) of writing ``column`` as Parquet at zstd ``level``."""
    best, size = float("inf"), 0
    for _ in range(repeats):
        out = io.BytesIO()
        start = time.perf_counter()
        pq.write_table(
            column,
            out,
            compression="zstd",
            compression_level=level,
            use_dictionary=False,
            write_statistics=False,
            row_group_size=ROWS_PER_GROUP,
        )
        best = min(best, time.perf_counter() - start)
        size = out.getbuffer().nbytes
    return best, size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lake", type=Path, default=OUT / "lake_20000")
    p.add_argument("--rows", type=int, default=1000)
    args = p.parse_args()
    table = sample(args.lake, args.rows)
    n = table.num_rows
    chosen_s = chosen_b = all3_s = all3_b = 0.0
    print(
        f"{n} rows; band: ms/row and size/raw at level {ZSTD_LEVEL} (the ingest's) | level 3;"
        " bytes saved per ms at level 3"
    )
    for name in table.column_names:
        column = table.select([name])
        raw = pc.sum(pc.binary_length(column.column(0))).as_py() or 1
        (s1, b1), (s3, b3) = compress(column, ZSTD_LEVEL), compress(column, 3)
        per_ms = f"{(b1 - b3) / ((s3 - s1) * 1000):8,.0f}" if s3 > s1 else "     n/a"
        print(
            f"  {name:4} {s1 / n * 1e3:.3f} {b1 / raw:.3f} | {s3 / n * 1e3:.3f} {b3 / raw:.3f}"
            f" | {per_ms} B/ms"
        )
        chosen_s, chosen_b = chosen_s + s1, chosen_b + b1
        all3_s, all3_b = all3_s + s3, all3_b + b3
    print(f"cpu_ratio={chosen_s / all3_s:.2f}")
    print(f"size_ratio={chosen_b / all3_b:.3f}")


if __name__ == "__main__":
    main()
