"""The members of a tar stream, read forwards once in large chunks. The headers are parsed here
(ustar, GNU long names, pax) rather than by :mod:`tarfile`: its ~45 µs of Python per member
bounded the index pass to ~220 MB/s of tar on a core, and it takes a header whose checksum is
wrong for the end of the archive, passing over the rest in silence."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

BLOCK = 512
_ZERO = bytes(BLOCK)
_REGULAR, _DIR = (b"0", b"\0", b"7"), b"5"
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, folders, FIFOs
_LONG_NAME, _LONG_LINK, _PAX, _PAX_GLOBAL, _SPARSE = b"L", b"K", b"x", b"g", b"S"
_SIGNED = struct.Struct("148b8x356b")  # the header's bytes but its checksum field, as int8
# name, size, checksum, type flag, magic, prefix (what a header's fields the walk reads)
_FIELDS = struct.Struct("100s24x12s12x8sc100x6s82x155s")


class TarFormatError(ValueError):
    """The bytes where a tar header must be are none (a corrupt or foreign stream)."""


class TarEnded(EOFError):
    """The stream ended before the archive did (a partial download)."""


class Member(NamedTuple):
    """One member: its name, ``kind`` (file, dir or other), where its data starts in the tar,
    its size, and its content when the walk was asked to keep it (else None)."""

    name: str
    kind: str
    offset: int
    size: int
    content: bytes | None


class Chunks:
    """A stream's bytes as the consecutive chunks ``read`` returns (b"" at its end), read and
    skipped across chunk borders without joining the chunks. A chunk may be a buffer that the
    next read fills again: what :meth:`take` returns is a copy."""

    def __init__(self, read: Callable[[], bytes | bytearray]) -> None:
        self.read, self.buf, self.i, self.base = read, memoryview(b""), 0, 0

    @property
    def pos(self) -> int:
        """The offset in the stream of the next byte."""
        return self.base + self.i

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes (:class:`TarEnded` if the stream has fewer)."""
        end = self.i + n
        if end <= len(self.buf):
            self.i = end
            return self.buf[end - n : end].tobytes()
        parts = [self.buf[self.i :].tobytes()]
        need = n - len(parts[0])
        while need:
            chunk = self._next(n)
            parts.append(chunk[:need].tobytes())
            self.i = min(need, len(chunk))
            need -= self.i
        return b"".join(parts)

    def skip(self, n: int) -> None:
        """Pass over the next ``n`` bytes (:class:`TarEnded` if the stream has fewer)."""
        need = n - (len(self.buf) - self.i)
        if need <= 0:
            self.i += n
            return
        while need > 0:
            chunk = self._next(n)
            self.i = min(need, len(chunk))
            need -= len(chunk)

    def drain(self) -> None:
        """Read the stream to its end (what follows the archive is not looked at)."""
        while self.read():
            pass

    def _next(self, wanted: int) -> memoryview:
        self.base += len(self.buf)
        self.buf, self.i = memoryview(self.read()), 0
        if not self.buf:
            raise TarEnded(f"unexpected end of data: {wanted} bytes wanted at offset {self.pos}")
        return self.buf


class Walk:
    """The members of the tar in ``chunks``, in stream order; :attr:`current` names the member
    being read (None between members), for the report of a fault."""

    def __init__(self, chunks: Chunks, keep: Callable[[str, int], bool]) -> None:
        """``keep(name, size)``: whether a file's content is returned with it."""
        self.chunks, self.keep = chunks, keep
        self.current: str | None = None

    def __iter__(self) -> Iterator[Member]:
        chunks, long_name, pax = self.chunks, None, {}
        while True:
            self.current, at = None, chunks.pos
            block = chunks.take(BLOCK)
            if block == _ZERO:
                self._end(at)
                return
            name, flag, size = _header(block, at)
            self.current = name
            if flag in (_LONG_NAME, _LONG_LINK, _PAX, _PAX_GLOBAL):  # about the next member
                data = chunks.take(size)
                chunks.skip(-size % BLOCK)
                if flag == _LONG_NAME:
                    long_name = _text(data.split(b"\0", 1)[0])
                elif flag == _PAX:
                    pax = _pax_records(data, at)
                continue
            if flag == _SPARSE:
                raise TarFormatError(f"GNU sparse member {name} at offset {at}: not supported")
            name, size = pax.get("path", long_name or name), int(pax.get("size", size))
            self.current, long_name, pax = name, None, {}
            yield self._member(name, flag, size)

    def _member(self, name: str, flag: bytes, size: int) -> Member:
        """The member whose header was read, its data read (if kept) or passed over."""
        kind, offset = _kind(flag, name), self.chunks.pos
        if kind == "file" and self.keep(name, size):
            content = self.chunks.take(size)
            self.chunks.skip(-size % BLOCK)
            return Member(name, kind, offset, size, content)
        if flag not in _NO_DATA:  # as tarfile: a link's or a folder's size has no data
            self.chunks.skip(size + -size % BLOCK)
        return Member(name.rstrip("/") if kind == "dir" else name, kind, offset, size, None)

    def _end(self, at: int) -> None:
        """The first zero block at ``at``: the second must follow (else the tar was cut, or a
        header was zeroed inside it)."""
        if self.chunks.take(BLOCK) != _ZERO:
            raise TarFormatError(f"a zero block inside the archive at offset {at}")


def _kind(flag: bytes, name: str) -> str:
    if flag == _DIR or (flag == b"\0" and name.endswith("/")):
        return "dir"
    return "file" if flag in _REGULAR else "other"


def _header(block: bytes, at: int) -> tuple[str, bytes, int]:
    """A header block's name, type flag and size, once its checksum was verified."""
    raw_name, size_field, checksum_field, flag, magic, prefix = _FIELDS.unpack_from(block)
    try:
        checksum = _number(checksum_field)
        size = _number(size_field)
    except ValueError:
        raise TarFormatError(f"no tar header at offset {at}") from None
    unsigned = byte_sum(block) - sum(checksum_field) + 8 * 32
    if checksum != unsigned and checksum != sum(_SIGNED.unpack(block)) + 8 * 32:
        raise TarFormatError(f"bad checksum of the tar header at offset {at}")
    name = _text(raw_name.split(b"\0", 1)[0])
    if magic == b"ustar\x00":  # POSIX ustar: a long path's folders in the prefix
        prefix = prefix.split(b"\0", 1)[0]
        if prefix:
            name = f"{_text(prefix)}/{name}"
    return name, flag, size


def byte_sum(block: bytes) -> int:
    """The sum of a 512-byte block's bytes, in C: the low 16 bits of zlib's Adler-32 of each
    half are 1 + the half's sum (at most 256 * 255 = 65,280, below Adler's modulus 65,521)."""
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def _number(field: bytes) -> int:
    """A numeric header field: octal digits, or GNU's base-256 (first byte 0x80 or 0xff)."""
    if field[0] in (0o200, 0o377):
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0o377 else n
    digits = field.split(b"\0", 1)[0].strip()
    return int(digits, 8) if digits else 0


def _pax_records(data: bytes, at: int) -> dict[str, str]:
    """The records of a pax extended header (``"<length> <key>=<value>\\n"`` each)."""
    records, pos = {}, 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        if length < space - pos + 2:
            raise TarFormatError(f"a malformed pax header at offset {at}")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[_text(key)] = _text(value)
        pos += length
    return records


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")
