"""results.jsonl: one JSON object per measured case, appended and flushed as soon as it exists.

The file is only ever appended to. Each record is written with one ``write`` of a whole
line, then flushed and fsync'ed, so Ctrl-C or a crash between cases leaves a valid file
and a crash during a write leaves at most one broken last line. Broken lines are
reported with their line number (:class:`~bench.schema.Problem`) and never rewritten; a
writer that opens a file whose last line has no newline adds one, so new records start
on a line of their own.

What a line holds, how it is validated and read (:func:`~bench.schema.read_results`, the
one reader every command uses) is :mod:`bench.schema`; this module writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench import files, schema
from bench.schema import (  # noqa: F401 (the record API, re-exported for the writers' callers)
    FINAL_STATUSES,
    STATUSES,
    PeerRecord,
    Problem,
    Record,
    case_key,
    latest_by_key,
    read_peers,
    read_results,
)

FILENAME = schema.RESULTS_FILENAME
PEERS_FILENAME = schema.PEERS_FILENAME


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
        data = memoryview((schema.dumps(record) + "\n").encode("utf-8"))
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
