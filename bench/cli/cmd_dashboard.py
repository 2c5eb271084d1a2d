"""Publish the asv dashboard as one self-contained static site, with the sweep's scaling report beside it.

Runs `asv publish` (unless --no-publish), then serves asv's CDN files from the site
itself: pinned npm packages are fetched once with `npm pack` into --cache (checked
against the registry's sha512) and the pages are pointed at copies under vendor/. With
--report DIR, DIR/report.md and its PNG plots become report/index.html, linked from the
dashboard's navigation bar (Markdown rendered by markdown-it-py with raw HTML off and
only http(s), relative and #anchor links; the folder is swapped in whole, so a failure
leaves the previous report). With --docs MKDOCS_YML the documentation site is built
(`mkdocs build --strict`) into docs/ of the same site, linked both ways. A malformed --config (not JSON, no "version" or "repo")
is one line on stderr and exit code 2. Serve the result with `asv preview` or any static
server.

The whole site is built in a new folder beside html_dir and swapped in by renaming only
when complete: an error, Ctrl-C or SIGTERM leaves the previous site as it was, and what a
killed run (SIGKILL) left beside html_dir (.<html_dir>.mixerbench-new-* and -old-* folders,
each holding a .mixerbench-dashboard mark) is removed by the next run. `asv publish` deletes
html_dir first, so an html_dir that is a symbolic link, holds the config's folder or the
repository, or overlaps results_dir is refused before any work (exit code 2).

--docs runs mkdocs on MKDOCS_YML in this process: mkdocs.yml is code (its hooks, plugins
and !!python tags run as Python) and whatever its docs_dir points at is published. Pass
only a configuration you would run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.args import progress
from bench.errors import UsageError

NAME = "dashboard"
HELP = "asv publish, made to work offline, with the sweep's scaling report beside it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=Path("asv.conf.json"), help="asv configuration (default: asv.conf.json)"
    )
    parser.add_argument(
        "--report", type=Path, help="a sweep folder with report.md and PNG plots to publish beside the dashboard"
    )
    parser.add_argument(
        "--docs",
        type=Path,
        metavar="MKDOCS_YML",
        help="build this documentation site into docs/ beside the dashboard (mkdocs.yml is code: its hooks and "
        "python tags run; whatever its docs_dir points at is published)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "mixerbench" / "npm",
        help="where npm tarballs are kept (default: ~/.cache/mixerbench/npm)",
    )
    parser.add_argument("--no-publish", action="store_true", help="skip `asv publish` (post-process an existing site)")


def run(args: argparse.Namespace) -> int:
    from bench.site import dashboard

    if not args.config.is_file():
        raise UsageError(f"{args.config} not found (run from the repository root, or pass --config)")
    if args.report is not None and not (args.report / "report.md").is_file():
        raise UsageError(
            f"{args.report / 'report.md'} not found: --report takes a sweep folder (see `mixerbench report`)"
        )
    if args.docs is not None and not args.docs.is_file():
        raise UsageError(f"{args.docs} not found: --docs takes the documentation's mkdocs.yml")
    try:
        import asv  # noqa: F401
    except ImportError:
        raise UsageError("asv is not installed: pip install -e '.[dev]'") from None
    try:
        config = dashboard.load_asv_config(args.config)  # a malformed config is one line, exit 2
        site = dashboard.publish_site(
            config,
            args.cache,
            publish=not args.no_publish,
            docs=args.docs,
            report=args.report,
            show=progress("dashboard"),
        )
    except dashboard.DashboardError as exc:
        raise UsageError(str(exc)) from None
    checked = sum(v.integrity_kept for v in site.vendored)
    print(
        f"dashboard: {site.index} ({len(site.vendored)} CDN files served from vendor/, "
        f"{checked} of them still checked by the browser against asv's integrity hashes)"
    )
    if site.docs is not None:
        print(f"docs: {site.docs}")
    if site.report is not None:
        print(f"scaling report: {site.report}")
    print(f"serve it: asv preview --config {args.config}   (or: python -m http.server -d {config.html_dir})")
    return 0
