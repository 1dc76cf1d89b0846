"""Decoding a batch where it is trained: native band bytes in, normalised 10 m tensors out.

Two decode paths give the same tensors (``DataSpec.decode``):

* ``worker``: DataLoader workers convert, normalise, resample and augment (``data.decode_bands``)
  and hand over float32 N×C×120×120 (~691 KB per S1+S2 sample);
* ``device``: workers only copy each band's native bytes into one contiguous block per native
  size and dtype (:func:`native_groups`: S2 uint16 at 120², 60², 20² px, S1 float32 at 120²;
  ~274 KB per S1+S2 sample) and draw the augmentation (:func:`draw_transforms`); the training
  process moves the blocks to its device and decodes them there with the same functions
  (:func:`decode_parts`: the same normalisation and the same separable resampling kernel,
  ``train.resample``, in torch ops on any device) and applies the drawn flips and rotations as
  one gather (:class:`Transforms`: no host synchronisation).

:func:`feed` delivers either path's batches on the device; on CUDA it copies them on a side
stream ``ahead`` batches before they are trained on, from page-locked buffers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from bigearth_spark.archive.bands import Band
from bigearth_spark.train import resample
from bigearth_spark.train.buffers import Scratch

if TYPE_CHECKING:
    from bigearth_spark.train.data import Batch, DataSpec

DECODES = ("worker", "device")
AHEAD = 2  # batches copied to the device before the one being trained on


def default_decode(cuda: bool) -> str:
    """The decode path when none is configured: ``device`` when training on CUDA (a GPU decodes
    far faster than the workers' cores), ``worker`` on CPU (the workers decode beside the
    training process instead of in it)."""
    return "device" if cuda else "worker"


@dataclass(frozen=True)
class NativeGroup:
    """The bands of one native size and dtype: one contiguous N×C×size×size block of a batch,
    and the channels of the decoded input they fill (``channels[j]`` for band ``bands[j]``)."""

    size: int
    dtype: np.dtype
    bands: tuple[Band, ...]
    channels: tuple[int, ...]

    @property
    def name(self) -> str:
        """The block's name in a batch, e.g. ``uint16_60``."""
        return f"{self.dtype.name}_{self.size}"

    @property
    def torch_dtype(self) -> torch.dtype:
        """The block's element type."""
        return torch.from_numpy(np.empty(0, self.dtype)).dtype


def native_groups(bands: tuple[Band, ...]) -> tuple[NativeGroup, ...]:
    """``bands`` (in channel order) grouped by native size and dtype, in order of first
    appearance."""
    members: dict[tuple[int, np.dtype], list[int]] = {}
    for c, b in enumerate(bands):
        members.setdefault((b.size, np.dtype(b.dtype)), []).append(c)
    return tuple(
        NativeGroup(size, dtype, tuple(bands[c] for c in channels), tuple(channels))
        for (size, dtype), channels in members.items()
    )


def normalise(pixels: torch.Tensor, mean: float, std: float, out: torch.Tensor) -> torch.Tensor:
    """``(pixels - mean) / std`` into ``out`` (float32) in one pass (two for integers:
    converted in place first), as ``pixels / std - mean / std``."""
    shift = torch.tensor(-mean / std)  # a CPU scalar: usable with tensors on any device
    if pixels.dtype != torch.float32:  # convert in place (add would copy first)
        pixels = out.copy_(pixels)
    return torch.add(shift, pixels, alpha=1 / std, out=out)


def decode_parts(
    parts: Callable[[int, Band], Iterable[tuple[int, torch.Tensor]]],
    bands: tuple[Band, ...],
    resampling: str,
    stats: dict[str, tuple[float, float]],
    out: torch.Tensor,
    scratch: Scratch,
) -> torch.Tensor:
    """Normalised bands resampled to the 10 m grid into ``out`` (N×C×120×120).

    ``parts(c, band)`` gives channel ``c``'s native pixels as (first row, N'×size×size) parts.
    Each band is normalised at native resolution (cheaper for the 20 m and 60 m bands; the
    resampling kernels are linear, so the order does not matter); bands of a coarser size go
    into one scratch tensor per size and are resampled straight into their channels of ``out``
    (:mod:`bigearth_spark.train.resample`). ``scratch`` must be on ``out``'s device.
    """
    n = out.shape[0]
    for group in native_groups(bands):
        coarse = (n, len(group.bands), group.size, group.size)
        native = out if group.size == 120 else scratch.get(f"native{group.size}", coarse)
        for j, (b, c) in enumerate(zip(group.bands, group.channels, strict=True)):
            mean, std = stats[b.name]
            target = native[:, c] if group.size == 120 else native[:, j]
            for row, pixels in parts(c, b):
                normalise(pixels, mean, std, target[row : row + len(pixels)])
            if group.size != 120:
                resample.upsample(native[:, j], out[:, c], resampling, scratch)
    return out


def draw_transforms(n: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample transform codes (int64, 0..15): ``flip_h + 2·flip_v + 4·k`` for a horizontal
    and a vertical flip (p = 0.5 each) and ``k`` quarter turns, drawn from ``generator``."""
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    k = torch.randint(0, 4, (n,), generator=generator)
    return flip_h.long() + 2 * flip_v.long() + 4 * k


def transform(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Sample i of ``x`` (N×C×H×W, H = W) becomes ``rot90(flip_v(flip_h(x[i])), k[i])`` for its
    code (:func:`draw_transforms`), in place; samples of one code are transformed together (at
    most 16 groups, one host synchronisation each on a GPU: :class:`Transforms` has none)."""
    for c in codes.unique().tolist():
        if c == 0:
            continue
        idx = (codes == c).nonzero().flatten()
        sub = x[idx]
        if c & 1:
            sub = sub.flip(-1)
        if c & 2:
            sub = sub.flip(-2)
        x[idx] = torch.rot90(sub, c >> 2, dims=(-2, -1))
    return x


class Transforms:
    """:func:`transform` as one gather: a table of each code's pixel permutation (made by
    :func:`transform` itself, so both agree exactly), kept on ``device``."""

    def __init__(self, size: int, device: torch.device) -> None:
        pixels = torch.arange(size * size).view(1, 1, size, size).expand(16, 1, size, size)
        table = transform(pixels.clone(), torch.arange(16))
        self.table = table.view(16, size * size).to(device)

    def __call__(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``x`` (N×C×S×S) with sample i transformed by ``codes[i]`` (a new tensor)."""
        n, c = x.shape[:2]
        index = self.table[codes][:, None].expand(n, c, -1)
        return x.flatten(2).gather(2, index).view_as(x)


class Decoder:
    """A batch's tensors on ``device`` → its decoded input there, as ``spec.decode`` says: the
    workers' decoded input as it is, or native blocks decoded and augmented on the device."""

    def __init__(self, spec: DataSpec, stats: dict[str, tuple[float, float]], device) -> None:
        self.spec, self.stats, self.device = spec, stats, torch.device(device)
        self.scratch = Scratch(self.device)
        on_device = spec.augment and spec.decode == "device"
        self.transforms = Transforms(120, self.device) if on_device else None

    def __call__(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """The input of a batch moved by :func:`move`."""
        if self.spec.decode == "worker":
            return tensors["x"]
        bands, groups = self.spec.bands, native_groups(self.spec.bands)
        n = len(tensors["y"])
        out = torch.empty((n, len(bands), 120, 120), device=self.device)
        block = {c: (g.name, j) for g in groups for j, c in enumerate(g.channels)}

        def parts(c: int, _: Band) -> list[tuple[int, torch.Tensor]]:
            name, j = block[c]
            return [(0, tensors[name][:, j])]

        decode_parts(parts, bands, self.spec.resampling, self.stats, out, self.scratch)
        if self.transforms is not None:
            out = self.transforms(out, tensors["codes"])
        return out


def move(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors (input or native blocks, targets, transform codes) on ``device``,
    copied without blocking the host (asynchronous from page-locked memory)."""
    tensors = dict(batch.native) if batch.x is None else {"x": batch.x}
    tensors["y"] = batch.y
    if batch.codes is not None:
        tensors["codes"] = batch.codes
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


@dataclass
class OnDevice:
    """A batch ready to train on: decoded input and targets on the device, its patch ids."""

    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]


def feed(batches: Iterable[Batch], decoder: Decoder, ahead: int = AHEAD) -> Iterator[OnDevice]:
    """``batches`` decoded on ``decoder``'s device. On CUDA each batch is copied on a side
    stream ``ahead`` batches before it is yielded, and decoded on the current stream (which
    waits for the copy only); a batch's host buffers are released once its copy is done."""
    device = decoder.device
    if device.type != "cuda":
        for batch in batches:
            tensors = move(batch, device)
            yield OnDevice(decoder(tensors), tensors["y"], batch.ids)
        return
    side = torch.cuda.Stream(device)
    copies: deque[tuple[Batch, dict[str, torch.Tensor], torch.cuda.Event]] = deque()

    def ready() -> OnDevice:
        batch, tensors, copied = copies.popleft()
        current = torch.cuda.current_stream(device)
        current.wait_event(copied)
        for t in tensors.values():
            t.record_stream(current)  # allocated on the side stream, used on this one
        copied.synchronize()  # issued `ahead` batches ago: the host buffers may be reused
        return OnDevice(decoder(tensors), tensors["y"], batch.ids)

    for batch in batches:
        with torch.cuda.stream(side):
            tensors = move(batch, device)
            copied = torch.cuda.Event()
            copied.record(side)
        copies.append((batch, tensors, copied))
        if len(copies) > ahead:
            yield ready()
    while copies:
        yield ready()
