"""The pull-request gate with real asv on the measured suite and a timing case: the verdict a commit changes,
a slower step the timing report flags, and the gate's summary of both.

The history is tests/site/gate_history.py's, counted once per session (test_asv_gate.py judges the counts);
here its commits are also measured, alone on the machine (``timing``), into the same results (gate_history.measure_timed).
"""

from __future__ import annotations

import shutil

import pytest
from gate_history import cli, counted, failing, judge, measure_timed, summary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timing,  # the module's fixture times a step and runs the measured suite's timing rounds
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
]


@pytest.fixture(scope="module")
def history(session_folder):
    """The history's repository with the measured suite and the timing case measured too."""
    pytest.importorskip("asv")
    repo = counted(session_folder)
    measure_timed(repo)
    return repo


def test_gate_passes_a_commit_that_changes_nothing_measured(history):
    comparison = judge(history, "noop", "counts", "verdicts")
    assert comparison.passed, summary(comparison)
    # The counts repeat exactly; the measured shares and bounds may move within noise, the verdicts may not.
    changed = [r.name for r in comparison.rows if r.group.name == "counts" and r.mark not in ("same", "n/a")]
    assert not changed, (changed, summary(comparison))
    moved = [r.name for r in comparison.rows if "track_verdict" in r.name and r.before != r.after and r.mark != "n/a"]
    assert not moved, (moved, summary(comparison))
    assert all(comparison.measured(g) for g in comparison.groups)


def test_timing_report_flags_a_slower_forward_pass_and_never_fails(history):
    # The timing group at its factor (1.5), on one case to keep the test short: a Mixer-S/16 forward pass
    # that sleeps 0.15 s (in the ``explicit`` commit) is over twice as slow as the ~0.1 s step; asv flags it
    # (factor and Mann-Whitney), and the group only reports.
    comparison = judge(history, "explicit", "timing")
    (row,) = [r for r in comparison.rows if r.name == "throughput.Step.time_step('mixer_s16', 'cpu', 'infer')"]
    assert row.mark == "worse" and row.ratio > 1.5, row
    assert comparison.passed, summary(comparison)
    assert f"| worse | {row.name} |" in summary(comparison)


def test_the_measured_verdict_gate_fails_when_vit_memory_turns_quadratic(history):
    comparison = judge(history, "explicit", "verdicts")
    worse = failing(comparison)
    # The explicit S x S scores make ViT's activation memory quadratic on both axes (exact fits of the
    # tensor peaks: share and bounds move together from 0; the bounds report); its latency was quadratic already.
    rows = {r.name: r for r in comparison.rows}
    for axis in ("resolution", "patch_size"):
        assert worse[f"measured.Verdicts.track_verdict('vit_d64', 'memory', '{axis}')"] == (0, 2)
        before, after = worse[f"measured.Verdicts.track_quadratic_share_percent('vit_d64', 'memory', '{axis}')"]
        assert before == 0 and after > 50, (before, after)
        for track in ("_low", "_high"):
            row = rows[f"measured.Verdicts.track_quadratic_share{track}_percent('vit_d64', 'memory', '{axis}')"]
            assert row.before == 0 and row.after > 50 and row.mark == "worse" and not row.fails, row
        assert f"measured.Verdicts.track_verdict('vit_d64', 'latency', '{axis}')" not in worse


def test_summary_of_the_noop_commit(history, monkeypatch, capsys):
    code, out, err = cli(history, monkeypatch, capsys, "--groups", "counts,verdicts", "main", "noop")
    assert code == 0, out + err
    parts = out.split("\n### ")
    assert parts[0].startswith("## asv gate: passed\n"), out
    assert "| deterministic suites | " in parts[0] and " | 1 | gate | " in parts[0] and "| passes |" in parts[0]
    assert "| measured verdicts | " in parts[0] and " | 1.5 | gate (report: `" in parts[0]  # the bounds report
    assert parts[1].strip() == "Deterministic tracks that changed\n\nNone.", out
    assert parts[2].strip() == "Measured verdicts that changed\n\nNone.", out
    assert parts[3].startswith("Timing report"), out


def test_summary_of_the_verdict_change(history, monkeypatch, capsys):
    code, out, err = cli(history, monkeypatch, capsys, "--groups", "counts,verdicts", "main", "explicit")
    assert code == 1, out + err
    parts = out.split("\n### ")
    verdicts = parts[2]
    assert verdicts.startswith("Measured verdicts that changed\n"), out
    rows = [line for line in verdicts.splitlines() if line.startswith("| vit_d64 | memory | ")]
    assert len(rows) == 2, verdicts  # activation memory on both axes
    for row, axis in zip(sorted(rows), ("patch_size", "resolution")):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:4] == ["vit_d64", "memory", axis, "linear -> quadratic"], row
        assert cells[4] == "0% [0%, 0%]", row  # an exact fit: no interval
        assert cells[5].endswith("%]") and "quadratic_share_percent" in cells[6], row
    # Latency was quadratic already; a row for it appears only when its share was flagged, and then without a
    # verdict change.
    for row in verdicts.splitlines():
        if row.startswith("| vit_d64 | latency | "):
            assert "| quadratic -> quadratic |" in row, row
