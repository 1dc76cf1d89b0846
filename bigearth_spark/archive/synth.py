"""Deterministic generator of synthetic BigEarthNet archives (v1.0 and v2.0) in the exact formats.

Used by tests, the demo and the benchmarks. :func:`write_archive` writes one archive flavour:

* ``"v1"``: ``BigEarthNet-v1.0/<s2>/<s2>_<BAND>.tif`` + ``<s2>_labels_metadata.json``,
  ``BigEarthNet-S1-v1.0/<s1>/<s1>_{VV,VH}.tif`` + JSON, and the official lists in ``lists/``
  (``train/val/test.csv.bz2``, cloud, snow and no-19-class lists);
* ``"v2"``: ``BigEarthNet-S2/<tile product>/<patch_id>/...``, ``BigEarthNet-S1/<scene>/<s1>/...``,
  ``Reference_Maps/<tile product>/<patch_id>/<patch_id>_reference_map.tif``, ``metadata.parquet``
  and ``metadata_for_patches_with_snow_cloud_or_shadow.parquet``;

plus ``synth_manifest.json`` (see :func:`write_archive`). The GeoTIFFs are written byte by byte
here (no GDAL): v1 files reproduce the layout of the real archive's files exactly (same header,
tags and strips as the real sample patch), v2 files the layout GDAL 3 writes for the same profile
(uncompressed strips with ``nodata 0``; DEFLATE for the reference maps). The same ``seed`` gives
the same bytes, whatever the output folder.

Pixels depend on the labels so that a small CNN can learn them: each of the 43 classes has a fixed
spectral signature (:data:`SIGNATURES_S2`, :data:`SIGNATURES_S1`, independent of the seed); a
patch is split into one region per label and each region is filled with its class's signature
plus smooth illumination and pixel noise, at each band's native resolution.
"""

from __future__ import annotations

import bz2
import json
import math
import os
import shutil
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from .bands import PATCH_SIZE_M, REFERENCE_MAP, S1_BANDS, S2_BANDS, Band
from .labels import CLASSES_43, NAMES_43, to_19
from .names import v2_s1_scene_folder, v2_s2_tile_folder

__all__ = [
    "DEFECTS_V1",
    "DEFECTS_V2",
    "LABEL_FREQUENCIES",
    "MANIFEST_NAME",
    "SIGNATURES_S1",
    "SIGNATURES_S2",
    "geotiff_bytes",
    "projection_wkt",
    "sample_labels43",
    "write_archive",
]

MANIFEST_NAME = "synth_manifest.json"
_WORKERS = 8  # threads writing pairs: file creation dominates on slow disks
V1_S2_ROOT, V1_S1_ROOT, V1_S2_EXTRA_ROOT = (
    "BigEarthNet-v1.0",
    "BigEarthNet-S1-v1.0",
    "BigEarthNet-v1.0-extra",
)
V1_LISTS = "lists"
V2_S2_ROOT, V2_S1_ROOT, V2_REFMAP_ROOT = "BigEarthNet-S2", "BigEarthNet-S1", "Reference_Maps"
V2_METADATA = "metadata.parquet"
V2_METADATA_FLAGGED = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
V1_SPLITS = ("train", "val", "test")
V2_SPLITS = ("train", "validation", "test")

# Reason codes of the injected defects (one or more bad inputs of each, per flavour).
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

# --------------------------------------------------------------------------------------------
# Labels: approximate number of v1 patches (of 590,326) carrying each of the 43 classes.
# --------------------------------------------------------------------------------------------
_FREQ_BY_NAME = {
    "Continuous urban fabric": 11_000,
    "Discontinuous urban fabric": 69_000,
    "Industrial or commercial units": 12_000,
    "Road and rail networks and associated land": 3_400,
    "Port areas": 500,
    "Airports": 1_000,
    "Mineral extraction sites": 4_600,
    "Dump sites": 1_000,
    "Construction sites": 1_200,
    "Green urban areas": 1_800,
    "Sport and leisure facilities": 5_000,
    "Non-irrigated arable land": 196_000,
    "Permanently irrigated land": 13_000,
    "Rice fields": 3_800,
    "Vineyards": 9_500,
    "Fruit trees and berry plantations": 5_000,
    "Olive groves": 12_000,
    "Pastures": 103_000,
    "Annual crops associated with permanent crops": 7_000,
    "Complex cultivation patterns": 107_000,
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (
        147_000
    ),
    "Agro-forestry areas": 30_000,
    "Broad-leaved forest": 151_000,
    "Coniferous forest": 211_000,
    "Mixed forest": 217_000,
    "Natural grassland": 12_000,
    "Moors and heathland": 6_000,
    "Sclerophyllous vegetation": 11_000,
    "Transitional woodland/shrub": 173_000,
    "Beaches, dunes, sands": 1_500,
    "Bare rock": 3_300,
    "Sparsely vegetated areas": 1_600,
    "Burnt areas": 300,
    "Inland marshes": 6_000,
    "Peatbogs": 23_000,
    "Salt marshes": 1_600,
    "Salines": 400,
    "Intertidal flats": 1_000,
    "Water courses": 10_000,
    "Water bodies": 83_000,
    "Coastal lagoons": 1_500,
    "Estuaries": 1_100,
    "Sea and ocean": 81_000,
}
LABEL_FREQUENCIES: tuple[int, ...] = tuple(_FREQ_BY_NAME[n] for n in NAMES_43)
_LABEL_P = np.asarray(LABEL_FREQUENCIES, dtype=np.float64) / sum(LABEL_FREQUENCIES)
_N_LABELS_P = np.array([0.13, 0.25, 0.30, 0.20, 0.12])  # 1..5 labels a patch, mean 2.93
_DROPPED = tuple(c.index for c in CLASSES_43 if c.target19 is None)
_CLC = np.array([c.clc_code for c in CLASSES_43], dtype=np.uint16)


def sample_labels43(rng: np.random.Generator, need_19: bool = True) -> list[int]:
    """Draw one patch's 43-class label indices (sorted): 1-5 labels, classes weighted by their
    frequency in the real archive. ``need_19``: redraw until one label survives the 43→19
    conversion (else the patch would have no 19-class target)."""
    while True:
        k = int(rng.choice(5, p=_N_LABELS_P)) + 1
        idx = sorted(int(i) for i in rng.choice(43, size=k, replace=False, p=_LABEL_P))
        if not need_19 or any(CLASSES_43[i].target19 is not None for i in idx):
            return idx


# --------------------------------------------------------------------------------------------
# Spectral signatures: B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12 (L2A x10000) | VV VH (dB)
# --------------------------------------------------------------------------------------------
_MATERIALS = {
    "urban": (1100, 1200, 1300, 1350, 1550, 1750, 1850, 1950, 2050, 1900, 2300, 1900, -4.0, -11.0),
    "industry": (
        1500,
        1700,
        1850,
        1950,
        2100,
        2200,
        2300,
        2350,
        2400,
        2200,
        2700,
        2400,
        -3.0,
        -10.5,
    ),
    "asphalt": (900, 950, 1000, 1050, 1150, 1300, 1400, 1450, 1500, 1400, 1800, 1600, -9.0, -17.0),
    "soil": (900, 1000, 1300, 1600, 1900, 2100, 2300, 2400, 2550, 2300, 3200, 2600, -12.0, -20.0),
    "bright": (
        1800,
        2100,
        2500,
        2900,
        3100,
        3200,
        3300,
        3350,
        3450,
        3100,
        3900,
        3400,
        -13.0,
        -22.0,
    ),
    "crop": (500, 600, 900, 800, 1400, 2600, 3000, 3200, 3400, 3100, 2200, 1300, -10.5, -17.5),
    "grass": (400, 450, 800, 600, 1200, 2600, 3100, 3300, 3500, 3200, 2100, 1100, -11.0, -18.0),
    "broadleaf": (250, 300, 550, 300, 800, 2700, 3400, 3700, 3900, 3600, 1700, 800, -7.5, -13.0),
    "conifer": (200, 230, 400, 220, 550, 1500, 1850, 2000, 2100, 1950, 950, 420, -7.0, -12.5),
    "shrub": (400, 500, 750, 750, 1100, 1900, 2200, 2400, 2500, 2300, 2100, 1300, -9.0, -15.5),
    "dryshrub": (550, 650, 900, 1050, 1400, 1900, 2150, 2300, 2400, 2250, 2700, 1900, -10.0, -17.0),
    "wetland": (300, 350, 550, 450, 800, 1500, 1800, 1900, 2000, 1850, 1300, 700, -13.0, -20.0),
    "peat": (250, 300, 450, 400, 650, 1200, 1450, 1550, 1650, 1500, 1100, 600, -14.0, -21.0),
    "sand": (2000, 2300, 2700, 3000, 3200, 3300, 3400, 3450, 3550, 3200, 3800, 3300, -16.0, -24.0),
    "rock": (1300, 1450, 1650, 1850, 2000, 2150, 2250, 2300, 2400, 2200, 2900, 2500, -11.5, -19.5),
    "burnt": (450, 500, 550, 650, 750, 900, 1000, 1100, 1150, 1050, 1700, 1500, -12.5, -20.0),
    "water": (450, 420, 400, 250, 200, 150, 130, 110, 100, 80, 50, 35, -20.0, -26.0),
    "turbid": (600, 650, 750, 600, 550, 350, 300, 250, 230, 180, 90, 60, -18.0, -24.5),
    "sea": (400, 380, 330, 180, 140, 100, 90, 80, 70, 60, 40, 30, -22.0, -27.0),
    "salt": (2500, 2800, 3000, 3100, 3150, 3200, 3200, 3200, 3250, 3000, 2800, 2400, -17.0, -25.0),
    "mud": (700, 750, 850, 900, 950, 1000, 1050, 1100, 1150, 1050, 900, 650, -15.0, -22.0),
}
# Each class is a mix of materials (weights), in 43-class index order.
_RECIPES: tuple[dict[str, float], ...] = (
    {"urban": 1.0},  # Continuous urban fabric
    {"urban": 0.6, "grass": 0.4},  # Discontinuous urban fabric
    {"industry": 1.0},  # Industrial or commercial units
    {"asphalt": 0.8, "grass": 0.2},  # Road and rail networks
    {"industry": 0.6, "water": 0.4},  # Port areas
    {"asphalt": 0.5, "grass": 0.5},  # Airports
    {"bright": 0.8, "soil": 0.2},  # Mineral extraction sites
    {"soil": 0.6, "asphalt": 0.4},  # Dump sites
    {"soil": 0.7, "urban": 0.3},  # Construction sites
    {"grass": 0.6, "broadleaf": 0.2, "urban": 0.2},  # Green urban areas
    {"grass": 0.8, "urban": 0.2},  # Sport and leisure facilities
    {"crop": 0.6, "soil": 0.4},  # Non-irrigated arable land
    {"crop": 0.9, "soil": 0.1},  # Permanently irrigated land
    {"crop": 0.5, "water": 0.5},  # Rice fields
    {"shrub": 0.5, "soil": 0.5},  # Vineyards
    {"broadleaf": 0.5, "grass": 0.5},  # Fruit trees and berry plantations
    {"dryshrub": 0.7, "soil": 0.3},  # Olive groves
    {"grass": 1.0},  # Pastures
    {"crop": 0.5, "shrub": 0.5},  # Annual crops associated with permanent crops
    {"crop": 0.5, "grass": 0.3, "soil": 0.2},  # Complex cultivation patterns
    {"crop": 0.5, "broadleaf": 0.3, "grass": 0.2},  # Agriculture with natural vegetation
    {"broadleaf": 0.4, "dryshrub": 0.4, "grass": 0.2},  # Agro-forestry areas
    {"broadleaf": 1.0},  # Broad-leaved forest
    {"conifer": 1.0},  # Coniferous forest
    {"broadleaf": 0.5, "conifer": 0.5},  # Mixed forest
    {"grass": 0.8, "dryshrub": 0.2},  # Natural grassland
    {"shrub": 0.6, "peat": 0.4},  # Moors and heathland
    {"dryshrub": 1.0},  # Sclerophyllous vegetation
    {"shrub": 0.6, "broadleaf": 0.2, "conifer": 0.2},  # Transitional woodland/shrub
    {"sand": 1.0},  # Beaches, dunes, sands
    {"rock": 1.0},  # Bare rock
    {"rock": 0.6, "grass": 0.4},  # Sparsely vegetated areas
    {"burnt": 1.0},  # Burnt areas
    {"wetland": 0.8, "water": 0.2},  # Inland marshes
    {"peat": 1.0},  # Peatbogs
    {"wetland": 0.6, "turbid": 0.4},  # Salt marshes
    {"salt": 0.7, "water": 0.3},  # Salines
    {"mud": 0.7, "turbid": 0.3},  # Intertidal flats
    {"turbid": 1.0},  # Water courses
    {"water": 1.0},  # Water bodies
    {"water": 0.6, "turbid": 0.4},  # Coastal lagoons
    {"turbid": 0.7, "mud": 0.3},  # Estuaries
    {"sea": 1.0},  # Sea and ocean
)


def _signatures() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20190307)  # fixed: signatures are the same for every seed
    s2 = np.zeros((43, 12), dtype=np.float64)
    s1 = np.zeros((43, 2), dtype=np.float64)
    for i, recipe in enumerate(_RECIPES):
        mix = sum(w * np.asarray(_MATERIALS[m], dtype=np.float64) for m, w in recipe.items())
        s2[i] = mix[:12] * np.exp(0.12 * rng.standard_normal(12))  # class-specific tint
        s1[i] = mix[12:] + rng.normal(0.0, 1.0, 2) - (2.0, 2.5)  # to the archive's mean dB
    return np.clip(s2, 20, 9000).astype(np.float32), s1.astype(np.float32)


SIGNATURES_S2, SIGNATURES_S1 = _signatures()  # (43, 12) S2 band means; (43, 2) VV, VH dB
_SNOW = np.array((7000, 7400, 7300, 7200, 7000, 6900, 6800, 6700, 6600, 3000, 600, 500), np.float32)
_CLOUD = np.array(
    (5200, 5400, 5500, 5600, 5700, 5800, 5900, 6000, 6000, 2600, 4600, 3600), np.float32
)

# --------------------------------------------------------------------------------------------
# Tile products (real ones of the archive): where patches come from.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Product:
    sat: str  # S2A | S2B
    sensed: str  # YYYYMMDDTHHMMSS, as in v2 patch ids
    orbit: int  # relative orbit
    tile: str  # MGRS tile
    country: str
    v1_times: tuple[str, ...]  # time fields of the v1 names of its patches (5-digit quirk...)
    y0: int  # northing of the tile's upper-left corner (x0 follows from the MGRS column letter)

    @property
    def name(self) -> str:
        """v2 tile-product folder name."""
        return f"{self.sat}_MSIL2A_{self.sensed}_N9999_R{self.orbit:03d}_T{self.tile}"

    @property
    def zone(self) -> int:
        return int(self.tile[:2])

    @property
    def x0(self) -> int:
        letters = ("STUVWXYZ", "ABCDEFGH", "JKLMNPQR")[self.zone % 3]
        return 100_000 * (letters.index(self.tile[3]) + 1)

    @property
    def when(self) -> datetime:
        return datetime.strptime(self.sensed, "%Y%m%dT%H%M%S")


# The first three are always used: the 5-digit time quirk, the seconds-overflow quirk of the real
# v1 names (``T94160``: 09:41:60), and the tile of the real sample patch.
_CATALOG: tuple[_Product, ...] = (
    _Product("S2A", "20170905T095031", 79, "35WPN", "Finland", ("95032",), 7_400_040),
    _Product("S2B", "20180204T094159", 36, "35VPK", "Finland", ("94160", "94161"), 6_900_040),
    _Product("S2A", "20170617T113321", 80, "29UPU", "Ireland", ("113321",), 5_900_040),
    _Product("S2A", "20170704T112111", 37, "29SND", "Portugal", ("112103", "112111"), 4_300_020),
    _Product("S2B", "20180515T112109", 37, "29SNC", "Portugal", ("112109", "112110"), 4_200_000),
    _Product("S2A", "20180508T104031", 8, "31UGR", "Belgium", ("104031", "104032"), 5_600_040),
    _Product("S2A", "20170818T103021", 108, "32TMT", "Switzerland", ("103021",), 5_200_020),
    _Product("S2A", "20170613T101031", 22, "33UUP", "Austria", ("101031",), 5_400_000),
    _Product("S2B", "20171219T095409", 79, "33TWN", "Austria", ("095409", "95410"), 5_300_040),
    _Product("S2A", "20171002T094031", 36, "34TCR", "Serbia", ("094031", "94032"), 5_000_040),
    _Product("S2B", "20170914T093029", 136, "34TEP", "Serbia", ("093029", "93030"), 4_900_020),
    _Product("S2A", "20170720T100031", 122, "34UDG", "Lithuania", ("100031",), 6_200_040),
    _Product("S2B", "20170924T093019", 136, "35UMB", "Lithuania", ("093019", "93020"), 6_100_020),
    _Product("S2A", "20180228T101021", 22, "34WFS", "Finland", ("101021",), 7_500_000),
    _Product("S2B", "20170716T093039", 136, "36VVR", "Finland", ("093039",), 7_000_040),
    _Product("S2A", "20170613T101031", 22, "34VER", "Finland", ("101031", "101032"), 6_800_040),
)
_GRID = 91  # patches per tile side (a 109.8 km tile / 1.2 km)

# --------------------------------------------------------------------------------------------
# GeoTIFF writing (byte-exact, no GDAL)
# --------------------------------------------------------------------------------------------
_WKT = (
    'PROJCS["WGS 84 / UTM zone {zone}N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
    '6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",'
    '0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]],'
    'PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
    'PARAMETER["central_meridian",{cm}],PARAMETER["scale_factor",0.9996],'
    'PARAMETER["false_easting",500000],PARAMETER["false_northing",0],'
    'UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],'
    'AUTHORITY["EPSG","326{zone:02d}"]]'
)


def projection_wkt(zone: int) -> str:
    """The ``projection`` WKT of the v1 JSON files for WGS 84 / UTM zone ``zone`` N."""
    return _WKT.format(zone=zone, cm=6 * zone - 183)


_SHORT, _LONG, _ASCII, _DOUBLE = 3, 4, 2, 12
_TYPE_FMT = {_SHORT: "H", _LONG: "I", _DOUBLE: "d"}
_SAMPLE_FORMAT = {"u": 1, "i": 2, "f": 3}


def geotiff_bytes(
    array: np.ndarray,
    ulx: float,
    uly: float,
    pixel_m: float,
    epsg: int,
    *,
    nodata: int | None = None,
    deflate: bool = False,
    gdal3: bool = False,
) -> bytes:
    """A single-band GeoTIFF (WGS 84 / UTM north ``epsg``, upper-left corner ``ulx, uly``) laid
    out byte for byte as GDAL writes it.

    ``gdal3=False``: the layout of the real v1 archive files (strip byte counts always LONG);
    ``gdal3=True``: the layout of GDAL 3.x (SHORT byte counts for several uncompressed strips, a
    Predictor tag with DEFLATE), used for v2. Strips of at most 8 KiB of raw data like GDAL's
    default; DEFLATE is zlib level 6 (GDAL's level; its libdeflate may pick other bytes).
    """
    if array.ndim != 2:
        raise ValueError("one band, 2-D")
    rows, cols = array.shape
    dt = array.dtype.newbyteorder("<")
    row_bytes = cols * dt.itemsize
    rps = max(1, min(rows, 8192 // row_bytes))
    raw = np.ascontiguousarray(array, dtype=dt).tobytes()
    if deflate:
        step = rps * row_bytes
        strips = [zlib.compress(raw[i : i + step], 6) for i in range(0, len(raw), step)]
        counts = tuple(len(x) for x in strips)
        raw = b"".join(strips)
    else:
        n_strips = -(-rows // rps)
        counts = tuple(min(rps, rows - i * rps) * row_bytes for i in range(n_strips))
    header, at = _tiff_header(
        rows, cols, dt.str, rps, counts, float(pixel_m), epsg, nodata, deflate, gdal3
    )
    return b"".join((header[:at], struct.pack("<2d", ulx, uly), header[at + 16 :], raw))


@lru_cache(maxsize=512)
def _tiff_header(
    rows: int,
    cols: int,
    dtype: str,
    rps: int,
    counts: tuple[int, ...],
    pixel_m: float,
    epsg: int,
    nodata: int | None,
    deflate: bool,
    gdal3: bool,
) -> tuple[bytes, int]:
    """(header bytes up to the first strip, offset of the tiepoint's x, y doubles in it)."""
    dt = np.dtype(dtype)
    zone = epsg - 32600
    if not 1 <= zone <= 60:
        raise ValueError(f"not a WGS 84 / UTM north EPSG code: {epsg}")
    citation = f"WGS 84 / UTM zone {zone}N|WGS 84|\0".encode("ascii")
    geokeys = (1, 1, 0, 7, 1024, 0, 1, 1, 1025, 0, 1, 1, 1026, 34737, len(citation) - 8, 0,
               2049, 34737, 7, len(citation) - 8, 2054, 0, 1, 9102, 3072, 0, 1, epsg,
               3076, 0, 1, 9001)  # fmt: skip
    # libtiff (GDAL 3) writes several small uncompressed byte counts as SHORT, one as LONG
    short = gdal3 and not deflate and len(counts) > 1 and max(counts) < 65536
    count_type = _SHORT if short else _LONG
    tags: list[tuple[int, int, object]] = [  # (tag, type, values); 273 = strip offsets, below
        (256, _SHORT, (cols,)),
        (257, _SHORT, (rows,)),
        (258, _SHORT, (dt.itemsize * 8,)),
        (259, _SHORT, (8 if deflate else 1,)),
        (262, _SHORT, (1,)),
        (273, _LONG, None),
        (277, _SHORT, (1,)),
        (278, _SHORT, (rps,)),
        (279, count_type, counts),
        (284, _SHORT, (1,)),
    ]
    if deflate and gdal3:
        tags.append((317, _SHORT, (1,)))
    tags += [
        (339, _SHORT, (_SAMPLE_FORMAT[dt.kind],)),
        (33550, _DOUBLE, (pixel_m, pixel_m, 0.0)),
        (33922, _DOUBLE, (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)),  # x, y patched in by the caller
        (34735, _SHORT, geokeys),
        (34737, _ASCII, citation),
    ]
    if nodata is not None:
        tags.append((42113, _ASCII, f"{nodata}\0".encode("ascii")))

    def payload(typ: int, values: object) -> bytes:
        if typ == _ASCII:
            return values  # type: ignore[return-value]
        vals = tuple(values)  # type: ignore[arg-type]
        return struct.pack(f"<{len(vals)}{_TYPE_FMT[typ]}", *vals)

    n = len(tags)
    ifd_end = 8 + 2 + 12 * n + 4
    # out-of-line values: byte counts, offsets, then the others in tag order (as libtiff)
    counts_data = payload(count_type, counts)
    counts_size = len(counts_data) if len(counts_data) > 4 else 0
    offsets_size = 4 * len(counts) if len(counts) > 1 else 0
    pos = ifd_end + counts_size + offsets_size
    extra_at: dict[int, int] = {}
    for tag, typ, values in tags:
        if tag not in (273, 279):
            size = len(payload(typ, values))
            if size > 4:
                extra_at[tag] = pos
                pos += size + (size & 1)
    data_start = pos
    offsets = tuple(data_start + sum(counts[:i]) for i in range(len(counts)))
    out = bytearray(b"II*\0" + struct.pack("<IH", 8, n))
    extra = bytearray(counts_data if counts_size else b"")
    if offsets_size:
        extra += payload(_LONG, offsets)
    for tag, typ, values in tags:
        if tag == 273:
            values = offsets
        data = payload(typ, values)
        count = len(data) if typ == _ASCII else len(data) // struct.calcsize(_TYPE_FMT[typ])
        if len(data) <= 4:
            field_bytes = data.ljust(4, b"\0")
        elif tag == 279:
            field_bytes = struct.pack("<I", ifd_end)
        elif tag == 273:
            field_bytes = struct.pack("<I", ifd_end + counts_size)
        else:
            field_bytes = struct.pack("<I", extra_at[tag])
            extra += data + (b"\0" if len(data) & 1 else b"")
        out += struct.pack("<HHI", tag, typ, count) + field_bytes
    out += b"\0\0\0\0" + extra
    if len(out) != data_start:
        raise AssertionError("TIFF header layout")
    return bytes(out), extra_at[33922] + 24


# --------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------
_SIZE = 120


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] = 1 - frac
    m[np.arange(n_out), i0 + 1] = frac
    return m


_HALF = _SIZE // 2  # regions are drawn on the 20 m grid (CORINE polygons are coarse anyway)
_UP = {(size, n): _interp_matrix(size, n) for size in (_SIZE, _HALF) for n in (4, 6)}
_YY, _XX = np.mgrid[0:_HALF, 0:_HALF].astype(np.float32)
_I10 = [j for j, b in enumerate(S2_BANDS) if b.size == _SIZE]
_I20 = [j for j, b in enumerate(S2_BANDS) if b.size == _HALF]
_I60 = [j for j, b in enumerate(S2_BANDS) if b.size == _SIZE // 6]


def _smooth(rng: np.random.Generator, n: int = 6, size: int = _SIZE) -> np.ndarray:
    """A smooth random field of size x size (bilinear upsampling of n x n white noise)."""
    up = _UP[(size, n)]
    return (up @ rng.standard_normal((n, n)) @ up.T).astype(np.float32)


def _regions(rng: np.random.Generator, k: int) -> np.ndarray:
    """Split the 120x120 patch into k irregular regions (warped weighted Voronoi cells on the 20 m
    grid), each of at least ~300 pixels so that every label shows at 20 m and 60 m too."""
    if k == 1:
        return np.zeros((_SIZE, _SIZE), dtype=np.intp)
    seeds = rng.uniform(6, _HALF - 6, (k, 2)).astype(np.float32)
    weights = rng.uniform(0.7, 1.4, k).astype(np.float32)
    dist = np.empty((k, _HALF, _HALF), dtype=np.float32)
    for i in range(k):
        d = np.hypot(_YY - seeds[i, 0], _XX - seeds[i, 1]) * weights[i]
        dist[i] = d + 7.0 * _smooth(rng, 6, _HALF)
    reg = dist.argmin(axis=0)
    for i in np.argsort(np.bincount(reg.ravel(), minlength=k))[::-1]:
        if np.count_nonzero(reg == i) < 75:
            reg[np.hypot(_YY - seeds[i, 0], _XX - seeds[i, 1]) < 5.3] = i
    if np.bincount(reg.ravel(), minlength=k).min() < 75:  # overlapping seeds: stripes
        reg = np.minimum((_XX * k / _HALF).astype(np.intp), k - 1)
    return reg.repeat(2, axis=0).repeat(2, axis=1)


def _overlay(field: np.ndarray, rng: np.random.Generator, colour: np.ndarray, shadow: bool) -> None:
    """Blend a snow or cloud layer (soft-edged blobs) into the (12, 120, 120) field in place."""
    alpha = np.clip(1.5 * _smooth(rng, 4) + 0.3, 0.0, 1.0)
    if shadow:  # cloud shadow: a darkened, shifted copy of the cloud
        field *= 1 - 0.55 * np.roll(alpha, (14, 18), axis=(0, 1)) * (1 - alpha)
    field *= 1 - alpha
    field += alpha * colour[:, None, None]


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Area average of (bands, n, n) to (bands, n/f, n/f)."""
    out = np.zeros((a.shape[0], a.shape[1] // f, a.shape[2] // f), dtype=np.float32)
    for dy in range(f):
        for dx in range(f):
            out += a[:, dy::f, dx::f]
    out *= 1.0 / (f * f)
    return out


def _noisy_uint16(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x += (0.03 * x + 15.0) * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(np.rint(x), 1, 10000).astype(np.uint16)


def _render(rng: np.random.Generator, labels43: Sequence[int], snow: bool, cloud: bool):
    """(S2 bands at native resolution, S1 VV/VH, reference map of CLC codes) of one patch."""
    lab = np.asarray(labels43, dtype=np.intp)
    reg = _regions(rng, len(lab))
    field = SIGNATURES_S2[lab].T[:, reg]  # (12, 120, 120): each region its class's signature
    field *= 1.0 + 0.06 * _smooth(rng, 4)  # illumination / texture
    if snow:
        _overlay(field, rng, _SNOW, shadow=False)
    if cloud:
        _overlay(field, rng, _CLOUD, shadow=True)
    f20 = _block_mean(field, 2)
    native = {
        10: _noisy_uint16(field[_I10], rng),
        20: _noisy_uint16(f20[_I20], rng),
        60: _noisy_uint16(_block_mean(f20[_I60], 3), rng),
    }
    pos = {10: _I10, 20: _I20, 60: _I60}
    s2 = {
        b.name: native[b.resolution_m][pos[b.resolution_m].index(j)] for j, b in enumerate(S2_BANDS)
    }
    db = SIGNATURES_S1[lab].T[:, reg] + 0.8 * _smooth(rng, 4)  # (2, 120, 120) dB
    db += 1.5 * rng.standard_normal(db.shape, dtype=np.float32)
    s1 = {b.name: db[j] for j, b in enumerate(S1_BANDS)}
    return s2, s1, _CLC[lab][reg]


# --------------------------------------------------------------------------------------------
# Archive layout
# --------------------------------------------------------------------------------------------


@dataclass
class _Scene:
    sat: str  # S1A | S1B
    start: datetime
    orbit: int
    datatake: int
    uid: int

    @property
    def prefix(self) -> str:
        return f"{self.sat}_IW_GRDH_1SDV_{self.start:%Y%m%dT%H%M%S}"

    @property
    def source(self) -> str:
        stop = self.start + timedelta(seconds=25)
        ids = f"{self.orbit:06d}_{self.datatake:06X}_{self.uid:04X}"
        return f"{self.prefix}_{stop:%Y%m%dT%H%M%S}_{ids}"


@dataclass
class _Patch:
    index: int
    product: _Product
    col: int
    row: int
    v1_time: str
    scene: _Scene
    labels43: list[int]
    split: str | None = (
        None  # v1: train|val|test (None: not in the lists); v2: train|validation|test
    )
    snow: bool = False
    cloud: bool = False
    defect: str | None = None
    no19: bool = False
    s2_exists: bool = True
    s1_exists: bool = True

    @property
    def v1_name(self) -> str:
        date = self.product.sensed[:8]
        return f"{self.product.sat}_MSIL2A_{date}T{self.v1_time}_{self.col}_{self.row}"

    @property
    def v2_id(self) -> str:
        return f"{self.product.name}_{self.col:02d}_{self.row:02d}"

    @property
    def s1_name(self) -> str:
        return f"{self.scene.prefix}_{self.product.tile}_{self.col}_{self.row}"

    @property
    def ulx(self) -> int:
        return self.product.x0 + self.col * PATCH_SIZE_M

    @property
    def uly(self) -> int:
        return self.product.y0 - self.row * PATCH_SIZE_M

    @property
    def epsg(self) -> int:
        return 32600 + self.product.zone


def _scenes(rng: np.random.Generator, product: _Product) -> list[_Scene]:
    """1-3 Sentinel-1 scenes acquired within a few days of the S2 product."""
    out = []
    for _ in range(int(rng.integers(1, 4))):
        sat = "S1A" if rng.random() < 0.5 else "S1B"
        hour = int(rng.choice((4, 5, 6, 15, 16, 17, 18)))
        day = product.when.replace(hour=0, minute=0, second=0) + timedelta(
            days=int(rng.integers(-3, 4))
        )
        start = day + timedelta(
            hours=hour, minutes=int(rng.integers(60)), seconds=int(rng.integers(60))
        )
        days = (start - datetime(2017, 6, 17, 6, 47, 24)).total_seconds() / 86400
        orbit = 17070 + round(days * 175 / 12) - (10980 if sat == "S1B" else 0)
        out.append(
            _Scene(
                sat, start, orbit, int(rng.integers(0x10000, 0x30000)), int(rng.integers(0x10000))
            )
        )
    return out


class _Layout:
    """Draws patch positions, names and pairs (unique names, several patches per tile-date)."""

    def __init__(self, rng: np.random.Generator, pairs: int) -> None:
        self.rng = rng
        n_products = min(len(_CATALOG), max(4, math.ceil(pairs / 25)))
        rest = [int(i) for i in rng.permutation(np.arange(3, len(_CATALOG)))]
        self.products = [_CATALOG[i] for i in [0, 1, 2, *rest][:n_products]]
        # the seconds-overflow product is as rare as in the real archive (~2 % of patches)...
        weights = np.array([0.1 if i == 1 else 1.0 for i in range(n_products)])
        self.weights = weights / weights.sum()
        self.forced = [1, 0, 2]  # ...but the first three patches show each quirk once
        self.scenes = {p.name: _scenes(rng, p) for p in self.products}
        self.used_cells: set[tuple[str, int, int]] = set()
        self.used_v1: set[str] = set()
        self.count = 0

    def new_patch(self, labels43: list[int]) -> _Patch:
        capacity = len(self.products) * _GRID * _GRID
        if len(self.used_cells) >= capacity * 0.9:
            raise ValueError(f"too many patches for {len(self.products)} tile products")
        rng = self.rng
        while True:
            if self.count < len(self.forced):
                product = self.products[self.forced[self.count]]
            else:
                product = self.products[int(rng.choice(len(self.products), p=self.weights))]
            col, row = (int(v) for v in rng.integers(0, _GRID, 2))
            v1_time = product.v1_times[int(rng.integers(len(product.v1_times)))]
            scene = self.scenes[product.name][int(rng.integers(len(self.scenes[product.name])))]
            patch = _Patch(self.count, product, col, row, v1_time, scene, labels43)
            if (product.name, col, row) in self.used_cells or patch.v1_name in self.used_v1:
                continue
            self.used_cells.add((product.name, col, row))
            self.used_v1.add(patch.v1_name)
            self.count += 1
            return patch


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


class _Writer:
    """Writes patches; paths are plain strings (``os.path``) for speed."""

    def __init__(self, out: Path, flavor: str, seed: int) -> None:
        self.out = out
        self.root = str(out)
        self.flavor = flavor
        self.seed = seed
        self.gdal3 = flavor == "v2"  # v2 files: GDAL 3 layout, nodata 0
        self.made_dirs: set[str] = set()

    def rel(self, path: str | Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def mkdir(self, d: str) -> None:
        if d not in self.made_dirs:
            os.makedirs(d, exist_ok=True)
            self.made_dirs.add(d)

    def put(self, path: str | Path, data: bytes) -> None:
        self.mkdir(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(data)

    # -- common -------------------------------------------------------------------------------
    def rng(self, patch: _Patch, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, patch.index, stream])

    def tif(self, p: _Patch, arr: np.ndarray, b: Band, **kw) -> bytes:
        pixel = PATCH_SIZE_M / b.size
        return geotiff_bytes(arr, p.ulx, p.uly, pixel, p.epsg, gdal3=self.gdal3, **kw)

    def s2_id(self, p: _Patch) -> str:
        return p.v1_name if self.flavor == "v1" else p.v2_id

    def s2_dir(self, p: _Patch) -> str:
        if self.flavor == "v1":
            return self.path(V1_S2_ROOT, p.v1_name)
        return self.path(V2_S2_ROOT, v2_s2_tile_folder(p.v2_id), p.v2_id)

    def s1_dir(self, p: _Patch) -> str:
        if self.flavor == "v1":
            return self.path(V1_S1_ROOT, p.s1_name)
        return self.path(V2_S1_ROOT, v2_s1_scene_folder(p.s1_name), p.s1_name)

    def band_path(self, p: _Patch, band: str) -> str:
        if band in ("VV", "VH"):
            return os.path.join(self.s1_dir(p), f"{p.s1_name}_{band}.tif")
        return os.path.join(self.s2_dir(p), f"{self.s2_id(p)}_{band}.tif")

    def json_path(self, p: _Patch, s1: bool = False) -> str:
        if s1:
            return os.path.join(self.s1_dir(p), f"{p.s1_name}_labels_metadata.json")
        return os.path.join(self.s2_dir(p), f"{p.v1_name}_labels_metadata.json")

    def refmap_path(self, p: _Patch) -> str:
        folder = self.path(V2_REFMAP_ROOT, v2_s2_tile_folder(p.v2_id), p.v2_id)
        return os.path.join(folder, f"{p.v2_id}_reference_map.tif")

    def write_s2(self, p: _Patch, s2: dict[str, np.ndarray]) -> None:
        self.mkdir(self.s2_dir(p))
        nodata = 0 if self.gdal3 else None
        for b in S2_BANDS:
            with open(self.band_path(p, b.name), "wb") as f:
                f.write(self.tif(p, s2[b.name], b, nodata=nodata))
        if self.flavor == "v1":
            with open(self.json_path(p), "wb") as f:
                f.write(self.s2_json(p).encode("ascii"))

    def write_s1(self, p: _Patch, s1: dict[str, np.ndarray], s2_partner: str | None = None) -> None:
        self.mkdir(self.s1_dir(p))
        for b in S1_BANDS:
            with open(self.band_path(p, b.name), "wb") as f:
                f.write(self.tif(p, s1[b.name], b))
        if self.flavor == "v1":
            with open(self.json_path(p, s1=True), "wb") as f:
                f.write(self.s1_json(p, s2_partner or p.v1_name).encode("ascii"))

    def write_refmap(self, p: _Patch, codes: np.ndarray) -> None:
        data = self.tif(p, codes.astype(np.uint16), REFERENCE_MAP, nodata=0, deflate=True)
        self.put(self.refmap_path(p), data)

    # -- v1 JSON ------------------------------------------------------------------------------
    def s2_json(self, p: _Patch, labels: list[str] | None = None) -> str:
        prod = p.product
        when = prod.when
        discriminator = when - timedelta(seconds=2)
        tile_source = (
            f"{prod.sat}_MSIL1C_{prod.sensed}_N0205_R{prod.orbit:03d}_T{prod.tile}_"
            f"{discriminator:%Y%m%dT%H%M%S}.SAFE"
        )
        doc = {
            "labels": labels if labels is not None else [NAMES_43[i] for i in p.labels43],
            "coordinates": {
                "ulx": p.ulx,
                "uly": p.uly,
                "lrx": p.ulx + PATCH_SIZE_M,
                "lry": p.uly - PATCH_SIZE_M,
            },
            "projection": projection_wkt(prod.zone),
            "tile_source": tile_source,
            "acquisition_date": f"{when:%Y-%m-%d %H:%M:%S}",
        }
        return json.dumps(doc)

    def s1_json(self, p: _Patch, s2_partner: str) -> str:
        doc = {
            "labels": [NAMES_43[i] for i in p.labels43],
            "coordinates": {
                "ulx": p.ulx,
                "uly": p.uly,
                "lrx": p.ulx + PATCH_SIZE_M,
                "lly": p.uly - PATCH_SIZE_M,
            },
            "projection": projection_wkt(p.product.zone),
            "corresponding_s2_patch": s2_partner,
            "scene_source": p.scene.source,
            "acquisition_time": f"{p.scene.start:%Y-%m-%dT%H:%M:%S}",
        }
        return json.dumps(doc)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _counts(n: int) -> tuple[int, int, int]:
    """(snow, cloud, no-19) counts among n good patches: ~10 %, ~2 %, a few."""
    if n < 10:
        return (1 if n >= 4 else 0), (1 if n >= 6 else 0), (1 if n >= 8 else 0)
    return max(1, round(0.10 * n)), max(1, round(0.02 * n)), max(1, min(10, round(n / 400)))


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
    if flavor not in ("v1", "v2"):
        raise ValueError(f"flavor must be 'v1' or 'v2', not {flavor!r}")
    if pairs < 1:
        raise ValueError("pairs must be >= 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng([seed, 0x5EED])
    layout = _Layout(rng, pairs)
    w = _Writer(out, flavor, seed)
    n_snow, n_cloud, n_no19 = _counts(pairs)
    order = [int(i) for i in rng.permutation(pairs)]
    snow_idx = set(order[:n_snow])
    cloud_idx = set(order[n_snow : n_snow + n_cloud])
    no19_idx = set(order[n_snow + n_cloud : n_snow + n_cloud + n_no19]) if flavor == "v1" else set()

    good: list[_Patch] = []
    for i in range(pairs):
        if i in no19_idx:  # only classes that the 19-class nomenclature drops
            k = int(rng.integers(1, 3))
            labels = sorted(int(j) for j in rng.choice(_DROPPED, size=k, replace=False))
        else:
            labels = sample_labels43(rng)
        p = layout.new_patch(labels)
        p.snow, p.cloud, p.no19 = i in snow_idx, i in cloud_idx, i in no19_idx
        good.append(p)

    # splits: ~50/25/25 of the recommended patches. v1: flagged and no-19 patches are in no list
    # (as in the official recommended set); v2: flagged patches have a split too.
    splits = V1_SPLITS if flavor == "v1" else V2_SPLITS
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

    def write_pair(p: _Patch) -> None:
        s2, s1, codes = _render(w.rng(p), p.labels43, p.snow, p.cloud)
        w.write_s2(p, s2)
        w.write_s1(p, s1)
        if flavor == "v2":
            w.write_refmap(p, codes)

    # overlap file creation with rendering (the bytes do not depend on the order)
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for _ in pool.map(write_pair, good):
            pass

    defect_log: dict[str, list[dict]] = {}
    bad: list[_Patch] = _inject_defects(w, layout, rng, defect_log) if defects else []

    if flavor == "v1":
        listed = good + [p for p in bad if p.split]
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
    else:
        rows = [_meta_row(p) for p in good + bad if p.split]
        is_flagged = [r["contains_seasonal_snow"] or r["contains_cloud_or_shadow"] for r in rows]
        recommended_rows = [r for r, f in zip(rows, is_flagged, strict=True) if not f]
        _write_parquet(out / V2_METADATA, recommended_rows)
        _write_parquet(
            out / V2_METADATA_FLAGGED, [r for r, f in zip(rows, is_flagged, strict=True) if f]
        )

    manifest = _manifest(w, pairs, good, bad, defect_log)
    w.put(w.path(MANIFEST_NAME), (json.dumps(manifest, indent=1) + "\n").encode("ascii"))
    return manifest


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


def _meta_row(p: _Patch) -> dict:
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


def _patch_info(w: _Writer, p: _Patch) -> dict:
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


def _manifest(w: _Writer, pairs: int, good: list[_Patch], bad: list[_Patch], log: dict) -> dict:
    if w.flavor == "v1":
        roots = {"s2": V1_S2_ROOT, "s1": V1_S1_ROOT, "lists": V1_LISTS}
        if bad:
            roots["s2_extra"] = V1_S2_EXTRA_ROOT
    else:
        roots = {"s2": V2_S2_ROOT, "s1": V2_S1_ROOT, "reference_maps": V2_REFMAP_ROOT,
                 "metadata": V2_METADATA, "metadata_flagged": V2_METADATA_FLAGGED}  # fmt: skip
    patches = {w.s2_id(p): _patch_info(w, p) for p in sorted(good, key=w.s2_id)}
    splits = V1_SPLITS if w.flavor == "v1" else V2_SPLITS
    counts = {s: sum(1 for v in patches.values() if v["split"] == s) for s in splits}
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
        "roots": roots,
        "s2_patches": list(patches),
        "s1_patches": sorted(v["s1"] for v in patches.values()),
        "pairs_s2_to_s1": {k: v["s1"] for k, v in patches.items()},
        "patches": patches,
        "counts": counts,
        "defects": log,
        "defect_patches": defect_patches,
    }


# --------------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------------


def _inject_defects(
    w: _Writer, layout: _Layout, rng: np.random.Generator, log: dict[str, list[dict]]
) -> list[_Patch]:
    """Write extra pairs, each broken in one way; returns them. Defect pairs that have an S2
    patch are listed (v1 split lists / v2 metadata) like good ones, so that the reason they are
    rejected for is the injected one; the empty folder and the v1 S1 without S2 are in no list."""
    flavor = w.flavor
    made: list[_Patch] = []
    splits = V1_SPLITS if flavor == "v1" else V2_SPLITS
    nodata = 0 if w.gdal3 else None

    def record(reason: str, patch_id: str | None, path: str, detail: str) -> None:
        entry = {"patch_id": patch_id, "path": w.rel(path), "detail": detail}
        log.setdefault(reason, []).append(entry)

    def new(reason: str, *, s2: bool = True, s1: bool = True, listed: bool = True):
        p = layout.new_patch(sample_labels43(rng))
        p.defect = reason
        p.split = splits[int(rng.choice(3, p=(0.5, 0.25, 0.25)))] if listed else None
        p.s2_exists, p.s1_exists = s2, s1
        pix_s2, pix_s1, codes = _render(w.rng(p), p.labels43, False, False)
        if s2:
            w.write_s2(p, pix_s2)
            if flavor == "v2":
                w.write_refmap(p, codes)
        if s1:
            w.write_s1(p, pix_s1)
        made.append(p)
        return p, pix_s2, pix_s1

    def tif(p: _Patch, arr: np.ndarray, pixel_m: float, nodata: int | None) -> bytes:
        return geotiff_bytes(arr, p.ulx, p.uly, pixel_m, p.epsg, nodata=nodata, gdal3=w.gdal3)

    # corrupt_tif: random bytes; and a truncated file (valid header, strips cut short)
    p, _, _ = new("corrupt_tif")
    f = w.band_path(p, "B04")
    size = os.path.getsize(f)
    garbage = np.random.default_rng([w.seed, 0xBAD]).integers(0, 256, size, dtype=np.uint8)
    w.put(f, garbage.tobytes())
    record("corrupt_tif", w.s2_id(p), f, "B04 overwritten with random bytes")
    p, _, _ = new("corrupt_tif")
    f = w.band_path(p, "B08")
    w.put(f, Path(f).read_bytes()[:2000])
    record("corrupt_tif", w.s2_id(p), f, "B08 truncated to 2000 bytes")

    p, _, _ = new("missing_band")
    f = w.band_path(p, "B11")
    os.remove(f)
    record("missing_band", w.s2_id(p), f, "B11 deleted")

    p, pix_s2, _ = new("wrong_shape")
    f = w.band_path(p, "B03")
    w.put(f, tif(p, pix_s2["B03"][:100, :100], 12.0, nodata))
    record("wrong_shape", w.s2_id(p), f, "B03 written 100x100 (expected 120x120)")

    p, pix_s2, _ = new("wrong_dtype")
    f = w.band_path(p, "B05")
    w.put(f, tif(p, pix_s2["B05"].astype(np.float32), 20.0, nodata))
    record("wrong_dtype", w.s2_id(p), f, "B05 written float32 (expected uint16)")
    p, _, pix_s1 = new("wrong_dtype")
    f = w.band_path(p, "VH")
    w.put(f, tif(p, np.rint(pix_s1["VH"]).astype(np.int32), 10.0, None))
    record("wrong_dtype", p.s1_name, f, "VH written int32 (expected float32)")

    if flavor == "v1":
        p, _, _ = new("missing_json")
        f = w.json_path(p)
        os.remove(f)
        record("missing_json", p.v1_name, f, "S2 labels_metadata.json deleted")

        p, _, _ = new("malformed_json")
        f = w.json_path(p)
        text = Path(f).read_bytes()
        w.put(f, text[: len(text) // 2])
        record("malformed_json", p.v1_name, f, "S2 JSON cut in the middle")

        p, _, _ = new("unknown_label")
        f = w.json_path(p)
        labels = [*(NAMES_43[i] for i in p.labels43), UNKNOWN_LABEL_NAME]
        w.put(f, w.s2_json(p, labels).encode("ascii"))
        record("unknown_label", p.v1_name, f, f"S2 JSON label {UNKNOWN_LABEL_NAME!r} not in the 43")

    # missing_s2_partner: an S1 patch whose S2 partner (v1 JSON / v2 metadata) does not exist
    p, _, _ = new("missing_s2_partner", s2=False, listed=flavor == "v2")
    detail = f"S2 partner {w.s2_id(p)} was never written"
    record("missing_s2_partner", p.s1_name, w.s1_dir(p), detail)

    # missing_s1_partner: an S2 patch whose S1 partner folder is absent
    p, _, _ = new("missing_s1_partner", s1=False)
    detail = f"S1 partner {p.s1_name} was never written"
    record("missing_s1_partner", w.s2_id(p), w.s2_dir(p), detail)

    # duplicate_patch_id: the same S2 patch twice (identical copies)
    p, _, _ = new("duplicate_patch_id")
    src = w.s2_dir(p)
    if flavor == "v1":
        dst = w.path(V1_S2_EXTRA_ROOT, p.v1_name)
        detail = f"second copy of {w.rel(src)} in the extra root {V1_S2_EXTRA_ROOT}"
    else:  # copied into another tile-product folder, preferably one sorting after its own
        names = sorted(pr.name for pr in layout.products if pr.name != p.product.name)
        later = [n for n in names if n > p.product.name] or names
        dst = w.path(V2_S2_ROOT, later[0], p.v2_id)
        detail = f"second copy of {w.rel(src)} in another tile-product folder"
    shutil.copytree(src, dst)
    record("duplicate_patch_id", w.s2_id(p), dst, detail)

    # empty_folder: a patch folder with no files (in no list, no partner)
    p, _, _ = new("empty_folder", s2=False, s1=False, listed=False)
    os.makedirs(w.s2_dir(p))
    record("empty_folder", w.s2_id(p), w.s2_dir(p), "patch folder without files")

    # stray_file: a notes.txt inside an otherwise good patch folder, and one at the archive root
    p, _, _ = new("stray_file")
    f = os.path.join(w.s2_dir(p), "notes.txt")
    w.put(f, b"checked by hand, looks fine\n")
    record("stray_file", w.s2_id(p), f, "stray file inside a patch folder")
    f = w.path(V1_S2_ROOT if flavor == "v1" else V2_S2_ROOT, "notes.txt")
    w.put(f, b"download notes: see the archive's README\n")
    record("stray_file", None, f, "stray file at the archive root")
    return made
