"""Worker buffers: a batch travels as its slot's number, and a slot is reused only once the main
process has dropped the batch written in it and every view of it."""

from __future__ import annotations

import gc
import os
import pickle

import pytest
import torch

from bigearth_spark.train.buffers import BufferPool, arrived
from bigearth_spark.train.data import Batch


def sent(pool: BufferPool, slot: int, rows: int) -> torch.Tensor:
    """What the main process holds for a batch a worker wrote into ``slot``."""
    return arrived(pool.key, slot, rows)


def test_a_slot_is_reused_after_its_batch_is_dropped() -> None:
    pool = BufferPool(workers=2, per_worker=2, shape=(4, 3, 2, 2))
    slot, written = pool.take(worker=1, rows=3)
    assert slot in (2, 3) and written.shape == (3, 3, 2, 2) and written.is_shared()
    x = sent(pool, slot, 3)
    assert x.shape == (3, 3, 2, 2) and x.data_ptr() == written.data_ptr()
    assert pool.in_use.tolist()[slot] == 1
    del x
    gc.collect()
    assert pool.in_use.tolist()[slot] == 0
    again, y = pool.take(worker=1, rows=4)
    assert again == slot and y.data_ptr() == written.data_ptr()


def test_held_batches_are_never_overwritten() -> None:
    pool = BufferPool(workers=1, per_worker=2, shape=(2, 1, 2, 2))
    held = []
    for value in range(5):
        slot, x = pool.take(worker=0, rows=2)
        x.fill_(value)
        held.append((slot, sent(pool, slot, 2) if slot >= 0 else x))
    assert [s for s, _ in held] == [0, 1, -1, -1, -1]  # both slots held: fresh buffers
    assert [int(x[0, 0, 0, 0]) for _, x in held] == [0, 1, 2, 3, 4]


def test_a_view_of_a_batch_keeps_its_slot() -> None:
    pool = BufferPool(workers=1, per_worker=1, shape=(4, 1, 2, 2))
    slot, _ = pool.take(0, 4)
    x = sent(pool, slot, 4)
    part = x[1:, 0]
    del x
    gc.collect()
    assert pool.in_use.tolist() == [1]  # the view still reads the buffer
    del part
    gc.collect()
    assert pool.in_use.tolist() == [0]


def test_rows_beyond_the_batch_size_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        BufferPool(1, 1, (2, 1, 1, 1)).take(0, 3)


def test_a_pooled_batch_is_sent_as_its_slot_number() -> None:
    pool = BufferPool(workers=1, per_worker=2, shape=(64, 12, 120, 120))
    slot, x = pool.take(0, 5)
    x.copy_(torch.arange(x.numel(), dtype=torch.float32).view_as(x))
    y = torch.eye(5, 19)
    batch = Batch(x, y, [f"p{i}" for i in range(5)], ["s"], slot, pool.key)
    data = pickle.dumps(batch)
    assert len(data) < 2000  # not the 3.5 MB of inputs
    got = pickle.loads(data)
    assert torch.equal(got.x, x) and got.x.data_ptr() == x.data_ptr()
    assert torch.equal(got.y, y) and got.ids == batch.ids and got.skipped == ["s"]
    fresh = Batch(torch.ones(2, 1, 1, 1), torch.zeros(2, 3), ["a", "b"])
    assert torch.equal(pickle.loads(pickle.dumps(fresh)).x, fresh.x)


def test_a_slot_of_another_process_pool_is_refused() -> None:
    with pytest.raises(RuntimeError, match="does not belong"):
        arrived((os.getpid() + 1, 0), 0, 1)
