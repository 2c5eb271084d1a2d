"""Parameters and MACs per model and resolution: deterministic, so any move is a code change."""

from __future__ import annotations

from bench.measure import counting
from bench.schema import Case, Counts

from .common import COUNTED_MODELS, RESOLUTIONS


class Count:
    """``bench.measure.counting.count`` of each model at each resolution (meta device, fvcore convention, attention counted)."""

    params = (COUNTED_MODELS, RESOLUTIONS)
    param_names = ("model", "img_size")

    def setup_cache(self) -> dict[tuple[str, int], Counts]:
        # All cases counted once per environment and commit (a few seconds), in one process.
        return {(m, s): counting.count(Case(m, s)) for m in COUNTED_MODELS for s in RESOLUTIONS}

    def track_params(self, counts: dict[tuple[str, int], Counts], model: str, img_size: int) -> int:
        return counts[model, img_size].params

    track_params.unit = "parameters"

    def track_gmacs(self, counts: dict[tuple[str, int], Counts], model: str, img_size: int) -> float:
        return counts[model, img_size].macs / 1e9

    track_gmacs.unit = "GMACs"
