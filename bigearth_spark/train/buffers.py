"""Shared-memory input buffers that DataLoader workers reuse.

A worker hands a batch to the main process through shared memory. A fresh buffer per batch costs
a page fault and a kernel-zeroed page for every 4 KiB of it (~50 ms for a 52 MB S1+S2 batch of
64, as much as decoding it), so each worker keeps a few full-batch buffers and writes the next
batch into one that the main process no longer holds: the main process marks a slot free when
the batch's input tensor (and with it every view of it) is garbage collected.
"""

from __future__ import annotations

import math
import weakref

import torch


def shared_empty(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 tensor whose storage is created in shared memory (no copy when a
    worker sends it, unlike ``share_memory_()`` of an ordinary tensor)."""
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * 4)
    return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)


class BufferPool:
    """``per_worker`` reusable float32 buffers of ``shape`` (a full batch) for each of
    ``workers`` DataLoader workers. Build it in the main process, before the workers start: the
    slots' in-use flags live in shared memory; each worker allocates its own buffers lazily."""

    def __init__(self, workers: int, per_worker: int, shape: tuple[int, ...]) -> None:
        self.per_worker, self.shape = per_worker, shape
        self.in_use = torch.zeros(max(workers, 1) * per_worker, dtype=torch.uint8).share_memory_()
        self._buffers: dict[int, torch.Tensor] = {}

    def take(self, worker: int, rows: int) -> tuple[int, torch.Tensor]:
        """Worker side: (slot, the first ``rows`` of a free buffer of ``worker``); when all of
        them are still held by the main process, slot -1 and a fresh shared tensor."""
        if rows > self.shape[0]:
            raise ValueError(f"{rows} rows do not fit buffers of {self.shape[0]}")
        first = worker * self.per_worker
        for slot in range(first, first + self.per_worker):
            if not self.in_use[slot]:
                self.in_use[slot] = 1
                if slot not in self._buffers:
                    self._buffers[slot] = shared_empty(self.shape)
                return slot, self._buffers[slot][:rows]
        return -1, shared_empty((rows, *self.shape[1:]))

    def release_when_dropped(self, x: torch.Tensor, slot: int) -> None:
        """Main side: free ``slot`` once ``x`` is garbage collected (nothing if slot is -1)."""
        if slot >= 0:
            weakref.finalize(x, self.in_use.__setitem__, slot, 0)
