"""The one definition of the bands of BigEarthNet patches: order, resolution, size and dtype."""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
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
