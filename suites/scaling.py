"""Per family: the two-term fit of MACs against tokens (``bench.analysis.scaling.fit``), tracked.

MACs are exact counts, so the fit is exact: a Mixer with D_S fixed has b == 0 and the
verdict "linear"; ViT-B has b == 2*L*d = 18,432 MACs per token squared. Every value is
oriented so that an increase means "more quadratic", which ``asv continuous`` reports as
worse -- except ``track_crossover_tokens``, where a *decrease* is the bad direction (the
quadratic term takes over earlier); it is tracked for the dashboard, not for the gate.
"""

from __future__ import annotations

from bench.analysis import scaling
from bench.analysis.series import fit_axis, fit_x
from bench.measure import counting
from bench.schema import Case

from .common import SCALED_MODELS, SCALING_RESOLUTIONS, VERDICT_CODES, Counted, CountedCache


def fit_models() -> dict[str, scaling.ScalingFit]:
    """Each model's fit (about 2 s), for :class:`~suites.common.Counted`'s one ``setup_cache``."""
    fits = {}
    for model in SCALED_MODELS:
        records = [counting.count(Case(model, size)) for size in SCALING_RESOLUTIONS]
        x = [fit_x(r.img_size, r.tokens) for r in records]
        fits[model] = scaling.fit(x, [r.macs for r in records], axis=fit_axis(records[0].tokens))
    return fits


class MacsFit(Counted):
    """Fit cost = a*S + b*S^2 + c of MACs over SCALING_RESOLUTIONS (x = pixels for convnets)."""

    params = (SCALED_MODELS,)
    param_names = ("model",)

    def track_quadratic_coefficient(self, cache: CountedCache, model: str) -> float:
        return cache.fits[model].b

    track_quadratic_coefficient.unit = "MACs per token^2"

    def track_quadratic_share_percent(self, cache: CountedCache, model: str) -> float:
        """The share of the largest size's MACs that the quadratic term carries, in percent."""
        return 100.0 * cache.fits[model].quadratic_share

    track_quadratic_share_percent.unit = "percent"

    def track_verdict(self, cache: CountedCache, model: str) -> int:
        """0 linear, 1 inconclusive, 2 quadratic (see ``common.VERDICT_CODES``)."""
        return VERDICT_CODES[cache.fits[model].verdict]

    track_verdict.unit = "0 linear, 1 inconclusive, 2 quadratic"

    def track_crossover_tokens(self, cache: CountedCache, model: str) -> float:
        """S* = a/b, where the quadratic term equals the linear one; n/a (NaN) when b <= 0."""
        crossover = cache.fits[model].crossover_tokens
        return float("nan") if crossover is None else crossover

    track_crossover_tokens.unit = "tokens"
