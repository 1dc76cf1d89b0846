"""ResNet50 training-step throughput on 120×120 S1+S2 input (12 channels, 19 classes): with
synthetic tensors already on the device, and fed by the real reader (PatchLoader over a lake),
plus GPU utilisation sampled during the real-reader run (``--workers`` DataLoader processes,
pinned memory). Meant for a GPU machine; runs on CPU with small settings as a smoke test. Last
line: reader_vs_synthetic=<x>.
"""

from __future__ import annotations

import argparse
import threading
import time

import torch

from bigearth_spark.train.data import DataSpec, PatchLoader
from bigearth_spark.train.models import build_model


def step_fn(model, opt, scaler, device):
    loss_fn = torch.nn.BCEWithLogitsLoss()
    amp = device.type == "cuda"

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def synthetic_rate(step, device, batch: int, steps: int) -> float:
    x = torch.randn(batch, 12, 120, 120, device=device)
    y = (torch.rand(batch, 19, device=device) > 0.8).float()
    for _ in range(3):
        step(x, y)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def reader_rate(step, device, spec: DataSpec, steps: int) -> tuple[float, list[float]]:
    util: list[float] = []
    done = threading.Event()

    def sample():
        while not done.is_set() and device.type == "cuda":
            util.append(float(torch.cuda.utilization(device)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    loader = PatchLoader(spec)
    n, start, epoch, want = 0, time.perf_counter(), 0, spec.batch_size * steps
    while n < want:
        for b in loader.epoch(epoch):
            step(b.x.to(device, non_blocking=True), b.y.to(device, non_blocking=True))
            n += len(b.ids)
            if n >= want:
                break
        epoch += 1
    sync(device)
    done.set()
    return n / (time.perf_counter() - start), util


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lake", required=True)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--workers", type=int, default=8, help="DataLoader worker processes")
    p.add_argument("--prefetch", type=int, default=4)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build_model(args.model, 12, 19).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 needs no loss scaling
    step = step_fn(model, opt, scaler, device)
    synth = synthetic_rate(step, device, args.batch_size, args.steps)
    spec = DataSpec(
        args.lake,
        "train",
        "s1s2",
        batch_size=args.batch_size,
        workers=args.workers,
        prefetch=args.prefetch,
    )
    real, util = reader_rate(step, device, spec, args.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {name}; {args.model}, batch {args.batch_size}, bf16 autocast on GPU, "
        f"{args.workers} reader workers"
    )
    print(f"synthetic tensors: {synth:.1f} images/s")
    print(
        f"real reader: {real:.1f} images/s; GPU utilisation mean "
        f"{sum(util) / len(util) if util else float('nan'):.0f}%"
    )
    print(f"reader_vs_synthetic={real / synth:.2f}")


if __name__ == "__main__":
    main()
