"""The one definition of the bands of BigEarthNet patches: order, resolution, size and dtype."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Band:
    """One raster band of a patch as the archive stores it."""

    name: str
    resolution_m: int
    size: int  # pixels per side at native resolution
    dtype: str  # numpy dtype name; stored little-endian

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) at native resolution."""
        return (self.size, self.size)

    @property
    def nbytes(self) -> int:
        """Size in bytes of the raw band."""
        return self.size * self.size * np.dtype(self.dtype).itemsize

    @cached_property  # looked up three times per band decoded
    def numpy_dtype(self) -> np.dtype:
        """Explicitly little-endian numpy dtype, as stored in the tables."""
        return np.dtype(self.dtype).newbyteorder("<")


# Canonical Sentinel-2 order (no B10). Sorting file names would put B8A last: never sort.
S2_BANDS: tuple[Band, ...] = (
    Band("B01", 60, 20, "uint16"),
    Band("B02", 10, 120, "uint16"),
    Band("B03", 10, 120, "uint16"),
    Band("B04", 10, 120, "uint16"),
    Band("B05", 20, 60, "uint16"),
    Band("B06", 20, 60, "uint16"),
    Band("B07", 20, 60, "uint16"),
    Band("B08", 10, 120, "uint16"),
    Band("B8A", 20, 60, "uint16"),
    Band("B09", 60, 20, "uint16"),
    Band("B11", 20, 60, "uint16"),
    Band("B12", 20, 60, "uint16"),
)
# The 10-band S2 set of the BigEarthNet papers (drops the 60 m atmospheric bands B01, B09).
S2_10_BANDS: tuple[Band, ...] = tuple(b for b in S2_BANDS if b.resolution_m != 60)
S1_BANDS: tuple[Band, ...] = (Band("VV", 10, 120, "float32"), Band("VH", 10, 120, "float32"))
REFERENCE_MAP = Band("reference_map", 10, 120, "uint16")

ALL_BANDS: dict[str, Band] = {b.name: b for b in (*S2_BANDS, *S1_BANDS, REFERENCE_MAP)}
PATCH_SIZE_M = 1200  # every patch covers 1200 m x 1200 m


def band(name: str) -> Band:
    """Look a band up by its name (``B8A``, ``VV``, ``reference_map``...)."""
    try:
        return ALL_BANDS[name]
    except KeyError:
        raise KeyError(f"unknown band {name!r}; known: {', '.join(ALL_BANDS)}") from None


def decode_band(name: str, raw: bytes) -> np.ndarray:
    """Turn a band's stored bytes back into its native-resolution array."""
    b = band(name)
    if len(raw) != b.nbytes:
        raise ValueError(f"band {name}: {len(raw)} bytes, expected {b.nbytes}")
    return np.frombuffer(raw, dtype=b.numpy_dtype).reshape(b.shape)


def encode_band(name: str, array: np.ndarray) -> bytes:
    """Turn a native-resolution array into the bytes stored in the tables (checked)."""
    b = band(name)
    if array.shape != b.shape:
        raise ValueError(f"band {name}: shape {array.shape}, expected {b.shape}")
    if array.dtype.kind != b.numpy_dtype.kind or array.dtype.itemsize != b.numpy_dtype.itemsize:
        raise ValueError(f"band {name}: dtype {array.dtype}, expected {b.dtype}")
    return np.ascontiguousarray(array, dtype=b.numpy_dtype).tobytes()


# Official per-band [mean, std] over raw values (S2 reflectance x10000, S1 dB), from the
# BigEarthNet band_stats (v1 S2 and S1 separately; v2 over its official train split).
BAND_STATS: dict[str, dict[str, tuple[float, float]]] = {
    "v1": {
        "B01": (340.76769064, 554.81258967),
        "B02": (429.9430203, 572.41639287),
        "B03": (614.21682446, 582.87945694),
        "B04": (590.23569706, 675.88746967),
        "B05": (950.68368468, 729.89827633),
        "B06": (1792.46290469, 1096.01480586),
        "B07": (2075.46795189, 1273.45393088),
        "B08": (2218.94553375, 1365.45589904),
        "B8A": (2266.46036911, 1356.13789355),
        "B09": (2246.0605464, 1302.3292881),
        "B11": (1594.42694882, 1079.19066363),
        "B12": (1009.32729131, 818.86747235),
        "VV": (-12.619993741972035, 5.115911777546365),
        "VH": (-19.29044597721542, 5.464428464912864),
    },
    "v2": {
        "B01": (361.0767822265625, 575.0687255859375),
        "B02": (438.3720703125, 607.02685546875),
        "B03": (614.0556640625, 603.2968139648438),
        "B04": (588.4096069335938, 684.56884765625),
        "B05": (942.8433227539062, 738.4326782226562),
        "B06": (1769.931640625, 1100.4560546875),
        "B07": (2049.551513671875, 1275.805419921875),
        "B08": (2193.2919921875, 1369.3717041015625),
        "B8A": (2235.556640625, 1356.5440673828125),
        "B09": (2241.455322265625, 1316.393310546875),
        "B11": (1568.226806640625, 1070.1612548828125),
        "B12": (997.7324829101562, 813.5276489257812),
        "VV": (-12.643863677978516, 5.133493900299072),
        "VH": (-19.352558135986328, 5.590505599975586),
    },
}

# Input band sets of the models: name → bands in channel order.
MODALITIES: dict[str, tuple[Band, ...]] = {
    "s1": S1_BANDS,
    "s2-rgb": (ALL_BANDS["B04"], ALL_BANDS["B03"], ALL_BANDS["B02"]),  # the papers' RGB rows
    "s2": S2_10_BANDS,  # the papers' 10 S2 bands
    "s2-12": S2_BANDS,
    "s1s2": (*S2_10_BANDS, *S1_BANDS),  # BigEarthNet-MM: 10 S2 + VV, VH
    "s1s2-12": (*S2_BANDS, *S1_BANDS),
}
