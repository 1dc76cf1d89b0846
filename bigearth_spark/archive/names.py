"""Patch names of BigEarthNet v1 and v2.0 and the v2.0 folder rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_V1_S2 = re.compile(r"^(S2[AB])_MSIL2A_(\d{8})T(\d{5,6})_(\d+)_(\d+)$")
_S1 = re.compile(r"^(S1[AB])_IW_GRDH_1SDV_(\d{8})T(\d{6})_(\d{2}[A-Z]{3})_(\d+)_(\d+)$")
_V2_S2 = re.compile(
    r"^(S2[AB])_MSIL2A_(\d{8})T(\d{6})_N9999_R(\d{3})_T(\d{2}[A-Z]{3})_(\d{2})_(\d{2})$"
)


class BadNameError(ValueError):
    """A folder or file name that is not a BigEarthNet patch name."""


@dataclass(frozen=True)
class PatchName:
    """What a patch name tells: sensor, acquisition time, grid position (and tile, orbit)."""

    name: str
    name_format: str  # "v1_s2" | "s1" | "v2_s2"
    satellite: str  # S2A, S2B, S1A, S1B
    acquired: datetime
    col: int
    row: int
    tile: str | None = None  # MGRS tile; v1 S2 names do not carry it (the JSON's tile_source does)
    orbit: int | None = None  # relative orbit (v2 S2)


def _time(date: str, hhmmss: str) -> datetime:
    # v1 quirks: the time may have 5 digits (no leading zero on the hour), and 13,599 official
    # names carry seconds 60 or 61 (e.g. T94160): add them as a duration, never reject them.
    t = hhmmss.zfill(6)
    day = datetime(int(date[:4]), int(date[4:6]), int(date[6:8]))
    return day + timedelta(hours=int(t[:2]), minutes=int(t[2:4]), seconds=int(t[4:]))


def parse_v1_s2(name: str) -> PatchName:
    """Parse ``S2A_MSIL2A_20170613T101031_61_39`` (also the 5-digit time quirk)."""
    m = _V1_S2.match(name)
    if not m:
        raise BadNameError(f"not a v1 S2 patch name: {name!r}")
    sat, date, hms, col, row = m.groups()
    return PatchName(name, "v1_s2", sat, _time(date, hms), int(col), int(row))


def parse_s1(name: str) -> PatchName:
    """Parse ``S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48`` (v1 and v2 S1 names)."""
    m = _S1.match(name)
    if not m:
        raise BadNameError(f"not an S1 patch name: {name!r}")
    sat, date, hms, tile, col, row = m.groups()
    return PatchName(name, "s1", sat, _time(date, hms), int(col), int(row), tile=tile)


def parse_v2_s2(name: str) -> PatchName:
    """Parse ``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57`` (row, col zero-padded)."""
    m = _V2_S2.match(name)
    if not m:
        raise BadNameError(f"not a v2 S2 patch id: {name!r}")
    sat, date, hms, orbit, tile, row, col = m.groups()
    return PatchName(name, "v2_s2", sat, _time(date, hms), int(col), int(row), tile, int(orbit))


def parse_any(name: str) -> PatchName:
    """Parse a name of any format; raises :class:`BadNameError` if none fits."""
    for parse in (parse_v2_s2, parse_v1_s2, parse_s1):
        try:
            return parse(name)
        except BadNameError:
            continue
    raise BadNameError(f"not a BigEarthNet patch name: {name!r}")


def is_v1_s2(name: str) -> bool:
    """True for a v1 S2 patch name."""
    return _V1_S2.match(name) is not None


def is_s1(name: str) -> bool:
    """True for an S1 patch name."""
    return _S1.match(name) is not None


def is_v2_s2(name: str) -> bool:
    """True for a v2 S2 patch id."""
    return _V2_S2.match(name) is not None


def v2_s2_tile_folder(patch_id: str) -> str:
    """v2 S2 (and reference map) tile-product folder of a patch: drops the ``_RR_CC`` suffix."""
    return "_".join(patch_id.split("_")[:-2])


def v2_s1_scene_folder(s1_name: str) -> str:
    """v2 S1 scene folder of an S1 patch: drops the ``_<tile>_<col>_<row>`` suffix."""
    return "_".join(s1_name.split("_")[:-3])
