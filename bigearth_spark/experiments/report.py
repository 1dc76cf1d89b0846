"""A grid's table: our figures beside the published ones and their difference, as Markdown,
HTML and a bar chart of each metric (ours vs published, one bar pair per cell)."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from bigearth_spark.experiments.grid import ERROR, RESULT, Grid, cell_dir

NOT_RUN = "not run"
NOT_PUBLISHED = "not published here"


@dataclass(frozen=True)
class Row:
    """One cell's figures: metric → (ours or None, published or None)."""

    cell: str
    status: str
    figures: dict[str, tuple[float | None, float | None]]


def collect(grid: Grid, out: str | Path) -> list[Row]:
    """Our figures (from each finished cell's ``result.json``) and the published ones."""
    rows = []
    for cell in grid.cells:
        path = cell_dir(out, grid, cell) / RESULT
        ours = json.loads(path.read_text())["metrics"] if path.is_file() else {}
        failed = (cell_dir(out, grid, cell) / ERROR).is_file()
        status = "done" if ours else "failed (see error.txt)" if failed else cell.note or NOT_RUN
        figures = {m: (ours.get(m), cell.published.get(m)) for m in grid.metrics}
        rows.append(Row(cell.name, status, figures))
    return rows


def _fmt(value: float | None, empty: str) -> str:
    return empty if value is None or math.isnan(value) else f"{value:.4f}"


def _diff(ours: float | None, published: float | None) -> str:
    return "" if ours is None or published is None else f"{ours - published:+.4f}"


def _cells(row: Row, metric: str) -> list[str]:
    ours, published = row.figures[metric]
    return [_fmt(ours, NOT_RUN), _fmt(published, NOT_PUBLISHED), _diff(ours, published)]


def markdown(grid: Grid, rows: list[Row]) -> str:
    """The table in Markdown: per metric, ours | published | difference."""
    head = ["cell"] + [f"{m} {k}" for m in grid.metrics for k in ("ours", "published", "Δ")]
    lines = [
        f"## {grid.title}",
        "",
        f"Published figures: {grid.source}.",
        f"Our figures: split `{grid.split}` of the lake each run read.",
        "",
        "| " + " | ".join(head) + " | status |",
        "|" + "---|" * (len(head) + 1),
    ]
    for r in rows:
        values = [v for m in grid.metrics for v in _cells(r, m)]
        lines.append("| " + " | ".join([r.cell, *values, r.status]) + " |")
    return "\n".join(lines) + "\n"


def _chart(path: Path, grid: Grid, rows: list[Row]) -> None:
    fig = Figure(figsize=(8, 1.5 + 2.2 * len(grid.metrics)), layout="constrained")
    for i, metric in enumerate(grid.metrics, start=1):
        ax = fig.add_subplot(len(grid.metrics), 1, i)
        ys = range(len(rows))
        ours = [r.figures[metric][0] or 0.0 for r in rows]
        published = [r.figures[metric][1] or 0.0 for r in rows]
        ax.barh([y - 0.2 for y in ys], ours, height=0.4, label="ours", color="tab:blue")
        ax.barh([y + 0.2 for y in ys], published, height=0.4, label="published", color="tab:gray")
        ax.set_yticks(list(ys), [r.cell for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        if i == 1:
            ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)


def write_report(grid: Grid, out: str | Path) -> tuple[str, Path]:
    """Write ``report.md``, ``report.html`` and ``report.png`` beside the cells; return the
    Markdown and the HTML path."""
    rows = collect(grid, out)
    folder = Path(out) / grid.name
    folder.mkdir(parents=True, exist_ok=True)
    text = markdown(grid, rows)
    (folder / "report.md").write_text(text)
    _chart(folder / "report.png", grid, rows)
    head = "".join(
        f"<th>{html.escape(m)} {k}</th>" for m in grid.metrics for k in ("ours", "published", "Δ")
    )
    body = "".join(
        "<tr><td>"
        + "</td><td>".join(
            html.escape(v)
            for v in [r.cell, *[c for m in grid.metrics for c in _cells(r, m)], r.status]
        )
        + "</td></tr>"
        for r in rows
    )
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(grid.title)}</title>"
        f"<h1>{html.escape(grid.title)}</h1><p>Published figures: {html.escape(grid.source)}"
        f"</p><table border=1 cellpadding=4><tr><th>cell</th>{head}<th>status</th></tr>"
        f"{body}</table><p><img src='report.png' alt='ours vs published'></p>"
    )
    (folder / "report.html").write_text(page)
    return text, folder / "report.html"
