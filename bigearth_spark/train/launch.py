"""Command line of training: ``horovodrun -np N python jobs/train.py ...`` (one process per
rank), ``python jobs/train.py --launcher spark --num-proc N ...`` (Horovod on Spark: the ranks
run as Spark barrier tasks on the executors) or ``--launcher torch-distributor --num-proc N``
(Spark's ``TorchDistributor``: torch DDP collectives, gloo on CPU and NCCL on GPU; the ranks run
on the driver with a ``local[...]`` master, else as barrier tasks on the executors)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from bigearth_spark.train.loop import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``jobs/train.py``: every :class:`TrainConfig` field plus the launcher."""
    p = argparse.ArgumentParser(prog="jobs/train.py", description=__doc__)
    p.add_argument("--config", help="YAML of TrainConfig fields (conf/train/*.yaml)")
    p.add_argument(
        "--launcher", choices=["horovodrun", "spark", "torch-distributor"], default="horovodrun"
    )
    p.add_argument("--num-proc", type=int, default=2, help="ranks of the Spark launchers")
    p.add_argument("--master", help="Spark master of the Spark launchers (default local[N])")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
            p.add_argument(flag, type=kind, default=None, dest=f.name)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed flags (YAML first, flags override)."""
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    if args.config:
        return TrainConfig.from_yaml(args.config, **overrides)
    return TrainConfig(**{k: v for k, v in overrides.items() if v is not None})


def _train_on_spark(cfg: TrainConfig, num_proc: int, master: str | None) -> dict[str, Any]:
    import horovod.spark

    from bigearth_spark.spark import build_spark
    from bigearth_spark.train.loop import train

    spark = build_spark("bigearth-train", master or f"local[{num_proc}]")
    results = horovod.spark.run(train, args=(cfg,), num_proc=num_proc, verbose=1)
    spark.stop()
    return results[0]


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its local paths made absolute: ranks started on executors run in the
    executors' working folders, not the driver's."""
    from bigearth_spark import storage

    mlflow = cfg.mlflow_uri
    if "://" not in mlflow and not mlflow.startswith("file:"):
        mlflow = str(Path(mlflow).resolve())
    out = cfg.out if storage.is_uri(cfg.out) else str(Path(cfg.out).resolve())
    return replace(cfg, lake=storage.normalize(cfg.lake), out=out, mlflow_uri=mlflow)


def train_torch(cfg: TrainConfig) -> dict[str, Any]:
    """One rank of a ``torch.distributed`` run (what TorchDistributor starts on each process)."""
    from bigearth_spark.train.loop import train

    return train(cfg, "torch")


def _train_with_torch_distributor(
    cfg: TrainConfig, num_proc: int, master: str | None
) -> dict[str, Any]:
    import torch
    from pyspark.ml.torch.distributor import TorchDistributor

    from bigearth_spark.spark import build_spark

    spark = build_spark("bigearth-train", master or f"local[{num_proc}]")
    local = master is None or master == "local" or master.startswith("local[")  # not local-cluster
    gpu = torch.cuda.is_available()
    distributor = TorchDistributor(num_processes=num_proc, local_mode=local, use_gpu=gpu)
    result = distributor.run(train_torch, cfg)
    spark.stop()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, train, print one JSON line of final validation metrics (rank 0)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if args.launcher == "spark":
        result = _train_on_spark(absolute_paths(cfg), args.num_proc, args.master)
    elif args.launcher == "torch-distributor":
        result = _train_with_torch_distributor(absolute_paths(cfg), args.num_proc, args.master)
    else:
        import horovod.torch as hvd

        from bigearth_spark.train.loop import train

        result = train(cfg)
        if hvd.rank() != 0:
            return 0
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
