"""The latency verdict that separates quadratic work from changes of efficiency.

A measured latency curve can bend upwards with no quadratic work in it (a CPU's caches
stop holding a layer's working set, a GPU fills up), and a quadratic term can hide in a
curve that a large overhead flattens. So latency is judged per operator class, each
class against its own work:

1. **Work per class, exact** (``record.profile.work``, counted on meta by
   :func:`bench.measure.profile.class_work`): each class's work is fitted exactly against
   x (S, or pixels for convnets). ``q_c`` = the quadratic part of class c's work at the
   largest size, b_c x_max^2 / W_c(x_max): about 1 for attention (2 S^2 d per block), 0 for
   the dense and token-mixing matmuls, norms and element-wise operators of these models.
2. **Time per class, measured** (``record.profile.cpu_s``, or ``device_s`` on
   CUDA: one profiled step per case per round, :mod:`bench.measure.profile`).
3. **Quadratic share** at the largest size, per round r:
   share_r = sum_c q_c t_c,r(x_max) / sum_c t_c,r(x_max): the fraction of the step spent on
   quadratic work. Its point value is the median over rounds, its 95% interval Student's
   t over the rounds' values (rounds are the independent repetitions).
4. **Verdict** with the tolerance of measured curves (``stats.MEASURED_SHARE_TOL``, 10%):
   ``quadratic`` when the share's lower bound exceeds it, ``linear`` when its upper bound
   does not (quadratic work takes at most a tenth of the step at the largest size; all
   the rest is work that is linear in x), ``inconclusive`` otherwise.
5. **Drift**, reported with every verdict: the change of time per unit of x from the
   smallest to the largest size (time per token for token models, per pixel for
   convnets), and for the largest linear-work class its time per unit of its own work.
   A linear verdict with a drift of +60% says: the work is linear, the machine did it
   60% less efficiently per token at the largest size (that, not quadratic work, is what
   bends the curve).

Series without profiles (results recorded before profiles existed) keep the verdict of
the curve alone (:func:`bench.analysis.stats.fit_measured`), which says so in its note;
so do compiled series, whose fused kernels carry no operator name (:func:`unattributed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bench.analysis import scaling, stats
from bench.schema import Record

CLASS_LABELS = {
    "attention": "attention",
    "token_mixing": "token mixing",
    "dense": "dense matmuls/convs",
    "norm_elementwise": "norms and element-wise",
    "data_movement": "data movement",
}


@dataclass(frozen=True)
class Attribution:
    verdict: str
    quadratic_share: float  # fraction of the step spent on quadratic work at x_max (median over rounds)
    share_ci: tuple[float, float] | None  # 95% interval over rounds (None with one round)
    quadratic_classes: dict  # class -> quadratic fraction of its work at x_max (only classes with any)
    drift: float  # time per unit of x, largest size over smallest, minus 1
    class_drift: dict  # class -> time per unit of its own work, largest over smallest, minus 1
    clock: str  # "cpu" or "device"
    note: str
    class_time: list = field(default_factory=list)  # per size: {class: seconds of the median step}

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "quadratic_share": self.quadratic_share,
            "share_ci": list(self.share_ci) if self.share_ci else None,
            "quadratic_classes": self.quadratic_classes,
            "drift": self.drift,
            "class_drift": self.class_drift,
            "clock": self.clock,
        }


def clock_of(record: Record) -> str:
    return record.profile.clock if record.profile else "cpu"


def class_times(record: Record, latency: float) -> dict[str, float]:
    """The median step ``latency`` split over classes in proportion to the profiled self times."""
    assert record.profile is not None
    times = record.profile.class_s
    total = sum(times.values())
    return {c: (latency * t / total if total > 0 else 0.0) for c, t in times.items()}


def quadratic_fractions(x: list[float], works: list[dict]) -> dict[str, float]:
    """Class -> b_c x_max^2 / W_c(x_max) from the exact fit of the class's work against x (0 when linear)."""
    out = {}
    for cls in works[0]:
        w = [wk.get(cls, 0) for wk in works]
        if min(w) <= 0:
            continue
        f = scaling.fit(x, w)
        frac = f.b * x[-1] ** 2 / w[-1]
        if frac > 1e-6:
            out[cls] = min(1.0, frac)
    return out


def unattributed(series) -> str | None:
    """Why the profiles of ``series`` cannot be split into operator classes (compiled steps), or None."""
    for r in series.records:
        if r.profile is not None and r.profile.unattributed:
            return r.profile.unattributed
    return None


def share_verdict(shares: list[float], tol: float = stats.MEASURED_SHARE_TOL):
    """(median share, its 95% interval over rounds or None with one round, verdict) from one share per round."""
    n_rounds = len(shares)
    share = float(np.median(shares))
    if n_rounds > 1 and np.ptp(shares) > 0:
        half = scaling.t_quantile_975(n_rounds - 1) * float(np.std(shares, ddof=1)) / math.sqrt(n_rounds)
        ci = (max(0.0, float(np.mean(shares)) - half), min(1.0, float(np.mean(shares)) + half))
    elif n_rounds > 1:
        ci = (share, share)
    else:
        ci = None
    if ci is None:
        verdict = "inconclusive"
    elif ci[0] > tol:
        verdict = "quadratic"
    elif ci[1] <= tol:
        verdict = "linear"
    else:
        verdict = "inconclusive"
    return share, ci, verdict


def attribute(series, latencies: list[float]) -> Attribution | None:
    """The attribution verdict of a latency series (module doc); None when a record has no profile or work,
    or when its profiles could not be split into classes (:func:`unattributed`: fused kernels of torch.compile)."""
    records = series.records
    profiles = [r.profile for r in records]
    works = [p.work for p in profiles if p is not None and p.work]
    if len(works) < len(records):
        return None
    if unattributed(series):
        return None
    x = [float(v) for v in series.x()]
    if len(set(x)) < 3:
        return None
    qfrac = quadratic_fractions(x, works)
    top = profiles[-1]
    assert top is not None
    rounds = top.class_s_rounds
    n_rounds = top.steps
    shares = []
    for i in range(n_rounds):
        total = sum(rounds[c][i] for c in rounds)
        shares.append(sum(qfrac.get(c, 0.0) * rounds[c][i] for c in rounds) / total if total > 0 else 0.0)
    share, ci, verdict = share_verdict(shares)
    lo, hi = ci if ci else (share, share)
    tol = stats.MEASURED_SHARE_TOL

    per_size = [class_times(r, t) for r, t in zip(records, latencies)]
    drift = stats.drift(x, latencies)
    class_drift = {}
    for cls in per_size[0]:
        w0, w1 = works[0].get(cls, 0), works[-1].get(cls, 0)
        t0, t1 = per_size[0][cls], per_size[-1][cls]
        if w0 > 0 and w1 > 0 and t0 > 0 and t1 > 0:
            class_drift[cls] = (t1 / w1) / (t0 / w0) - 1.0
    unit = "pixel" if series.axis == "pixels" else "token"
    linear_classes = [c for c in per_size[-1] if c not in qfrac and c in class_drift]
    biggest = max(linear_classes, key=lambda c: per_size[-1][c], default=None)
    where = f"{'pixels' if unit == 'pixel' else 'S'} = {x[-1]:,.0f}"
    own = f"; {CLASS_LABELS[biggest]}: time per unit of work {class_drift[biggest]:+.0%}" if biggest else ""
    shown = f"{share:.0%}" + (f" [{lo:.0%}, {hi:.0%}]" if ci else "")
    if verdict == "quadratic":
        names = ", ".join(CLASS_LABELS[c] for c in qfrac)
        note = (
            f"quadratic work ({names}) takes {shown} of the step at {where}; "
            f"time per {unit} {drift:+.0%} over the range{own}"
        )
    elif verdict == "linear":
        note = (
            f"linear work ({shown} of the step in quadratic-work operators at {where}); "
            f"time per {unit} {drift:+.0%} over the range{own}"
        )
    else:
        note = (
            f"quadratic work takes {shown} of the step at {where}: the interval straddles {tol:.0%}"
            if ci
            else "one profiled round: no interval"
        ) + f"; time per {unit} {drift:+.0%} over the range"
    return Attribution(
        verdict=verdict,
        quadratic_share=share,
        share_ci=ci,
        quadratic_classes=qfrac,
        drift=drift,
        class_drift=class_drift,
        clock=clock_of(records[-1]),
        note=note,
        class_time=per_size,
    )
