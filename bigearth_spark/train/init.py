"""How a model starts: from scratch, from ImageNet weights, or from an earlier run; and the
frozen-backbone variant ("ImageNet features" baselines of the papers).

``init`` is ``scratch`` (the constructors' random initialisation), ``imagenet`` (torchvision's
IMAGENET1K_V1 weights of VGG16/19 and ResNet50/101/152, read from torch's hub cache, never
downloaded here) or the path of a checkpoint (``best.pt``/``latest.pt`` of a run) or of a plain
state dict (fine-tuning).

**First convolution for other inputs than RGB** (:func:`adapt_rgb_kernels`): the input channel
of B04, B03, B02 takes the ImageNet kernel of R, G, B; every other band takes the mean of the
three kernels; then all kernels are scaled by 3 / C (C = input channels), so that an input with
the same value on every channel gives the RGB network's response. For the ``s2-rgb`` modality
(B04, B03, B02) that is the ImageNet kernel unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from bigearth_spark.archive.bands import Band
from bigearth_spark.train.models import MultiLabelNet

log = logging.getLogger(__name__)
RGB = ("B04", "B03", "B02")  # ImageNet's R, G, B
IMAGENET_WEIGHTS = {
    "vgg16": tvm.VGG16_Weights.IMAGENET1K_V1,
    "vgg19": tvm.VGG19_Weights.IMAGENET1K_V1,
    "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V1,
    "resnet101": tvm.ResNet101_Weights.IMAGENET1K_V1,
    "resnet152": tvm.ResNet152_Weights.IMAGENET1K_V1,
}


def adapt_rgb_kernels(rgb: Tensor, bands: tuple[Band, ...]) -> Tensor:
    """``out×3×k×k`` ImageNet kernels → ``out×C×k×k`` for ``bands`` (rule in the module doc)."""
    mean = rgb.mean(dim=1)
    channels = [rgb[:, RGB.index(b.name)] if b.name in RGB else mean for b in bands]
    return torch.stack(channels, dim=1) * (3.0 / len(bands))


def imagenet_file(model: str) -> Path:
    """The local file of ``model``'s ImageNet weights in torch's hub cache.

    Raises FileNotFoundError naming the file, its download URL and the folder to put it in.
    """
    if model not in IMAGENET_WEIGHTS:
        raise ValueError(f"init 'imagenet' exists for {', '.join(IMAGENET_WEIGHTS)}, not {model!r}")
    url = IMAGENET_WEIGHTS[model].url
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / url.rsplit("/", 1)[-1]
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights of {model} not found: {path}. Download {url} and put it in "
            f"{folder} (torch's hub cache; set TORCH_HOME to use another folder)."
        )
    return path


def _load_imagenet(model: MultiLabelNet, name: str, bands: tuple[Band, ...]) -> None:
    """Copy the ImageNet weights into ``model``'s body (first conv adapted to ``bands``); the
    head (the classes) keeps its random initialisation."""
    path = imagenet_file(name)
    net = getattr(tvm, name)(weights=None)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    body = model.body  # layout: models.vgg() and models.resnet()
    if name.startswith("vgg"):
        features = net.features.state_dict()
        features["0.weight"] = adapt_rgb_kernels(features["0.weight"], bands)
        parts = [
            (body[0], features),
            (body[3], net.classifier[0].state_dict()),
            (body[6], net.classifier[3].state_dict()),
        ]
    else:
        stages = ((1, "bn1"), (4, "layer1"), (5, "layer2"), (6, "layer3"), (7, "layer4"))
        conv1 = {"weight": adapt_rgb_kernels(net.conv1.weight.detach(), bands)}
        parts = [(body[0], conv1), *((body[i], getattr(net, n).state_dict()) for i, n in stages)]
    for module, state in parts:
        module.load_state_dict(state)


def _load_checkpoint(model: MultiLabelNet, path: Path) -> None:
    """Load a run's checkpoint or a state dict; a head of another class count starts anew."""
    if not path.is_file():
        raise FileNotFoundError(f"init: no checkpoint or state dict at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    head = {k for k in state if k.startswith("head.")}
    if any(state[k].shape != own[k].shape for k in head if k in own):
        log.warning("init %s: its head has another class count; the head starts anew", path)
        state = {k: v for k, v in state.items() if k not in head}
    wrong = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    if wrong:
        raise ValueError(
            f"init {path} does not fit this model (other input bands or model?): "
            f"shapes differ for {wrong[:5]}"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    body_missing = [k for k in missing if not k.startswith("head.")]
    if body_missing or unexpected:
        raise ValueError(
            f"init {path} does not fit this model: missing {body_missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


def initialise(model: MultiLabelNet, name: str, init: str, bands: tuple[Band, ...]) -> None:
    """Apply ``init`` (``scratch``, ``imagenet`` or a path) to ``model`` (built as ``name``)."""
    if init == "scratch":
        return
    if init == "imagenet":
        _load_imagenet(model, name, bands)
    else:
        _load_checkpoint(model, Path(init))
    log.info("model %s initialised from %s", name, init)


def freeze_backbone(model: MultiLabelNet) -> None:
    """Train the head only: the body's parameters get no gradients and its batch-norm and
    dropout layers stay in eval mode (``model.train()`` keeps them there)."""
    model.body.requires_grad_(False)
    model.frozen_body = True
    model.body.eval()


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The named parameters that get gradients (for the optimizer)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]
