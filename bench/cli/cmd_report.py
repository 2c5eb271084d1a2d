"""Rebuild DIR/report.md and its PNG plots from DIR/results.jsonl (and DIR/peers.jsonl).

Corrupt lines of results.jsonl are reported with their line number and skipped; the
file itself is never rewritten. A file without a single valid record is an error (exit 2).
Records written before the deterministic cost existed get one counted on meta, in memory
(bench.runs.costs.fill_missing_costs), so their roofline is shown, and the records
of a GPU in the device table are predicted by the calibrated model
(bench.runs.predictions.predict_records, about a second a case); the report
itself never counts.
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

    from bench import files, report, schema
    from bench.cli.cmd_compare import not_a_sweep_folder
    from bench.runs.costs import fill_missing_costs
    from bench.runs.predictions import predict_records

    path = args.dir / schema.RESULTS_FILENAME
    if not files.check_regular(path):  # a symlink, FIFO or device is refused in one line
        raise not_a_sweep_folder(args.dir, "report")
    if not os.access(args.dir, os.W_OK):
        raise UsageError(f"{args.dir} is not writable")
    records, problems = report.read_latest(path)  # one line at a time; the latest record of each case
    if not records:
        first = f"; line {problems[0].line}: {problems[0].message}" if problems else ""
        raise UsageError(
            f"{path} holds no valid record ({len(problems)} invalid line{'s' * (len(problems) != 1)}{first})"
        )
    records = fill_missing_costs(records)  # records older than the cost: priced on meta here, not in the report
    predicted = predict_records(records)  # GPU records of the device table: the calibrated model, counted here
    print(report.write_report(args.dir, records, problems, predicted))  # the file parsed once
    print(f"report: {args.dir / 'report.md'}")
    return 0
