"""Labels of the synthetic patches, drawn like those of the real archive."""

from __future__ import annotations

import numpy as np

from bigearth_spark.archive.labels import CLASSES_43, NAMES_43

# Approximate number of v1 patches (of 590,326) carrying each of the 43 classes.
_FREQ_BY_NAME = {
    "Continuous urban fabric": 11_000,
    "Discontinuous urban fabric": 69_000,
    "Industrial or commercial units": 12_000,
    "Road and rail networks and associated land": 3_400,
    "Port areas": 500,
    "Airports": 1_000,
    "Mineral extraction sites": 4_600,
    "Dump sites": 1_000,
    "Construction sites": 1_200,
    "Green urban areas": 1_800,
    "Sport and leisure facilities": 5_000,
    "Non-irrigated arable land": 196_000,
    "Permanently irrigated land": 13_000,
    "Rice fields": 3_800,
    "Vineyards": 9_500,
    "Fruit trees and berry plantations": 5_000,
    "Olive groves": 12_000,
    "Pastures": 103_000,
    "Annual crops associated with permanent crops": 7_000,
    "Complex cultivation patterns": 107_000,
    "Land principally occupied by agriculture, with significant areas of natural vegetation": (
        147_000
    ),
    "Agro-forestry areas": 30_000,
    "Broad-leaved forest": 151_000,
    "Coniferous forest": 211_000,
    "Mixed forest": 217_000,
    "Natural grassland": 12_000,
    "Moors and heathland": 6_000,
    "Sclerophyllous vegetation": 11_000,
    "Transitional woodland/shrub": 173_000,
    "Beaches, dunes, sands": 1_500,
    "Bare rock": 3_300,
    "Sparsely vegetated areas": 1_600,
    "Burnt areas": 300,
    "Inland marshes": 6_000,
    "Peatbogs": 23_000,
    "Salt marshes": 1_600,
    "Salines": 400,
    "Intertidal flats": 1_000,
    "Water courses": 10_000,
    "Water bodies": 83_000,
    "Coastal lagoons": 1_500,
    "Estuaries": 1_100,
    "Sea and ocean": 81_000,
}
LABEL_FREQUENCIES: tuple[int, ...] = tuple(_FREQ_BY_NAME[n] for n in NAMES_43)
_LABEL_P = np.asarray(LABEL_FREQUENCIES, dtype=np.float64) / sum(LABEL_FREQUENCIES)
_N_LABELS_P = np.array([0.13, 0.25, 0.30, 0.20, 0.12])  # 1..5 labels a patch, mean 2.93
_DROPPED = tuple(c.index for c in CLASSES_43 if c.target19 is None)


def sample_labels43(rng: np.random.Generator, need_19: bool = True) -> list[int]:
    """Draw one patch's 43-class label indices (sorted): 1-5 labels, classes weighted by their
    frequency in the real archive. ``need_19``: redraw until one label survives the 43→19
    conversion (else the patch would have no 19-class target)."""
    while True:
        k = int(rng.choice(5, p=_N_LABELS_P)) + 1
        idx = sorted(int(i) for i in rng.choice(43, size=k, replace=False, p=_LABEL_P))
        if not need_19 or any(CLASSES_43[i].target19 is not None for i in idx):
            return idx


def sample_no19_labels(rng: np.random.Generator) -> list[int]:
    """Draw the labels (sorted) of a patch without 19-class target: 1-2 of the classes that the
    19-class nomenclature drops."""
    k = int(rng.integers(1, 3))
    return sorted(int(j) for j in rng.choice(_DROPPED, size=k, replace=False))


def flag_counts(n: int) -> tuple[int, int, int]:
    """(snow, cloud, no-19) counts among n good patches: ~10 %, ~2 %, a few."""
    if n < 10:
        return (1 if n >= 4 else 0), (1 if n >= 6 else 0), (1 if n >= 8 else 0)
    return max(1, round(0.10 * n)), max(1, round(0.02 * n)), max(1, min(10, round(n / 400)))
