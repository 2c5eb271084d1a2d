"""``mixerbench sweep --shard K/N``: the option, its resolution against the scheduler's environment, the plan.

Kept apart from ``cmd_sweep`` so the sweep command hooks it in with a few lines. Library
errors (``ValueError``, no flag named) become one-line :class:`UsageError`s naming ``--shard``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.errors import UsageError


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="run shard K of N (0-based) of the grid, balanced by predicted cost; default: from a Slurm job array "
        "(SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT or _MIN/_MAX) or a Kubernetes Indexed Job "
        "(JOB_COMPLETION_INDEX with MIXERBENCH_SHARD_COUNT), else the whole grid",
    )


def resolve(args: argparse.Namespace, environ: Mapping[str, str] | None = None):
    """The :class:`bench.runs.shard.Shard` to run, or None; ``UsageError`` on a bad or contradictory one.

    ``--peers`` is not sharded: an explicit ``--shard`` with it is refused, a scheduler's
    environment is ignored.
    """
    from bench.runs import shard as sharding

    if getattr(args, "peers", False):
        if args.shard is not None:
            raise UsageError("--shard splits the grid of a sweep; it does not apply to --peers")
        return None
    try:
        return sharding.resolve(args.shard, os.environ if environ is None else environ)
    except ValueError as exc:
        where = "" if args.shard is not None else " (from the environment; no --shard given)"
        raise UsageError(f"--shard: {exc}{where}") from None


def default_suffix(shard) -> str:
    """A suffix for the default output folder, so that tasks starting in the same second never share one."""
    return "" if shard is None else f"-shard{shard.index}of{shard.count}"


def select(cases: Sequence, shard, out: Path, resume: bool) -> list:
    """This shard's cases (all of them without a shard); prints the plan; refuses a folder of another shard."""
    if shard is None:
        return list(cases)
    from bench.runs import shard_cases

    plan = shard_cases.plan(cases, shard)
    _check_folder(out, shard, resume)
    print(plan.describe(), flush=True)
    return list(plan.cases)


def _check_folder(out: Path, shard, resume: bool) -> None:
    """One folder per shard: its shard.json, and on --resume its records, may not be another shard's.

    (Unsharded records are fine: a shard resuming such a folder still runs only its own cases.)
    """
    from bench.runs import records, shard_cases

    try:
        marker = shard_cases.read_marker(out)
    except ValueError as exc:
        raise UsageError(f"--out: {exc}") from None
    if marker is not None and (marker.index, marker.count) != (shard.index, shard.count):
        raise UsageError(
            f"--shard: {out / shard_cases.MARKER} says the folder is shard {marker.index}/{marker.count}, "
            f"but this run is shard {shard}; use one --out folder per shard"
        )
    path = out / records.FILENAME
    if not resume or not path.is_file():
        return
    found, _ = records.read_results(path)
    mine = (shard.index, shard.count)
    other = sorted({(r.shard.index, r.shard.count) for r in found if r.shard is not None} - {mine}, key=str)
    if other:
        raise UsageError(
            f"--shard: {path} holds records of shard {other[0][0]}/{other[0][1]}, but this run is "
            f"shard {shard}; use one --out folder per shard"
        )
