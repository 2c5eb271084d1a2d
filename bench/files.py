"""Output files and folders: checks before any work, and writes that are never half-done.

Used by every layer that writes (runs, report, experiments); errors are ``ValueError``
naming the path, never a command-line flag (the command line adds that).
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO


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


def prepare_atomically(path: Path, write: Callable[[Path], object]) -> Path:
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


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
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
    files: Sequence[tuple[Path, Callable[[Path], object]]], ready: Sequence[tuple[Path, Path]] = ()
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
    """Write ``text`` to ``path`` atomically, as UTF-8 whatever the locale."""
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def keep_beside(path: Path, tag: str, move: bool = False) -> Path:
    """Keep the file ``path`` as ``<name>.<tag>-<UTC time>`` beside it (a name not yet taken) and return that path.

    For a file holding earlier measurements that is about to be replaced: the old one is
    never lost. ``move`` renames it; otherwise it is hard-linked (copied where links are
    not possible), so ``path`` itself stays until its replacement is in place.
    """
    import datetime
    import shutil

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept, n = path.with_name(f"{path.name}.{tag}-{stamp}"), 1
    while os.path.lexists(kept):
        n += 1
        kept = path.with_name(f"{path.name}.{tag}-{stamp}-{n}")
    if move:
        os.rename(path, kept)
    else:
        try:
            os.link(path, kept, follow_symlinks=False)
        except OSError:
            shutil.copy2(path, kept, follow_symlinks=False)
    return kept


LOCK_NAME = ".lock"


class FolderBusy(ValueError):
    """Another process holds the folder's lock (see :func:`folder_lock`)."""


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder ``out`` (``flock`` on ``out/.lock``) inside the block.

    Non-blocking: raises :class:`FolderBusy` naming the holder's process id when another
    process (a second sweep or a merge into the same folder) holds it. The lock goes with the
    process, so a killed sweep never leaves the folder locked; the ``.lock`` file stays.
    ``.lock`` is opened like every file of a folder (:func:`open_fd`: never through a
    symbolic link, never a FIFO or device) and never truncated: the holder's process id
    is written over its first bytes, padded to a fixed width.
    """
    import fcntl

    fd = open_fd(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, _PID_WIDTH, 0).decode(errors="replace").strip() or "unknown"
            holder = holder if holder.isdigit() else "unknown"
            raise FolderBusy(
                f"{out} is in use by another sweep or merge (process {holder}); wait for it to end or choose another folder"
            ) from None
        os.pwrite(fd, f"{os.getpid():<{_PID_WIDTH - 1}}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


_PID_WIDTH = 20  # a process id, space-padded, and a newline: written over the lock file's first bytes


# --- opening the files of a folder: regular files only, never through a symbolic link ----------


class UnsafeFile(ValueError):
    """A file of a results or report folder that is a symbolic link, a FIFO, a device or a folder.

    Files inside a folder the user named (``OUT/results.jsonl``, ``OUT/.lock``,
    ``machine.json``, a report's plots) are opened only when they are regular files: a
    symbolic link planted there could make a write land, or a read come from, anywhere;
    a FIFO or a device could block a reader forever. The message is one line naming the path.
    """


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: Path, mode: int) -> UnsafeFile:
    return UnsafeFile(f"{path} is {_kind(mode)}, not a regular file; refusing to open it (remove or replace it)")


def check_regular(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists as a regular file (False: absent); :class:`UnsafeFile` for anything else.

    Looks at the path itself (``lstat``), so a symbolic link is refused whatever it points at.
    """
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        raise _refuse(path, mode)
    return True


def open_fd(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    """``os.open(path, flags)`` for a regular file only: never through a symbolic link, never blocking.

    Checked before the open (``lstat``), opened with ``O_NOFOLLOW`` and ``O_NONBLOCK`` (so a
    FIFO swapped in meanwhile cannot block), and checked again on the open descriptor
    (``fstat``); anything but a regular file raises :class:`UnsafeFile`. The returned
    descriptor is blocking, as an ordinary ``open`` gives.
    """
    import fcntl

    path = Path(path)
    check_regular(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (_errno.ELOOP, _errno.ENXIO):  # a symbolic link; a FIFO with no reader (write-only)
            try:
                raise _refuse(path, os.lstat(path).st_mode) from None
            except FileNotFoundError:
                pass
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, st.st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


_MODES = {
    "rb": os.O_RDONLY,
    "r": os.O_RDONLY,
    "ab": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    "a+b": os.O_RDWR | os.O_APPEND | os.O_CREAT,
}


def open_file(path: str | os.PathLike, mode: str = "rb", **kwargs) -> IO:
    """``open(path, mode)`` through :func:`open_fd` (modes "r", "rb", "ab", "a+b")."""
    fd = open_fd(path, _MODES[mode])
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The text of the regular file ``path`` (:func:`open_fd`); FileNotFoundError when absent."""
    with open_file(path, "r", encoding=encoding) as f:
        return f.read()


def read_bytes(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``; with ``limit``, ValueError for a file larger than that, found by
    reading at most ``limit + 1`` bytes (a huge file is never read whole)."""
    with open_file(path, "rb") as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"{path} is larger than {limit:,} bytes; refusing to read it")
    return data


def bounded_lines(f: IO[bytes], limit: int) -> Iterator[bytes]:
    """The lines of binary file ``f``, each cut to at most ``limit + 1`` bytes.

    A longer line is yielded as its first ``limit + 1`` bytes (so the reader can tell and
    refuse it) and the rest of it is skipped in pieces, never held in memory whole.
    """
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        yield line
        if len(line) > limit and not line.endswith(b"\n"):
            while True:  # the rest of a line too long to read
                rest = f.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
