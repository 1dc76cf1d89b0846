"""The index pass's faults, apart from the ingest: what is a cut of the data (recorded) and what
is a failure of the storage (raised, never recorded)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from bigearth_spark.archive import tarball, tarball_files, tarball_scan
from bigearth_spark.archive.synth.pack import write_tarball


def members(index: tarball.TarIndex) -> dict[str, tuple[int, int]]:
    return {name: (offset, size) for name, offset, size, _ in index.members()}


def copied(v1_tarballs: Path, name: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(v1_tarballs / name, dest / name))


class FailingFile:
    """A tarball's file whose reads fail past ``after`` bytes, as a dropped connection does."""

    def __init__(self, f, after: int) -> None:
        self.f, self.after = f, after

    def __getattr__(self, name):
        return getattr(self.f, name)

    def read(self, n: int) -> bytes:
        if self.f.tell() + n > self.after:
            raise OSError("connection reset by peer")
        return self.f.read(n)


@pytest.mark.parametrize(
    "pack, threads", [("tar.gz", 1), ("tar.gz", 2), ("tar.zst", 1), ("tar", 1)]
)
def test_a_storage_error_of_the_pass_is_raised_and_not_recorded(
    v1_archive, tmp_path, monkeypatch, pack, threads
):
    """The file's reads fail half-way: the pass raises the storage's error (the job retries)
    and writes no index, whichever decompressor read the file (rapidgzip's threads too)."""
    monkeypatch.setattr(tarball_scan, "GZIP_THREADS", threads)
    source = write_tarball(v1_archive[0] / "BigEarthNet-S1-v1.0", tmp_path / f"s1.{pack}", pack)
    size = source.stat().st_size
    opened = tarball_files.open_tarball
    monkeypatch.setattr(tarball_scan, "open_tarball", lambda t: FailingFile(opened(t), size // 2))
    with pytest.raises(tarball_files.StorageReadError, match="connection reset"):
        tarball.build_index(str(source))
    assert not (tmp_path / f"s1.{pack}.index" / "index.json").exists()


@pytest.mark.parametrize("threads", [1, 2])
def test_a_crc_mismatch_is_a_corrupt_tarball(v1_tarballs, tmp_path, monkeypatch, threads):
    """Content damaged without a broken block (here: the CRC32 at the end of the stream): the
    pass records a corrupt tarball that names the CRC, with the members before it."""
    monkeypatch.setattr(tarball_scan, "GZIP_THREADS", threads)
    monkeypatch.setattr(tarball_scan, "GZIP_CHUNK", 256 << 10)
    s1 = copied(v1_tarballs, "BigEarthNet-S1-v1.0.tar.gz", tmp_path)
    index = tarball.build_index(str(s1))
    assert index.cut is None
    whole = members(index)
    data = bytearray(s1.read_bytes())
    data[-8] ^= 0xFF  # the stored CRC32
    s1.write_bytes(bytes(data))
    damaged = tarball.build_index(str(s1))
    assert damaged.cut["reason"] == tarball.CORRUPT and "CRC32" in damaged.cut["message"]
    kept = members(damaged)
    assert kept and set(kept) < set(whole) and all(kept[n] == whole[n] for n in kept)


def test_a_tar_cut_between_two_members_is_truncated(v1_archive, tmp_path):
    """A download cut exactly at a member's header, inside a patch folder (nothing the tar
    reader notices): the pass sees the end-of-archive blocks missing, records the cut, keeps
    the members before it but the whole of the patch folder the cut fell in."""
    source = write_tarball(v1_archive[0] / "BigEarthNet-S1-v1.0", tmp_path / "s1.tar", "tar")
    with tarfile.open(source) as tar:
        infos = tar.getmembers()
    i = next(
        i
        for i in range(len(infos) // 2, len(infos))
        if infos[i - 1].isfile()
        and infos[i].isfile()
        and infos[i - 1].name.rsplit("/", 1)[0] == infos[i].name.rsplit("/", 1)[0]
    )
    folder, at = infos[i].name.rsplit("/", 1)[0], infos[i].offset  # a member's header
    whole = tarball.build_index(str(source))
    source.write_bytes(source.read_bytes()[:at])
    cut = tarball.build_index(str(source))
    assert whole.cut is None
    assert cut.cut["reason"] == tarball.TRUNCATED and cut.cut["folder"] == folder
    kept = {i.name for i in infos if i.offset < at and not i.name.startswith(folder)}
    assert set(members(cut)) == kept


def test_a_partial_gzip_download_is_truncated_not_corrupt(v1_tarballs, tmp_path):
    """rapidgzip fails at the end of a cut gzip stream as at a corrupt block: where it failed
    (the last bytes of the file) tells the two apart."""
    s2 = copied(v1_tarballs, "BigEarthNet-S2-v1.0.tar.gz", tmp_path)
    data = s2.read_bytes()
    s2.write_bytes(data[: len(data) * 6 // 10])
    cut = tarball.build_index(str(s2)).cut
    assert cut["reason"] == tarball.TRUNCATED
