"""One verdict rule (bench.analysis.scaling.decide) decides exact fits, measured curves and attribution alike."""

from __future__ import annotations

import math

import pytest

from bench.analysis import attribution, scaling, stats
from bench.analysis.series import fits_of, series_of
from bench.schema import read_results
from helpers import ROOT


@pytest.mark.parametrize(
    "lo, hi, tol, lowest, verdict",
    [
        (0.2, 0.3, 0.1, -math.inf, "quadratic"),
        (0.1, 0.1, 0.1, -math.inf, "linear"),  # at most the tolerance
        (-0.5, 0.05, 0.1, -math.inf, "linear"),  # a measured curve that bends down is linear work
        (-0.5, -0.5, 1e-9, -1e-9, "inconclusive"),  # exact counts that bend down are not linear
        (0.05, 0.2, 0.1, -math.inf, "inconclusive"),  # straddles the tolerance
        (math.nan, math.nan, 0.1, -math.inf, "inconclusive"),  # no interval
    ],
)
def test_the_rule(lo, hi, tol, lowest, verdict):
    assert scaling.decide(lo, hi, tol, lowest) == verdict


def test_every_verdict_goes_through_the_one_rule(monkeypatch):
    """Replace the rule: exact fits, measured curves, batches of simulated fits and attribution all follow it."""
    records, _ = read_results(ROOT / "results" / "cpu-quick-v2" / "results.jsonl")
    rows = fits_of(series_of(records))
    assert {row.quantity for row in rows if row.attribution is not None} == {"latency"}
    monkeypatch.setattr(scaling, "decide", lambda lo, hi, tol, lowest=-math.inf: "ruled")
    assert scaling.fit([1, 2, 3], [1.0, 4.0, 9.0]).verdict == "ruled"
    assert stats.curve_verdict(0.5, 0.6)[0] == "ruled"
    assert stats.fit_measured([1, 2, 3, 4], [1.0, 4.2, 8.8, 16.1]).verdict == "ruled"
    assert set(stats.verdicts_batch(stats.wls([1, 2, 3, 4], [[1.0, 4.2, 8.8, 16.1]]))) == {"ruled"}
    assert attribution.share_verdict([0.3, 0.4, 0.5])[2] == "ruled"
    rows = fits_of(series_of(records))
    attributed = [row for row in rows if row.attribution is not None]
    assert attributed and all(row.verdict == "ruled" and row.attribution.verdict == "ruled" for row in attributed)
    assert all(row.fit.verdict == "ruled" for row in rows if row.fit is not None)
