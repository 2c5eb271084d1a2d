"""The small git history that tests/site/test_asv_gate.py and test_asv_gate_measured.py judge with real asv.

A temporary git repository is built from this project's files (one commit on ``main``), then
branches: ``regress`` makes Mixer's token-mixing width D_S grow with S (the model's
``scale_tokens_mlp`` default flipped), so Mixer's parameters and MACs grow and its cost
becomes quadratic in S; ``noop`` changes a comment and the README, nothing measured;
``explicit`` makes ViT's default attention explicit (parameters and MACs unchanged: only the
cost suite's bytes and peaks move, and the measured verdict of ``vit_d64``'s activation memory
turns quadratic) and, for the timing report at factor 1.5, makes Mixer's forward pass sleep 0.15 s
on a real device (the counts, on meta, and the measured suite, ViT only, do not see it: one
commit and one measured ``asv run`` for two regressions that no group sees both of); ``copy``
adds a full-tensor copy per Mixer block and ``float64`` adds the token-mixing residual in
float64 (cost suite only); ``unmeasured`` is never measured.

Each commit is measured ONCE, as CI measures a pull request's base and head (``asv run``), here
with ``asv run --python=same --set-commit-hash`` on the commit's checkout (asv's benchmark
processes import the repository through ``ASV_PYTHONPATH``: no virtualenv to build), and every
test then judges one pair with ``bench.site.gate`` (the rule of ``asv continuous``, the code CI's
``mixerbench gate`` runs) or with the command itself. The measuring is in two parts:

- :func:`counted`: the deterministic suites of every commit (``--quick``: a
  ``track_`` value is the same on one run). Nothing in them depends on speed, so they are measured while other tests run. The
  repository is built and counted once per test session, in the session's temporary folder
  under a lock, by whichever of the two modules needs it first.
- :func:`measure_timed`: the measured suite on ``main``, ``noop`` and ``explicit`` and one timing
  case on ``main`` and ``explicit`` (``--record-samples``, so that asv's Mann-Whitney test applies;
  ``noop`` with ``--quick``) into the same results, by the timing module, alone on the machine.
  Every measured run is on one thread; ``main`` and ``noop``, the pair the no-op test compares, run
  at once, each held to a CPU of its own (``noop`` in a worktree of the repository, with an asv
  home of its own), so that the pair is measured under the same conditions; then ``explicit``.
  With one CPU they run one after the other.

To keep the measured suite short, the repository's base commit shrinks its sweep to the
``vit_d64`` series (ViT at its default attention) at the suite's own sizes and ResNet-18 (not
reported then) to three small sizes: the same suite code, 12 cases instead of 32 (the full
suite's verdicts are tests/suites/test_measured.py's). Smaller ViT sizes are not an option:
with S up to 1,024 the latency share's interval reached 0-100% on a busy CPU and the verdict
moved between identical commits; at S = 2,305 it is quadratic with a narrow interval.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers import ROOT

PROJECT_FILES = ("pyproject.toml", "README.md", "asv.conf.json", "architectures", "bench", "suites")
COUNTS = r"^(flops|scaling|cost)\."  # the deterministic suites (docs/guide/asv.md: "The regression gate")
MEASURED = r"^measured\."
TIMED = r"throughput\.Step\.time_step\('mixer_s16', 'cpu', 'infer'\)"
MACHINE = "gate-test"
COUNTED = ("main", "regress", "noop", "explicit", "copy", "float64")  # each measured for COUNTS
# What each commit is measured for by measure_timed (one `asv run` a commit); --quick unless a timing case is in it.
TIMED_RUNS = {"main": (MEASURED, TIMED), "noop": (MEASURED,), "explicit": (MEASURED, TIMED)}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


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
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "gate@test")
    git(repo, "config", "user.name", "gate test")
    _commit(repo, "base")

    git(repo, "checkout", "-q", "-b", "regress", "main")
    _edit(repo / "architectures" / "mixer.py", "scale_tokens_mlp: bool = False,", "scale_tokens_mlp: bool = True,")
    _commit(repo, "Mixer: token-mixing width grows with the number of patches")

    git(repo, "checkout", "-q", "-b", "noop", "main")
    _edit(
        repo / "architectures" / "mixer.py", "class MixerBlock(nn.Module):", "class MixerBlock(nn.Module):  # a comment"
    )
    with (repo / "README.md").open("a") as readme:
        readme.write("\nA sentence that changes nothing measured.\n")
    _commit(repo, "comment and README only")

    # Regressions that leave parameters and MACs unchanged (docs/methodology/cost-model.md): only the cost suite can see them.
    git(repo, "checkout", "-q", "-b", "explicit", "main")
    _edit(repo / "architectures" / "vit.py", 'attn_backend: str = "fused"', 'attn_backend: str = "explicit"')
    _edit(repo / "architectures" / "mixer.py", "import dataclasses\n", "import dataclasses\nimport time\n")
    _edit(
        repo / "architectures" / "mixer.py",
        "        x = self.stem(x)  # (B, 3, H, W) -> (B, S, C)\n",
        "        if not x.is_meta:\n            time.sleep(0.15)\n        x = self.stem(x)  # (B, 3, H, W) -> (B, S, C)\n",
    )
    _commit(repo, "ViT: explicit attention by default; Mixer: 0.15 s slower per forward pass on a real device")

    git(repo, "checkout", "-q", "-b", "copy", "main")
    _edit(
        repo / "architectures" / "mixer.py",
        "x = x + self.mlp_tokens(y).transpose(1, 2)  #",
        "x = x + self.mlp_tokens(y).transpose(1, 2).contiguous()  #",
    )
    _commit(repo, "Mixer: an extra full-tensor copy per block")

    git(repo, "checkout", "-q", "-b", "float64", "main")
    _edit(
        repo / "architectures" / "mixer.py",
        "x = x + self.mlp_tokens(y).transpose(1, 2)  #",
        "x = (x.double() + self.mlp_tokens(y).transpose(1, 2)).float()  #",
    )
    _commit(repo, "Mixer: the token-mixing residual added in float64")

    git(repo, "checkout", "-q", "-b", "unmeasured", "main")
    with (repo / "README.md").open("a") as readme:
        readme.write("\nAnother sentence.\n")
    _commit(repo, "a commit that is never measured")


def counted(folder: Path) -> Path:
    """The history's repository in ``folder`` with the deterministic suites of every commit in COUNTED measured,
    built and measured by the first caller (the others wait for it)."""
    repo = folder / "gate" / "repo"
    with open(folder / "gate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "gate" / "counted"
        if not done.exists():
            shutil.rmtree(folder / "gate", ignore_errors=True)
            repo.mkdir(parents=True)
            _build_history(repo)
            home = repo.parent / "home"  # asv keeps its machine description in ~/.asv-machine.json
            home.mkdir()
            assert _asv(repo, "machine", "--yes", "--machine", MACHINE).returncode == 0
            for branch in COUNTED:
                _run(repo, branch, (COUNTS,), "--quick")
            git(repo, "checkout", "-q", "main")
            done.touch()
    return repo


def measure_timed(repo: Path) -> None:
    """The measured suite and the timing case of TIMED_RUNS, into the results of ``repo``: ``main`` and ``noop`` at
    once on two CPUs (one CPU: one after the other), then ``explicit`` (the module docstring)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        for branch in ("main", "noop"):
            _measure(repo, branch)
    else:
        tree = repo.parent / "noop" / "repo"
        git(repo, "worktree", "add", "-q", str(tree), "noop")
        shutil.copytree(repo / ".asv" / "results", tree / ".asv" / "results")  # asv adds to noop's counts
        # an asv home of its own: every `asv run` rewrites ~/.asv-machine.json, which the other run may be reading
        shutil.copytree(repo.parent / "home", tree.parent / "home")
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(_measure, repo, "main", cpus[0]), pool.submit(_measure, tree, "noop", cpus[1])]
            for run in runs:
                run.result()
        noop = git(repo, "rev-parse", "noop")[:8]
        for result in (tree / ".asv" / "results" / MACHINE).glob(f"{noop}-*.json"):
            shutil.copy2(result, repo / ".asv" / "results" / MACHINE / result.name)
        git(repo, "worktree", "remove", "--force", str(tree))
    _measure(repo, "explicit", cpus[0])
    git(repo, "checkout", "-q", "main")


def _measure(repo: Path, branch: str, cpu: int | None = None) -> None:
    patterns = TIMED_RUNS[branch]
    # --record-samples: asv compares timings by Mann-Whitney on the samples (as CI's asv run does), not
    # by the pessimistic overlap of 99% intervals that a busy CPU widens
    _run(repo, branch, patterns, "--record-samples" if TIMED in patterns else "--quick", cpu=cpu)


# asv on one CPU: its processes inherit the affinity (set before exec, not by a preexec_fn in a threaded test)
PINNED = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"


def _asv(repo: Path, *args: str, cpu: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(repo.parent / "home"), ASV_PYTHONPATH=str(repo))
    command = [sys.executable, "-m", "asv", *args]
    if cpu is not None:
        command = [sys.executable, "-c", PINNED, str(cpu), *command[1:]]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)


def _run(repo: Path, branch: str, patterns: tuple[str, ...], *flags: str, cpu: int | None = None) -> None:
    git(repo, "checkout", "-q", branch)
    bench = "|".join(f"(?:{p})" for p in patterns)
    head = git(repo, "rev-parse", "HEAD")
    done = _asv(
        repo,
        "run",
        "--python=same",
        *flags,
        "--machine",
        MACHINE,
        "--set-commit-hash",
        head,
        "--show-stderr",
        "--bench",
        bench,
        cpu=cpu,
    )
    assert done.returncode == 0, f"asv run on {branch}: {done.returncode}\n{_tail(done.stdout + done.stderr)}"


def _tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def judge(repo: Path, head: str, *group_names: str):
    """``bench.site.gate.compare`` of main and ``head`` on the stored results, for the named groups."""
    from bench.site import gate

    groups = tuple(g for g in gate.GROUPS if g.name in group_names)
    conf = gate.load_config(repo / "asv.conf.json")
    conf.repo = str(repo)
    base, tip = gate.resolve(conf, "main"), gate.resolve(conf, head)
    return gate.compare(repo / ".asv" / "results", MACHINE, base, tip, "main", head, groups)


def failing(comparison) -> dict[str, tuple[float, float]]:
    """What failed the gate: asv's name with parameters -> (before, after)."""
    assert not comparison.passed, f"the gate should fail:\n{summary(comparison)}"
    return {r.name: (r.before, r.after) for g in comparison.groups for r in comparison.failing(g)}


def summary(comparison) -> str:
    from bench.site import gate

    return gate.summary(comparison)


def cli(repo: Path, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from bench.cli import main

    monkeypatch.chdir(repo)
    code = main(["gate", "--machine", MACHINE, *args])
    out, err = capsys.readouterr()
    return code, out, err
