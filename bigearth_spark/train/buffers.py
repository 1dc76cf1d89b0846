"""Shared-memory input buffers that DataLoader workers reuse.

A worker hands a batch to the main process through shared memory. A fresh buffer per batch costs
a page fault and a kernel-zeroed page for every 4 KiB of it (~50 ms for a 52 MB S1+S2 batch of
64, as much as decoding it), and sending a tensor costs a socket connection to pass its file
descriptor plus a new mapping in the main process. So the main process creates a few full-batch
buffers per worker before the workers start (they inherit the mappings); a worker writes the
next batch into one of its buffers that the main process no longer holds and sends only the
slot's number (see ``Batch.__reduce__``), and the main process rebuilds the batch from its own
mapping of that slot (:func:`arrived`). The slot is free again once the batch's input tensor (and
with it every view of it) is garbage collected: for every batch that arrives, also for the ones
DataLoader drops itself when a new epoch of persistent workers begins before the last one was
read to its end.
"""

from __future__ import annotations

import itertools
import math
import os
import weakref

import torch


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor whose storage is created in shared memory (no copy when a
    worker sends it, unlike ``share_memory_()`` of an ordinary tensor)."""
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def pin(x: torch.Tensor) -> None:
    """Page-lock ``x``'s memory for CUDA (``cudaHostRegister``), in place: a shared buffer that
    this process maps is then copied to the device asynchronously, with no staging copy."""
    size = x.untyped_storage().nbytes()
    error = int(torch.cuda.cudart().cudaHostRegister(x.data_ptr(), size, 0))
    if error:
        raise RuntimeError(f"cudaHostRegister of a {size}-byte buffer failed: cudaError {error}")


_POOLS: weakref.WeakValueDictionary[tuple[int, int], BufferPool] = weakref.WeakValueDictionary()
_KEYS = itertools.count()


class BufferPool:
    """``per_worker`` reusable buffers of ``shape`` (a full batch) and ``dtype`` for each of
    ``workers`` DataLoader workers. Build it in the main process, before the workers start: the
    buffers (address space only until written) and the slots' in-use flags are shared memory.
    ``pinned``: page-lock the buffers for CUDA (:func:`pin`; the memory is then committed)."""

    def __init__(
        self,
        workers: int,
        per_worker: int,
        shape: tuple[int, ...],
        dtype: torch.dtype = torch.float32,
        pinned: bool = False,
    ) -> None:
        self.per_worker, self.shape, self.dtype = per_worker, shape, dtype
        self.in_use = torch.zeros(workers * per_worker, dtype=torch.uint8).share_memory_()
        self.buffers = [shared_empty(shape, dtype) for _ in range(workers * per_worker)]
        if pinned:
            for buffer in self.buffers:
                pin(buffer)
        self.key = (os.getpid(), next(_KEYS))  # how a batch finds its pool in the main process
        _POOLS[self.key] = self

    def take(self, worker: int, rows: int) -> tuple[int, torch.Tensor]:
        """Worker side: (slot, the first ``rows`` of a free buffer of ``worker``); when all of
        them are still held by the main process, slot -1 and a fresh shared tensor."""
        if rows > self.shape[0]:
            raise ValueError(f"{rows} rows do not fit buffers of {self.shape[0]}")
        first = worker * self.per_worker
        for slot in range(first, first + self.per_worker):
            if not self.in_use[slot]:
                self.in_use[slot] = 1
                return slot, self.buffers[slot][:rows]
        return -1, shared_empty((rows, *self.shape[1:]), self.dtype)

    def batch_input(self, slot: int, rows: int) -> torch.Tensor:
        """Main side: the first ``rows`` of ``slot`` as a tensor of its own (not a view: views
        taken from it keep it alive, so the slot is released only after all of them)."""
        storage = self.buffers[slot].untyped_storage()
        return torch.empty(0, dtype=self.dtype).set_(storage, 0, (rows, *self.shape[1:]))

    def release_when_dropped(self, x: torch.Tensor, slot: int) -> None:
        """Main side: free ``slot`` once ``x`` is garbage collected (nothing if slot is -1)."""
        if slot >= 0:
            weakref.finalize(x, self.in_use.__setitem__, slot, 0)


def arrived(pool: tuple[int, int], slot: int, rows: int) -> torch.Tensor:
    """Main side, for a batch a worker wrote into ``slot`` of pool ``pool``: its ``rows`` rows,
    released when dropped."""
    owner = _POOLS.get(pool)
    if owner is None or pool[0] != os.getpid():
        raise RuntimeError(f"batch buffer pool {pool} does not belong to process {os.getpid()}")
    x = owner.batch_input(slot, rows)
    owner.release_when_dropped(x, slot)
    return x


class Scratch:
    """Reusable float32 work tensors of one decoding process on ``device``, by name: allocating
    them per batch costs fresh, kernel-zeroed pages each time (~3 MB per S1+S2 batch of 64)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """An uninitialised tensor of ``shape``: the first rows of the one kept under ``name``
        when its other dimensions match and it has enough rows, else a new one kept instead."""
        kept = self._tensors.get(name)
        if kept is None or kept.shape[1:] != shape[1:] or kept.shape[0] < shape[0]:
            kept = self._tensors[name] = torch.empty(shape, device=self.device)
        return kept[: shape[0]]
