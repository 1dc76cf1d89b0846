"""A static HTML report of a multi-label evaluation: headline metrics and PNG charts.

Figures are drawn with matplotlib's object API (``Figure`` saved through the Agg canvas), so
the pyplot state and backend of the calling process are left untouched.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from bigearth_spark.train.metrics import precision_recall_curve

CLASSES_PER_PR_FIGURE = 10


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _barh(
    path: Path, names: Sequence[str], values: Sequence[float], xlabel: str, log: bool
) -> None:
    """Horizontal bar chart, one bar per name, first name on top."""
    fig = Figure(figsize=(8, 1.0 + 0.28 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(range(len(names)), values, color="tab:blue")
    ax.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if log:
        ax.set_xscale("log")
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=100)


def _pr_figures(
    out_dir: Path, y_true: np.ndarray, scores: np.ndarray, names: Sequence[str], ap: list[float]
) -> list[Path]:
    """Precision-recall curves of the classes with positives, ``CLASSES_PER_PR_FIGURE`` each."""
    classes = [c for c in range(len(names)) if y_true[:, c].any()]
    for stale in out_dir.glob("pr_curves_*.png"):  # from an earlier report in the same folder
        stale.unlink()
    paths = []
    for page, start in enumerate(range(0, len(classes), CLASSES_PER_PR_FIGURE), start=1):
        fig = Figure(figsize=(8, 6), layout="constrained")
        ax = fig.add_subplot()
        for c in classes[start : start + CLASSES_PER_PR_FIGURE]:
            precision, recall, _ = precision_recall_curve(y_true[:, c], scores[:, c])
            label = f"{_short(names[c], 30)} (AP {ap[c]:.3f})"
            ax.plot(
                np.r_[0.0, recall],
                np.r_[precision[0], precision],
                drawstyle="steps-post",
                label=label,
            )
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.set_title(f"Precision-recall curves ({page})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
        path = out_dir / f"pr_curves_{page}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _html(
    title: str,
    headline: Mapping[str, float],
    per_class: list[dict[str, Any]],
    names: Sequence[str],
    images: list[Path],
) -> str:
    """The index page: headline table, per-class table, then the charts."""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in headline.items()
    )
    cls_rows = "".join(
        f"<tr><td>{c['class_index']}</td><td>{html.escape(names[c['class_index']])}</td>"
        + "".join(f"<td>{_fmt(c[m])}</td>" for m in ("precision", "recall", "f1", "ap"))
        + f"<td>{c['support']}</td></tr>"
        for c in per_class
    )
    figs = "".join(
        f'<figure><img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}"></figure>'
        for p in images
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
td:nth-child(2){{text-align:left}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Headline metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>
<h2>Per class</h2><table><tr><th>#</th><th>class</th><th>precision</th><th>recall</th>
<th>F1</th><th>AP</th><th>support</th></tr>{cls_rows}</table>
<h2>Charts</h2>{figs}
</body></html>
"""


def write_report(
    out_dir: str | Path,
    metrics: Mapping[str, Any],
    y_true: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    label_counts: Mapping[str, int] | None = None,
    title: str = "BigEarthNet multi-label evaluation",
) -> Path:
    """Write PNG charts and an ``index.html`` into ``out_dir``; return the html path.

    ``metrics`` is :func:`bigearth_spark.train.metrics.multilabel_metrics` output (other
    scalar entries, e.g. retrieval metrics, are shown in the headline table too). Charts:
    per-class F1 (``per_class_f1.png``), precision-recall curves of the classes with
    positives (``pr_curves_<n>.png``) and label frequencies (``label_frequency.png``) from
    ``label_counts`` (name → count, e.g. of the training split) or else from ``y_true``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true) > 0
    s = np.asarray(scores, dtype=np.float64)
    names = list(class_names)
    per_class = list(metrics["per_class"])
    if y.shape != s.shape or y.shape[1] != len(names) or len(per_class) != len(names):
        raise ValueError(
            f"y_true {y.shape}, scores {s.shape}, {len(names)} class names and "
            f"{len(per_class)} per-class metrics do not agree"
        )
    headline = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.number))}

    f1_png = out / "per_class_f1.png"
    _barh(f1_png, names, [c["f1"] for c in per_class], "F1", log=False)
    pr_pngs = _pr_figures(out, y, s, names, [c["ap"] for c in per_class])
    if label_counts is None:
        label_counts = dict(zip(names, y.sum(axis=0).tolist(), strict=True))
    freq_png = out / "label_frequency.png"
    counts = [int(n) for n in label_counts.values()]
    _barh(freq_png, list(label_counts), counts, "patches with the label (log)", log=True)

    index = out / "index.html"
    page = _html(title, headline, per_class, names, [f1_png, *pr_pngs, freq_png])
    index.write_text(page, encoding="utf-8")
    return index
