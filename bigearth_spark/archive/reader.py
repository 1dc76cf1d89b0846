"""Read one BigEarthNet patch folder into native-resolution arrays and metadata.

Spark executors call this for every patch of the archives, so it lists the folder once (or takes
its names from a listing made before: an object store's flat listing), reads each file once
(local paths or URIs, see :mod:`bigearth_spark.storage`, or bytes fetched ahead) and decodes the
archive's tifs without rasterio (see :mod:`.tiff`). Every way a folder can be broken raises
:class:`PatchError` with a short reason code, so that jobs can count and quarantine bad patches
instead of failing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from bigearth_spark import storage

from .bands import PATCH_SIZE_M, REFERENCE_MAP, S1_BANDS, S2_BANDS, Band
from .labels import UnknownLabelError, sort_labels
from .names import BadNameError, PatchName, is_v1_s2, parse_s1, parse_v1_s2, parse_v2_s2
from .tiff import GeoBand, MultiSampleError, TiffError, decode_tiff

EMPTY_FOLDER = "empty_folder"  # no folder, or no file of the patch in it (strays only)
MISSING_BAND = "missing_band"  # some of the band tifs are missing
CORRUPT_TIF = "corrupt_tif"  # a band tif cannot be read
WRONG_SHAPE = "wrong_shape"  # a band is not band.shape
WRONG_DTYPE = "wrong_dtype"  # a band is not band.dtype
MISSING_JSON = "missing_json"  # v1 folder without <patch>_labels_metadata.json
MALFORMED_JSON = "malformed_json"  # unparsable JSON, missing or ill-typed fields
UNKNOWN_LABEL = "unknown_label"  # a JSON label outside the 43-class nomenclature
INCONSISTENT_GEO = "inconsistent_geo"  # EPSG, corner or pixel size disagree (bands, JSON)
BAD_NAME = "bad_name"  # the folder name is not a patch name of that type
MULTI_SAMPLE = "multi_sample"  # a band tif with more than one sample per pixel
READ_ERROR = "read_error"  # an I/O or storage error (transient: retried, then re-read later)
UNREADABLE = "unreadable"  # an unforeseen exception: not a verified defect, re-read later
REASONS = (
    EMPTY_FOLDER,
    MISSING_BAND,
    CORRUPT_TIF,
    WRONG_SHAPE,
    WRONG_DTYPE,
    MISSING_JSON,
    MALFORMED_JSON,
    UNKNOWN_LABEL,
    INCONSISTENT_GEO,
    BAD_NAME,
    MULTI_SAMPLE,
    READ_ERROR,
    UNREADABLE,
)
# retried within the run that meets them (OSError and its subclasses: pyarrow's storage errors,
# timeouts, permissions, EIO)
TRANSIENT_REASONS = frozenset({READ_ERROR})
# not a verified defect of the data: the side is read again by the next run; every other reason
# is permanent (the side is not read again until its folder changes id or the lake forgets it)
RETRIED_LATER = frozenset({READ_ERROR, UNREADABLE})
FOLDER_TYPES = ("v1_s2", "v1_s1", "v2_s2", "v2_s1", "v2_reference_map")
Read = Callable[[str], bytes]  # a file's path or URI → its content

_GEO_TOLERANCE_M = 1e-3  # corners and pixel sizes are whole metres in the archives
_TILE_IN_PRODUCT = re.compile(r"_T(\d{2}[A-Z]{3})_")  # MGRS tile in an L1C .SAFE name
# S2 "2017-06-17 11:33:21", S1 "2017-06-13T16:50:43" (checked, then read by fromisoformat)
_JSON_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


class PatchError(ValueError):
    """A patch folder that cannot be read.

    ``reason`` is one of :data:`REASONS`; ``path`` is the folder, or the file at fault.
    """

    def __init__(self, reason: str, path: str, detail: str) -> None:
        super().__init__(f"{reason}: {path}: {detail}")
        self.reason = reason
        self.path = path
        self.detail = detail

    def __reduce__(self) -> tuple[type[PatchError], tuple[str, str, str]]:
        return (PatchError, (self.reason, self.path, self.detail))


@dataclass
class PatchRecord:
    """One patch: its bands at native resolution (read-only arrays) and its metadata."""

    patch_id: str
    side: str  # "s2" | "s1" | "reference_map"
    archive: str  # "v1" | "v2"
    path: str
    bands: dict[str, np.ndarray]  # canonical band order (bands.py)
    epsg: int
    ulx: float
    uly: float
    lrx: float
    lry: float
    acquired: datetime | None  # None for reference maps (not an acquisition)
    tile: str | None
    labels43: list[str] | None = None  # v1 only, in 43-class nomenclature order
    source_product: str | None = None  # v1: S2 tile_source, S1 scene_source
    corresponding_s2_patch: str | None = None  # v1 S1 only
    stray_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Layout:
    side: str
    archive: str
    bands: tuple[Band, ...]
    parse_name: Callable[[str], PatchName]
    has_json: bool


_LAYOUTS = {
    "v1_s2": _Layout("s2", "v1", S2_BANDS, parse_v1_s2, True),
    "v1_s1": _Layout("s1", "v1", S1_BANDS, parse_s1, True),
    "v2_s2": _Layout("s2", "v2", S2_BANDS, parse_v2_s2, False),
    "v2_s1": _Layout("s1", "v2", S1_BANDS, parse_s1, False),
    "v2_reference_map": _Layout("reference_map", "v2", (REFERENCE_MAP,), parse_v2_s2, False),
}


def _layout(folder_type: str) -> _Layout:
    if folder_type not in _LAYOUTS:
        known = ", ".join(FOLDER_TYPES)
        raise ValueError(f"unknown folder type {folder_type!r}; known: {known}")
    return _LAYOUTS[folder_type]


def patch_files(folder_type: str, patch_id: str) -> list[str]:
    """The names of the files a patch folder of ``folder_type`` holds: its band tifs in
    canonical order, then (v1) its ``labels_metadata.json``."""
    layout = _layout(folder_type)
    tifs = [f"{patch_id}_{b.name}.tif" for b in layout.bands]
    return [*tifs, f"{patch_id}_labels_metadata.json"] if layout.has_json else tifs


def read_patch(
    folder: str | os.PathLike[str],
    folder_type: str,
    names: set[str] | None = None,
    read: Read = storage.read_bytes,
) -> PatchRecord:
    """Read a patch folder (a path or URI) of ``folder_type`` (one of :data:`FOLDER_TYPES`); raises
    :class:`PatchError`. ``names``: the folder's entries when a listing made before gives them
    (None: the folder is listed); ``read``: how a file's bytes are read (bytes fetched ahead)."""
    return _read(storage.normalize(os.fspath(folder)), folder_type, names, read)


def _read(folder: str, folder_type: str, names: set[str] | None, read: Read) -> PatchRecord:
    """Read and validate one folder of ``folder_type``."""
    layout = _layout(folder_type)
    patch_id = storage.basename(folder)
    try:
        name = layout.parse_name(patch_id)
    except BadNameError as e:
        raise PatchError(BAD_NAME, folder, str(e)) from None
    files = patch_files(folder_type, patch_id)
    tifs = dict(zip(files[: len(layout.bands)], layout.bands, strict=True))
    json_file = files[-1] if layout.has_json else None
    expected = set(files)
    present = _list(folder) if names is None else names
    if expected.isdisjoint(present):
        raise PatchError(EMPTY_FOLDER, folder, "no file of the patch in the folder")
    missing = [b.name for f, b in tifs.items() if f not in present]
    if missing:
        raise PatchError(MISSING_BAND, folder, f"missing band(s) {', '.join(missing)}")
    if json_file and json_file not in present:
        raise PatchError(MISSING_JSON, folder, f"no {json_file}")

    geo = {b.name: _read_band(storage.join(folder, f), b, read) for f, b in tifs.items()}
    epsg, (ulx, uly, lrx, lry) = _check_geo(folder, layout.bands, geo)
    record = PatchRecord(
        patch_id=patch_id,
        side=layout.side,
        archive=layout.archive,
        path=folder,
        bands={n: g.array for n, g in geo.items()},
        epsg=epsg,
        ulx=ulx,
        uly=uly,
        lrx=lrx,
        lry=lry,
        acquired=None if layout.side == "reference_map" else name.acquired,
        tile=name.tile,
        stray_files=sorted(storage.join(folder, f) for f in present - expected),
    )
    if json_file:
        corners = _apply_v1_json(record, storage.join(folder, json_file), read)
        tif_corners = (ulx, uly, lrx, lry)
        if any(abs(a - b) > _GEO_TOLERANCE_M for a, b in zip(corners, tif_corners, strict=True)):
            detail = f"JSON corners {corners} != tif corners {tif_corners}"
            raise PatchError(INCONSISTENT_GEO, folder, detail)
    return record


def _list(folder: str) -> set[str]:
    """Names in the folder (one directory listing); a storage error is :data:`READ_ERROR`."""
    try:
        return storage.list_names(folder)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise PatchError(EMPTY_FOLDER, folder, f"no such folder ({e.strerror})") from None
    except OSError as e:  # EIO, permissions, an object store's throttling or timeout
        raise PatchError(READ_ERROR, folder, f"listing failed: {type(e).__name__}: {e}") from None


def _read_band(path: str, band: Band, read: Read) -> GeoBand:
    """Read one band's tif and check its shape and dtype."""
    try:
        geo = decode_tiff(read(path), path)
    except MultiSampleError as e:
        raise PatchError(MULTI_SAMPLE, path, str(e)) from None
    except (FileNotFoundError, IsADirectoryError, TiffError) as e:
        raise PatchError(CORRUPT_TIF, path, str(e)) from None
    except OSError as e:
        raise PatchError(READ_ERROR, path, f"{type(e).__name__}: {e}") from None
    if geo.array.shape != band.shape:
        raise PatchError(WRONG_SHAPE, path, f"shape {geo.array.shape}, expected {band.shape}")
    if geo.array.dtype != np.dtype(band.dtype):
        raise PatchError(WRONG_DTYPE, path, f"dtype {geo.array.dtype}, expected {band.dtype}")
    return geo


def _check_geo(
    folder: str, bands: tuple[Band, ...], geo: dict[str, GeoBand]
) -> tuple[int, tuple[float, float, float, float]]:
    """EPSG and corners (ulx, uly, lrx, lry) of the patch, checked across all bands."""
    ref = geo[min(bands, key=lambda b: b.resolution_m).name]  # the first 10 m band
    epsg, ulx, uly = ref.epsg, ref.transform[0], ref.transform[3]
    if epsg is None:
        raise PatchError(INCONSISTENT_GEO, folder, "no EPSG code")
    for b in bands:
        problem = _geo_problem(geo[b.name], epsg, ulx, uly, PATCH_SIZE_M / b.size)
        if problem:
            raise PatchError(INCONSISTENT_GEO, folder, f"{b.name}: {problem}")
    return epsg, (ulx, uly, ulx + PATCH_SIZE_M, uly - PATCH_SIZE_M)


def _geo_problem(g: GeoBand, epsg: int, ulx: float, uly: float, pixel: float) -> str | None:
    """What is wrong with a band's georeferencing, or None."""
    x0, xres, xrot, y0, yrot, yres = g.transform
    if g.epsg != epsg:
        return f"EPSG {g.epsg} != {epsg}"
    if abs(x0 - ulx) > _GEO_TOLERANCE_M or abs(y0 - uly) > _GEO_TOLERANCE_M:
        return f"upper-left corner ({x0}, {y0}) != ({ulx}, {uly})"
    if abs(xres - pixel) > _GEO_TOLERANCE_M or abs(yres + pixel) > _GEO_TOLERANCE_M:
        return f"pixel size ({xres}, {yres}) != ({pixel}, {-pixel})"
    if xrot or yrot:
        return f"rotated transform {g.transform}"
    return None


def _apply_v1_json(record: PatchRecord, path: str, read: Read) -> tuple[float, float, float, float]:
    """Fill ``record`` from a v1 ``labels_metadata.json``; return the JSON's corners."""
    try:
        doc = json.loads(read(path))
        coords = doc["coordinates"]
        lry = coords["lry"] if "lry" in coords else coords["lly"]  # S1 JSONs say "lly"
        corners = (float(coords["ulx"]), float(coords["uly"]), float(coords["lrx"]), float(lry))
        when = _text(doc, "acquisition_date" if record.side == "s2" else "acquisition_time")
        if not _JSON_TIME.fullmatch(when):
            raise ValueError(f"acquisition time {when!r} is not YYYY-MM-DD HH:MM:SS")
        record.acquired = datetime.fromisoformat(when)
        labels = doc["labels"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise TypeError(f"labels is not a list of names: {labels!r}")
        if record.side == "s2":
            record.source_product = _text(doc, "tile_source")
            tile = _TILE_IN_PRODUCT.search(record.source_product)
            if tile is None:
                raise ValueError(f"no MGRS tile in tile_source {record.source_product!r}")
            record.tile = tile[1]
        else:
            record.source_product = _text(doc, "scene_source")
            record.corresponding_s2_patch = _text(doc, "corresponding_s2_patch")
            if not is_v1_s2(record.corresponding_s2_patch):
                raise ValueError(f"bad corresponding_s2_patch {record.corresponding_s2_patch!r}")
    except (FileNotFoundError, KeyError, TypeError, ValueError) as e:
        raise PatchError(MALFORMED_JSON, path, f"{type(e).__name__}: {e}") from None
    except OSError as e:
        raise PatchError(READ_ERROR, path, f"{type(e).__name__}: {e}") from None
    try:
        record.labels43 = sort_labels(labels, "43")
    except UnknownLabelError as e:
        raise PatchError(UNKNOWN_LABEL, path, str(e)) from None
    return corners


def _text(doc: dict, key: str) -> str:
    """A string field of a JSON document."""
    value = doc[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string: {value!r}")
    return value
