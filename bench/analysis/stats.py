"""Sound statistics for measured scaling: the size is the unit of replication, not the timing block.

Why. The timing blocks of one case share that case's offset (machine load while it ran,
clocks, what the cache held, the allocator's layout at that size). Fitting every block
as an independent point (dof = blocks - 3) gives intervals that shrink as 1/sqrt(blocks)
around a curve that the per-size offsets have bent, so intervals are 5-10x too narrow
and a verdict flips when more blocks are taken. Here:

1. **One robust summary per size per repetition.** :func:`summarise` takes the median of
   each repetition's blocks (a *round*: the sweep times every size of a series once per
   round, in a shuffled order, so slow drift of the machine is spread over the sizes
   instead of growing with them), then the median over rounds: one value per size.
2. **Fit on sizes.** :func:`wls` fits cost = a*x + b*x^2 + c on those n values by
   weighted least squares with weights 1/fitted^2 (noise is a fraction of the value;
   the weights are iterated from 1/y^2 to 1/fitted^2, which removes the bias of
   weighting by the noisy values themselves). The residual variance is estimated from
   the lack of fit across sizes with n - 3 degrees of freedom: it contains the per-size
   offsets, so taking more blocks cannot make the interval narrower than the sizes allow.
   b's 95% interval uses Student's t with n - 3 dof.
3. **Calibrated.** ``tests/analysis/test_stats.py`` simulates thousands of sweeps with
   known a, b, c, a per-size offset and within-size jitter (both multiplicative): the
   interval covers the true b 93-97% of the time, and the verdict does not change
   when the blocks per size are doubled or quadrupled.

The verdict of a measured curve (:func:`curve_verdict`), with tolerance
``MEASURED_SHARE_TOL`` (10%) on the quadratic share at the largest size
(share = b*x_max^2 / cost_fit(x_max), its interval from b's):

* ``quadratic``: the share's lower 95% bound is above the tolerance;
* ``linear``: its upper 95% bound is at most the tolerance (a curve that bends down,
  i.e. grows more slowly than a straight line, is linear or better: the note says so);
* ``inconclusive``: otherwise, or when fewer than 4 sizes leave no degree of freedom.

Why 10%: a quadratic term carrying less than a tenth of the cost at the largest size
measured is not what this harness is after (ViT's attention carries 50-95% of the MACs at
the sizes the presets reach), while a tighter bound would need more sizes than a quick
sweep measures: with 5 sizes (2 dof) a lack of fit of 1-2% already spans about +-10%.
Latency is not judged on the curve alone: a CPU or GPU changes efficiency with size
(caches, under-filled devices), which bends a curve with no quadratic work in it; see
:mod:`bench.analysis.attribution` for the verdict that separates the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.analysis import scaling

MEASURED_SHARE_TOL = 0.10
IRLS_ITERATIONS = 4


def summarise(
    x: Sequence[float], y: Sequence[float], groups: Sequence | None = None
) -> tuple[list[float], list[float], list[int]]:
    """(sizes, one value per size, repetitions per size).

    ``groups`` names the repetition (round) of each observation; the value of a size is
    the median over its rounds of the median of that round's observations. Without
    ``groups`` every observation of a size is one round's block (median over all).
    """
    by_x: dict[float, dict] = {}
    for i, (v, obs) in enumerate(zip(x, y)):
        g = 0 if groups is None else groups[i]
        by_x.setdefault(float(v), {}).setdefault(g, []).append(float(obs))
    sizes, values, reps = [], [], []
    for v in sorted(by_x):
        rounds = by_x[v]
        sizes.append(v)
        values.append(float(np.median([np.median(obs) for obs in rounds.values()])))
        reps.append(len(rounds))
    return sizes, values, reps


@dataclass(frozen=True)
class WLS:
    """Batched weighted least-squares fits of cost = a*x + b*x^2 + c (arrays over the leading axes)."""

    beta: np.ndarray  # (..., 3): a, b, c in the units of x and cost
    se: np.ndarray | None  # (..., 3) standard errors, None when dof < 1
    dof: int
    fitted_max: np.ndarray  # (...,) cost_fit(x_max)
    x_max: float

    def b_ci(self) -> tuple[np.ndarray, np.ndarray]:
        if self.se is None:
            raise ValueError(f"no confidence interval from {self.dof + 3} sizes: a quadratic needs at least 4")
        half = scaling.t_quantile_975(self.dof) * self.se[..., 1]
        return self.beta[..., 1] - half, self.beta[..., 1] + half

    def share(self) -> np.ndarray:
        return self.beta[..., 1] * self.x_max**2 / self.fitted_max

    def share_ci(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.b_ci()
        return lo * self.x_max**2 / self.fitted_max, hi * self.x_max**2 / self.fitted_max


def wls(x: Sequence[float], y: np.ndarray, iterations: int = IRLS_ITERATIONS) -> WLS:
    """Fit ``y`` (shape (..., n): one value per size, any number of series at once) against ``x`` (n sizes).

    Weights 1/fitted^2, iterated from 1/y^2 (each fitted value clipped to [y/2, 2y], so a
    wild fit cannot take a point's weight away); x is scaled to [0, 1] for conditioning.
    """
    xs = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = xs.size
    sx = xs.max()
    u = xs / sx
    design = np.column_stack([u, u * u, np.ones_like(u)])  # (n, 3)
    weights = 1.0 / y**2
    for _ in range(iterations):
        gram = np.einsum("ni,...n,nj->...ij", design, weights, design)
        rhs = np.einsum("ni,...n,...n->...i", design, weights, y)
        beta = np.linalg.solve(gram, rhs[..., None])[..., 0]
        fitted = beta @ design.T
        weights = 1.0 / np.clip(fitted, y / 2, 2 * y) ** 2  # a wild fitted value cannot take a point's weight away
    gram = np.einsum("ni,...n,nj->...ij", design, weights, design)
    rhs = np.einsum("ni,...n,...n->...i", design, weights, y)
    beta = np.linalg.solve(gram, rhs[..., None])[..., 0]
    fitted = beta @ design.T
    scale = np.array([1 / sx, 1 / sx**2, 1.0])
    dof = n - 3
    se = None
    if dof >= 1:
        resid = y - fitted
        sigma2 = np.einsum("...n,...n->...", weights, resid**2) / dof
        cov = sigma2[..., None, None] * np.linalg.inv(gram)
        se = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)) * scale
    return WLS(beta=beta * scale, se=se, dof=dof, fitted_max=beta @ np.array([1.0, 1.0, 1.0]), x_max=float(sx))


def curve_verdict(share_lo: float, share_hi: float, tol: float = MEASURED_SHARE_TOL) -> tuple[str, str]:
    """(verdict, note) of a measured curve from its quadratic share's 95% interval (rule in the module doc)."""
    if not (np.isfinite(share_lo) and np.isfinite(share_hi)):
        return "inconclusive", "3 sizes leave no degree of freedom for an interval"
    if share_lo > tol:
        return "quadratic", ""
    if share_hi <= tol:
        if share_hi < 0:
            return (
                "linear",
                f"bends down: grows more slowly than a straight line (quadratic share at most {share_hi:.1%})",
            )
        return "linear", ""
    return (
        "inconclusive",
        f"the quadratic share's interval [{share_lo:.0%}, {share_hi:.0%}] straddles the tolerance {tol:.0%}",
    )


def verdicts_batch(fits: WLS, tol: float = MEASURED_SHARE_TOL) -> np.ndarray:
    """:func:`curve_verdict` of every fit in a batch, as an array of "linear" / "quadratic" / "inconclusive"."""
    lo, hi = fits.share_ci()
    return np.where(lo > tol, "quadratic", np.where(hi <= tol, "linear", "inconclusive"))


def drift(x: Sequence[float], y: Sequence[float]) -> float:
    """Change of cost per unit of x from the smallest to the largest size: (y_max/x_max) / (y_min/x_min) - 1."""
    return (y[-1] / x[-1]) / (y[0] / x[0]) - 1.0


def fit_measured(
    x: Sequence[float],
    y: Sequence[float],
    groups: Sequence | None = None,
    *,
    axis: str = "resolution",
    share_tol: float = MEASURED_SHARE_TOL,
) -> scaling.ScalingFit:
    """The sizes-as-units fit and verdict of a measured quantity (module doc).

    ``x`` and ``y`` may hold several observations per size (blocks, rounds): they are
    summarised to one value per size first (:func:`summarise`), so the result does not
    depend on how many blocks were taken. ``n_points`` is the number of sizes.
    """
    scaling.checked_input(x, y, axis)
    sizes, values, _ = summarise(x, y, groups)
    result = wls(sizes, np.asarray(values))
    a, b, c = (float(v) for v in result.beta)
    share = float(result.share())
    if result.se is None:
        b_ci = share_ci = se = None
        verdict, note = curve_verdict(float("nan"), float("nan"), share_tol)
    else:
        lo, hi = result.b_ci()
        b_ci = (float(lo), float(hi))
        slo, shi = result.share_ci()
        share_ci = (float(slo), float(shi))
        se_a, se_b, se_c = (float(v) for v in result.se)
        se = (se_a, se_b, se_c)
        verdict, note = curve_verdict(share_ci[0], share_ci[1], share_tol)
    crossover = a / b if a > 0 and b > 0 and b_ci is not None and b_ci[0] > 0 else None
    residuals = [abs(v - (a * s + b * s * s + c)) / v for s, v in zip(sizes, values)]
    return scaling.ScalingFit(
        axis=axis,
        a=a,
        b=b,
        c=c,
        crossover_tokens=None if axis == "pixels" else crossover,
        crossover=crossover,
        quadratic_share=share,
        local_exponents=scaling.local_exponents(sizes, values),
        verdict=verdict,
        noisy=True,
        n_points=len(sizes),
        x_min=sizes[0],
        x_max=sizes[-1],
        max_rel_residual=max(residuals),
        share_tol=share_tol,
        b_ci=b_ci,
        share_ci=share_ci,
        se=se,
        note=note,
    )
