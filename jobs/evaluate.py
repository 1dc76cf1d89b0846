"""jobs/evaluate.py --lake DIR --checkpoint PATH --split test [--report DIR]"""

import argparse
import json
import sys

from bigearth_spark.config import load_config, normalize_lake
from bigearth_spark.evaluate.classify import evaluate_checkpoint
from bigearth_spark.spark import build_spark


def main(argv=None) -> int:
    """Evaluate a checkpoint, write the metrics table and the report, print a JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lake", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--archive-split", default="train", help="retrieval archive ('' to skip)")
    p.add_argument("--report", help="report folder (PNG charts + index.html)")
    p.add_argument("--profile", default="local")
    args = p.parse_args(argv)
    cfg = load_config(args.profile, lake=args.lake)
    spark = build_spark("bigearth-evaluate", cfg.master, cfg.spark_conf)
    result = evaluate_checkpoint(spark, normalize_lake(cfg.lake), args.checkpoint, args.split,
                                 args.archive_split or None, args.report)  # fmt: skip
    if "baseline_micro_f1" in result:
        print(f"{args.split}: micro-F1 {result['micro_f1']:.3f} vs label-frequency baseline "
              f"{result['baseline_micro_f1']:.3f}; macro-AP {result['macro_ap']:.3f}")  # fmt: skip
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
