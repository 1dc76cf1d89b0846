"""Training-step throughput on 120×120 input fed by the real reader against synthetic tensors
already on the device, for each model × batch size × decode path (issue 28).

For each model and batch size: a fresh model (bf16 autocast and channels_last on CUDA, Adam,
BCE-with-logits), first with synthetic tensors on the device, then fed by ``PatchLoader`` over a
lake (the training split, augmented as in training, ``--workers`` persistent reader processes)
through ``PatchLoader.to_device`` with each decode path: ``worker`` (workers decode, float32 to
the device) and ``device`` (native band bytes to the device, decoded there). Every run is warmed
up (``--warmup`` steps: worker start, the pipeline's fill, cuDNN's autotuning) before
``--steps`` steady-state steps are timed; the warm-up's seconds are reported apart
(``fill_s``). The loader's runs cross epochs as training does.

Printed per run: samples/s, the ratio to the synthetic rate, GPU utilisation (mean of
``torch.cuda.utilization`` sampled every 0.2 s while timed; nan without CUDA or NVML), bytes per
sample copied to the device (inputs or native blocks, targets, transform codes) and the training
process's CPU milliseconds per batch (all its threads, ``time.process_time``). Last line:
``reader_vs_synthetic=`` of the first model and batch size with the device path (by default
ResNet50, S1+S2, batch 256).

Without CUDA it runs small (S-CNN, batch 4, 1 + 3 steps, one worker) as a smoke test.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import torch

from bigearth_spark.archive.labels import NOMENCLATURES
from bigearth_spark.train.data import Batch, DataSpec, PatchLoader
from bigearth_spark.train.device_decode import DECODES, feed
from bigearth_spark.train.models import build_model

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# (GPU, CPU smoke test) defaults
DEFAULTS = {
    "models": ("resnet50,s-cnn", "s-cnn"),
    "batch_sizes": ("256,512", "4"),
    "steps": (200, 3),
    "warmup": (30, 1),
    "workers": (8, 1),
    "prefetch": (4, 2),
}


def make_step(model: torch.nn.Module, device: torch.device) -> Step:
    """A training step on (x, y) that returns its loss on the device (nothing read back)."""
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp = device.type == "cuda"

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def sync(device: torch.device) -> None:
    """Wait for the device's queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Figures:
    """One timed run."""

    samples_per_s: float
    fill_s: float = math.nan  # warm-up: loader start, pipeline fill, first steps
    gpu_util_pct: float = math.nan
    bytes_to_device_per_sample: float = math.nan
    cpu_ms_per_batch: float = math.nan


def synthetic(step: Step, device: torch.device, shape: tuple[int, ...], warmup: int, steps: int):
    """:class:`Figures` of ``step`` on one synthetic batch already on the device."""
    x = torch.randn(shape, device=device)
    y = (torch.rand(shape[0], len(NOMENCLATURES["19"]), device=device) > 0.8).float()
    for _ in range(warmup):
        step(x, y)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    sync(device)
    return Figures(shape[0] * steps / (time.perf_counter() - start))


class Utilisation:
    """GPU utilisation sampled on a thread every 0.2 s between start() and stop()."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self.done = device, [], threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(0.2):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except (ModuleNotFoundError, RuntimeError):  # no NVML here
                return

    def start(self) -> None:
        if self.device.type == "cuda":
            self.thread.start()

    def stop(self) -> float:
        """The mean utilisation in percent (nan: not sampled)."""
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        return sum(self.samples) / len(self.samples) if self.samples else math.nan


def fed(step: Step, device: torch.device, spec: DataSpec, warmup: int, steps: int) -> Figures:
    """:class:`Figures` of ``step`` fed by a new loader of ``spec`` (epoch after epoch)."""
    begin = time.perf_counter()
    loader = PatchLoader(spec)
    decoder = loader.decoder(device)
    copied: list[int] = []

    def counted(batches: Iterable[Batch]) -> Iterator[Batch]:
        for batch in batches:
            copied.append(batch.tensor_bytes)
            yield batch

    def batches() -> Iterator:
        epoch = 0
        while True:
            yield from feed(counted(loader.epoch(epoch)), decoder)
            epoch += 1

    stream = batches()
    for _ in range(warmup):
        batch = next(stream)
        step(batch.x, batch.y)
    sync(device)
    fill = time.perf_counter() - begin
    copied.clear()
    util = Utilisation(device)
    util.start()
    n, cpu, start = 0, time.process_time(), time.perf_counter()
    for _ in range(steps):
        batch = next(stream)
        step(batch.x, batch.y)
        n += len(batch.ids)
    sync(device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    # the copies issued ahead of the last step are counted with it
    figures = Figures(n / seconds, fill, util.stop(), sum(copied) / n, 1000 * cpu / steps)
    stream.close()
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lake", required=True)
    p.add_argument("--modality", default="s1s2")
    p.add_argument("--models", help="comma-separated (GPU: resnet50,s-cnn)")
    p.add_argument("--batch-sizes", help="comma-separated (GPU: 256,512)")
    p.add_argument("--decodes", default="device,worker", help="decode paths to feed with")
    p.add_argument("--steps", type=int, help="timed steady-state steps (GPU: 200)")
    p.add_argument("--warmup", type=int, help="untimed steps first (GPU: 30)")
    p.add_argument("--workers", type=int, help="reader processes (GPU: 8)")
    p.add_argument("--prefetch", type=int, help="batches each reader prepares (GPU: 4)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for name, values in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, values[device.type != "cuda"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    decodes = args.decodes.split(",")
    if not set(decodes) <= set(DECODES):
        p.error(f"--decodes takes {DECODES}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke test)"
    print(
        f"device: {name}; {args.modality}, bf16 autocast on GPU, augmentation, {args.workers} "
        f"reader workers, prefetch {args.prefetch}; {args.warmup} warm-up + {args.steps} timed "
        "steps per run"
    )
    headline = math.nan
    for model_name in args.models.split(","):
        for size in map(int, args.batch_sizes.split(",")):
            spec = DataSpec(
                args.lake,
                "train",
                args.modality,
                batch_size=size,
                augment=True,
                workers=args.workers,
                prefetch=args.prefetch,
            )
            model = build_model(model_name, len(spec.bands), len(NOMENCLATURES["19"]))
            model = model.to(device).to(memory_format=torch.channels_last)
            step = make_step(model, device)
            shape = (size, len(spec.bands), 120, 120)
            synth = synthetic(step, device, shape, args.warmup, args.steps).samples_per_s
            print(f"{model_name} batch {size}: synthetic_samples_per_s={synth:.1f}")
            for decode in decodes:
                spec_path = replace(spec, decode=decode)
                f = fed(step, device, spec_path, args.warmup, args.steps)
                ratio = f.samples_per_s / synth
                print(
                    f"{model_name} batch {size} decode {decode}: "
                    f"samples_per_s={f.samples_per_s:.1f} vs_synthetic={ratio:.3f} "
                    f"gpu_util_pct={f.gpu_util_pct:.0f} "
                    f"bytes_to_device_per_sample={f.bytes_to_device_per_sample:.0f} "
                    f"cpu_ms_per_batch={f.cpu_ms_per_batch:.2f} fill_s={f.fill_s:.2f}"
                )
                if math.isnan(headline) and decode == "device":
                    headline = ratio
    print(f"reader_vs_synthetic={headline:.3f}")


if __name__ == "__main__":
    main()
