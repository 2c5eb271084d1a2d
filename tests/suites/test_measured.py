"""The measured suite's verdicts on a recorded run, and the same verdicts with twice and four times the samples.

``results/cpu-asv-measured`` is the sweep folder of one ``suites/measured.py`` run on this
2-core CPU (``measured.measure(keep=...)``: the sweep's rounds with the sequential rule, 32 cases;
2 rounds ran per series). The expected verdicts are the project's claims (Mixer linear, ViT
at its default attention, fused: latency quadratic and memory linear, ViT explicit quadratic in both, ResNet-18
linear), on the resolution axis and, for the token models, on the patch-size axis. More
samples of the same thing are made by resampling each round's timed blocks with replacement
(``tests/analysis/test_recorded.py``): the verdicts rest on sizes and rounds, not on the
number of blocks, and must not move.
"""

from __future__ import annotations

import math

import pytest

from helpers import ROOT
from suites import measured
from tests.analysis.test_recorded import load, more_blocks

RECORDED = ROOT / "results" / "cpu-asv-measured-v2"
EXPECTED = {  # (latency, memory)
    "mixer_c128": ("linear", "linear"),
    "vit_d64": ("quadratic", "linear"),
    "vit_d64_explicit": ("quadratic", "quadratic"),
    "resnet18": ("linear", "linear"),
}


def _verdicts(found: dict) -> dict:
    return {key: row["verdict"] for key, row in found["rows"].items()}


def test_the_recorded_run_is_the_measured_suites_cases():
    recorded = {r.key for r in load(RECORDED)}
    assert recorded == {c.key for c in measured.measured_cases()}


def test_the_recorded_run_gives_the_eight_verdicts_on_both_axes():
    found = measured.verdicts_of(load(RECORDED))
    want = {}
    for series, (latency, memory) in EXPECTED.items():
        for axis in ("resolution", "patch_size") if series != "resnet18" else ("resolution",):
            want[series, "latency", axis] = latency
            want[series, "memory", axis] = memory
    assert _verdicts(found) == want
    # Attention's share of the step at the largest size: none for Mixer and ResNet, most of it for ViT.
    assert found["attention"]["mixer_c128", "resolution"] == 0 and found["attention"]["resnet18", "resolution"] == 0
    assert 0.5 < found["attention"]["vit_d64", "resolution"] < found["attention"]["vit_d64_explicit", "resolution"]
    # Activation memory of the explicit ViT: its quadratic part in closed form is the attention scores and their
    # softmax, 2 x heads x S^2 float32 values (heads = 2): 16 S^2 bytes, against the peak measured at S = 2,305.
    row = found["rows"]["vit_d64_explicit", "memory", "resolution"]
    (top,) = [
        r
        for r in load(RECORDED)
        if r.label == "vit d64 x2 explicit" and r.case.img_size == 192 and r.case.patch_size == 4
    ]
    peak = top.profile.tensor_peak_bytes_rounds[0]
    assert row["share"] == pytest.approx(16 * 2305**2 / peak, rel=0.01)
    assert row["share_lo"] <= row["share"] <= row["share_hi"]
    assert not any(math.isnan(v) for r in found["rows"].values() for v in (r["share_lo"], r["share_hi"]))


@pytest.mark.parametrize("factor", [2, 4])
def test_twice_and_four_times_the_samples_give_the_same_verdicts(factor):
    records = load(RECORDED)
    base = _verdicts(measured.verdicts_of(records))
    for seed in range(3):
        assert _verdicts(measured.verdicts_of(more_blocks(records, factor, seed))) == base


def test_the_tracks_read_the_recorded_verdicts():
    found = measured.verdicts_of(load(RECORDED))
    verdicts = measured.Verdicts()
    assert verdicts.track_verdict(found, "vit_d64_explicit", "memory", "resolution") == 2
    assert verdicts.track_verdict(found, "vit_d64", "memory", "patch_size") == 0
    # an exact fit's share of 0 (+-1e-13 in floating point) is tracked as 0: asv compares no rounding noise
    assert verdicts.track_quadratic_share_high_percent(found, "mixer_c128", "memory", "resolution") == 0.0
    assert math.isnan(verdicts.track_verdict(found, "resnet18", "latency", "patch_size"))  # no such axis: n/a
    share = found["rows"]["vit_d64_explicit", "memory", "resolution"]["share"]
    assert verdicts.track_quadratic_share_percent(found, "vit_d64_explicit", "memory", "resolution") == round(
        100 * share, 2
    )
