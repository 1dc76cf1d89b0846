"""The one definition of the label nomenclatures: 43 CORINE level-3 classes and the official
19-class BigEarthNet nomenclature, with the official 43→19 conversion.

Facts from the official ``label_indices.json`` (tests compare against it) and the CORINE Land
Cover nomenclature (codes and level-1/2 groups).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

LEVEL1 = {
    1: "Artificial surfaces",
    2: "Agricultural areas",
    3: "Forest and semi natural areas",
    4: "Wetlands",
    5: "Water bodies",
}
LEVEL2 = {
    11: "Urban fabric",
    12: "Industrial, commercial and transport units",
    13: "Mine, dump and construction sites",
    14: "Artificial, non-agricultural vegetated areas",
    21: "Arable land",
    22: "Permanent crops",
    23: "Pastures",
    24: "Heterogeneous agricultural areas",
    31: "Forests",
    32: "Scrub and/or herbaceous vegetation associations",
    33: "Open spaces with little or no vegetation",
    41: "Inland wetlands",
    42: "Maritime wetlands",
    51: "Inland waters",
    52: "Marine waters",
}

# (CLC level-3 code, name as written in v1 JSON files); list position = official 43-class index.
_LABELS_43: tuple[tuple[int, str], ...] = (
    (111, "Continuous urban fabric"),
    (112, "Discontinuous urban fabric"),
    (121, "Industrial or commercial units"),
    (122, "Road and rail networks and associated land"),
    (123, "Port areas"),
    (124, "Airports"),
    (131, "Mineral extraction sites"),
    (132, "Dump sites"),
    (133, "Construction sites"),
    (141, "Green urban areas"),
    (142, "Sport and leisure facilities"),
    (211, "Non-irrigated arable land"),
    (212, "Permanently irrigated land"),
    (213, "Rice fields"),
    (221, "Vineyards"),
    (222, "Fruit trees and berry plantations"),
    (223, "Olive groves"),
    (231, "Pastures"),
    (241, "Annual crops associated with permanent crops"),
    (242, "Complex cultivation patterns"),
    (243, "Land principally occupied by agriculture, with significant areas of natural vegetation"),
    (244, "Agro-forestry areas"),
    (311, "Broad-leaved forest"),
    (312, "Coniferous forest"),
    (313, "Mixed forest"),
    (321, "Natural grassland"),
    (322, "Moors and heathland"),
    (323, "Sclerophyllous vegetation"),
    (324, "Transitional woodland/shrub"),
    (331, "Beaches, dunes, sands"),
    (332, "Bare rock"),
    (333, "Sparsely vegetated areas"),
    (334, "Burnt areas"),
    (411, "Inland marshes"),
    (412, "Peatbogs"),
    (421, "Salt marshes"),
    (422, "Salines"),
    (423, "Intertidal flats"),
    (511, "Water courses"),
    (512, "Water bodies"),
    (521, "Coastal lagoons"),
    (522, "Estuaries"),
    (523, "Sea and ocean"),
)

# (19-class name, indices into the 43 classes); list position = official 19-class index.
_LABELS_19: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Urban fabric", (0, 1)),
    ("Industrial or commercial units", (2,)),
    ("Arable land", (11, 12, 13)),
    ("Permanent crops", (14, 15, 16, 18)),
    ("Pastures", (17,)),
    ("Complex cultivation patterns", (19,)),
    (
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
        (20,),
    ),
    ("Agro-forestry areas", (21,)),
    ("Broad-leaved forest", (22,)),
    ("Coniferous forest", (23,)),
    ("Mixed forest", (24,)),
    ("Natural grassland and sparsely vegetated areas", (25, 31)),
    ("Moors, heathland and sclerophyllous vegetation", (26, 27)),
    ("Transitional woodland, shrub", (28,)),
    ("Beaches, dunes, sands", (29,)),
    ("Inland wetlands", (33, 34)),
    ("Coastal wetlands", (35, 36)),
    ("Inland waters", (38, 39)),
    ("Marine waters", (40, 41, 42)),
)


@dataclass(frozen=True)
class Class43:
    """One CORINE level-3 class of the 43-class nomenclature."""

    index: int
    name: str
    clc_code: int
    level1: str
    level2: str
    target19: int | None  # index in the 19-class nomenclature, None if dropped


@dataclass(frozen=True)
class Class19:
    """One class of the official 19-class BigEarthNet nomenclature."""

    index: int
    name: str
    sources43: tuple[int, ...]

    @property
    def clc_codes(self) -> tuple[int, ...]:
        """CLC level-3 codes grouped into this class (maps v2 reference-map pixels)."""
        return tuple(_LABELS_43[i][0] for i in self.sources43)


CLASSES_19: tuple[Class19, ...] = tuple(
    Class19(i, name, src) for i, (name, src) in enumerate(_LABELS_19)
)
_TARGET19 = {j: c.index for c in CLASSES_19 for j in c.sources43}
CLASSES_43: tuple[Class43, ...] = tuple(
    Class43(i, name, code, LEVEL1[code // 100], LEVEL2[code // 10], _TARGET19.get(i))
    for i, (code, name) in enumerate(_LABELS_43)
)
NAMES_43: tuple[str, ...] = tuple(c.name for c in CLASSES_43)
NAMES_19: tuple[str, ...] = tuple(c.name for c in CLASSES_19)
INDEX_43: dict[str, int] = {n: i for i, n in enumerate(NAMES_43)}
INDEX_19: dict[str, int] = {n: i for i, n in enumerate(NAMES_19)}
CLC_CODE_TO_19: dict[int, int] = {code: c.index for c in CLASSES_19 for code in c.clc_codes}
NOMENCLATURES = {"43": NAMES_43, "19": NAMES_19}


class UnknownLabelError(ValueError):
    """A label name that is not in the nomenclature."""


def _indices(names: Iterable[str], index: dict[str, int], which: str) -> list[int]:
    unknown = [n for n in names if n not in index]
    if unknown:
        raise UnknownLabelError(f"unknown {which}-class label(s): {unknown}")
    return sorted({index[n] for n in names})


def to_19(labels43: Iterable[str]) -> list[str]:
    """Official 43→19 conversion of a list of 43-class names; result in 19-class index order."""
    idx = _indices(labels43, INDEX_43, "43")
    targets = sorted({CLASSES_43[i].target19 for i in idx} - {None})
    return [NAMES_19[t] for t in targets]


def multi_hot(labels: Iterable[str], nomenclature: str) -> np.ndarray:
    """Multi-hot uint8 vector of ``labels`` in the ``"43"`` or ``"19"`` nomenclature."""
    names = NOMENCLATURES[nomenclature]
    vec = np.zeros(len(names), dtype=np.uint8)
    vec[_indices(labels, INDEX_43 if nomenclature == "43" else INDEX_19, nomenclature)] = 1
    return vec


def sort_labels(labels: Iterable[str], nomenclature: str) -> list[str]:
    """Labels in nomenclature index order, duplicates removed (raises on unknown names)."""
    names = NOMENCLATURES[nomenclature]
    index = INDEX_43 if nomenclature == "43" else INDEX_19
    return [names[i] for i in _indices(labels, index, nomenclature)]


def reference_map_to_19(codes: np.ndarray) -> np.ndarray:
    """Map a reference map of CLC level-3 codes to 19-class indices (255 = nodata/dropped)."""
    lut = np.full(1000, 255, dtype=np.uint8)
    for code, idx in CLC_CODE_TO_19.items():
        lut[code] = idx
    return lut[np.clip(codes, 0, 999)]
