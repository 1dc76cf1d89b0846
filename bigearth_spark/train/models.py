"""Multi-label models of the BigEarthNet papers, trained from scratch on any band stack.

Every model takes N×bands×H×W float tensors (H = W = 120: all bands resampled to 10 m) and
returns N×classes logits (train with ``BCEWithLogitsLoss``). Every model is a
:class:`MultiLabelNet`: ``features(x)`` is the penultimate-layer vector used for retrieval and
``head`` the last linear layer, so ``forward(x) == head(features(x))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision import models as tvm


class MultiLabelNet(nn.Module):
    """A feature extractor ``body`` (N×D vectors) followed by a linear ``head`` to the classes."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)
        self.frozen_body = False  # see train.init.freeze_backbone

    def train(self, mode: bool = True) -> MultiLabelNet:
        """Set train/eval mode; a frozen body stays in eval mode (batch norm, dropout)."""
        super().train(mode)
        if self.frozen_body:
            self.body.eval()
        return self

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features, N×D (dropout included: call ``eval()`` for inference)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits, N×classes."""
        return self.head(self.body(x))


def _conv_block(in_ch: int, out_ch: int, kernel: int, batch_norm: bool) -> list[nn.Module]:
    """Zero-padded ("same") convolution [+ batch norm] + ReLU."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=not batch_norm)
    return [conv, nn.BatchNorm2d(out_ch), nn.ReLU()] if batch_norm else [conv, nn.ReLU()]


class SCNN(MultiLabelNet):
    """The shallow CNN of the BigEarthNet IGARSS 2019 paper (S-CNN).

    Three zero-padded convolutions with 32, 32 and 64 filters of 5×5, 5×5 and 3×3, each
    followed by ReLU and 2×2 max-pooling, then dropout, one fully connected layer of ``hidden``
    units (the embedding) and the classification layer; Xavier initialisation as in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: int = 128,
        dropout: float = 0.5,
        image_size: int = 120,
    ) -> None:
        side = image_size // 8
        body = nn.Sequential(
            *_conv_block(in_channels, 32, 5, batch_norm=False),
            nn.MaxPool2d(2),
            *_conv_block(32, 32, 5, batch_norm=False),
            nn.MaxPool2d(2),
            *_conv_block(32, 64, 3, batch_norm=False),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        super().__init__(body, hidden, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)


def _branch(in_channels: int, feature_size: int, image_size: int) -> nn.Sequential:
    """One K-Branch CNN branch (the official 10 m branch): 3 conv blocks, then FC features."""
    side = image_size // 4
    return nn.Sequential(
        *_conv_block(in_channels, 32, 5, batch_norm=True),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        *_conv_block(32, 32, 5, batch_norm=True),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        *_conv_block(32, 64, 3, batch_norm=True),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * side * side, feature_size),
        nn.ReLU(),
        nn.Dropout(0.5),
    )


class _Branches(nn.Module):
    """Split the channels into consecutive groups, run one branch each, concatenate."""

    def __init__(self, sizes: Sequence[int], feature_size: int, image_size: int) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.branches = nn.ModuleList(_branch(n, feature_size, image_size) for n in self.sizes)

    def forward(self, x: Tensor) -> Tensor:
        parts = torch.split(x, self.sizes, dim=1)
        return torch.cat([branch(p) for branch, p in zip(self.branches, parts, strict=True)], dim=1)


class KBranchCNN(MultiLabelNet):
    """The K-Branch CNN of BigEarthNet-MM: one small CNN per band group, fused by FC layers.

    ``branches`` gives the channel count of each group, in input order (e.g. ``[4, 6, 2]`` for
    the 10 m S2 bands, then the 20 m S2 bands, then VV/VH: the caller orders the input
    channels by group). Default: a single branch over all channels. Each branch is the
    official 10 m branch (the input is already at 10 m); its ``feature_size`` features are
    concatenated and fused by a fully connected layer of ``feature_size`` units (the
    embedding) before the classification layer.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        branches: Sequence[int] | None = None,
        feature_size: int = 128,
        image_size: int = 120,
    ) -> None:
        sizes = list(branches) if branches is not None else [in_channels]
        if sum(sizes) != in_channels or min(sizes) < 1:
            raise ValueError(f"branches {sizes} must be positive and sum to {in_channels}")
        body = nn.Sequential(
            _Branches(sizes, feature_size, image_size),
            nn.Linear(len(sizes) * feature_size, feature_size),
            nn.ReLU(),
            nn.Dropout(0.5),
        )
        super().__init__(body, feature_size, num_classes)


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    """Initialise a new first convolution as torchvision initialises the rest of the net."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def vgg(depth: int, in_channels: int, num_classes: int) -> MultiLabelNet:
    """torchvision VGG16/VGG19 (no weights) with the first conv taking ``in_channels`` bands.

    The embedding is the output of the second 4096-unit fully connected layer.
    """
    net = {16: tvm.vgg16, 19: tvm.vgg19}[depth](weights=None)
    net.features[0] = _kaiming(nn.Conv2d(in_channels, 64, 3, padding=1))
    classifier = list(net.classifier)
    body = nn.Sequential(net.features, net.avgpool, nn.Flatten(), *classifier[:-1])
    return MultiLabelNet(body, classifier[-1].in_features, num_classes)


def resnet(depth: int, in_channels: int, num_classes: int) -> MultiLabelNet:
    """torchvision ResNet50/101/152 (no weights) with the first conv taking ``in_channels``.

    The embedding is the 2048-d globally average-pooled output of the last stage.
    """
    net = {50: tvm.resnet50, 101: tvm.resnet101, 152: tvm.resnet152}[depth](weights=None)
    conv1 = _kaiming(nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False))
    body = nn.Sequential(
        conv1,
        net.bn1,
        net.relu,
        net.maxpool,
        net.layer1,
        net.layer2,
        net.layer3,
        net.layer4,
        net.avgpool,
        nn.Flatten(),
    )
    return MultiLabelNet(body, net.fc.in_features, num_classes)


_FACTORIES: dict[str, Callable[..., MultiLabelNet]] = {
    "s-cnn": SCNN,
    "k-branch": KBranchCNN,
    "vgg16": lambda c, n: vgg(16, c, n),
    "vgg19": lambda c, n: vgg(19, c, n),
    "resnet50": lambda c, n: resnet(50, c, n),
    "resnet101": lambda c, n: resnet(101, c, n),
    "resnet152": lambda c, n: resnet(152, c, n),
}
MODEL_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def build_model(name: str, in_channels: int, num_classes: int, **kw: Any) -> MultiLabelNet:
    """Build the model ``name`` (one of :data:`MODEL_NAMES`), randomly initialised.

    ``kw`` goes to the constructor: ``SCNN(hidden, dropout, image_size)``,
    ``KBranchCNN(branches, feature_size, image_size)``; the torchvision models take none.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    return _FACTORIES[name](in_channels, num_classes, **kw)


def embed(model: MultiLabelNet, x: Tensor) -> Tensor:
    """Penultimate-layer features of ``x`` for retrieval: eval mode, no gradients.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model.features(x)
    finally:
        model.train(was_training)
