"""Resampling onto the 10 m grid equals torch's interpolate, written into a channel of a batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bigearth_spark.train.resample import MODES, phases, upsample


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [20, 60, 40, 7])
def test_equals_torch_interpolate_in_a_channel_of_a_batch(mode, size):
    x = torch.randn(5, size, size, generator=torch.Generator().manual_seed(size)) * 3 + 1
    batch = torch.full((5, 4, 120, 120), 7.0)
    upsample(x, batch[:, 2], mode)
    kw = {} if mode == "nearest" else {"align_corners": False}
    if mode == "bilinear" and 120 % size == 0:  # the separable path
        # torch's float32 kernel rounds its weights (errors up to 4e-5 here): compare in float64
        want = F.interpolate(x[:, None].double(), size=(120, 120), mode=mode, **kw)[:, 0]
        torch.testing.assert_close(batch[:, 2], want.float(), rtol=1e-6, atol=1e-5)
        assert torch.equal(batch[:, 2, 0, 0], x[:, 0, 0])  # edges copy edge pixels
        assert torch.equal(batch[:, 2, -1, -1], x[:, -1, -1])
    else:  # torch's own kernel
        want = F.interpolate(x[:, None], size=(120, 120), mode=mode, **kw)[:, 0]
        assert torch.equal(batch[:, 2], want)
    assert bool((batch[:, [0, 1, 3]] == 7.0).all())  # the other channels are untouched


def test_phases_of_the_papers_factors():
    assert phases(2) == [(-1, 0.25), (1, 0.25)]
    offsets, weights = zip(*phases(6), strict=True)
    assert offsets == (-1, -1, -1, 1, 1, 1)
    assert [round(w * 12) for w in weights] == [5, 3, 1, 1, 3, 5]


def test_unknown_mode_and_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="not one of"):
        upsample(torch.zeros(1, 20, 20), torch.zeros(1, 120, 120), "area")
    with pytest.raises(ValueError, match="cannot resample"):
        upsample(torch.zeros(2, 20, 20), torch.zeros(1, 120, 120))
