"""Every model builds for any band count, runs forward/backward and exposes its embedding."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from bigearth_spark.archive.labels import NAMES_19
from bigearth_spark.train.models import (
    MODEL_NAMES,
    SCNN,
    KBranchCNN,
    MultiLabelNet,
    build_model,
    embed,
)

NUM_CLASSES = len(NAMES_19)
# K-Branch groups per band count: S1 | S2 10 m + 20 m | + 60 m | + S1.
BRANCHES = {2: [2], 10: [4, 6], 12: [4, 6, 2], 14: [4, 6, 2, 2]}
CHANNELS = sorted(BRANCHES)
FEATURE_DIMS = {"s-cnn": 128, "k-branch": 128, "vgg16": 4096, "resnet50": 2048}
# Building a VGG alone costs seconds on a CPU (10⁸ weights to draw), so the VGGs run one band
# count each (14 and 2); the first-conv adaptation is the same code for every count.
TRAINED = [(n, c) for n in ("s-cnn", "k-branch", "resnet50") for c in CHANNELS] + [("vgg16", 14)]
# Deep nets: shape only, on one image.
HEAVY = [("vgg19", 2), ("resnet101", 10), ("resnet152", 12)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """On a small shared CPU, intra-op threads spin against other processes: one is faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _build(name: str, channels: int) -> MultiLabelNet:
    kw = {"branches": BRANCHES[channels]} if name == "k-branch" else {}
    return build_model(name, channels, NUM_CLASSES, **kw)


@pytest.mark.parametrize(("name", "channels"), TRAINED)
def test_forward_backward(name: str, channels: int) -> None:
    model = _build(name, channels)
    x = torch.randn(2, channels, 120, 120)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    features = embed(model, x)
    assert features.shape == (2, FEATURE_DIMS[name])
    assert model.training  # embed restores the mode
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.head(features), model(x))


@pytest.mark.parametrize(("name", "channels"), HEAVY)
def test_heavy_models_shape(name: str, channels: int) -> None:
    model = _build(name, channels).eval()
    with torch.no_grad():
        assert model(torch.randn(1, channels, 120, 120)).shape == (1, NUM_CLASSES)


def test_model_names_and_errors() -> None:
    assert set(MODEL_NAMES) == {
        "s-cnn",
        "k-branch",
        "vgg16",
        "vgg19",
        "resnet50",
        "resnet101",
        "resnet152",
    }
    assert isinstance(build_model("s-cnn", 3, 43), SCNN)
    assert isinstance(build_model("k-branch", 3, 43), KBranchCNN)  # one branch by default
    with pytest.raises(ValueError, match="unknown model"):
        build_model("alexnet", 3, 43)
    with pytest.raises(ValueError, match="sum to 12"):
        KBranchCNN(12, 19, branches=[4, 6])


def test_kbranch_branches_see_only_their_channels() -> None:
    model = KBranchCNN(6, 19, branches=[4, 2]).eval()
    x = torch.randn(1, 6, 120, 120)
    y = x.clone()
    y[:, 4:] += 1.0  # change only the second group
    branches = model.body[0]
    with torch.no_grad():
        a, b = branches(x), branches(y)
    torch.testing.assert_close(a[:, :128], b[:, :128])
    assert not torch.allclose(a[:, 128:], b[:, 128:])


@pytest.mark.parametrize("name", ["s-cnn", "k-branch"])
def test_model_learns_separable_task(name: str) -> None:
    """Label c is on iff band c is bright: the model must fit it within a few dozen steps."""
    labels = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.float32)
    x = 0.1 * torch.randn(4, 2, 120, 120) + labels[:, :, None, None]
    model = build_model(name, 2, 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()

    def eval_loss() -> float:  # without dropout noise
        model.eval()
        with torch.no_grad():
            loss = loss_fn(model(x), labels).item()
        model.train()
        return loss

    before = eval_loss()
    for _ in range(40):
        optimiser.zero_grad()
        loss_fn(model(x), labels).backward()
        optimiser.step()
    assert eval_loss() < 0.1 * before
    model.eval()
    with torch.no_grad():
        assert torch.equal((model(x) > 0).float(), labels)
