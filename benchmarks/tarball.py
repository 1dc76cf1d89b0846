"""Ingest straight from the official tarballs (issue 29) against the ingest of the same archive's
extracted folders, and against what users do today (``tar -x`` of both tarballs, then the folder
ingest). Each run is a plain ``spark-submit jobs/ingest.py`` into a new lake, its input read once
just before it (the inputs and what the runs write exceed the page cache here: each run starts
with its own input warm); rounds interleave the four runs, figures are medians.

The tarballs are those of ``benchmarks/ingest.py``'s synthetic v1 archive, packed as the
official downloads (``synth.pack``: ``BigEarthNet-S2-v1.0.tar.gz`` and ``…-S1-…``, then the same
as ``.tar.zst``). A tarball run indexes its tarballs first (one sequential pass each, inside the
timed job, as a first ingest does: the index is deleted before every round); ``index_mb_per_s``
is that pass's rate, measured apart in this process (tar bytes per second, the tarballs one
after another). ``index_gz_seek_points_mb_per_s`` is the rate of the index pass the first
version made of the same tar.gz files: ``indexed_gzip``'s seek points every 4 MiB of tar, with
the same member scan and no re-pack (the two gzip index builds, measured side by side).

Output: ``name=value`` lines; ``ratio_vs_folders_gz=`` (tar.gz ingest's pairs/s ÷ the folder
ingest's), ``ratio_vs_folders_zst=``, ``ratio_vs_extract_then_ingest=`` (the tar.gz ingest ÷
extracting both tar.gz then ingesting the folders, timed together), peak RSS of each run's
process tree and ``rss_vs_folders_gz=`` last; before them, each round's folder rate and
ratios (the folder run's rate varies the most between runs on this shared machine).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.ingest import BIN, OUT, archive, run_measured, warm
from bigearth_spark.archive import tarball, tarball_scan
from bigearth_spark.archive.synth.pack import pack_archive
from bigearth_spark.archive.tarball_files import Seekable, open_tarball


def packed(pairs: int, out: Path, pack: str) -> Path:
    """The benchmark archive of ``pairs`` pairs as official tarballs (made once)."""
    dest = out / f"tarballs_v1_{pairs}_{pack.replace('.', '_')}"
    if not (dest / "synth_manifest.json").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        pack_archive(archive(pairs, out), dest, pack)
    return dest


def drop_indexes(folder: Path) -> None:
    for index in folder.glob("*.index"):
        shutil.rmtree(index)


def ingest(source: Path, lake: Path) -> tuple[float, int]:
    """(seconds, peak RSS) of one plain spark-submit ingest of ``source`` into a new lake; its
    output kept as ``lake``.log (the ingest's step times)."""
    shutil.rmtree(lake, ignore_errors=True)
    cmd = [str(BIN / "spark-submit"), "jobs/ingest.py", "--input", str(source), "--lake", str(lake)]
    seconds, peak, out = run_measured(cmd)
    lake.with_name(f"{lake.name}_{source.name}.log").write_text(out)
    return seconds, peak


def extract_then_ingest(source: Path, work: Path, lake: Path) -> tuple[float, int]:
    """``tar -xzf`` of every tarball of ``source`` into ``work``, then the folder ingest."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    for t in sorted(source.glob("*.tar.gz")):
        subprocess.run(["tar", "-xzf", str(t), "-C", str(work)], check=True)
    shutil.copytree(source / "lists", work / "lists")
    _, peak = ingest(work, lake)
    return time.perf_counter() - start, peak


def index_rate(source: Path) -> float:
    """MB of tar per second of the index pass over ``source``'s tarballs (in this process)."""
    drop_indexes(source)
    start = time.perf_counter()
    size = 0
    for t in sorted(p for p in source.iterdir() if tarball.is_tarball(p.name)):
        size += tarball.build_index(str(t)).tar_bytes
    return size / 1e6 / (time.perf_counter() - start)


def seek_points_index_rate(source: Path) -> float:
    """MB of tar per second of an ``indexed_gzip`` seek-point index (4 MiB apart) built with the
    same member scan over ``source``'s tar.gz files (kept in memory, not written)."""
    import indexed_gzip

    start = time.perf_counter()
    size = 0
    for t in sorted(source.glob("*.tar.gz")):
        raw = Seekable(open_tarball(str(t)))
        with indexed_gzip.IndexedGzipFile(
            fileobj=raw, spacing=4 << 20, buffer_size=1 << 20, readbuf_size=1 << 16
        ) as gz:
            members, _ = tarball_scan.scan(str(t), tarball_scan.Counted(gz, raw))
            gz.export_index(fileobj=io.BytesIO())
        size += tarball_scan.summary(members)["tar_bytes"]
    return size / 1e6 / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pairs", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    folders = archive(args.pairs, args.out)
    gz, zst = packed(args.pairs, args.out, "tar.gz"), packed(args.pairs, args.out, "tar.zst")
    lake, work = args.out / "lake_tarball", args.out / "extracted"
    runs: dict[str, list[float]] = {}

    def note(name: str, seconds: float, peak: int) -> None:
        runs.setdefault(f"{name}_pairs_per_s", []).append(args.pairs / seconds)
        runs.setdefault(f"{name}_peak_rss_gb", []).append(peak / 1e9)

    for _ in range(args.rounds):
        warm(folders)
        note("folders", *ingest(folders, lake))
        for name, source in (("tar_gz", gz), ("tar_zst", zst)):
            drop_indexes(source)
            warm(source)
            note(name, *ingest(source, lake))
        warm(gz)
        note("extract_then_ingest", *extract_then_ingest(gz, work, lake))
        runs.setdefault("index_gz_mb_per_s", []).append(index_rate(gz))
        runs.setdefault("index_gz_seek_points_mb_per_s", []).append(seek_points_index_rate(gz))
        runs.setdefault("index_zst_mb_per_s", []).append(index_rate(zst))
    shutil.rmtree(work, ignore_errors=True)

    def ratio(a: str, b: str) -> list[float]:
        return [x / y for x, y in zip(runs[a], runs[b], strict=True)]

    runs["ratio_vs_folders_gz"] = ratio("tar_gz_pairs_per_s", "folders_pairs_per_s")
    runs["ratio_vs_folders_zst"] = ratio("tar_zst_pairs_per_s", "folders_pairs_per_s")
    runs["ratio_vs_extract_then_ingest"] = ratio(
        "tar_gz_pairs_per_s", "extract_then_ingest_pairs_per_s"
    )
    runs["rss_vs_folders_gz"] = ratio("tar_gz_peak_rss_gb", "folders_peak_rss_gb")
    print(f"{args.pairs} pairs, medians of {args.rounds} rounds")
    for name in ("folders_pairs_per_s", "ratio_vs_folders_gz", "ratio_vs_folders_zst"):
        print(f"  each round, {name}: {', '.join(f'{v:.4g}' for v in runs[name])}")
    for name, values in runs.items():
        print(f"{name}={statistics.median(values):.4g}")


if __name__ == "__main__":
    main()
