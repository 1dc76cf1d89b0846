"""A paper's table as a grid of training runs: ``conf/experiments/<name>.yaml``.

A grid file holds the table's ``title`` and ``source``, the ``train`` settings every cell shares
(any :class:`~bigearth_spark.train.loop.TrainConfig` field: nomenclature, epochs, batch size,
optimiser settings as the paper states them), the evaluation ``split``, the ``metrics`` to
report, and ``cells``: each a ``name``, the cell's own TrainConfig fields (model, modality,
init, ...) and ``published`` figures (metric → value) from ``source``. A cell with
``model: null`` is a published row that this project cannot run (the reason in ``note``).

:func:`run_grid` trains and evaluates every cell in turn, one folder per cell under
``<out>/<grid name>/``; a cell whose ``result.json`` exists is finished and skipped, a failed
one (``error.txt``) runs again next time.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bigearth_spark.config import reject_unknown_keys
from bigearth_spark.train.loop import TrainConfig

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
RESULT, ERROR = "result.json", "error.txt"
CELL_KEYS = {"name", "published", "note"}


@dataclass(frozen=True)
class Cell:
    """One cell: its TrainConfig fields (empty ``train`` for a published-only row)."""

    name: str
    train: dict[str, Any]
    published: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def runnable(self) -> bool:
        """False for a published row whose model is not in this project."""
        return self.train.get("model") is not None


@dataclass(frozen=True)
class Grid:
    """A table of runs (see the module doc for the file format)."""

    name: str
    title: str
    source: str
    split: str
    metrics: list[str]
    train: dict[str, Any]
    cells: list[Cell]

    @classmethod
    def load(cls, path: str | Path) -> Grid:
        """Read and validate a grid file."""
        data = yaml.safe_load(Path(path).read_text())
        cells = []
        for c in data["cells"]:
            own = {k: v for k, v in c.items() if k not in CELL_KEYS}
            reject_unknown_keys(own, TrainConfig, f"{path}: cell {c.get('name')}")
            cells.append(Cell(c["name"], own, c.get("published") or {}, c.get("note", "")))
        names = [c.name for c in cells]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: cell names are not unique")
        reject_unknown_keys(data.get("train", {}), TrainConfig, f"{path}: train")
        return cls(
            data.get("name", Path(path).stem),
            data["title"],
            data["source"],
            data.get("split", "test"),
            list(data["metrics"]),
            data.get("train", {}),
            cells,
        )

    def config(self, cell: Cell, lake: str, out: Path, **overrides: Any) -> TrainConfig:
        """The TrainConfig of ``cell``: grid settings, then the cell's, then ``overrides``."""
        return TrainConfig(
            **{
                **self.train,
                **cell.train,
                **overrides,
                "lake": lake,
                "out": str(out / "run"),
                "experiment": self.name,
            }
        )


def cell_dir(out: str | Path, grid: Grid, cell: Cell) -> Path:
    """The folder of one cell's run, evaluation and status."""
    return Path(out) / grid.name / cell.name


def _train(cfg: TrainConfig, folder: Path, ranks: int) -> None:
    """Train one cell in its own processes (``horovodrun -np ranks`` when ranks > 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "train.yaml"
    config.write_text(yaml.safe_dump(asdict(cfg)))
    cmd = [sys.executable, str(ROOT / "jobs" / "train.py"), "--config", str(config)]
    if ranks > 1:
        horovodrun = Path(sys.executable).parent / "horovodrun"
        cmd = [str(horovodrun), "-np", str(ranks), "-H", f"localhost:{ranks}", *cmd]
    with open(folder / "train.log", "w") as out:
        done = subprocess.run(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    if done.returncode:
        lines = (folder / "train.log").read_text(errors="replace").splitlines()
        cause = next((ln for ln in reversed(lines) if "Error" in ln), "")
        raise RuntimeError(
            f"training exited {done.returncode} ({cause.strip()}); see {folder / 'train.log'}"
        )


def run_grid(
    spark: Any,
    grid: Grid,
    lake: str,
    out: str | Path,
    ranks: int = 1,
    archive_split: str | None = "train",
    **overrides: Any,
) -> dict[str, str]:
    """Train and evaluate every unfinished cell; return each cell's status (``done``,
    ``skipped`` (finished before), ``failed``, ``not runnable``)."""
    from bigearth_spark.evaluate.classify import evaluate_checkpoint
    from bigearth_spark.train import checkpoint

    status: dict[str, str] = {}
    for cell in grid.cells:
        folder = cell_dir(out, grid, cell)
        if not cell.runnable:
            status[cell.name] = "not runnable"
            continue
        if (folder / RESULT).is_file():
            status[cell.name] = "skipped"
            log.info("%s: finished before, skipped", cell.name)
            continue
        log.info("%s: training %s", cell.name, cell.train)
        (folder / ERROR).unlink(missing_ok=True)
        try:
            cfg = grid.config(cell, lake, folder, **overrides)
            _train(cfg, folder, ranks)
            result = evaluate_checkpoint(
                spark, lake, folder / "run" / checkpoint.BEST, grid.split, archive_split
            )
        except Exception:
            (folder / ERROR).write_text(traceback.format_exc())
            status[cell.name] = "failed"
            log.exception("%s failed; it runs again on the next `experiment run`", cell.name)
            continue
        (folder / RESULT).write_text(
            json.dumps({"cell": cell.name, "config": asdict(cfg), "metrics": result}, indent=1)
        )
        status[cell.name] = "done"
    return status
