"""The metric scale over windows: chaining's relative scales fused with per-window measurements.

Why a filter: a single window's measurement can be wrong (a depth image full of glass, a wheel
slipping), and the chaining's relative scale between overlapping windows drifts slowly but is
precise from one window to the next. So the state is ``x = log(metres per window unit)`` of
the current window, with a variance ``P`` (log space: a relative error is the same whatever the
window's units), and per window:

1. predict through the chaining: ``x = x_prev + log(relative scale)``, ``P += (drift * q)**2``
   (``drift_per_window``: how far the chained scale may wander in one window with a clean
   overlap fit; ``q >= 1``, the chaining quality of ``pipeline/covariance.py``, is larger when
   the fit explained few overlap points or fell back on camera centres);
2. update with the window's measurement ``z`` (variance ``u**2`` from its own uncertainty),
   Kalman gain ``K = P / (P + u**2)``:

   * a measurement more than ``gate_sigmas`` from the prediction is rejected as an outlier and
     the window keeps the chained scale; after ``follow_after`` rejections in a row the filter
     follows the measurements after all (the chain, not the sensor, was wrong);
   * the correction ``K (z - x)`` is clipped to ``log(1 + q * max_rate)``: after a clean
     overlap fit one window can move the map's scale by at most ``max_rate``; a poor fit says
     little about the relative scale and holds the sensor back less (the clipped part stays in
     ``P``, so the uncertainty says the scale is still settling);
   * a window with no measurement (no valid depth, no motion) keeps the chained scale and says
     why.

Until the first valid measurement there is no metric scale: windows are placed at the
chaining's arbitrary scale and reported non-metric. ``healthy`` (the diagnostics' ``scale:
metric``) means: initialised, and the 1-sigma relative uncertainty is at most
``max_uncertainty`` (it grows by ``drift_per_window`` with every window that is not measured).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from vggt_ros.pipeline.types import ScaleMeasurement, ScaleStatus

__all__ = ["SCALE_SOURCES", "MEASURED_SOURCES", "ScaleFilterConfig", "ScaleFilter",
           "unfiltered_status"]

SCALE_SOURCES = ("none", "fixed", "depth", "odometry")
MEASURED_SOURCES = ("depth", "odometry")


@dataclass(frozen=True)
class ScaleFilterConfig:
    source: str  # depth | odometry
    max_rate: float = 0.05  # largest relative scale change one measurement may cause
    drift_per_window: float = 0.02  # relative 1-sigma the chained scale wanders per window
    gate_sigmas: float = 3.0
    follow_after: int = 3  # consecutive rejections after which the measurements are followed
    max_uncertainty: float = 0.05  # healthy while the relative 1-sigma is at most this


class ScaleFilter:
    """Kalman filter on the log scale (module docstring); one per trajectory (``reset``)."""

    def __init__(self, config: ScaleFilterConfig) -> None:
        if config.source not in MEASURED_SOURCES:
            raise ValueError(f"a scale filter needs a measured source {MEASURED_SOURCES}, "
                             f"got {config.source!r}")
        self.config = config
        self.windows_scaled = 0
        self.windows_skipped = 0
        self.windows_rejected = 0
        self.reset()

    def reset(self) -> None:
        """A new trajectory: its scale is unknown until its first measurement. The counters
        keep counting over the whole run."""
        self._log_scale: Optional[float] = None  # None: not initialised
        self._variance = math.inf
        self._chained = 1.0  # the arbitrary scale used before the first measurement
        self._rejections_in_row = 0

    @property
    def initialised(self) -> bool:
        return self._log_scale is not None

    @property
    def scale(self) -> float:
        return math.exp(self._log_scale) if self._log_scale is not None else self._chained

    @property
    def uncertainty(self) -> float:
        """Relative 1-sigma of the current scale (inf before the first measurement)."""
        return math.sqrt(self._variance)

    @property
    def healthy(self) -> bool:
        return self.initialised and self.uncertainty <= self.config.max_uncertainty

    def first(self, measurement: ScaleMeasurement) -> ScaleStatus:
        """The first window of a trajectory."""
        self.reset()
        return self._update(measurement)

    def next(self, relative_scale: float, measurement: ScaleMeasurement,
             chain_quality: float = 1.0) -> ScaleStatus:
        """A later window; ``relative_scale`` = previous-window units per new-window unit, as
        the chaining fitted it on the overlap, with its quality (>= 1, 1 = a clean fit)."""
        if not (math.isfinite(relative_scale) and relative_scale > 0):
            raise ValueError(f"relative scale must be finite and positive, got {relative_scale}")
        if not chain_quality >= 1.0:
            raise ValueError(f"chain quality must be >= 1, got {chain_quality}")
        if self._log_scale is None:
            self._chained *= relative_scale
        else:
            self._log_scale += math.log(relative_scale)
            self._variance += (self.config.drift_per_window * chain_quality) ** 2
        return self._update(measurement, chain_quality)

    def _update(self, measurement: ScaleMeasurement, chain_quality: float = 1.0
                ) -> ScaleStatus:
        if not measurement.valid:
            self.windows_skipped += 1
            return self._status("skipped", measurement, measurement.reason
                                or "no measurement")
        z = math.log(measurement.scale)
        r = max(measurement.uncertainty, 1e-6) ** 2
        if self._log_scale is None:
            self._log_scale, self._variance = z, r
            self.windows_scaled += 1
            return self._status("scaled", measurement, "first measurement of this trajectory")
        innovation = z - self._log_scale
        gate = self.config.gate_sigmas * math.sqrt(self._variance + r)
        if abs(innovation) > gate and self._rejections_in_row + 1 < self.config.follow_after:
            self._rejections_in_row += 1
            self.windows_rejected += 1
            sigmas = abs(innovation) / math.sqrt(self._variance + r)
            return self._status("rejected", measurement, (
                f"measured {measurement.scale:.4g} is {sigmas:.1f} sigma from the chained "
                f"{self.scale:.4g}: kept the chained scale"))
        followed = abs(innovation) > gate
        self._rejections_in_row = 0
        gain = self._variance / (self._variance + r)
        step = gain * innovation
        limit = math.log1p(self.config.max_rate * chain_quality)
        clipped = max(-limit, min(limit, step))
        self._log_scale += clipped
        self._variance = (1.0 - gain) * self._variance + (step - clipped) ** 2
        self.windows_scaled += 1
        reason = ""
        if followed:
            reason = (f"followed the measurements after {self.config.follow_after} rejections "
                      f"in a row")
        if clipped != step:
            reason = "; ".join(filter(None, (reason, f"correction limited to "
                                              f"{self.config.max_rate * chain_quality:.0%} "
                                              f"in this window")))
        return self._status("scaled", measurement, reason)

    def _status(self, verdict: str, measurement: ScaleMeasurement, reason: str) -> ScaleStatus:
        if not self.initialised:
            reason = f"not metric until the first {self.config.source} measurement: {reason}"
        elif not self.healthy:
            why = (f"too long without a usable {self.config.source} measurement"
                   if verdict != "scaled" else "the measurements disagree with the chaining")
            reason = "; ".join(filter(None, (reason, (
                f"uncertainty {self.uncertainty:.1%} above {self.config.max_uncertainty:.0%}: "
                f"{why}"))))
        return ScaleStatus(source=self.config.source, metric=self.healthy, scale=self.scale,
                           uncertainty=self.uncertainty, measured=measurement.scale,
                           verdict=verdict, reason=reason)


def unfiltered_status(source: str, scale: float) -> ScaleStatus:
    """The scale status of the sources without measurements: ``fixed`` (the user's metres per
    first-window unit, chained from there) and ``none`` (VGGT's arbitrary units)."""
    if source == "fixed":
        return ScaleStatus(source="fixed", metric=True, scale=scale, verdict="fixed")
    return ScaleStatus(source="none", metric=False, scale=scale, verdict="none",
                       reason="no scale source: VGGT's arbitrary units")
