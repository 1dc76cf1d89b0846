"""Rank-0 checkpoints that resume exactly: model, optimizer, epoch, step, RNG states, the Delta
table version read, early-stopping state. Written atomically (temp file + rename)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST, BEST = "latest.pt", "best.pt"


@dataclass
class TrainState:
    """Progress of a run, saved with the weights."""

    epoch: int = 0  # epochs completed
    step: int = 0
    table_version: int | None = None
    best_metric: float = float("-inf")
    epochs_without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def rng_state() -> dict[str, Any]:
    """The RNG states of python, numpy and torch."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s result."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    config: dict[str, Any],
) -> Path:
    """Write a checkpoint to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": state.__dict__,
            "rng": rng_state(),
            "config": config,
        },
        tmp,
    )
    os.replace(tmp, path)
    return path


def load(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` as a dict (``model``, ``optimizer``, ``state``, ``rng``,
    ``config``), or None when there is none."""
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["state"] = TrainState(**ckpt["state"])
    return ckpt
