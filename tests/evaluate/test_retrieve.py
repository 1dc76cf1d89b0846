"""Retrieval metrics: hand-checked examples, a brute-force reference and properties."""

from __future__ import annotations

import numpy as np
import pytest

from bigearth_spark.evaluate.retrieve import binary_codes, retrieval_metrics

A, B = [1, 0], [0, 1]


def test_hand_checked_query_against_archive() -> None:
    # Cosine ranking of q=[1,0]: a1 (0, rel), a3 (0.29), a0 (1), a2 (2, rel) -> rel 1,0,0,1.
    # Codes, centre (0.25, 0.5): q=10, a0=01, a1=10, a2=00, a3=11 -> Hamming 2,0,1,1;
    # a2 and a3 tie and keep archive order: a1 (rel), a2 (rel), a3, a0 -> rel 1,1,0,0.
    archive = np.array([[0, 1], [1, 0], [-1, 0], [1, 1]], dtype=float)
    a_labels = np.array([B, A, [1, 1], B])
    m = retrieval_metrics([[1.0, 0.0]], [A], archive, a_labels, ks=(1, 2, 3, 4))
    assert m == pytest.approx(
        {
            "cosine_precision_at_1": 1.0,
            "cosine_precision_at_2": 0.5,
            "cosine_precision_at_3": 1 / 3,
            "cosine_precision_at_4": 0.5,
            "cosine_map_at_1": 1.0,
            "cosine_map_at_2": 1.0,
            "cosine_map_at_3": 1.0,
            "cosine_map_at_4": (1 + 2 / 4) / 2,
            "hamming_precision_at_1": 1.0,
            "hamming_precision_at_2": 1.0,
            "hamming_precision_at_3": 2 / 3,
            "hamming_precision_at_4": 0.5,
            "hamming_map_at_1": 1.0,
            "hamming_map_at_2": 1.0,
            "hamming_map_at_3": 1.0,
            "hamming_map_at_4": 1.0,
        }
    )


def test_hand_checked_same_set_excludes_the_query() -> None:
    # e0=[1,0] {A}, e1=[1,1] {A}, e2=[0,1] {B}. Nearest others (both distances agree):
    # e0 -> e1 (rel), e2; e1 -> e0 (rel) and e2 tied, archive order; e2 -> e1, e0 (none rel).
    emb = np.array([[1, 0], [1, 1], [0, 1]], dtype=float)
    labels = np.array([A, A, B])
    m = retrieval_metrics(emb, labels, emb, labels, ks=(1, 2), same_set=True)
    for d in ("cosine", "hamming"):
        assert m[f"{d}_precision_at_1"] == pytest.approx(2 / 3)
        assert m[f"{d}_precision_at_2"] == pytest.approx(1 / 3)
        assert m[f"{d}_map_at_1"] == pytest.approx(2 / 3)
        assert m[f"{d}_map_at_2"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(emb, labels, emb, labels, ks=(3,), same_set=True)


def test_provided_codes_drive_the_hamming_ranking() -> None:
    emb = np.zeros((3, 2))
    labels = np.array([A, B, A])
    codes = np.array([[1, 1, 1], [1, 1, 0], [-1, -1, -1]])  # ±1 codes: > 0 is a one-bit
    m = retrieval_metrics(
        emb[:1], labels[:1], emb, labels, ks=(1, 2), q_codes=[[1, 1, 1]], a_codes=codes
    )
    # Hamming from 111: a0 (0, rel), a1 (1), a2 (3, rel)
    assert m["hamming_precision_at_1"] == 1.0
    assert m["hamming_precision_at_2"] == 0.5
    assert m["hamming_map_at_2"] == 1.0


def _brute_force(q, ql, a, al, ks, same_set):
    """Full sort of every distance row with an explicit (distance, index) order."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    center = a.mean(0)
    qb, ab = binary_codes(q, center), binary_codes(a, center)
    dists = {
        "cosine": 1 - qn @ an.T,
        "hamming": (qb[:, None, :] != ab[None, :, :]).sum(2).astype(float),
    }
    out = {}
    for name, dist in dists.items():
        precision = {k: [] for k in ks}
        ap = {k: [] for k in ks}
        for i in range(len(q)):
            idx = np.arange(len(a))
            if same_set:
                idx = idx[idx != i]
            order = idx[np.lexsort((idx, np.round(dist[i, idx], 5)))]
            rel = np.array([(ql[i] & al[j]).any() for j in order], dtype=float)
            for k in ks:
                r = rel[:k]
                p_at = np.cumsum(r) / np.arange(1, k + 1)
                precision[k].append(r.mean())
                ap[k].append((p_at * r).sum() / max(r.sum(), 1))
        for k in ks:
            out[f"{name}_precision_at_{k}"] = np.mean(precision[k])
            out[f"{name}_map_at_{k}"] = np.mean(ap[k])
    return out


@pytest.mark.parametrize("same_set", [False, True])
def test_matches_brute_force_in_small_blocks(same_set: bool) -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(60, 6))
    al = rng.random((60, 5)) < 0.3
    q, ql = (a, al) if same_set else (rng.normal(size=(23, 6)), rng.random((23, 5)) < 0.3)
    ks = (1, 5, 10, 20)
    expected = _brute_force(q, ql, a, al, ks, same_set)
    for block_size in (1, 200, 1 << 24):  # one query per block, a few, all at once
        got = retrieval_metrics(q, ql, a, al, ks=ks, same_set=same_set, block_size=block_size)
        assert got == pytest.approx(expected)


def test_perfect_embeddings_give_precision_one() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random((200, 6)) < 0.3).astype(np.uint8)
    labels[np.arange(200), rng.integers(0, 6, 200)] = 1  # every image has a label
    # Cosine distance between multi-hot vectors is < 1 exactly when they share a label.
    m = retrieval_metrics(labels, labels, labels, labels, ks=(10, 20), same_set=True)
    assert m["cosine_precision_at_10"] == m["cosine_map_at_20"] == 1.0
    # Single-label archive with one-hot codes: Hamming 0 within a class, 2 across.
    single = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, 200)]
    m = retrieval_metrics(
        single, single, single, single, ks=(10, 20), same_set=True, q_codes=single, a_codes=single
    )
    assert all(v == 1.0 for v in m.values()), m


def test_rejects_inconsistent_input() -> None:
    emb, labels = np.ones((4, 3)), np.ones((4, 2))
    with pytest.raises(ValueError, match="mismatch"):
        retrieval_metrics(emb, labels[:3], emb, labels)
    with pytest.raises(ValueError, match="both"):
        retrieval_metrics(emb, labels, emb, labels, q_codes=emb)
    with pytest.raises(ValueError, match="same_set"):
        retrieval_metrics(emb[:2], labels[:2], emb, labels, same_set=True)
