"""The published dashboard: offline assets, the report page, and a real headless Chromium load.

The browser test builds a temporary git repository from this project, records the
deterministic suites with ``asv run --python=same --set-commit-hash``, runs
``mixerbench dashboard`` (``asv publish``, assets from npm, the report beside it),
serves the site on 127.0.0.1 and loads a track_ benchmark's page in Debian's chromium.
It checks that flot drew the graph, that every request was answered from the site
itself, and that the page logged no error. It is skipped when chromium is not installed
(.ci/run installs it).
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench import cli

from bench.site import dashboard

ROOT = Path(__file__).resolve().parents[2]
NPM_CACHE = Path.home() / ".cache" / "mixerbench" / "npm"  # the CLI's default: fetched once per machine


# --- fast checks, no network -----------------------------------------------------------------


def test_report_markdown_renders_headings_tables_lists_images_and_escapes():
    md = "\n".join([
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
    ])
    expected = "\n".join([
        "<h1>Title</h1>",
        "<p>Some <code>a&lt;b</code> and <strong>bold</strong> text over two lines.</p>",
        "<ul><li>one <em>item</em></li><li>two</li></ul>",
        '<table><thead><tr><th style="text-align:left">model</th><th style="text-align:right">S</th></tr></thead>'
        '<tbody><tr><td style="text-align:left">vit &lt;b16&gt;</td><td style="text-align:right">197</td></tr></tbody></table>',
        '<p><img src="macs_vs_tokens.png" alt="macs"></p>',
    ])
    assert dashboard.render_markdown(md) == expected


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


# --- the browser test --------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Recorded by the page itself, then written into the DOM that --dump-dom prints: script
# errors, resources that failed to load (capture phase), rejected promises, console.error.
PROBE = """<script>
window.__problems = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__problems.push(t && t !== window && (t.src || t.href) ? 'failed to load ' + (t.src || t.href) : 'error: ' + e.message);
}, true);
window.addEventListener('unhandledrejection', function (e) { window.__problems.push('unhandled rejection: ' + e.reason); });
(function () {
  var original = console.error;
  console.error = function () { window.__problems.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); original.apply(console, arguments); };
})();
setInterval(function () {
  if (!document.body) return;
  var out = document.getElementById('test-problems');
  if (!out) { out = document.createElement('pre'); out.id = 'test-problems'; document.body.appendChild(out); }
  out.textContent = JSON.stringify(window.__problems);
}, 50);
</script>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site; adds PROBE to index.html; records every request and its status."""

    log: list[tuple[str, int]]

    def send_response(self, code, message=None):
        self.log.append((self.path, code))
        super().send_response(code, message)

    def log_message(self, format, *args):  # keep pytest's output clean
        pass

    def send_head(self):
        if self.path.split("?")[0] in ("/", "/index.html"):
            body = (Path(self.directory) / "index.html").read_text().replace("<head>", "<head>" + PROBE, 1).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)
        return super().send_head()


def _serve(directory: Path):
    log: list[tuple[str, int]] = []
    handler = functools.partial(type("Handler", (_Handler,), {"log": log}), directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, log


def _chromium_dom(url: str, profile: Path) -> tuple[str, str]:
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--window-size=1400,900",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("asv")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    base = tmp_path_factory.mktemp("site")
    repo = base / "repo"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md", "asv.conf.json", "architectures", "bench", "suites"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, repo / name)
    (repo / ".gitignore").write_text(".asv/\n__pycache__/\n")
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@t"], ["config", "user.name", "t"],
                 ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    home = base / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes", "--machine", "browser-test"], cwd=repo, env=env, check=True, capture_output=True)
    done = subprocess.run([*asv, "run", "--python=same", "--machine", "browser-test", "--set-commit-hash", commit,
                           "--bench", r"^flops\."], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
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
    (report / "report.md").write_text("# mixerbench sweep report\n\n| model | verdict |\n| --- | --- |\n"
                                      "| mixer_b16 | **linear** |\n\n## Plots\n\n![macs_vs_tokens.png](macs_vs_tokens.png)\n")

    done = subprocess.run([sys.executable, "-m", "bench", "dashboard", "--config", str(repo / "asv.conf.json"),
                           "--report", str(report), "--cache", str(NPM_CACHE)],
                          cwd=repo, capture_output=True, text=True, timeout=900)  # the user's npm settings
    assert done.returncode == 0, done.stdout + done.stderr
    return repo / ".asv" / "html"


@pytest.mark.slow
def test_published_site_serves_every_file_itself(site):
    for page in site.glob("*.html"):
        text = page.read_text()
        assert not re.search(r"""<(?:script|link)\b[^>]*(?:src|href)=["'](?:https?:)?//""", text), page.name
    index = (site / "index.html").read_text()
    # Byte-identical npm files keep asv's integrity hash (the browser re-checks them below).
    assert 'src="vendor/jquery@3.3.1/dist/jquery.min.js" integrity="sha256-FgpCb/KJQlLNfOu91ta32o/NMZxltwRo8QtmkMRdAu8="' in index
    assert "vendor/bootstrap@3.1.1/dist/fonts/glyphicons-halflings-regular.woff" not in index
    assert (site / "vendor/bootstrap@3.1.1/dist/fonts/glyphicons-halflings-regular.woff").is_file()
    assert 'href="report/index.html"' in index
    report = (site / "report" / "index.html").read_text()
    assert '<img src="macs_vs_tokens.png"' in report and (site / "report" / "macs_vs_tokens.png").is_file()
    assert "<strong>linear</strong>" in report


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_track_benchmark_graph_renders_in_headless_chromium_without_errors(site, tmp_path):
    server, log = _serve(site)
    try:
        port = server.server_address[1]
        dom, stderr = _chromium_dom(f"http://127.0.0.1:{port}/index.html#flops.Count.track_gmacs", tmp_path / "profile")
        report_dom, _ = _chromium_dom(f"http://127.0.0.1:{port}/report/index.html", tmp_path / "profile2")
    finally:
        server.shutdown()
        server.server_close()

    assert "continental origin of swallow" not in dom, "asv's page says its JavaScript failed to load"
    problems = re.search(r'<pre id="test-problems">(.*?)</pre>', dom, re.DOTALL)
    assert problems is not None, "the probe never ran: the page did not load"
    assert json.loads(problems.group(1).replace("&quot;", '"')) == []
    assert not [line for line in stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]

    graph = dom[dom.index('id="main-graph"'): dom.index('id="overview"')]
    assert graph.count('class="flot-base"') == 1, "flot drew no graph for flops.Count.track_gmacs"
    assert "model-mixer_b16" in graph  # the legend lists the series that the suite tracks
    error_box = re.search(r'id="error-message"[^>]*>(.*?)</div>', dom, re.DOTALL)
    assert error_box is None or not error_box.group(1).strip(), error_box.group(1)

    failed = [(path, code) for path, code in log if code >= 400]
    assert not failed, failed
    served = {path.split("?")[0] for path, _ in log}
    assert "/vendor/jquery@3.3.1/dist/jquery.min.js" in served
    assert any(p.startswith("/graphs/") and p.endswith("flops.Count.track_gmacs.json") for p in served)

    assert "<h1>mixerbench sweep report</h1>" in report_dom
    assert "/report/macs_vs_tokens.png" in {path for path, _ in log}
