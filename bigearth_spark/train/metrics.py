"""Multi-label classification metrics as reported in the BigEarthNet papers (numpy only).

Conventions, each matching scikit-learn 1.5 so that results can be cross-checked:

* A label is predicted when its score is ``>= threshold`` (as the official BigEarthNet models).
* Precision, recall and F-beta use ``zero_division=0``: a 0/0 ratio counts as 0. F-beta is
  ``(1 + b²)·tp / (b²·(tp + fn) + tp + fp)``, so it is 0 when a class (or sample) has no true
  and no predicted label. Macro averages run over *all* classes, sample averages over *all*
  samples (those without labels included), as ``precision_recall_fscore_support`` does.
* Average precision is the step-function integral of the precision-recall curve with tied
  scores grouped into one threshold, as ``average_precision_score``.
* Classes without any positive have an undefined AP. ``average_precision_score`` scores them 0
  (with a warning) and keeps them in its macro mean; here their per-class ``ap`` is NaN and
  ``macro_ap`` averages over the classes with at least one positive only, so that a class
  absent from a test split does not pull the macro AP down. ``micro_ap`` is the AP of the
  flattened matrix, as scikit-learn's ``average="micro"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_BETAS = {"f1": 1.0, "f2": 2.0}


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den`` with 0 where ``den == 0`` (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _scores(tp: np.ndarray, n_true: np.ndarray, n_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and F2 from true-positive, true and predicted counts."""
    out = {"precision": _divide(tp, n_pred), "recall": _divide(tp, n_true)}
    for name, beta in _BETAS.items():
        b2 = beta * beta
        out[name] = _divide((1 + b2) * tp, b2 * n_true + n_pred)
    return out


def precision_recall_curve(
    y_true: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds of one binary problem, at every distinct score.

    Points are ordered by decreasing threshold (increasing recall); recall is all zeros when
    ``y_true`` has no positive. Needs at least one sample.
    """
    y = np.asarray(y_true).ravel().astype(np.float64)
    s = np.asarray(scores).ravel().astype(np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each run of ties
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / tp[-1] if tp[-1] > 0 else np.zeros_like(tp)
    return precision, recall, s[last]


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of one binary problem (NaN when ``y_true`` has no positive)."""
    y = np.asarray(y_true).ravel()
    if not y.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, scores)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} must be equal N×C matrices")
    if y.size == 0:
        raise ValueError("no samples or no classes")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must be 0/1")
    return y.astype(bool), s


def multilabel_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """All multi-label metrics of N×C ``scores`` (probabilities) against N×C 0/1 ``y_true``.

    Returns flat floats ``{micro,macro,sample}_{precision,recall,f1,f2}``, ``macro_ap``,
    ``micro_ap`` and ``hamming_loss``, plus ``per_class``: one dict per class with
    ``class_index``, ``precision``, ``recall``, ``f1``, ``f2``, ``ap`` and ``support``
    (number of positives). See the module docstring for the conventions.
    """
    y, s = _check(y_true, scores)
    pred = s >= threshold
    tp = y & pred
    out: dict[str, Any] = {}
    per_class = _scores(tp.sum(0), y.sum(0), pred.sum(0))
    per_sample = _scores(tp.sum(1), y.sum(1), pred.sum(1))
    micro = _scores(tp.sum(), y.sum(), pred.sum())
    for name in per_class:
        out[f"micro_{name}"] = float(micro[name])
        out[f"macro_{name}"] = float(per_class[name].mean())
        out[f"sample_{name}"] = float(per_sample[name].mean())
    ap = np.array([average_precision(y[:, c], s[:, c]) for c in range(y.shape[1])])
    has_pos = ~np.isnan(ap)
    out["macro_ap"] = float(ap[has_pos].mean()) if has_pos.any() else float("nan")
    out["micro_ap"] = average_precision(y, s)
    out["hamming_loss"] = float(np.mean(y != pred))
    support = y.sum(0)
    out["per_class"] = [
        {
            "class_index": c,
            **{name: float(values[c]) for name, values in per_class.items()},
            "ap": float(ap[c]),
            "support": int(support[c]),
        }
        for c in range(y.shape[1])
    ]
    return out
