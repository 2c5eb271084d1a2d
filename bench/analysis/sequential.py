"""A sequential rule for the timing rounds: stop adding rounds once every verdict of a series is decided.

The sweep times a series in rounds (:mod:`bench.runs.rounds`); its verdicts rest on them:

* latency (:mod:`bench.analysis.attribution`): the quadratic share of the step at the
  largest size, one value per round, its 95% interval Student's t over the rounds;
* activation memory (:func:`bench.analysis.stats.fit_measured` on the profiled steps'
  peak tensor bytes): one value per size (median over rounds), its interval from the
  lack of fit across sizes.

With the rule, ``rounds`` is a maximum: after each round from ``min_rounds`` on, both
verdicts are computed exactly as the report computes them from the rounds so far (the
same functions, on the same summaries), and the series stops when neither is
"inconclusive". A Mixer or ResNet has no quadratic work, so its share is 0 in every
round and it stops at ``min_rounds``; a ViT whose share sits far above the 10% tolerance
stops there too; a series near the tolerance gets every round.

What stopping early costs. Deciding at several looks is optional stopping: each look can
err, so the chance of a wrong decision is at most the sum over looks (two looks: at most
2 x 2.5% one-sided), and a 95% interval reported at the look that stopped covers the truth
less often than a fixed-size one. ``tests/analysis/test_sequential.py`` measures both on
the calibration simulations of ``tests/analysis/test_stats.py`` (memory fits over sizes)
and on simulated per-round shares (latency): wrong decisions and coverage with the rule
against the fixed number of rounds; ``docs/guide/asv.md`` gives the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.analysis import attribution, stats
from bench.schema import Profile

MIN_ROUNDS = 2  # the first look: one round gives no interval


@dataclass(frozen=True)
class _Record:
    """What :func:`bench.analysis.attribution.attribute` reads of a record: its profile summary."""

    profile: Profile


@dataclass(frozen=True)
class _Series:
    xs: tuple[float, ...]
    records: tuple[_Record, ...]
    axis: str

    def x(self) -> list[float]:
        return list(self.xs)


def verdicts(
    x: Sequence[float], profiles: Sequence[Profile], latencies: Sequence[float], axis: str = "resolution"
) -> dict[str, str]:
    """The latency and activation-memory verdicts of one series from its rounds so far.

    ``x`` per size (S, or pixels for convnets), ``profiles`` per size as
    :func:`bench.runs.rounds.summarise_profiles` summarises them (with the class work), and
    the median step per size. Returns {"latency": verdict, "activation memory": verdict}.
    """
    order = sorted(range(len(x)), key=lambda i: x[i])
    xs = tuple(float(x[i]) for i in order)
    series = _Series(xs, tuple(_Record(profiles[i]) for i in order), axis)
    found = attribution.attribute(series, [latencies[i] for i in order])
    out = {"latency": found.verdict if found is not None else "inconclusive"}
    px: list[float] = []
    py: list[float] = []
    groups: list[int] = []
    for v, i in zip(xs, order):
        peaks = profiles[i].tensor_peak_bytes_rounds
        px += [v] * len(peaks)
        py += [float(p or 0) for p in peaks]  # a step the profiler saw no memory of: 0, so no fit below
        groups += list(range(len(peaks)))
    if len(set(px)) >= 3 and py and all(p > 0 for p in py):
        out["activation memory"] = stats.fit_measured(px, py, groups, axis=axis).verdict
    else:
        out["activation memory"] = "inconclusive"
    return out


def decided(found: dict[str, str]) -> bool:
    """Whether no verdict is left inconclusive."""
    return all(v != "inconclusive" for v in found.values())


def stop_after(done_rounds: int, min_rounds: int, found: dict[str, str] | None) -> bool:
    """The rule: stop after ``done_rounds`` once at least ``min_rounds`` ran and every verdict in ``found`` is decided.

    ``found`` None means the rounds hold no series to judge (fewer than 3 sizes: e.g. the single
    sizes of a patch-size axis, whose verdicts rest on the profiles of the resolution series'
    largest case and on the deterministic tensor peaks): it stops at ``min_rounds``.
    """
    if done_rounds < min_rounds:
        return False
    return found is None or decided(found)
