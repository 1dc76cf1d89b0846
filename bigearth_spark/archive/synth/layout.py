"""Where patches come from: the tile products (real ones of the archive), the Sentinel-1 scenes
paired with them, and the patches drawn on their grids (unique names, several a tile-date)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from bigearth_spark.archive.bands import PATCH_SIZE_M


@dataclass(frozen=True)
class Product:
    """A Sentinel-2 tile product of the archive."""

    sat: str  # S2A | S2B
    sensed: str  # YYYYMMDDTHHMMSS, as in v2 patch ids
    orbit: int  # relative orbit
    tile: str  # MGRS tile
    country: str
    v1_times: tuple[str, ...]  # time fields of the v1 names of its patches (5-digit quirk...)
    y0: int  # northing of the tile's upper-left corner (x0 follows from the MGRS column letter)

    @property
    def name(self) -> str:
        """v2 tile-product folder name."""
        return f"{self.sat}_MSIL2A_{self.sensed}_N9999_R{self.orbit:03d}_T{self.tile}"

    @property
    def zone(self) -> int:
        """UTM zone of the tile."""
        return int(self.tile[:2])

    @property
    def x0(self) -> int:
        """Easting of the tile's upper-left corner."""
        letters = ("STUVWXYZ", "ABCDEFGH", "JKLMNPQR")[self.zone % 3]
        return 100_000 * (letters.index(self.tile[3]) + 1)

    @property
    def when(self) -> datetime:
        """Sensing time."""
        return datetime.strptime(self.sensed, "%Y%m%dT%H%M%S")


# The first three are always used: the 5-digit time quirk, the seconds-overflow quirk of the real
# v1 names (``T94160``: 09:41:60), and the tile of the real sample patch.
_CATALOG: tuple[Product, ...] = (
    Product("S2A", "20170905T095031", 79, "35WPN", "Finland", ("95032",), 7_400_040),
    Product("S2B", "20180204T094159", 36, "35VPK", "Finland", ("94160", "94161"), 6_900_040),
    Product("S2A", "20170617T113321", 80, "29UPU", "Ireland", ("113321",), 5_900_040),
    Product("S2A", "20170704T112111", 37, "29SND", "Portugal", ("112103", "112111"), 4_300_020),
    Product("S2B", "20180515T112109", 37, "29SNC", "Portugal", ("112109", "112110"), 4_200_000),
    Product("S2A", "20180508T104031", 8, "31UGR", "Belgium", ("104031", "104032"), 5_600_040),
    Product("S2A", "20170818T103021", 108, "32TMT", "Switzerland", ("103021",), 5_200_020),
    Product("S2A", "20170613T101031", 22, "33UUP", "Austria", ("101031",), 5_400_000),
    Product("S2B", "20171219T095409", 79, "33TWN", "Austria", ("095409", "95410"), 5_300_040),
    Product("S2A", "20171002T094031", 36, "34TCR", "Serbia", ("094031", "94032"), 5_000_040),
    Product("S2B", "20170914T093029", 136, "34TEP", "Serbia", ("093029", "93030"), 4_900_020),
    Product("S2A", "20170720T100031", 122, "34UDG", "Lithuania", ("100031",), 6_200_040),
    Product("S2B", "20170924T093019", 136, "35UMB", "Lithuania", ("093019", "93020"), 6_100_020),
    Product("S2A", "20180228T101021", 22, "34WFS", "Finland", ("101021",), 7_500_000),
    Product("S2B", "20170716T093039", 136, "36VVR", "Finland", ("093039",), 7_000_040),
    Product("S2A", "20170613T101031", 22, "34VER", "Finland", ("101031", "101032"), 6_800_040),
)
_GRID = 91  # patches per tile side (a 109.8 km tile / 1.2 km)


@dataclass
class Scene:
    """A Sentinel-1 GRD scene."""

    sat: str  # S1A | S1B
    start: datetime
    orbit: int
    datatake: int
    uid: int

    @property
    def prefix(self) -> str:
        """Start of the names of its patches (satellite, mode, product, start time)."""
        return f"{self.sat}_IW_GRDH_1SDV_{self.start:%Y%m%dT%H%M%S}"

    @property
    def source(self) -> str:
        """Scene name (``scene_source`` of the v1 S1 JSON files)."""
        stop = self.start + timedelta(seconds=25)
        ids = f"{self.orbit:06d}_{self.datatake:06X}_{self.uid:04X}"
        return f"{self.prefix}_{stop:%Y%m%dT%H%M%S}_{ids}"


@dataclass
class Patch:
    """One S2/S1 pair: its position, names, labels and flags."""

    index: int
    product: Product
    col: int
    row: int
    v1_time: str
    scene: Scene
    labels43: list[int]
    # v1: train|val|test (None: not in the lists); v2: train|validation|test
    split: str | None = None
    snow: bool = False
    cloud: bool = False
    defect: str | None = None
    no19: bool = False
    s2_exists: bool = True
    s1_exists: bool = True

    @property
    def v1_name(self) -> str:
        """v1 S2 patch name."""
        date = self.product.sensed[:8]
        return f"{self.product.sat}_MSIL2A_{date}T{self.v1_time}_{self.col}_{self.row}"

    @property
    def v2_id(self) -> str:
        """v2 S2 patch id."""
        return f"{self.product.name}_{self.col:02d}_{self.row:02d}"

    @property
    def s1_name(self) -> str:
        """S1 patch name (the same in v1 and v2)."""
        return f"{self.scene.prefix}_{self.product.tile}_{self.col}_{self.row}"

    @property
    def ulx(self) -> int:
        """Easting of the upper-left corner."""
        return self.product.x0 + self.col * PATCH_SIZE_M

    @property
    def uly(self) -> int:
        """Northing of the upper-left corner."""
        return self.product.y0 - self.row * PATCH_SIZE_M

    @property
    def epsg(self) -> int:
        """EPSG code of the patch's UTM zone."""
        return 32600 + self.product.zone


def _draw_scenes(rng: np.random.Generator, product: Product) -> list[Scene]:
    """1-3 Sentinel-1 scenes acquired within a few days of the S2 product."""
    out = []
    for _ in range(int(rng.integers(1, 4))):
        sat = "S1A" if rng.random() < 0.5 else "S1B"
        hour = int(rng.choice((4, 5, 6, 15, 16, 17, 18)))
        day = product.when.replace(hour=0, minute=0, second=0) + timedelta(
            days=int(rng.integers(-3, 4))
        )
        start = day + timedelta(
            hours=hour, minutes=int(rng.integers(60)), seconds=int(rng.integers(60))
        )
        days = (start - datetime(2017, 6, 17, 6, 47, 24)).total_seconds() / 86400
        orbit = 17070 + round(days * 175 / 12) - (10980 if sat == "S1B" else 0)
        out.append(
            Scene(
                sat, start, orbit, int(rng.integers(0x10000, 0x30000)), int(rng.integers(0x10000))
            )
        )
    return out


class Layout:
    """Draws patch positions, names and pairs (unique names, several patches per tile-date)."""

    def __init__(self, rng: np.random.Generator, pairs: int) -> None:
        self.rng = rng
        n_products = min(len(_CATALOG), max(4, math.ceil(pairs / 25)))
        rest = [int(i) for i in rng.permutation(np.arange(3, len(_CATALOG)))]
        self.products = [_CATALOG[i] for i in [0, 1, 2, *rest][:n_products]]
        # the seconds-overflow product is as rare as in the real archive (~2 % of patches)...
        weights = np.array([0.1 if i == 1 else 1.0 for i in range(n_products)])
        self.weights = weights / weights.sum()
        self.forced = [1, 0, 2]  # ...but the first three patches show each quirk once
        self.scenes = {p.name: _draw_scenes(rng, p) for p in self.products}
        self.used_cells: set[tuple[str, int, int]] = set()
        self.used_v1: set[str] = set()
        self.count = 0

    def new_patch(self, labels43: list[int]) -> Patch:
        """Draw a new patch (unused grid cell and v1 name) carrying ``labels43``."""
        capacity = len(self.products) * _GRID * _GRID
        if len(self.used_cells) >= capacity * 0.9:
            raise ValueError(f"too many patches for {len(self.products)} tile products")
        rng = self.rng
        while True:
            if self.count < len(self.forced):
                product = self.products[self.forced[self.count]]
            else:
                product = self.products[int(rng.choice(len(self.products), p=self.weights))]
            col, row = (int(v) for v in rng.integers(0, _GRID, 2))
            v1_time = product.v1_times[int(rng.integers(len(product.v1_times)))]
            scene = self.scenes[product.name][int(rng.integers(len(self.scenes[product.name])))]
            patch = Patch(self.count, product, col, row, v1_time, scene, labels43)
            if (product.name, col, row) in self.used_cells or patch.v1_name in self.used_v1:
                continue
            self.used_cells.add((product.name, col, row))
            self.used_v1.add(patch.v1_name)
            self.count += 1
            return patch
