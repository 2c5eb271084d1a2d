"""The regression gate with real asv: `asv continuous` against a temporary git repository.

The repository is built from this project's files (one commit on ``main``), then three
branches: ``regress`` makes Mixer's token-mixing width D_S grow with S (the model's
``scale_tokens_mlp`` default flipped), so Mixer's parameters and MACs grow and its cost
becomes quadratic in S; ``noop`` changes a comment and the README, nothing measured;
``slow`` makes Mixer's forward pass sleep 0.3 s, for the timing report at ``--factor 1.5``.
The gate is the command of docs/guide/asv.md: ``asv continuous --factor 1.0`` on the deterministic
suites. asv builds each commit in its own virtualenv (the first run installs torch into
it, a few minutes); the environment is kept in this checkout's ``.asv/env`` so later
runs reuse it.
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
GATE_BENCHMARKS = r"^(flops|scaling|cost)\."  # the deterministic suites (docs/guide/asv.md: "The regression gate")
MACHINE = "gate-test"

pytestmark = [
    pytest.mark.slow,
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


@pytest.fixture(scope="module")
def gate_repo(tmp_path_factory) -> tuple[Path, dict]:
    pytest.importorskip("asv")
    repo = tmp_path_factory.mktemp("gate") / "repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=ignore)
        else:
            shutil.copy2(src, repo / name)
    # Keep the virtualenv with this checkout's (git-ignored), so that torch is installed once.
    _edit(repo / "asv.conf.json", '"env_dir": ".asv/env"', f'"env_dir": "{ROOT / ".asv" / "env"}"')
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
    _git(repo, "checkout", "-q", "main")

    home = repo.parent / "home"  # asv keeps its machine description in ~/.asv-machine.json
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))  # keep pip's cache warm
    subprocess.run(
        [sys.executable, "-m", "asv", "machine", "--yes", "--machine", MACHINE],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return repo, env


def _continuous(
    repo: Path, env: dict, tip: str, bench: str = GATE_BENCHMARKS, factor: str = "1.0"
) -> subprocess.CompletedProcess:
    quick = ["--quick"] if bench == GATE_BENCHMARKS else []  # track_ values are the same on one run
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "asv",
            "continuous",
            "--machine",
            MACHINE,
            "--factor",
            factor,
            *quick,
            "--bench",
            bench,
            "--show-stderr",
            "main",
            tip,
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


def _tail(done: subprocess.CompletedProcess, n: int = 60) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-n:])


def _worse(done: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """asv's table: "| + | before | after | ratio | benchmark(params) |" for what got worse."""
    assert done.returncode == 1, (
        f"asv continuous should flag the regression (exit 1), got {done.returncode}:\n{_tail(done)}"
    )
    assert "PERFORMANCE DECREASED" in done.stdout, _tail(done)
    worse = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] == "+":
            worse[cells[4]] = (cells[1], cells[2])
    return worse


def test_gate_fails_when_mixer_cost_grows_faster_than_linearly(gate_repo):
    repo, env = gate_repo
    done = _continuous(repo, env, "regress")
    worse = _worse(done)
    # Independent expectation (closed form): with D_S = round(D_S0 * S / 196), each block's
    # token-mixing MLP Linear(S, D_S) + Linear(D_S, S) gains 2*S*dD + dD weights and biases.
    for model, blocks, tokens_mlp_dim in (("mixer_b16", 12, 384), ("mixer_s16", 8, 256)):
        s = (384 // 16) ** 2
        grown = round(tokens_mlp_dim * s / 196)
        delta = blocks * ((2 * s * grown + grown) - (2 * s * tokens_mlp_dim + tokens_mlp_dim))
        before = sum(p.numel() for p in architectures.create(model, img_size=384).parameters())
        key = f"flops.Count.track_params('{model}', 384)"
        # asv prints 6 significant digits or the whole integer, depending on its version and --quick
        got = tuple(float(v) for v in worse.get(key, ("nan", "nan")))
        assert got == pytest.approx((before, before + delta), rel=5e-6), (key, _tail(done))
        assert f"flops.Count.track_gmacs('{model}', 384)" in worse, _tail(done)
    for name in ("track_verdict", "track_quadratic_coefficient", "track_quadratic_share_percent"):
        assert f"scaling.MacsFit.{name}('mixer_b16')" in worse, _tail(done)
    # linear -> inconclusive: D_S = round(D_S0 * S / 196) rounds, so the MACs are no longer exactly a polynomial
    # in S, and an exact fit says linear or quadratic only with a zero residual (the verdict still moves up)
    assert worse["scaling.MacsFit.track_verdict('mixer_b16')"] == ("0", "1")
    # At 224 px S = 196, so D_S is unchanged; ViT and ResNet did not change at all.
    assert not [k for k in worse if "224" in k or "vit_" in k or "resnet" in k], _tail(done)


def test_gate_passes_a_commit_that_changes_nothing_measured(gate_repo):
    repo, env = gate_repo
    done = _continuous(repo, env, "noop")
    assert done.returncode == 0, f"asv continuous should pass (exit 0), got {done.returncode}:\n{_tail(done)}"
    assert "BENCHMARKS NOT SIGNIFICANTLY CHANGED" in done.stdout, _tail(done)


def test_timing_report_flags_a_slower_forward_pass(gate_repo):
    # The timing command of docs/guide/asv.md at its factor (1.5), on one case to keep the test short: a
    # Mixer-S/16 forward pass that sleeps 0.3 s is several times slower than the ~0.1 s step.
    repo, env = gate_repo
    done = _continuous(
        repo, env, "slow", bench=r"throughput\.Step\.time_step\('mixer_s16', 'cpu', 'infer'\)", factor="1.5"
    )
    assert done.returncode == 1, (
        f"asv continuous should flag the slowdown (exit 1), got {done.returncode}:\n{_tail(done)}"
    )
    assert "PERFORMANCE DECREASED" in done.stdout, _tail(done)
    assert "throughput.Step.time_step('mixer_s16', 'cpu', 'infer')" in done.stdout, _tail(done)


def _only_cost(worse: dict, done) -> None:
    # MACs and parameters did not move: the flops and scaling suites see nothing.
    assert worse and all(k.startswith("cost.Step.") for k in worse), (sorted(worse), _tail(done))


def test_gate_fails_when_vit_attention_defaults_to_explicit(gate_repo):
    repo, env = gate_repo
    done = _continuous(repo, env, "explicit")
    worse = _worse(done)
    _only_cost(worse, done)
    for mode in ("infer", "train"):
        for name in ("track_bytes_moved", "track_peak_activation_bytes"):
            assert f"cost.Step.{name}('vit_b16', 384, '{mode}')" in worse, _tail(done)
    assert not [k for k in worse if "mixer" in k or "resnet" in k], _tail(done)


def test_gate_fails_on_an_extra_copy_in_the_mixer_block(gate_repo):
    repo, env = gate_repo
    done = _continuous(repo, env, "copy")
    worse = _worse(done)
    _only_cost(worse, done)
    for model in ("mixer_s16", "mixer_b16"):
        for size in (224, 384):
            assert f"cost.Step.track_bytes_moved('{model}', {size}, 'infer')" in worse, _tail(done)
            assert f"cost.Step.track_ops('{model}', {size}, 'infer')" in worse, _tail(done)
    # One copy per block: operators grow by exactly the number of blocks (12 for Mixer-B).
    before, after = worse["cost.Step.track_ops('mixer_b16', 224, 'infer')"]
    assert int(after) - int(before) == 12, (before, after)
    assert not [k for k in worse if "vit_" in k or "resnet" in k], _tail(done)


def test_gate_fails_on_a_float64_upcast(gate_repo):
    repo, env = gate_repo
    done = _continuous(repo, env, "float64")
    worse = _worse(done)
    _only_cost(worse, done)
    # The float64 sum is a transient of the token-mixing half; the block's peak (the channel
    # MLP) does not move, the bytes and the two extra casts per block do.
    for mode in ("infer", "train"):
        for name in ("track_bytes_moved", "track_ops"):
            assert f"cost.Step.{name}('mixer_b16', 224, '{mode}')" in worse, _tail(done)
    assert not [k for k in worse if "vit_" in k or "resnet" in k], _tail(done)
