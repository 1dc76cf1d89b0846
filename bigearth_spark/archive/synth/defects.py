"""Defect injection: extra pairs, each broken in one way, with the reason codes an ingest should
reject them for."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bigearth_spark.archive.labels import NAMES_43
from bigearth_spark.archive.layout import V2_S2_DIR

from .geotiff import geotiff_bytes
from .layout import Layout, Patch
from .render import render_patch
from .roots import V1_S2_EXTRA_ROOT, V1_S2_ROOT, split_names
from .sampling import sample_labels43
from .writer import Writer

# Reason codes of the injected defects (one or more bad inputs of each, per flavour), in the
# order they are written.
DEFECTS_V1 = (
    "corrupt_tif",
    "missing_band",
    "wrong_shape",
    "wrong_dtype",
    "missing_json",
    "malformed_json",
    "unknown_label",
    "missing_s2_partner",
    "missing_s1_partner",
    "duplicate_patch_id",
    "empty_folder",
    "stray_file",
)
DEFECTS_V2 = tuple(
    r for r in DEFECTS_V1 if r not in ("missing_json", "malformed_json", "unknown_label")
)
UNKNOWN_LABEL_NAME = "Mixed forests"  # a plausible typo of "Mixed forest": not one of the 43

Pixels = dict[str, np.ndarray]


@dataclass
class _Injector:
    """What the defect writers share: the writer, the layout and random stream that draw the
    defect pairs, the log of defects and the pairs made so far."""

    w: Writer
    layout: Layout
    rng: np.random.Generator
    log: dict[str, list[dict]]
    made: list[Patch] = field(default_factory=list)

    @property
    def nodata(self) -> int | None:
        """The nodata of the flavour's S2 bands."""
        return 0 if self.w.gdal3 else None

    def record(self, reason: str, patch_id: str | None, path: str, detail: str) -> None:
        """Log one defect."""
        entry = {"patch_id": patch_id, "path": self.w.rel(path), "detail": detail}
        self.log.setdefault(reason, []).append(entry)

    def new(
        self, reason: str, *, s2: bool = True, s1: bool = True, listed: bool = True
    ) -> tuple[Patch, Pixels, Pixels]:
        """Draw and write a good pair (its S2 and S1 sides where asked) that ``reason`` will
        break; returns it and its S2 and S1 pixels. ``listed``: give it a split."""
        w = self.w
        p = self.layout.new_patch(sample_labels43(self.rng))
        p.defect = reason
        splits = split_names(w.flavor)
        p.split = splits[int(self.rng.choice(3, p=(0.5, 0.25, 0.25)))] if listed else None
        p.s2_exists, p.s1_exists = s2, s1
        pix_s2, pix_s1, codes = render_patch(w.rng(p), p.labels43, False, False)
        if s2:
            w.write_s2(p, pix_s2)
            if w.flavor == "v2":
                w.write_refmap(p, codes)
        if s1:
            w.write_s1(p, pix_s1)
        self.made.append(p)
        return p, pix_s2, pix_s1

    def tif(self, p: Patch, arr: np.ndarray, pixel_m: float, nodata: int | None) -> bytes:
        """GeoTIFF bytes of one band of ``p``, written from ``arr`` as it is."""
        return geotiff_bytes(arr, p.ulx, p.uly, pixel_m, p.epsg, nodata=nodata, gdal3=self.w.gdal3)


def _corrupt_tif(d: _Injector) -> None:
    """Random bytes in place of a band; and a truncated band (valid header, strips cut short)."""
    w = d.w
    p, _, _ = d.new("corrupt_tif")
    f = w.band_path(p, "B04")
    size = os.path.getsize(f)
    garbage = np.random.default_rng([w.seed, 0xBAD]).integers(0, 256, size, dtype=np.uint8)
    w.put(f, garbage.tobytes())
    d.record("corrupt_tif", w.s2_id(p), f, "B04 overwritten with random bytes")
    p, _, _ = d.new("corrupt_tif")
    f = w.band_path(p, "B08")
    w.put(f, Path(f).read_bytes()[:2000])
    d.record("corrupt_tif", w.s2_id(p), f, "B08 truncated to 2000 bytes")


def _missing_band(d: _Injector) -> None:
    """An S2 patch without one of its bands."""
    p, _, _ = d.new("missing_band")
    f = d.w.band_path(p, "B11")
    os.remove(f)
    d.record("missing_band", d.w.s2_id(p), f, "B11 deleted")


def _wrong_shape(d: _Injector) -> None:
    """A 10 m band cropped to 100x100."""
    p, pix_s2, _ = d.new("wrong_shape")
    f = d.w.band_path(p, "B03")
    d.w.put(f, d.tif(p, pix_s2["B03"][:100, :100], 12.0, d.nodata))
    d.record("wrong_shape", d.w.s2_id(p), f, "B03 written 100x100 (expected 120x120)")


def _wrong_dtype(d: _Injector) -> None:
    """An S2 band written as float32, and an S1 band as int32."""
    w = d.w
    p, pix_s2, _ = d.new("wrong_dtype")
    f = w.band_path(p, "B05")
    w.put(f, d.tif(p, pix_s2["B05"].astype(np.float32), 20.0, d.nodata))
    d.record("wrong_dtype", w.s2_id(p), f, "B05 written float32 (expected uint16)")
    p, _, pix_s1 = d.new("wrong_dtype")
    f = w.band_path(p, "VH")
    w.put(f, d.tif(p, np.rint(pix_s1["VH"]).astype(np.int32), 10.0, None))
    d.record("wrong_dtype", p.s1_name, f, "VH written int32 (expected float32)")


def _missing_json(d: _Injector) -> None:
    """A v1 S2 patch without its labels_metadata.json."""
    p, _, _ = d.new("missing_json")
    f = d.w.json_path(p)
    os.remove(f)
    d.record("missing_json", p.v1_name, f, "S2 labels_metadata.json deleted")


def _malformed_json(d: _Injector) -> None:
    """A v1 S2 JSON cut in the middle."""
    p, _, _ = d.new("malformed_json")
    f = d.w.json_path(p)
    text = Path(f).read_bytes()
    d.w.put(f, text[: len(text) // 2])
    d.record("malformed_json", p.v1_name, f, "S2 JSON cut in the middle")


def _unknown_label(d: _Injector) -> None:
    """A v1 S2 JSON with a label that is not one of the 43."""
    p, _, _ = d.new("unknown_label")
    f = d.w.json_path(p)
    labels = [*(NAMES_43[i] for i in p.labels43), UNKNOWN_LABEL_NAME]
    d.w.put(f, d.w.s2_json(p, labels).encode("ascii"))
    d.record("unknown_label", p.v1_name, f, f"S2 JSON label {UNKNOWN_LABEL_NAME!r} not in the 43")


def _missing_s2_partner(d: _Injector) -> None:
    """An S1 patch whose S2 partner (v1 JSON / v2 metadata) does not exist."""
    p, _, _ = d.new("missing_s2_partner", s2=False, listed=d.w.flavor == "v2")
    detail = f"S2 partner {d.w.s2_id(p)} was never written"
    d.record("missing_s2_partner", p.s1_name, d.w.s1_dir(p), detail)


def _missing_s1_partner(d: _Injector) -> None:
    """An S2 patch whose S1 partner folder is absent."""
    p, _, _ = d.new("missing_s1_partner", s1=False)
    detail = f"S1 partner {p.s1_name} was never written"
    d.record("missing_s1_partner", d.w.s2_id(p), d.w.s2_dir(p), detail)


def _duplicate_patch_id(d: _Injector) -> None:
    """The same S2 patch twice (identical copies): v1 in an extra root, v2 in another
    tile-product folder, preferably one sorting after its own."""
    w = d.w
    p, _, _ = d.new("duplicate_patch_id")
    src = w.s2_dir(p)
    if w.flavor == "v1":
        dst = w.path(V1_S2_EXTRA_ROOT, p.v1_name)
        detail = f"second copy of {w.rel(src)} in the extra root {V1_S2_EXTRA_ROOT}"
    else:
        names = sorted(pr.name for pr in d.layout.products if pr.name != p.product.name)
        later = [n for n in names if n > p.product.name] or names
        dst = w.path(V2_S2_DIR, later[0], p.v2_id)
        detail = f"second copy of {w.rel(src)} in another tile-product folder"
    shutil.copytree(src, dst)
    d.record("duplicate_patch_id", w.s2_id(p), dst, detail)


def _empty_folder(d: _Injector) -> None:
    """A patch folder with no files (in no list, no partner)."""
    p, _, _ = d.new("empty_folder", s2=False, s1=False, listed=False)
    os.makedirs(d.w.s2_dir(p))
    d.record("empty_folder", d.w.s2_id(p), d.w.s2_dir(p), "patch folder without files")


def _stray_file(d: _Injector) -> None:
    """A notes.txt inside an otherwise good patch folder, and one at the archive root."""
    w = d.w
    p, _, _ = d.new("stray_file")
    f = os.path.join(w.s2_dir(p), "notes.txt")
    w.put(f, b"checked by hand, looks fine\n")
    d.record("stray_file", w.s2_id(p), f, "stray file inside a patch folder")
    f = w.path(V1_S2_ROOT if w.flavor == "v1" else V2_S2_DIR, "notes.txt")
    w.put(f, b"download notes: see the archive's README\n")
    d.record("stray_file", None, f, "stray file at the archive root")


_WRITERS: dict[str, Callable[[_Injector], None]] = {
    "corrupt_tif": _corrupt_tif,
    "missing_band": _missing_band,
    "wrong_shape": _wrong_shape,
    "wrong_dtype": _wrong_dtype,
    "missing_json": _missing_json,
    "malformed_json": _malformed_json,
    "unknown_label": _unknown_label,
    "missing_s2_partner": _missing_s2_partner,
    "missing_s1_partner": _missing_s1_partner,
    "duplicate_patch_id": _duplicate_patch_id,
    "empty_folder": _empty_folder,
    "stray_file": _stray_file,
}


def inject_defects(
    w: Writer, layout: Layout, rng: np.random.Generator, log: dict[str, list[dict]]
) -> list[Patch]:
    """Write extra pairs, each broken in one way (every reason of the flavour, in the order of
    :data:`DEFECTS_V1` / :data:`DEFECTS_V2`), log them in ``log`` and return them.

    Defect pairs that have an S2 patch are listed (v1 split lists / v2 metadata) like good ones,
    so that the reason they are rejected for is the injected one; the empty folder and the v1 S1
    without S2 are in no list."""
    injector = _Injector(w, layout, rng, log)
    for reason in DEFECTS_V1 if w.flavor == "v1" else DEFECTS_V2:
        _WRITERS[reason](injector)
    return injector.made
