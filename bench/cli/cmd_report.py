"""Rebuild DIR/report.md and its PNG plots from DIR/results.jsonl (and DIR/peers.jsonl).

Corrupt lines of results.jsonl are reported with their line number and skipped; the
file itself is never rewritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import UsageError

NAME = "report"
HELP = "rebuild the report (report.md, plots) of a sweep folder from its results.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="a folder written by `mixerbench sweep`")


def run(args: argparse.Namespace) -> int:
    import os

    from bench import report

    from bench.runs import records as results

    path = args.dir / results.FILENAME
    if not path.is_file():
        raise UsageError(f"{path} not found (is {args.dir} a sweep folder?)")
    if not os.access(args.dir, os.W_OK):
        raise UsageError(f"{args.dir} is not writable")
    print(report.write_report(args.dir))
    print(f"report: {args.dir / 'report.md'}")
    return 0
