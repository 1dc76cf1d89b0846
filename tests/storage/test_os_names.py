"""Paths as the OS names them: bytes that are not UTF-8 survive the storage layer as text."""

from __future__ import annotations

import os
from pathlib import Path

from bigearth_spark import storage


def test_a_name_that_is_not_utf8_round_trips_as_a_file_uri(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9 100%"
    os.mkdir(raw)
    with open(raw + b"/B02.tif", "wb") as f:
        f.write(b"band bytes")
    folder = os.fsdecode(raw)

    text = storage.normalize(folder)
    assert text == "file://" + os.fsdecode(os.fsencode(tmp_path)) + "/caf%E9%20100%25"
    text.encode()  # valid UTF-8: Arrow, Spark and Delta can hold it
    assert storage.is_local(text) and storage.local_path(text) == folder
    assert storage.basename(text) == "caf%E9%20100%25"
    assert storage.list_names(text) == {"B02.tif"}
    assert storage.read_bytes(storage.join(text, "B02.tif")) == b"band bytes"
    [entry] = storage.list_dir(os.fspath(tmp_path))
    assert (entry.path, entry.is_dir) == (text, True)


def test_utf8_paths_stay_as_they_are(tmp_path: Path) -> None:
    folder = os.path.join(tmp_path, "Zürich")
    os.mkdir(folder)
    assert storage.normalize(folder) == folder
    assert storage.join(folder, "x") == os.path.join(folder, "x")
    assert storage.as_text("/plain/ascii") == "/plain/ascii"
    assert storage.local_path("file:///a%20b") == "/a b"  # file: URIs are percent-encoded
