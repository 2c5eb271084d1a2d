"""The pull-request gate on asv's stored results: judge HEAD against BASE per group, write a Markdown summary.

Reads the results that `asv run` stored for the two commits on one machine (both must be
measured first; `--bench-regex` prints the pattern that selects every benchmark the gate
reads) and judges each group with asv continuous's rule: the deterministic suites and the
CPU curves' peak tensor bytes gate at factor 1.0, the measured verdicts, shares and
attention's share at 1.5; the timing and memory suites, the curves' timings, the drifts and
the measured suite's cost are a report at 1.5 and never fail. The summary has four parts:
the verdict per group, the deterministic tracks that changed (before, after, ratio), the
measured verdicts that changed (per series, quantity and axis, with the quadratic shares
and their 95% bounds), and the report's largest changes.
Exit code: 0 the gate passes, 1 a gating benchmark got worse or fails on HEAD (or a gating
group has no results at one of the commits), 2 bad input (no results folder, an unknown
commit, a commit without results). The summary is written in both of the first two cases.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.args import positive_int
from bench.errors import UsageError

NAME = "gate"
HELP = (
    "the pull-request gate over asv's results for two commits: verdict per group, Markdown summary (exit 1 if it fails)"
)


def choice_list(choices: list[str]):
    """An argparse ``type=``: comma-separated names, each one of ``choices``."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(t.strip() for t in text.split(","))
        if not text.strip() or any(n not in choices for n in names):
            raise argparse.ArgumentTypeError(f"expected names among {', '.join(choices)}, got {text!r}")
        return names

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.site.gate import GROUPS  # the table of groups only (imports neither asv nor torch)

    names = [g.name for g in GROUPS]
    parser.add_argument(
        "base", nargs="?", help="the base commit (a branch, origin/main, a hash; default: asv.conf.json's first branch)"
    )
    parser.add_argument("head", nargs="?", default="HEAD", help="the commit judged against BASE (default: HEAD)")
    parser.add_argument(
        "--config", type=Path, default=Path("asv.conf.json"), help="asv configuration (default: asv.conf.json)"
    )
    parser.add_argument(
        "--results-dir", type=Path, help="asv's results folder (default: the configuration's results_dir)"
    )
    parser.add_argument("--machine", help="asv machine name (default: the only machine with results)")
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: standard output)")
    parser.add_argument(
        "--groups",
        type=choice_list(names),
        help=f"judge only these groups, comma-separated (default: all: {', '.join(names)})",
    )
    parser.add_argument(
        "--top", type=positive_int, default=10, help="largest changes of the report groups to list (default: 10)"
    )
    parser.add_argument(
        "--bench-regex",
        action="store_true",
        help="print the `asv run --bench` pattern of every benchmark the gate reads, and exit",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from bench import files

    try:
        from bench.site import gate
    except ImportError:
        raise UsageError("asv is not installed: pip install -e '.[dev]'") from None
    if args.bench_regex:
        print(gate.bench_regex())
        return 0
    if not args.config.is_file():
        raise UsageError(f"{args.config} not found (run from the repository root, or pass --config)")
    conf = gate.load_config(args.config)
    results_dir = args.results_dir if args.results_dir is not None else Path(conf.results_dir)
    machine = gate.pick_machine(results_dir, args.machine)
    base_name = args.base if args.base is not None else conf.branches[0]
    base, head = gate.resolve(conf, base_name), gate.resolve(conf, args.head)
    groups = gate.GROUPS if args.groups is None else tuple(g for g in gate.GROUPS if g.name in args.groups)
    comparison = gate.compare(results_dir, machine, base, head, base_name, args.head, groups)
    text = gate.summary(comparison, top=args.top)
    if args.out is None:
        sys.stdout.write(text)
    else:
        files.write_text_atomically(args.out, text)
        print(f"gate {'passed' if comparison.passed else 'FAILED'}: summary in {args.out}", file=sys.stderr)
    return 0 if comparison.passed else 1
