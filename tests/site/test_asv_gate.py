"""The pull-request gate with real asv on the deterministic suites: the count regressions of a small history.

The history (tests/site/gate_history.py) is measured once per test session; these tests judge its counted
commits, while other tests run (nothing here depends on speed). The measured verdicts and the timing report
are judged in test_asv_gate_measured.py.
"""

from __future__ import annotations

import shutil

import pytest
from gate_history import cli, counted, failing, judge, summary

import architectures

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")]


@pytest.fixture(scope="module")
def history(session_folder):
    """The history's repository, every commit counted (gate_history.counted)."""
    pytest.importorskip("asv")
    return counted(session_folder)


def test_gate_fails_when_mixer_cost_grows_faster_than_linearly(history):
    comparison = judge(history, "regress", "counts")
    worse = failing(comparison)
    text = summary(comparison)
    # Independent expectation (closed form): with D_S = round(D_S0 * S / 196), each block's
    # token-mixing MLP Linear(S, D_S) + Linear(D_S, S) gains 2*S*dD + dD weights and biases.
    for model, blocks, tokens_mlp_dim in (("mixer_b16", 12, 384), ("mixer_s16", 8, 256)):
        s = (384 // 16) ** 2
        grown = round(tokens_mlp_dim * s / 196)
        delta = blocks * ((2 * s * grown + grown) - (2 * s * tokens_mlp_dim + tokens_mlp_dim))
        before = sum(p.numel() for p in architectures.create(model, img_size=384).parameters())
        key = f"flops.Count.track_params('{model}', 384)"
        assert worse.get(key) == (before, before + delta), (key, text)
        assert f"flops.Count.track_gmacs('{model}', 384)" in worse, text
    for name in ("track_verdict", "track_quadratic_coefficient", "track_quadratic_share_percent"):
        assert f"scaling.MacsFit.{name}('mixer_b16')" in worse, text
    # linear -> inconclusive: D_S = round(D_S0 * S / 196) rounds, so the MACs are no longer exactly a polynomial
    # in S, and an exact fit says linear or quadratic only with a zero residual (the verdict still moves up)
    assert worse["scaling.MacsFit.track_verdict('mixer_b16')"] == (0, 1)
    # At 224 px S = 196, so D_S is unchanged; ViT and ResNet did not change at all.
    assert not [k for k in worse if "224" in k or "vit_" in k or "resnet" in k], text


def _only_cost(worse: dict) -> None:
    # MACs and parameters did not move: the flops and scaling suites see nothing.
    assert worse and all(k.startswith("cost.Step.") for k in worse), sorted(worse)


def test_gate_fails_when_vit_attention_defaults_to_explicit(history):
    comparison = judge(history, "explicit", "counts")
    worse = failing(comparison)
    _only_cost(worse)
    for mode in ("infer", "train"):
        for name in ("track_bytes_moved", "track_peak_activation_bytes"):
            assert f"cost.Step.{name}('vit_b16', 384, '{mode}')" in worse, sorted(worse)
    assert not [k for k in worse if "mixer" in k or "resnet" in k], sorted(worse)


def test_gate_fails_on_an_extra_copy_in_the_mixer_block(history):
    worse = failing(judge(history, "copy", "counts"))
    _only_cost(worse)
    for model in ("mixer_s16", "mixer_b16"):
        for size in (224, 384):
            assert f"cost.Step.track_bytes_moved('{model}', {size}, 'infer')" in worse, sorted(worse)
            assert f"cost.Step.track_ops('{model}', {size}, 'infer')" in worse, sorted(worse)
    # One copy per block: operators grow by exactly the number of blocks (12 for Mixer-B).
    before, after = worse["cost.Step.track_ops('mixer_b16', 224, 'infer')"]
    assert after - before == 12, (before, after)
    assert not [k for k in worse if "vit_" in k or "resnet" in k], sorted(worse)


def test_gate_fails_on_a_float64_upcast(history):
    worse = failing(judge(history, "float64", "counts"))
    _only_cost(worse)
    # The float64 sum is a transient of the token-mixing half; the block's peak (the channel
    # MLP) does not move, the bytes and the two extra casts per block do.
    for mode in ("infer", "train"):
        for name in ("track_bytes_moved", "track_ops"):
            assert f"cost.Step.{name}('mixer_b16', 224, '{mode}')" in worse, sorted(worse)
    assert not [k for k in worse if "vit_" in k or "resnet" in k], sorted(worse)


def test_summary_of_the_count_regression(history, monkeypatch, capsys, tmp_path):
    out_file = tmp_path / "summary.md"
    code, out, err = cli(history, monkeypatch, capsys, "--groups", "counts", "--out", str(out_file), "main", "regress")
    assert code == 1, out + err
    assert out == "" and "FAILED" in err, (out, err)
    text = out_file.read_text()
    parts = text.split("\n### ")
    assert parts[0].startswith("## asv gate: FAILED\n") and "| fails |" in parts[0], text
    before = sum(p.numel() for p in architectures.create("mixer_b16", img_size=384).parameters())
    rows = {line.split(" | ")[1]: line for line in parts[1].splitlines() if line.startswith("| worse | ")}
    row = rows["flops.Count.track_params('mixer_b16', 384)"]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) == before and float(cells[3]) > before and float(cells[4]) > 1, row
    assert "scaling.MacsFit.track_verdict('mixer_b16')" in rows, text
    assert not [k for k in rows if "vit_" in k or "resnet" in k], text


def test_gate_command_errors_are_one_line(history, monkeypatch, capsys, tmp_path):
    code, out, err = cli(history, monkeypatch, capsys, "main", "no-such-branch")
    assert code == 2 and err.count("\n") == 1 and "unknown commit 'no-such-branch'" in err, err
    code, out, err = cli(history, monkeypatch, capsys, "--results-dir", str(tmp_path / "none"), "main", "noop")
    assert code == 2 and err.count("\n") == 1 and "is not a folder" in err, err
    code, out, err = cli(history, monkeypatch, capsys, "main", "unmeasured")  # a commit never measured
    assert code == 2 and err.count("\n") == 1 and "no asv results for unmeasured" in err, err
