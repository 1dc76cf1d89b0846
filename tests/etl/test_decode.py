"""The unit decoder without Spark: retries of transient read errors, issues of failed sides,
the classification of failures by cause."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from bigearth_spark import retry
from bigearth_spark.archive import reader
from bigearth_spark.etl import decode
from tests.archive.test_reader import S1_ID, S2_ID, SAMPLES


def flaky(failures: int, calls: list[str]):
    """A read_patch that fails ``failures`` times with an I/O error, then reads for real."""
    real = reader.read_patch

    def read_patch(path, folder_type, *given):
        calls.append(folder_type)
        if len(calls) <= failures:
            raise reader.PatchError(reader.READ_ERROR, str(path), "OSError: [Errno 5] I/O error")
        return real(path, folder_type, *given)

    return read_patch


def test_transient_read_errors_are_retried(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(reader, "read_patch", flaky(decode.READ_ATTEMPTS - 1, calls))
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    record = decode.read_side("v1_s2", str(SAMPLES / S2_ID))
    assert record.patch_id == S2_ID and len(calls) == decode.READ_ATTEMPTS


def sample_unit(need_s1: bool) -> dict:
    """The unit of the real sample pair (S2 always needed)."""
    return {
        "patch_id": S2_ID,
        "archive": "v1",
        "s2_path": str(SAMPLES / S2_ID),
        "s1_path": str(SAMPLES / S1_ID),
        "reference_map_path": None,
        "need_s2": True,
        "need_s1": need_s1,
        "need_reference_map": False,
    }


def test_a_side_failing_every_attempt_becomes_an_issue(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(reader, "read_patch", flaky(99, calls))
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    row = decode.decode_unit(sample_unit(need_s1=False))
    assert row["stored_sides"] == [] and len(calls) == decode.READ_ATTEMPTS
    assert [(i["patch_id"], i["kind"], i["reason"]) for i in row["issues"]] == [
        (S2_ID, "s2", reader.READ_ERROR)
    ]


@pytest.mark.parametrize("need_s1", [True, False])
def test_a_unit_reads_only_the_sides_it_needs(need_s1):
    row = decode.decode_unit(sample_unit(need_s1))
    assert row["stored_sides"] == (["s2", "s1"] if need_s1 else ["s2"])
    assert (row.get("VV") is not None) == need_s1 and len(row["B02"]) == 120 * 120 * 2
    assert row.get("s1_patch_id") == (S1_ID if need_s1 else None)


def failing(error: Exception, calls: list[str]):
    """A read_patch that always raises ``error``."""

    def read_patch(path, folder_type, *given):
        calls.append(folder_type)
        raise error

    return read_patch


@pytest.mark.parametrize(
    ("error", "reason", "tries"),
    [
        (PermissionError(13, "Permission denied"), reader.READ_ERROR, decode.READ_ATTEMPTS),
        (OSError("AWS Error SLOW_DOWN in ListObjectsV2"), reader.READ_ERROR, decode.READ_ATTEMPTS),
        (TimeoutError("timed out"), reader.READ_ERROR, decode.READ_ATTEMPTS),
        (FileNotFoundError(2, "gone since the listing"), reader.READ_ERROR, 1),
        (RuntimeError("a bug, or a defect nobody foresaw"), reader.UNREADABLE, 1),
    ],
)
def test_failures_are_classified_by_cause(monkeypatch, error, reason, tries):
    """Storage errors are retried in the run and stay ``read_error`` (read again by the next
    run: :data:`reader.RETRIED_LATER`); an unforeseen exception is ``unreadable``."""
    calls: list[str] = []
    monkeypatch.setattr(reader, "read_patch", failing(error, calls))
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    with pytest.raises(reader.PatchError) as caught:
        decode.read_side("v1_s2", str(SAMPLES / S2_ID))
    assert (caught.value.reason, len(calls)) == (reason, tries)
    assert caught.value.reason in reader.RETRIED_LATER


def test_a_listing_error_is_a_read_error_not_a_defect(tmp_path):
    """``reader._list``: an OSError other than a missing folder (here ELOOP) is ``read_error``."""
    loop = tmp_path / "S2A_MSIL2A_20170617T113321_36_85"
    loop.symlink_to(loop)
    with pytest.raises(reader.PatchError) as caught:
        reader.read_patch(loop, "v1_s2")
    assert caught.value.reason == reader.READ_ERROR and "listing failed" in str(caught.value)


def test_an_s1_patch_paired_without_its_json_waits_for_the_next_run():
    """Discovery keys a v1 S1 folder by its own id when its JSON could not be read; the decoder
    then reads a partner other than the unit's key and leaves the pair to the next run."""
    unit = {**sample_unit(need_s1=True), "patch_id": S1_ID, "s2_path": None, "need_s2": False}
    row = decode.decode_unit(unit)
    assert row["stored_sides"] == [] and row.get("VV") is None
    assert [(i["patch_id"], i["kind"], i["reason"]) for i in row["issues"]] == [
        (S1_ID, "s1", reader.READ_ERROR)
    ]


def test_a_failed_read_fetched_ahead_is_read_again_directly(monkeypatch):
    """The first attempt takes the reads fetched ahead; a retry reads the files itself."""
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    folder = str(SAMPLES / S2_ID)
    failed: Future[bytes] = Future()
    failed.set_exception(OSError("SlowDown: Please reduce your request rate."))
    fetched = {f"{folder}/{S2_ID}_B04.tif": failed}
    names = {p.name for p in (SAMPLES / S2_ID).iterdir()}
    record = decode.read_side("v1_s2", folder, decode.READ_ATTEMPTS, names, fetched)
    assert record.patch_id == S2_ID and record.bands["B04"].shape == (120, 120)
    with pytest.raises(reader.PatchError, match=r"read_error: .*_B04\.tif: OSError: SlowDown"):
        decode.read_side("v1_s2", folder, 1, names, fetched)
