"""Comparing two runs case by case: latency and activation-memory ratios B/A, flagged beyond a factor."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench import schema
from bench.runs.records import Record, latest_by_key
from bench.schema import Case, Problem


@dataclass(frozen=True)
class Comparison:
    """One case in both runs: its statuses, the ratios B/A per image and the flag."""

    label: str  # the model's name in B
    case: Case  # B's case (matched on the key, so A's is the same)
    tokens: int | None
    status_a: str
    status_b: str
    time: float | None = None  # median step time per image, B / A; None unless both are ok
    memory: float | None = None  # activation bytes per image, B / A; None unless both are ok and measured some
    flag: str = ""  # "worse", "better" or ""


def read_latest(path: str | os.PathLike[str]) -> tuple[list[Record], list[Problem]]:
    """The newest record of each case in results file ``path`` (:func:`bench.schema.latest_by_key`, in the order
    cases first appear) and its bad lines, read one line at a time: a record a later line replaces is dropped as
    soon as that line is read, so a comparison holds one record per case, never the whole file."""
    latest: dict[str, Record] = {}
    problems: list[Problem] = []
    for item in schema.iter_jsonl(path, Record):
        if isinstance(item, Problem):
            problems.append(item)
        else:
            latest[item.key] = item
    return list(latest.values()), problems


def compare(a: list[Record], b: list[Record], factor: float) -> list[Comparison]:
    """One row per case in both: latency and activation-memory ratios B/A and a flag."""
    by_a, by_b = latest_by_key(a), latest_by_key(b)
    rows = []
    for key, rb in by_b.items():
        ra = by_a.get(key)
        if ra is None:
            continue
        time_ratio: float | None = None
        memory_ratio: float | None = None
        flag = ""
        if ra.status == rb.status == "ok":
            assert ra.time and rb.time and ra.memory and rb.memory  # an ok record has both (bench.schema.Record)
            # per image: a --max-batch case may have run at different batches in A and B
            na, nb = ra.batch or ra.time.batch, rb.batch or rb.time.batch
            time_ratio = (rb.time.median_s / nb) / (ra.time.median_s / na)
            ma, mb = ra.memory.activation_bytes / na, rb.memory.activation_bytes / nb
            memory_ratio = mb / ma if ma > 0 and mb > 0 else None
            ratios = [r for r in (time_ratio, memory_ratio) if r is not None]
            if any(r > factor for r in ratios):
                flag = "worse"
            elif any(r < 1 / factor for r in ratios):
                flag = "better"
        elif ra.status == "ok":
            flag = "worse"
        elif rb.status == "ok":
            flag = "better"
        rows.append(Comparison(rb.name, rb.case, rb.tokens, ra.status, rb.status, time_ratio, memory_ratio, flag))
    return rows


def missing(a: list[Record], b: list[Record]) -> list[Record]:
    """The newest record of each case of ``a`` that ``b`` lacks (matched on the case key), in ``a``'s order."""
    in_b = set(latest_by_key(b))
    return [r for key, r in latest_by_key(a).items() if key not in in_b]


# Environment fields that make two runs differ beyond their cases (the commit is what a comparison is for).
ENV_FIELDS = ("torch", "timm", "python", "device_name", "cpu_model", "cpu_count", "cuda")


def _threads(records: list[Record]) -> set:
    return {r.case.threads or (r.env.torch_threads if r.env else None) for r in records} - {None}


def _keys_without_threads(records: list[Record]) -> set[str]:
    return {r.case.replace(threads=None).key for r in records}


def run_differences(a: list[Record], b: list[Record]) -> str | None:
    """One line on how runs ``a`` and ``b`` differ beyond their cases (thread count, environment); None if alike."""
    parts = []
    threads_a, threads_b = _threads(a), _threads(b)
    if threads_a and threads_b and threads_a != threads_b:
        text = (
            f"thread count (A: {', '.join(map(str, sorted(threads_a)))}; B: {', '.join(map(str, sorted(threads_b)))})"
        )
        if _keys_without_threads(a) & _keys_without_threads(b) and not set(latest_by_key(a)) & set(latest_by_key(b)):
            text += ", which is part of every case's key, so no case matches"
        parts.append(text)
    changed = []
    for name in ENV_FIELDS:
        va = {str(getattr(r.env, name)) for r in a if r.env}
        vb = {str(getattr(r.env, name)) for r in b if r.env}
        if va and vb and va != vb:
            changed.append(f"{name} {'/'.join(sorted(va))} vs {'/'.join(sorted(vb))}")
    if changed:
        parts.append("environment (" + "; ".join(changed) + ")")
    return f"A and B differ in {' and '.join(parts)}" if parts else None
