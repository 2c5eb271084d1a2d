"""results.jsonl: one JSON object per measured case, appended and flushed as soon as it exists.

The file is only ever appended to. Each record is written with one ``write`` of a whole
line, then flushed and fsync'ed, so Ctrl-C or a crash between cases leaves a valid file
and a crash during a write leaves at most one broken last line. Broken lines are
reported with their line number (:class:`Problem`) and never rewritten; a writer that
opens a file whose last line has no newline adds one, so new records start on a line
of their own.

Each line of ``results.jsonl`` is one :class:`Record`: the :class:`~bench.measure.spec.Case`
and the typed parts measuring it returned. :func:`read_results` validates every line
against the schema and the status (an "ok" record must carry its counts, timing and
memory) and returns Records; a line that fails is a :class:`Problem` naming the line.
A record's identity is its case's key (:attr:`Case.key`), which ``--resume`` and
``mixerbench compare`` match on. ``peers.jsonl`` holds :class:`PeerRecord` lines.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

from bench import files
from bench.measure.spec import Case, CostRecord, FlopRecord, MemoryRecord, Timing, case_key  # noqa: F401 (case_key: part of this API)

FILENAME = "results.jsonl"
PEERS_FILENAME = "peers.jsonl"
SCHEMA_VERSION = 1
STATUSES = ("ok", "oom", "error", "killed")
# Final outcomes: ``--resume`` skips a case whose newest record has one of these and
# measures every other case again ("error", "killed": a crash or a kill without evidence of OOM).
FINAL_STATUSES = ("ok", "oom")


@dataclass(frozen=True)
class Problem:
    """A line of results.jsonl that is not a valid record."""

    path: str
    line: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.message}"


def _finite(value, name: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} is not finite")


@dataclass
class Record:
    """One measured case: what was asked (``case``) and what came back, typed.

    ``status`` is "ok" (every part measured), "oom" (out of memory, with evidence: the
    allocator's error or the cgroup's OOM-kill count), "killed" (the CPU memory worker died
    from a signal with no such evidence) or "error". Counting and timing may have
    succeeded on a case that failed later, so ``flops`` and ``time`` can be present on any
    status; ``time`` and ``memory`` are present on every "ok" record.
    Keys this version does not know are kept in ``extra`` and written back unchanged.
    """

    case: Case
    status: str
    label: str = ""
    family: str | None = None
    env: dict | None = None
    roof_flops_per_s: float | None = None
    flops_per_mac: int | None = None
    flops: FlopRecord | None = None
    batch: int | None = None  # the batch that ran (the searched one when case.batch == "max")
    time: Timing | None = None
    achieved_flops_per_s: float | None = None
    mfu: float | None = None
    memory: MemoryRecord | None = None
    error: str | None = None
    elapsed_s: float | None = None
    shard: dict | None = None  # the shard that ran it (bench.runs.shard.Shard.to_json()), when sharded
    machine: dict | None = None  # the machine's fingerprint (bench.runs.machine), when recorded
    cost: CostRecord | None = None  # bytes moved, peak activation bytes, operators (bench.measure.cost)
    copy_bytes_per_s: float | None = (
        None  # copy bandwidth measured at the start of the run (the roofline's memory roof)
    )
    schema: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

    # What reports read most, named as in the file.
    @property
    def tokens(self) -> int | None:
        return self.flops.tokens if self.flops else None

    @property
    def macs(self) -> int | None:
        return self.flops.macs if self.flops else None

    @property
    def params(self) -> int | None:
        return self.flops.params if self.flops else None

    @property
    def key(self) -> str:
        return self.case.key

    @property
    def name(self) -> str:
        return self.label or self.case.model

    def to_json(self) -> dict:
        """The JSON object of one line: the same layout as every earlier version wrote."""
        out: dict = dict(self.extra)
        out.update(schema=self.schema, case=self.case.to_json(), label=self.name, status=self.status)
        for name in (
            "family",
            "env",
            "roof_flops_per_s",
            "flops_per_mac",
            "batch",
            "achieved_flops_per_s",
            "mfu",
            "error",
            "elapsed_s",
            "copy_bytes_per_s",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.flops is not None:
            out.update(
                tokens=self.flops.tokens, params=self.flops.params, macs=self.flops.macs, flops=self.flops.to_json()
            )
        if self.time is not None:
            out["time"] = self.time.to_json()
        if self.memory is not None:
            out["memory"] = self.memory.to_json()
        for name in ("shard", "machine"):  # written only when set: older files stay byte-identical
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.cost is not None:
            out["cost"] = self.cost.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict) -> Record:
        """Parse and validate one line's object; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if "case" not in data or "status" not in data:
            raise ValueError("not a result record (needs a 'case' object and a 'status')")
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        schema = data.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            raise ValueError(f"schema {schema!r}, this version reads {SCHEMA_VERSION}")
        try:
            case = Case.from_json(data["case"], label="")
            flops = FlopRecord.from_json(data["flops"]) if isinstance(data.get("flops"), dict) else None
            time = Timing.from_json(data["time"]) if isinstance(data.get("time"), dict) else None
            memory = MemoryRecord.from_json(data["memory"]) if isinstance(data.get("memory"), dict) else None
            cost = CostRecord.from_json(data["cost"]) if isinstance(data.get("cost"), dict) else None
        except TypeError as exc:  # a part lacks a field
            raise ValueError(f"malformed part: {exc}") from None
        if flops is None and isinstance(data.get("macs"), int):  # files written before 'flops' was stored
            flops = FlopRecord(
                model=case.model,
                img_size=case.img_size,
                patch_size=case.patch_size,
                tokens=data.get("tokens"),
                params=data.get("params", 0),
                macs=data["macs"],
                activations=0,
                uncounted={},
                matmul_macs=0,
            )
        if status == "ok":
            lacking = [n for n, v in (("macs", flops), ("time", time), ("memory", memory)) if v is None]
            if lacking:
                raise ValueError(f"an 'ok' record without {', '.join(lacking)}")
            if not time.median_s > 0:
                raise ValueError("an 'ok' record with a median time that is not positive")
        known = {f.name for f in fields(cls)} | {"tokens", "params", "macs"}
        record = cls(
            case=case,
            status=status,
            label=data.get("label") or case.model,
            family=data.get("family"),
            env=data.get("env"),
            roof_flops_per_s=data.get("roof_flops_per_s"),
            flops_per_mac=data.get("flops_per_mac"),
            flops=flops,
            batch=data.get("batch"),
            time=time,
            achieved_flops_per_s=data.get("achieved_flops_per_s"),
            mfu=data.get("mfu"),
            memory=memory,
            error=data.get("error"),
            elapsed_s=data.get("elapsed_s"),
            schema=schema,
            cost=cost,
            copy_bytes_per_s=data.get("copy_bytes_per_s"),
            extra={k: v for k, v in data.items() if k not in known},
        )
        record.case = case.replace(label=record.label)
        for name in ("shard", "machine"):  # optional objects; absent or null is None
            if data.get(name) is not None and not isinstance(data[name], dict):
                raise ValueError(f"'{name}' is not an object")
            setattr(record, name, data.get(name))
        for name in ("roof_flops_per_s", "mfu", "achieved_flops_per_s"):
            _finite(getattr(record, name), name)
        if time is not None:
            for name in ("median_s", "iqr_s", "mean_s"):
                _finite(getattr(time, name), f"time.{name}")
            if any(
                isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf for t in time.times_s
            ):
                raise ValueError("time.times_s holds a time that is not a finite positive number")
        return record


@dataclass
class PeerRecord:
    """One line of ``peers.jsonl``: ours and timm's model timed interleaved (``bench.measure.timing.paired_ratio``)."""

    case: dict  # ours, timm, img_size, batch, device, dtype, mode, channels_last
    paired: dict
    env: dict | None = None
    status: str = "ok"
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        return {"schema": self.schema, "case": self.case, "status": self.status, "paired": self.paired, "env": self.env}

    @classmethod
    def from_json(cls, data: dict) -> PeerRecord:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("case"), dict)
            or not isinstance(data.get("paired"), dict)
        ):
            raise ValueError("not a peers record (needs 'case' and 'paired' objects)")
        if not {"ours", "timm"} <= set(data["case"]):
            raise ValueError("not a peers record (its case names no 'ours' and 'timm')")
        return cls(
            case=data["case"],
            paired=data["paired"],
            env=data.get("env"),
            status=data.get("status", "ok"),
            schema=data.get("schema", SCHEMA_VERSION),
        )


class ResultsWriter:
    """Append records to ``path`` (created if missing), one line each, flushed and fsync'ed."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = files.open_file(self.path, "a+b")  # a regular file only: no symlink, FIFO or device
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":  # a broken last line: keep it, start a new one
                self._file.write(b"\n")
                self._flush()

    def append(self, record: Record | PeerRecord) -> None:
        """Write the record's line and fsync it; when that fails (disk full), cut the file back and raise OSError.

        The line goes out with ``os.write`` (no Python buffer left holding it), so a failed
        append leaves no half line behind where the file can be cut back, and closing the
        writer afterwards does not fail a second time.
        """
        data = memoryview((json.dumps(record.to_json(), sort_keys=True, allow_nan=False) + "\n").encode("utf-8"))
        self._file.flush()
        fd = self._file.fileno()
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # a half line stays; readers report it by number and the next writer starts a new line
            raise

    def _flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


T = TypeVar("T")


def read_lines(path: str | os.PathLike, parse: Callable[[dict], T]) -> tuple[list[T], list[Problem]]:
    """Every line of ``path`` that ``parse`` accepts, in file order, and a :class:`Problem` per other line.

    Empty lines are ignored.
    """
    path = Path(path)
    records: list[T] = []
    problems: list[Problem] = []
    with files.open_file(path, "rb") as f:  # a regular file only: no symlink, FIFO or device
        for number, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                data = json.loads(text.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                problems.append(Problem(str(path), number, f"not valid JSON ({exc})"))
                continue
            try:
                records.append(parse(data))
            except ValueError as exc:
                problems.append(Problem(str(path), number, str(exc)))
    return records, problems


def read_results(path: str | os.PathLike) -> tuple[list[Record], list[Problem]]:
    """The valid :class:`Record` lines of a ``results.jsonl``, and a :class:`Problem` per other line."""
    return read_lines(path, Record.from_json)


def read_peers(path: str | os.PathLike) -> tuple[list[PeerRecord], list[Problem]]:
    """The valid lines of a ``peers.jsonl``."""
    return read_lines(path, PeerRecord.from_json)


def latest_by_key(records: list[Record]) -> dict[str, Record]:
    """The last record of each case (a resumed or repeated case keeps its newest result)."""
    return {r.key: r for r in records}
