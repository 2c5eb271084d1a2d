"""Output files and folders: checks before any work, and writes that are never half-done.

Used by every layer that writes (runs, report, experiments); errors are ``ValueError``
naming the path, never a command-line flag (the command line adds that).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


def check_writable(out: Path) -> None:
    """Raise ValueError when folder ``out`` cannot be created or written (creates nothing)."""
    if str(out) == "":
        raise ValueError("the output folder is an empty path")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{out}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{out}: {probe} is not writable")


def make_folder(out: Path) -> None:
    """Create ``out`` (and its parents); ValueError with the system's reason when that fails."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create {out} ({exc.strerror or exc})") from None


def prepare_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, flush it to disk and return it, not yet moved.

    For several files that must appear together: prepare each, then ``os.replace`` them.
    The file gets the permissions an ordinary ``open`` would give (not mkstemp's 0600);
    on failure it is removed.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the file into place only once it is complete.

    A failure or a kill part-way leaves the previous file (or none) in place.
    """
    tmp = prepare_atomically(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_together(
    files: Sequence[tuple[Path, Callable[[Path], None]]], ready: Sequence[tuple[Path, Path]] = ()
) -> None:
    """Write several files so that they change together.

    Each ``(target, write)`` is prepared beside its target (:func:`prepare_atomically`);
    then the prepared files and the ``ready`` ``(tmp, target)`` pairs are renamed into
    place, in that order. A failure while preparing leaves every target as it was; a
    failure while renaming removes the targets that did not exist before.
    """
    prepared: list[tuple[Path, Path]] = []
    try:
        for target, write in files:
            prepared.append((prepare_atomically(target, write), target))
    except BaseException:
        for tmp, _ in prepared:
            tmp.unlink(missing_ok=True)
        raise
    moves = [*prepared, *ready]
    new = {target for _, target in moves if not target.exists()}
    placed: list[Path] = []
    try:
        for tmp, target in moves:
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for tmp, _ in prepared:
            tmp.unlink(missing_ok=True)
        for target in placed:
            if target in new:
                target.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text))


LOCK_NAME = ".lock"


class FolderBusy(ValueError):
    """Another process holds the folder's lock (see :func:`folder_lock`)."""


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder ``out`` (``flock`` on ``out/.lock``) inside the block.

    Non-blocking: raises :class:`FolderBusy` naming the holder's process id when another
    process (a second sweep started on the same folder) holds it. The lock goes with the
    process, so a killed sweep never leaves the folder locked; the empty ``.lock`` file stays.
    """
    import fcntl

    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusy(
                f"{out} is in use by another sweep (process {holder}); wait for it to end or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
