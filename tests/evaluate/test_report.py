"""write_report: valid PNG charts and an index page that shows them and the metrics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bigearth_spark.archive.labels import NAMES_19
from bigearth_spark.evaluate.report import write_report
from bigearth_spark.train.metrics import multilabel_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _data(n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random((n, len(NAMES_19))) < 0.25).astype(np.uint8)
    y[:, 7] = 0  # a class without positives: no PR curve, AP shown as n/a
    scores = np.clip(0.5 * y + 0.6 * rng.random(y.shape), 0, 1)
    return y, scores


def _check_pngs(html: str, out: Path) -> list[str]:
    pngs = sorted(p.name for p in out.glob("*.png"))
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > len(PNG_SIGNATURE), name
        assert f'src="{name}"' in html, name
    assert sorted(re.findall(r'src="([^"]+)"', html)) == pngs
    return pngs


@pytest.mark.parametrize("with_counts", [False, True])
def test_write_report(tmp_path: Path, with_counts: bool) -> None:
    y, scores = _data()
    metrics = multilabel_metrics(y, scores)
    counts = {name: 1000 * (i + 1) for i, name in enumerate(NAMES_19)} if with_counts else None
    index = write_report(tmp_path / "report", metrics, y, scores, NAMES_19, counts)

    assert index == tmp_path / "report" / "index.html"
    html = index.read_text(encoding="utf-8")
    pngs = _check_pngs(html, index.parent)
    # 18 classes with positives -> two PR figures of at most 10 classes
    assert pngs == ["label_frequency.png", "per_class_f1.png", "pr_curves_1.png", "pr_curves_2.png"]
    assert f"<td>micro_f1</td><td>{metrics['micro_f1']:.4f}</td>" in html
    assert "<td>macro_ap</td>" in html and "n/a" in html  # class 7 has no AP
    assert "Land principally occupied by agriculture, with significant areas" in html


def test_rejects_mismatched_names(tmp_path: Path) -> None:
    y, scores = _data()
    with pytest.raises(ValueError, match="class names"):
        write_report(tmp_path, multilabel_metrics(y, scores), y, scores, NAMES_19[:5], None)
