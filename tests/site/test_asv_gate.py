"""The pull-request gate with real asv: each commit of a small history measured once, every pair judged on the stored results.

A temporary git repository is built from this project's files (one commit on ``main``), then
branches: ``regress`` makes Mixer's token-mixing width D_S grow with S (the model's
``scale_tokens_mlp`` default flipped), so Mixer's parameters and MACs grow and its cost
becomes quadratic in S; ``noop`` changes a comment and the README, nothing measured;
``explicit`` makes ViT's default attention explicit (parameters and MACs unchanged: only the
cost suite's bytes and peaks move, and the measured verdict of ``vit_d64``'s activation memory
turns quadratic); ``copy`` adds a full-tensor copy per Mixer block and ``float64`` adds the
token-mixing residual in float64 (cost suite only); ``slow`` makes Mixer's forward pass sleep
0.3 s, for the timing report at factor 1.5.

Each commit is measured ONCE, as CI measures a pull request's base and head (``asv run``), here
with ``asv run --python=same --set-commit-hash`` on the commit's checkout (asv's benchmark
processes import the repository through ``ASV_PYTHONPATH``: no virtualenv to build): the
deterministic suites with ``--quick`` (a ``track_`` value is the same on one run), the measured
suite where a test needs it, one timing case without ``--quick`` (samples, so asv's Mann-Whitney
test applies). Every test then judges one pair with ``bench.site.gate`` (the rule of
``asv continuous``, the code CI's ``mixerbench gate`` runs) or with the command itself.
To keep the measured suite short, the repository's base commit shrinks its sweep to the
``vit_d64`` series (ViT at its default attention) at the suite's own sizes and ResNet-18 (not
reported then) to three small sizes: the same suite code, 12 cases instead of 32 (the full
suite's verdicts are tests/suites/test_measured.py's). Smaller ViT sizes are not an option:
with S up to 1,024 the latency share's interval reached 0-100% on a busy CPU and the verdict
moved between identical commits; at S = 2,305 it is quadratic with a narrow interval.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import architectures
from helpers import ROOT

PROJECT_FILES = ("pyproject.toml", "README.md", "asv.conf.json", "architectures", "bench", "suites")
COUNTS = r"^(flops|scaling|cost)\."  # the deterministic suites (docs/guide/asv.md: "The regression gate")
MEASURED = r"^measured\."
TIMED = r"throughput\.Step\.time_step\('mixer_s16', 'cpu', 'infer'\)"
MACHINE = "gate-test"
# What each commit is measured for (one `asv run` a commit); --quick unless a timing case is in it.
MEASURES = {
    "main": (COUNTS, MEASURED, TIMED),
    "regress": (COUNTS,),
    "noop": (COUNTS, MEASURED),
    "explicit": (COUNTS, MEASURED),
    "copy": (COUNTS,),
    "float64": (COUNTS,),
    "slow": (TIMED,),
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timing,  # the module's fixture times a step and runs the measured suite's timing rounds
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
]


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _commit(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name} no longer contains {old!r} exactly once: update this test"
    path.write_text(text.replace(old, new))


def _build_history(repo: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=ignore)
        else:
            shutil.copy2(src, repo / name)
    common = repo / "suites" / "common.py"  # the measured suite on fewer cases (module docstring)
    _edit(
        common,
        'MEASURED_SERIES = ("mixer_c128", "vit_d64", "vit_d64_explicit", "resnet18")',
        'MEASURED_SERIES = ("vit_d64",)',
    )
    _edit(common, "PIXEL_IMG_SIZES = (320, 416, 544, 704, 928)", "PIXEL_IMG_SIZES = (64, 96, 128)")
    (repo / ".gitignore").write_text(".asv/\n__pycache__/\n*.egg-info/\nbuild/\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "gate@test")
    _git(repo, "config", "user.name", "gate test")
    _commit(repo, "base")

    _git(repo, "checkout", "-q", "-b", "regress", "main")
    _edit(repo / "architectures" / "mixer.py", "scale_tokens_mlp: bool = False,", "scale_tokens_mlp: bool = True,")
    _commit(repo, "Mixer: token-mixing width grows with the number of patches")

    _git(repo, "checkout", "-q", "-b", "noop", "main")
    _edit(
        repo / "architectures" / "mixer.py", "class MixerBlock(nn.Module):", "class MixerBlock(nn.Module):  # a comment"
    )
    with (repo / "README.md").open("a") as readme:
        readme.write("\nA sentence that changes nothing measured.\n")
    _commit(repo, "comment and README only")

    # Regressions that leave parameters and MACs unchanged (docs/methodology/cost-model.md): only the cost suite can see them.
    _git(repo, "checkout", "-q", "-b", "explicit", "main")
    _edit(repo / "architectures" / "vit.py", 'attn_backend: str = "fused"', 'attn_backend: str = "explicit"')
    _commit(repo, "ViT: explicit attention by default")

    _git(repo, "checkout", "-q", "-b", "copy", "main")
    _edit(
        repo / "architectures" / "mixer.py",
        "x = x + self.mlp_tokens(y).transpose(1, 2)  #",
        "x = x + self.mlp_tokens(y).transpose(1, 2).contiguous()  #",
    )
    _commit(repo, "Mixer: an extra full-tensor copy per block")

    _git(repo, "checkout", "-q", "-b", "float64", "main")
    _edit(
        repo / "architectures" / "mixer.py",
        "x = x + self.mlp_tokens(y).transpose(1, 2)  #",
        "x = (x.double() + self.mlp_tokens(y).transpose(1, 2)).float()  #",
    )
    _commit(repo, "Mixer: the token-mixing residual added in float64")

    _git(repo, "checkout", "-q", "-b", "slow", "main")
    _edit(repo / "architectures" / "mixer.py", "import dataclasses\n", "import dataclasses\nimport time\n")
    _edit(
        repo / "architectures" / "mixer.py",
        "        x = self.stem(x)  # (B, 3, H, W) -> (B, S, C)\n",
        "        time.sleep(0.3)\n        x = self.stem(x)  # (B, 3, H, W) -> (B, S, C)\n",
    )
    _commit(repo, "Mixer: 0.3 s slower per forward pass")

    _git(repo, "checkout", "-q", "-b", "unmeasured", "main")
    with (repo / "README.md").open("a") as readme:
        readme.write("\nAnother sentence.\n")
    _commit(repo, "a commit that is never measured")


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """The repository with every commit measured once (its .asv/results), checked out at main."""
    pytest.importorskip("asv")
    repo = tmp_path_factory.mktemp("gate") / "repo"
    repo.mkdir()
    _build_history(repo)
    home = repo.parent / "home"  # asv keeps its machine description in ~/.asv-machine.json
    home.mkdir()
    env = dict(os.environ, HOME=str(home), ASV_PYTHONPATH=str(repo))
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes", "--machine", MACHINE], cwd=repo, env=env, capture_output=True, check=True)
    for branch, patterns in MEASURES.items():
        _git(repo, "checkout", "-q", branch)
        # --record-samples: asv compares timings by Mann-Whitney on the samples (as CI's asv run does), not
        # by the pessimistic overlap of 99% intervals that a busy CPU widens
        quick = ["--record-samples"] if TIMED in patterns else ["--quick"]
        done = subprocess.run(
            [
                *asv,
                "run",
                "--python=same",
                *quick,
                "--machine",
                MACHINE,
                "--set-commit-hash",
                _git(repo, "rev-parse", "HEAD"),
                "--show-stderr",
                "--bench",
                "|".join(f"(?:{p})" for p in patterns),
            ],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"asv run on {branch}: {done.returncode}\n{_tail(done.stdout + done.stderr)}"
    _git(repo, "checkout", "-q", "main")
    return repo


def _tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def _judge(repo: Path, head: str, *group_names: str):
    """``bench.site.gate.compare`` of main and ``head`` on the stored results, for the named groups."""
    from bench.site import gate

    groups = tuple(g for g in gate.GROUPS if g.name in group_names)
    conf = gate.load_config(repo / "asv.conf.json")
    conf.repo = str(repo)
    base, tip = gate.resolve(conf, "main"), gate.resolve(conf, head)
    return gate.compare(repo / ".asv" / "results", MACHINE, base, tip, "main", head, groups)


def _worse(comparison) -> dict[str, tuple[float, float]]:
    """What failed the gate: asv's name with parameters -> (before, after)."""
    assert not comparison.passed, f"the gate should fail:\n{_summary(comparison)}"
    return {r.name: (r.before, r.after) for g in comparison.groups for r in comparison.failing(g)}


def _summary(comparison) -> str:
    from bench.site import gate

    return gate.summary(comparison)


def _cli(repo: Path, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from bench.cli import main

    monkeypatch.chdir(repo)
    code = main(["gate", "--machine", MACHINE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_gate_fails_when_mixer_cost_grows_faster_than_linearly(history):
    comparison = _judge(history, "regress", "counts")
    worse = _worse(comparison)
    text = _summary(comparison)
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


def test_gate_passes_a_commit_that_changes_nothing_measured(history):
    comparison = _judge(history, "noop", "counts", "verdicts")
    assert comparison.passed, _summary(comparison)
    # The counts repeat exactly; the measured shares and bounds may move within noise, the verdicts may not.
    changed = [r.name for r in comparison.rows if r.group.name == "counts" and r.mark not in ("same", "n/a")]
    assert not changed, (changed, _summary(comparison))
    moved = [r.name for r in comparison.rows if "track_verdict" in r.name and r.before != r.after and r.mark != "n/a"]
    assert not moved, (moved, _summary(comparison))
    assert all(comparison.measured(g) for g in comparison.groups)


def test_timing_report_flags_a_slower_forward_pass_and_never_fails(history):
    # The timing group at its factor (1.5), on one case to keep the test short: a Mixer-S/16 forward pass
    # that sleeps 0.3 s is several times slower than the ~0.1 s step; asv flags it (factor and Mann-Whitney),
    # and the group only reports.
    comparison = _judge(history, "slow", "timing")
    (row,) = [r for r in comparison.rows if r.name == "throughput.Step.time_step('mixer_s16', 'cpu', 'infer')"]
    assert row.mark == "worse" and row.ratio > 1.5, row
    assert comparison.passed, _summary(comparison)
    assert f"| worse | {row.name} |" in _summary(comparison)


def _only_cost(worse: dict) -> None:
    # MACs and parameters did not move: the flops and scaling suites see nothing.
    assert worse and all(k.startswith("cost.Step.") for k in worse), sorted(worse)


def test_gate_fails_when_vit_attention_defaults_to_explicit(history):
    comparison = _judge(history, "explicit", "counts")
    worse = _worse(comparison)
    _only_cost(worse)
    for mode in ("infer", "train"):
        for name in ("track_bytes_moved", "track_peak_activation_bytes"):
            assert f"cost.Step.{name}('vit_b16', 384, '{mode}')" in worse, sorted(worse)
    assert not [k for k in worse if "mixer" in k or "resnet" in k], sorted(worse)


def test_the_measured_verdict_gate_fails_when_vit_memory_turns_quadratic(history):
    comparison = _judge(history, "explicit", "verdicts")
    worse = _worse(comparison)
    # The explicit S x S scores make ViT's activation memory quadratic on both axes (exact fits of the
    # tensor peaks: share and bounds move together from 0); its latency was quadratic already.
    for axis in ("resolution", "patch_size"):
        assert worse[f"measured.Verdicts.track_verdict('vit_d64', 'memory', '{axis}')"] == (0, 2)
        for track in ("", "_low", "_high"):
            before, after = worse[
                f"measured.Verdicts.track_quadratic_share{track}_percent('vit_d64', 'memory', '{axis}')"
            ]
            assert before == 0 and after > 50, (track, before, after)
        assert f"measured.Verdicts.track_verdict('vit_d64', 'latency', '{axis}')" not in worse


def test_gate_fails_on_an_extra_copy_in_the_mixer_block(history):
    worse = _worse(_judge(history, "copy", "counts"))
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
    worse = _worse(_judge(history, "float64", "counts"))
    _only_cost(worse)
    # The float64 sum is a transient of the token-mixing half; the block's peak (the channel
    # MLP) does not move, the bytes and the two extra casts per block do.
    for mode in ("infer", "train"):
        for name in ("track_bytes_moved", "track_ops"):
            assert f"cost.Step.{name}('mixer_b16', 224, '{mode}')" in worse, sorted(worse)
    assert not [k for k in worse if "vit_" in k or "resnet" in k], sorted(worse)


# --- the summary, through the command CI runs (`mixerbench gate`) ---------------------------------------------


def test_summary_of_the_noop_commit(history, monkeypatch, capsys):
    code, out, err = _cli(history, monkeypatch, capsys, "--groups", "counts,verdicts", "main", "noop")
    assert code == 0, out + err
    parts = out.split("\n### ")
    assert parts[0].startswith("## asv gate: passed\n"), out
    assert "| deterministic suites | " in parts[0] and " | 1 | gate | " in parts[0] and "| passes |" in parts[0]
    assert "| measured verdicts | " in parts[0] and " | 1.5 | gate | " in parts[0]
    assert parts[1].strip() == "Deterministic tracks that changed\n\nNone.", out
    assert parts[2].strip() == "Measured verdicts that changed\n\nNone.", out
    assert parts[3].startswith("Timing report"), out


def test_summary_of_the_count_regression(history, monkeypatch, capsys, tmp_path):
    out_file = tmp_path / "summary.md"
    code, out, err = _cli(history, monkeypatch, capsys, "--groups", "counts", "--out", str(out_file), "main", "regress")
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


def test_summary_of_the_verdict_change(history, monkeypatch, capsys):
    code, out, err = _cli(history, monkeypatch, capsys, "--groups", "counts,verdicts", "main", "explicit")
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
    # Latency was quadratic already; a row for it appears only when a bound was flagged (noise on a busy CPU
    # can widen the base's interval), and then without a verdict change.
    for row in verdicts.splitlines():
        if row.startswith("| vit_d64 | latency | "):
            assert "| quadratic -> quadratic |" in row, row


def test_gate_command_errors_are_one_line(history, monkeypatch, capsys, tmp_path):
    code, out, err = _cli(history, monkeypatch, capsys, "main", "no-such-branch")
    assert code == 2 and err.count("\n") == 1 and "unknown commit 'no-such-branch'" in err, err
    code, out, err = _cli(history, monkeypatch, capsys, "--results-dir", str(tmp_path / "none"), "main", "noop")
    assert code == 2 and err.count("\n") == 1 and "is not a folder" in err, err
    code, out, err = _cli(history, monkeypatch, capsys, "main", "unmeasured")  # a commit never measured
    assert code == 2 and err.count("\n") == 1 and "no asv results for unmeasured" in err, err
