"""Fast reader of single-band GeoTIFFs: the hot path of the archive ingest.

The archive's tifs are small, single-sample, uncompressed, strip-organised GeoTIFFs. For those,
:func:`read_tiff` reads the file once (:func:`decode_tiff` decodes bytes already read), parses
the header and the first IFD with :mod:`struct` and wraps the pixel bytes with
:func:`numpy.frombuffer` (no copy). A file whose size, header and IFD entries (and strip
offsets) equal those of a file read before reuses that file's checked layout, and only its
georeferencing values are read: 16-28 µs a file instead of 50-58. Everything else (compressed,
tiled, multi-sample, BigTIFF, unusual geo tags...) goes through :func:`read_tiff_rasterio`, the
general path, which gives the same :class:`GeoBand`. Arrays are read-only in both paths.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bigearth_spark import storage


class TiffError(ValueError):
    """A file that is not a readable TIFF: truncated, corrupt or not a TIFF at all."""


@dataclass(frozen=True)
class GeoBand:
    """The first band of a GeoTIFF with its georeferencing."""

    array: np.ndarray  # (rows, cols), the file's sample type in native byte order, read-only
    epsg: int | None
    transform: tuple[float, float, float, float, float, float]  # GDAL order (Affine.to_gdal())
    nodata: float | None
    compression: str  # "none", "deflate", "lzw"... (GDAL's names, lower case)


class MultiSampleError(TiffError):
    """A TIFF with more than one sample per pixel where a single-band file belongs."""


class _Unsupported(Exception):
    """The fast path does not handle this file: the general path must read it."""


# TIFF field type -> (struct code, size in bytes), for the classic types the fast path decodes
_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 6: ("b", 1), 8: ("h", 2)}
_TYPES |= {9: ("i", 4), 11: ("f", 4), 12: ("d", 8)}
_NO_TYPE = ("", 0)
_ENTRY = {bo: struct.Struct(bo + "HHI4s") for bo in "<>"}  # one IFD entry
_OFFSET = {bo: struct.Struct(bo + "I") for bo in "<>"}
# (byte order, SampleFormat, BitsPerSample) -> numpy dtype
_CODES = {(1, 8): "u1", (1, 16): "u2", (2, 16): "i2", (3, 32): "f4"}
_DTYPES = {(bo, *k): np.dtype(bo + code) for k, code in _CODES.items() for bo in "<>"}

_WIDTH, _LENGTH, _BITS, _COMPRESSION, _ORIENTATION = 256, 257, 258, 259, 274
_STRIP_OFFSETS, _SAMPLES, _ROWS_PER_STRIP, _STRIP_BYTES, _SAMPLE_FORMAT = 273, 277, 278, 279, 339
_TILE_TAGS = frozenset({322, 323, 324, 325})
_PIXEL_SCALE, _TIEPOINT, _GEOKEYS, _NODATA = 33550, 33922, 34735, 42113
_WANTED = frozenset(
    {_WIDTH, _LENGTH, _BITS, _COMPRESSION, _ORIENTATION, _STRIP_OFFSETS, _SAMPLES}
    | {_ROWS_PER_STRIP, _STRIP_BYTES, _SAMPLE_FORMAT, _PIXEL_SCALE, _TIEPOINT, _GEOKEYS, _NODATA}
    | _TILE_TAGS
)
_REQUIRED = frozenset({_WIDTH, _LENGTH, _STRIP_OFFSETS, _STRIP_BYTES})
_REQUIRED |= {_PIXEL_SCALE, _TIEPOINT, _GEOKEYS}
# GeoKeys: GTModelType, GTRasterType, GeographicType, ProjectedCSType, VerticalCSType
_MODEL, _RASTER_TYPE, _GEOGRAPHIC, _PROJECTED, _VERTICAL = 1024, 1025, 2048, 3072, 4096
_USER_DEFINED = 32767


def read_tiff(path: str | Path) -> GeoBand:
    """Read the first band of a GeoTIFF (a path or URI, see :mod:`bigearth_spark.storage`) and
    its georeferencing.

    Raises :class:`TiffError` for a truncated, corrupt or non-TIFF file, and ``OSError`` when the
    file cannot be read.
    """
    return decode_tiff(storage.read_bytes(os.fspath(path)), os.fspath(path))


def decode_tiff(data: bytes, name: str) -> GeoBand:
    """Decode the first band of the GeoTIFF file content ``data`` (``name`` is for messages).

    Archive-format files take the fast path (no copy); anything else falls back to rasterio
    (from memory) with the same result.
    """
    try:
        return _read_fast(data)
    except MultiSampleError as e:
        raise MultiSampleError(f"{name}: {e}") from None
    except TiffError as e:
        raise TiffError(f"{name}: corrupt TIFF: {e}") from None
    except (_Unsupported, struct.error, LookupError, TypeError, ArithmeticError):
        return read_tiff_rasterio(name, data)  # not the archive's layout, or odd: GDAL decides


def read_tiff_rasterio(path: str | Path, data: bytes | None = None) -> GeoBand:
    """The general path of :func:`read_tiff`: read any GDAL-readable raster with rasterio, from
    ``data`` when given (the content of ``path``), else from ``path``."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with (
            rasterio.MemoryFile(data) if data is not None else nullcontext() as memory,
            memory.open() if memory is not None else rasterio.open(path) as src,
        ):
            if src.count != 1:
                raise MultiSampleError(f"{path}: {src.count} bands (samples per pixel), expected 1")
            array = src.read(1)
            epsg = src.crs.to_epsg() if src.crs else None
            transform = tuple(float(v) for v in src.transform.to_gdal())
            compression = src.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION", "NONE").lower()
            nodata = src.nodata
    except RasterioError as e:
        gdal_message = f" ({e.__cause__})" if e.__cause__ else ""
        raise TiffError(f"{path}: unreadable TIFF: {e}{gdal_message}") from e
    array.setflags(write=False)
    return GeoBand(array, epsg, transform, nodata, compression)  # type: ignore[arg-type]


def _ifd_end(data: bytes) -> tuple[str, int, int]:
    """(byte order, offset of the first IFD, end of its entries) of a classic TIFF."""
    if len(data) < 8:
        raise TiffError(f"{len(data)} bytes, too short for a TIFF header")
    bo = {b"II": "<", b"MM": ">"}.get(data[:2])
    if bo is None:
        raise TiffError("not a TIFF (no II/MM byte-order mark)")
    magic, ifd = struct.unpack_from(bo + "HI", data, 2)
    if magic == 43:
        raise _Unsupported("BigTIFF")
    if magic != 42:
        raise TiffError(f"not a TIFF (magic number {magic})")
    if ifd + 2 > len(data):
        raise TiffError(f"first IFD at byte {ifd}, past the end of the file ({len(data)} bytes)")
    (n,) = struct.unpack_from(bo + "H", data, ifd)
    end = ifd + 2 + 12 * n
    if end > len(data):
        raise TiffError(f"IFD at {ifd} with {n} entries runs past the end of the file")
    return bo, ifd, end


def _parse_ifd(data: bytes) -> tuple[str, dict[int, tuple], dict[int, tuple[int, struct.Struct]]]:
    """Byte order, the wanted tags of the first IFD (each as a tuple of values), and where the
    values of the tags stored outside the IFD's entries are (offset, their struct)."""
    bo, ifd, end = _ifd_end(data)
    tags: dict[int, tuple] = {}
    outside: dict[int, tuple[int, struct.Struct]] = {}
    for tag, typ, count, raw in _ENTRY[bo].iter_unpack(data[ifd + 2 : end]):
        if tag not in _WANTED:
            continue
        code, size = _TYPES.get(typ, _NO_TYPE)
        if not code:
            raise _Unsupported(f"tag {tag} has field type {typ}")
        if size * count <= 4:
            tags[tag] = struct.unpack_from(f"{bo}{count}{code}", raw)
            continue
        (offset,) = _OFFSET[bo].unpack(raw)
        if offset + size * count > len(data):
            raise TiffError(f"tag {tag} points past the end of the file")
        outside[tag] = (offset, struct.Struct(f"{bo}{count}{code}"))
        tags[tag] = outside[tag][1].unpack_from(data, offset)
    return bo, tags, outside


@functools.lru_cache(maxsize=256)
def _epsg(keys: tuple[int, ...]) -> int:
    """EPSG code of a GeoKeyDirectory holding a plain EPSG CRS; anything else is unsupported."""
    nkeys = keys[3] if len(keys) >= 4 else 0
    entries = keys[4 : 4 + 4 * nkeys]
    if nkeys == 0 or len(entries) != 4 * nkeys:
        raise _Unsupported("short GeoKeyDirectory")
    geo = {entries[i]: entries[i + 3] for i in range(0, len(entries), 4) if entries[i + 1] == 0}
    if geo.get(_RASTER_TYPE, 1) != 1 or _VERTICAL in geo:
        raise _Unsupported("PixelIsPoint or vertical CRS")
    code = {1: geo.get(_PROJECTED), 2: geo.get(_GEOGRAPHIC)}.get(geo.get(_MODEL, 0))
    if not isinstance(code, int) or not 0 < code < _USER_DEFINED:
        raise _Unsupported("no EPSG code in the GeoKeys")
    return code


@functools.lru_cache(maxsize=256)
def _nodata(tag: tuple | None, dtype: np.dtype) -> float | None:
    """GDAL_NODATA (ASCII) as GDAL reports it; values GDAL would adjust are unsupported."""
    if tag is None:
        return None
    text = tag[0].split(b"\0", 1)[0] if isinstance(tag[0], bytes) else b"_"
    try:
        value = float(b"_" if b"_" in text else text)  # strtod does not read "1_0"
    except ValueError:
        raise _Unsupported("unparsable GDAL_NODATA") from None
    if dtype.kind == "f":
        try:  # GDAL stores a float32 band's nodata as a float32
            exact = math.isnan(value) or struct.unpack("f", struct.pack("f", value))[0] == value
        except OverflowError:
            exact = False
    else:  # rasterio reports no nodata when out of the integer range
        exact = np.iinfo(dtype).min <= value <= np.iinfo(dtype).max
    if not exact:
        raise _Unsupported("nodata not representable in the band's type")
    return value


_GEO_TAGS = (_PIXEL_SCALE, _TIEPOINT, _GEOKEYS, _NODATA)  # read from each file, never cached
_LAYOUT_CACHE = 256  # layouts kept: an archive has a few (one per band size, byte order, writer)


@dataclass(frozen=True)
class _Layout:
    """What a file's header and IFD entries decide, all checked: the pixels' type and place;
    the values that differ between files of one layout (georeferencing) are read each time."""

    dtype: np.dtype
    rows: int
    cols: int
    strips: tuple[tuple[int, int], ...]  # (offset, bytes) of each strip's pixels
    contiguous: bool  # each strip starts where the one before ends: the pixels are one slice
    geo_inline: dict[int, tuple]  # georeferencing tags held in the entries: their values
    geo_outside: dict[int, tuple[int, struct.Struct]]  # the others: where their values are
    outside: tuple[tuple[int, bytes], ...]  # other values outside the entries, as read

    def fits(self, data: bytes) -> bool:
        """Whether ``data`` stores the same values outside its IFD entries (strip offsets and
        byte counts) as the file this layout was read from."""
        return all(data[o : o + len(raw)] == raw for o, raw in self.outside)

    def geo_tags(self, data: bytes) -> dict[int, tuple]:
        """The georeferencing tags of ``data``."""
        tags = dict(self.geo_inline)
        tags.update((t, st.unpack_from(data, o)) for t, (o, st) in self.geo_outside.items())
        return tags

    def array(self, data: bytes) -> np.ndarray:
        """The band's pixels in ``data`` (no copy when the strips are contiguous)."""
        rows, cols, dtype = self.rows, self.cols, self.dtype
        if self.contiguous:
            array = np.frombuffer(data, dtype, rows * cols, self.strips[0][0]).reshape(rows, cols)
        else:
            pixels = b"".join(data[o : o + n] for o, n in self.strips)
            array = np.frombuffer(pixels, dtype).reshape(rows, cols)
        if not dtype.isnative:
            array = array.astype(dtype.newbyteorder("="))
            array.setflags(write=False)
        return array


_layouts: dict[tuple[int, bytes], _Layout] = {}


def _layout(data: bytes) -> tuple[_Layout, dict[int, tuple]]:
    """The layout of an archive-format GeoTIFF and its georeferencing tags; raises
    ``_Unsupported`` otherwise. Files whose size, header and IFD entries equal those of a file
    read before reuse its checked layout (the ingest reads millions of files of a few
    layouts)."""
    key = (len(data), data[: _ifd_end(data)[2]])
    known = _layouts.get(key)
    if known is not None and known.fits(data):
        return known, known.geo_tags(data)
    bo, tags, outside = _parse_ifd(data)
    get = tags.get
    if not _TILE_TAGS.isdisjoint(tags) or not _REQUIRED.issubset(tags):
        raise _Unsupported("tiled or missing tags")
    samples = get(_SAMPLES, (1,))[0]
    if samples != 1:
        raise MultiSampleError(f"{samples} samples per pixel, expected 1")
    if (get(_COMPRESSION, (1,))[0], get(_ORIENTATION, (1,))[0]) != (1, 1):
        raise _Unsupported("compressed or reoriented")
    dtype = _DTYPES.get((bo, get(_SAMPLE_FORMAT, (1,))[0], get(_BITS, (1,))[0]))
    if dtype is None:
        raise _Unsupported("sample type")
    cols, rows = tags[_WIDTH][0], tags[_LENGTH][0]
    offsets, counts = tags[_STRIP_OFFSETS], tags[_STRIP_BYTES]
    rows_per_strip = min(get(_ROWS_PER_STRIP, (rows,))[0], rows)
    if min(cols, rows, rows_per_strip) < 1:
        raise _Unsupported("empty image")
    row_bytes = cols * dtype.itemsize
    if rows * row_bytes > len(data):
        raise TiffError(f"truncated: {rows}x{cols} pixels need more than {len(data)} bytes")
    sizes = [min(rows_per_strip, rows - r) * row_bytes for r in range(0, rows, rows_per_strip)]
    if len(offsets) != len(sizes) or len(counts) != len(sizes):
        raise _Unsupported("strip count")
    if any(c < s for c, s in zip(counts, sizes, strict=True)):
        raise _Unsupported("short or sparse strips")
    end = max(o + s for o, s in zip(offsets, sizes, strict=True))
    if end > len(data):
        raise TiffError(f"truncated: pixel data ends at byte {end}, file has {len(data)} bytes")
    layout = _Layout(
        dtype,
        rows,
        cols,
        tuple(zip(offsets, sizes, strict=True)),
        all(offsets[i] + sizes[i] == offsets[i + 1] for i in range(len(sizes) - 1)),
        {t: tags[t] for t in _GEO_TAGS if t in tags and t not in outside},
        {t: outside[t] for t in _GEO_TAGS if t in outside},
        tuple((o, data[o : o + st.size]) for t, (o, st) in outside.items() if t not in _GEO_TAGS),
    )
    if len(_layouts) >= _LAYOUT_CACHE:
        _layouts.clear()
    _layouts[key] = layout
    return layout, layout.geo_tags(data)


def _read_fast(data: bytes) -> GeoBand:
    """Decode an archive-format GeoTIFF held in ``data``; raises ``_Unsupported`` otherwise."""
    layout, geo = _layout(data)
    scale, tie = geo[_PIXEL_SCALE], geo[_TIEPOINT]
    if len(scale) < 2 or len(tie) != 6 or scale[0] <= 0 or scale[1] <= 0:
        raise _Unsupported("GCPs or unusual pixel scale")
    sx, sy = scale[0], scale[1]
    transform = (tie[3] - tie[0] * sx, sx, 0.0, tie[4] - tie[1] * -sy, 0.0, -sy)
    epsg, nodata = _epsg(geo[_GEOKEYS]), _nodata(geo.get(_NODATA), layout.dtype)
    return GeoBand(layout.array(data), epsg, transform, nodata, "none")
