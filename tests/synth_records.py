"""Synthetic sweep folders of any size, made of the records of ``results/cpu-quick-v3``.

A cluster sweep multiplies series: every batch size on every machine is a series of its own.
:func:`write` copies the 26 records of ``results/cpu-quick-v3/results.jsonl`` (four series of
seven, seven, seven and five sizes) as many times as needed for ``n`` records, and gives copy
``k`` the batch ``1 + k % BATCHES`` and the machine ``k // BATCHES`` (a fingerprint id of its
own, which is what :func:`bench.analysis.series.machine_of` reads), so that 26,000 records
make 4,000 series on 100 machines. The measured values are copied unchanged, so every series
has the verdicts of its original in ``results/cpu-quick-v3/fits.json``. The output is
deterministic: the same ``n`` gives the same bytes.

Used by tests/report/test_scale.py and tests/report/test_benchmark_report.py; also a command:
``python tests/synth_records.py OUT N`` writes ``OUT/results.jsonl`` with N records.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "results" / "cpu-quick-v3" / "results.jsonl"
BATCHES = 10  # batch sizes per machine: copy k runs at batch 1 + k % BATCHES on machine k // BATCHES


def machine_id(index: int) -> str:
    """The fingerprint id of synthetic machine ``index``: 12 hex digits, distinct in their first six (the
    report names machines that share a device name by the first six)."""
    return hashlib.sha256(f"synthetic machine {index}".encode()).hexdigest()[:12]


def lines(n: int) -> list[str]:
    """The ``n`` JSON lines of the synthetic results.jsonl (see the module)."""
    source = [json.loads(line) for line in SOURCE.read_text().splitlines() if line.strip()]
    out: list[str] = []
    copy = 0
    while len(out) < n:
        batch, machine = 1 + copy % BATCHES, machine_id(copy // BATCHES)
        for record in source[: n - len(out)]:  # changed in place: every field changed is set on every copy
            record["case"]["batch"] = batch
            record["batch"] = batch
            record["machine"]["machine_id"] = machine
            record["machine"]["host_sha"] = machine[::-1]
            out.append(json.dumps(record, sort_keys=True))
        copy += 1
    return out


def write(folder: Path, n: int) -> Path:
    """Write ``folder``/results.jsonl with ``n`` synthetic records (``folder`` is created); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.jsonl"
    path.write_text("".join(line + "\n" for line in lines(n)))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        sys.exit("usage: python tests/synth_records.py OUT N")
    print(write(Path(sys.argv[1]), int(sys.argv[2])))
