"""Verdicts on recorded sweeps, and the same verdicts with twice and four times the timing samples.

More samples of the same thing are made by resampling each round's timed blocks with
replacement to 2x and 4x as many (seeded): a verdict that rests on sizes and rounds, not
on the number of blocks, must not move.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from pathlib import Path

import pytest

from bench.analysis.series import fits_of, series_of
from bench.runs import records
from helpers import ROOT

QUICK = ROOT / "results" / "cpu-quick-v2"
EXPECTED = {  # (latency, activation memory) of the default sweep
    "mixer C128 x2": ("linear", "linear"),
    "vit d64 x2 fused": ("quadratic", "linear"),
    "vit d64 x2 explicit": ("quadratic", "quadratic"),
    "resnet18": ("linear", "linear"),
}


def load(folder: Path):
    return list(records.latest_by_key(records.read_results(folder / records.FILENAME)[0]).values())


def verdicts(loaded) -> dict:
    return {(row.series.label, row.quantity): row.verdict for row in fits_of(series_of(loaded))}


def more_blocks(loaded, factor: int, seed: int):
    rng = random.Random(seed)
    out = []
    for r in loaded:
        r = copy.deepcopy(r)
        if r.status == "ok":
            rounds = r.time.rounds_s or (r.time.times_s,)
            resampled = tuple(tuple(rng.choice(block) for _ in range(factor * len(block))) for block in rounds)
            if r.time.rounds_s:
                r.time = dataclasses.replace(r.time, rounds_s=resampled)
            else:
                r.time = dataclasses.replace(r.time, times_s=resampled[0])
        out.append(r)
    return out


def test_the_default_sweep_gives_the_verdicts_it_should():
    got = verdicts(load(QUICK))
    for label, (latency, memory) in EXPECTED.items():
        assert got[(label, "latency")] == latency, label
        assert got[(label, "activation memory")] == memory, label
    rows = {(r.series.label, r.quantity): r for r in fits_of(series_of(load(QUICK)))}
    for label in EXPECTED:  # every linear verdict reports its drift
        for quantity in ("latency", "activation memory"):
            row = rows[(label, quantity)]
            if row.verdict == "linear":
                assert "over the range" in row.drift_note


# (results/cpu-quick, recorded before rounds: 3 blocks, one round, 5 sizes; its ViT fused latency curve sits on
# the boundary, [32%, 107%], and one resampling in three moves it to inconclusive: the reason for rounds.)
@pytest.mark.parametrize("folder", ["cpu-quick-v2", "h200-paper"])
@pytest.mark.parametrize("factor", [2, 4])
def test_twice_and_four_times_the_samples_give_the_same_verdicts(folder, factor):
    loaded = load(ROOT / "results" / folder)
    base = verdicts(loaded)
    for seed in range(3):
        assert verdicts(more_blocks(loaded, factor, seed)) == base
