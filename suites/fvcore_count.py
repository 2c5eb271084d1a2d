"""fvcore's own count in the history, beside the project's counter (``suites/flops.py``).

``bench.measure.counting.fvcore_count``: fvcore's FlopCountAnalysis and
ActivationCountAnalysis with the SDPA handle added, on real CPU tensors (zero weights,
one thread), for the small models the timed suites use at their size. fvcore cannot
trace these models on the meta device (its jit trace of convolution fails there), so it
runs them; a few seconds for all three. Deterministic: up is bad.

``FvcoreResolution``, ``FvcorePixels`` and ``FvcorePatchSize`` count the quick preset's
configurations at every size of the measured curves (``suites/curves.py``), so fvcore's
count sits beside the measured latency and memory on the same axes.
"""

from __future__ import annotations

import itertools

from bench.measure import counting
from bench.schema import Case

from .common import (
    CURVE_IMG_SIZES,
    CURVE_PATCH_IMG_SIZE,
    CURVE_PATCH_SIZES,
    PIXEL_IMG_SIZES,
    PIXEL_SERIES,
    TIMED_IMG_SIZE,
    TIMED_MODELS,
    TOKEN_SERIES,
    series_case,
)


class Fvcore:
    """fvcore's MACs and activations per model at TIMED_IMG_SIZE (batch 1)."""

    params = (TIMED_MODELS,)
    param_names = ("model",)

    def setup_cache(self) -> dict[str, counting.FvcoreCount]:
        return {model: counting.fvcore_count(Case(model, TIMED_IMG_SIZE)) for model in TIMED_MODELS}

    def track_fvcore_gmacs(self, counts: dict[str, counting.FvcoreCount], model: str) -> float:
        return counts[model].macs / 1e9

    track_fvcore_gmacs.unit = "GMACs"

    def track_fvcore_matmul_gmacs(self, counts: dict[str, counting.FvcoreCount], model: str) -> float:
        return counts[model].matmul_macs / 1e9

    track_fvcore_matmul_gmacs.unit = "GMACs"

    def track_fvcore_activations(self, counts: dict[str, counting.FvcoreCount], model: str) -> int:
        return counts[model].activations

    track_fvcore_activations.unit = "activations"


def _axis_case(axis: str, series: str, size: int) -> Case:
    if axis == "patch_size":
        return series_case(series, CURVE_PATCH_IMG_SIZE, size)
    return series_case(series, size)


# (axis, series, sizes) of every fvcore count on the curves' axes
_AXIS_GRID = (
    ("resolution", TOKEN_SERIES, CURVE_IMG_SIZES),
    ("resolution", PIXEL_SERIES, PIXEL_IMG_SIZES),
    ("patch_size", TOKEN_SERIES, CURVE_PATCH_SIZES),
)


class _FvcoreAxis:
    """fvcore's count of the quick preset's configurations along one axis (the sizes of ``suites/curves.py``).

    One ``setup_cache`` (asv keys it by its source line, so the three classes below share it) counts every
    series at every size of every axis once per commit (batch 1, the preset's overrides).
    """

    axis = "resolution"

    def setup_cache(self) -> dict[tuple[str, str, int], counting.FvcoreCount]:
        return {
            (axis, series, size): counting.fvcore_count(_axis_case(axis, series, size))
            for axis, series_names, sizes in _AXIS_GRID
            for series, size in itertools.product(series_names, sizes)
        }

    def track_fvcore_gmacs(
        self, counts: dict[tuple[str, str, int], counting.FvcoreCount], series: str, size: int
    ) -> float:
        return counts[self.axis, series, size].macs / 1e9

    track_fvcore_gmacs.unit = "GMACs"

    def track_fvcore_matmul_gmacs(
        self, counts: dict[tuple[str, str, int], counting.FvcoreCount], series: str, size: int
    ) -> float:
        return counts[self.axis, series, size].matmul_macs / 1e9

    track_fvcore_matmul_gmacs.unit = "GMACs"

    def track_fvcore_activations(
        self, counts: dict[tuple[str, str, int], counting.FvcoreCount], series: str, size: int
    ) -> int:
        return counts[self.axis, series, size].activations

    track_fvcore_activations.unit = "activations"


class FvcoreResolution(_FvcoreAxis):
    """Token models at patch 4 over CURVE_IMG_SIZES."""

    params = (TOKEN_SERIES, CURVE_IMG_SIZES)
    param_names = ("series", "img_size")


class FvcorePixels(_FvcoreAxis):
    """ResNet-18 over PIXEL_IMG_SIZES."""

    params = (PIXEL_SERIES, PIXEL_IMG_SIZES)
    param_names = ("series", "img_size")


class FvcorePatchSize(_FvcoreAxis):
    """Token models at CURVE_PATCH_IMG_SIZE over CURVE_PATCH_SIZES."""

    axis = "patch_size"
    params = (TOKEN_SERIES, CURVE_PATCH_SIZES)
    param_names = ("series", "patch_size")
