"""Peak memory of one inference or training step, with weights and activations apart.

CUDA (in process): ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
Bytes held by tensors through torch's caching allocator, nothing else (no CUDA context,
no allocator cache).

- ``weights_bytes``: allocated after building the model minus before;
- ``peak_bytes``: the allocator's peak during one step (weights included);
- ``activation_bytes``: that peak minus what was allocated just before the step
  (activations, workspaces, gradients and optimizer updates in a training step; the
  warm-up step's gradients are freed before the baseline is read, so a training step's
  figure includes its gradients: at least the parameter bytes).

CPU (in a child process, :class:`MemoryWorker`): the *resident set size* of a separate
Python process that does nothing but these measurements, read from /proc (Linux). Before
each case the worker frees what it can (``gc``, ``malloc_trim``) and resets the kernel's
peak-RSS mark (``/proc/self/clear_refs``); glibc is told to serve every allocation above
64 KiB with its own ``mmap`` (fixed ``M_MMAP_THRESHOLD``) so freed tensors leave the RSS
at once and the peak follows the tensors alive at the same time.

- ``weights_bytes``: RSS after building the model minus RSS before (weights, plus the
  few pages the build touches);
- ``peak_bytes``: the process's peak RSS during one step, *including* the Python
  interpreter and the torch libraries (``baseline_bytes``, typically 0.5-0.7 GB);
- ``activation_bytes``: the peak RSS during the step minus the RSS just before it.

The step measured is the second one: the first (warm-up) also allocates one-off caches
(oneDNN primitives, lazily created optimizer state), which would otherwise count as
activations. A worker that the kernel's OOM killer kills (the cgroup's ``oom_kill`` count
grew) or whose allocator fails reports ``oom``; a worker killed otherwise raises
:class:`WorkerKilled` (the sweep records "killed", and ``--resume`` measures it again).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from bench import schema
from bench.schema import Case, Memory

MMAP_THRESHOLD = 64 * 1024  # bytes; glibc M_MMAP_THRESHOLD in the CPU worker
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1


class WorkerOOM(RuntimeError):
    """The CPU memory worker ran out of memory, with evidence: the allocator said so, or the cgroup counted an OOM kill."""


class WorkerKilled(RuntimeError):
    """The CPU memory worker died from a signal with no evidence of running out of memory (a kill, a crash)."""


def oom_kill_count() -> int | None:
    """How many processes of this process's memory cgroup an OOM killer has killed; None where nothing says.

    cgroup v2: ``oom_kill`` of ``memory.events``; v1: ``oom_kill`` of ``memory.oom_control``.
    A worker that dies from SIGKILL is called out of memory only if this count grew meanwhile.
    """
    paths = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, where = line.split(":", 2)
            where = where.lstrip("/")
            if controllers == "":
                paths.append(Path("/sys/fs/cgroup", where, "memory.events"))
            elif "memory" in controllers.split(","):
                paths.append(Path("/sys/fs/cgroup/memory", where, "memory.oom_control"))
    except (OSError, ValueError):
        pass
    paths += [Path("/sys/fs/cgroup/memory.events"), Path("/sys/fs/cgroup/memory/memory.oom_control")]
    for path in paths:
        try:
            match = re.search(r"^oom_kill (\d+)$", path.read_text(), re.MULTILINE)
        except OSError:
            continue
        if match:
            return int(match.group(1))
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator's out-of-memory error (Python's, torch's CUDA or CPU allocator's)."""
    if isinstance(exc, (MemoryError, WorkerOOM)):
        return True
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
        return True
    text = str(exc)
    return (
        isinstance(exc, RuntimeError)
        and not isinstance(exc, WorkerKilled)
        and ("DefaultCPUAllocator: can't allocate memory" in text or "DefaultCPUAllocator: not enough memory" in text)
    )


def measure(case: Case) -> Memory:
    """Peak memory of one step of ``case`` (see the module doc for what is measured).

    On CPU this starts a fresh worker process for the one case (a few seconds of
    imports); a sweep keeps one :class:`MemoryWorker` for all its cases instead.
    """
    if case.device == "cuda":
        return measure_in_process(case)
    with MemoryWorker() as worker:
        return worker.measure(case)


def measure_in_process(case: Case, *, batch: int | None = None) -> Memory:
    """Measure ``case`` in this process: CUDA through the allocator, CPU through this process's RSS.

    ``batch`` replaces the case's own (the max-batch search tries several). CPU figures
    are only meaningful in a process set up as :class:`MemoryWorker` does.
    """
    import torch

    from bench.measure import compiling, timing

    read_now: Callable[[], int]
    reset_peak: Callable[[], None]
    read_peak: Callable[[], int]
    cuda = case.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        read_now, reset_peak, read_peak = (
            torch.cuda.memory_allocated,
            torch.cuda.reset_peak_memory_stats,
            torch.cuda.max_memory_allocated,
        )
    else:
        release_cpu_memory()
        read_now, reset_peak, read_peak = current_rss, reset_peak_rss, peak_rss
    with timing.torch_threads(case.threads):
        baseline = read_now()
        model = timing.build_case(case)
        weights = read_now() - baseline
        step = timing.case_step(case, model, batch=batch)
        compiling.warm_up(step, case.compile, steps=1)  # one-off caches and optimizer state; compiled: until steady
        for p in model.parameters():  # the warm-up's gradients must not sit in the baseline: the step makes them anew
            p.grad = None
        if not cuda:
            release_cpu_memory()
        reset_peak()
        before = read_now()
        step()
        peak = read_peak()
        del step, model
    return Memory(
        method="cuda_max_memory_allocated" if cuda else "cpu_peak_rss",
        weights_bytes=weights,
        peak_bytes=peak,
        activation_bytes=peak - before,
        baseline_bytes=baseline,
    )


# --- CPU: resident set size of this process (Linux /proc) ---------------------------------


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def current_rss() -> int:
    """This process's resident set size in bytes."""
    return _status_kib("VmRSS") * 1024


def peak_rss() -> int:
    """This process's peak resident set size in bytes since start or the last :func:`reset_peak_rss`."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0, /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6")


def release_cpu_memory() -> None:
    """Collect garbage and give freed heap memory back to the kernel (glibc ``malloc_trim``)."""
    gc.collect()
    _libc().malloc_trim(0)


def configure_allocator() -> None:
    """Fixed glibc thresholds, so large blocks are mmap'ed and returned to the kernel when freed."""
    libc = _libc()
    if not libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) or not libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD):
        raise RuntimeError("glibc mallopt refused the memory worker's thresholds")


def cpu_rss_supported() -> str | None:
    """None when CPU memory can be measured here, else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return f"CPU peak memory needs Linux /proc (this is {sys.platform})"
    if not os.access("/proc/self/clear_refs", os.W_OK):
        return "CPU peak memory needs a writable /proc/self/clear_refs"
    return None


# --- the CPU worker process -----------------------------------------------------------------


class MemoryWorker:
    """A child process that measures CPU cases one at a time (JSON lines over pipes).

    Start it once per sweep (imports cost seconds); a worker that dies is restarted for
    the next case. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self) -> None:
        reason = cpu_rss_supported()
        if reason:
            raise RuntimeError(reason)
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None

    def _start(self) -> subprocess.Popen[str]:
        self._stderr = stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.measure.memory", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        return self._proc

    def measure(self, case: Case) -> Memory:
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        assert proc.stdin is not None and proc.stdout is not None  # both are pipes (see _start)
        kills_before = oom_kill_count()
        try:
            proc.stdin.write(json.dumps(schema.encode(schema.MemoryRequest(case))) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except BrokenPipeError:  # the worker died before it read the case
            line = ""
        if not line:  # the worker died
            code = proc.wait()
            tail = self._stderr_tail()
            self._proc = None
            raise self._death(code, tail, kills_before, case)
        try:
            reply = schema.decode_object(schema.MemoryReply, schema.parse_line(line.encode()), "reply")
        except ValueError as exc:
            raise RuntimeError(f"memory worker: an unreadable reply ({exc})") from None
        if reply.record is not None:
            return reply.record
        if reply.status == "oom":
            raise WorkerOOM(reply.error)
        raise RuntimeError(f"memory worker: {reply.error}")

    @staticmethod
    def _death(code: int, tail: str, kills_before: int | None, case: Case) -> RuntimeError:
        """The exception for a worker that died with exit ``code``: OOM only with evidence."""
        what = f"measuring {case.name} at {case.img_size} px"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            kills_after = oom_kill_count()
            if (
                code == -signal.SIGKILL
                and kills_before is not None
                and kills_after is not None
                and kills_after > kills_before
            ):
                return WorkerOOM(
                    f"memory worker killed by the OOM killer (cgroup oom_kill {kills_before} -> {kills_after}) {what}"
                )
            if "DefaultCPUAllocator" in tail or "MemoryError" in tail:
                return WorkerOOM(f"memory worker died ({name}) out of memory {what}: {tail}")
            return WorkerKilled(
                f"memory worker killed by {name} {what}, no sign of running out of memory"
                + (f": {tail}" if tail else "")
            )
        return WorkerKilled(f"memory worker exited with code {code} {what}" + (f": {tail}" if tail else ""))

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> MemoryWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _worker_main() -> int:
    """Serve measurements: one JSON case per stdin line, one JSON reply per stdout line."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed (by libraries, C code) goes to stderr
    configure_allocator()
    import torch  # noqa: F401  (imported before the first baseline)

    for line in sys.stdin:
        try:
            request = schema.decode_object(schema.MemoryRequest, schema.parse_line(line.encode()), "request")
            reply = schema.MemoryReply("ok", record=measure_in_process(request.case))
        except MemoryError as exc:
            reply = schema.MemoryReply("oom", error=f"out of memory: {exc}")
        except Exception as exc:  # reported to the parent, which records the case as failed
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            kind = "oom" if "not enough memory" in message or "DefaultCPUAllocator" in message else "error"
            reply = schema.MemoryReply(kind, error=message)
        replies.write(json.dumps(schema.encode(reply)) + "\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--worker"]:
        sys.exit("usage: python -m bench.measure.memory --worker  (serves bench.measure.memory.MemoryWorker)")
    sys.exit(_worker_main())
