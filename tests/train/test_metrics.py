"""multilabel_metrics against scikit-learn on random cases with the awkward edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    average_precision_score,
    fbeta_score,
    hamming_loss,
    precision_recall_fscore_support,
)

from bigearth_spark.train.metrics import average_precision, multilabel_metrics

AVERAGES = {"micro": "micro", "macro": "macro", "sample": "samples"}


def _case(seed: int, n: int = 60, c: int = 7, ties: bool = False) -> tuple[np.ndarray, ...]:
    """Random labels with an empty class (column 2) and samples without labels (rows 0-4)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(np.uint8)
    y[:, 2] = 0
    y[:5] = 0
    scores = np.clip(0.6 * y + rng.random((n, c)) * 0.7 - 0.1, 0, 1)
    if ties:
        scores = np.round(scores, 1)
    return y, scores


CASES = [
    pytest.param(*_case(0), 0.5, id="seed0"),
    pytest.param(*_case(1, n=40, c=19), 0.5, id="seed1-19cls"),
    pytest.param(*_case(2, ties=True), 0.5, id="tied-scores"),
    pytest.param(*_case(3, n=25, c=43), 0.3, id="43cls-thr0.3"),
    pytest.param(*_case(4), 1.5, id="nothing-predicted"),
]


def _sklearn(y: np.ndarray, pred: np.ndarray, average: str | None) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        p, r, f1, _ = precision_recall_fscore_support(y, pred, average=average, zero_division=0)
        f2 = fbeta_score(y, pred, beta=2, average=average, zero_division=0)
    return {"precision": p, "recall": r, "f1": f1, "f2": f2}


@pytest.mark.parametrize(("y", "scores", "threshold"), CASES)
def test_matches_sklearn(y: np.ndarray, scores: np.ndarray, threshold: float) -> None:
    m = multilabel_metrics(y, scores, threshold)
    pred = (scores >= threshold).astype(np.uint8)
    for ours, theirs in AVERAGES.items():
        for name, value in _sklearn(y, pred, theirs).items():
            np.testing.assert_allclose(m[f"{ours}_{name}"], value, atol=1e-12, err_msg=ours + name)
    per_class = _sklearn(y, pred, None)
    for name, values in per_class.items():
        np.testing.assert_allclose([c[name] for c in m["per_class"]], values, atol=1e-12)
    assert [c["support"] for c in m["per_class"]] == y.sum(0).tolist()
    assert [c["class_index"] for c in m["per_class"]] == list(range(y.shape[1]))
    np.testing.assert_allclose(m["hamming_loss"], hamming_loss(y, pred), atol=1e-12)


@pytest.mark.parametrize(("y", "scores", "threshold"), CASES)
def test_average_precision_matches_sklearn(
    y: np.ndarray, scores: np.ndarray, threshold: float
) -> None:
    m = multilabel_metrics(y, scores, threshold)
    pos = y.any(axis=0)
    ap = np.array([c["ap"] for c in m["per_class"]])
    assert np.isnan(ap[~pos]).all()  # undefined without positives; sklearn says 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sk_all = average_precision_score(y, scores, average=None)
        sk_macro_all = average_precision_score(y, scores, average="macro")
    np.testing.assert_allclose(ap[pos], sk_all[pos], atol=1e-12)
    np.testing.assert_allclose(sk_all[~pos], 0.0)
    # macro AP over the classes with positives = sklearn's macro AP on those columns...
    sk_macro = average_precision_score(y[:, pos], scores[:, pos], average="macro")
    np.testing.assert_allclose(m["macro_ap"], sk_macro, atol=1e-12)
    # ...and sklearn's all-class macro AP counts the empty classes as 0.
    np.testing.assert_allclose(sk_macro_all, m["macro_ap"] * pos.sum() / y.shape[1], atol=1e-12)
    sk_micro = average_precision_score(y, scores, average="micro")
    np.testing.assert_allclose(m["micro_ap"], sk_micro, atol=1e-12)


def test_perfect_and_hand_checked() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    perfect = multilabel_metrics(y, y.astype(float))
    for key in ("micro_f1", "macro_f1", "micro_f2", "macro_ap", "micro_ap"):
        assert perfect[key] == 1.0
    assert perfect["sample_f1"] == 0.75  # the unlabelled sample scores 0 (zero_division=0)
    assert perfect["hamming_loss"] == 0.0
    # class 0 ranked: 0.9 (pos), 0.8 (neg), 0.7 (pos) -> AP = (1 + 2/3) / 2
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(5 / 6)
    # a tie between a positive and a negative counts as one threshold: precision 1/2
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("y", "scores"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3))),
        (np.zeros(3), np.zeros(3)),
        (np.full((2, 2), 2), np.zeros((2, 2))),
        (np.zeros((0, 2)), np.zeros((0, 2))),
    ],
)
def test_rejects_bad_input(y: np.ndarray, scores: np.ndarray) -> None:
    with pytest.raises(ValueError):
        multilabel_metrics(y, scores)
