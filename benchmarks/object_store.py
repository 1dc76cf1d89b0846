"""Object-store latency: the ingest and the training reader reading from the tests' S3 server
(moto, on localhost) through a proxy that adds 0 ms or 20 ms to every request (a cloud object
store's round trip), on the same data, in the same process, interleaved; medians over rounds.

Per round, the same archive ingested from local folders (for reference: ``s3_vs_local=``), then
for each delay:
  * the ingest: plain ``spark-submit jobs/ingest.py --input s3a://…`` of a synthetic v1 archive
    (``--pairs``, no defects) into a new local lake, Spark's defaults (``local[*]``); its pairs
    per second over the whole run, over the decode + write step, and the discovery + plan
    step's seconds, and every request it made (the proxy's count: GET, LIST, HEAD...);
  * the training reader: the lake the ingest wrote, copied to the bucket, read through
    ``PatchLoader`` with the training configuration (``TrainConfig``'s defaults: 2 workers,
    batch 32, augmentation) from ``s3a://``: samples/s of the first epoch (files opened, worker
    start) and of the next (steady: persistent workers).

Printed last (medians over the rounds): ``s3_vs_local=`` (the ingest's pairs/s from the store
at 0 ms ÷ from local folders), ``requests_per_pair=`` (the ingest's requests at 0 ms ÷
pairs; goal ≤ 17: one GET per file, listings amortised), ``latency_hiding_loader=`` (steady
epoch samples/s at 20 ms ÷ at 0 ms; goal ≥ 0.8), ``latency_hiding_ingest=`` (the ingest's
pairs/s over the whole run at 20 ms ÷ at 0 ms; goal ≥ 0.8).

On two cores the server, the proxy, Spark and the workers share the CPU: the rates are those of
this machine, the ratios what latency costs on top of them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchmarks.ingest import BIN, DECODE_WRITE_STEP, OUT, archive, run_measured
from benchmarks.loader import reader_run, training_spec
from tests.storage.s3_proxy import ProxyServer, s3_proxy
from tests.storage.s3_server import moto_server, upload

DELAYS_MS = (0, 20)
DISCOVERY_STEP = re.compile(r"step discovery \+ plan done in ([0-9.]+) s")


def _step(out: str, pattern: re.Pattern[str]) -> float:
    found = pattern.findall(out)
    if not found:
        raise RuntimeError(f"no {pattern.pattern!r} in the ingest's log:\n{out[-3000:]}")
    return float(found[-1])


def ingest_run(source: str, lake: Path, pairs: int) -> dict[str, float]:
    """One plain ``spark-submit`` ingest of ``source`` into a new ``lake``."""
    shutil.rmtree(lake, ignore_errors=True)
    cmd = [str(BIN / "spark-submit"), "jobs/ingest.py", "--input", source, "--lake", str(lake)]
    seconds, _, out = run_measured(cmd)
    return {
        "ingest_pairs_per_s": pairs / seconds,
        "decode_write_pairs_per_s": pairs / _step(out, DECODE_WRITE_STEP),
        "discovery_plan_s": _step(out, DISCOVERY_STEP),
    }


def ingest_round(source: str, lake: Path, pairs: int, proxy: ProxyServer) -> dict[str, float]:
    """One ingest of ``source`` through ``proxy``, with the requests it made."""
    proxy.reset()
    got = ingest_run(source, lake, pairs)
    requests = sum(proxy.requests.values())
    return {
        **got,
        "requests_per_pair": requests / pairs,
        **{f"{kind.lower()}_per_pair": n / pairs for kind, n in proxy.requests.items()},
    }


def loader_round(lake: str, proxy: ProxyServer) -> dict[str, float]:
    """One fresh training reader over the lake at ``lake`` through ``proxy``: its first epoch and
    one steady epoch."""
    proxy.reset()
    spec = training_spec(lake, None, None)
    run = reader_run(spec, spec.workers, 1)
    return {
        "loader_first_epoch_samples_per_s": run.samples / run.first_epoch_s,
        "loader_samples_per_s": run.samples_per_s,
    }


def measure(pairs: int, rounds: int, out: Path) -> dict[str, list[float]]:
    """Every round's figures at each delay, the ingest and loader runs interleaved."""
    root = archive(pairs, out)
    figures: dict[str, list[float]] = {}
    with moto_server("bigearth-bench") as bucket:
        source, lake_uri = f"{bucket}/archive", f"{bucket}/lake"
        start = time.perf_counter()
        objects = upload(root, source)
        print(f"uploaded {objects:,} objects in {time.perf_counter() - start:.0f} s", flush=True)
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        lake = out / f"lake_s3_{pairs}"
        for r in range(rounds):
            local = ingest_run(str(root), lake, pairs)
            print(f"  round {r + 1}, local folders: {_line(local)}", flush=True)
            for k, v in local.items():
                figures.setdefault(f"{k}@local", []).append(v)
            order = DELAYS_MS if r % 2 == 0 else DELAYS_MS[::-1]
            for delay in order:
                with s3_proxy(endpoint, delay_ms=delay) as proxy:
                    _name(proxy.url)
                    got = ingest_round(source, lake, pairs, proxy)
                    if r == 0 and delay == order[0]:
                        upload(lake, lake_uri)  # the lake the loader reads, once
                    got |= loader_round(lake_uri, proxy)
                    _name(endpoint)
                print(f"  round {r + 1}, {delay} ms: {_line(got)}", flush=True)
                for k, v in got.items():
                    figures.setdefault(f"{k}@{delay}ms", []).append(v)
    return figures


def _line(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:,.2f}" for k, v in figures.items())


def _name(endpoint: str) -> None:
    """Point this process and the ones it starts at ``endpoint`` (the proxy, or the server)."""
    os.environ["AWS_ENDPOINT_URL"] = endpoint


def ratio(figures: dict[str, list[float]], name: str) -> float:
    """The median over the rounds of ``name`` at 20 ms ÷ at 0 ms."""
    pairs = zip(figures[f"{name}@20ms"], figures[f"{name}@0ms"], strict=True)
    return statistics.median(slow / fast for slow, fast in pairs)


def main() -> None:
    """Measure and print the figures (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    figures = measure(args.pairs, args.rounds, args.out)
    for name, values in figures.items():
        print(f"{name} = {statistics.median(values):,.2f}")
    s3_vs_local = (
        fast / local
        for fast, local in zip(
            figures["ingest_pairs_per_s@0ms"], figures["ingest_pairs_per_s@local"], strict=True
        )
    )
    print(f"s3_vs_local={statistics.median(s3_vs_local):.2f}")
    print(f"requests_per_pair={statistics.median(figures['requests_per_pair@0ms']):.2f}")
    print(f"latency_hiding_loader={ratio(figures, 'loader_samples_per_s'):.2f}")
    print(f"latency_hiding_ingest={ratio(figures, 'ingest_pairs_per_s'):.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
