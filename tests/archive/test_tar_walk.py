"""The tar header walk of the index pass against :mod:`tarfile`'s reading of the same bytes:
every format tarfile writes, reads of any size, and the faults tarfile passes over."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from bigearth_spark.archive import tar_walk
from bigearth_spark.archive.tar_walk import BLOCK, Chunks, TarEnded, TarFormatError, Walk

LONG = "BigEarthNet-v1.0/" + "S2A_MSIL2A_20170613T101031_0_48" * 4  # over ustar's 100 bytes


def archive(fmt: int, extra=None) -> bytes:
    """A tar in ``fmt`` with folders, files (empty, block-sized, long and non-ASCII names),
    links and a FIFO; ``extra(tar)`` adds members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        add_dir(tar, "BigEarthNet-v1.0")
        add_dir(tar, LONG)
        for name, size in [(f"{LONG}/B01.tif", 700), (f"{LONG}/é_B02.tif", 512), ("e.json", 0)]:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(range(256)) * 3))
        for kind, name in [(tarfile.SYMTYPE, "link"), (tarfile.LNKTYPE, "hard")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "e.json"
            tar.addfile(info)
        fifo = tarfile.TarInfo("fifo")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
        if extra is not None:
            extra(tar)
    return out.getvalue()


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)


def walked(data: bytes, read_size: int = 1 << 20, keep=lambda name, size: False) -> list:
    stream = io.BytesIO(data)
    walk = Walk(Chunks(lambda: stream.read(read_size)), keep)
    return [(m.name, m.kind, m.offset, m.size, m.content) for m in walk]


def by_tarfile(data: bytes) -> list:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [
            (
                m.name,
                "dir" if m.isdir() else "file" if m.isreg() else "other",
                m.offset_data,
                m.size,
                None,
            )
            for m in tar.getmembers()
        ]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("read_size", [1, 7, BLOCK, 1000, 1 << 20])
def test_members_as_tarfile_reads_them(fmt, read_size):
    data = archive(fmt)
    assert walked(data, read_size) == by_tarfile(data)


def test_kept_content_is_the_members_bytes():
    data = archive(tarfile.PAX_FORMAT)
    members = walked(data, 300, keep=lambda name, size: name.endswith(".tif"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        want = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}
    kept = {name: content for name, kind, _, _, content in members if content is not None}
    assert kept == {n: c for n, c in want.items() if n.endswith(".tif")} and len(kept) == 2


@pytest.mark.parametrize("read_size", [300, BLOCK, 1000])
def test_kept_content_survives_the_next_read_into_the_same_buffer(read_size):
    """The index pass reads every chunk into a buffer it fills again: what the walk keeps is
    a copy (the walk before it was a view of the buffer's later bytes)."""
    data = archive(tarfile.PAX_FORMAT)
    stream, buffer = io.BytesIO(data), bytearray(read_size)

    def read_again():
        n = stream.readinto(buffer)
        return buffer if n == read_size else bytes(buffer[:n])

    walk = Walk(Chunks(read_again), lambda name, size: name.endswith(".tif"))
    kept = {m.name: m.content for m in walk if m.content is not None}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        want = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}
    assert kept == {n: c for n, c in want.items() if n.endswith(".tif")} and len(kept) == 2
    assert all(type(c) is bytes for c in kept.values())


def header_at(data: bytes, name: str) -> int:
    """The offset of ``name``'s own header (its data's offset less one block)."""
    return next(m.offset_data for m in tarfile.open(fileobj=io.BytesIO(data)) if m.name == name)


def with_header(data: bytes, at: int, patch, signed: bool = False) -> bytes:
    """``data`` with the header at ``at`` changed by ``patch(bytearray)``, checksum redone."""
    block = bytearray(data[at : at + BLOCK])
    patch(block)
    block[148:156] = b" " * 8
    total = sum(b - 256 if signed and b > 127 else b for b in block)
    block[148:156] = b"%06o\0 " % total
    return data[:at] + bytes(block) + data[at + BLOCK :]


def test_signed_checksums_and_base_256_sizes_are_read():
    data = archive(tarfile.USTAR_FORMAT)
    at = header_at(data, f"{LONG}/é_B02.tif") - BLOCK  # a name with bytes over 127

    def base_256(block: bytearray) -> None:
        block[124:136] = b"\x80" + (512).to_bytes(11, "big")

    patched = with_header(data, at, base_256, signed=True)
    assert walked(patched) == walked(data) == by_tarfile(patched)


def test_pax_records_override_the_header():
    def pax(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("short")
        info.size, info.pax_headers = 5, {"path": "overridden/name", "size": "5"}
        tar.addfile(info, io.BytesIO(b"12345"))

    data = archive(tarfile.PAX_FORMAT, pax)
    at = header_at(data, "overridden/name") - BLOCK
    data = with_header(
        data, at, lambda block: block.__setitem__(slice(124, 136), b"0" * 11 + b"\0")
    )
    assert (
        walked(data)[-1] == by_tarfile(data)[-1] == ("overridden/name", "file", at + BLOCK, 5, None)
    )


def test_a_damaged_header_inside_the_archive_is_an_error():
    data = archive(tarfile.GNU_FORMAT)
    at = header_at(data, "link") - BLOCK
    damaged = data[:at] + b"X" + data[at + 1 :]
    assert len(by_tarfile(damaged)) < len(by_tarfile(data))  # tarfile ends there, no error
    with pytest.raises(TarFormatError, match=f"bad checksum of the tar header at offset {at}"):
        walked(damaged)


def test_a_zero_block_inside_the_archive_is_an_error():
    data = archive(tarfile.GNU_FORMAT)
    at = header_at(data, "link") - BLOCK
    with pytest.raises(TarFormatError, match=f"a zero block inside the archive at offset {at}"):
        walked(data[:at] + bytes(BLOCK) + data[at + BLOCK :])


def test_a_cut_archive_ends_early():
    data = archive(tarfile.PAX_FORMAT)
    end = len(data.rstrip(b"\0")) + (-len(data.rstrip(b"\0")) % BLOCK)
    assert walked(data[: end + 2 * BLOCK]) == by_tarfile(data)
    for cut in (end, end + BLOCK, end - 100, header_at(data, "link")):  # between members, inside
        with pytest.raises(TarEnded, match="unexpected end of data"):
            walked(data[:cut], 64)


@pytest.mark.parametrize("garbage", [b"not a tar" * 100, b"\xff" * BLOCK])
def test_what_is_no_tar_is_an_error(garbage):
    with pytest.raises(TarFormatError, match="at offset 0"):
        walked(garbage)


def test_a_blocks_byte_sum_is_exact_up_to_all_bytes_set():
    """The header checksum's sum of bytes, also past Adler-32's modulus (all bytes 0xff)."""
    blocks = [bytes(512), b"\xff" * 512, b"\xff" * 256 + bytes(256), os.urandom(512)]
    blocks += [bytes(range(256)) * 2, os.urandom(256) + b"\xff" * 256]
    assert [tar_walk.byte_sum(b) for b in blocks] == [sum(b) for b in blocks]
