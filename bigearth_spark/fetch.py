"""Reads with many requests in flight: object stores answer each request after a round trip of
tens of milliseconds but serve thousands at once, so a task keeps many of its reads outstanding.

A bounded pool of threads per process (:func:`pool`: one per Spark task or DataLoader worker)
fetches whole files (:func:`bigearth_spark.storage.read_bytes`: one GET each); :func:`ahead`
requests the files of the next items while the caller works on the current one. Memory stays
bounded by the files requested ahead (at most twice the pool). Local files need none of it: they
are read where they are used.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache, partial
from typing import TypeVar

from bigearth_spark import storage
from bigearth_spark.retry import retried

T = TypeVar("T")
R = TypeVar("R")
REQUESTS_IN_FLIGHT = 32  # per task: hides a 20 ms round trip at ~1,600 files/s
CONF_KEY = "spark.bigearth.requestsInFlight"  # the ingest's setting (spark-submit --conf)
MAX_IN_FLIGHT = storage.S3_CONNECTIONS
Fetched = dict[str, "Future[bytes]"]  # a file's path or URI → its content, being read
_END = object()


def in_flight(value: str | int | None) -> int:
    """A requests-in-flight setting, checked (1 to :data:`MAX_IN_FLIGHT`; None: the default)."""
    n = REQUESTS_IN_FLIGHT if value is None else int(value)
    if not 1 <= n <= MAX_IN_FLIGHT:
        raise ValueError(f"{CONF_KEY} is {n}: it must be from 1 to {MAX_IN_FLIGHT}")
    return n


@lru_cache(maxsize=4)
def pool(size: int) -> ThreadPoolExecutor:
    """The process's pool of ``size`` reading threads (created once, shared by its reads; a
    forked process gets its own: threads do not survive a fork)."""
    return ThreadPoolExecutor(size, thread_name_prefix="bigearth-fetch")


os.register_at_fork(after_in_child=pool.cache_clear)


def fetch(uris: Iterable[str], size: int) -> Fetched:
    """Start reading ``uris`` on :func:`pool` ``(size)``, each retried while it fails with a
    storage error (:func:`bigearth_spark.retry.retried`); each future holds the bytes, or the
    last ``OSError``."""
    threads = pool(size)
    return {uri: threads.submit(retried, partial(storage.read_bytes, uri)) for uri in uris}


def ahead(
    items: Iterable[T], files: Callable[[T], list[str]], size: int
) -> Iterator[tuple[T, Fetched]]:
    """Each of ``items``, in order, with the reads of its ``files(item)`` under way: those of the
    next items are requested before the item is handed over, up to ``2 × size`` files not yet
    handed over (or one item's, if more)."""
    window: deque[tuple[T, Fetched]] = deque()
    queued = 0
    source = iter(items)
    exhausted = False
    while True:
        while not exhausted and (queued < 2 * size or not window):
            item = next(source, _END)
            if item is _END:
                exhausted = True
                break
            reads = fetch(files(item), size)  # type: ignore[arg-type]
            window.append((item, reads))  # type: ignore[arg-type]
            queued += len(reads)
        if not window:
            return
        item, reads = window.popleft()
        queued -= len(reads)
        yield item, reads


def read_ahead(work: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[R]:
    """``work(item)`` of each of ``items``, in order, the next ``depth`` computed ahead on
    :func:`pool` ``(depth)`` while the caller uses the current one."""
    threads = pool(depth)
    window: deque[Future[R]] = deque()
    for item in items:
        window.append(threads.submit(work, item))
        if len(window) > depth:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()


def given(contents: Mapping[str, bytes]) -> Fetched:
    """Contents known already, as reads that are done."""
    done: Fetched = {}
    for uri, data in contents.items():
        done[uri] = Future()
        done[uri].set_result(data)
    return done


def reader(fetched: Fetched) -> Callable[[str], bytes]:
    """A read function that takes the files of ``fetched`` from their reads (raising their
    error) and reads any other file itself."""

    def read(uri: str) -> bytes:
        future = fetched.get(uri)
        return storage.read_bytes(uri) if future is None else future.result()

    return read
