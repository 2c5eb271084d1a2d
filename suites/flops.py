"""Parameters and MACs per model and resolution: deterministic, so any move is a code change."""

from __future__ import annotations

from bench.measure import counting
from bench.schema import Case, Counts

from .common import COUNTED_MODELS, RESOLUTIONS, Counted, CountedCache


def count_cases() -> dict[tuple[str, int], Counts]:
    """Every case counted (a few seconds), for :class:`~suites.common.Counted`'s one ``setup_cache``."""
    return {(m, s): counting.count(Case(m, s)) for m in COUNTED_MODELS for s in RESOLUTIONS}


class Count(Counted):
    """``bench.measure.counting.count`` of each model at each resolution (meta device, fvcore convention, attention counted)."""

    params = (COUNTED_MODELS, RESOLUTIONS)
    param_names = ("model", "img_size")

    def track_params(self, cache: CountedCache, model: str, img_size: int) -> int:
        return cache.counts[model, img_size].params

    track_params.unit = "parameters"

    def track_gmacs(self, cache: CountedCache, model: str, img_size: int) -> float:
        return cache.counts[model, img_size].macs / 1e9

    track_gmacs.unit = "GMACs"
