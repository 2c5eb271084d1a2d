"""Compare two sweep folders case by case: latency and activation-memory ratios B/A.

Cases are matched on their full description (model, overrides, size, patch, batch,
device, dtype, mode, compile mode, and threads when set). A ratio above FACTOR is flagged
"worse", below 1/FACTOR "better".
Every case of A must be in B: a case of A missing from B (not run, or run with another
--threads, which is part of the case) is listed and fails the comparison unless
--allow-missing. Warnings (bad lines; runs that differ in thread count or environment)
go to stderr.
Exit code: 0 when nothing got worse, 1 when any case got worse (slower or more memory),
failed in B where it was ok in A, or is missing from B; 2 on bad input. Like `asv
continuous`, which also exits 1 on a regression, this suits CI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.args import finite_float
from bench.errors import UsageError

NAME = "compare"
HELP = "per-case ratios between two sweep folders; flag changes beyond a factor (exit 1 if any got worse)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir_a", type=Path, help="baseline sweep folder")
    parser.add_argument("dir_b", type=Path, help="sweep folder to compare with the baseline")
    parser.add_argument(
        "--factor", type=finite_float, default=1.1, help="flag ratios beyond this factor (default: 1.1)"
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="do not fail when cases of A are missing from B (they are still listed)",
    )


def not_a_sweep_folder(d: Path, command: str) -> UsageError:
    """The one-line error for a folder without results.jsonl; a ``sweep --peers`` folder is named as such."""
    from bench import schema

    if (d / schema.PEERS_FILENAME).is_file():
        return UsageError(
            f"{d} is a `sweep --peers` folder (peers.jsonl, no results.jsonl): `{command}` reads sweep folders; its ours/timm "
            f"ratios are in {d / schema.PEERS_FILENAME} (to get them in a report, run `sweep --peers --out SWEEP_DIR` "
            f"into a sweep folder, then `mixerbench report SWEEP_DIR`)"
        )
    return UsageError(f"{d / schema.RESULTS_FILENAME} not found (is {d} a sweep folder?)")


def run(args: argparse.Namespace) -> int:
    import sys

    from bench import files, schema
    from bench.runs.compare import compare, missing, read_latest, run_differences

    if args.factor <= 1:
        raise UsageError(f"--factor must be above 1, got {args.factor}")
    loaded = []
    for d in (args.dir_a, args.dir_b):
        path = d / schema.RESULTS_FILENAME
        if not files.check_regular(path):  # a symlink, FIFO or device is refused in one line
            raise not_a_sweep_folder(d, "compare")
        records, problems = read_latest(path)  # one line at a time, the newest record of each case
        for p in problems:
            print(f"warning: {p} (ignored)", file=sys.stderr)
        if not records:
            raise UsageError(f"{path} holds no valid record")
        loaded.append(records)
    rows = compare(loaded[0], loaded[1], args.factor)
    lacking = missing(loaded[0], loaded[1])
    hint = run_differences(loaded[0], loaded[1])
    if not rows:
        raise UsageError(f"{args.dir_a} and {args.dir_b} have no case in common" + (f"; {hint}" if hint else ""))
    if hint:
        print(f"note: {hint}", file=sys.stderr)
    print(f"B/A ratios ({args.dir_b} over {args.dir_a}); flagged beyond x{args.factor:g}")
    print(f"{'model':<24} {'px':>4} {'patch':>5} {'batch':>5} {'dtype':<8} {'mode':<5} {'time':>6} {'memory':>6}  flag")
    for row in rows:
        c = row.case
        t = "-" if row.time is None else f"{row.time:.3f}"
        m = "-" if row.memory is None else f"{row.memory:.3f}"
        status = "" if row.status_a == row.status_b == "ok" else f" ({row.status_a} -> {row.status_b})"
        print(
            f"{row.label[:24]:<24} {c.img_size:>4} {c.patch_size or '-':>5} {c.batch:>5} {c.dtype:<8} "
            f"{c.mode:<5} {t:>6} {m:>6}  {row.flag}{status}"
        )
    worse = sum(r.flag == "worse" for r in rows)
    better = sum(r.flag == "better" for r in rows)
    for r in lacking:
        c = r.case
        print(
            f"{r.name[:24]:<24} {c.img_size:>4} {c.patch_size or '-':>5} {c.batch:>5} {c.dtype:<8} {c.mode:<5} "
            f"{'-':>6} {'-':>6}  missing in B"
        )
    allowed = " (allowed by --allow-missing)" if lacking and args.allow_missing else ""
    print(f"{len(rows)} cases compared: {worse} worse, {better} better; {len(lacking)} of A missing in B{allowed}")
    return 1 if worse or (lacking and not args.allow_missing) else 0
