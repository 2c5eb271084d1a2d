"""The documentation site: it builds with --strict, its generated parts match the code, its commands run.

- ``mkdocs build --strict`` of the repository's mkdocs.yml, into a temporary folder: a broken
  link, a missing anchor or a page left out of the nav fails it.
- The CLI reference holds every command's ``--help`` output verbatim (it is generated from
  the parsers; this test runs the real command beside it).
- The field tables hold every field of the record types; the results page names every folder
  of results/ with its number of cases (counted here from the JSON lines).
- Every ``$ `` line of a ```` ```console ```` block in README.md and docs/ runs as shown (in bash,
  ``mixerbench`` being this checkout's ``python -m bench``): exit code 0, and the lines shown
  under it, if any, are in its output. Keep such blocks to cheap commands.
- The README stays short and its two set-up commands stay those of .ci/run.
"""

from __future__ import annotations

import html
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from chromium import load, needs_chromium

from helpers import ROOT

mkdocs = pytest.importorskip("mkdocs", reason="mkdocs-material is in the dev extra: pip install -e '.[dev]'")


def _text(page: Path) -> str:
    """The text of an HTML page as a reader sees it: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs-site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_site_builds_strict_and_every_page_is_in_it(site):
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix(".html") for p in (ROOT / "docs").rglob("*.md"))
    assert pages and all((site / page).is_file() for page in pages), [p for p in pages if not (site / p).is_file()]
    assert not list(site.rglob("hooks*")), "the hook file is not published"


def test_the_site_loads_nothing_from_the_network(site):
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r"""<(?:script|link|img|iframe)\b[^>]*(?:src|href)=["'](?:https?:)?//""", text), page
        assert "fonts.googleapis" not in text and "unpkg.com" not in text, page


def _help(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="100"),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


def _commands() -> list[str]:
    from bench.cli import COMMANDS

    return [m.rsplit("cmd_", 1)[1] for m in COMMANDS]


def test_the_cli_reference_is_every_commands_help_verbatim(site):
    page = _text(site / "reference" / "cli.html")
    assert _help() in page
    for command in _commands():
        assert _help(command) in page, f"mixerbench {command} --help differs from docs/reference/cli.md"


def test_the_field_tables_list_every_field_of_the_record_types(site):
    import dataclasses

    from bench.schema import TYPES as types

    page = _text(site / "reference" / "records.html")
    for cls in types:
        assert re.search(rf"\b{cls.__name__}\b", page), f"no table for {cls.__name__}"
        for field in dataclasses.fields(cls):
            stored = field.metadata.get("stored", True)  # stored=False: never written, so not in the tables
            if stored and not field.name.startswith("_") and field.name != "extra":
                assert f"{field.name}" in page, f"{cls.__name__}.{field.name} is missing from the field tables"


def test_the_fits_json_section_is_the_generated_table_of_its_types(site):
    """fits.json's fields are described once, by bench.schema: its section holds every FitRecord, FitCurve and
    FitAttribution field with its JSON type, and only those types (results.jsonl's tables are elsewhere)."""
    from bench import schema

    page = _text(site / "reference" / "records.html")
    section = page[page.index("\nfits.json¶") : page.index("\nflops JSON¶")]
    for name, rows in schema.describe(schema.FITS_FILENAME).items():
        assert name in section
        for field, kind, _ in rows:
            assert re.search(rf"{re.escape(field)}\s+{re.escape(kind)}", section), f"{name}.{field} ({kind})"
    assert "Timing¶" not in section and "\nRecord¶" not in section


def test_the_results_page_has_every_folder_with_its_number_of_cases(site):
    page = _text(site / "results" / "index.html")
    folders = sorted(p.parent for p in (ROOT / "results").glob("*/results.jsonl"))
    assert folders
    for folder in folders:
        lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
        cases = {(json.dumps(r["case"], sort_keys=True), json.dumps(r.get("machine"), sort_keys=True)) for r in lines}
        assert f"results/{folder.name}" in page
        assert re.search(rf"results/{re.escape(folder.name)}[\s¶]+{len(cases)} cases \(", page), folder.name
    assert "load average" not in page


def test_the_results_tables_show_the_recorded_latencies_and_memory():
    """Read results/cpu-quick-v2 as plain JSON here (not with the project's reader) and find its figures."""
    from bench.site import docs

    folder = ROOT / "results" / "cpu-quick-v2"
    lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    by_series: dict[str, list[dict]] = {}
    for r in lines:
        if r["status"] == "ok":
            by_series.setdefault(r["label"], []).append(r)
    rows = [row for row in docs.folder_section(folder) if row.startswith("| ") and " → " in row][1:]  # [0]: header
    assert len(rows) == len(by_series) == 4
    for label, records in by_series.items():
        records.sort(key=lambda r: r["case"]["img_size"])
        (row,) = [row for row in rows if row.startswith(f"| {label} ")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[1]) == len(records)
        shown = [float(v.replace(",", "")) for cell in cells[3:5] for v in cell.split(" → ")]
        recorded = [
            records[0]["time"]["median_s"] * 1e3,
            records[-1]["time"]["median_s"] * 1e3,
            records[0]["memory"]["activation_bytes"] / 2**20,
            records[-1]["memory"]["activation_bytes"] / 2**20,
        ]
        assert shown == pytest.approx(recorded, rel=0.006), label  # three significant figures


# --- commands shown in the docs run as shown -------------------------------------------------

CONSOLE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)


def runnable_commands() -> list[tuple[str, str, list[str]]]:
    """(file, command, expected output lines) for every ``$ `` line of a console block."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in CONSOLE.findall(path.read_text()):
            current = None
            for line in block.splitlines():
                if line.startswith("$ "):
                    current = (str(path.relative_to(ROOT)), line[2:], [])
                    found.append(current)
                elif current is not None and line.strip():
                    current[2].append(line)
    return found


def test_the_docs_show_runnable_commands():
    commands = [c for _, c, _ in runnable_commands()]
    assert "mixerbench --help" in commands and "mixerbench list" in commands


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    """A folder with a ``mixerbench`` that is this checkout's ``python -m bench``."""
    folder = tmp_path_factory.mktemp("bin")
    exe = folder / "mixerbench"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bench "$@"\n')
    exe.chmod(0o755)
    return folder


@pytest.mark.parametrize("where, command, expected", runnable_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_command_shown_in_the_docs_runs_as_shown(shim, tmp_path, where, command, expected):
    env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT), COLUMNS="100")
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    output = done.stdout + done.stderr
    for line in expected:
        assert line.rstrip() in output, f"{where}: `{command}` no longer prints {line!r}:\n{output[-2000:]}"
    if not expected:
        assert done.returncode == 0 and done.stdout.strip(), f"{where}: `{command}` failed:\n{output[-2000:]}"


# --- the README ---------------------------------------------------------------------------------


def test_the_readme_is_short_and_its_test_command_is_cis():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest"
    assert test_command in readme and test_command in ci
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/mixerbench sweep" in readme
    assert "load average" not in readme and "COST.md" not in readme


# --- every page in a browser, as `mkdocs serve` and as `mixerbench dashboard --docs` publish them --------

# Visits every page reachable from the roots in one iframe, one page after the other, and for each:
# the problems the probe recorded (script errors, resources that failed to load, console.error), and
# every link and resource it names on this origin, fetched once (status >= 400: broken). Links that
# keep a raw ``site:`` scheme are broken too. The result is posted to /result. The page's load event
# (where --dump-dom ends Chromium) waits for the image /done, which the server answers only then.
CRAWLER = """<!doctype html><html><head><link rel="icon" href="data:,"></head><body><pre id="crawl">running</pre><script>
(async function () {
  const roots = ROOTS, result = {pages: [], broken: [], problems: []};
  const queue = roots.map(r => new URL(r, location.href).href), seen = new Set(), status = new Map();
  const inside = href => roots.some(r => href.startsWith(new URL(r, location.href).href.replace(/[^/]*$/, '')));
  const frame = document.createElement('iframe');
  document.body.appendChild(frame);
  while (queue.length) {
    const page = queue.shift();
    if (seen.has(page)) continue;
    seen.add(page);
    await new Promise(done => { frame.onload = done; frame.src = page; });
    result.pages.push(page);
    for (const p of frame.contentWindow.__problems || ['no probe: the page did not load']) result.problems.push(page + ': ' + p);
    for (const el of frame.contentDocument.querySelectorAll('a[href], link[href], script[src], img[src]')) {
      const raw = el.getAttribute('href') || el.getAttribute('src');
      if (raw.startsWith('site:')) { result.broken.push(page + ' -> ' + raw); continue; }
      const url = new URL(raw, page);
      if (url.origin !== location.origin) continue;
      url.hash = '';
      if (!status.has(url.href)) {
        const answer = await fetch(url.href);
        await answer.arrayBuffer();  // read it whole: an unread body keeps one of the browser's few connections
        status.set(url.href, answer.status);
      }
      if (status.get(url.href) >= 400) result.broken.push(page + ' -> ' + raw + ' (' + status.get(url.href) + ')');
      if (el.tagName === 'A' && url.pathname.endsWith('.html') && inside(url.href)) queue.push(url.href);
    }
  }
  await fetch('/result', {method: 'POST', body: JSON.stringify(result)});
})().catch(e => fetch('/result', {method: 'POST', body: JSON.stringify({error: String(e)})}));
</script><img src="/done"></body></html>"""


class _Sites(http.server.SimpleHTTPRequestHandler):
    """``/published/...``: a folder; ``/serve/...``: forwarded to `mkdocs serve`; ``/crawl.html``: the crawler,
    which posts its result to ``/result``; ``/done`` is answered once it has. Every HTML page gets the probe
    first in its <head>; every request is logged with its status."""

    crawler: bytes
    upstream: str
    log: list
    result: dict
    done: threading.Event

    def do_POST(self):
        self.result.update(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.done.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format, *args):
        pass

    def send_response(self, code, message=None):
        self.log.append((self.path, code))
        super().send_response(code, message)

    def do_GET(self):
        import urllib.error
        import urllib.request

        from chromium import PROBE

        if self.path == "/crawl.html":
            body, kind, code = self.crawler, "text/html; charset=utf-8", 200
        elif self.path == "/done":
            self.done.wait(timeout=240)
            body, kind, code = b"", "text/plain", 204
        elif self.path.startswith("/serve/"):
            try:
                with urllib.request.urlopen(self.upstream + self.path[len("/serve") :]) as answer:
                    body, kind, code = answer.read(), answer.headers.get("Content-Type", ""), answer.status
            except urllib.error.HTTPError as error:
                body, kind, code = b"", "text/plain", error.code
        else:
            return super().do_GET()
        if kind.startswith("text/html"):
            body = body.replace(b"<head>", b"<head>" + PROBE.encode(), 1)
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_head(self):  # the published folder: HTML pages with the probe
        from chromium import PROBE

        path = Path(self.translate_path(self.path))
        if path.suffix == ".html" and path.is_file():
            body = path.read_bytes().replace(b"<head>", b"<head>" + PROBE.encode(), 1)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)
        return super().send_head()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """The docs as `mixerbench dashboard --docs` publishes them: under docs/ of a site whose index.html and
    report/index.html stand in for asv's page and the scaling report."""
    from bench.site import dashboard

    root = tmp_path_factory.mktemp("published")
    (root / "report").mkdir()
    (root / "index.html").write_text(
        '<html><head></head><body><ul class="nav">\n<li id="nav-li-regressions"><a href="#/regressions">Regressions</a>'
        "</li>\n</ul></body></html>\n"
    )
    (root / "report" / "index.html").write_text("<html><head></head><body>report</body></html>\n")
    dashboard.publish_docs(ROOT / "mkdocs.yml", root)
    return root


@pytest.fixture(scope="module")
def mkdocs_serve():
    """`mkdocs serve` of the repository's mkdocs.yml (no live reload) on a free port; its base URL."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "serve",
            "--no-livereload",
            "-a",
            f"127.0.0.1:{port}",
            "-f",
            str(ROOT / "mkdocs.yml"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(url + "/index.html", timeout=5).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "mkdocs serve did not answer in 300 s"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
@needs_chromium
def test_every_page_loads_with_no_failed_request_and_no_broken_link(site, published, mkdocs_serve, tmp_path):
    """One headless Chromium visits every page of the docs twice: over `mkdocs serve` (the Dashboard and
    Scaling report links lead to guide/reading.html) and published beside a dashboard (they lead to it)."""
    import functools

    roots = ["/serve/index.html", "/published/docs/index.html"]
    log: list = []
    crawl: dict = {}
    crawler = CRAWLER.replace("ROOTS", json.dumps(roots)).encode()
    handler = type(
        "Handler",
        (_Sites,),
        {"crawler": crawler, "upstream": mkdocs_serve, "log": log, "result": crawl, "done": threading.Event()},
    )
    (tmp_path / "www").mkdir()
    os.symlink(published, tmp_path / "www" / "published")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(tmp_path / "www"))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        load(f"http://127.0.0.1:{server.server_address[1]}/crawl.html", tmp_path / "profile", budget_ms=None)
    finally:
        server.shutdown()
        server.server_close()
    assert "pages" in crawl, f"the crawl did not finish: {crawl}"
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.name != "404.html"}
    for prefix in ("/serve/", "/published/docs/"):
        visited = {p.split(prefix, 1)[1] for p in crawl["pages"] if prefix in p}
        assert visited == pages, (prefix, sorted(pages ^ visited))
    assert crawl["problems"] == [] and crawl["broken"] == [], crawl["problems"][:10] + crawl["broken"][:10]
    failed = [(path, code) for path, code in log if code >= 400]
    assert not failed, failed
    paths = {path for path, _ in log}
    assert "/published/index.html" in paths and "/published/report/index.html" in paths  # the published links
    assert "/serve/guide/reading.html" in paths


def test_the_site_links_of_a_plain_build_lead_to_the_reading_guide_and_404_keeps_none(site):
    index = (site / "index.html").read_text()
    assert 'href="guide/reading.html#the-dashboard"' in index and 'href="guide/reading.html#the-report"' in index
    cli_page = (site / "reference" / "cli.html").read_text()
    assert 'href="../guide/reading.html#the-dashboard"' in cli_page
    for page in site.rglob("*.html"):
        assert "site:dashboard" not in page.read_text() and "site:report" not in page.read_text(), page


def test_the_docs_describe_the_software_not_how_it_was_built():
    """No issue numbers, sessions, design brief or "here" for one machine: a page names the results folder."""
    history = re.compile(
        r"\bissues? #?\d+|(?<![\w&/])#\d+\b|design brief|\bsession\b(?!-scoped)|\bhere\b|this round|at hand", re.I
    )
    found = []
    for path in sorted((ROOT / "docs").rglob("*")):
        if path.suffix in (".md", ".py", ".yml"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if history.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_figures_quoted_from_the_quick_sweep_are_its_reports():
    """The quick start's verdict row and the shares the methodology pages quote are results/cpu-quick-v3's
    report.md (rebuilt by `mixerbench report results/cpu-quick-v3`), character for character."""
    report = (ROOT / "results" / "cpu-quick-v3" / "report.md").read_text()
    rows = [line for line in (ROOT / "docs" / "quickstart.md").read_text().splitlines() if line.startswith("| vit ")]
    assert len(rows) == 1 and rows[0] in report.splitlines()
    attribution = (ROOT / "docs" / "methodology" / "attribution.md").read_text().replace("−", "-")
    for series, share in (("mixer C128 x2", "14% [-21%, 50%]"), ("resnet18 w32", "13% [-68%, 95%]")):
        assert share in attribution
        assert any(
            line.startswith(f"| {series} ") and f"| inconclusive, {share} |" in line for line in report.splitlines()
        )
    results = (ROOT / "docs" / "results" / "index.md").read_text()
    assert "83% [80%, 86%]" in results and "takes 83% \\[80%, 86%\\] of the step at S = 2,305" in report


def test_the_python_api_page_is_generated_from_the_docstrings(site):
    import inspect

    import architectures
    from bench.schema import read_results

    page = _text(site / "reference" / "api.html")
    for function in (architectures.create, read_results):
        first_line = re.sub(r":\w+:`([^`]*)`", r"\1", inspect.getdoc(function).splitlines()[0]).replace("``", "")
        assert first_line in re.sub(r"\s+", " ", page), first_line
    assert not re.search(r":(?:class|func|meth|attr|mod|data|obj|exc):\w", page), "a raw Sphinx role on the page"
