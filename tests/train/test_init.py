"""Model initialisation: ImageNet weights from a local file (first conv adapted to the bands),
fine-tuning from a checkpoint, the frozen backbone, and the RGB modality."""

from __future__ import annotations

import pytest
import torch
from torchvision import models as tvm

from bigearth_spark.archive.bands import MODALITIES
from bigearth_spark.train import checkpoint
from bigearth_spark.train.init import (
    IMAGENET_WEIGHTS,
    adapt_rgb_kernels,
    freeze_backbone,
    imagenet_file,
    initialise,
    trainable,
)
from bigearth_spark.train.models import build_model


def test_rgb_modality_is_b04_b03_b02():
    assert [b.name for b in MODALITIES["s2-rgb"]] == ["B04", "B03", "B02"]


def test_first_conv_rule():
    rgb = torch.randn(8, 3, 5, 5)
    bands = MODALITIES["s1s2"]  # B02 B03 B04 B05 B06 B07 B08 B8A B11 B12 VV VH
    w = adapt_rgb_kernels(rgb, bands)
    assert w.shape == (8, 12, 5, 5)
    scale = 3 / 12
    names = [b.name for b in bands]
    torch.testing.assert_close(w[:, names.index("B04")], rgb[:, 0] * scale)
    torch.testing.assert_close(w[:, names.index("B03")], rgb[:, 1] * scale)
    torch.testing.assert_close(w[:, names.index("B02")], rgb[:, 2] * scale)
    torch.testing.assert_close(w[:, names.index("VV")], rgb.mean(dim=1) * scale)
    # an input equal on every channel gets the RGB network's response
    x = torch.randn(1, 1, 9, 9)
    ours = torch.nn.functional.conv2d(x.expand(1, 12, 9, 9), w)
    rgb_response = torch.nn.functional.conv2d(x.expand(1, 3, 9, 9), rgb)
    torch.testing.assert_close(ours, rgb_response, rtol=1e-5, atol=1e-4)  # float32 sums
    torch.testing.assert_close(adapt_rgb_kernels(rgb, MODALITIES["s2-rgb"]), rgb)


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_imagenet_init_loads_the_local_weights_file(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"checkpoints/.*\.pth.*Download https://"):
        imagenet_file(name)
    reference = getattr(tvm, name)(weights=None)  # stands in for the published weights
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    path = folder / IMAGENET_WEIGHTS[name].url.rsplit("/", 1)[-1]
    torch.save(reference.state_dict(), path)
    bands = MODALITIES["s1s2"]
    model = build_model(name, len(bands), 19)
    head = model.head.weight.clone()
    initialise(model, name, "imagenet", bands)
    ours = model.body
    if name == "resnet50":
        pairs = [(ours[4], reference.layer1), (ours[7], reference.layer4), (ours[1], reference.bn1)]
        first, theirs = ours[0].weight, reference.conv1.weight
    else:
        pairs = [(ours[3], reference.classifier[0]), (ours[0][2], reference.features[2])]
        first, theirs = ours[0][0].weight, reference.features[0].weight
    for a, b in pairs:
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb), ka
    torch.testing.assert_close(first, adapt_rgb_kernels(theirs, bands))
    assert torch.equal(model.head.weight, head)  # the classes' layer is not ImageNet's


def test_imagenet_init_is_refused_for_the_papers_own_nets():
    with pytest.raises(ValueError, match="exists for vgg16"):
        initialise(build_model("s-cnn", 12, 19), "s-cnn", "imagenet", MODALITIES["s1s2"])


def test_fine_tuning_starts_from_a_checkpoint(tmp_path):
    trained = build_model("k-branch", 12, 19)
    for p in trained.parameters():
        p.data.normal_()
    path = tmp_path / "best.pt"
    opt = torch.optim.Adam(trained.parameters())
    checkpoint.save(path, trained, opt, checkpoint.TrainState(), {})
    model = build_model("k-branch", 12, 19)
    initialise(model, "k-branch", str(path), MODALITIES["s1s2"])
    for (k, a), b in zip(model.state_dict().items(), trained.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    other = build_model("k-branch", 12, 43)  # another nomenclature: the head starts anew
    initialise(other, "k-branch", str(path), MODALITIES["s1s2"])
    assert torch.equal(other.body[1].weight, trained.body[1].weight)
    with pytest.raises(ValueError, match="shapes differ"):  # other input bands
        initialise(build_model("k-branch", 3, 19), "k-branch", str(path), MODALITIES["s2-rgb"])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        initialise(model, "k-branch", str(tmp_path / "nope.pt"), MODALITIES["s1s2"])


def test_frozen_backbone_trains_the_head_only():
    torch.manual_seed(0)
    model = build_model("k-branch", 12, 19)
    freeze_backbone(model)
    model.train()
    assert not model.body.training and model.head.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for _, p in trainable(model)], lr=0.1)
    assert {n for n, _ in trainable(model)} == {"head.weight", "head.bias"}
    loss = torch.nn.BCEWithLogitsLoss()(model(torch.randn(4, 12, 120, 120)), torch.ones(4, 19))
    loss.backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("body."))
    assert not torch.equal(before["head.weight"], after["head.weight"])
