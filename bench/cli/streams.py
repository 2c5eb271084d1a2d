"""Printing is best-effort, measuring is not: the command line's standard streams and signals.

A sweep piped into ``head -1`` loses its reader after one line; one started with ``>&-`` has
no standard output at all; one whose output is redirected to a full disk cannot write it.
None of these may stop a command or change its exit status: :class:`BestEffort` drops what
cannot be printed (once a stream failed, everything after it) and the command goes on,
measuring and writing its files as if printing had worked. Text that the stream's encoding
cannot show (an ASCII terminal) is printed with backslash escapes instead.

:func:`reserve_standard_fds` opens ``/dev/null`` on a closed descriptor 0, 1 or 2, so that no
file the command opens later becomes "standard output" by accident. SIGTERM raises
:class:`Terminated` (see :func:`bench.cli.on_sigint`). Imports nothing heavy.
"""

from __future__ import annotations

import os
from typing import TextIO


class BestEffort:
    """A text stream whose ``write`` and ``flush`` never raise: after a failure the stream is dropped.

    ``stream`` may be None (Python sets ``sys.stdout`` to None when descriptor 1 was closed).
    """

    def __init__(self, stream: TextIO | None):
        self.stream = stream
        self.lost = stream is None

    def _drop(self) -> None:
        """Stop writing; point the descriptor at /dev/null so that the interpreter's last flush fails quietly too."""
        self.lost = True
        try:
            fd = self.stream.fileno()  # type: ignore[union-attr]
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                self.stream.write(text)  # type: ignore[union-attr]
            except UnicodeEncodeError:
                self._write_escaped(text)
            except (OSError, ValueError):  # a broken pipe, a closed or full stream
                self._drop()
        return len(text)

    def _write_escaped(self, text: str) -> None:
        encoding = getattr(self.stream, "encoding", None) or "ascii"
        try:
            self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))  # type: ignore[union-attr]
        except (OSError, ValueError):
            self._drop()

    def flush(self) -> None:
        if not self.lost:
            try:
                self.stream.flush()  # type: ignore[union-attr]
            except (OSError, ValueError):
                self._drop()

    def isatty(self) -> bool:
        try:
            return not self.lost and self.stream.isatty()  # type: ignore[union-attr]
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str):  # fileno, encoding, ...
        return getattr(self.stream, name)


def reserve_standard_fds() -> None:
    """Open /dev/null on each of descriptors 0, 1 and 2 that is closed (``>&-``); the lowest free one is taken."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # a lower one was free too: it is reserved in its own turn
                os.dup2(null, fd)
                os.close(null)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's time limit): stops the command like Ctrl-C, so every ``finally`` runs
    (a file being written is removed, never left half-done); exit code 143."""
