"""The published dashboard: offline assets, the report page, and a real headless Chromium load.

The browser test builds a temporary git repository from this project, records the
deterministic suites with ``asv run --python=same --set-commit-hash``, runs
``mixerbench dashboard`` (``asv publish``, assets from npm, the report beside it),
serves the site on 127.0.0.1 and loads a track_ benchmark's page in Debian's chromium.
It checks that flot drew the graph, that every request was answered from the site
itself, and that the page logged no error. It is skipped when chromium is not installed
(.ci/run installs it).

The report page is published from a sweep whose labels and error message carry HTML and
``javascript:``/``data:``/``vbscript:`` links: the page's HTML and the DOM chromium builds
from it must show them as text, with no event-handler attribute, no such link and no
dialog or blocked script. A failure while publishing (rendering, or the swap itself)
must leave the previous report/ as it was. A malformed asv.conf.json is one line on stderr and exit code 2.

The two-machine test records a tiny benchmark for two asv machine names in a temporary
repository, publishes with ``mixerbench dashboard`` and checks that the benchmark's page
lists both machines and draws a line for each.
"""

from __future__ import annotations

import html
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from chromium import PROBE, REPORT_PROBE, load, needs_chromium, probed, serve, uncaught

from bench import cli
from bench.site import dashboard
from helpers import ROOT, mixer_record, run_bench

# --- fast checks, no network -----------------------------------------------------------------


def test_report_markdown_renders_headings_tables_lists_images_and_escapes():
    md = "\n".join(
        [
            "# Title",
            "",
            "Some `a<b` and **bold** text",
            "over two lines.",
            "",
            "- one *item*",
            "- two",
            "",
            "| model | S |",
            "| --- | ---: |",
            "| vit <b16> | 197 |",
            "",
            "![macs](macs_vs_tokens.png)",
        ]
    )
    expected = "\n".join(
        [
            "<h1>Title</h1>",
            "<p>Some <code>a&lt;b</code> and <strong>bold</strong> text",
            "over two lines.</p>",
            "<ul>",
            "<li>one <em>item</em></li>",
            "<li>two</li>",
            "</ul>",
            "<table>",
            "<thead>",
            "<tr>",
            "<th>model</th>",
            '<th style="text-align:right">S</th>',
            "</tr>",
            "</thead>",
            "<tbody>",
            "<tr>",
            "<td>vit &lt;b16&gt;</td>",
            '<td style="text-align:right">197</td>',
            "</tr>",
            "</tbody>",
            "</table>",
            '<p><img src="macs_vs_tokens.png" alt="macs" /></p>',
            "",
        ]
    )
    assert dashboard.markdown_renderer().render(md) == expected


@pytest.mark.parametrize(
    "url, kept",
    [
        ("http://example.org/a", True),
        ("HTTPS://example.org", True),
        ("macs_vs_tokens.png", True),
        ("../index.html", True),
        ("#scaling-fits", True),
        ("//example.org/x", True),
        ("a/b:c", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        (" \tjava\nscript:alert(1)", False),
        ("data:text/html,x", False),
        ("data:image/png;base64,AAAA", False),
        ("vbscript:msgbox", False),
        ("file:///etc/passwd", False),
        ("mailto:a@b", False),
    ],
)
def test_safe_link_keeps_http_relative_and_anchors_only(url, kept):
    assert dashboard.safe_link(url) is kept


def test_sri_matches_the_published_digest_of_a_known_string():
    # SHA-256 of "abc" (FIPS 180-2, appendix B.1), base64-encoded as Subresource Integrity writes it.
    assert dashboard.sri(b"abc", "sha256") == "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    assert dashboard.matches_integrity(b"abc", "sha384-x sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")
    assert not dashboard.matches_integrity(b"abd", "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")


def test_every_cdn_file_of_the_installed_asv_is_known():
    asv = pytest.importorskip("asv")
    page = (Path(asv.__file__).parent / "www" / "index.html").read_text()
    urls = set(re.findall(r"""(?:src|href)="(https?://[^"]+\.(?:js|css))\"""", page))
    assert urls, "asv's index.html no longer loads anything from a CDN: revisit bench.site.dashboard"
    assert urls == {a.url for a in dashboard.ASSETS}


def test_unknown_external_file_is_refused_before_anything_is_written(tmp_path):
    page = '<html><head><script src="https://cdn.example.org/new.js"></script></head><body></body></html>'
    (tmp_path / "index.html").write_text(page)
    with pytest.raises(dashboard.DashboardError, match="cdn.example.org/new.js"):
        dashboard.vendor_assets(tmp_path, tmp_path / "cache")
    assert (tmp_path / "index.html").read_text() == page
    assert not (tmp_path / "cache").exists() and not (tmp_path / "vendor").exists()


def test_a_corrupt_cached_tarball_is_an_error_not_a_silent_refetch(tmp_path):
    first = next(iter(dashboard.PACKAGES))
    (tmp_path / dashboard.tarball_name(first)).write_bytes(b"not a tarball")
    with pytest.raises(dashboard.DashboardError, match="integrity"):
        dashboard.fetch_packages(tmp_path)


def test_cli_bad_report_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["dashboard", "--report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "report.md not found" in err


# --- the report page: strings from results files never become HTML -----------------------------

PAYLOAD = '"><img src=x onerror=alert(1)>'
JS_LINK = "[click](javascript:alert(1))"
BAD_SCHEMES = ("javascript:", "data:", "vbscript:")


def _commit_all(repo: Path) -> str:
    """Make ``repo`` a git repository with everything in one commit on main; its hash."""
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "t@t"],
        ["config", "user.name", "t"],
        ["add", "-A"],
        ["commit", "-q", "-m", "base"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def _hostile_sweep(folder: Path) -> Path:
    """A sweep folder whose labels and error message carry HTML and a javascript: link, with report.md built."""
    from bench import report

    folder.mkdir(parents=True)
    label = f"mixer {PAYLOAD} {JS_LINK}"
    rows = [mixer_record(size, label=label) for size in (64, 96, 128)]
    rows.append(
        mixer_record(
            64,
            label=f"vit {PAYLOAD}",
            status="error",
            error=f"RuntimeError: {PAYLOAD} ![x](data:image/png;base64,AAAA) [v](vbscript:msgbox)",
        )
    )
    # written as any tool (or person) could write the file, not only through ResultsWriter
    (folder / "results.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
    report.write_report(folder)
    md = (folder / "report.md").read_text()
    # the Markdown carries the attack (escaped as literal text by bench.text.markdown); the page must show it as text
    assert "<img src=x onerror=alert(1)" in md.replace("\\", "") and JS_LINK in md.replace("\\", "")
    return folder


def _html_dir(base: Path) -> Path:
    """A stand-in for asv's published site: an index.html with asv's navigation item."""
    html_dir = base / "html"
    html_dir.mkdir()
    (html_dir / "index.html").write_text(
        '<html><head></head><body><ul class="nav">\n'
        '<li id="nav-li-regressions"><a href="#/regressions">Regressions</a></li>\n'
        "</ul></body></html>\n"
    )
    return html_dir


class _Page(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser would see them."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data

    def active(self) -> list[str]:
        """Event-handler attributes, and href/src/action values with a scheme that runs code or embeds a document."""
        found = []
        for tag, attrs in self.tags:
            for name, value in attrs.items():
                if name.startswith("on"):
                    found.append(f"<{tag} {name}={value!r}>")
                target = re.sub(r"[\x00-\x20]", "", value or "").lower()
                if name in ("href", "src", "action", "formaction") and target.startswith(BAD_SCHEMES):
                    found.append(f"<{tag} {name}={value!r}>")
        return found


def test_report_page_shows_hostile_strings_as_text(tmp_path):
    sweep = _hostile_sweep(tmp_path / "<i>sweep")
    html_dir = _html_dir(tmp_path)
    page = _Page(dashboard.publish_report(sweep, html_dir).read_text())
    assert page.active() == []
    assert [tag for tag, _ in page.tags].count("img") == len(list(sweep.glob("*.png"))) > 0  # the plots, nothing else
    assert "i" not in [tag for tag, _ in page.tags]  # the folder name is text too
    assert page.title == "mixerbench scaling report: <i>sweep"
    text = "".join(page.text)
    assert f"mixer {PAYLOAD} {JS_LINK}" in text
    assert f"error: RuntimeError: {PAYLOAD} ![x](data:image/png;base64,AAAA) [v](vbscript:msgbox)" in text
    assert (html_dir / "report" / "report.md").read_text() == (sweep / "report.md").read_text()


def test_publishing_again_replaces_the_report_folder_whole(tmp_path):
    html_dir = _html_dir(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, body in ((first, "# first\n"), (second, "# second\n")):
        folder.mkdir()
        (folder / "report.md").write_text(body)
    (first / "only_in_first.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    dashboard.publish_report(first, html_dir)
    index = (html_dir / "index.html").read_text()
    assert index.count(dashboard.NAV_LINK) == 1
    dashboard.publish_report(second, html_dir)
    assert sorted(p.name for p in (html_dir / "report").iterdir()) == ["index.html", "report.md"]
    assert "<h1>second</h1>" in (html_dir / "report" / "index.html").read_text()
    assert (html_dir / "index.html").read_text() == index  # the link is added once
    assert sorted(p.name for p in html_dir.iterdir()) == ["index.html", "report"]  # no staging folder left


@pytest.mark.parametrize("where", ["while rendering", "while swapping"])
def test_a_failure_while_publishing_leaves_the_previous_report(tmp_path, monkeypatch, where):
    html_dir = _html_dir(tmp_path)
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, body in ((old, "# old report\n"), (new, "# new report\n")):
        folder.mkdir()
        (folder / "report.md").write_text(body)
        (folder / f"{folder.name}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    dashboard.publish_report(old, html_dir)
    before = {p.name: p.read_bytes() for p in (html_dir / "report").iterdir()}
    index = (html_dir / "index.html").read_bytes()

    if where == "while rendering":  # after the plots and report.md were copied: midway through the build

        def fail(*args, **kwargs):
            raise RuntimeError("disk full")

        monkeypatch.setattr(dashboard, "render_report", fail)
    else:  # the old folder is already renamed aside when moving the new one in fails
        real = os.replace

        def fail(src, dst):
            if Path(src).name.startswith(".report-new-") and Path(dst).name == "report":
                raise OSError("disk full")
            return real(src, dst)

        monkeypatch.setattr(dashboard.os, "replace", fail)
    with pytest.raises((RuntimeError, OSError), match="disk full"):
        dashboard.publish_report(new, html_dir)

    assert {p.name: p.read_bytes() for p in (html_dir / "report").iterdir()} == before
    assert b"<h1>old report</h1>" in before["index.html"]
    assert (html_dir / "index.html").read_bytes() == index
    assert sorted(p.name for p in html_dir.iterdir()) == ["index.html", "report"]  # nothing half-built left


def _tiny_docs(folder: Path, body: str) -> Path:
    """An mkdocs project with one page (mkdocs' own theme: quick, and nothing to fetch)."""
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "index.md").write_text(body)
    (folder / "mkdocs.yml").write_text("site_name: tiny\ntheme: mkdocs\nuse_directory_urls: false\n")
    return folder / "mkdocs.yml"


def test_a_docs_build_that_fails_strict_leaves_the_previous_docs(tmp_path):
    pytest.importorskip("mkdocs")
    html_dir = _html_dir(tmp_path)
    good = _tiny_docs(tmp_path / "good", "# first docs\n")
    assert dashboard.publish_docs(good, html_dir) == html_dir / "docs" / "index.html"
    index = (html_dir / "index.html").read_text()
    assert index.count(dashboard.DOCS_NAV_LINK) == 1
    before = (html_dir / "docs" / "index.html").read_text()
    assert "first docs" in before
    bad = _tiny_docs(tmp_path / "bad", "# second docs\n\n[gone](missing.md)\n")  # a warning: strict fails
    with pytest.raises(dashboard.DashboardError, match="mkdocs build of .* failed"):
        dashboard.publish_docs(bad, html_dir)
    assert (html_dir / "docs" / "index.html").read_text() == before
    assert (html_dir / "index.html").read_text() == index
    assert sorted(p.name for p in html_dir.iterdir()) == ["docs", "index.html"]  # no staging folder left


def test_cli_missing_docs_config_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["dashboard", "--docs", str(tmp_path / "mkdocs.yml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mkdocs.yml not found" in err


def test_the_projects_asv_config_is_read_with_its_comments():
    pytest.importorskip("asv")
    conf = dashboard.load_asv_config(ROOT / "asv.conf.json")
    assert (conf.html_dir, conf.results_dir) == (ROOT / ".asv" / "html", ROOT / ".asv" / "results")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"version": 1, "repo": "."', "cannot be read as JSON"),
        ("", "cannot be read as JSON"),
        ('["version", "repo"]', "must hold a JSON object, not list"),
        ('{"version": 1}', "has no 'repo'"),
        ('{"repo": "."}', "has no 'version'"),
        ('{"version": 2, "repo": "."}', "asv 0.6 reads version 1"),
        ('{"version": 1, "repo": ".", "html_dir": 5}', "'html_dir' must be a non-empty string"),
        ('{"version": 1, "repo": ".", "results_dir": null}', "'results_dir' must be a non-empty string"),
    ],
)
def test_cli_malformed_asv_config_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    pytest.importorskip("asv")
    config = tmp_path / "asv.conf.json"
    config.write_text(text)
    assert cli.main(["dashboard", "--config", str(config), "--cache", str(tmp_path / "cache")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("mixerbench dashboard: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "cache").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["asv.conf.json"]


# --- the browser test --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory, npm_cache) -> Path:
    pytest.importorskip("asv")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    base = tmp_path_factory.mktemp("site")
    repo = base / "repo"
    repo.mkdir()
    docs = ("mkdocs.yml", "docs", "CHANGELOG.md", "results")  # the documentation site, published beside it
    for name in ("pyproject.toml", "README.md", "asv.conf.json", "architectures", "bench", "suites", *docs):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, repo / name)
    (repo / ".gitignore").write_text(".asv/\n__pycache__/\n")
    commit = _commit_all(repo)

    home = base / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), ASV_PYTHONPATH=str(repo))  # the copy imports without being installed
    asv = [sys.executable, "-m", "asv"]
    subprocess.run(
        [*asv, "machine", "--yes", "--machine", "browser-test"], cwd=repo, env=env, check=True, capture_output=True
    )
    done = subprocess.run(
        [
            *asv,
            "run",
            "--python=same",
            "--machine",
            "browser-test",
            "--set-commit-hash",
            commit,
            "--bench",
            r"^flops\.",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = base / "sweep"  # a sweep folder as `mixerbench report` leaves it: report.md + PNG plots
    report.mkdir()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([196, 576, 1024], [12.6, 37.1, 66.0])
    fig.savefig(report / "macs_vs_tokens.png")
    plt.close(fig)
    (report / "report.md").write_text(
        "# mixerbench sweep report\n\n| model | verdict |\n| --- | --- |\n"
        "| mixer_b16 | **linear** |\n\n## Plots\n\n![macs_vs_tokens.png](macs_vs_tokens.png)\n"
    )

    done = run_bench(
        "dashboard",
        "--config",
        repo / "asv.conf.json",
        "--report",
        report,
        "--docs",
        repo / "mkdocs.yml",
        "--cache",
        npm_cache,
        cwd=repo,  # the copy's bench, with the user's npm settings
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return repo / ".asv" / "html"


@pytest.mark.slow
def test_published_site_serves_every_file_itself(site):
    for page in site.glob("*.html"):
        text = page.read_text()
        assert not re.search(r"""<(?:script|link)\b[^>]*(?:src|href)=["'](?:https?:)?//""", text), page.name
    index = (site / "index.html").read_text()
    # Byte-identical npm files keep asv's integrity hash (the browser re-checks them below).
    assert (
        'src="vendor/jquery@3.3.1/dist/jquery.min.js" integrity="sha256-FgpCb/KJQlLNfOu91ta32o/NMZxltwRo8QtmkMRdAu8="'
        in index
    )
    assert "vendor/bootstrap@3.1.1/dist/fonts/glyphicons-halflings-regular.woff" not in index
    assert (site / "vendor/bootstrap@3.1.1/dist/fonts/glyphicons-halflings-regular.woff").is_file()
    assert 'href="report/index.html"' in index
    report = (site / "report" / "index.html").read_text()
    assert '<img src="macs_vs_tokens.png"' in report and (site / "report" / "macs_vs_tokens.png").is_file()
    assert "<strong>linear</strong>" in report


@pytest.mark.slow
@needs_chromium
def test_track_benchmark_graph_renders_in_headless_chromium_without_errors(site, tmp_path):
    with serve(site) as served:
        dom, stderr = load(served.url("/index.html#flops.Count.track_gmacs"), tmp_path / "profile")
        report_dom, _ = load(served.url("/report/index.html"), tmp_path / "profile2")

    assert "continental origin of swallow" not in dom, "asv's page says its JavaScript failed to load"
    assert probed(dom) == []
    assert not uncaught(stderr)

    graph = dom[dom.index('id="main-graph"') : dom.index('id="overview"')]
    assert graph.count('class="flot-base"') == 1, "flot drew no graph for flops.Count.track_gmacs"
    assert "model-mixer_b16" in graph  # the legend lists the series that the suite tracks
    error_box = re.search(r'id="error-message"[^>]*>(.*?)</div>', dom, re.DOTALL)
    assert error_box is None or not error_box.group(1).strip(), error_box.group(1)

    assert not served.failed, served.failed
    assert "/vendor/jquery@3.3.1/dist/jquery.min.js" in served.paths
    assert any(p.startswith("/graphs/") and p.endswith("flops.Count.track_gmacs.json") for p in served.paths)

    assert "<h1>mixerbench sweep report</h1>" in report_dom
    assert "/report/macs_vs_tokens.png" in served.paths


def _local_links(page: Path) -> list[str]:
    """The href and src values of ``page`` that point into the site (no scheme, not protocol-relative)."""
    urls = re.findall(r"""(?:href|src)=["']([^"']*)["']""", page.read_text())
    return [html.unescape(u) for u in urls if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|//", u)]


@pytest.mark.slow
def test_docs_link_the_dashboard_and_report_both_ways_and_every_link_resolves(site):
    docs = site / dashboard.DOCS_DIR
    assert dashboard.DOCS_NAV_LINK in (site / "index.html").read_text()  # dashboard -> docs
    assert 'href="../docs/index.html"' in (site / "report" / "index.html").read_text()  # report -> docs
    index = (docs / "index.html").read_text()
    assert 'href="../index.html"' in index and 'href="../report/index.html"' in index  # docs -> both
    cli_page = (docs / "reference" / "cli.html").read_text()
    assert 'href="../../index.html"' in cli_page and 'href="../../report/index.html"' in cli_page
    pages = sorted(p for p in docs.rglob("*.html") if p.name != "404.html")  # 404.html: root-relative, for servers
    assert len(pages) > 15
    broken = []
    for page in pages:
        for url in _local_links(page):
            path = url.split("#")[0].split("?")[0]
            if not path:
                continue
            target = (page.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not (target.is_file() and target.is_relative_to(site.resolve())):
                broken.append(f"{page.relative_to(site)} -> {url}")
    assert not broken, broken[:20]


@pytest.mark.slow
@needs_chromium
def test_docs_render_offline_beside_the_dashboard_in_headless_chromium(site, tmp_path):
    pages = ("/docs/index.html", "/docs/reference/cli.html", "/docs/results/index.html")
    doms = {}
    with serve(site, {page: PROBE for page in pages}) as served:
        for i, page in enumerate(pages):
            doms[page], stderr = load(served.url(page), tmp_path / f"profile{i}")
            assert not uncaught(stderr), page
    for page, dom in doms.items():
        assert probed(dom, page) == [], page
    assert "usage: mixerbench sweep" in html.unescape(doms["/docs/reference/cli.html"])
    assert 'class="md-header' in doms["/docs/index.html"]  # material's theme rendered
    assert any(p.startswith("/docs/assets/") and p.endswith(".js") for p in served.paths)
    assert any(p.startswith("/docs/results/") and p.endswith(".png") for p in served.paths)
    assert not served.failed, (
        served.failed
    )  # every request answered by the site itself (nothing else is reachable offline)

    # and straight from the file system (a copied or unpacked site): pages are page.html, not page/
    dom, stderr = load((site / "docs" / "reference" / "cli.html").as_uri(), tmp_path / "profile-file")
    assert "usage: mixerbench sweep" in html.unescape(dom) and 'class="md-header' in dom
    assert not [line for line in stderr.splitlines() if "CONSOLE" in line or "net::ERR" in line]


@needs_chromium
def test_report_page_runs_no_script_in_headless_chromium(tmp_path):
    sweep = _hostile_sweep(tmp_path / "sweep")
    html_dir = _html_dir(tmp_path)
    dashboard.publish_report(sweep, html_dir)
    with serve(html_dir, {"/report/index.html": REPORT_PROBE}) as served:
        dom, stderr = load(served.url("/report/index.html"), tmp_path / "profile")
    assert ("/report/index.html", 200) in served.log
    assert probed(dom, pre_id="test-ran") == []  # no dialog opened, nothing refused by the page's policy
    assert not [line for line in stderr.splitlines() if "Content Security Policy" in line or "Uncaught" in line]
    page = _Page(dom)  # the DOM as chromium built it
    assert page.active() == []
    text = "".join(page.text)
    assert f"mixer {PAYLOAD} {JS_LINK}" in text and f"RuntimeError: {PAYLOAD}" in text
    assert page.title == "mixerbench scaling report: sweep"


# --- one dashboard for two machines ------------------------------------------------------------

MACHINES = ("alpha-box", "beta-box")


@pytest.fixture(scope="module")
def two_machine_site(tmp_path_factory, npm_cache) -> Path:
    """A tiny asv project with results for two machines, published by ``mixerbench dashboard``."""
    pytest.importorskip("asv")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    base = tmp_path_factory.mktemp("machines")
    repo = base / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "asv.conf.json").write_text(
        json.dumps(
            {
                "version": 1,
                "project": "tiny",
                "project_url": "#",
                "repo": ".",
                "branches": ["main"],
                "dvcs": "git",
                "environment_type": "virtualenv",
                "benchmark_dir": "benchmarks",
                "env_dir": ".asv/env",
                "results_dir": ".asv/results",
                "html_dir": ".asv/html",
            }
        )
    )
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "answer.py").write_text("def track_answer():\n    return 42\n")
    (repo / ".gitignore").write_text(".asv/\n")
    commit = _commit_all(repo)
    home = base / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))  # asv keeps its machine descriptions in ~/.asv-machine.json
    asv = [sys.executable, "-m", "asv"]
    for machine in MACHINES:  # asv writes results/<machine>/ for each
        subprocess.run(
            [*asv, "machine", "--yes", "--machine", machine], cwd=repo, env=env, check=True, capture_output=True
        )
        done = subprocess.run(
            [*asv, "run", "--python=same", "--machine", machine, "--set-commit-hash", commit],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in (repo / ".asv" / "results").iterdir() if p.is_dir()) == list(MACHINES)
    sweep = _hostile_sweep(base / "sweep")  # and a report beside the dashboard, through the CLI
    done = run_bench(
        "dashboard", "--config", repo / "asv.conf.json", "--report", sweep, "--cache", npm_cache, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return repo / ".asv" / "html"


@pytest.mark.slow
def test_two_machines_are_published_as_one_dashboard(two_machine_site):
    index = json.loads((two_machine_site / "index.json").read_text())
    assert sorted(index["params"]["machine"]) == list(MACHINES)
    graphs = {
        p.relative_to(two_machine_site / "graphs").as_posix()
        for p in (two_machine_site / "graphs").rglob("answer.track_answer.json")
    }
    assert [g for g in graphs if "machine-alpha-box" in g] and [g for g in graphs if "machine-beta-box" in g], graphs
    assert 'href="report/index.html"' in (two_machine_site / "index.html").read_text()
    assert _Page((two_machine_site / "report" / "index.html").read_text()).active() == []


@pytest.mark.slow
@needs_chromium
def test_two_machines_appear_in_the_dashboard_in_headless_chromium(two_machine_site, tmp_path):
    with serve(two_machine_site) as served:
        dom, stderr = load(served.url("/index.html#answer.track_answer"), tmp_path / "profile")
    assert probed(dom) == []
    assert not served.failed, served.failed

    # The "machine" panel on the left has one button per machine, both selected.
    panel = re.search(
        r'<div class="panel-heading">machine</div><div class="panel-body">(.*?)</div></div>', dom, re.DOTALL
    )
    assert panel is not None, "the benchmark page has no machine panel"
    buttons = re.findall(r'<a class="btn[^"]*"[^>]*>([^<]*)</a>', panel.group(1))
    assert sorted(buttons) == list(MACHINES)
    assert panel.group(1).count(" active") == len(MACHINES)
    # flot drew the graph, with a legend entry (one line) per machine, and both lines' data was fetched.
    graph = dom[dom.index('id="main-graph"') : dom.index('id="overview"')]
    assert graph.count('class="flot-base"') == 1, "flot drew no graph for answer.track_answer"
    legend = re.findall(r'<td class="legendLabel">([^<]*)</td>', graph)
    assert sorted(legend) == [f"machine-{m}" for m in MACHINES]
    for machine in MACHINES:
        assert [p for p in served.paths if f"/machine-{machine}/" in p and p.endswith("answer.track_answer.json")]
