"""The machine fingerprint of a sweep run: stored in every record and in ``OUT/machine.json``.

At the start of a run, :func:`start` takes :func:`bench.measure.fingerprint.fingerprint`
of the device once and, for CUDA, a :func:`~bench.measure.fingerprint.gpu_sample`
(``gpu_start``); every record of the run carries that :class:`bench.schema.Machine` as
``record.machine``. The end sample can only be known afterwards, so :func:`finish` appends
the run (a :class:`bench.schema.MachineRun`: start and end samples,
:func:`~bench.measure.fingerprint.warnings` of the pair) to ``OUT/machine.json`` (a
:class:`bench.schema.MachineFile`): one entry per run and device, so a resumed folder keeps
its earlier runs too (entries this version cannot read are kept as they are). CPU runs have
``gpu_start``/``gpu_end`` null and no warnings.

Nothing here raises on an unreadable field (fingerprint's rule), and nothing imports torch.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from bench import schema
from bench.measure import fingerprint as fp
from bench.schema import Fingerprint, GpuSample, Machine, MachineFile, MachineRun, Shard

FILENAME = schema.MACHINE_FILENAME
SCHEMA = schema.MACHINE_FILE_VERSION


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sample(device: str) -> GpuSample | None:
    """The GPU sample of ``device`` ("cuda", "cuda:N"; None for the CPU); unreadable fields None."""
    if not str(device).startswith("cuda"):
        return None
    nv = fp._nvml()
    if nv is None:
        return GpuSample()
    try:  # keep NVML initialised while gpu_sample uses the handle (NVML counts its inits)
        handle = fp._handle(nv, fp._visible_index(device))
        return fp.gpu_sample(handle) if handle is not None else GpuSample()
    except Exception:  # noqa: BLE001 - a fingerprint never stops a run
        return GpuSample()
    finally:
        fp._shutdown(nv)


def start(device: str) -> Machine:
    """The fingerprint every record of this run on ``device`` carries: fingerprint() plus ``gpu_start``."""
    found = fp.fingerprint(device)
    return Machine(**{f.name: getattr(found, f.name) for f in dataclasses.fields(found)}, gpu_start=sample(device))


def finish(out: Path, machines: dict[str, Machine], started: str | None = None, shard: Shard | None = None) -> Path:
    """Append this run's entry per device (start and end samples, warnings) to ``out/machine.json``."""
    from bench import files
    from bench.files import write_text_atomically

    path = Path(out) / FILENAME
    try:
        previous = _load(path)
    except DamagedFile as exc:  # earlier runs' entries: kept beside, never dropped silently
        kept = files.keep_beside(path, "damaged", move=True)
        print(
            f"warning: {path} cannot be read ({exc}); kept as {kept.name}, a new {FILENAME} is started",
            file=sys.stderr,
            flush=True,
        )
        previous = None
    runs: list[Any] = list(previous["runs"]) if previous else []  # earlier entries as they are, read or not
    for device, machine in machines.items():
        end = sample(device)
        run = MachineRun(
            device=device,
            machine_id=machine.machine_id,
            shard=shard,
            started=started,
            finished=now(),
            gpu_start=machine.gpu_start,
            gpu_end=end,
            warnings=tuple(fp.warnings(machine.gpu_start, end)),
            fingerprint=machine.fingerprint,
        )
        runs.append(schema.encode(run))
    text = json.dumps({"schema": SCHEMA, "runs": runs}, indent=1, sort_keys=True, allow_nan=False)
    write_text_atomically(path, text + "\n")
    return path


class DamagedFile(ValueError):
    """``machine.json`` exists but is not one: not JSON, too large or deep, not an object with a list of runs."""


def _load(path: Path) -> dict[str, Any] | None:
    """``machine.json`` as JSON (an object with a list of runs), or None when missing; :class:`DamagedFile` when
    it is there but not such an object (read up to its bound, nesting checked first: :func:`bench.schema.parse_line`).

    A ``machine.json`` that is a symbolic link, a FIFO or a device raises
    :class:`bench.files.UnsafeFile` (its callers turn that into a warning).
    """
    from bench import files

    try:
        data = schema.parse_line(files.read_bytes(path, schema.MAX_LINE_BYTES).replace(b"\n", b" "))
    except files.UnsafeFile:  # a symbolic link, FIFO or device: refused, not read (and never waited on)
        raise
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DamagedFile(str(exc)) from None
    if not (isinstance(data, dict) and isinstance(data.get("runs", []), list)):
        raise DamagedFile("not an object with a list of runs")
    return data


def read(path: Path) -> MachineFile | None:
    """``machine.json`` typed, or None when missing or unreadable; a run this version cannot decode (a foreign or
    damaged entry) is left out. A symbolic link, FIFO or device raises :class:`bench.files.UnsafeFile`."""
    try:
        data = _load(path)
    except DamagedFile:
        return None
    if data is None:
        return None
    runs = []
    for i, run in enumerate(data.get("runs", [])):
        try:
            runs.append(schema.decode_object(MachineRun, run, f"runs[{i}]"))
        except ValueError:
            continue
    version = data.get("schema")
    return MachineFile(
        schema=version if isinstance(version, int) and not isinstance(version, bool) else SCHEMA, runs=tuple(runs)
    )


def _where(machine: Fingerprint) -> str:
    name = (machine.gpu.name if machine.gpu else None) or machine.cpu_model or "unknown device"
    return f"{name} (machine {machine.machine_id or '?'})"


def report_warnings(records: list[schema.Record], data: MachineFile | None = None) -> list[str]:
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

    for run in data.runs if data is not None else ():
        add(_where(run.fingerprint), list(run.warnings))
    seen = set()
    for record in records:
        m = record.machine
        if m is None or m.gpu_start is None:
            continue
        ident = json.dumps([m.machine_id, schema.encode(m.gpu_start)], sort_keys=True)
        if ident not in seen:
            seen.add(ident)
            add(_where(m), fp.warnings(m.gpu_start, None))
    return out


def write_end(
    out: Path, machines: dict[str, Machine], started: str | None, shard: Shard | None, log: Any = None
) -> None:
    """:func:`finish` at the end of a sweep (also after Ctrl-C or an error): a failure is a warning on ``log``."""
    try:
        path = finish(out, machines, started, shard)
    except (OSError, ValueError) as exc:
        if log is not None:
            print(f"warning: {Path(out) / FILENAME} not written ({exc})", file=log, flush=True)
        return
    data = read(path)
    for warning in data.runs[-1].warnings if data is not None and data.runs else ():
        if log is not None:
            print(f"warning: {warning}", file=log, flush=True)
