"""The fast GeoTIFF reader against rasterio, bit for bit, on real and written archive tifs."""

from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from bigearth_spark.archive import tiff
from bigearth_spark.archive.tiff import GeoBand, MultiSampleError, TiffError, read_tiff
from tests.conftest import SAMPLES, needs_shared

SAMPLE_TIFS = sorted(SAMPLES.glob("*/*.tif"))
ULX, ULY = 643200.0, 5798040.0  # upper-left corner of the real sample patch


def write_tif(path: Path, array: np.ndarray, **profile: object) -> Path:
    """Write a single-band GeoTIFF with rasterio, by default in the v1 archive format."""
    rows, cols = array.shape
    options: dict = {
        "driver": "GTiff",
        "height": rows,
        "width": cols,
        "count": 1,
        "dtype": array.dtype,
        "crs": "EPSG:32629",
        "transform": from_origin(ULX, ULY, 1200 / cols, 1200 / rows),
    }
    options.update(profile)
    with rasterio.open(path, "w", **options) as dst:
        dst.write(array, 1)
    return path


def rasterio_reference(path: Path) -> GeoBand:
    """What rasterio itself says about a tif (independent of the module under test)."""
    with rasterio.open(path) as src:
        return GeoBand(
            src.read(1),
            src.crs.to_epsg() if src.crs else None,
            src.transform.to_gdal(),
            src.nodata,
            "none" if src.compression is None else src.compression.name,
        )


def assert_same(got: GeoBand, ref: GeoBand) -> None:
    """Bit-exact comparison of two reads of the same tif."""
    assert got.array.dtype == ref.array.dtype
    assert got.array.shape == ref.array.shape
    assert got.array.tobytes() == ref.array.tobytes()
    assert got.epsg == ref.epsg
    assert got.transform == tuple(ref.transform)
    assert all(isinstance(v, float) for v in got.transform)
    assert got.nodata == ref.nodata or (math.isnan(got.nodata) and math.isnan(ref.nodata))
    assert got.compression == ref.compression
    assert not got.array.flags.writeable


@pytest.fixture
def fast_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if read_tiff leaves the fast path."""

    def refuse(path: object, data: bytes | None = None) -> GeoBand:
        raise AssertionError(f"general path used for {path}")

    monkeypatch.setattr(tiff, "read_tiff_rasterio", refuse)


@pytest.fixture
def general_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record the files read_tiff hands to the general path."""
    calls: list[object] = []
    general = tiff.read_tiff_rasterio

    def spy(path: object, data: bytes | None = None) -> GeoBand:
        calls.append(path)
        return general(path, data)

    monkeypatch.setattr(tiff, "read_tiff_rasterio", spy)
    return calls


@needs_shared
def test_samples_present() -> None:
    assert len(SAMPLE_TIFS) == 14


@needs_shared
@pytest.mark.parametrize("path", SAMPLE_TIFS, ids=lambda p: p.name.rsplit("_", 1)[-1])
def test_fast_path_matches_rasterio_on_real_samples(path: Path, fast_only: None) -> None:
    got = read_tiff(path)
    assert_same(got, rasterio_reference(path))
    assert got.epsg == 32629
    assert got.transform[0] == ULX and got.transform[3] == ULY
    assert got.nodata is None
    assert got.array.dtype == (np.float32 if path.stem.endswith(("VV", "VH")) else np.uint16)
    assert got.array.base is not None  # a view of the bytes read, not a copy


def _u16(size: int) -> np.ndarray:
    return np.random.default_rng(size).integers(0, 20000, (size, size), dtype=np.uint16)


FAST_CASES = {
    "s2_10m": (_u16(120), {}),
    "s2_20m": (_u16(60), {}),
    "s2_60m": (_u16(20), {}),
    "v2_s2_nodata0": (_u16(120), {"nodata": 0}),
    "s1_float32": (np.random.default_rng(1).normal(-15, 5, (120, 120)).astype(np.float32), {}),
    "float32_nodata_nan": (np.full((120, 120), np.nan, np.float32), {"nodata": float("nan")}),
    "int16": (np.arange(-7200, 7200, dtype=np.int16).reshape(120, 120), {"nodata": -9999}),
    "uint8": (np.arange(14400).astype(np.uint8).reshape(120, 120), {}),
    "big_endian": (_u16(120), {"ENDIANNESS": "BIG"}),
    "big_endian_float32": (
        np.linspace(-30, 5, 3600, dtype=np.float32).reshape(60, 60),
        {"ENDIANNESS": "BIG"},
    ),
    "one_strip": (_u16(120), {"BLOCKYSIZE": 120}),
    "geographic": (
        _u16(20),
        {"crs": "EPSG:4326", "transform": from_origin(-8.5, 52.3, 1e-3, 1e-3)},
    ),
}
GENERAL_CASES = {
    "reference_map_deflate": (_u16(120), {"compress": "deflate", "nodata": 0}, "deflate"),
    "lzw": (_u16(60), {"compress": "lzw"}, "lzw"),
    "tiled": (_u16(120), {"tiled": True, "blockxsize": 16, "blockysize": 16}, "none"),
    "no_crs": (_u16(20), {"crs": None}, "none"),
}


@pytest.mark.parametrize("case", FAST_CASES)
def test_fast_path_matches_rasterio_on_written_tifs(
    case: str, tmp_path: Path, fast_only: None
) -> None:
    array, profile = FAST_CASES[case]
    path = write_tif(tmp_path / f"{case}.tif", array, **profile)
    got = read_tiff(path)
    assert_same(got, rasterio_reference(path))
    np.testing.assert_array_equal(got.array, array)
    assert got.array.dtype.isnative


@pytest.mark.parametrize("case", GENERAL_CASES)
def test_general_path_gives_the_same_result(
    case: str, tmp_path: Path, general_calls: list[object]
) -> None:
    array, profile, compression = GENERAL_CASES[case]
    path = tmp_path / f"{case}.tif"
    write_tif(path, array, **profile)
    got = read_tiff(path)
    assert general_calls == [str(path)]
    assert_same(got, rasterio_reference(path))
    np.testing.assert_array_equal(got.array, array)
    assert got.compression == compression


@pytest.mark.parametrize(
    "profile",
    [
        {"interleave": "pixel"},
        {"interleave": "band"},
        {"interleave": "band", "compress": "deflate"},
    ],
)
def test_two_samples_per_pixel_are_rejected_on_both_paths(tmp_path: Path, profile: dict) -> None:
    path = tmp_path / "two.tif"
    options = {"crs": "EPSG:32629", "transform": from_origin(ULX, ULY, 10, 10), **profile}
    with rasterio.open(path, "w", "GTiff", 120, 120, count=2, dtype="uint16", **options) as dst:
        dst.write(np.stack([_u16(120), _u16(120)[::-1]]))
    with pytest.raises(MultiSampleError, match=r"2 .*samples per pixel"):
        read_tiff(path)


def test_pixel_is_point_goes_through_rasterio(tmp_path: Path, general_calls: list[object]) -> None:
    path = write_tif(tmp_path / "point.tif", _u16(60))
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(AREA_OR_POINT="Point")
    got = read_tiff(path)
    assert general_calls == [str(path)]
    assert_same(got, rasterio_reference(path))


def handmade_tiff(array: np.ndarray, byteorder: str, rows_per_strip: int, nodata: str) -> bytes:
    """A minimal GeoTIFF written byte by byte, strips stored in reverse order."""
    rows, cols = array.shape
    stored = array.astype(array.dtype.newbyteorder(byteorder))
    strips = [stored[r : r + rows_per_strip].tobytes() for r in range(0, rows, rows_per_strip)]
    pixel = 1200 / rows
    sample_format = {"u": 1, "i": 2, "f": 3}[array.dtype.kind]
    geokeys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32629]
    entries: list[tuple[int, int, list | bytes]] = [  # (tag, field type, values)
        (256, 3, [cols]),
        (257, 3, [rows]),
        (258, 3, [array.dtype.itemsize * 8]),
        (259, 3, [1]),
        (262, 3, [1]),
        (273, 4, [0] * len(strips)),  # StripOffsets, filled in below
        (277, 3, [1]),
        (278, 3, [rows_per_strip]),
        (279, 4, [len(s) for s in strips]),
        (284, 3, [1]),
        (339, 3, [sample_format]),
        (33550, 12, [pixel, pixel, 0.0]),
        (33922, 12, [0.0, 0.0, 0.0, ULX, ULY, 0.0]),
        (34735, 3, geokeys),
        (42113, 2, nodata.encode() + b"\0"),
    ]
    codes = {2: "s", 3: "H", 4: "I", 12: "d"}

    def pack(typ: int, values: list | bytes) -> bytes:
        if typ == 2:
            return struct.pack(f"{byteorder}{len(values)}s", values)
        return struct.pack(f"{byteorder}{len(values)}{codes[typ]}", *values)

    ifd_end = 8 + 2 + 12 * len(entries) + 4
    extra_len = sum(len(pack(t, v)) for _, t, v in entries if len(pack(t, v)) > 4)
    pixel_start = ifd_end + extra_len
    offsets, position = {}, pixel_start
    for i in reversed(range(len(strips))):
        offsets[i] = position
        position += len(strips[i])
    entries[5] = (273, 4, [offsets[i] for i in range(len(strips))])

    head = (b"II" if byteorder == "<" else b"MM") + struct.pack(byteorder + "HI", 42, 8)
    ifd, extra = struct.pack(byteorder + "H", len(entries)), b""
    for tag, typ, values in entries:
        payload = pack(typ, values)
        count = len(values)
        if len(payload) <= 4:
            ifd += struct.pack(byteorder + "HHI", tag, typ, count) + payload.ljust(4, b"\0")
        else:
            offset = ifd_end + len(extra)
            ifd += struct.pack(byteorder + "HHII", tag, typ, count, offset)
            extra += payload
    data = head + ifd + struct.pack(byteorder + "I", 0) + extra
    assert len(data) == pixel_start
    return data + b"".join(reversed(strips))


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "float32"])
def test_handmade_tiffs_both_byte_orders(
    byteorder: str, dtype: str, tmp_path: Path, fast_only: None
) -> None:
    array = (np.arange(60 * 60) % 251 - 100).astype(dtype).reshape(60, 60)
    path = tmp_path / "handmade.tif"
    path.write_bytes(handmade_tiff(array, byteorder, rows_per_strip=7, nodata="7"))
    got = read_tiff(path)
    assert_same(got, rasterio_reference(path))
    np.testing.assert_array_equal(got.array, array)
    assert got.nodata == 7.0
    assert got.transform == (ULX, 20.0, 0.0, ULY, 0.0, -20.0)


NODATA_TEXTS = ["0", "-1", "1.5", "70000", "0.1", "1e39", "nan", "inf", " 5 ", "5abc", "1_0", ""]


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "float32"])
@pytest.mark.parametrize("nodata", NODATA_TEXTS)
def test_nodata_as_gdal_reports_it(dtype: str, nodata: str, tmp_path: Path) -> None:
    """Odd GDAL_NODATA strings: the fast path keeps only those it reads exactly as GDAL."""
    path = tmp_path / "nodata.tif"
    path.write_bytes(handmade_tiff(np.zeros((20, 20), dtype), "<", 20, nodata))
    assert_same(read_tiff(path), rasterio_reference(path))


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _ifd_past_end(data: bytes) -> bytes:
    return data[:4] + struct.pack("<I", len(data) + 100) + data[8:]


def _entry_value_past_end(data: bytes) -> bytes:
    # entry 11 of the archive's IFD is ModelPixelScale (3 doubles, stored out of line)
    position = 8 + 2 + 12 * 11 + 8
    return data[:position] + struct.pack("<I", len(data) - 8) + data[position + 4 :]


CORRUPTIONS = {
    "empty": lambda data: b"",
    "not_a_tiff": lambda data: b"GIF89a" + data[6:],
    "bad_magic": lambda data: data[:2] + b"\x2b\x01" + data[4:],
    "truncated_pixels": _truncate,
    "truncated_in_ifd": lambda data: data[:60],
    "ifd_past_end": _ifd_past_end,
    "tag_value_past_end": _entry_value_past_end,
}


@needs_shared
@pytest.mark.parametrize("damage", CORRUPTIONS)
def test_corrupt_archive_tif_raises_tiff_error(
    damage: str, tmp_path: Path, fast_only: None
) -> None:
    path = tmp_path / "B02.tif"
    path.write_bytes(CORRUPTIONS[damage](next(SAMPLES.glob("S2*/*_B02.tif")).read_bytes()))
    with pytest.raises(TiffError, match=r"B02\.tif"):
        read_tiff(path)


@pytest.mark.parametrize("damage", ["truncated", "zeroed_stream"])
def test_corrupt_compressed_tif_raises_tiff_error(damage: str, tmp_path: Path) -> None:
    path = write_tif(tmp_path / "ref.tif", _u16(120), compress="deflate", nodata=0)
    data = path.read_bytes()
    path.write_bytes(_truncate(data) if damage == "truncated" else data[:600] + bytes(len(data)))
    with pytest.raises(TiffError, match=r"ref\.tif.*unreadable"):
        read_tiff(path)


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_tiff(tmp_path / "nothing.tif")


@needs_shared
def test_read_tiff_accepts_str_paths(tmp_path: Path) -> None:
    path = shutil.copy(SAMPLE_TIFS[0], tmp_path / "copy.tif")
    assert_same(read_tiff(str(path)), rasterio_reference(path))


def test_files_of_one_layout_keep_their_own_georeferencing(tmp_path: Path, fast_only: None) -> None:
    """The second file reuses the first one's checked layout (same size, header and IFD
    entries) and still reads its own pixels, EPSG code and transform."""
    a = write_tif(tmp_path / "a.tif", _u16(120))
    b = write_tif(
        tmp_path / "b.tif",
        _u16(120)[::-1].copy(),
        crs="EPSG:32633",
        transform=from_origin(300000.0, 5000040.0, 10, 10),
    )
    got_a, got_b = read_tiff(a), read_tiff(b)
    assert tiff._layout(a.read_bytes())[0] is tiff._layout(b.read_bytes())[0]
    assert_same(got_a, rasterio_reference(a))
    assert_same(got_b, rasterio_reference(b))
    assert (got_a.epsg, got_b.epsg) == (32629, 32633)


def test_a_file_that_shares_a_layouts_entries_but_not_its_strips_is_read_again(
    tmp_path: Path, fast_only: None
) -> None:
    """Strip offsets stored outside the IFD entries are compared with the cached layout's: a
    file that points its first strip past its end is a corrupt file, not the cached layout."""
    path = write_tif(tmp_path / "a.tif", _u16(120))
    data = path.read_bytes()
    assert_same(read_tiff(path), rasterio_reference(path))  # its layout is now known
    _, _, outside = tiff._parse_ifd(data)
    offset, _ = outside[273]  # StripOffsets, out of line: GDAL writes several strips here
    damaged = data[:offset] + struct.pack("<I", len(data) - 4) + data[offset + 4 :]
    with pytest.raises(TiffError, match=r"a\.tif: corrupt TIFF: truncated"):
        tiff.decode_tiff(damaged, str(path))
