"""Screenshots of a real published dashboard for docs/guide/reading.md: ``python tools/screenshots.py``.

1. :func:`build_site` copies this checkout into a temporary git repository with three commits:
   the code as it is, a comment-only change, and ViT's default attention made explicit
   (``ViTConfig.attn_backend``). For each commit it records ``curves.Resolution`` (latency and
   peak tensor bytes of the quick preset's token models over image size) with ``asv run
   --python=same --quick --set-commit-hash`` (the current environment: nothing is built), then
   ``mixerbench dashboard`` publishes the history with a sweep folder as the scaling report
   (default ``results/cpu-quick-v3``). The third commit makes ``vit_d64``'s peak tensor bytes
   jump, so the regressions page has something to show.
2. :func:`capture` serves that site on 127.0.0.1 and has headless Chromium (Debian's
   ``chromium``) take each picture of :data:`SHOTS`, then stores it as a small palette PNG.

The pictures go to docs/images/ (``--out`` elsewhere). tests/site/test_asv_curves.py builds
its site with :func:`build_site` and takes the same pictures from it. Needs git, asv (the
``dev`` extra), chromium and, the first time, npm (``mixerbench dashboard`` fetches asv's
JavaScript libraries once). About two minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", "README.md", "asv.conf.json", "architectures", "bench", "suites")
MACHINE = "docs-screenshots"
BENCH = r"^curves\.Resolution\."
GRAPH = "curves.Resolution.track_peak_tensor_bytes"
NPM_CACHE = Path.home() / ".cache" / "mixerbench" / "npm"  # mixerbench dashboard's default cache


class Shot(NamedTuple):
    name: str  # the file under --out
    path: str  # the URL path and fragment in the published site
    width: int
    height: int


SHOTS = (
    Shot("dashboard-grid.png", "/index.html", 1200, 720),
    Shot("dashboard-graph-img-size.png", f"/index.html#{GRAPH}?x-axis=img_size", 1200, 720),
    Shot("dashboard-regressions.png", "/index.html#/regressions", 1200, 420),
    Shot("report-top.png", "/report/index.html", 1200, 720),
    Shot("report-plots.png", "/report/plots.html", 1200, 720),  # made by capture(): the report from its plots on
)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def _run(args: list, cwd: Path, env: dict | None = None) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def build_site(base: Path, report: Path | None = ROOT / "results" / "cpu-quick-v3") -> tuple[Path, list[str]]:
    """Publish a three-commit dashboard under ``base``; its html folder and the three commits."""
    repo = base / "repo"
    repo.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        src = ROOT / name
        shutil.copytree(src, repo / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, repo / name)
    (repo / ".gitignore").write_text(".asv/\n__pycache__/\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "docs@screenshots")
    _git(repo, "config", "user.name", "docs screenshots")
    home = base / "home"  # asv keeps its machine description in ~/.asv-machine.json
    home.mkdir()
    env = dict(os.environ, HOME=str(home), ASV_PYTHONPATH=str(repo))  # the copy imports without an install
    asv = [sys.executable, "-m", "asv"]
    _run([*asv, "machine", "--yes", "--machine", MACHINE], repo, env)
    edits = (
        None,
        ("suites/curves.py", None, "# a comment only\n"),
        ("architectures/vit.py", 'attn_backend: str = "fused"', 'attn_backend: str = "explicit"'),
    )
    commits = []
    for i, edit in enumerate(edits):
        if edit is not None:
            path, old, new = edit
            text = (repo / path).read_text()
            if old is not None and text.count(old) != 1:
                raise RuntimeError(f"{path} no longer holds {old!r} once: update tools/screenshots.py")
            (repo / path).write_text(text + new if old is None else text.replace(old, new))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"commit {i}")
        commits.append(_git(repo, "rev-parse", "HEAD"))
        _run([*asv, "run", "--python=same", "--quick", "--machine", MACHINE, "--set-commit-hash", commits[-1],
              "--bench", BENCH], repo, env)  # fmt: skip
    dashboard = [sys.executable, "-m", "bench", "dashboard", "--config", repo / "asv.conf.json", "--cache", NPM_CACHE]
    if report is not None:
        dashboard += ["--report", report]
    _run(dashboard, ROOT, dict(os.environ, PYTHONPATH=str(ROOT)))
    return repo / ".asv" / "html", commits


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def capture(site: Path, out: Path, chromium: str | None = None) -> list[Path]:
    """Take every picture of :data:`SHOTS` of the published ``site`` into ``out``; the files written."""
    from PIL import Image

    chromium = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    # The report page from the heading above its first plot on (a headless screenshot cannot scroll).
    report = (site / "report" / "index.html").read_text()
    body = report.index("<body>") + len("<body>")
    (site / "report" / "plots.html").write_text(report[:body] + report[report.rfind("<h2", 0, report.index("<img")) :])
    out.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    written = []
    try:
        with tempfile.TemporaryDirectory() as profile:
            for shot in SHOTS:
                raw = Path(profile) / "raw.png"
                args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-background-networking", "--disable-component-update", "--no-first-run",
                        f"--user-data-dir={profile}/user", "--virtual-time-budget=20000",
                        f"--window-size={shot.width},{shot.height}", f"--screenshot={raw}",
                        f"http://127.0.0.1:{server.server_address[1]}{shot.path}"]  # fmt: skip
                done = subprocess.run(args, capture_output=True, text=True, timeout=180)
                if done.returncode != 0 or not raw.is_file():
                    raise RuntimeError(f"chromium could not take {shot.name}:\n{done.stderr[-2000:]}")
                with Image.open(raw) as image:  # a 64-colour palette keeps a page's picture near 50 kB
                    small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
                    small.save(out / shot.name, optimize=True)
                written.append(out / shot.name)
    finally:
        server.shutdown()
        server.server_close()
        (site / "report" / "plots.html").unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="default: docs/images")
    parser.add_argument("--report", type=Path, default=ROOT / "results" / "cpu-quick-v3", help="the scaling report")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mixerbench-screenshots-") as base:
        site, _ = build_site(Path(base), args.report)
        for path in capture(site, args.out):
            print(f"{path} ({path.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
