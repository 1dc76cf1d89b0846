"""The device decode path: workers hand over native band bytes, the training process decodes
them on its device (here the CPU) into the very tensors the worker path delivers."""

from __future__ import annotations

import gc
import pickle
from dataclasses import replace

import pytest
import torch

from bigearth_spark.archive.bands import MODALITIES
from bigearth_spark.train.buffers import BufferPool
from bigearth_spark.train.data import Batch, DataSpec, PatchLoader, augment
from bigearth_spark.train.device_decode import (
    Transforms,
    default_decode,
    draw_transforms,
    native_groups,
    transform,
)
from bigearth_spark.train.loop import TrainConfig, _spec, step_forward
from bigearth_spark.train.models import build_model
from tests.train.test_data import train_ids


def delivered(spec: DataSpec, epoch: int) -> tuple[list[tuple], list[str]]:
    """(ids, inputs, targets) of each batch of ``epoch`` decoded on the CPU, and skipped ids."""
    skipped: list[str] = []
    batches = [
        (b.ids, b.x.clone(), b.y.clone())
        for b in PatchLoader(spec, seed=3).to_device("cpu", epoch, skipped)
    ]
    return batches, skipped


@pytest.mark.parametrize("augmented", [False, True])
@pytest.mark.parametrize(("modality", "workers"), [("s1s2", 2), ("s1s2-12", 0), ("s2-rgb", 1)])
def test_device_path_equals_worker_path(spark, v1_lake, modality, workers, augmented):
    """Every batch of two epochs: the same ids in the same order, the same targets and skipped
    rows, and inputs equal up to float rounding (same seed: the same flips and rotations)."""
    spec = DataSpec(v1_lake[0], "train", modality, batch_size=5, augment=augmented)
    spec = replace(spec, workers=workers)
    for epoch in (0, 1):
        want, want_skipped = delivered(spec, epoch)
        got, got_skipped = delivered(replace(spec, decode="device"), epoch)
        assert [ids for ids, _, _ in got] == [ids for ids, _, _ in want]
        assert got_skipped == want_skipped
        for (_, x, y), (_, wx, wy) in zip(got, want, strict=True):
            assert torch.equal(y, wy)
            torch.testing.assert_close(x, wx, rtol=1e-6, atol=1e-6)
    truth = train_ids(spark, v1_lake[0])  # patch id → S1 partner (None: none)
    skips = sorted(p for p, s1 in truth.items() if not s1) if spec.needs_s1 else []
    assert sorted(want_skipped) == skips and len(skips) == (0 if modality == "s2-rgb" else 1)
    assert sorted(i for ids, _, _ in want for i in ids) == sorted(set(truth) - set(skips))


def test_device_path_hands_over_native_bytes(v1_lake):
    """A device-path batch holds no decoded input: one block per native size and dtype, the
    bands' stored values, and the drawn transforms; ~0.4 of a decoded batch's bytes."""
    spec = DataSpec(v1_lake[0], "train", "s1s2", batch_size=4, augment=True, workers=1)
    native = next(PatchLoader(replace(spec, decode="device")).epoch(0))
    decoded = next(PatchLoader(spec).epoch(0))
    assert native.x is None and native.ids == decoded.ids
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in native.native.items()}
    assert shapes == {
        "uint16_120": ((4, 4, 120, 120), torch.uint16),
        "uint16_60": ((4, 6, 60, 60), torch.uint16),
        "float32_120": ((4, 2, 120, 120), torch.float32),
    }
    assert native.codes.shape == (4,) and native.native_slots.keys() == native.native.keys()
    # s1s2: 4 bands at 120² and 6 at 60² as uint16, VV and VH at 120² as float32, per sample
    assert native.tensor_bytes == 4 * (4 * 120**2 * 2 + 6 * 60**2 * 2 + 2 * 120**2 * 4 + 19 * 4 + 8)
    assert decoded.tensor_bytes == 4 * (12 * 120**2 * 4 + 19 * 4)
    # VV (channel 10) decoded by the worker, before its flips and rotations
    plain = next(PatchLoader(replace(spec, augment=False)).epoch(0))
    vv_mean, vv_std = -12.619993741972035, 5.115911777546365  # BAND_STATS["v1"]["VV"]
    want = plain.x[:, 10] * vv_std + vv_mean
    torch.testing.assert_close(native.native["float32_120"][:, 0], want, rtol=1e-5, atol=1e-4)


def test_native_groups_follow_the_channels():
    groups = native_groups(MODALITIES["s1s2-12"])
    assert [(g.name, g.channels) for g in groups] == [
        ("uint16_20", (0, 9)),  # B01, B09
        ("uint16_120", (1, 2, 3, 7)),  # B02, B03, B04, B08
        ("uint16_60", (4, 5, 6, 8, 10, 11)),  # B05, B06, B07, B8A, B11, B12
        ("float32_120", (12, 13)),  # VV, VH
    ]
    assert [b.name for b in groups[0].bands] == ["B01", "B09"]


def test_gathered_transforms_equal_the_workers_for_every_code():
    x = torch.randn(32, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    codes = torch.arange(32) % 16
    assert torch.equal(Transforms(6, torch.device("cpu"))(x, codes), transform(x.clone(), codes))
    # and augment draws what draw_transforms draws
    want = transform(x.clone(), draw_transforms(32, torch.Generator().manual_seed(5)))
    assert torch.equal(augment(x.clone(), torch.Generator().manual_seed(5)), want)


def test_pooled_native_blocks_travel_as_slot_numbers():
    pools = {"a": BufferPool(1, 2, (8, 4, 120, 120), torch.uint16), "b": BufferPool(1, 1, (8, 2))}
    blocks, slots = {}, {}
    for name, pool in pools.items():
        slot, block = pool.take(0, 5)
        block.copy_(torch.arange(block.numel()).view_as(block))
        blocks[name], slots[name] = block, (pool.key, slot)
    codes = torch.arange(5)
    batch = Batch(None, torch.eye(5, 19), list("abcde"), [], native=blocks, native_slots=slots)
    batch.codes = codes
    data = pickle.dumps(batch)
    assert len(data) < 2000  # not the 576 KB of blocks
    got = pickle.loads(data)
    assert got.x is None and got.ids == batch.ids and torch.equal(got.codes, codes)
    for name, block in blocks.items():
        assert torch.equal(got.native[name], block) and got.native[name].dtype == block.dtype
        assert got.native[name].data_ptr() == block.data_ptr()
    assert [p.in_use.tolist() for p in pools.values()] == [[1, 0], [1]]
    del got
    gc.collect()
    assert [p.in_use.tolist() for p in pools.values()] == [[0, 0], [0]]


def test_decode_is_configured_and_checked(tmp_path):
    assert default_decode(cuda=True) == "device" and default_decode(cuda=False) == "worker"
    cfg = TrainConfig(lake=str(tmp_path))
    assert _spec(cfg, "train", None).decode == ("device" if torch.cuda.is_available() else "worker")
    assert _spec(replace(cfg, decode="device"), "train", None).decode == "device"
    with pytest.raises(ValueError, match=r"'gpu' is not one of \('worker', 'device'\)"):
        DataSpec(str(tmp_path), decode="gpu").validate()


def test_step_capture_refusals():
    model = build_model("s-cnn", 3, 19)
    cpu = torch.device("cpu")
    assert step_forward(model, "none", cpu) is model
    with pytest.raises(ValueError, match="'cuda_graph' needs a CUDA device, not cpu"):
        step_forward(model, "cuda_graph", cpu)
    with pytest.raises(
        ValueError, match=r"'graph' is not one of \('none', 'compile', 'cuda_graph'"
    ):
        step_forward(model, "graph", cpu)
