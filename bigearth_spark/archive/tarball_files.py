"""The bytes of a tarball: its files (one, or the split parts that make one stream), what
identifies them, and random access to them as one file."""

from __future__ import annotations

import bisect
import io
import re

import pyarrow as pa

from bigearth_spark import storage

_PART = re.compile(r"(\.tar|\.tar\.gz|\.tgz|\.tar\.zst)([a-z]{2})$", re.IGNORECASE)  # split's
_SUFFIX = re.compile(r"[a-z]{2}")  # a split part's suffix


class StorageReadError(OSError):
    """A read of a tarball's own bytes failed (not its content): retried, never recorded."""


def first_part(path: str) -> bool | None:
    """True for the first of a tarball's split parts (``…tar.gzaa``), False for a later one,
    None for a name that is no split part."""
    part = _PART.search(path)
    return None if part is None else part.group(2).lower() == "aa"


def whole_name(tarball: str) -> str:
    """The name of the tarball that split parts make (the name itself for one file)."""
    part = _PART.search(tarball)
    return tarball[: part.start(2)] if part else tarball


def parts(tarball: str) -> list[str]:
    """The files of ``tarball`` in stream order: itself, or its split parts (``…aa``, ``…ab``…
    beside it)."""
    if not _PART.search(tarball):
        return [tarball]
    whole = whole_name(tarball)
    folder, name = whole.rsplit("/", 1)
    return sorted(
        e.path
        for e in storage.list_dir(folder)
        if not e.is_dir and e.name[: len(name)] == name and _SUFFIX.fullmatch(e.name[len(name) :])
    )


def stamp(tarball: str) -> dict:
    """What identifies the tarball's bytes: its files' sizes and modification times."""
    sizes, times = [], []
    for part in parts(tarball):
        fs, path = storage.filesystem(part)
        info = fs.get_file_info(path)
        if info.type != pa.fs.FileType.File:
            raise FileNotFoundError(f"no such tarball: {part}")
        sizes.append(info.size)
        times.append(info.mtime_ns)
    return {"size": sizes, "mtime_ns": times}


def open_tarball(tarball: str):
    """The tarball's bytes as one random-access file (its split parts concatenated)."""
    files = []
    for part in parts(tarball):
        fs, path = storage.filesystem(part)
        files.append(fs.open_input_file(path))
    return files[0] if len(files) == 1 else Concatenated(files)


class Concatenated:
    """Random-access files read as one (pyarrow's ``read``/``seek``/``tell``/``read_at``, which
    return bytes)."""

    def __init__(self, files: list) -> None:
        self.files, self.pos = files, 0
        self.starts = [0]
        for f in files:
            self.starts.append(self.starts[-1] + f.size())

    def size(self) -> int:
        return self.starts[-1]

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset + (0, self.pos, self.size())[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int) -> bytes:
        data = self.read_at(n, self.pos)
        self.pos += len(data)
        return data

    def read_at(self, n: int, offset: int) -> bytes:
        out, end = [], min(offset + n, self.size())
        while offset < end:
            i = bisect.bisect_right(self.starts, offset) - 1
            take = min(end, self.starts[i + 1]) - offset
            out.append(bytes(self.files[i].read_at(take, offset - self.starts[i])))
            offset += take
        return b"".join(out)


class Seekable(io.RawIOBase):
    """A pyarrow random-access file as a seekable Python file object whose failed reads raise
    :class:`StorageReadError`, kept in :attr:`failure` (a decompressor above it may report it
    as an error of its own)."""

    def __init__(self, f) -> None:
        self.f = f
        self.failure: StorageReadError | None = None

    def size(self) -> int:
        """The file's size in bytes."""
        return self.f.size()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def readinto(self, b) -> int:
        try:
            data = self.f.read(len(b))
        except OSError as e:
            self.failure = StorageReadError(f"reading the tarball failed: {e}")
            raise self.failure from e
        b[: len(data)] = data
        return len(data)
