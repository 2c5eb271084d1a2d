""".github/scripts/publish-dashboard: every machine's asv results end up on gh-pages and on the dashboard.

The script runs against a local bare repository standing in for GitHub, with a stand-in
for ``mixerbench dashboard`` that writes the list of machines it found in .asv/results as
the site's index.html (asv publish draws one set of lines per machine folder there; the
real command is tested in tests/site/test_dashboard.py). Checked: the first publication
starts gh-pages; the GPU machine's publication keeps the CPU machine's results and the
scaling report already published; a push that loses a race to another job starts again
from the new tip and keeps what that job stored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT

SCRIPT = ROOT / ".github" / "scripts" / "publish-dashboard"

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("bash") is None, reason="git and bash are needed"
)

STUB = """#!/bin/bash
# stand-in for `mixerbench dashboard [--report DIR]`
set -e
[ "$1" = dashboard ] || { echo "unexpected: $*" >&2; exit 3; }
mkdir -p .asv/html
find .asv/results -mindepth 2 -maxdepth 2 -name machine.json -printf '%h\\n' | xargs -n1 basename | sort > .asv/html/index.html
if [ "$2" = --report ]; then mkdir -p .asv/html/report && cp "$3/report.md" .asv/html/report/; fi
if [ -n "${RACE_ONCE:-}" ] && [ ! -e "$RACE_ONCE" ]; then  # another job pushes first
    touch "$RACE_ONCE"
    rival=$(mktemp -d)
    git clone -q -b gh-pages "$(git remote get-url origin)" "$rival"
    mkdir -p "$rival/asv-results/rival-machine" && echo '{}' > "$rival/asv-results/rival-machine/machine.json"
    git -C "$rival" add -A && git -C "$rival" commit -q -m rival && git -C "$rival" push -q origin HEAD:gh-pages
fi
"""


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _results(folder: Path, machine: str, commit: str) -> Path:
    (folder / machine).mkdir(parents=True)
    (folder / machine / "machine.json").write_text(json.dumps({"machine": machine}))
    (folder / machine / f"{commit}-env.json").write_text(json.dumps({"commit_hash": commit}))
    (folder / "benchmarks.json").write_text("{}")
    return folder


@pytest.fixture
def repo(tmp_path) -> Path:
    origin = tmp_path / "origin.git"
    _git(tmp_path, "init", "-q", "--bare", str(origin))
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "remote", "add", "origin", str(origin))
    (repo / "README.md").write_text("x\n")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "main")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mixerbench").write_text(STUB)
    (bin_dir / "mixerbench").chmod(0o755)
    return repo


def _publish(repo: Path, *args: Path, **env: str) -> subprocess.CompletedProcess:
    path = f"{repo.parent / 'bin'}{os.pathsep}{os.environ['PATH']}"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITHUB_"))}
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env={**keep, "PATH": path, "GH_TOKEN": "not-a-real-token", "PUBLISH_ATTEMPTS": "3", **env},
    )


def _pages(repo: Path) -> tuple[set[str], list[str]]:
    origin = repo.parent / "origin.git"
    files = set(_git(origin, "ls-tree", "-r", "--name-only", "gh-pages").split())
    machines = _git(origin, "show", "gh-pages:index.html").split()
    return files, machines


def test_gpu_results_join_the_cpu_results_on_the_dashboard(repo, tmp_path):
    report = tmp_path / "sweep-quick"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    cpu = _publish(repo, _results(tmp_path / "cpu", "github-actions", "aaaa1111"), report)
    assert cpu.returncode == 0, cpu.stderr
    files, machines = _pages(repo)
    assert machines == ["github-actions"]
    assert {
        "asv-results/github-actions/machine.json",
        "asv-results/github-actions/aaaa1111-env.json",
        "report/report.md",
        "index.html",
        ".nojekyll",
    } <= files

    gpu = _publish(repo, _results(tmp_path / "gpu", "gpu-h200", "aaaa1111"))
    assert gpu.returncode == 0, gpu.stderr
    files, machines = _pages(repo)
    assert machines == ["github-actions", "gpu-h200"]
    assert {
        "asv-results/github-actions/aaaa1111-env.json",
        "asv-results/gpu-h200/aaaa1111-env.json",
        "report/report.md",
    } <= files  # the CPU results and the report were kept
    log = _git(repo.parent / "origin.git", "log", "--format=%s", "gh-pages").splitlines()
    assert len(log) == 2 and "gpu-h200" in log[0] and "github-actions" in log[1]
    assert "not-a-real-token" not in (repo / ".git" / "config").read_text()


def test_a_push_that_loses_a_race_starts_again_from_the_new_tip(repo, tmp_path):
    assert _publish(repo, _results(tmp_path / "cpu", "github-actions", "aaaa1111")).returncode == 0
    raced = _publish(repo, _results(tmp_path / "gpu", "gpu-h200", "bbbb2222"), RACE_ONCE=str(tmp_path / "raced"))
    assert raced.returncode == 0, raced.stderr
    assert "push rejected (attempt 1 of 3)" in raced.stderr
    files, machines = _pages(repo)
    assert machines == ["github-actions", "gpu-h200", "rival-machine"]
    assert {"asv-results/rival-machine/machine.json", "asv-results/gpu-h200/bbbb2222-env.json"} <= files
    subjects = _git(repo.parent / "origin.git", "log", "--format=%s", "gh-pages").splitlines()
    assert subjects[:2] == [subjects[0], "rival"] and "gpu-h200" in subjects[0]


def test_refuses_without_a_token_or_a_results_folder(repo, tmp_path):
    no_token = _publish(repo, _results(tmp_path / "cpu", "github-actions", "aaaa1111"), GH_TOKEN="")
    assert no_token.returncode != 0 and "GH_TOKEN" in no_token.stderr
    no_folder = _publish(repo, tmp_path / "missing")
    assert no_folder.returncode == 2 and "usage" in no_folder.stderr
