"""Which cases of a sweep's grid one shard runs (:mod:`bench.runs.shard` splits, this module prices).

A case's predicted cost is its MACs per image (:func:`bench.measure.counting.count`,
on the meta device, about 0.1 s a case) times its batch (1 for a searched batch, "max").
Every task of a job array computes the same costs and the same assignment
(:func:`bench.runs.shard.assign` on :attr:`Case.key`) independently, so every case runs in
exactly one shard and the shards together run the whole grid.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.runs import shard as sharding
from bench.schema import JSON, Case, Shard, case_key, decode_object, encode


def _macs(case: Case) -> int:
    from bench.measure import counting

    return counting.count(case).macs


def costs(cases: Sequence[Case], macs: Callable[[Case], float] = _macs) -> dict[str, float]:
    """Case key -> predicted cost (MACs per image x batch; batch "max" counts as 1).

    Cases that differ only in batch, dtype or mode are counted once. A case that cannot be
    counted costs the median of the others (it still lands in exactly one shard).
    """
    per_model: dict[str, float | None] = {}
    out: dict[str, float | None] = {}
    for case in cases:
        model_key = json.dumps([case.model, case.img_size, case.patch_size, case.overrides], sort_keys=True)
        if model_key not in per_model:
            try:
                per_model[model_key] = float(macs(case))
            except Exception:  # noqa: BLE001 - an uncountable case is priced below, never fatal here
                per_model[model_key] = None
        value = per_model[model_key]
        out[case.key] = None if value is None else value * (case.batch if isinstance(case.batch, int) else 1)
    known = [v for v in out.values() if v is not None]
    fallback = statistics.median(known) if known else 1.0
    return {key: (fallback if value is None else value) for key, value in out.items()}


@dataclass(frozen=True)
class ShardPlan:
    """The cases one shard runs, out of the grid, and its share of the predicted cost."""

    shard: sharding.Shard
    cases: tuple[Case, ...]  # in grid order
    grid_cases: int  # distinct cases of the whole grid
    share: float  # this shard's predicted cost / the grid's (0..1)

    def describe(self) -> str:
        return (
            f"shard {self.shard} ({self.shard.source}): {len(self.cases)} of {self.grid_cases} cases, "
            f"{self.share:.1%} of the predicted cost (MACs x batch)"
        )


def plan(cases: Sequence[Case], shard: sharding.Shard, macs: Callable[[Case], float] = _macs) -> ShardPlan:
    """The cases of ``cases`` that ``shard`` runs, balanced by :func:`costs` over the whole grid."""
    priced = costs(cases, macs)
    keys = sharding.select(priced, shard)
    total = sum(priced.values())
    share = sum(priced[k] for k in keys) / total if total > 0 else len(keys) / max(len(priced), 1)
    return ShardPlan(shard, tuple(c for c in cases if c.key in keys), len(priced), share)


# ---- the shard's marker: which shard a folder is, and which cases it was to run ----------------------------------

MARKER = "shard.json"


def write_marker(out, shard: sharding.Shard, cases: Sequence[Case]) -> None:
    """Write ``out/shard.json``: this folder is shard K of N and runs these cases (written before any case runs).

    A shard with no case (more shards than cases) still says it ran, so a merge can tell
    an empty shard from a missing one, and a partly run shard from a finished one.
    """
    from pathlib import Path

    from bench.files import write_text_atomically

    data = encode(MarkerFile(shard, [encode(c) for c in cases]))
    write_text_atomically(Path(out) / MARKER, json.dumps(data, sort_keys=True, allow_nan=False) + "\n")


@dataclass(frozen=True)
class MarkerFile:
    """What ``shard.json`` holds, written and read through the schema's codec (:mod:`bench.schema`)."""

    shard: Shard  # validated on reading (index in 0..count-1)
    cases: list[JSON]  # the stored cases, each read by :func:`bench.schema.case_key` (any stored version)


@dataclass(frozen=True)
class Marker:
    """A folder's ``shard.json``: its shard (index, count) and the keys of the cases it was to run."""

    index: int
    count: int
    keys: frozenset[str]


MARKER_BYTES = 64 * 2**20  # a shard.json larger than this is refused unread (a case takes about 300 bytes)


def read_marker(folder) -> Marker | None:
    """The folder's ``shard.json``, or None without one; ``ValueError`` (one line) when it is not one."""
    from pathlib import Path

    from bench import files, schema

    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:  # a regular file only, read up to its bound, nesting checked before parsing (bench.schema.parse_line)
        data = schema.parse_line(files.read_bytes(path, MARKER_BYTES).replace(b"\n", b" "), MARKER_BYTES)
        marker = decode_object(MarkerFile, data, MARKER)
        index, count = marker.shard.index, marker.shard.count
        keys = frozenset(case_key(c) for c in marker.cases)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a shard marker ({type(exc).__name__}: {str(exc)[:120]})") from None
    return Marker(index, count, keys)
