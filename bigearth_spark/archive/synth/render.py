"""Pixels of one patch: a region per label, each filled with its class's spectral signature plus
smooth illumination and pixel noise, at each band's native resolution."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bigearth_spark.archive.bands import S1_BANDS, S2_BANDS
from bigearth_spark.archive.labels import CLASSES_43

from .spectra import CLOUD, SIGNATURES_S1, SIGNATURES_S2, SNOW

_CLC = np.array([c.clc_code for c in CLASSES_43], dtype=np.uint16)
_SIZE = 120


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Bilinear upsampling of n_in samples to n_out (pixel centres aligned), as a matrix."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] = 1 - frac
    m[np.arange(n_out), i0 + 1] = frac
    return m


_HALF = _SIZE // 2  # regions are drawn on the 20 m grid (CORINE polygons are coarse anyway)
_UP = {(size, n): _interp_matrix(size, n) for size in (_SIZE, _HALF) for n in (4, 6)}
_YY, _XX = np.mgrid[0:_HALF, 0:_HALF].astype(np.float32)
_I10 = [j for j, b in enumerate(S2_BANDS) if b.size == _SIZE]
_I20 = [j for j, b in enumerate(S2_BANDS) if b.size == _HALF]
_I60 = [j for j, b in enumerate(S2_BANDS) if b.size == _SIZE // 6]


def _smooth(rng: np.random.Generator, n: int = 6, size: int = _SIZE) -> np.ndarray:
    """A smooth random field of size x size (bilinear upsampling of n x n white noise)."""
    up = _UP[(size, n)]
    return (up @ rng.standard_normal((n, n)) @ up.T).astype(np.float32)


def _regions(rng: np.random.Generator, k: int) -> np.ndarray:
    """Split the 120x120 patch into k irregular regions (warped weighted Voronoi cells on the 20 m
    grid), each of at least ~300 pixels so that every label shows at 20 m and 60 m too."""
    if k == 1:
        return np.zeros((_SIZE, _SIZE), dtype=np.intp)
    seeds = rng.uniform(6, _HALF - 6, (k, 2)).astype(np.float32)
    weights = rng.uniform(0.7, 1.4, k).astype(np.float32)
    dist = np.empty((k, _HALF, _HALF), dtype=np.float32)
    for i in range(k):
        d = np.hypot(_YY - seeds[i, 0], _XX - seeds[i, 1]) * weights[i]
        dist[i] = d + 7.0 * _smooth(rng, 6, _HALF)
    reg = dist.argmin(axis=0)
    for i in np.argsort(np.bincount(reg.ravel(), minlength=k))[::-1]:
        if np.count_nonzero(reg == i) < 75:
            reg[np.hypot(_YY - seeds[i, 0], _XX - seeds[i, 1]) < 5.3] = i
    if np.bincount(reg.ravel(), minlength=k).min() < 75:  # overlapping seeds: stripes
        reg = np.minimum((_XX * k / _HALF).astype(np.intp), k - 1)
    return reg.repeat(2, axis=0).repeat(2, axis=1)


def _overlay(field: np.ndarray, rng: np.random.Generator, colour: np.ndarray, shadow: bool) -> None:
    """Blend a snow or cloud layer (soft-edged blobs) into the (12, 120, 120) field in place."""
    alpha = np.clip(1.5 * _smooth(rng, 4) + 0.3, 0.0, 1.0)
    if shadow:  # cloud shadow: a darkened, shifted copy of the cloud
        field *= 1 - 0.55 * np.roll(alpha, (14, 18), axis=(0, 1)) * (1 - alpha)
    field *= 1 - alpha
    field += alpha * colour[:, None, None]


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Area average of (bands, n, n) to (bands, n/f, n/f)."""
    out = np.zeros((a.shape[0], a.shape[1] // f, a.shape[2] // f), dtype=np.float32)
    for dy in range(f):
        for dx in range(f):
            out += a[:, dy::f, dx::f]
    out *= 1.0 / (f * f)
    return out


def _noisy_uint16(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add signal-dependent pixel noise to x in place; round to the valid uint16 range."""
    x += (0.03 * x + 15.0) * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(np.rint(x), 1, 10000).astype(np.uint16)


def render_patch(
    rng: np.random.Generator, labels43: Sequence[int], snow: bool, cloud: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """(S2 bands at native resolution, S1 VV/VH, reference map of CLC codes) of one patch."""
    lab = np.asarray(labels43, dtype=np.intp)
    reg = _regions(rng, len(lab))
    field = SIGNATURES_S2[lab].T[:, reg]  # (12, 120, 120): each region its class's signature
    field *= 1.0 + 0.06 * _smooth(rng, 4)  # illumination / texture
    if snow:
        _overlay(field, rng, SNOW, shadow=False)
    if cloud:
        _overlay(field, rng, CLOUD, shadow=True)
    f20 = _block_mean(field, 2)
    native = {
        10: _noisy_uint16(field[_I10], rng),
        20: _noisy_uint16(f20[_I20], rng),
        60: _noisy_uint16(_block_mean(f20[_I60], 3), rng),
    }
    pos = {10: _I10, 20: _I20, 60: _I60}
    s2 = {
        b.name: native[b.resolution_m][pos[b.resolution_m].index(j)] for j, b in enumerate(S2_BANDS)
    }
    db = SIGNATURES_S1[lab].T[:, reg] + 0.8 * _smooth(rng, 4)  # (2, 120, 120) dB
    db += 1.5 * rng.standard_normal(db.shape, dtype=np.float32)
    s1 = {b.name: db[j] for j, b in enumerate(S1_BANDS)}
    return s2, s1, _CLC[lab][reg]
