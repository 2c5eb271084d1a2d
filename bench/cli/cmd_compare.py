"""Compare two sweep folders case by case: latency and activation-memory ratios B/A.

Cases are matched on their full description (model, overrides, size, patch, batch,
device, dtype, mode). A ratio above FACTOR is flagged "worse", below 1/FACTOR "better".
Exit code: 0 when nothing got worse, 1 when any case got worse (slower or more memory)
or failed in B where it was ok in A, 2 on bad input. Like `asv continuous`, which also
exits 1 on a regression, this suits CI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.args import factor_float
from bench.errors import UsageError

NAME = "compare"
HELP = "per-case ratios between two sweep folders; flag changes beyond a factor (exit 1 if any got worse)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir_a", type=Path, help="baseline sweep folder")
    parser.add_argument("dir_b", type=Path, help="sweep folder to compare with the baseline")
    parser.add_argument("--factor", type=factor_float, default=1.1, help="flag ratios beyond this factor (default: 1.1)")


def run(args: argparse.Namespace) -> int:
    from bench.runs import records as results
    from bench.runs.compare import compare

    if args.factor <= 1:
        raise UsageError(f"--factor must be above 1, got {args.factor}")
    loaded = []
    for d in (args.dir_a, args.dir_b):
        path = d / results.FILENAME
        if not path.is_file():
            raise UsageError(f"{path} not found (is {d} a sweep folder?)")
        records, problems = results.read_results(path)
        for p in problems:
            print(f"warning: {p} (ignored)")
        loaded.append(records)
    rows = compare(loaded[0], loaded[1], args.factor)
    if not rows:
        raise UsageError(f"{args.dir_a} and {args.dir_b} have no case in common")
    print(f"B/A ratios ({args.dir_b} over {args.dir_a}); flagged beyond x{args.factor:g}")
    print(f"{'model':<24} {'px':>4} {'patch':>5} {'batch':>5} {'dtype':<8} {'mode':<5} {'time':>6} {'memory':>6}  flag")
    for row in rows:
        c = row["case"]
        t = "-" if row["time"] is None else f"{row['time']:.3f}"
        m = "-" if row["memory"] is None else f"{row['memory']:.3f}"
        status = "" if row["status_a"] == row["status_b"] == "ok" else f" ({row['status_a']} -> {row['status_b']})"
        print(f"{row['label'][:24]:<24} {c.img_size:>4} {c.patch_size or '-':>5} {c.batch:>5} {c.dtype:<8} "
              f"{c.mode:<5} {t:>6} {m:>6}  {row['flag']}{status}")
    worse = sum(r["flag"] == "worse" for r in rows)
    better = sum(r["flag"] == "better" for r in rows)
    print(f"{len(rows)} cases compared: {worse} worse, {better} better")
    return 1 if worse else 0
