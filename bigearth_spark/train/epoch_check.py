"""The check that ends every epoch: each row of the split delivered exactly once across all
ranks and workers, scored or skipped (a missing S1 partner), or the run fails."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


class DataLossError(RuntimeError):
    """An epoch did not deliver every row of the split exactly once."""


def verify_epoch(
    ids_per_rank: Sequence[Sequence[str]],
    expected: int,
    skipped_per_rank: Sequence[Sequence[str]] = (),
) -> int:
    """Check that the ranks together delivered every row of the split exactly once, each either
    scored (``ids_per_rank``) or skipped for a missing S1 partner (``skipped_per_rank``); return
    the number scored.

    Raises :class:`DataLossError` on an id scored or skipped more than once, one both scored and
    skipped, or a number of ids that differs from the Delta log's count of the split.
    """
    scored = Counter(i for ids in ids_per_rank for i in ids)
    skipped = Counter(i for ids in skipped_per_rank for i in ids)
    for what, counts in (("delivered", scored), ("skipped", skipped)):
        repeated = sorted(i for i, n in counts.items() if n > 1)
        if repeated:
            raise DataLossError(
                f"{len(repeated)} rows {what} more than once in an epoch: {repeated[:5]}"
            )
    both = sorted(scored.keys() & skipped.keys())
    if both:
        raise DataLossError(f"{len(both)} rows both delivered and skipped: {both[:5]}")
    if len(scored) + len(skipped) != expected:
        raise DataLossError(
            f"epoch delivered {len(scored)} rows (+{len(skipped)} skipped without S1) but the "
            f"split has {expected} rows in the pinned table version"
        )
    return len(scored)
