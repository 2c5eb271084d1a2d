"""The measured curves on the dashboard: latency against image size, drawn by asv's own graph page.

A temporary git repository is built from this project with a history of three commits (the
second and third change a comment only). Each commit's ``curves.Resolution.time_step`` is
recorded with ``asv run --python=same --quick --set-commit-hash`` (the project's environment, no
virtualenv to build; ``ASV_PYTHONPATH`` points asv's benchmark processes at the repository),
``mixerbench dashboard`` publishes the site, and headless Chromium opens the benchmark's page
with ``img_size`` on the x-axis (``#curves.Resolution.time_step?x-axis=img_size``, asv
graphdisplay's x-axis selector). Checked: flot drew one graph whose x-axis ticks are image sizes,
the x-axis panel has ``img_size`` selected, every request was answered by the site and the page
logged no error. Skipped without chromium (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from chromium import load, needs_chromium, probed, serve, uncaught

from helpers import ROOT
from suites import common

PROJECT_FILES = ("pyproject.toml", "README.md", "asv.conf.json", "architectures", "bench", "suites")
BENCHMARK = "curves.Resolution.time_step"
MACHINE = "curves-test"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
    needs_chromium,
]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def curves_site(tmp_path_factory, npm_cache) -> tuple[Path, list[str]]:
    pytest.importorskip("asv")
    base = tmp_path_factory.mktemp("curves")
    repo = base / "repo"
    repo.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, repo / name)
    (repo / ".gitignore").write_text(".asv/\n__pycache__/\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    home = base / "home"  # asv keeps its machine description in ~/.asv-machine.json
    home.mkdir()
    env = dict(os.environ, HOME=str(home), ASV_PYTHONPATH=str(repo))
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes", "--machine", MACHINE], cwd=repo, env=env, check=True, capture_output=True)
    commits = []
    for i in range(3):
        if i:
            with (repo / "suites" / "curves.py").open("a") as f:
                f.write(f"# history commit {i}: a comment only\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"commit {i}")
        commits.append(_git(repo, "rev-parse", "HEAD"))
        done = subprocess.run(
            [
                *asv,
                "run",
                "--python=same",
                "--quick",
                "--machine",
                MACHINE,
                "--set-commit-hash",
                commits[-1],
                "--bench",
                rf"^{re.escape(BENCHMARK)}\b",
            ],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "dashboard",
            "--config",
            str(repo / "asv.conf.json"),
            "--cache",
            str(npm_cache),
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return repo / ".asv" / "html", commits


def test_the_history_holds_a_latency_curve_per_commit(curves_site):
    site, commits = curves_site
    index = json.loads((site / "index.json").read_text())
    bench = index["benchmarks"][BENCHMARK]
    assert bench["param_names"] == ["series", "img_size"]
    assert [int(v) for v in bench["params"][1]] == list(common.CURVE_IMG_SIZES)
    assert len(index["revision_to_hash"]) == 3 and set(index["revision_to_hash"].values()) == set(commits)
    graphs = [g for g in (site / "graphs").rglob(f"{BENCHMARK}.json") if "summary" not in g.parts]
    assert graphs
    points = json.loads(graphs[0].read_text())  # [revision, [value per parameter combination]]
    combinations = len(common.TOKEN_SERIES) * len(common.CURVE_IMG_SIZES)
    assert len(points) == 3 and all(len(values) == combinations for _, values in points)
    assert all(v is not None and v > 0 for _, values in points for v in values)


def test_latency_against_image_size_renders_in_headless_chromium(curves_site, tmp_path):
    site, _ = curves_site
    with serve(site) as served:
        dom, stderr = load(served.url(f"/index.html#{BENCHMARK}?x-axis=img_size"), tmp_path / "profile")

    assert "continental origin of swallow" not in dom, "asv's page says its JavaScript failed to load"
    assert probed(dom) == []
    assert not uncaught(stderr)
    assert not served.failed, served.failed

    # The x-axis panel offers the benchmark's parameters, with img_size selected.
    panel = re.search(
        r'<div class="panel-heading">x-axis</div><div class="panel-body">(.*?)</div></div>', dom, re.DOTALL
    )
    assert panel is not None, "the benchmark page has no x-axis panel"
    active = re.findall(r'<a class="btn[^"]*active[^"]*"[^>]*>([^<]*)</a>', panel.group(1))
    assert active == ["img_size"], panel.group(1)
    # flot drew one graph whose x-axis is the image size (on the commit axis its ticks would be dates or
    # revisions): numeric ticks inside 64..192 px spanning most of it, one line per series of the last commit.
    graph = dom[dom.index('id="main-graph"') : dom.index('id="overview"')]
    assert graph.count('class="flot-base"') == 1, f"flot drew no graph for {BENCHMARK}"
    xaxis = re.search(r'<div class="flot-x-axis.*?</div></div>', graph, re.DOTALL)
    assert xaxis is not None, "the graph has no x-axis"
    xticks = [float(t) for t in re.findall(r">([^<]+)</div>", xaxis.group(0))]
    sizes = common.CURVE_IMG_SIZES
    assert len(xticks) >= 5 and sizes[0] <= min(xticks) and max(xticks) <= sizes[-1], xticks
    assert max(xticks) - min(xticks) >= (sizes[-1] - sizes[0]) / 2, xticks
    legend = set(re.findall(r'<td class="legendLabel">([^<]*)</td>', graph))
    assert {f"commit-last; series-{s}" for s in common.TOKEN_SERIES} <= legend, legend
    assert any(p.startswith("/graphs/") and p.endswith(f"{BENCHMARK}.json") for p in served.paths)
