"""Rebuild DIR/report.md and its PNG plots from DIR/results.jsonl (and DIR/peers.jsonl).

Corrupt lines of results.jsonl are reported with their line number and skipped; the
file itself is never rewritten. A file without a single valid record is an error (exit 2).
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

    from bench import files, report
    from bench.cli.cmd_compare import not_a_sweep_folder
    from bench.runs import records as results

    path = args.dir / results.FILENAME
    if not files.check_regular(path):  # a symlink, FIFO or device is refused in one line
        raise not_a_sweep_folder(args.dir, "report")
    if not os.access(args.dir, os.W_OK):
        raise UsageError(f"{args.dir} is not writable")
    records, problems = results.read_results(path)
    if not records:
        first = f"; line {problems[0].line}: {problems[0].message}" if problems else ""
        raise UsageError(
            f"{path} holds no valid record ({len(problems)} invalid line{'s' * (len(problems) != 1)}{first})"
        )
    print(report.write_report(args.dir))
    print(f"report: {args.dir / 'report.md'}")
    return 0
