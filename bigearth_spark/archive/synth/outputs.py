"""The archive-wide outputs: the v1 official lists, the v2 metadata parquets and the manifest."""

from __future__ import annotations

import bz2
import json
from collections.abc import Sequence
from pathlib import Path

from bigearth_spark.archive.labels import NAMES_43, to_19
from bigearth_spark.archive.layout import (
    V2_FLAGGED_METADATA,
    V2_METADATA,
    V2_REF_DIR,
    V2_S1_DIR,
    V2_S2_DIR,
)

from .layout import Patch
from .roots import (
    MANIFEST_NAME,
    V1_LISTS,
    V1_S1_ROOT,
    V1_S2_EXTRA_ROOT,
    V1_S2_ROOT,
    V1_SPLITS,
    split_names,
)
from .writer import Writer


def write_lists(w: Writer, good: list[Patch], bad: list[Patch]) -> None:
    """Write the official lists of the flavour: v1 split, cloud, snow and no-19 CSVs; v2 metadata
    parquets (recommended and flagged patches). Defect pairs with a split are listed too."""
    if w.flavor == "v1":
        _write_v1_lists(w, good, [p for p in bad if p.split])
    else:
        _write_v2_metadata(w, good + bad)


def _write_v1_lists(w: Writer, good: list[Patch], bad_listed: list[Patch]) -> None:
    listed = good + bad_listed
    for s in V1_SPLITS:
        names = [p.v1_name for p in listed if p.split == s]
        w.put(w.path(V1_LISTS, f"{s}.csv.bz2"), _bz2_list(names))
    cloudy = [p.v1_name for p in good if p.cloud]
    w.put(w.path(V1_LISTS, "patches_with_cloud_and_shadow.csv.bz2"), _bz2_list(cloudy))
    snowy = [p.v1_name for p in good if p.snow]
    w.put(w.path(V1_LISTS, "patches_with_seasonal_snow.csv.bz2"), _bz2_list(snowy))
    # the official no-19 list has LF line ends (the others CRLF)
    no19 = [p.v1_name for p in good if p.no19]
    w.put(w.path(V1_LISTS, "patches_with_no_19_class_targets.csv.bz2"), _bz2_list(no19, "\n"))


def _write_v2_metadata(w: Writer, patches: list[Patch]) -> None:
    rows = [_meta_row(p) for p in patches if p.split]
    is_flagged = [r["contains_seasonal_snow"] or r["contains_cloud_or_shadow"] for r in rows]
    recommended_rows = [r for r, f in zip(rows, is_flagged, strict=True) if not f]
    flagged_rows = [r for r, f in zip(rows, is_flagged, strict=True) if f]
    _write_parquet(w.out / V2_METADATA, recommended_rows)
    _write_parquet(w.out / V2_FLAGGED_METADATA, flagged_rows)


def _bz2_list(names: Sequence[str], eol: str = "\r\n") -> bytes:
    """An official-style list: one S2 name a line, no header, compressed with bzip2."""
    return bz2.compress("".join(n + eol for n in names).encode("ascii"), 9)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    """A v2 metadata parquet with the official schema (column names, types and order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("patch_id", pa.string()),
            ("labels", pa.list_(pa.field("element", pa.string()))),
            ("split", pa.string()),
            ("country", pa.string()),
            ("s1_name", pa.string()),
            ("s2v1_name", pa.string()),
            ("contains_seasonal_snow", pa.bool_()),
            ("contains_cloud_or_shadow", pa.bool_()),
        ]
    )
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["patch_id"]), schema=schema)
    pq.write_table(table, path, compression="zstd", store_schema=False)


def _meta_row(p: Patch) -> dict:
    """One row of a v2 metadata parquet."""
    return {
        "patch_id": p.v2_id,
        "labels": sorted(to_19([NAMES_43[i] for i in p.labels43])),  # official: alphabetical
        "split": p.split,
        "country": p.product.country,
        "s1_name": p.s1_name,
        "s2v1_name": p.v1_name,
        "contains_seasonal_snow": p.snow,
        "contains_cloud_or_shadow": p.cloud,
    }


def write_manifest(
    w: Writer, pairs: int, good: list[Patch], bad: list[Patch], log: dict[str, list[dict]]
) -> dict:
    """Build the manifest (see :func:`~bigearth_spark.archive.synth.write_archive`), write it to
    ``synth_manifest.json`` at the archive root and return it."""
    manifest = _manifest(w, pairs, good, bad, log)
    w.put(w.path(MANIFEST_NAME), (json.dumps(manifest, indent=1) + "\n").encode("ascii"))
    return manifest


def _patch_info(w: Writer, p: Patch) -> dict:
    """Manifest entry of one pair (keyed by its S2 id)."""
    labels43 = [NAMES_43[i] for i in p.labels43]
    info = {
        "s1": p.s1_name,
        "labels43": labels43,  # v1: as in the JSONs (43-class index order)
        "labels19": to_19(labels43),  # 19-class index order (v2 parquet: alphabetical)
        "split": p.split,  # v1: train|val|test|None (in no list); v2: train|validation|test
        "snow": p.snow,
        "cloud": p.cloud,
        "no_19_labels": p.no19,
        "s2v1_name": p.v1_name,
        "tile_product": p.product.name,
        "tile": p.product.tile,
        "country": p.product.country,
        "epsg": p.epsg,
        "ulx": p.ulx,
        "uly": p.uly,
        "s2_dir": w.rel(w.s2_dir(p)) if p.s2_exists else None,
        "s1_dir": w.rel(w.s1_dir(p)) if p.s1_exists else None,
    }
    if w.flavor == "v2":
        info["reference_map"] = w.rel(w.refmap_path(p)) if p.s2_exists else None
    return info


def _roots(flavor: str, with_defects: bool) -> dict[str, str]:
    """Manifest ``roots``: role -> folder or file relative to the archive root."""
    if flavor == "v1":
        roots = {"s2": V1_S2_ROOT, "s1": V1_S1_ROOT, "lists": V1_LISTS}
        if with_defects:
            roots["s2_extra"] = V1_S2_EXTRA_ROOT
        return roots
    return {
        "s2": V2_S2_DIR,
        "s1": V2_S1_DIR,
        "reference_maps": V2_REF_DIR,
        "metadata": V2_METADATA,
        "metadata_flagged": V2_FLAGGED_METADATA,
    }


def _manifest(
    w: Writer, pairs: int, good: list[Patch], bad: list[Patch], log: dict[str, list[dict]]
) -> dict:
    patches = {w.s2_id(p): _patch_info(w, p) for p in sorted(good, key=w.s2_id)}
    counts = {s: sum(1 for v in patches.values() if v["split"] == s) for s in split_names(w.flavor)}
    counts.update(
        snow=sum(p.snow for p in good),
        cloud=sum(p.cloud for p in good),
        no_19=sum(p.no19 for p in good),
        defects=sum(len(v) for v in log.values()),
    )
    defect_patches = {w.s2_id(p): {**_patch_info(w, p), "reason": p.defect} for p in bad}
    return {
        "format": "bigearth_spark.synth/1",
        "flavor": w.flavor,
        "seed": w.seed,
        "pairs": pairs,
        "roots": _roots(w.flavor, bool(bad)),
        "s2_patches": list(patches),
        "s1_patches": sorted(v["s1"] for v in patches.values()),
        "pairs_s2_to_s1": {k: v["s1"] for k, v in patches.items()},
        "patches": patches,
        "counts": counts,
        "defects": log,
        "defect_patches": defect_patches,
    }
