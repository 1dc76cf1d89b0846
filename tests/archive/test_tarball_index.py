"""A tarball's index looked up a folder at a time: listings, files and their bytes as the
extracted folder has them, whatever row groups and caches the lookups cross."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from bigearth_spark import storage
from bigearth_spark.archive import tarball, tarball_members
from bigearth_spark.archive.synth.pack import write_tarball


@pytest.mark.parametrize(
    ("flavor", "top", "pack"),
    [("v2", "BigEarthNet-S2", "tar"), ("v2", "BigEarthNet-S2", "tar.zst"),
     ("v1", "BigEarthNet-S1-v1.0", "tar.gz")],
)  # fmt: skip
def test_every_folder_and_file_as_extracted(
    v1_archive, v2_archive, tmp_path, monkeypatch, flavor, top, pack
):
    """Row groups of 5 members, 2 of them kept, 2 folders kept: every folder lists what the
    file system lists, every file reads its bytes (JSON files from the index, which keeps
    them), absent names are neither."""
    monkeypatch.setattr(tarball_members, "ROWS_PER_GROUP", 5)
    monkeypatch.setattr(tarball_members, "GROUPS_KEPT", 2)
    monkeypatch.setattr(tarball_members, "LOG_BATCH", 7)  # the log's batches, sorted slices
    monkeypatch.setattr(tarball, "FOLDERS_KEPT", 2)
    folder = (v1_archive if flavor == "v1" else v2_archive)[0] / top
    source = write_tarball(folder, tmp_path / f"{top}.{pack}", pack)
    index = tarball.build_index(str(source))
    kept = {n: data for n, _, _, data in index.members() if data is not None}
    on_disk = {str(p.relative_to(folder.parent)) for p in folder.rglob("*.json")}
    assert set(kept) == on_disk and (flavor == "v2" or kept)

    def uri(path: Path) -> str:
        return tarball.member_uri(str(source), str(path.relative_to(folder.parent)))

    walked = list(os.walk(folder))
    assert sum(len(files) for _, _, files in walked) > 5 * 2 * 3  # crosses groups and caches
    for root, dirs, files in reversed(walked):  # deepest first: a cold cache for the tops
        listed = {e.name: e.is_dir for e in tarball.list_dir(uri(Path(root)))}
        assert listed == {**dict.fromkeys(dirs, True), **dict.fromkeys(files, False)}
        assert storage.list_names(uri(Path(root))) == {*dirs, *files}
        assert tarball.is_dir(uri(Path(root))) and not tarball.is_file(uri(Path(root)))
        for name in files:
            path = Path(root) / name
            assert tarball.is_file(uri(path)) and not tarball.is_dir(uri(path))
            assert tarball.read_bytes(uri(path)) == path.read_bytes()
    assert tarball.index(str(source)).top == [top]
    absent = uri(folder / "no_such_tile")
    assert not tarball.is_dir(absent) and not tarball.is_file(absent)
    with pytest.raises(FileNotFoundError):
        tarball.list_dir(absent)
    with pytest.raises(FileNotFoundError):
        storage.list_names(absent)
    with pytest.raises(FileNotFoundError):
        tarball.read_bytes(absent + "/x.tif")


@pytest.mark.parametrize("log_batch", [2, 3, 1 << 16])
def test_a_name_the_tar_holds_twice_reads_as_its_later_member(tmp_path, monkeypatch, log_batch):
    """A tar appended to holds a name twice; ``tar -x`` leaves the later one, so does the
    index, also when the two fall in different slices of the sorted member log."""
    monkeypatch.setattr(tarball_members, "LOG_BATCH", log_batch)
    source = tmp_path / "appended.tar"
    with tarfile.open(source, "w") as tar:
        for name, content in [
            ("top/p/a.tif", b"old"),
            ("top/p/b.tif", b"b"),
            ("top/p/a.tif", b"new"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    tarball.build_index(str(source))
    uri = tarball.member_uri(str(source), "top/p")
    assert [e.name for e in tarball.list_dir(uri)] == ["a.tif", "b.tif"]
    assert (
        tarball.read_bytes(f"{uri}/a.tif") == b"new" and tarball.read_bytes(f"{uri}/b.tif") == b"b"
    )
