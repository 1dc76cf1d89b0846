"""Helpers that run the ingest's steps: a named, timed step, and a step run beside it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from pyspark import InheritableThread
from pyspark.sql import SparkSession

log = logging.getLogger("bigearth_spark.etl.ingest")  # step times belong to the ingest's log
T_ = TypeVar("T_")


class Background(Generic[T_]):
    """``action()`` run in a thread of its own, as the step named ``name`` (its Spark jobs
    carry the name); :meth:`result` waits for it and re-raises its error."""

    def __init__(self, spark: SparkSession, name: str, action: Callable[[], T_]) -> None:
        self._result: T_ | None = None
        self._error: BaseException | None = None

        def run() -> None:
            spark.sparkContext.setJobDescription(f"ingest: {name}")
            try:
                self._result = action()
            except BaseException as e:  # re-raised by result(), in the step's thread
                self._error = e

        self._thread = InheritableThread(target=run, daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Wait for the action to end."""
        self._thread.join()

    def result(self) -> T_:
        """Wait for the action; return its result or raise its error."""
        self.wait()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


@contextmanager
def step(spark: SparkSession, name: str) -> Iterator[None]:
    """Log a step's duration; its Spark jobs carry its name in the UI and the event log."""
    start = time.perf_counter()
    log.info("step %s ...", name)
    spark.sparkContext.setJobDescription(f"ingest: {name}")
    try:
        yield
    finally:
        spark.sparkContext.setJobDescription(None)  # type: ignore[arg-type]
    log.info("step %s done in %.1f s", name, time.perf_counter() - start)
