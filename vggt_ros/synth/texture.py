"""Procedural, band-limited surface textures evaluated at ray hit points.

Every pattern is a function of the hit point's 2D surface coordinates in metres, so a
surface looks the same from every view (needed for photometric reprojection checks and for
a vision model to match features). Each pattern is faded towards its mean when its period
approaches the pixel footprint (metres covered by one pixel at that depth and incidence):
that is a cheap analytic pre-filter that keeps 160x120 renders free of moiré.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE, CHECKER, BRICK, STRIPES = 0, 1, 2, 3
PATTERNS = (NOISE, CHECKER, BRICK, STRIPES)


@dataclass
class Materials:
    """Per-material parameters, one row per material (indexed by a surface's material id)."""

    pattern: np.ndarray  # [M] int, one of PATTERNS
    color_a: np.ndarray  # [M,3] float in [0,1]
    color_b: np.ndarray  # [M,3]
    period: np.ndarray  # [M,2] pattern period along u, v (metres)
    mortar: np.ndarray  # [M] brick joint half-width (metres)
    noise_wavelength: np.ndarray  # [M] largest detail-noise wavelength (metres)
    noise_strength: np.ndarray  # [M] 0..1 multiplicative detail-noise contrast
    offset: np.ndarray  # [M,2] pattern origin shift so neighbouring surfaces do not align


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0,1) per integer lattice point and seed."""
    h = (ix.astype(np.int64).astype(np.uint64) * np.uint64(0x9E3779B1)
         ^ iy.astype(np.int64).astype(np.uint64) * np.uint64(0x85EBCA77)
         ^ np.asarray(seed).astype(np.uint64) * np.uint64(0xC2B2AE3D))
    h = h & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(12)
    h = (h * np.uint64(0x297A2D39)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    return h.astype(np.float64) / 4294967296.0


def value_noise(x: np.ndarray, y: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Smoothly interpolated lattice noise in [0,1], unit wavelength."""
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    v00, v10 = _hash01(ix, iy, seed), _hash01(ix + 1, iy, seed)
    v01, v11 = _hash01(ix, iy + 1, seed), _hash01(ix + 1, iy + 1, seed)
    top = v00 + (v10 - v00) * sx
    bottom = v01 + (v11 - v01) * sx
    return top + (bottom - top) * sy


def _fade(period: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """1 where a pattern of this period is well resolved, 0 where it would alias."""
    return np.clip((period / footprint - 2.0) / 2.0, 0.0, 1.0)


def fbm(u: np.ndarray, v: np.ndarray, seed: np.ndarray, wavelength: np.ndarray,
        footprint: np.ndarray, octaves: int = 5) -> np.ndarray:
    """Multi-scale noise in [0,1] around 0.5; octaves finer than the footprint fade out."""
    total = np.zeros_like(u)
    norm = 0.0
    amplitude = 1.0
    lam = np.asarray(wavelength, dtype=np.float64)
    for octave in range(octaves):
        n = value_noise(u / lam + 17.3 * octave, v / lam - 9.1 * octave, seed + octave)
        total += amplitude * _fade(lam, footprint) * (n - 0.5)
        norm += amplitude
        amplitude *= 0.55
        lam = lam * 0.5
    return 0.5 + total / norm * 1.6


def _square_wave(x: np.ndarray, period: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """+-1 square wave with edges softened to about one footprint."""
    sharp = period / (np.pi * np.maximum(footprint, 1e-6))
    return np.clip(np.sin(2 * np.pi * x / period) * sharp, -1.0, 1.0)


def _tone(cell_u: np.ndarray, cell_v: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Per-cell brightness in [0.7, 1]: breaks the exact repetition of tiles and stripes,
    which would otherwise make feature matching ambiguous."""
    return 0.7 + 0.3 * _hash01(cell_u, cell_v, seed + 101)


def _checker(u, v, period, seed, footprint):
    p = 0.5 + 0.5 * _square_wave(u, period[:, 0], footprint) * _square_wave(
        v, period[:, 1], footprint)
    p = p * _tone(np.floor(u / period[:, 0]), np.floor(v / period[:, 1]), seed)
    return 0.43 + (p - 0.43) * _fade(period.min(axis=1), footprint)


def _stripes(u, v, period, seed, footprint):
    p = 0.5 + 0.5 * _square_wave(v, period[:, 1], footprint)
    p = p * _tone(np.zeros_like(v), np.floor(v / period[:, 1]), seed)
    return 0.43 + (p - 0.43) * _fade(period[:, 1], footprint)


def _brick(u, v, period, mortar, seed, footprint):
    """Running-bond bricks (or planks when long and thin) with per-brick tone."""
    width, height = period[:, 0], period[:, 1]
    row = np.floor(v / height)
    u_shift = u + 0.5 * width * np.mod(row, 2)
    col = np.floor(u_shift / width)
    du = u_shift - col * width
    dv = v - row * height
    edge = np.minimum(np.minimum(du, width - du), np.minimum(dv, height - dv))
    soft = np.maximum(footprint, 1e-6)
    inside = np.clip((edge - mortar) / soft + 0.5, 0.0, 1.0)
    p = inside * _tone(col, row, seed)
    return 0.4 + (p - 0.4) * _fade(height, footprint)


def albedo(material_id: np.ndarray, u: np.ndarray, v: np.ndarray, seed: np.ndarray,
           footprint: np.ndarray, mats: Materials) -> np.ndarray:
    """[P,3] surface colour in [0,1] at surface coordinates (u, v) of the given materials."""
    u = u + mats.offset[material_id, 0]
    v = v + mats.offset[material_id, 1]
    period = mats.period[material_id]
    pattern_id = mats.pattern[material_id]
    mix = np.empty_like(u)
    for pid in PATTERNS:
        sel = pattern_id == pid
        if not sel.any():
            continue
        us, vs, fp, per = u[sel], v[sel], footprint[sel], period[sel]
        if pid == NOISE:  # marble-like: warped low-frequency noise
            warp = fbm(us, vs, seed[sel] + 7, per[:, 0], fp, octaves=3)
            mix[sel] = fbm(us + 1.5 * warp, vs - 1.5 * warp, seed[sel] + 11, per[:, 1], fp, 3)
        elif pid == CHECKER:
            mix[sel] = _checker(us, vs, per, seed[sel], fp)
        elif pid == BRICK:
            mix[sel] = _brick(us, vs, per, mats.mortar[material_id[sel]], seed[sel], fp)
        else:
            mix[sel] = _stripes(us, vs, per, seed[sel], fp)
    base = mats.color_a[material_id] + (
        mats.color_b[material_id] - mats.color_a[material_id]) * np.clip(mix, 0, 1)[:, None]
    lam = mats.noise_wavelength[material_id]
    detail = fbm(u, v, seed + 31, lam, footprint, octaves=6)
    strength = mats.noise_strength[material_id]
    base = base * (1.0 + strength * (detail - 0.5) * 1.2)[:, None]
    tint = np.stack([value_noise(u / 1.7, v / 1.7, seed + 53 + c) for c in range(3)], axis=1)
    return np.clip(base * (0.85 + 0.3 * tint), 0.0, 1.0)


def random_materials(rng: np.random.Generator, kinds: list[str]) -> Materials:
    """Materials for surfaces of the given kinds ('floor', 'ceiling', 'wall', 'object')."""
    allowed = {"floor": (CHECKER, BRICK, NOISE), "ceiling": (NOISE, CHECKER),
               "wall": (BRICK, STRIPES, NOISE, CHECKER), "object": PATTERNS}
    m = len(kinds)
    pattern = np.array([rng.choice(allowed[k]) for k in kinds], dtype=np.int64)
    color_a = _random_colors(rng, m)
    color_b = np.clip(color_a * rng.uniform(0.35, 0.7, (m, 1)) + rng.uniform(
        -0.15, 0.15, (m, 3)), 0.03, 1.0)
    period = np.empty((m, 2))
    mortar = rng.uniform(0.008, 0.02, m)
    for i, pid in enumerate(pattern):
        if pid == BRICK:
            plank = kinds[i] == "floor"
            period[i] = (rng.uniform(0.8, 1.4), rng.uniform(0.12, 0.2)) if plank else (
                rng.uniform(0.22, 0.35), rng.uniform(0.08, 0.12))
        elif pid == CHECKER:
            period[i] = rng.uniform(0.3, 0.8) * np.array([1.0, rng.uniform(0.8, 1.25)])
        elif pid == STRIPES:
            period[i] = (1.0, rng.uniform(0.12, 0.5))
        else:
            period[i] = (rng.uniform(0.8, 2.0), rng.uniform(0.3, 0.9))
    return Materials(pattern=pattern, color_a=color_a, color_b=color_b, period=period,
                     mortar=mortar, noise_wavelength=rng.uniform(0.3, 0.9, m),
                     noise_strength=rng.uniform(0.5, 0.9, m),
                     offset=rng.uniform(-5.0, 5.0, (m, 2)))


def _random_colors(rng: np.random.Generator, m: int) -> np.ndarray:
    """Saturated-enough, mid-brightness colours (HSV sampled, converted to RGB)."""
    hue = rng.uniform(0.0, 1.0, m)
    sat = rng.uniform(0.15, 0.7, m)
    val = rng.uniform(0.55, 0.95, m)
    k = np.mod(np.array([5.0, 3.0, 1.0])[None, :] + hue[:, None] * 6.0, 6.0)
    return val[:, None] - val[:, None] * sat[:, None] * np.clip(
        np.minimum(k, 4.0 - k), 0.0, 1.0)
