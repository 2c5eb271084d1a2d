"""The machine fingerprint of a sweep run: stored in every record and in ``OUT/machine.json``.

At the start of a run, :func:`start` takes :func:`bench.measure.fingerprint.fingerprint`
of the device once and, for CUDA, a :func:`~bench.measure.fingerprint.gpu_sample`
(``gpu_start``); every record of the run carries that dict as ``record.machine``. The
end sample can only be known afterwards, so :func:`finish` appends the run (start and
end samples, :func:`~bench.measure.fingerprint.warnings` of the pair) to
``OUT/machine.json``: one entry per run and device, so a resumed folder keeps its earlier
runs too. CPU runs have ``gpu_start``/``gpu_end`` null and no warnings.

Nothing here raises on an unreadable field (fingerprint's rule), and nothing imports torch.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from bench import schema
from bench.measure import fingerprint as fp
from bench.schema import Machine

FILENAME = "machine.json"
SCHEMA = 1


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sample(device: str) -> dict | None:
    """The GPU sample of ``device`` ("cuda", "cuda:N"; None for the CPU); unreadable fields None."""
    if not str(device).startswith("cuda"):
        return None
    nv = fp._nvml()
    if nv is None:
        return dict.fromkeys(fp.SAMPLE_FIELDS)
    try:  # keep NVML initialised while gpu_sample uses the handle (NVML counts its inits)
        handle = fp._handle(nv, fp._visible_index(device))
        return fp.gpu_sample(handle) if handle is not None else dict.fromkeys(fp.SAMPLE_FIELDS)
    except Exception:  # noqa: BLE001 - a fingerprint never stops a run
        return dict.fromkeys(fp.SAMPLE_FIELDS)
    finally:
        fp._shutdown(nv)


def start(device: str) -> dict:
    """The fingerprint every record of this run on ``device`` carries: fingerprint() plus ``gpu_start``."""
    return dict(fp.fingerprint(device), gpu_start=sample(device))


def part(machine: dict) -> Machine | None:
    """The typed fingerprint a record carries, from :func:`start`'s dict; None when a field does not fit (never raises)."""
    try:
        return schema.decode_object(Machine, machine, "machine")
    except ValueError:
        return None


def finish(out: Path, machines: dict[str, dict], started: str | None = None, shard: dict | None = None) -> Path:
    """Append this run's entry per device (start and end samples, warnings) to ``out/machine.json``."""
    from bench.files import write_text_atomically

    path = Path(out) / FILENAME
    previous = read(path)
    runs = list(previous.get("runs", [])) if previous else []
    for device, machine in machines.items():
        end = sample(device)
        runs.append(
            {
                "device": device,
                "machine_id": machine.get("machine_id"),
                "shard": shard,
                "started": started,
                "finished": now(),
                "gpu_start": machine.get("gpu_start"),
                "gpu_end": end,
                "warnings": fp.warnings(machine.get("gpu_start"), end),
                "fingerprint": {k: v for k, v in machine.items() if k != "gpu_start"},
            }
        )
    write_text_atomically(path, json.dumps({"schema": SCHEMA, "runs": runs}, indent=1, sort_keys=True) + "\n")
    return path


def read(path: Path) -> dict | None:
    """``machine.json`` as a dict, or None when missing or unreadable.

    A ``machine.json`` that is a symbolic link, a FIFO or a device raises
    :class:`bench.files.UnsafeFile` (its callers turn that into a warning).
    """
    from bench import files

    try:
        data = json.loads(files.read_text(path))
    except files.UnsafeFile:  # a symbolic link, FIFO or device: refused, not read (and never waited on)
        raise
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("runs", []), list) else None


def _where(machine: dict) -> str:
    gpu = machine.get("gpu")
    name = (gpu.get("name") if isinstance(gpu, dict) else None) or machine.get("cpu_model") or "unknown device"
    return f"{name} (machine {machine.get('machine_id') or '?'})"


def report_warnings(records: list[schema.Record], data: dict | None = None) -> list[str]:
    """What makes the timings of a folder doubtful, each once: clocks not locked, a shared GPU, throttling.

    From ``machine.json`` (``data``: start and end samples of each run) and from the start
    sample every record carries (``record.machine.gpu_start``; merged folders have no
    machine.json). Each line names the device and machine. Records without a fingerprint
    say nothing.
    """
    out: list[str] = []

    def add(where: str, lines: list[str]) -> None:
        for line in lines:
            text = f"{where}: {line}"
            if text not in out:
                out.append(text)

    for run in (data or {}).get("runs", []):
        if isinstance(run, dict):
            fingerprint = run.get("fingerprint")
            where = _where(fingerprint if isinstance(fingerprint, dict) else {})
            add(where, [w for w in run.get("warnings") or [] if isinstance(w, str)])
    seen = set()
    for record in records:
        m = record.machine
        if m is None or m.gpu_start is None:
            continue
        fingerprint, start = schema.encode(m), schema.encode(m.gpu_start)
        ident = json.dumps([m.machine_id, start], sort_keys=True)
        if ident not in seen:
            seen.add(ident)
            add(_where(fingerprint), fp.warnings(start, None))
    return out


def write_end(out: Path, machines: dict[str, dict], started: str | None, shard: Any, log: Any = None) -> None:
    """:func:`finish` at the end of a sweep (also after Ctrl-C or an error): a failure is a warning on ``log``."""
    try:
        path = finish(out, machines, started, schema.encode(shard) if shard is not None else None)
    except (OSError, ValueError) as exc:
        if log is not None:
            print(f"warning: {Path(out) / FILENAME} not written ({exc})", file=log, flush=True)
        return
    data = read(path) or {}
    for warning in (data.get("runs") or [{}])[-1].get("warnings") or []:
        if log is not None:
            print(f"warning: {warning}", file=log, flush=True)
