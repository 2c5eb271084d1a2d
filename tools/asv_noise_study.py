"""Noise study of the asv suites: which tracks may gate, and at which factor.

usage: python tools/asv_noise_study.py [--runs 5] [--bench REGEX] [--gate REGEX] [--factor 1.5] [--out FILE] [--keep DIR]

Builds a temporary git repository from this checkout (as tests/site/gate_history.py does) with
three commits: ``main``; ``noop``, which changes a comment only; ``explicit``, which makes ViT's
default attention explicit (``ViTConfig.attn_backend``). Then:

1. ``--runs`` times: ``asv continuous --factor F --bench REGEX main noop`` (identical code: every
   flag is a false alarm), followed by ``asv compare --factor 1.0 main noop`` for the ratio
   after/before of every benchmark; the load average before each run is recorded;
2. once: ``asv continuous --factor F --bench REGEX main explicit`` (must be flagged: the measured
   memory verdict of ViT fused moves from linear to quadratic, and attention's share grows).

It prints, per benchmark, the ratios over the runs, the largest ratio either way, how many
runs flagged it and whether it gates (its name matches ``--gate``: the pull-request job runs
those with ``asv continuous --factor F``, the others only report), then what the explicit
commit flagged, and writes everything as JSON to
``--out``. A track whose largest ratio stays below its factor with margin can gate at that
factor; counts (flops, scaling, cost, fvcore_count) are exact and gate at 1.0.
asv builds one virtualenv per commit under this checkout's .asv/env (torch is installed into it
once: minutes), shared by all runs. Nothing is written outside the temporary repository,
--keep and --out. Needs git and asv; imports nothing of mixerbench.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", "README.md", "asv.conf.json", "architectures", "bench", "suites")
MACHINE = "noise-study"
DEFAULT_BENCH = r"^(curves|measured)\."
# The measured tracks the pull-request job gates on (docs/guide/asv.md): the verdicts, the quadratic shares and
# attention's share; the shares' bounds, the drift (a ratio of timings) and the set-up cost only report.
DEFAULT_GATE = r"^measured\.(Verdicts\.track_(verdict|quadratic_share_percent)|AttentionShare\.)"
ROW = re.compile(r"^\|\s*([+\-x!~ ]*?)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|\s*([~]?[0-9.]+|n/a)\s*\|\s*(.+?)\s*\|$")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"asv_noise_study: {path.name} no longer contains {old!r} exactly once: update this script")
    path.write_text(text.replace(old, new))


def build_repo(where: Path) -> tuple[Path, dict]:
    repo = where / "repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        src = ROOT / name
        (shutil.copytree(src, repo / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, repo / name))
    _edit(repo / "asv.conf.json", '"env_dir": ".asv/env"', f'"env_dir": "{ROOT / ".asv" / "env"}"')
    (repo / ".gitignore").write_text(".asv/\n__pycache__/\n*.egg-info/\nbuild/\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "noise@study")
    _git(repo, "config", "user.name", "noise study")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "checkout", "-q", "-b", "noop", "main")
    _edit(
        repo / "architectures" / "mixer.py", "class MixerBlock(nn.Module):", "class MixerBlock(nn.Module):  # a comment"
    )
    _git(repo, "commit", "-qam", "a comment only")
    _git(repo, "checkout", "-q", "-b", "explicit", "main")
    _edit(repo / "architectures" / "vit.py", 'attn_backend: str = "fused"', 'attn_backend: str = "explicit"')
    _git(repo, "commit", "-qam", "ViT: explicit attention by default")
    _git(repo, "checkout", "-q", "main")
    home = where / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    subprocess.run(
        [sys.executable, "-m", "asv", "machine", "--yes", "--machine", MACHINE],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    return repo, env


def asv(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asv", *args], cwd=repo, env=env, capture_output=True, text=True)


def table(text: str) -> dict[str, tuple[str, str]]:
    """asv's comparison table: benchmark (with parameters) -> (change mark, ratio)."""
    rows = {}
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m and not m.group(5).startswith("Benchmark"):
            rows[m.group(5)] = (m.group(1).strip(), m.group(4).lstrip("~"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="asv continuous runs of identical code (default 5)")
    parser.add_argument("--bench", default=DEFAULT_BENCH, help=f"asv --bench regex (default {DEFAULT_BENCH!r})")
    parser.add_argument("--gate", default=DEFAULT_GATE, help=f"the benchmarks that gate (default {DEFAULT_GATE!r})")
    parser.add_argument("--factor", default="1.5", help="asv continuous --factor (default 1.5)")
    parser.add_argument("--out", type=Path, help="write the study as JSON here")
    parser.add_argument("--keep", type=Path, help="build the repository here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if shutil.which("git") is None:
        print("asv_noise_study: git is not installed", file=sys.stderr)
        return 2
    where = args.keep or Path(tempfile.mkdtemp(prefix="asv-noise-"))
    where.mkdir(parents=True, exist_ok=True)
    repo, env = build_repo(where)
    gate = re.compile(args.gate)
    study: dict = {"bench": args.bench, "gate": args.gate, "factor": args.factor, "runs": [], "explicit": None}
    common = ["--machine", MACHINE, "--show-stderr", "--bench", args.bench]
    for i in range(args.runs):
        load = os.getloadavg()
        started = time.time()
        done = asv(repo, env, "continuous", "--factor", args.factor, *common, "main", "noop")
        compared = asv(repo, env, "compare", "--factor", "1.0", "--machine", MACHINE, "main", "noop")
        flagged = sorted(k for k, (mark, _) in table(done.stdout).items() if mark == "+")
        ratios = {k: r for k, (_, r) in table(compared.stdout).items()}
        study["runs"].append(
            {
                "load": load,
                "seconds": round(time.time() - started),
                "exit": done.returncode,
                "flagged": flagged,
                "ratios": ratios,
            }
        )
        print(
            f"run {i + 1}/{args.runs}: exit {done.returncode}, {len(flagged)} flagged "
            f"({sum(bool(gate.search(k)) for k in flagged)} gating), "
            f"load {load[0]:.1f}, {time.time() - started:.0f} s",
            flush=True,
        )
        if done.returncode not in (0, 1):
            print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
            return 1
    done = asv(repo, env, "continuous", "--factor", args.factor, *common, "main", "explicit")
    study["explicit"] = {
        "exit": done.returncode,
        "flagged": sorted(k for k, (mark, _) in table(done.stdout).items() if mark == "+"),
    }

    names = sorted({k for run in study["runs"] for k in run["ratios"]})
    print(f"\n| benchmark | after/before over the {args.runs} runs | largest either way | flagged | gates |")
    print("| --- | --- | ---: | ---: | --- |")
    for name in names:
        values = [run["ratios"].get(name, "n/a") for run in study["runs"]]
        numbers = [float(v) for v in values if v != "n/a" and float(v) > 0]
        worst = max((max(v, 1 / v) for v in numbers), default=float("nan"))
        flags = sum(name in run["flagged"] for run in study["runs"])
        print(f"| `{name}` | {', '.join(values)} | {worst:.3f} | {flags} | {'yes' if gate.search(name) else 'no'} |")
    print(f"\nexplicit attention: exit {study['explicit']['exit']}, flagged:")
    for name in study["explicit"]["flagged"]:
        print(f"  {name}{' (gates)' if gate.search(name) else ''}")
    if args.out:
        args.out.write_text(json.dumps(study, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
