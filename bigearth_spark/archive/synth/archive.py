"""The entry point: :func:`write_archive`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .defects import inject_defects
from .layout import Layout, Patch
from .outputs import write_lists, write_manifest
from .render import render_patch
from .roots import split_names
from .sampling import flag_counts, sample_labels43, sample_no19_labels
from .writer import Writer

_WORKERS = 8  # threads writing pairs: file creation dominates on slow disks


def write_archive(out: Path, flavor: str, pairs: int, seed: int = 0, defects: bool = False) -> dict:
    """Write a synthetic archive of ``pairs`` good S1/S2 pairs under ``out`` and return its manifest
    (also written to ``out/synth_manifest.json``).

    ``flavor``: ``"v1"`` or ``"v2"``. ``defects=True`` adds extra bad inputs (one or more of each
    reason code of :data:`DEFECTS_V1` / :data:`DEFECTS_V2`) on top of the good pairs; the good
    pairs are the same with and without defects. ``out`` must be absent or empty. The same
    arguments give the same bytes.

    Manifest keys: ``format``, ``flavor``, ``seed``, ``pairs``, ``roots`` (role -> folder or file
    relative to ``out``), ``s2_patches`` / ``s1_patches`` (ids of the good patches, sorted),
    ``pairs_s2_to_s1`` (good pairs), ``patches`` (per good S2 id: ``s1``, ``labels43``,
    ``labels19``, ``split``, ``snow``, ``cloud``, ``no_19_labels``, ``s2v1_name``,
    ``tile_product``, ``tile``, ``country``, ``epsg``, ``ulx``, ``uly``, ``s2_dir``, ``s1_dir``
    and, v2, ``reference_map``), ``counts`` (per split, ``snow``, ``cloud``, ``no_19``,
    ``defects``), ``defects`` (reason -> list of ``{"patch_id", "path", "detail"}``; ``{}``
    without defects; ``patch_id`` is None for the stray file at the archive root) and
    ``defect_patches`` (per S2 id of each defect pair, the same fields as ``patches`` plus
    ``reason``; ``s2_dir``/``s1_dir`` None where that side was never written). Paths are POSIX,
    relative to ``out``. ``split`` is None for v1 patches in no split list (snow, cloud, no-19).
    """
    _check_arguments(flavor, pairs)
    out = _prepare_out(Path(out))
    rng = np.random.default_rng([seed, 0x5EED])
    layout = Layout(rng, pairs)
    w = Writer(out, flavor, seed)
    good = _draw_good_patches(rng, layout, flavor, pairs)
    _assign_splits(rng, good, flavor)
    _write_pairs(w, good)
    defect_log: dict[str, list[dict]] = {}
    bad = inject_defects(w, layout, rng, defect_log) if defects else []
    write_lists(w, good, bad)
    return write_manifest(w, pairs, good, bad, defect_log)


def _check_arguments(flavor: str, pairs: int) -> None:
    """Refuse an unknown flavour or fewer than one pair."""
    if flavor not in ("v1", "v2"):
        raise ValueError(f"flavor must be 'v1' or 'v2', not {flavor!r}")
    if pairs < 1:
        raise ValueError("pairs must be >= 1")


def _prepare_out(out: Path) -> Path:
    """``out``, created if absent; it must be empty."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _draw_good_patches(
    rng: np.random.Generator, layout: Layout, flavor: str, pairs: int
) -> list[Patch]:
    """The good pairs with their labels and snow, cloud and (v1) no-19 flags."""
    n_snow, n_cloud, n_no19 = flag_counts(pairs)
    order = [int(i) for i in rng.permutation(pairs)]
    snow_idx = set(order[:n_snow])
    cloud_idx = set(order[n_snow : n_snow + n_cloud])
    no19_idx = set(order[n_snow + n_cloud : n_snow + n_cloud + n_no19]) if flavor == "v1" else set()
    good: list[Patch] = []
    for i in range(pairs):
        labels = sample_no19_labels(rng) if i in no19_idx else sample_labels43(rng)
        p = layout.new_patch(labels)
        p.snow, p.cloud, p.no19 = i in snow_idx, i in cloud_idx, i in no19_idx
        good.append(p)
    return good


def _assign_splits(rng: np.random.Generator, good: list[Patch], flavor: str) -> None:
    """Splits: ~50/25/25 of the recommended patches. v1: flagged and no-19 patches are in no list
    (as in the official recommended set); v2: flagged patches have a split too."""
    splits = split_names(flavor)
    recommended = [p for p in good if not (p.snow or p.cloud or p.no19)]
    n_rec = len(recommended)
    n_train, n_val = (n_rec + 1) // 2, (n_rec + 2) // 4
    for rank, j in enumerate(rng.permutation(n_rec)):
        which = 0 if rank < n_train else 1 if rank < n_train + n_val else 2
        recommended[int(j)].split = splits[which]
    if flavor == "v2":
        for p in good:
            if p.snow or p.cloud:
                p.split = splits[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]


def _write_pairs(w: Writer, good: list[Patch]) -> None:
    """Render and write the good pairs, overlapping file creation with rendering (the bytes do
    not depend on the order: each pair has its own random stream)."""

    def write_pair(p: Patch) -> None:
        s2, s1, codes = render_patch(w.rng(p), p.labels43, p.snow, p.cloud)
        w.write_s2(p, s2)
        w.write_s1(p, s1)
        if w.flavor == "v2":
            w.write_refmap(p, codes)

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for _ in pool.map(write_pair, good):
            pass
