"""``bigearth-spark``: synth | ingest | sql | export | experiment | train | evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from bigearth_spark.config import Config, load_config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

console = Console()


def _spark(cfg: Config, app: str):
    from bigearth_spark.spark import build_spark

    return build_spark(app, cfg.master, cfg.spark_conf)


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        args.profile, lake=getattr(args, "lake", None), master=args.master, database=args.database
    )


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic archive."""
    from bigearth_spark.archive.synth import write_archive
    from bigearth_spark.archive.synth.pack import pack_archive

    folders = Path(args.out) / ".folders" if args.pack else Path(args.out)
    manifest = write_archive(folders, args.flavor, args.pairs, seed=args.seed, defects=args.defects)
    if args.pack:  # the official downloads' form: tarballs, lists and metadata beside them
        manifest = pack_archive(folders, Path(args.out), args.pack)
        shutil.rmtree(folders)
    console.print(
        f"synthetic {args.flavor} archive with {args.pairs} pairs in {args.out}: "
        f"roots {manifest['roots']}"
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest archive roots into the lake; print what the run did and the lake's tables (with
    ``--summary`` also the lake's counts per split, top labels and quarantine reasons)."""
    from bigearth_spark.archive.layout import roots_in_background
    from bigearth_spark.etl.ingest import Ingest
    from bigearth_spark.tables.catalog import register
    from bigearth_spark.tables.summary import lake_summary, print_summary, table_states

    cfg = _config(args)
    roots = roots_in_background(args.input)  # tarball inputs are indexed while Spark starts
    spark = _spark(cfg, "bigearth-ingest")
    ingest = Ingest(
        spark, cfg.lake, cfg.database, lock_wait_s=args.lock_wait, single_writer=args.single_writer
    )
    report = ingest.run(args.input, args.lists, roots)
    console.print(
        f"[bold]ingest {report.run_id}[/bold]: {report.entries} entries, "
        f"{report.decoded_ok} readable patches; inserted {report.inserted}"
    )
    console.print(f"quarantined this run (by reason): {report.quarantined or 'none'}")
    if args.summary:
        if not ingest.register:  # the summary's queries name the views
            register(spark, ingest.lake, cfg.database)
        print_summary(lake_summary(spark, ingest.lake, cfg.database), console)
    else:
        print_summary({"tables": table_states(spark, ingest.lake)}, console)
    if not report.success:
        console.print("[red]nothing at all could be read from the input[/red]")
        return 1
    return 0


def _registered_lake(args: argparse.Namespace, app: str) -> tuple[SparkSession, str, Config]:
    """(session, lake, config) with the lake's tables and views registered in the catalog."""
    from bigearth_spark.config import normalize_lake
    from bigearth_spark.tables.catalog import register

    cfg = _config(args)
    spark = _spark(cfg, app)
    lake = normalize_lake(cfg.lake)
    register(spark, lake, cfg.database)
    return spark, lake, cfg


def cmd_summary(args: argparse.Namespace) -> int:
    """Print the lake's tables, counts per split, top labels and quarantine reasons."""
    from bigearth_spark.tables.summary import lake_summary, print_summary

    spark, lake, cfg = _registered_lake(args, "bigearth-summary")
    print_summary(lake_summary(spark, lake, cfg.database), console)
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """Run one SQL statement over the lake's tables and views."""
    spark, _, cfg = _registered_lake(args, "bigearth-sql")
    spark.catalog.setCurrentDatabase(cfg.database)
    df = spark.sql(args.query)
    if args.json:
        for row in df.toLocalIterator():
            print(json.dumps(row.asDict(recursive=True), default=str))
    else:
        df.show(args.limit, truncate=False)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export one patch to .npz."""
    from bigearth_spark.config import normalize_lake
    from bigearth_spark.tables.export import export_patch

    cfg = _config(args)
    arrays = export_patch(
        _spark(cfg, "bigearth-export"), normalize_lake(cfg.lake), args.patch_id, args.out
    )
    console.print(f"wrote {args.out}: {', '.join(arrays)}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run a grid of training runs (a paper's table), or report it beside the published one."""
    from bigearth_spark.experiments.grid import Grid, run_grid
    from bigearth_spark.experiments.report import write_report

    grid = Grid.load(args.grid)
    if args.action == "run":
        from bigearth_spark.config import normalize_lake

        cfg = _config(args)
        given = {"epochs": args.epochs, "batch_size": args.batch_size}
        overrides = {k: v for k, v in given.items() if v is not None}
        status = run_grid(
            _spark(cfg, "bigearth-experiment"),
            grid,
            normalize_lake(cfg.lake),
            args.out,
            args.ranks,
            args.archive_split or None,
            **overrides,
        )
        console.print(status)
    text, page = write_report(grid, args.out)
    print(text, flush=True)  # plain: Markdown tables must not be wrapped
    console.print(f"report: {page}")
    return 1 if args.action == "run" and "failed" in status.values() else 0


def cmd_train(argv: Sequence[str]) -> int:
    """Train (the flags of jobs/train.py; one process per rank under horovodrun)."""
    from bigearth_spark.train.launch import main as train_main

    return train_main(argv)


def cmd_evaluate(argv: Sequence[str]) -> int:
    """Evaluate a checkpoint (the flags of jobs/evaluate.py)."""
    from bigearth_spark.evaluate.classify import main as evaluate_main

    return evaluate_main(argv)


PASS_THROUGH = {"train": cmd_train, "evaluate": cmd_evaluate}


def _synth_arguments(s: argparse.ArgumentParser) -> None:
    """The flags of ``synth``."""
    s.add_argument("--flavor", choices=["v1", "v2"], default="v1")
    s.add_argument("--pairs", type=int, default=100)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--defects", action="store_true", help="inject each kind of bad input")
    s.add_argument(
        "--pack",
        choices=["tar", "tar.gz", "tar.zst"],
        help="write the roots as tarballs with the official names (v1: tar.gz, v2: tar.zst)",
    )
    s.set_defaults(func=cmd_synth)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bigearth-spark``."""
    p = argparse.ArgumentParser(prog="bigearth-spark", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def spark_command(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        s.add_argument("--profile", default="local", help="conf/<profile>.yaml or a YAML path")
        s.add_argument("--master", help="Spark master (default: spark-submit's or local[*])")
        s.add_argument("--database", help="catalog database (default: bigearthnet)")
        s.add_argument("--lake", help="lake root URI")
        return s

    _synth_arguments(sub.add_parser("synth", help="write a synthetic archive in the exact formats"))

    s = spark_command("ingest", "ingest archive roots into Delta tables")
    s.add_argument(
        "--input",
        action="append",
        required=True,
        help="archive root, tarball (.tar, .tar.gz, .tar.zst) or folder of them; path or URI "
        "(repeatable)",
    )
    s.add_argument(
        "--lists", action="append", default=[], help="folder (path or URI) with official lists"
    )
    s.add_argument(
        "--lock-wait",
        type=float,
        default=3600.0,
        help="seconds to wait for another ingest writing the same lake (default 3600)",
    )
    s.add_argument(
        "--single-writer",
        action="store_true",
        help="no other job writes this lake: allows an S3 lake without the DynamoDB LogStore",
    )
    s.add_argument(
        "--summary",
        action="store_true",
        help="then print the lake's counts per split, top labels and quarantine reasons "
        "(queries that scan the lake's small columns: seconds on a big lake)",
    )
    s.set_defaults(func=cmd_ingest)

    s = spark_command("summary", "print the lake's counts per table, split, label and reason")
    s.set_defaults(func=cmd_summary)

    s = spark_command("sql", "run SQL over the lake's tables and views")
    s.add_argument("query")
    s.add_argument("--json", action="store_true", help="one JSON object per row")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_sql)

    s = spark_command("export", "export one patch to .npz")
    s.add_argument("--patch-id", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_export)

    s = spark_command("experiment", "run a grid of training runs or report it (paper tables)")
    s.add_argument("action", choices=["run", "report"])
    s.add_argument("grid", help="conf/experiments/<name>.yaml")
    s.add_argument("--out", default="runs/experiments", help="folder of the grids' runs")
    s.add_argument("--ranks", type=int, default=1, help="horovodrun ranks per cell")
    s.add_argument("--epochs", type=int, help="override the grid's epochs (a quick look)")
    s.add_argument("--batch-size", type=int, help="override the grid's batch size")
    s.add_argument("--archive-split", default="train", help="retrieval archive ('' to skip)")
    s.set_defaults(func=cmd_experiment)

    for name, func in PASS_THROUGH.items():  # listed for --help; main() hands them their flags
        sub.add_parser(name, help=func.__doc__, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bigearth-spark``."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        return PASS_THROUGH[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
