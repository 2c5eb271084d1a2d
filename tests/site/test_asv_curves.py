"""The measured curves on the dashboard: latency against image size, drawn by asv's own graph page.

``tools/screenshots.py`` builds a temporary git repository from this project with a history of
three commits (the second changes a comment only, the third makes ViT's default attention
explicit). Each commit's ``curves.Resolution`` is recorded with ``asv run --python=same --quick
--set-commit-hash`` (the project's environment, no virtualenv to build; ``ASV_PYTHONPATH`` points
asv's benchmark processes at the repository), ``mixerbench dashboard`` publishes the site, and headless Chromium opens the benchmark's page
with ``img_size`` on the x-axis (``#curves.Resolution.time_step?x-axis=img_size``, asv
graphdisplay's x-axis selector). Checked: flot drew one graph whose x-axis ticks are image sizes,
the x-axis panel has ``img_size`` selected, every request was answered by the site and the page
logged no error. The docs' screenshots (docs/images/) are taken again from the same site, the
regressions page lists the explicit attention's jump in peak tensor bytes. Skipped without
chromium (.ci/run installs it).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from chromium import load, needs_chromium, probed, serve, uncaught

from helpers import ROOT
from suites import common

BENCHMARK = "curves.Resolution.time_step"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
    needs_chromium,
]


def _screenshots():
    """tools/screenshots.py, imported by path (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "tools" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def curves_site(tmp_path_factory, npm_cache) -> tuple[Path, list[str]]:
    """The site tools/screenshots.py publishes for the docs' pictures: three commits of ``curves.Resolution``
    (the second a comment only, the third ViT's default attention made explicit), results/cpu-quick-v3 as
    the scaling report."""
    pytest.importorskip("asv")
    return _screenshots().build_site(tmp_path_factory.mktemp("curves"))


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


def test_the_docs_screenshots_are_taken_again_from_the_published_site(curves_site, tmp_path):
    """``python tools/screenshots.py`` takes the pictures of docs/guide/reading.md; here from this site, into a
    temporary folder: every committed picture is taken again at its size, and none is blank."""
    from PIL import Image

    site, commits = curves_site
    tool = _screenshots()
    taken = {path.name: path for path in tool.capture(site, tmp_path / "shots")}
    committed = {path.name: path for path in (ROOT / "docs" / "images").glob("*.png")}
    assert set(taken) == set(committed) == {shot.name for shot in tool.SHOTS}
    for name, path in taken.items():
        with Image.open(path) as new, Image.open(committed[name]) as old:
            assert new.size == old.size, name
            assert len(new.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, f"{name} is blank"
        assert (ROOT / "docs" / "guide" / "reading.md").read_text().count(f"../images/{name}") == 1, name
    # The regressions page: the third commit's step in peak tensor bytes, for the series at the default attention
    # only (deterministic bytes: the series that name their backend, and Mixer, did not move).
    entries = json.loads((site / "regressions.json").read_text())["regressions"]
    peak = [
        json.dumps(entry) for entry in entries if str(entry[0]).startswith("curves.Resolution.track_peak_tensor_bytes")
    ]
    assert peak and all("vit_d64" in e and "vit_d64_" not in e and "mixer" not in e for e in peak), peak
