"""Bytes moved, peak activation bytes and operators of one step per image: deterministic, so any move is a code change.

``bench.measure.cost.cost`` of each model at each resolution, inference and training step,
batch 1, float32, counted on the meta device (about a second for all cases here). Every
value is oriented so that up is bad: more bytes moved, a higher activation peak, more
operators (launches). They catch what MACs miss: explicit instead of fused attention,
an extra copy or elementwise pass, an upcast to float64 (docs/methodology/cost-model.md).
"""

from __future__ import annotations

from bench.measure import cost
from bench.measure.timing import uses_channels_last
from bench.schema import Case, Cost

from .common import COUNTED_MODELS, MODES, RESOLUTIONS, Counted, CountedCache


def cost_cases() -> dict[tuple[str, int, str], Cost]:
    """Every case priced (about a second), for :class:`~suites.common.Counted`'s one ``setup_cache``."""
    return {
        (m, s, mode): cost.cost(Case(m, s, mode=mode, channels_last=uses_channels_last(m)))
        for m in COUNTED_MODELS
        for s in RESOLUTIONS
        for mode in MODES
    }


class Step(Counted):
    """One step of each model at each resolution and mode (batch 1, float32, the model's default attention)."""

    params = (COUNTED_MODELS, RESOLUTIONS, MODES)
    param_names = ("model", "img_size", "mode")

    def track_bytes_moved(self, cache: CountedCache, model: str, img_size: int, mode: str) -> int:
        return cache.costs[model, img_size, mode].bytes_moved

    track_bytes_moved.unit = "bytes"

    def track_peak_activation_bytes(self, cache: CountedCache, model: str, img_size: int, mode: str) -> int:
        return cache.costs[model, img_size, mode].peak_activation_bytes

    track_peak_activation_bytes.unit = "bytes"

    def track_ops(self, cache: CountedCache, model: str, img_size: int, mode: str) -> int:
        return cache.costs[model, img_size, mode].ops

    track_ops.unit = "operator calls"
