"""Energy per image on NVIDIA GPUs, from NVML's total-energy counter.

``nvmlDeviceGetTotalEnergyConsumption`` (nvidia-ml-py's ``pynvml``; Volta and newer)
returns the energy the GPU has used since the driver loaded, in millijoules. The counter
is updated about every 100 ms on recent GPUs, not at every read: a window shorter than
that can read zero, and a window of any length read at arbitrary moments is off by up to
one update period at each end. So :func:`measure`

1. runs the step until the counter changes (the window starts on an update, not between two),
2. keeps running it until at least ``min_window_s`` (1 s) have passed,
3. then until the counter changes again (the window ends on an update too),

and divides the energy between the two updates by the images of the steps run between
them (joules per image) and by the time between them (mean watts). Each end is then off
by at most one step, not one update period.

Where there is nothing to read (the CPU, no nvidia-ml-py, no driver, a GPU older than
Volta: NVML answers "Not Supported") the :class:`Energy` holds nulls and ``unavailable``
says why; it never raises for that.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.schema import Energy

MIN_WINDOW_S = 1.0  # ten updates of a 100 ms counter: the ends' error is at most one step each
MAX_WAIT_S = 5.0  # a counter that does not change in this long (stepping all the while) is not counting
CPU_REASON = "a CPU case (NVML's energy counter is read on NVIDIA GPUs only)"


def unavailable(reason: str) -> Energy:
    """No measurement: null numbers, an empty window, and why."""
    return Energy(joules_per_image=None, mean_watts=None, window_s=0.0, steps=0, unavailable=reason)


class _Unavailable(Exception):
    """Nothing to measure; the message says why (it becomes ``Energy.unavailable``)."""


def _not_supported(nv, exc: BaseException) -> bool:
    cls = getattr(nv, "NVMLError_NotSupported", None)
    if isinstance(cls, type) and isinstance(exc, cls):
        return True
    return getattr(exc, "value", None) == getattr(nv, "NVML_ERROR_NOT_SUPPORTED", 3)


def _open(device: str):
    """(pynvml module, the GPU's handle), NVML initialised; raises _Unavailable with the reason."""
    from bench.measure import fingerprint

    try:
        import pynvml as nv
    except ImportError:
        raise _Unavailable("nvidia-ml-py (pynvml) is not installed") from None
    try:
        nv.nvmlInit()
    except Exception as exc:  # no driver, no permission: whatever NVML says
        raise _Unavailable(f"NVML did not start ({exc or type(exc).__name__})") from None
    handle = fingerprint._handle(nv, fingerprint._visible_index(device))
    if handle is None:
        fingerprint._shutdown(nv)
        raise _Unavailable(f"NVML has no handle for {device}")
    if getattr(nv, "nvmlDeviceGetTotalEnergyConsumption", None) is None:
        fingerprint._shutdown(nv)
        raise _Unavailable("this nvidia-ml-py has no nvmlDeviceGetTotalEnergyConsumption")
    return nv, handle


def _reader(nv, handle) -> Callable[[], int]:
    def read() -> int:
        try:
            return int(nv.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception as exc:
            if _not_supported(nv, exc):
                raise _Unavailable(
                    "this GPU has no total-energy counter (NVML: Not Supported; it needs Volta or newer)"
                ) from None
            raise _Unavailable(f"NVML cannot read the energy counter ({exc or type(exc).__name__})") from None

    return read


def measure(
    step: Callable[[], None],
    *,
    batch: int,
    device: str = "cuda",
    min_window_s: float = MIN_WINDOW_S,
    max_wait_s: float = MAX_WAIT_S,
    clock: Callable[[], float] = time.perf_counter,
) -> Energy:
    """Joules per image and mean watts of ``step`` (one batch of ``batch`` images, synchronised), over a window
    of at least ``min_window_s`` seconds that starts and ends on updates of NVML's counter (module doc).

    ``step`` must be warm (compiled, caches filled): every step run here counts.
    """
    if not str(device).startswith("cuda"):
        return unavailable(CPU_REASON)
    try:
        nv, handle = _open(device)
    except _Unavailable as exc:
        return unavailable(str(exc))
    from bench.measure import fingerprint

    try:
        return _window(step, _reader(nv, handle), batch, min_window_s, max_wait_s, clock)
    except _Unavailable as exc:
        return unavailable(str(exc))
    finally:
        fingerprint._shutdown(nv)


def _next_update(step, read, clock, start_value: int, max_wait_s: float) -> tuple[int, float, int]:
    """Run ``step`` until the counter differs from ``start_value``: (its new value, when that was seen, steps run)."""
    started = clock()
    steps = 0
    while True:
        step()
        steps += 1
        value = read()
        now = clock()
        if value != start_value:
            return value, now, steps
        if now - started > max_wait_s:
            raise _Unavailable(f"the energy counter did not change in {max_wait_s:g} s of steps")


def _window(step, read, batch: int, min_window_s: float, max_wait_s: float, clock) -> Energy:
    e0, t0, _ = _next_update(step, read, clock, read(), max_wait_s)  # the window starts on an update
    steps = 0
    while clock() - t0 < min_window_s:
        step()
        steps += 1
    e1, t1, more = _next_update(step, read, clock, read(), max_wait_s)  # ... and ends on one
    steps += more
    joules = (e1 - e0) / 1000.0
    window = t1 - t0
    if joules < 0:
        raise _Unavailable("the energy counter went backwards (driver reloaded?)")
    return Energy(
        joules_per_image=joules / (steps * batch),
        mean_watts=joules / window if window > 0 else None,
        window_s=window,
        steps=steps,
    )
