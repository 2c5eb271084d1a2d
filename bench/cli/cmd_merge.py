"""Merge sweep folders into one: shards of one sweep, or the same grid run on several machines.

The results.jsonl (and peers.jsonl) of every DIR are unioned into OUT/results.jsonl, a
new file. A record is identified by its case and the machine it ran on (the machine's
fingerprint id, or for older records a hash of their environment: device, device name,
CPU model, CPU count). Identical copies collapse to one; a failed case is dropped when
another folder has it ok or out of memory. Two different measurements of the same case
on the same machine are refused unless --prefer newest keeps the later one (by the
record's date; same date: the later DIR). Nothing is written unless the whole merge
succeeds, and a merge whose every line is invalid is an error. OUT is locked while it is
written (OUT/.lock, as a sweep locks its folder): a sweep or another merge writing there
makes this one fail, and the other's results.jsonl is never replaced.

Shards of one sweep (--shard, a Slurm array, a Kubernetes Indexed Job) must be a complete
set: merge names the shards missing, incomplete (a case of the shard's plan without a
record) or of another shard count, and refuses unless --incomplete merges them anyway.
Warnings go to stderr.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.args import out_folder
from bench.errors import UsageError

NAME = "merge"
HELP = "union the results of several sweep folders (shards, machines) into a new folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "out", type=out_folder, metavar="OUT", help="folder to write (must not hold a results.jsonl yet)"
    )
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="sweep folders to merge, in order")
    parser.add_argument(
        "--prefer",
        choices=("newest",),
        default=None,
        help="on conflicting records of one case and machine keep the newest instead of refusing",
    )
    parser.add_argument(
        "--incomplete",
        action="store_true",
        help="merge shards even if some are missing, unfinished or of another shard count (a warning each)",
    )


def run(args: argparse.Namespace) -> int:
    from bench.runs import merge as merging

    try:
        summary = merging.merge(args.out, args.dirs, prefer=args.prefer, incomplete=args.incomplete)
    except merging.MergeConflict as exc:
        raise UsageError(f"{exc} (--prefer newest keeps the newer)") from None
    except merging.IncompleteShards as exc:
        raise UsageError(f"{exc} (run those shards, or --incomplete merges what is there)") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise UsageError(f"{where}{exc.strerror or exc}") from None
    import sys

    for problem in summary.problems:
        print(f"warning: {problem} (skipped)", file=sys.stderr)
    for warning in summary.shard_warnings:
        print(f"warning: {warning} (merged anyway: --incomplete)", file=sys.stderr)
    print(
        f"merged {len(summary.folders)} folders: {summary.records_in} records in, {summary.records_out} out "
        f"({summary.duplicates} identical copies collapsed, {summary.superseded} failures superseded, "
        f"{summary.replaced} replaced by newer)"
    )
    if summary.peers_in:
        print(f"peers: {summary.peers_in} in, {summary.peers_out} out")
    print(f"machines: {len(summary.machines)} ({', '.join(summary.machines)})")
    print(f"wrote {Path(summary.out) / 'results.jsonl'}")
    return 0
