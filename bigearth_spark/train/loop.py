"""The training loop, one process per rank: ``horovodrun``, Horovod on Spark, or
``torch.distributed`` as Spark's ``TorchDistributor`` starts it (:mod:`.collectives`).

DistributedOptimizer, broadcast of parameters and optimizer state, LR scaled by world size with
linear warm-up, BCE-with-logits, AMP on GPU, exactly-once check of every epoch, a comparison of
the ranks' weights after every epoch, validation macro-AP for early stopping, rank-0 checkpoints
and MLflow tracking, a progress bar on rank 0.

Batches reach the step decoded on the device (``PatchLoader.to_device``: decoded by the workers
or, with ``decode: device``, there). The step does not wait for the device: losses stay on it
until the epoch ends (bf16 autocast on GPUs that have it: fp16's loss scaler reads an inf flag
back every step). ``step_capture`` compiles the model's forward and backward
(:func:`step_forward`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from bigearth_spark.archive.labels import NOMENCLATURES
from bigearth_spark.config import reject_unknown_keys
from bigearth_spark.train import checkpoint
from bigearth_spark.train.collectives import Collectives, collectives
from bigearth_spark.train.data import DataSpec, PatchLoader
from bigearth_spark.train.device_decode import OnDevice, default_decode
from bigearth_spark.train.epoch_check import verify_epoch
from bigearth_spark.train.init import freeze_backbone, initialise, trainable
from bigearth_spark.train.metrics import multilabel_metrics
from bigearth_spark.train.models import build_model

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Settings of a training run (YAML in ``conf/train/``, overridable by flags)."""

    lake: str = "lake"
    out: str = "runs/default"
    model: str = "s-cnn"
    init: str = "scratch"  # scratch | imagenet | path of a checkpoint or state dict
    freeze_backbone: bool = False  # train the head only ("ImageNet features")
    modality: str = "s1s2"
    nomenclature: str = "19"
    table_version: int | None = None  # None: latest; a resumed run keeps its recorded version
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3  # per rank; scaled by the world size
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0
    patience: int = 5
    resampling: str = "bilinear"
    augment: bool = True
    stats: str = "v1"
    seed: int = 0
    workers: int = 2  # DataLoader worker processes per rank that read and decode batches
    prefetch: int = 2  # batches each worker prepares ahead
    decode: str | None = None  # worker | device; None: device when training on CUDA, else worker
    step_capture: str = "none"  # none | compile | cuda_graph (see step_forward)
    reader: str = "default"  # default | petastorm (train.petastorm_reader)
    mlflow_uri: str = "./mlruns"
    experiment: str = "bigearth_spark"

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Load a YAML config and apply non-None ``overrides``."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        reject_unknown_keys(data, cls, str(path))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


def _spec(cfg: TrainConfig, split: str, version: int | None) -> DataSpec:
    return DataSpec(
        cfg.lake,
        split,
        cfg.modality,
        cfg.nomenclature,
        version,
        cfg.batch_size,
        cfg.resampling,
        cfg.augment and split == "train",
        cfg.stats,
        cfg.workers,
        cfg.prefetch,
        cfg.decode or default_decode(torch.cuda.is_available()),
        cfg.reader,
    )


def _gather_epoch(
    ids: list[str], loader: PatchLoader, skipped: list[str], comm: Collectives
) -> tuple[int, int]:
    """Every rank's scored and skipped ids, verified to cover the split exactly once
    (:func:`verify_epoch`); (the number scored, the largest rank's rows less the smallest's)."""
    per_rank = comm.allgather_object((ids, skipped))
    seen = verify_epoch([i for i, _ in per_rank], loader.rows_in_split, [s for _, s in per_rank])
    shares = [len(i) + len(s) for i, s in per_rank]
    return seen, max(shares) - min(shares)


def evaluate(
    model: torch.nn.Module, loader: PatchLoader, device: torch.device, comm: Collectives
) -> dict[str, Any]:
    """Scores of this rank's shard gathered over all ranks; multi-label metrics of the split.
    Also checks the split was read exactly once."""
    model.eval()
    ids, ys, ps, skipped = [], [], [], []
    with torch.no_grad():
        for batch in loader.to_device(device, 0, skipped):
            ps.append(torch.sigmoid(model(batch.x).float()))
            ys.append(batch.y)
            ids += batch.ids
    seen, _ = _gather_epoch(ids, loader, skipped, comm)
    k = len(NOMENCLATURES[loader.spec.nomenclature])
    y, p = (
        np.concatenate(comm.allgather_object(torch.cat(t).cpu().numpy() if t else np.zeros((0, k))))
        for t in (ys, ps)
    )
    metrics = multilabel_metrics(y, p)
    metrics["rows"] = len(y)
    metrics["rows_without_s1"] = loader.rows_in_split - seen
    return metrics


@dataclass
class _Run:
    """What one rank holds while it trains."""

    cfg: TrainConfig
    comm: Collectives
    rank: int
    world: int
    device: torch.device
    state: checkpoint.TrainState
    train_loader: PatchLoader
    val_loader: PatchLoader
    model: torch.nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, compiled per step_capture
    opt: torch.optim.Optimizer
    amp: torch.dtype | None  # autocast's dtype (None: none)
    scaler: torch.amp.GradScaler
    base_lr: float
    steps_per_epoch: int
    warmup_steps: int

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def cpu_threads(local_ranks: int) -> int:
    """Intra-op threads of a rank that computes on CPU: this host's cores shared by its
    ``local_ranks`` ranks. Set whatever launched the rank (``horovodrun``, Spark's Python workers,
    which may set ``OMP_NUM_THREADS``): the same training then rounds the same way under every
    launcher, and ranks do not oversubscribe the cores."""
    return max(1, len(os.sched_getaffinity(0)) // local_ranks)


STEP_CAPTURES = ("none", "compile", "cuda_graph")


def step_forward(
    model: torch.nn.Module, capture: str, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's forward as the training step calls it, per ``capture``:

    * ``none``: eager PyTorch;
    * ``compile``: ``torch.compile`` (Inductor's fused kernels; forward and backward). Costs a
      compilation at the first step and again for each new batch shape (an epoch's smaller last
      batch); on CPU it needs a C++ compiler;
    * ``cuda_graph``: ``torch.compile(mode="reduce-overhead")``: the compiled forward and
      backward are also captured and replayed as CUDA graphs, one launch instead of hundreds
      (what lifts a GPU whose step is bound by kernel launches). Costs the compilation, a
      recording per batch shape and the graphs' own memory pool; each step copies its input into
      the graph's static buffer. The optimizer step and Horovod's allreduce stay outside the
      graph (the allreduce runs on Horovod's thread, which a graph cannot capture). Refused on
      a device other than CUDA.

    Raises ValueError on an unknown ``capture`` or a refused one."""
    if capture not in STEP_CAPTURES:
        raise ValueError(f"step_capture {capture!r} is not one of {STEP_CAPTURES}")
    if capture == "cuda_graph" and device.type != "cuda":
        raise ValueError(
            f"step_capture 'cuda_graph' needs a CUDA device, not {device.type}: "
            "use 'compile' or 'none'"
        )
    if capture == "none":
        return model
    return torch.compile(model, mode="reduce-overhead" if capture == "cuda_graph" else None)


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast's dtype: bf16 on a GPU that has it (no loss scaling, so no inf flag to read back
    every step), else fp16 on a GPU; none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _start(cfg: TrainConfig, comm: Collectives) -> _Run:
    """Resume from the last checkpoint if there is one, build the loaders of the pinned table
    version, the model and the distributed optimizer, identical on every rank of ``comm``."""
    rank, world = comm.rank, comm.size
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(comm.local_rank)
    else:
        torch.set_num_threads(cpu_threads(comm.local_size))
    resumed = checkpoint.load(Path(cfg.out) / checkpoint.LATEST)
    state = resumed["state"] if resumed else checkpoint.TrainState()
    version = state.table_version if resumed else cfg.table_version
    train_loader = PatchLoader(_spec(cfg, "train", version), rank, world, cfg.seed)
    state.table_version = train_loader.version
    val_loader = PatchLoader(_spec(cfg, "validation", state.table_version), rank, world, cfg.seed)
    bands = train_loader.spec.bands
    model = build_model(cfg.model, len(bands), len(NOMENCLATURES[cfg.nomenclature]))
    if not resumed:  # a resumed run loads its own weights below
        initialise(model, cfg.model, cfg.init, bands)
    if cfg.freeze_backbone:
        freeze_backbone(model)
    device = torch.device("cuda" if cuda else "cpu")
    model = model.to(device)
    forward = step_forward(model, cfg.step_capture, device)
    amp = _amp_dtype(device)
    base_lr = cfg.lr * world
    # Wrap first: DistributedOptimizer builds a new optimizer from the param groups, so state
    # loaded into the inner one would be lost.
    params = trainable(model)
    opt = comm.distributed_optimizer(
        torch.optim.Adam([p for _, p in params], lr=base_lr, weight_decay=cfg.weight_decay),
        params,
    )
    if resumed:
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["optimizer"])
        checkpoint.set_rng_state(resumed["rng"])
    comm.broadcast_tensors(model.state_dict(), root=0)
    comm.broadcast_optimizer(opt, root=0)
    steps = max(1, train_loader.rows_in_split // (cfg.batch_size * world))
    return _Run(
        cfg,
        comm,
        rank,
        world,
        device,
        state,
        train_loader,
        val_loader,
        model,
        forward,
        opt,
        amp,
        torch.amp.GradScaler("cuda", enabled=amp == torch.float16),
        base_lr,
        steps,
        max(1, int(cfg.warmup_epochs * steps)),
    )


def _step(run: _Run, batch: OnDevice, loss_fn: torch.nn.Module) -> torch.Tensor:
    """One optimizer step on ``batch`` (warm-up LR, AMP on GPU); its loss, on the device (read
    nothing back: the host queues the next step while the device computes this one)."""
    for group in run.opt.param_groups:
        group["lr"] = run.base_lr * min(1.0, (run.state.step + 1) / run.warmup_steps)
    run.opt.zero_grad()
    with torch.autocast(run.device.type, dtype=run.amp, enabled=run.amp is not None):
        loss = loss_fn(run.forward(batch.x), batch.y)
    if run.scaler.is_enabled():  # fp16: the scaler's step reads its inf flag (a host sync)
        run.scaler.scale(loss).backward()
        run.opt.synchronize()
        run.scaler.unscale_(run.opt)
        with run.opt.skip_synchronize():
            run.scaler.step(run.opt)
        run.scaler.update()
    else:
        loss.backward()
        run.opt.step()
    run.state.step += 1
    return loss.detach()


def _train_epoch(run: _Run, epoch: int) -> dict[str, float]:
    """Train one epoch on this rank's shard, bring the ranks together again, compare and align
    their weights (:func:`_compare_and_align`) and check that the split was read exactly once;
    the mean training loss and the rows read, over all ranks, and the comparison's outcome."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed * 100_003 + epoch * 101 + run.rank)  # resumed runs repeat exactly
    run.model.train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    ids: list[str] = []
    skipped: list[str] = []
    loss_sum, steps = torch.zeros((), dtype=torch.float64, device=run.device), 0
    params = [p for p in run.model.parameters() if p.requires_grad]
    prints: list[torch.Tensor] = []  # the parameters' fingerprint after each step
    desc = f"epoch {epoch + 1}/{cfg.epochs}"
    with tqdm(total=run.steps_per_epoch, desc=desc, disable=run.rank != 0) as bar:
        for batch in run.train_loader.to_device(run.device, epoch, skipped):
            loss_sum += _step(run, batch, loss_fn)
            prints.append(_fingerprint(params))
            steps += 1
            ids += batch.ids
            bar.update(1)
        mean_loss = loss_sum.item() / steps if steps else np.nan  # read once per epoch
        bar.set_postfix(loss=f"{mean_loss:.4f}")
    # Shards are equal (±1 row) but their last batches may differ in number: ranks that finish
    # early join, contributing zero gradients to the others' remaining steps.
    run.comm.join()
    fingerprints = torch.stack(prints).float().cpu().numpy() if prints else None
    agreement = _compare_and_align(run, steps, fingerprints)
    seen, spread = _gather_epoch(ids, run.train_loader, skipped, run.comm)
    loss = float(np.mean(run.comm.allgather_object(mean_loss)))
    return {"train_loss": loss, "train_rows": seen, "rank_rows_spread": spread, **agreement}


def _fingerprint(params: list[torch.Tensor]) -> torch.Tensor:
    """The parameters' L2 norms, one per tensor, left on the device (no synchronisation).

    ``torch._foreach_norm`` computes them in one fused launch; the public
    ``torch.nn.utils.get_total_norm`` would fold them into one float32 norm, too coarse to see a
    rank drift by 1e-6 in a few weights."""
    with torch.no_grad():
        return torch.stack(torch._foreach_norm(params))


def _compare_and_align(run: _Run, steps: int, prints: np.ndarray | None) -> dict[str, float]:
    """Compare the ranks' weights after an epoch, before any broadcast, and align the ranks.

    Every step applies the same averaged gradients on every rank, so after each step that all
    ranks took (the first ``min(steps)``) their parameters must be bit-identical: the ranks'
    per-step fingerprints (``prints``, :func:`_fingerprint`) must be equal, and so must the
    SHA-256 of the final parameters of ranks that took the same number of steps. ``ranks_agreed``
    is 1.0 when both hold, 0.0 when some rank diverged. When some ranks joined early (fewer
    steps: Horovod's join let the others step alone on their last batches) the first rank of the
    most steps broadcasts its parameters and optimizer state, and ``weights_broadcast`` is 1.0.
    Running statistics (BatchNorm buffers) follow each rank's own batches and are not compared:
    they are always broadcast from that rank (rank 0 when all stepped equally), so that every
    rank evaluates and checkpoints the same model.
    """
    per_rank = run.comm.allgather_object((steps, _checksum(run.model.named_parameters()), prints))
    most = max(n for n, _, _ in per_rank)
    common = min(n for n, _, _ in per_rank)
    root = next(r for r, (n, _, _) in enumerate(per_rank) if n == most)
    uneven = common != most
    same_final = all(len({c for m, c, _ in per_rank if m == n}) == 1 for n, _, _ in per_rank)
    ref = per_rank[0][2]
    same_steps = common == 0 or all(np.array_equal(p[:common], ref[:common]) for *_, p in per_rank)
    agreed = same_final and same_steps
    if uneven:
        run.comm.broadcast_tensors(run.model.state_dict(), root=root)  # and the buffers
        run.comm.broadcast_optimizer(run.opt, root=root)
    elif buffers := dict(run.model.named_buffers()):
        run.comm.broadcast_tensors(buffers, root=root)
    return {"ranks_agreed": float(agreed), "weights_broadcast": float(uneven)}


def _end_epoch(
    run: _Run, epoch: int, summary: dict[str, float], improved: bool, tracker: _Tracker | None
) -> None:
    """Record the epoch: history, checkpoints (latest, and best if ``improved``), MLflow, log."""
    run.state.history.append(summary)
    if tracker is None:
        return
    cfg_dict = asdict(run.cfg)
    out = Path(run.cfg.out)
    checkpoint.save(out / checkpoint.LATEST, run.model, run.opt, run.state, cfg_dict)
    if improved:
        checkpoint.save(out / checkpoint.BEST, run.model, run.opt, run.state, cfg_dict)
    tracker.epoch(epoch, summary)
    log.info("epoch %d: %s", epoch + 1, json.dumps(summary))


def _result(run: _Run, metrics: dict[str, Any]) -> dict[str, Any]:
    """The run's outcome: validation metrics, table version, whether the ranks' weights agreed
    before any broadcast in every epoch (see :func:`_compare_and_align`) and in how many epochs
    ranks joined early and the weights were broadcast."""
    history = run.state.history
    return {
        **{k: float(metrics[k]) for k in ("micro_f1", "macro_f1", "macro_ap", "micro_ap")},
        "table_version": run.state.table_version,
        "epochs": run.state.epoch,
        "world_size": run.world,
        "checkpoint": str(Path(run.cfg.out) / checkpoint.BEST),
        "ranks_identical_weights": all(h["ranks_agreed"] == 1.0 for h in history),
        "epochs_weights_broadcast": int(sum(h["weights_broadcast"] for h in history)),
        "weights_sha256": _checksum(run.model.state_dict().items()),
        "train_loss": [h["train_loss"] for h in history],
        # the largest rank's share of an epoch less the smallest's, over the epochs
        "rank_rows_spread": max((h.get("rank_rows_spread", 0) for h in history), default=0),
    }


def train(cfg: TrainConfig, launcher: str = "horovod") -> dict[str, Any]:
    """Run (or resume) training on this rank of ``launcher``'s ranks (``horovod``: horovodrun
    or Horovod on Spark; ``torch``: torch.distributed, as torchrun and TorchDistributor start
    it); return the final validation metrics and the table version. Stops early after
    ``patience`` epochs without a validation macro-AP gain."""
    run = _start(cfg, collectives(launcher))
    state = run.state
    tracker = _Tracker(cfg, state.table_version, run.world) if run.rank == 0 else None
    metrics: dict[str, Any] = {}
    for epoch in range(state.epoch, cfg.epochs):
        summary = _train_epoch(run, epoch)
        metrics = evaluate(run.model, run.val_loader, run.device, run.comm)
        state.epoch = epoch + 1
        improved = metrics["macro_ap"] > state.best_metric
        state.best_metric = max(state.best_metric, metrics["macro_ap"])
        state.epochs_without_improvement = 0 if improved else state.epochs_without_improvement + 1
        summary.update({k: float(v) for k, v in metrics.items() if np.isscalar(v)})
        _end_epoch(run, epoch, summary, improved, tracker)
        if state.epochs_without_improvement >= cfg.patience:
            if run.rank == 0:
                log.info("early stop: no macro-AP gain for %d epochs", cfg.patience)
            break
    if not metrics:  # resumed a finished run: report its validation metrics again
        metrics = evaluate(run.model, run.val_loader, run.device, run.comm)
    result = _result(run, metrics)
    if tracker:
        tracker.finish(Path(cfg.out), result)
    return result


def _checksum(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 of named tensors (names and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class _Tracker:
    """MLflow tracking of rank 0: params, per-epoch metrics, table version, the model."""

    def __init__(self, cfg: TrainConfig, version: int, world: int) -> None:
        import mlflow

        self.mlflow = mlflow
        uri = cfg.mlflow_uri
        mlflow.set_tracking_uri(
            uri if "://" in uri or uri.startswith("file:") else Path(uri).resolve().as_uri()
        )
        mlflow.set_experiment(cfg.experiment)
        self.run = mlflow.start_run(run_name=Path(cfg.out).name)
        mlflow.log_params({**asdict(cfg), "table_version": version, "world_size": world})

    def epoch(self, epoch: int, summary: dict[str, float]) -> None:
        self.mlflow.log_metrics({k: v for k, v in summary.items() if np.isfinite(v)}, step=epoch)

    def finish(self, out: Path, result: dict[str, Any]) -> None:
        self.mlflow.log_dict(result, "result.json")
        best = out / checkpoint.BEST
        if best.is_file():
            self.mlflow.log_artifact(str(best), artifact_path="model")
        self.mlflow.end_run()
