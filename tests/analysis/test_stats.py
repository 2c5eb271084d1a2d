"""Calibration of the sizes-as-units statistics (bench.analysis.stats) on simulated sweeps with known a, b, c.

Noise model of a measured sweep (multiplicative, as timing and memory noise is):
y[size, round, block] = f(size) * exp(u[size] + e[size, round, block]), u ~ N(0, su) the
per-size offset every block and round of that size shares (cache state, layout, load
while that case ran), e ~ N(0, se) the jitter between blocks. Everything is vectorised:
thousands of sweeps fit in well under a second.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis import stats

TOKENS = np.array([256, 576, 1024, 1600, 2304], dtype=float)  # the quick preset's S (9x)
SCENARIOS = [
    # (a, b, c), su, se: linear with overhead; ViT-like quadratic; weak quadratic; heavy jitter
    ((1.0, 0.0, 100.0), 0.03, 0.10),
    ((1.0, 1e-3, 50.0), 0.03, 0.10),
    ((1.0, 3e-4, 300.0), 0.08, 0.05),
    ((1.0, 0.0, 100.0), 0.02, 0.30),
]


def simulate(rng, n, coef, su, se, rounds, blocks, u=None):
    a, b, c = coef
    f = a * TOKENS + b * TOKENS**2 + c
    if u is None:
        u = rng.normal(0, su, (n, TOKENS.size, 1, 1))
    e = rng.normal(0, se, (n, TOKENS.size, rounds, blocks))
    return f[None, :, None, None] * np.exp(u + e), u


def per_size(y):
    """The summary stats.summarise computes: median over rounds of the per-round median."""
    return np.median(np.median(y, axis=3), axis=2)


def every_block(y):
    """The old way: every block a point (pseudo-replication)."""
    n, sizes, rounds, blocks = y.shape
    return np.repeat(TOKENS, rounds * blocks), y.reshape(n, sizes * rounds * blocks)


@pytest.mark.parametrize("coef, su, se", SCENARIOS)
def test_the_95_percent_interval_of_b_covers_the_truth_93_to_97_percent(coef, su, se):
    rng = np.random.default_rng(11)
    y, _ = simulate(rng, 4000, coef, su, se, rounds=3, blocks=4)
    fits = stats.wls(TOKENS, per_size(y))
    lo, hi = fits.b_ci()
    coverage = np.mean((lo <= coef[1]) & (coef[1] <= hi))
    assert 0.93 <= coverage <= 0.97, coverage


def test_pseudo_replication_is_what_the_calibration_catches():
    """The same check on the old fit of every block: its interval is far too narrow (the test would fail)."""
    rng = np.random.default_rng(12)
    coef, su, se = (1.0, 0.0, 100.0), 0.05, 0.05
    y, _ = simulate(rng, 2000, coef, su, se, rounds=3, blocks=4)
    fits = stats.wls(*every_block(y))
    lo, hi = fits.b_ci()
    assert np.mean((lo <= coef[1]) & (coef[1] <= hi)) < 0.7


@pytest.mark.parametrize("coef, su, se", SCENARIOS)
def test_the_verdict_does_not_change_with_twice_or_four_times_the_blocks(coef, su, se):
    rng = np.random.default_rng(13)
    n = 3000
    base, u = simulate(rng, n, coef, su, se, rounds=3, blocks=4)
    verdicts = {}
    for factor in (1, 2, 4):
        y = base if factor == 1 else simulate(rng, n, coef, su, se, rounds=3, blocks=4 * factor, u=u)[0]
        verdicts[factor] = stats.verdicts_batch(stats.wls(TOKENS, per_size(y)))
    truth = "linear" if coef[1] == 0 else "quadratic"
    wrong = "quadratic" if truth == "linear" else "linear"
    for factor in (2, 4):
        # the same machine (same per-size offsets) sampled more: the same verdict, sweep by sweep, except for
        # sweeps on the boundary whose jitter was as large as their offsets (those may become decided) ...
        assert np.mean(verdicts[factor] == verdicts[1]) >= 0.85
        # ... never the opposite decision, and the wrong decision does not become more frequent
        flips = (
            (verdicts[factor] != verdicts[1]) & (verdicts[factor] != "inconclusive") & (verdicts[1] != "inconclusive")
        )
        assert np.mean(flips) <= 0.005
        assert np.mean(verdicts[factor] == wrong) <= np.mean(verdicts[1] == wrong) + 0.01


def test_more_blocks_turned_the_old_fit_quadratic():
    """On a linear truth with per-size offsets the old every-block fit says "quadratic" more often with more blocks."""
    rng = np.random.default_rng(14)
    coef, su, se = (1.0, 0.0, 100.0), 0.05, 0.05
    base, u = simulate(rng, 2000, coef, su, se, rounds=3, blocks=4)
    old = {1: stats.verdicts_batch(stats.wls(*every_block(base)))}
    old[4] = stats.verdicts_batch(stats.wls(*every_block(simulate(rng, 2000, coef, su, se, 3, 16, u=u)[0])))
    assert np.mean(old[4] == "quadratic") > np.mean(old[1] == "quadratic") + 0.03
    new = stats.verdicts_batch(stats.wls(TOKENS, per_size(base)))
    assert np.mean(new == "quadratic") <= 0.025  # one-sided 95% test above a 10% share: few false quadratics


def test_fit_measured_summarises_per_size_and_round():
    x = [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4]
    rounds = [0, 0, 1, 1] * 4
    y = [v * (1 + 0.01 * r) * w for v, r, w in zip(x, rounds, [1.0, 1.02, 0.99, 1.0] * 4)]
    once = stats.fit_measured(x, y, rounds)
    assert once.n_points == 4  # sizes, not blocks
    doubled = stats.fit_measured(x * 2, y * 2, rounds * 2)
    assert (doubled.b, doubled.share_ci) == (once.b, once.share_ci)  # identical copies of the blocks change nothing
    sizes, values, reps = stats.summarise(x, y, rounds)
    assert sizes == [1, 2, 3, 4] and reps == [2, 2, 2, 2]
    assert values[0] == pytest.approx(float(np.median([np.median([1.0, 1.02]), np.median([1.0 * 1.01 * 0.99, 1.01])])))


def test_linear_quadratic_and_bending_down():
    x = TOKENS.tolist()
    lin = stats.fit_measured(x, [3e-6 * s + 1e-4 for s in x])
    assert lin.verdict == "linear" and lin.crossover is None
    quad = stats.fit_measured(x, [3e-6 * s + 4e-9 * s * s + 1e-4 for s in x])
    wobble = [1.0, 1.01, 0.99, 1.005, 1.0]
    quad = stats.fit_measured(x, [(3e-6 * s + 4e-9 * s * s + 1e-4) * w for s, w in zip(x, wobble)])
    assert quad.verdict == "quadratic" and quad.crossover is not None
    concave = stats.fit_measured(x, [(s**0.5) * w for s, w in zip(x, wobble)])
    assert concave.verdict == "linear" and "more slowly" in concave.note
    vague = stats.fit_measured(x[:4], [3e-6 * s * w for s, w in zip(x, [1.0, 1.2, 0.8, 1.1])])
    assert vague.verdict == "inconclusive" and vague.note
    assert stats.drift([1, 2], [1.0, 3.0]) == pytest.approx(0.5)
