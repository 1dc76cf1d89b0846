"""Worker buffers are reused only once the main process has dropped the batch written in them."""

from __future__ import annotations

import gc

import pytest
import torch

from bigearth_spark.train.buffers import BufferPool


def test_a_slot_is_reused_after_its_batch_is_dropped() -> None:
    pool = BufferPool(workers=2, per_worker=2, shape=(4, 3, 2, 2))
    slot, x = pool.take(worker=1, rows=3)
    assert slot in (2, 3) and x.shape == (3, 3, 2, 2) and x.is_shared()
    pool.release_when_dropped(x, slot)
    storage = x.untyped_storage().data_ptr()
    del x
    gc.collect()
    again, y = pool.take(worker=1, rows=4)
    assert again == slot and y.untyped_storage().data_ptr() == storage


def test_held_batches_are_never_overwritten() -> None:
    pool = BufferPool(workers=1, per_worker=2, shape=(2, 1, 2, 2))
    held = []
    for value in range(5):
        slot, x = pool.take(worker=0, rows=2)
        x.fill_(value)
        pool.release_when_dropped(x, slot)
        held.append((slot, x))
    assert [s for s, _ in held] == [0, 1, -1, -1, -1]  # both slots held: fresh buffers
    assert [int(x[0, 0, 0, 0]) for _, x in held] == [0, 1, 2, 3, 4]


def test_rows_beyond_the_batch_size_are_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        BufferPool(1, 1, (2, 1, 1, 1)).take(0, 3)


def test_release_happens_in_the_main_process_flags() -> None:
    pool = BufferPool(workers=1, per_worker=1, shape=(1, 1, 1, 1))
    assert pool.in_use.is_shared()
    slot, x = pool.take(0, 1)
    assert pool.in_use.tolist() == [1]
    pool.release_when_dropped(x, slot)
    del x
    gc.collect()
    assert pool.in_use.tolist() == [0]
    assert torch.equal(pool.take(0, 1)[1], pool._buffers[0][:1])
