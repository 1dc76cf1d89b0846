"""Content-based image retrieval evaluation as in BigEarthNet-MM.

Each query ranks the archive by a distance between embeddings; a retrieved image is relevant
when it shares at least one label with the query. Two distances:

* ``cosine``: ``1 - cos(q, a)`` between real-valued embeddings;
* ``hamming``: number of differing bits between binary codes, by default the sign of the
  embedding centred on the archive mean (``binary_codes``), or codes given by the caller.

For each ``k``: precision@k = relevant among the top k / k, and AP@k =
``sum_i P@i·rel(i) / (number of relevant among the top k)`` (0 when none is relevant), both
averaged over the queries (``map_at_k`` is the mean AP@k). Ties in distance, frequent with
Hamming distances, are broken by archive position so the ranking is deterministic. Queries
without any label never have a relevant image: leave them out of the query set if unwanted.

Distances are computed for blocks of queries against the whole archive, never for all
queries at once, so a 120k × 120k evaluation needs only ``block_size`` distances in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

DISTANCES: tuple[str, ...] = ("cosine", "hamming")


def binary_codes(emb: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Binary codes (bool N×D): the sign of ``emb - center``, positive = True."""
    return np.asarray(emb, dtype=np.float64) - center > 0


def _normalise(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(emb, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.finfo(np.float32).tiny)


def _topk(dist: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` smallest distances of each row, by (distance, column).

    Non-negative float32 values order like their bit patterns, so distance and column pack
    into one unique int64 key, which makes the partial sort deterministic under ties.
    """
    n = dist.shape[1]
    shift = max((n - 1).bit_length(), 1)
    clipped = np.where(dist > 0, dist, 0).astype(np.float32)  # also turns -0.0 into 0.0
    key = (clipped.view(np.int32).astype(np.int64) << shift) | np.arange(n)
    part = np.argpartition(key, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(key, part, axis=1).argsort(axis=1)
    return np.take_along_axis(part, order, axis=1)


def _blocks(n_queries: int, n_archive: int, block_size: int) -> Iterator[slice]:
    rows = max(1, block_size // max(n_archive, 1))
    for start in range(0, n_queries, rows):
        yield slice(start, min(start + rows, n_queries))


def _check_pair(name: str, emb: np.ndarray, labels: np.ndarray) -> None:
    if emb.ndim != 2 or labels.ndim != 2 or len(emb) != len(labels):
        raise ValueError(f"{name}: embeddings {emb.shape} and labels {labels.shape} mismatch")


def _checked_ks(
    q_emb: np.ndarray,
    q_lab: np.ndarray,
    a_emb: np.ndarray,
    a_lab: np.ndarray,
    ks: Sequence[int],
    same_set: bool,
    codes_given: tuple[bool, bool],
) -> list[int]:
    """Validate the inputs of :func:`retrieval_metrics`; the sorted distinct ``ks``."""
    _check_pair("queries", q_emb, q_lab)
    _check_pair("archive", a_emb, a_lab)
    if q_emb.shape[1] != a_emb.shape[1] or q_lab.shape[1] != a_lab.shape[1]:
        raise ValueError("queries and archive differ in embedding size or number of classes")
    if same_set and len(q_emb) != len(a_emb):
        raise ValueError("same_set needs the queries to be the archive")
    if codes_given[0] != codes_given[1]:
        raise ValueError("give both q_codes and a_codes, or neither")
    if len(q_emb) == 0:
        raise ValueError("no queries")
    ks = sorted(set(ks))
    if not ks or ks[0] < 1 or ks[-1] > len(a_emb) - same_set:
        raise ValueError(f"ks {ks} must lie in 1..{len(a_emb) - same_set}")
    return ks


def _signs(bits: np.ndarray) -> np.ndarray:
    return np.where(bits, 1.0, -1.0).astype(np.float32)


def _add_scores(sums: dict[str, float], distance: str, rel: np.ndarray, ks: list[int]) -> None:
    """Add the precision@k and AP@k of a block of rankings (``rel``: relevant, Q×k_max)."""
    hits = np.cumsum(rel, axis=1)
    precision_at = hits / np.arange(1, rel.shape[1] + 1)
    for k in ks:
        sums[f"{distance}_precision_at_{k}"] += precision_at[:, k - 1].sum()
        ap = (precision_at[:, :k] * rel[:, :k]).sum(axis=1) / np.maximum(hits[:, k - 1], 1)
        sums[f"{distance}_map_at_{k}"] += ap.sum()


def retrieval_metrics(
    q_emb: np.ndarray,
    q_labels: np.ndarray,
    a_emb: np.ndarray,
    a_labels: np.ndarray,
    ks: Sequence[int] = (10,),
    same_set: bool = False,
    q_codes: np.ndarray | None = None,
    a_codes: np.ndarray | None = None,
    block_size: int = 1 << 24,
) -> dict[str, float]:
    """Retrieval mAP@k and precision@k of queries against an archive, per distance.

    ``q_emb``/``a_emb``: N×D / M×D embeddings; ``q_labels``/``a_labels``: N×C / M×C multi-hot.
    ``same_set``: the queries are the archive (same rows, same order); each query's own row
    is excluded from its ranking. ``q_codes``/``a_codes``: optional binary codes (N×B / M×B,
    values > 0 are 1) for the Hamming ranking instead of the sign of the centred embeddings.
    ``block_size``: how many query×archive distances are held in memory at once.

    Returns ``{distance}_map_at_{k}`` and ``{distance}_precision_at_{k}`` for each distance
    in :data:`DISTANCES` and each ``k`` in ``ks``.
    """
    q_emb, a_emb = np.asarray(q_emb), np.asarray(a_emb)
    q_lab, a_lab = np.asarray(q_labels) > 0, np.asarray(a_labels) > 0
    given = (q_codes is not None, a_codes is not None)
    ks = _checked_ks(q_emb, q_lab, a_emb, a_lab, ks, same_set, given)
    if q_codes is None or a_codes is None:
        center = a_emb.mean(axis=0)
        q_bits, a_bits = binary_codes(q_emb, center), binary_codes(a_emb, center)
    else:
        q_bits, a_bits = np.asarray(q_codes) > 0, np.asarray(a_codes) > 0
    q_sign, a_sign = _signs(q_bits), _signs(a_bits)
    q_unit, a_unit = _normalise(q_emb), _normalise(a_emb)
    sums = {f"{d}_{m}_at_{k}": 0.0 for d in DISTANCES for m in ("map", "precision") for k in ks}
    for rows in _blocks(len(q_emb), len(a_emb), block_size):
        for distance in DISTANCES:
            if distance == "cosine":
                dist = 1.0 - q_unit[rows] @ a_unit.T
            else:  # ±1 codes: differing bits = (B - dot) / 2, exact in float32
                dist = (a_sign.shape[1] - q_sign[rows] @ a_sign.T) / 2
            if same_set:
                own = np.arange(rows.start, rows.stop)
                dist[own - rows.start, own] = np.inf
            top = _topk(dist, ks[-1])
            rel = (q_lab[rows, None, :] & a_lab[top]).any(axis=2)
            _add_scores(sums, distance, rel, ks)
    return {key: float(total / len(q_emb)) for key, total in sums.items()}
