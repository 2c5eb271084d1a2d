"""fvcore's own count in the history, beside the project's counter (``suites/flops.py``).

``bench.measure.counting.fvcore_count``: fvcore's FlopCountAnalysis and
ActivationCountAnalysis with the SDPA handle added, on real CPU tensors (zero weights,
one thread), for the small models the timed suites use at their size. fvcore cannot
trace these models on the meta device (its jit trace of convolution fails there), so it
runs them; a few seconds for all three. Deterministic: up is bad.
"""

from __future__ import annotations

from bench.measure import counting

from .common import TIMED_IMG_SIZE, TIMED_MODELS


class Fvcore:
    """fvcore's MACs and activations per model at TIMED_IMG_SIZE (batch 1)."""

    params = (TIMED_MODELS,)
    param_names = ("model",)

    def setup_cache(self) -> dict[str, dict]:
        out = {}
        for model in TIMED_MODELS:
            c = counting.fvcore_count(model, TIMED_IMG_SIZE)
            out[model] = {"macs": c.macs, "matmul_macs": c.matmul_macs, "activations": c.activations}
        return out

    def track_fvcore_gmacs(self, counts: dict, model: str) -> float:
        return counts[model]["macs"] / 1e9

    track_fvcore_gmacs.unit = "GMACs"

    def track_fvcore_matmul_gmacs(self, counts: dict, model: str) -> float:
        return counts[model]["matmul_macs"] / 1e9

    track_fvcore_matmul_gmacs.unit = "GMACs"

    def track_fvcore_activations(self, counts: dict, model: str) -> int:
        return counts[model]["activations"]

    track_fvcore_activations.unit = "activations"
