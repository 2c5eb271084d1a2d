"""bench.site.gate and `mixerbench gate` on asv results written with asv's own API (fast; tests/site/test_asv_gate.py runs real asv).

A two-commit git repository holds the project's asv.conf.json; each test writes the two
commits' result files with ``asv.results.Results`` (one machine, one environment) and judges
them: asv continuous's marks per group factor, what fails the gate and what only reports,
the Markdown's escaping, and the one-line errors.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT

asv_results = pytest.importorskip("asv.results")
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

from asv.machine import Machine  # noqa: E402
from asv.runner import BenchmarkResult  # noqa: E402
from asv.util import write_json  # noqa: E402

from bench.site import gate  # noqa: E402

MACHINE = "ci-box"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, str, str]:
    repo = tmp_path_factory.mktemp("gate-unit")
    shutil.copy2(ROOT / "asv.conf.json", repo / "asv.conf.json")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "-b", "pr")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "head")
    return repo, base, _git(repo, "rev-parse", "HEAD")


def _write(results: Path, commit: str, values: dict, machine: str = MACHINE, versions: dict | None = None) -> None:
    """One results file: {benchmark: value} or {benchmark: (params, [values])}; None failed, NaN skipped."""
    folder = results / machine
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "machine.json", {"machine": machine, "version": Machine.api_version}, Machine.api_version)
    r = asv_results.Results({"machine": machine}, {}, commit, 0, "3.11", "env", {})
    for name, value in values.items():
        params, vals = value if isinstance(value, tuple) else ([], [value])
        benchmark = {"name": name, "params": params, "version": (versions or {}).get(name, "v1")}
        errcode = 1 if any(v is None for v in vals) else 0
        r.add_result(benchmark, BenchmarkResult(vals, [None] * len(vals), [None] * len(vals), errcode, "", None))
    r.save(str(results))


def _compare(repo, before: dict, after: dict, groups=gate.GROUPS, **kw) -> gate.Comparison:
    root, base, head = repo
    results = root / ".asv" / "results"
    shutil.rmtree(results, ignore_errors=True)
    _write(results, base, before, versions=kw.get("base_versions"))
    _write(results, head, after)
    return gate.compare(results, MACHINE, base, head, "main", "HEAD", groups)


def _marks(c: gate.Comparison) -> dict[str, str]:
    return {r.name: r.mark for r in c.rows}


ALL_MEASURED = {  # one benchmark of each gating group, unchanged, so that only what a test changes decides
    "flops.Count.track_params": 100.0,
    "measured.AttentionShare.track_attention_share_percent": 80.0,
}


def test_every_benchmark_is_judged_by_the_group_the_workflow_gives_it():
    assert [(g.name, g.factor, g.gates) for g in gate.GROUPS] == [
        ("counts", 1.0, True),
        ("verdicts", 1.5, True),
        ("timing", 1.5, False),
        ("curves", 1.5, False),
    ]
    expected = {
        "flops.Count.track_params": "counts",
        "scaling.MacsFit.track_verdict": "counts",
        "cost.Step.track_bytes_moved": "counts",
        "curves.Resolution.track_peak_tensor_bytes": "counts",  # gates at 1.0, not judged again by the curves' report
        "curves.PatchSize.track_peak_tensor_bytes": "counts",
        "curves.Pixels.track_peak_tensor_bytes": "curves",
        "curves.Resolution.time_step": "curves",
        "measured.Verdicts.track_verdict": "verdicts",
        "measured.Verdicts.track_quadratic_share_low_percent": "verdicts",  # compared and shown; reports
        "measured.AttentionShare.track_attention_share_percent": "verdicts",
        "measured.Verdicts.track_drift_percent": "curves",
        "measured.Cost.track_setup_seconds": "curves",
        "throughput.Step.time_step": "timing",
        "memory.CpuStep.peakmem_step": "timing",
    }
    assert {name: gate.group_of(name).name for name in expected} == expected
    assert gate.group_of("fvcore_count.Fvcore.track_fvcore_gmacs") is None
    union = re.compile(gate.bench_regex())
    assert all(union.search(name) for name in expected) and not union.search("fvcore_count.Fvcore.track_fvcore_gmacs")


def test_the_verdict_names_follow_the_suites_codes():
    import ast

    source = (ROOT / "suites" / "common.py").read_text()  # read, not imported: importing the suites imports torch
    (line,) = [line for line in source.splitlines() if line.startswith("VERDICT_CODES = ")]
    VERDICT_CODES = ast.literal_eval(line.split("=", 1)[1].strip())
    assert {name: code for code, name in enumerate(gate.VERDICT_NAMES)} == VERDICT_CODES


def test_counts_gate_at_factor_one_and_measured_verdicts_at_one_and_a_half(repo):
    before = {
        **ALL_MEASURED,
        "cost.Step.track_ops": ([["'a'", "'b'"]], [10.0, 10.0]),
        "measured.Verdicts.track_quadratic_share_percent": ([["'x'", "'y'"]], [40.0, 40.0]),
    }
    after = {
        **ALL_MEASURED,
        "cost.Step.track_ops": ([["'a'", "'b'"]], [10.0, 9.0]),  # unchanged; lighter
        "measured.Verdicts.track_quadratic_share_percent": ([["'x'", "'y'"]], [59.0, 61.0]),  # 1.475x; 1.525x
    }
    c = _compare(repo, before, after)
    assert _marks(c) == {
        "flops.Count.track_params": "same",
        "measured.AttentionShare.track_attention_share_percent": "same",
        "cost.Step.track_ops('a')": "same",
        "cost.Step.track_ops('b')": "better",
        "measured.Verdicts.track_quadratic_share_percent('x')": "same",
        "measured.Verdicts.track_quadratic_share_percent('y')": "worse",
    }
    assert not c.passed
    assert [r.name for r in c.failing(gate.VERDICTS)] == ["measured.Verdicts.track_quadratic_share_percent('y')"]
    after["cost.Step.track_ops"] = ([["'a'", "'b'"]], [10.0 * (1 + 1e-9), 9.0])  # any increase of a count fails
    after["measured.Verdicts.track_quadratic_share_percent"] = ([["'x'", "'y'"]], [59.0, 59.0])
    c = _compare(repo, before, after)
    assert [r.name for r in c.failing(gate.COUNTS)] == ["cost.Step.track_ops('a')"] and not c.failing(gate.VERDICTS)


def test_the_shares_bounds_report_and_never_fail(repo):
    # Identical code on a busy CPU (seen in the gate's own measured history): the base's interval of ViT's latency
    # share widened, so the head's lower bound is 1.73x the base's; the verdict and the share did not move.
    params = [["'vit_d64'"], ["'latency'"], ["'resolution'"]]
    tracks = ("verdict", "quadratic_share_percent", "quadratic_share_low_percent", "quadratic_share_high_percent")
    before = {
        **ALL_MEASURED,
        **{f"measured.Verdicts.track_{t}": (params, [v]) for t, v in zip(tracks, (2, 79.52, 36.25, 100))},
    }
    after = {
        **ALL_MEASURED,
        **{f"measured.Verdicts.track_{t}": (params, [v]) for t, v in zip(tracks, (2, 76.51, 62.72, 90.3))},
    }
    c = _compare(repo, before, after)
    low = "measured.Verdicts.track_quadratic_share_low_percent('vit_d64', 'latency', 'resolution')"
    assert _marks(c)[low] == "worse" and c.passed, gate.summary(c)
    text = gate.summary(c)
    assert "| measured verdicts | " in text and " | 5 | 0 | 0 | passes |" in text.split("| measured verdicts | ")[1], (
        text
    )
    assert "Measured verdicts that changed\n\nNone." in text, text
    # The same bounds beside a share that rose by more than 1.5x: the share fails, and the row shows the bounds.
    after["measured.Verdicts.track_quadratic_share_percent"] = (params, [40.0])
    before["measured.Verdicts.track_quadratic_share_percent"] = (params, [20.0])
    c = _compare(repo, before, after)
    assert [r.benchmark for r in c.failing(gate.VERDICTS)] == ["measured.Verdicts.track_quadratic_share_percent"]
    (row,) = [line for line in gate.summary(c).splitlines() if line.startswith("| vit_d64 | latency | ")]
    assert "| 20% [36.25%, 100%] | 40% [62.72%, 90.3%] | quadratic_share_percent |" in row, row


def test_report_groups_never_fail_and_failures_on_the_head_do(repo):
    before = {**ALL_MEASURED, "throughput.Step.time_step": 0.1, "curves.Resolution.time_step": 0.1}
    after = {**ALL_MEASURED, "throughput.Step.time_step": 1.0, "curves.Resolution.time_step": None}
    c = _compare(repo, before, after)
    assert _marks(c)["throughput.Step.time_step"] == "worse" and _marks(c)["curves.Resolution.time_step"] == "failed"
    assert c.passed, gate.summary(c)
    assert "| failed | curves.Resolution.time_step |" in gate.summary(c)
    # A gating benchmark that fails on the head fails the gate, also when it failed on the base already.
    for base_value in (5.0, None):
        c = _compare(
            repo,
            {**ALL_MEASURED, "scaling.MacsFit.track_verdict": base_value},
            {**ALL_MEASURED, "scaling.MacsFit.track_verdict": None},
        )
        assert not c.passed and c.failing(gate.COUNTS)[0].mark in ("failed", "failing")
    c = _compare(
        repo, {**ALL_MEASURED, "flops.Count.track_gmacs": None}, {**ALL_MEASURED, "flops.Count.track_gmacs": 4.0}
    )
    assert c.passed and _marks(c)["flops.Count.track_gmacs"] == "fixed"


def test_skipped_changed_and_unmeasured_benchmarks(repo):
    nan = math.nan
    c = _compare(
        repo,
        {**ALL_MEASURED, "flops.Count.track_gmacs": nan, "cost.Step.track_ops": 1.0},
        {**ALL_MEASURED, "flops.Count.track_gmacs": 9.0, "cost.Step.track_ops": 2.0},
        base_versions={"cost.Step.track_ops": "v0"},  # the benchmark's code changed: asv does not compare it
    )
    assert _marks(c)["flops.Count.track_gmacs"] == "n/a" and _marks(c)["cost.Step.track_ops"] == "incomparable"
    assert c.passed
    # A gating group with no result at one of the commits cannot pass.
    c = _compare(repo, {"flops.Count.track_params": 1.0}, {"flops.Count.track_params": 1.0})
    assert c.unmeasured == [gate.VERDICTS] and not c.passed
    assert "| measured verdicts | " in gate.summary(c) and "not measured: fails" in gate.summary(c)
    c = _compare(repo, {"flops.Count.track_params": 1.0}, {"flops.Count.track_params": 1.0}, groups=(gate.COUNTS,))
    assert c.passed


def test_the_summary_parts_and_escaping(repo):
    evil = "'<img src=x onerror=alert(1)> | [x](javascript:alert(1)) \x1b]0;owned\x07'"
    key = "measured.Verdicts.track_verdict"
    params = [[evil], ["'memory'"], ["'resolution'"]]
    before = {
        **ALL_MEASURED,
        key: (params, [0.0]),
        "measured.Verdicts.track_quadratic_share_percent": (params, [0.0]),
        "measured.Verdicts.track_quadratic_share_low_percent": (params, [0.0]),
        "measured.Verdicts.track_quadratic_share_high_percent": (params, [0.0]),
        "throughput.Step.time_step": ([[evil]], [0.1]),
    }
    after = {
        **ALL_MEASURED,
        key: (params, [2.0]),
        "measured.Verdicts.track_quadratic_share_percent": (params, [95.37]),
        "measured.Verdicts.track_quadratic_share_low_percent": (params, [90.0]),
        "measured.Verdicts.track_quadratic_share_high_percent": (params, [97.5]),
        "throughput.Step.time_step": ([[evil]], [0.3]),
    }
    text = gate.summary(_compare(repo, before, after))
    titles = [line for line in text.splitlines() if line.startswith("#")]
    assert titles == [
        "## asv gate: FAILED",
        "### Deterministic tracks that changed",
        "### Measured verdicts that changed",
        "### Timing report: the largest changes (at most 10)",
    ]
    (row,) = [line for line in text.splitlines() if "linear -> quadratic" in line]
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip("|"))]
    assert cells[1:6] == ["memory", "resolution", "linear -> quadratic", "0% [0%, 0%]", "95.37% [90%, 97.5%]"], row
    assert "\x1b" not in text and "\x07" not in text and not re.search(r"(?<!\\)(<img|\]\(javascript)", text)
    assert "\\<img src=x onerror=alert(1)\\> \\| \\[x\\](javascript:alert(1)) \\\\x1b\\]0;owned\\\\x07" in cells[0], row
    # rendered, the table keeps its shape and the text stays text
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<img" not in html and 'href="javascript' not in html and html.count("<table>") == 3


def test_errors_are_one_line(repo, monkeypatch, capsys):
    from bench.cli import main

    root, base, head = repo
    results = root / ".asv" / "results"
    shutil.rmtree(results, ignore_errors=True)
    monkeypatch.chdir(root)

    def run(*args):
        code = main(["gate", *args])
        out, err = capsys.readouterr()
        assert code == 2 and err.count("\n") == 1 and not out, (code, out, err)
        return err

    assert "is not a folder" in run()
    (results / "broken").mkdir(parents=True)
    (results / "broken" / "machine.json").write_text("{not json")
    assert "is not an asv machine file" in run()
    shutil.rmtree(results / "broken")
    _write(results, base, ALL_MEASURED)
    _write(results, base, ALL_MEASURED, machine="other")
    assert "several machines (ci-box, other): name one" in run()
    assert "no results of machine 'nope'" in run("--machine", "nope")
    assert "no asv results for HEAD" in run("--machine", MACHINE)
    assert "unknown commit 'v9'" in run("--machine", MACHINE, "v9")
    _write(results, head, ALL_MEASURED)
    assert main(["gate", "--machine", MACHINE, "--out", str(root / "s.md")]) == 0  # main and HEAD by default
    assert (root / "s.md").read_text().startswith("## asv gate: passed\n")
