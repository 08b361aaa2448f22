"""Procedural, band-limited surface textures evaluated at ray hit points.

Every pattern is a function of the hit point's 2D surface coordinates in metres, so a
surface looks the same from every view (needed for photometric reprojection checks and for
a vision model to match features). Each pattern is faded towards its mean when its period
approaches the pixel footprint (metres covered by one pixel at that depth and incidence):
that is a cheap analytic pre-filter that keeps 160x120 renders free of moiré.

The per-pixel functions are torch code so that training can render on its GPU; they work on
float64 tensors of any device and use only elementwise operations with a fixed evaluation
order, so CPU and GPU agree up to the rounding of ``sin``. Material parameters are drawn
with NumPy (:func:`random_materials`, cheap and seeded like the rest of the scene) and moved
to the device once per render as :class:`MaterialTensors`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

NOISE, CHECKER, BRICK, STRIPES = 0, 1, 2, 3
PATTERNS = (NOISE, CHECKER, BRICK, STRIPES)
_LOW32 = 0xFFFFFFFF
_HASH_X, _HASH_Y, _HASH_SEED = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D  # lattice-key factors


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


@dataclass
class MaterialTensors:
    """:class:`Materials` on one torch device (int64 pattern, float64 parameters)."""

    pattern: torch.Tensor
    color_a: torch.Tensor
    color_b: torch.Tensor
    period: torch.Tensor
    mortar: torch.Tensor
    noise_wavelength: torch.Tensor
    noise_strength: torch.Tensor
    offset: torch.Tensor

    @classmethod
    def from_materials(cls, mats: Materials, device: torch.device | str) -> MaterialTensors:
        return cls(**{f.name: torch.as_tensor(getattr(mats, f.name), device=device)
                      for f in fields(Materials)})


def _mul_low32(a: torch.Tensor, factor: int) -> torch.Tensor:
    """``(a * factor) mod 2**32`` for int64 ``0 <= a < 2**32`` and ``0 <= factor < 2**32``.

    The unsigned product needs 64 bits, which int64 cannot hold. A factor of 2**31 or more is
    replaced by ``factor - 2**32`` (same residue mod 2**32): the factor's magnitude is then at
    most 2**31, so the product lies strictly inside the int64 range, and masking its two's
    complement keeps exactly the low 32 bits.
    """
    return (a * (factor - (1 << 32) if factor >= 1 << 31 else factor)) & _LOW32


def _hash01(ix: torch.Tensor, iy: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Deterministic pseudo-random value in [0,1) per integer lattice point and seed.

    A 32-bit integer hash. The bits are those of the original uint64 formulation (products
    masked to their low 32 bits, which depend only on the operands' low 32 bits), so textures
    did not change when the renderer moved from NumPy to torch. Coordinates may be integral
    floats (truncated like ``astype(int64)``) or integers; negative values wrap.
    """
    return _hash_finish(_mul_low32(ix.long() & _LOW32, _HASH_X)
                        ^ _mul_low32(iy.long() & _LOW32, _HASH_Y)
                        ^ _mul_low32(seed.long() & _LOW32, _HASH_SEED))


def _hash_finish(h: torch.Tensor) -> torch.Tensor:
    """Avalanche of 32-bit keys (int64 values below 2**32) to floats in [0,1)."""
    h = h ^ (h >> 15)
    h = _mul_low32(h, 0x2C1B3C6D)
    h = h ^ (h >> 12)
    h = _mul_low32(h, 0x297A2D39)
    h = h ^ (h >> 15)
    return h.double() / 4294967296.0


def value_noise(x: torch.Tensor, y: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Smoothly interpolated lattice noise in [0,1], unit wavelength."""
    ix, iy = torch.floor(x), torch.floor(y)
    fx, fy = x - ix, y - iy
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    # _hash01 of the four cell corners, sharing its products: (i + 1) * c = i * c + c (mod 2**32).
    hs = _mul_low32(seed.long() & _LOW32, _HASH_SEED)
    hx = _mul_low32(ix.long() & _LOW32, _HASH_X)
    hx0, hx1 = hx ^ hs, ((hx + _HASH_X) & _LOW32) ^ hs
    hy0 = _mul_low32(iy.long() & _LOW32, _HASH_Y)
    hy1 = (hy0 + _HASH_Y) & _LOW32
    v00, v10 = _hash_finish(hx0 ^ hy0), _hash_finish(hx1 ^ hy0)
    v01, v11 = _hash_finish(hx0 ^ hy1), _hash_finish(hx1 ^ hy1)
    top = v00 + (v10 - v00) * sx
    bottom = v01 + (v11 - v01) * sx
    return top + (bottom - top) * sy


def _fade(period: torch.Tensor, footprint: torch.Tensor) -> torch.Tensor:
    """1 where a pattern of this period is well resolved, 0 where it would alias."""
    return torch.clamp((period / footprint - 2.0) / 2.0, 0.0, 1.0)


def fbm(u: torch.Tensor, v: torch.Tensor, seed: torch.Tensor, wavelength: torch.Tensor,
        footprint: torch.Tensor, octaves: int = 5) -> torch.Tensor:
    """Multi-scale noise in [0,1] around 0.5; octaves finer than the footprint fade out.

    All octaves are evaluated as one [octaves, P] batch: a few large tensor operations
    instead of many small ones, whose fixed cost dominates on a CPU. Halving a wavelength is
    exact and the octaves are summed in order, so this equals a loop over octaves.
    """
    amplitude, norm, rows = 1.0, 0.0, []
    for octave in range(octaves):
        rows.append([0.5 ** octave, 17.3 * octave, 9.1 * octave, amplitude])
        norm += amplitude
        amplitude *= 0.55
    scale, shift_u, shift_v, weight = torch.tensor(
        rows, dtype=torch.float64, device=u.device).T[..., None]  # each [octaves, 1]
    lam = wavelength * scale
    n = value_noise(u / lam + shift_u, v / lam - shift_v,
                    seed + torch.arange(octaves, device=u.device)[:, None])
    terms = weight * _fade(lam, footprint) * (n - 0.5)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return 0.5 + total / norm * 1.6


def _square_wave(x: torch.Tensor, period: torch.Tensor, footprint: torch.Tensor) -> torch.Tensor:
    """+-1 square wave with edges softened to about one footprint."""
    sharp = period / (math.pi * torch.clamp(footprint, min=1e-6))
    return torch.clamp(torch.sin(2 * math.pi * x / period) * sharp, -1.0, 1.0)


def _tone(cell_u: torch.Tensor, cell_v: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Per-cell brightness in [0.7, 1]: breaks the exact repetition of tiles and stripes,
    which would otherwise make feature matching ambiguous."""
    return 0.7 + 0.3 * _hash01(cell_u, cell_v, seed + 101)


def _checker(u, v, period, seed, footprint):
    p = 0.5 + 0.5 * _square_wave(u, period[:, 0], footprint) * _square_wave(
        v, period[:, 1], footprint)
    p = p * _tone(torch.floor(u / period[:, 0]), torch.floor(v / period[:, 1]), seed)
    return 0.43 + (p - 0.43) * _fade(period.amin(dim=1), footprint)


def _stripes(u, v, period, seed, footprint):
    p = 0.5 + 0.5 * _square_wave(v, period[:, 1], footprint)
    p = p * _tone(torch.zeros_like(v), torch.floor(v / period[:, 1]), seed)
    return 0.43 + (p - 0.43) * _fade(period[:, 1], footprint)


def _brick(u, v, period, mortar, seed, footprint):
    """Running-bond bricks (or planks when long and thin) with per-brick tone."""
    width, height = period[:, 0], period[:, 1]
    row = torch.floor(v / height)
    u_shift = u + 0.5 * width * torch.remainder(row, 2)
    col = torch.floor(u_shift / width)
    du = u_shift - col * width
    dv = v - row * height
    edge = torch.minimum(torch.minimum(du, width - du), torch.minimum(dv, height - dv))
    soft = torch.clamp(footprint, min=1e-6)
    inside = torch.clamp((edge - mortar) / soft + 0.5, 0.0, 1.0)
    p = inside * _tone(col, row, seed)
    return 0.4 + (p - 0.4) * _fade(height, footprint)


def albedo(material_id: torch.Tensor, u: torch.Tensor, v: torch.Tensor, seed: torch.Tensor,
           footprint: torch.Tensor, mats: MaterialTensors) -> torch.Tensor:
    """[P,3] surface colour in [0,1] at surface coordinates (u, v) of the given materials."""
    u = u + mats.offset[material_id, 0]
    v = v + mats.offset[material_id, 1]
    period = mats.period[material_id]
    pattern_id = mats.pattern[material_id]
    mix = torch.empty_like(u)
    for pid in PATTERNS:
        # Each pattern is evaluated on its own pixels only: the noise pattern costs several
        # times the others, so evaluating all of them everywhere would be much slower.
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
        mats.color_b[material_id] - mats.color_a[material_id]) * torch.clamp(mix, 0, 1)[:, None]
    lam = mats.noise_wavelength[material_id]
    detail = fbm(u, v, seed + 31, lam, footprint, octaves=6)
    strength = mats.noise_strength[material_id]
    base = base * (1.0 + strength * (detail - 0.5) * 1.2)[:, None]
    channel = torch.arange(3, device=u.device)[:, None]
    tint = value_noise(u / 1.7, v / 1.7, seed + 53 + channel).T  # [P,3]
    return torch.clamp(base * (0.85 + 0.3 * tint), 0.0, 1.0)


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
