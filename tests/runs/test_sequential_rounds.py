"""The sweep's rounds with the sequential rule: a series stops at the first look that decides its verdicts.

The rule itself is judged on simulations (tests/analysis/test_sequential.py); here the wiring:
``time_series`` asks ``bench.analysis.sequential`` after each round from ``min_rounds`` on, with
the verdicts computed from the rounds so far, and stops exactly when they are decided.
"""

from __future__ import annotations

import pytest

from bench.analysis import sequential
from bench.runs import rounds
from bench.schema import Case
from helpers import TINY_VIT


def _cases(sizes=(32, 48, 64)):
    return [Case("vit_s16", s, 8, 1, "cpu", "float32", "infer", dict(TINY_VIT), label="tiny", threads=1) for s in sizes]


@pytest.mark.parametrize("answer, expected", [("quadratic", 2), ("inconclusive", 4)])
def test_rounds_stop_once_the_verdicts_are_decided(monkeypatch, answer, expected):
    seen = []

    def verdicts(x, profiles, latencies, axis="resolution"):
        seen.append([len(p.tensor_peak_bytes_rounds) for p in profiles])
        assert x == [(s // 8) ** 2 + 1 for s in (32, 48, 64)] and axis == "resolution"
        return {"latency": answer, "activation memory": "linear"}

    monkeypatch.setattr(sequential, "verdicts", verdicts)
    out = rounds.time_series(_cases(), rounds=4, min_run_time=0.02, min_runs=2, warmup=1, min_rounds=2)
    assert {len(t.rounds) for t in out.values()} == {expected}
    assert seen[0] == [2, 2, 2]  # the first look comes after min_rounds rounds, with every round's profile


def test_without_min_rounds_every_round_runs(monkeypatch):
    monkeypatch.setattr(sequential, "verdicts", lambda *a, **k: pytest.fail("the rule was consulted"))
    out = rounds.time_series(_cases(), rounds=3, min_run_time=0.02, min_runs=2, warmup=1)
    assert {len(t.rounds) for t in out.values()} == {3}


def test_a_group_of_fewer_than_three_sizes_stops_at_min_rounds():
    out = rounds.time_series(_cases((32,)), rounds=4, min_run_time=0.02, min_runs=2, warmup=1, min_rounds=2)
    assert {len(t.rounds) for t in out.values()} == {2}


def test_each_round_runs_only_the_steps_it_times(monkeypatch):
    """Steps per case: warm-up and one sizing step on the first visit, on later visits one warm step, then the
    timed blocks (torch's ``Timer.timeit`` ran two more untimed steps before every block: 3x the cost of a
    one-step block, which is every block of a step longer than the block target)."""
    from bench.measure import profile as profiler
    from bench.measure import timing

    calls = {}

    def case_step(case, model, batch=None):
        def step():
            calls[case.img_size] = calls.get(case.img_size, 0) + 1

        return step

    monkeypatch.setattr(timing, "case_step", case_step)
    monkeypatch.setattr(profiler, "profile_step", lambda *a, **k: pytest.skip("not reached: profile=False"))
    monkeypatch.setattr(timing, "time_blocks", _counting_blocks(timing.time_blocks, 0.5))
    rounds.time_series(_cases(), rounds=3, min_run_time=0.3, min_runs=6, warmup=1, profile=False, energy=False)
    # round 1: warm-up 1 + sizing 1 + 2 blocks of 1 step (a "0.5 s" step fills a 0.05 s block);
    # rounds 2 and 3: warm 1 + 2 blocks
    assert calls == {32: 4 + 2 * 3, 48: 4 + 2 * 3, 64: 4 + 2 * 3}


def _counting_blocks(real, seconds):
    """time_blocks that runs the real loop but reports every step as ``seconds`` long."""

    def fake(step, number, blocks=1):
        real(step, number, blocks)
        return [seconds] * blocks

    return fake


def test_time_blocks_runs_exactly_the_steps_it_times():
    from bench.measure import timing

    n = []
    times = timing.time_blocks(lambda: n.append(1), 5, 3)
    assert len(times) == 3 and all(t >= 0 for t in times) and len(n) == 15
    with pytest.raises(ValueError, match="at least 1"):
        timing.time_blocks(lambda: None, 0)
