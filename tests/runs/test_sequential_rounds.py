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
