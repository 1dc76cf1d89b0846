"""Spectral signatures of the 43 classes (independent of the seed), and of snow and clouds.

Bands: B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12 (L2A x10000) | VV VH (dB).
"""

from __future__ import annotations

import numpy as np

_MATERIALS = {
    "urban": (1100, 1200, 1300, 1350, 1550, 1750, 1850, 1950, 2050, 1900, 2300, 1900, -4.0, -11.0),
    "industry": (
        1500,
        1700,
        1850,
        1950,
        2100,
        2200,
        2300,
        2350,
        2400,
        2200,
        2700,
        2400,
        -3.0,
        -10.5,
    ),
    "asphalt": (900, 950, 1000, 1050, 1150, 1300, 1400, 1450, 1500, 1400, 1800, 1600, -9.0, -17.0),
    "soil": (900, 1000, 1300, 1600, 1900, 2100, 2300, 2400, 2550, 2300, 3200, 2600, -12.0, -20.0),
    "bright": (
        1800,
        2100,
        2500,
        2900,
        3100,
        3200,
        3300,
        3350,
        3450,
        3100,
        3900,
        3400,
        -13.0,
        -22.0,
    ),
    "crop": (500, 600, 900, 800, 1400, 2600, 3000, 3200, 3400, 3100, 2200, 1300, -10.5, -17.5),
    "grass": (400, 450, 800, 600, 1200, 2600, 3100, 3300, 3500, 3200, 2100, 1100, -11.0, -18.0),
    "broadleaf": (250, 300, 550, 300, 800, 2700, 3400, 3700, 3900, 3600, 1700, 800, -7.5, -13.0),
    "conifer": (200, 230, 400, 220, 550, 1500, 1850, 2000, 2100, 1950, 950, 420, -7.0, -12.5),
    "shrub": (400, 500, 750, 750, 1100, 1900, 2200, 2400, 2500, 2300, 2100, 1300, -9.0, -15.5),
    "dryshrub": (550, 650, 900, 1050, 1400, 1900, 2150, 2300, 2400, 2250, 2700, 1900, -10.0, -17.0),
    "wetland": (300, 350, 550, 450, 800, 1500, 1800, 1900, 2000, 1850, 1300, 700, -13.0, -20.0),
    "peat": (250, 300, 450, 400, 650, 1200, 1450, 1550, 1650, 1500, 1100, 600, -14.0, -21.0),
    "sand": (2000, 2300, 2700, 3000, 3200, 3300, 3400, 3450, 3550, 3200, 3800, 3300, -16.0, -24.0),
    "rock": (1300, 1450, 1650, 1850, 2000, 2150, 2250, 2300, 2400, 2200, 2900, 2500, -11.5, -19.5),
    "burnt": (450, 500, 550, 650, 750, 900, 1000, 1100, 1150, 1050, 1700, 1500, -12.5, -20.0),
    "water": (450, 420, 400, 250, 200, 150, 130, 110, 100, 80, 50, 35, -20.0, -26.0),
    "turbid": (600, 650, 750, 600, 550, 350, 300, 250, 230, 180, 90, 60, -18.0, -24.5),
    "sea": (400, 380, 330, 180, 140, 100, 90, 80, 70, 60, 40, 30, -22.0, -27.0),
    "salt": (2500, 2800, 3000, 3100, 3150, 3200, 3200, 3200, 3250, 3000, 2800, 2400, -17.0, -25.0),
    "mud": (700, 750, 850, 900, 950, 1000, 1050, 1100, 1150, 1050, 900, 650, -15.0, -22.0),
}
# Each class is a mix of materials (weights), in 43-class index order.
_RECIPES: tuple[dict[str, float], ...] = (
    {"urban": 1.0},  # Continuous urban fabric
    {"urban": 0.6, "grass": 0.4},  # Discontinuous urban fabric
    {"industry": 1.0},  # Industrial or commercial units
    {"asphalt": 0.8, "grass": 0.2},  # Road and rail networks
    {"industry": 0.6, "water": 0.4},  # Port areas
    {"asphalt": 0.5, "grass": 0.5},  # Airports
    {"bright": 0.8, "soil": 0.2},  # Mineral extraction sites
    {"soil": 0.6, "asphalt": 0.4},  # Dump sites
    {"soil": 0.7, "urban": 0.3},  # Construction sites
    {"grass": 0.6, "broadleaf": 0.2, "urban": 0.2},  # Green urban areas
    {"grass": 0.8, "urban": 0.2},  # Sport and leisure facilities
    {"crop": 0.6, "soil": 0.4},  # Non-irrigated arable land
    {"crop": 0.9, "soil": 0.1},  # Permanently irrigated land
    {"crop": 0.5, "water": 0.5},  # Rice fields
    {"shrub": 0.5, "soil": 0.5},  # Vineyards
    {"broadleaf": 0.5, "grass": 0.5},  # Fruit trees and berry plantations
    {"dryshrub": 0.7, "soil": 0.3},  # Olive groves
    {"grass": 1.0},  # Pastures
    {"crop": 0.5, "shrub": 0.5},  # Annual crops associated with permanent crops
    {"crop": 0.5, "grass": 0.3, "soil": 0.2},  # Complex cultivation patterns
    {"crop": 0.5, "broadleaf": 0.3, "grass": 0.2},  # Agriculture with natural vegetation
    {"broadleaf": 0.4, "dryshrub": 0.4, "grass": 0.2},  # Agro-forestry areas
    {"broadleaf": 1.0},  # Broad-leaved forest
    {"conifer": 1.0},  # Coniferous forest
    {"broadleaf": 0.5, "conifer": 0.5},  # Mixed forest
    {"grass": 0.8, "dryshrub": 0.2},  # Natural grassland
    {"shrub": 0.6, "peat": 0.4},  # Moors and heathland
    {"dryshrub": 1.0},  # Sclerophyllous vegetation
    {"shrub": 0.6, "broadleaf": 0.2, "conifer": 0.2},  # Transitional woodland/shrub
    {"sand": 1.0},  # Beaches, dunes, sands
    {"rock": 1.0},  # Bare rock
    {"rock": 0.6, "grass": 0.4},  # Sparsely vegetated areas
    {"burnt": 1.0},  # Burnt areas
    {"wetland": 0.8, "water": 0.2},  # Inland marshes
    {"peat": 1.0},  # Peatbogs
    {"wetland": 0.6, "turbid": 0.4},  # Salt marshes
    {"salt": 0.7, "water": 0.3},  # Salines
    {"mud": 0.7, "turbid": 0.3},  # Intertidal flats
    {"turbid": 1.0},  # Water courses
    {"water": 1.0},  # Water bodies
    {"water": 0.6, "turbid": 0.4},  # Coastal lagoons
    {"turbid": 0.7, "mud": 0.3},  # Estuaries
    {"sea": 1.0},  # Sea and ocean
)


def _signatures() -> tuple[np.ndarray, np.ndarray]:
    """(43, 12) S2 band means and (43, 2) VV, VH dB: each class's material mix, tinted."""
    rng = np.random.default_rng(20190307)  # fixed: signatures are the same for every seed
    s2 = np.zeros((43, 12), dtype=np.float64)
    s1 = np.zeros((43, 2), dtype=np.float64)
    for i, recipe in enumerate(_RECIPES):
        mix = sum(w * np.asarray(_MATERIALS[m], dtype=np.float64) for m, w in recipe.items())
        s2[i] = mix[:12] * np.exp(0.12 * rng.standard_normal(12))  # class-specific tint
        s1[i] = mix[12:] + rng.normal(0.0, 1.0, 2) - (2.0, 2.5)  # to the archive's mean dB
    return np.clip(s2, 20, 9000).astype(np.float32), s1.astype(np.float32)


SIGNATURES_S2, SIGNATURES_S1 = _signatures()  # (43, 12) S2 band means; (43, 2) VV, VH dB
SNOW = np.array((7000, 7400, 7300, 7200, 7000, 6900, 6800, 6700, 6600, 3000, 600, 500), np.float32)
CLOUD = np.array(
    (5200, 5400, 5500, 5600, 5700, 5800, 5900, 6000, 6000, 2600, 4600, 3600), np.float32
)
