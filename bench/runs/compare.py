"""Comparing two runs case by case: latency and activation-memory ratios B/A, flagged beyond a factor."""

from __future__ import annotations

from bench.runs.records import Record, latest_by_key


def compare(a: list[Record], b: list[Record], factor: float) -> list[dict]:
    """One row per case in both: latency and activation-memory ratios B/A and a flag."""
    by_a, by_b = latest_by_key(a), latest_by_key(b)
    rows = []
    for key, rb in by_b.items():
        ra = by_a.get(key)
        if ra is None:
            continue
        row = {"label": rb.name, "case": rb.case, "tokens": rb.tokens,
               "status_a": ra.status, "status_b": rb.status, "time": None, "memory": None, "flag": ""}
        if ra.status == rb.status == "ok":
            # per image: a --max-batch case may have run at different batches in A and B
            na, nb = ra.batch or ra.time.batch, rb.batch or rb.time.batch
            row["time"] = (rb.time.median_s / nb) / (ra.time.median_s / na)
            ma, mb = ra.memory.activation_bytes / na, rb.memory.activation_bytes / nb
            row["memory"] = mb / ma if ma > 0 and mb > 0 else None
            ratios = [r for r in (row["time"], row["memory"]) if r is not None]
            if any(r > factor for r in ratios):
                row["flag"] = "worse"
            elif any(r < 1 / factor for r in ratios):
                row["flag"] = "better"
        elif ra.status == "ok":
            row["flag"] = "worse"
        elif rb.status == "ok":
            row["flag"] = "better"
        rows.append(row)
    return rows
