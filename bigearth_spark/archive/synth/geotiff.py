"""Single-band GeoTIFFs written byte by byte as GDAL writes them (no GDAL), and the WKT of the
v1 JSON files."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

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
_STRIP_OFFSETS, _STRIP_BYTE_COUNTS, _TIEPOINT = 273, 279, 33922
# libtiff writes the out-of-line strip byte counts, then the strip offsets, then the other
# out-of-line values in tag order
_VALUE_ORDER = {_STRIP_BYTE_COUNTS: 0, _STRIP_OFFSETS: 1}

Tag = tuple[int, int, object]  # (tag, TIFF type, values: a tuple, or bytes for ASCII)


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
    tags = _tag_table(
        rows, cols, np.dtype(dtype), rps, counts, pixel_m, epsg, nodata, deflate, gdal3
    )
    return _serialise(tags, counts)


def _geokeys(epsg: int) -> tuple[tuple[int, ...], bytes]:
    """(GeoKeyDirectory, GeoAsciiParams citation) of WGS 84 / UTM zone north ``epsg``."""
    zone = epsg - 32600
    if not 1 <= zone <= 60:
        raise ValueError(f"not a WGS 84 / UTM north EPSG code: {epsg}")
    citation = f"WGS 84 / UTM zone {zone}N|WGS 84|\0".encode("ascii")
    n = len(citation) - 8
    keys = (  # (key, location, count, value or offset)
        (1, 1, 0, 7),  # GeoKeyDirectory version 1.1.0, 7 keys
        (1024, 0, 1, 1),  # GTModelType: projected
        (1025, 0, 1, 1),  # GTRasterType: pixel is area
        (1026, 34737, n, 0),  # GTCitation: in GeoAsciiParams
        (2049, 34737, 7, n),  # GeogCitation: in GeoAsciiParams
        (2054, 0, 1, 9102),  # GeogAngularUnits: degree
        (3072, 0, 1, epsg),  # ProjectedCSType
        (3076, 0, 1, 9001),  # ProjLinearUnits: metre
    )
    return tuple(v for key in keys for v in key), citation


def _tag_table(
    rows: int,
    cols: int,
    dt: np.dtype,
    rps: int,
    counts: tuple[int, ...],
    pixel_m: float,
    epsg: int,
    nodata: int | None,
    deflate: bool,
    gdal3: bool,
) -> list[Tag]:
    """The IFD's tags in order; the strip offsets' values (None here) follow from the layout."""
    geokeys, citation = _geokeys(epsg)
    # libtiff (GDAL 3) writes several small uncompressed byte counts as SHORT, one as LONG
    short = gdal3 and not deflate and len(counts) > 1 and max(counts) < 65536
    tags: list[Tag] = [
        (256, _SHORT, (cols,)),
        (257, _SHORT, (rows,)),
        (258, _SHORT, (dt.itemsize * 8,)),
        (259, _SHORT, (8 if deflate else 1,)),
        (262, _SHORT, (1,)),
        (_STRIP_OFFSETS, _LONG, None),
        (277, _SHORT, (1,)),
        (278, _SHORT, (rps,)),
        (_STRIP_BYTE_COUNTS, _SHORT if short else _LONG, counts),
        (284, _SHORT, (1,)),
    ]
    if deflate and gdal3:
        tags.append((317, _SHORT, (1,)))
    tags += [
        (339, _SHORT, (_SAMPLE_FORMAT[dt.kind],)),
        (33550, _DOUBLE, (pixel_m, pixel_m, 0.0)),
        (_TIEPOINT, _DOUBLE, (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)),  # x, y patched in by the caller
        (34735, _SHORT, geokeys),
        (34737, _ASCII, citation),
    ]
    if nodata is not None:
        tags.append((42113, _ASCII, f"{nodata}\0".encode("ascii")))
    return tags


def _payload(typ: int, values: object) -> bytes:
    """The little-endian bytes of a tag's values."""
    if typ == _ASCII:
        return values  # type: ignore[return-value]
    vals = tuple(values)  # type: ignore[arg-type]
    return struct.pack(f"<{len(vals)}{_TYPE_FMT[typ]}", *vals)


def _value_positions(payloads: dict[int, bytes], start: int) -> tuple[dict[int, int], int]:
    """(offset of each value that does not fit in its IFD entry, end of those values): laid out
    from ``start`` in libtiff's order, each padded to an even size."""
    at: dict[int, int] = {}
    pos = start
    for tag in sorted(payloads, key=lambda t: _VALUE_ORDER.get(t, 2)):  # stable: tag order
        size = len(payloads[tag])
        if size > 4:
            at[tag] = pos
            pos += size + (size & 1)
    return at, pos


def _ifd_entry(tag: int, typ: int, data: bytes, at: int | None) -> bytes:
    """One 12-byte IFD entry: the value inline, or the offset ``at`` of the value."""
    count = len(data) if typ == _ASCII else len(data) // struct.calcsize(_TYPE_FMT[typ])
    field_bytes = data.ljust(4, b"\0") if at is None else struct.pack("<I", at)
    return struct.pack("<HHI", tag, typ, count) + field_bytes


def _serialise(tags: list[Tag], counts: tuple[int, ...]) -> tuple[bytes, int]:
    """(header bytes up to the first strip, offset of the tiepoint's x, y doubles in it) of a
    little-endian TIFF whose one IFD holds ``tags``, the strips of ``counts`` bytes after it."""
    ifd_end = 8 + 2 + 12 * len(tags) + 4
    payloads = {tag: _payload(typ, values) for tag, typ, values in tags if tag != _STRIP_OFFSETS}
    payloads[_STRIP_OFFSETS] = bytes(4 * len(counts))  # sized now, filled once the layout is known
    at, data_start = _value_positions(payloads, ifd_end)
    offsets = tuple(data_start + sum(counts[:i]) for i in range(len(counts)))
    payloads[_STRIP_OFFSETS] = _payload(_LONG, offsets)
    entries = b"".join(_ifd_entry(tag, typ, payloads[tag], at.get(tag)) for tag, typ, _ in tags)
    values = b"".join(payloads[tag] + b"\0" * (len(payloads[tag]) & 1) for tag in at)
    out = b"II*\0" + struct.pack("<IH", 8, len(tags)) + entries + b"\0\0\0\0" + values
    if len(out) != data_start:
        raise AssertionError("TIFF header layout")
    return out, at[_TIEPOINT] + 24
