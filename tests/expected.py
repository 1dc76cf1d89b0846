"""What an ingest of a synthetic archive must store, derived from the generator's manifest (its
pairs and the defects it planted), not from the ingest's code."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bigearth_spark.archive.bands import S1_BANDS, S2_BANDS

# Defects that leave the sides of their pair as readable as they are present: a pair without a
# partner, a second copy of a folder, a stray file beside the bands. Every other defect breaks
# the side named by its patch id.
HARMLESS = frozenset(
    {"missing_s1_partner", "missing_s2_partner", "duplicate_patch_id", "stray_file"}
)
SPLIT_NAMES = {"val": "validation"}  # v1's list name -> the lake's


def _pairs(manifest: dict) -> dict[str, dict]:
    """S2 patch id -> the manifest's entry, good pairs and defect pairs alike."""
    return {**manifest["patches"], **manifest["defect_patches"]}


def readable_sides(manifest: dict) -> dict[str, tuple[bool, bool]]:
    """S2 patch id -> (its S2 side is readable, its S1 side is readable), for every pair."""
    sides = {s2: (True, True) for s2 in manifest["patches"]}
    for s2, info in manifest["defect_patches"].items():
        reason = info["reason"]
        broken = (
            set() if reason in HARMLESS else {e["patch_id"] for e in manifest["defects"][reason]}
        )
        sides[s2] = (
            info["s2_dir"] is not None and s2 not in broken,
            info["s1_dir"] is not None and info["s1"] not in broken,
        )
    return sides


def pair_splits(manifest: dict) -> dict[str, str | None]:
    """patch id -> split of every row of ``pairs``: a pair with a readable side has a row, and
    a split only when its S2 side is readable (and the lists give it one)."""
    pairs = _pairs(manifest)
    return {
        s2: SPLIT_NAMES.get(pairs[s2]["split"], pairs[s2]["split"]) if s2_ok else None
        for s2, (s2_ok, s1_ok) in readable_sides(manifest).items()
        if s2_ok or s1_ok
    }


def label_counts(manifest: dict) -> Counter[tuple[str, str | None]]:
    """(19-class label, split) -> patches with a readable S2 side and that label in that split
    (None: in no split, such as the flagged ones of v1)."""
    pairs, splits = _pairs(manifest), pair_splits(manifest)
    return Counter(
        (label, splits[s2])
        for s2, (s2_ok, _) in readable_sides(manifest).items()
        if s2_ok
        for label in pairs[s2]["labels19"]
    )


def quarantine(root: Path, manifest: dict) -> set[tuple[str, str]]:
    """(reason, patch id, or the path of a file outside patch folders) of every quarantine row:
    the planted defects, and the partner complaint of each pair with one readable side."""
    rows = {
        (reason, entry["patch_id"] or str(root / entry["path"]))
        for reason, entries in manifest["defects"].items()
        for entry in entries
    }
    pairs = _pairs(manifest)
    for s2, (s2_ok, s1_ok) in readable_sides(manifest).items():
        if s1_ok and not s2_ok:
            rows.add(("missing_s2_partner", pairs[s2]["s1"]))
        if s2_ok and not s1_ok:
            rows.add(("missing_s1_partner", s2))
    return rows


def table_rows(root: Path, manifest: dict) -> dict[str, int]:
    """Rows of ``pairs``, ``labels`` (long form, both nomenclatures for v1, the 19 classes for
    v2), ``quarantine`` and ``patch_metadata`` (a row for each patch the lists name)."""
    pairs = _pairs(manifest)
    per_pair = ("labels19", "labels43") if manifest["flavor"] == "v1" else ("labels19",)
    readable_s2 = [s2 for s2, (s2_ok, _) in readable_sides(manifest).items() if s2_ok]
    listed = [
        p for p in pairs.values() if p["split"] or p["snow"] or p["cloud"] or p["no_19_labels"]
    ]
    return {
        "pairs": len(pair_splits(manifest)),
        "labels": sum(len(pairs[s2][k]) for s2 in readable_s2 for k in per_pair),
        "quarantine": len(quarantine(root, manifest)),
        "patch_metadata": len(listed),
    }


def band_bytes(manifest: dict) -> int:
    """Bytes of all band columns of ``pairs`` after an ingest of a v1 archive (raw bands of
    each readable side)."""
    if manifest["flavor"] != "v1":
        raise ValueError("v2 pairs also hold reference maps")
    s2, s1 = (sum(b.nbytes for b in bands) for bands in (S2_BANDS, S1_BANDS))
    return sum(s2 * a + s1 * b for a, b in readable_sides(manifest).values())
