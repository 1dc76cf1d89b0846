"""The unit decoder without Spark: retries of transient read errors, issues of failed sides."""

from __future__ import annotations

import pytest

from bigearth_spark.archive import reader
from bigearth_spark.etl import decode
from tests.archive.test_reader import S1_ID, S2_ID, SAMPLES


def flaky(failures: int, calls: list[str]):
    """A read_patch that fails ``failures`` times with an I/O error, then reads for real."""
    real = reader.read_patch

    def read_patch(path, folder_type):
        calls.append(folder_type)
        if len(calls) <= failures:
            raise reader.PatchError(reader.READ_ERROR, str(path), "OSError: [Errno 5] I/O error")
        return real(path, folder_type)

    return read_patch


def test_transient_read_errors_are_retried(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(reader, "read_patch", flaky(decode.READ_ATTEMPTS - 1, calls))
    monkeypatch.setattr(decode.time, "sleep", lambda s: None)
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
    monkeypatch.setattr(decode.time, "sleep", lambda s: None)
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
