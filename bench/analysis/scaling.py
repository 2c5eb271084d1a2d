"""Fit cost = a*x + b*x^2 + c and say whether the quadratic term is there.

``x`` is the number of tokens S a model mixes (ViT counts its class token) swept by
resolution at a fixed patch (``axis="resolution"``) or by patch size at a fixed
resolution (``axis="patch_size"``); for convnets, which have no tokens, it is the
number of input pixels H*W (``axis="pixels"``).

This module fits **exact** counts (parameters, MACs, bytes): the least-squares fit is
solved in rational arithmetic, so a cost that is exactly linear gives ``b == 0`` exactly
(Mixer with D_S fixed) and ViT gives ``b == 2*L*d`` exactly (18,432 MACs for ViT-B).
Measured quantities (time, memory) are fitted by :mod:`bench.analysis.stats` on one value
per size, into the same :class:`ScalingFit`.

The verdict rule. Let ``share = b*x_max^2 / cost(x_max)``, the fraction of the cost that
the quadratic term carries at the largest x, and ``tol`` = ``share_tol`` (default 1e-9):

* ``"quadratic"``: share > tol;
* ``"linear"``: -tol <= share <= tol;
* ``"inconclusive"``: the fit bends down (share < -tol), or the counts are not a
  polynomial of degree 2 in x (a residual that is not exactly zero, e.g. ResNet's MACs
  off multiples of 32 px): "linear" and "quadratic" are claims of exactness.

The crossover S* = a/b is where the quadratic term equals the linear one; it exists
only when a > 0 and b > 0. Local log-log exponents d log(cost) / d log(x) between
consecutive x (after averaging repeated x) show how a single power law would
mislead: ViT-B/16's MACs have local exponents from 1.08 (224 to 448 px) to 1.34 (672
to 896 px), "nearly linear", although b*S^2 already carries 40% of them at 896 px.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction

AXES = ("resolution", "patch_size", "pixels")
VERDICTS = ("linear", "quadratic", "inconclusive")
EXACT_SHARE_TOL = 1e-9


def decide(share_lo: float, share_hi: float, tol: float, lowest: float = -math.inf) -> str:
    """The one verdict rule, for exact fits, measured curves and per-operator attribution alike.

    From the quadratic share at the largest size, as an interval [share_lo, share_hi] (an exact
    fit: both its share; a measured one: its 95% interval): "quadratic" when the whole interval
    is above ``tol``, "linear" when it is at most ``tol`` and not below ``lowest``,
    "inconclusive" otherwise and when the interval is unknown (not finite). Exact fits pass
    ``lowest = -tol`` (counts that bend down are not linear); measured curves and attribution
    leave it open (a curve that grows more slowly than a straight line is linear work).
    """
    if not (math.isfinite(share_lo) and math.isfinite(share_hi)):
        return "inconclusive"
    if share_lo > tol:
        return "quadratic"
    if share_hi <= tol and share_lo >= lowest:
        return "linear"
    return "inconclusive"


# Two-sided 95% quantiles of Student's t (the 0.975 quantile) by degrees of freedom,
# from the standard tables (e.g. NIST/SEMATECH e-Handbook, Table 1.3.6.7.2).
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    21: 2.080,
    22: 2.074,
    23: 2.069,
    24: 2.064,
    25: 2.060,
    26: 2.056,
    27: 2.052,
    28: 2.048,
    29: 2.045,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom.

    Between tabulated values the next smaller tabulated dof is used (a slightly wider,
    conservative interval); beyond 120 the normal quantile 1.960.
    """
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof > 120:
        return 1.960
    return _T975[max(k for k in _T975 if k <= dof)]


@dataclass(frozen=True)
class ScalingFit:
    """cost(x) = a*x + b*x^2 + c fitted over ``n_points`` points with x in [x_min, x_max].

    Units: a in cost per x, b in cost per x^2, c in cost (for MACs against tokens:
    MACs per token, MACs per token squared, MACs).
    """

    axis: str  # "resolution" | "patch_size" (x = tokens S) or "pixels" (x = H*W)
    a: float  # linear coefficient
    b: float  # quadratic coefficient
    c: float  # constant
    crossover_tokens: float | None  # S* = a/b where b*S^2 = a*S; None when a <= 0, b <= 0 or axis == "pixels"
    crossover: float | None  # a/b in units of x (pixels for convnets); None when a <= 0 or b <= 0
    quadratic_share: float  # b*x_max^2 / cost_fit(x_max)
    local_exponents: list[float]  # log-log slopes between consecutive x (len = distinct x - 1)
    verdict: str  # "linear" | "quadratic" | "inconclusive"
    noisy: bool
    n_points: int
    x_min: float
    x_max: float
    max_rel_residual: float  # max |cost - cost_fit| / |cost| over the points
    share_tol: float  # tolerance of the verdict rule
    b_ci: tuple[float, float] | None = None  # 95% interval of b (noisy fits with >= 4 points)
    share_ci: tuple[float, float] | None = None  # matching interval of quadratic_share
    se: tuple[float, float, float] | None = None  # standard errors of a, b, c (noisy fits)
    note: str = ""  # why a verdict is inconclusive, when it is

    def predict(self, x: float) -> float:
        return self.a * x + self.b * x * x + self.c

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("b_ci", "share_ci", "se"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d


def checked_input(x: Sequence[float], cost: Sequence[float], axis: str) -> tuple[list[float], list[float], list[float]]:
    """(x, cost, the distinct x sorted) as floats; ValueError unless they can be fitted (for every fit here)."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    xs = [float(v) for v in x]
    ys = [float(v) for v in cost]
    if len(xs) != len(ys):
        raise ValueError(f"x and cost differ in length ({len(xs)} and {len(ys)})")
    if not all(math.isfinite(v) and v > 0 for v in xs + ys):
        raise ValueError("x and cost must be finite and positive")
    distinct = sorted(set(xs))
    if len(distinct) < 3:
        raise ValueError(f"a fit of a*x + b*x^2 + c needs at least 3 distinct x, got {len(distinct)}")
    return xs, ys, distinct


def fit(
    x: Sequence[float],
    cost: Sequence[float],
    *,
    axis: str = "resolution",
    share_tol: float | None = None,
) -> ScalingFit:
    """Exact least-squares fit of cost = a*x + b*x^2 + c, with the verdict of the module docstring.

    ``x`` and ``cost`` are equal-length sequences of positive numbers with at least three
    distinct x. Raises ValueError on bad input.
    """
    xs, ys, distinct = checked_input(x, cost, axis)
    tol = EXACT_SHARE_TOL if share_tol is None else float(share_tol)
    x_max = distinct[-1]
    a, b, c, polynomial = _exact_least_squares(tuple(xs), tuple(ys))
    share = b * x_max**2 / (a * x_max + b * x_max**2 + c)
    residuals = [abs(y - (a * v + b * v * v + c)) / y for v, y in zip(xs, ys)]
    note = ""
    verdict = decide(share, share, tol, lowest=-tol) if polynomial else "inconclusive"
    if not polynomial:
        note = (
            f"the counts are not a polynomial a*x + b*x^2 + c in x (max relative residual {max(residuals):.2g}): "
            f"neither linear nor quadratic exactly (e.g. a convnet's stride-2 layers off multiples of 32)"
        )
    elif verdict == "inconclusive":
        note = f"the fit bends down (quadratic share {share:.3g} < -{tol:g})"
    crossover = a / b if a > 0 and b > 0 else None
    return ScalingFit(
        axis=axis,
        a=a,
        b=b,
        c=c,
        crossover_tokens=None if axis == "pixels" else crossover,
        crossover=crossover,
        quadratic_share=share,
        local_exponents=local_exponents(xs, ys),
        verdict=verdict,
        noisy=False,
        n_points=len(xs),
        x_min=distinct[0],
        x_max=x_max,
        max_rel_residual=max(residuals),
        share_tol=tol,
        note=note,
    )


def local_exponents(x: Sequence[float], cost: Sequence[float]) -> list[float]:
    """log(cost2/cost1) / log(x2/x1) between consecutive distinct x (costs averaged per x)."""
    by_x: dict[float, list[float]] = {}
    for v, y in zip(x, cost):
        by_x.setdefault(float(v), []).append(float(y))
    points = [(v, sum(ys) / len(ys)) for v, ys in sorted(by_x.items())]
    return [math.log(y2 / y1) / math.log(x2 / x1) for (x1, y1), (x2, y2) in zip(points, points[1:])]


def crossover_resolution(crossover_tokens: float | None, patch_size: int, prefix_tokens: int = 0) -> float | None:
    """The square resolution whose patch grid gives ``crossover_tokens`` tokens: P * sqrt(S* - prefix)."""
    if crossover_tokens is None or crossover_tokens <= prefix_tokens:
        return None
    return patch_size * math.sqrt(crossover_tokens - prefix_tokens)


@functools.lru_cache(maxsize=4096)
def _exact_least_squares(xs: tuple[float, ...], ys: tuple[float, ...]) -> tuple[float, float, float, bool]:
    """Solve the normal equations of [x, x^2, 1] exactly in rationals (Cramer's rule).

    Returns a, b, c and whether every residual is exactly zero (the counts are that polynomial). Remembered for
    the last few thousand inputs: a large sweep fits the same counts (MACs per image, work per class) once per
    machine and batch, and the rational arithmetic costs milliseconds per fit.
    """
    rows = [(Fraction(v), Fraction(v) ** 2, Fraction(1)) for v in xs]
    targets = [Fraction(y) for y in ys]
    gram = [[sum((r[i] * r[j] for r in rows), Fraction(0)) for j in range(3)] for i in range(3)]
    rhs = [sum((r[i] * t for r, t in zip(rows, targets)), Fraction(0)) for i in range(3)]
    det = _det3(gram)
    coeffs = []
    for k in range(3):
        m = [[rhs[i] if j == k else gram[i][j] for j in range(3)] for i in range(3)]
        coeffs.append(_det3(m) / det)
    a, b, c = coeffs
    exact = all(a * r[0] + b * r[1] + c == t for r, t in zip(rows, targets))
    return float(a), float(b), float(c), exact


def _det3(m: list[list[Fraction]]) -> Fraction:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )
