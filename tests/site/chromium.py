"""Headless Chromium for the site tests: serve a folder on 127.0.0.1, load a page, read what went wrong.

:func:`serve` serves a published site (nothing else is reachable: a request the site cannot
answer is logged with its status) and puts a probe script first in the ``<head>`` of the pages
named. :func:`load` runs Debian's chromium with ``--dump-dom`` and returns the DOM it built and
its log; :func:`probed` reads back what the probe wrote into that DOM. Tests that need the browser
carry :data:`needs_chromium` (.ci/run installs chromium).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import html
import http.server
import io
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does)"
)


def _into_dom(name: str, pre_id: str) -> str:
    """Script that copies ``window[name]`` as JSON into a ``<pre id=pre_id>`` every 50 ms (--dump-dom prints it)."""
    return f"""setInterval(function () {{
  if (!document.body) return;
  var out = document.getElementById('{pre_id}');
  if (!out) {{ out = document.createElement('pre'); out.id = '{pre_id}'; document.body.appendChild(out); }}
  out.textContent = JSON.stringify(window.{name});
}}, 50);
</script>"""


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
""" + _into_dom("__problems", "test-problems")


# Put first in the report page's <head>, before its Content-Security-Policy (which applies only
# to what follows it): records any dialog (alert, confirm, prompt) and anything the policy refused
# to run, and writes the list into the DOM that --dump-dom prints.
REPORT_PROBE = """<script>
window.__ran = [];
window.alert = window.confirm = window.prompt = function (m) { window.__ran.push('dialog: ' + m); };
document.addEventListener('securitypolicyviolation', function (e) {
  window.__ran.push('refused by the page policy: ' + e.violatedDirective + ' ' + (e.sample || ''));
});
""" + _into_dom("__ran", "test-ran")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site; adds a probe script to the pages in ``probes``; records every request and its status."""

    log: list[tuple[str, int]]
    probes: dict[str, str]  # URL path -> script put first in the page's <head>

    def send_response(self, code, message=None):
        self.log.append((self.path, code))
        super().send_response(code, message)

    def log_message(self, format, *args):  # keep pytest's output clean
        pass

    def send_head(self):
        path = self.path.split("?")[0]
        if path in self.probes:
            page = Path(self.directory) / (path.lstrip("/") or "index.html")
            body = page.read_text().replace("<head>", "<head>" + self.probes[path], 1).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)
        return super().send_head()


@dataclasses.dataclass
class Served:
    """A site being served: its port and every request made of it, with the status answered."""

    port: int
    log: list[tuple[str, int]]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def paths(self) -> set[str]:
        """The paths requested, without their query."""
        return {path.split("?")[0] for path, _ in self.log}

    @property
    def failed(self) -> list[tuple[str, int]]:
        """The requests the site could not answer (status 400 or more)."""
        return [(path, code) for path, code in self.log if code >= 400]


@contextlib.contextmanager
def serve(directory: Path, probes: dict[str, str] | None = None) -> Iterator[Served]:
    """Serve ``directory`` on 127.0.0.1 (a free port) while the block runs; ``probes``: URL path -> script.

    By default the site's index page gets :data:`PROBE`.
    """
    log: list[tuple[str, int]] = []
    probes = {"/": PROBE, "/index.html": PROBE} if probes is None else probes
    handler = functools.partial(type("Handler", (_Handler,), {"log": log, "probes": probes}), directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Served(server.server_address[1], log)
    finally:
        server.shutdown()
        server.server_close()


def load(url: str, profile: Path, budget_ms: int | None = 20000) -> tuple[str, str]:
    """The DOM headless chromium built from ``url`` (after ``budget_ms`` of virtual time; None: at its load
    event) and its log (stderr)."""
    assert CHROMIUM is not None, "mark the test with needs_chromium"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *([f"--virtual-time-budget={budget_ms}"] if budget_ms is not None else []),
            "--window-size=1400,900",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def probed(dom: str, what: str = "the page", pre_id: str = "test-problems") -> list[str]:
    """What the probe wrote into ``dom`` (:data:`PROBE`'s problems, or with ``pre_id="test-ran"``
    :data:`REPORT_PROBE`'s list); fails when it never wrote: ``what`` did not load."""
    found = re.search(rf'<pre id="{pre_id}">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, f"the probe never ran: {what} did not load"
    return json.loads(html.unescape(found.group(1)))


def uncaught(stderr: str) -> list[str]:
    """The lines of chromium's log that report an uncaught script error."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
