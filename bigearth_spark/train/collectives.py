"""The few collective operations of the training loop, behind one interface with a Horovod and a
``torch.distributed`` implementation, so that neither launcher owns the loop.

The loop needs: rank and size (and the host's share of ranks), gradients averaged over the
ranks at every step (:meth:`Collectives.distributed_optimizer`), a *join* for ranks whose
shard ran out of batches first (they contribute zero gradients to the others' remaining steps),
broadcasts of the model's tensors and of the optimizer state, and a gather of Python objects
(the exactly-once check's ids, the weights' fingerprints, the scores).

* :class:`HorovodCollectives`: ``horovodrun`` or Horovod on Spark (``hvd.*``).
* :class:`TorchCollectives`: ``torch.distributed`` as ``torchrun`` or Spark's
  ``TorchDistributor`` start it (gloo on CPU, NCCL on CUDA). Gradients are averaged with one
  all-reduce of all of them flattened, preceded by a one-element all-reduce that counts the
  ranks still stepping; a joined rank answers the others' steps with zeros until that count is 0.
  Averages divide by the world size, joined ranks included, as Horovod's join does; a new
  optimizer's state is initialised as Horovod initialises it before its first broadcast.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch


class Collectives:
    """The operations the loop uses; see the module docstring."""

    rank: int
    size: int
    local_rank: int
    local_size: int

    def distributed_optimizer(
        self, optimizer: torch.optim.Optimizer, named_parameters: list[tuple[str, torch.Tensor]]
    ) -> Any:
        """``optimizer`` whose ``step`` first averages the gradients over the ranks (and has
        ``synchronize``/``skip_synchronize`` for AMP's unscaling, as Horovod's)."""
        raise NotImplementedError

    def broadcast_tensors(self, tensors: dict[str, torch.Tensor], root: int) -> None:
        """Overwrite ``tensors`` (a state dict's, in place) with rank ``root``'s."""
        raise NotImplementedError

    def broadcast_optimizer(self, optimizer: Any, root: int) -> None:
        """Give every rank rank ``root``'s optimizer state."""
        raise NotImplementedError

    def join(self) -> None:
        """Wait for every rank's last step, contributing zero gradients to the steps of ranks
        that still have batches."""
        raise NotImplementedError

    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        raise NotImplementedError


class HorovodCollectives(Collectives):
    """Horovod (``horovodrun``, ``horovod.spark.run``)."""

    def __init__(self) -> None:
        import horovod.torch as hvd

        self.hvd = hvd
        hvd.init()
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()

    def distributed_optimizer(self, optimizer, named_parameters):
        return self.hvd.DistributedOptimizer(optimizer, named_parameters=named_parameters)

    def broadcast_tensors(self, tensors, root):
        self.hvd.broadcast_parameters(tensors, root_rank=root)

    def broadcast_optimizer(self, optimizer, root):
        self.hvd.broadcast_optimizer_state(optimizer, root_rank=root)

    def join(self):
        self.hvd.join()

    def allgather_object(self, obj):
        return self.hvd.allgather_object(obj)


class TorchCollectives(Collectives):
    """``torch.distributed`` from the environment ``torchrun``/``TorchDistributor`` set
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR/PORT``)."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.dist = dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.size)))
        self.device = (
            torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else None
        )
        self._optimizer: _AveragingOptimizer | None = None

    def distributed_optimizer(self, optimizer, named_parameters):
        self._optimizer = _AveragingOptimizer(optimizer, [p for _, p in named_parameters], self)
        return self._optimizer

    def broadcast_tensors(self, tensors, root):
        for _, tensor in sorted(tensors.items()):
            self.dist.broadcast(tensor.data, src=root)

    def broadcast_optimizer(self, optimizer, root):
        if not optimizer.state_dict()["state"]:
            _initialise_state(optimizer.inner)
        state = [optimizer.state_dict() if self.rank == root else None]
        self.dist.broadcast_object_list(state, src=root)
        if self.rank != root:
            optimizer.load_state_dict(state[0])

    def join(self):
        while self._stepping(0):  # the others still step: answer with zero gradients
            if self._optimizer is not None:
                self._optimizer.average(zeros=True)

    def allgather_object(self, obj):
        out: list[Any] = [None] * self.size
        self.dist.all_gather_object(out, obj)
        return out

    def _stepping(self, mine: int) -> int:
        """How many ranks step now (``mine``: 1 for this rank's step, 0 once it has joined)."""
        count = torch.tensor([mine], dtype=torch.int64, device=self.device)
        self.dist.all_reduce(count)
        return int(count.item())


def _initialise_state(optimizer: torch.optim.Optimizer) -> None:
    """Give a new optimizer its state as Horovod's ``broadcast_optimizer_state`` does (one step
    on zero gradients: Adam's moments at 0 and its step count at 1), so that both launchers
    train bit for bit alike."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
    optimizer.step()


class _AveragingOptimizer:
    """An optimizer whose ``step`` averages the gradients over the ranks first (one flat
    all-reduce); everything else is the wrapped optimizer's."""

    def __init__(self, inner: torch.optim.Optimizer, params: list[torch.Tensor], comm) -> None:
        self.inner, self.params, self.comm = inner, params, comm
        self._synchronized = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def average(self, zeros: bool = False) -> None:
        """All-reduce the gradients, divided by the world size (``zeros``: a joined rank's
        share)."""
        grads = [torch.zeros_like(p) if zeros or p.grad is None else p.grad for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.comm.dist.all_reduce(flat)
        flat /= self.comm.size
        if zeros:
            return
        offset = 0
        for p, g in zip(self.params, grads, strict=True):
            n = g.numel()
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def synchronize(self) -> None:
        """Average the gradients now (before AMP's unscaling; :meth:`step` then does not)."""
        self.comm._stepping(1)
        self.average()
        self._synchronized = True

    @contextlib.contextmanager
    def skip_synchronize(self) -> Iterator[None]:
        yield

    def step(self, closure=None) -> Any:
        if not self._synchronized:
            self.comm._stepping(1)
            self.average()
        self._synchronized = False
        return self.inner.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups


def collectives(kind: str) -> Collectives:
    """The collectives of a launcher: ``horovod`` or ``torch``."""
    if kind == "horovod":
        return HorovodCollectives()
    if kind == "torch":
        return TorchCollectives()
    raise ValueError(f"collectives {kind!r}: horovod or torch")
