"""results.jsonl: one JSON object per measured case, appended and flushed as soon as it exists.

The file is only ever appended to. Each record is written with one ``write`` of a whole
line, then flushed and fsync'ed, so Ctrl-C or a crash between cases leaves a valid file
and a crash during a write leaves at most one broken last line. Broken lines are
reported with their line number (:class:`Problem`) and never rewritten; a writer that
opens a file whose last line has no newline adds one, so new records start on a line
of their own.

A record's identity is its ``case`` dict (model, sizes, batch, device, dtype, mode,
overrides...): :func:`case_key` turns it into the key that ``--resume`` and
``mixerbench compare`` match on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

FILENAME = "results.jsonl"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Problem:
    """A line of results.jsonl that is not a valid record."""

    path: str
    line: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.message}"


def case_key(case: dict) -> str:
    """The canonical key of a case: its JSON with sorted keys (nested dicts too)."""
    return json.dumps(case, sort_keys=True, separators=(",", ":"))


class ResultsWriter:
    """Append records to ``path`` (created if missing), one line each, flushed and fsync'ed."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "a+b")
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":  # a broken last line: keep it, start a new one
                self._file.write(b"\n")
                self._flush()

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
        self._file.write(line.encode("utf-8"))
        self._flush()

    def _flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_results(path: str | os.PathLike) -> tuple[list[dict], list[Problem]]:
    """All valid records of ``path`` in file order, and a :class:`Problem` per broken line.

    A valid record is a JSON object with a ``case`` object and a ``status`` string.
    Empty lines are ignored.
    """
    path = Path(path)
    records: list[dict] = []
    problems: list[Problem] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                record = json.loads(text.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                problems.append(Problem(str(path), number, f"not valid JSON ({exc})"))
                continue
            if not isinstance(record, dict) or not isinstance(record.get("case"), dict) or not isinstance(record.get("status"), str):
                problems.append(Problem(str(path), number, "not a result record (needs a 'case' object and a 'status')"))
                continue
            records.append(record)
    return records, problems


def latest_by_key(records: list[dict]) -> dict[str, dict]:
    """The last record of each case (a resumed or repeated case keeps its newest result)."""
    return {case_key(r["case"]): r for r in records}
