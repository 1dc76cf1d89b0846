"""Retries of calls that may fail for a passing reason (storage errors, commit conflicts)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
READ_ATTEMPTS = 3  # tries of a read or listing that fails with a storage error


def is_storage_error(e: BaseException) -> bool:
    """True for an I/O or storage error that may pass: any ``OSError`` (EIO, permissions, an
    object store's throttling or timeout: pyarrow raises them as ``OSError``) but a missing
    file or folder, which is a finding about the input."""
    return isinstance(e, OSError) and not isinstance(e, FileNotFoundError | NotADirectoryError)


def exponential(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0-based) of a read: 0.1, 0.2, 0.4..."""
    return 0.1 * 2**attempt


def retried(
    call: Callable[[], T],
    transient: Callable[[BaseException], bool] = is_storage_error,
    attempts: int = READ_ATTEMPTS,
    backoff: Callable[[int], float] = exponential,
) -> T:
    """``call()``, called again after ``backoff(attempt)`` seconds while it raises an exception
    for which ``transient`` is true, at most ``attempts`` times in all; the last exception, and
    any other, propagates."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as e:
            if not transient(e) or attempt == attempts - 1:
                raise
        time.sleep(backoff(attempt))
    raise AssertionError("unreachable")
