"""Which machine a measurement ran on, and in what state: the fingerprint stored with a run.

:func:`fingerprint` describes the machine: a ``machine_id`` (a short hash of the hashed
host name, the CPU model and, for CUDA, the GPU's UUID), the CPU (model, logical CPUs,
the affinity mask, cgroup CPU and memory limits, the frequency governor) and, for
``device="cuda"``, the GPU as NVML reports it (``pynvml`` from the ``nvidia-ml-py``
package): name, UUID, MIG mode, driver and CUDA version, power limit, current and maximum
clocks, whether clocks are locked, persistence mode, temperature and how many other
processes compute on it.

:func:`gpu_sample` is the part that changes during a run (clocks, temperature, throttle
reasons, other processes); take one before and one after a run and :func:`warnings`
says what makes the timings doubtful: clocks not locked, a shared GPU, throttling.

The host name is never stored, only ``host_sha`` (its SHA-256, truncated). In a container
the host name is usually the container's, so the same physical machine can show up under
several machine ids; for CUDA the GPU UUID in the hash is what really identifies it.

Reading never raises: a field that cannot be read (NVML missing, no driver, permission
denied, an old driver without that call, no cgroup file) is ``None``. Nothing here
imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure.env import cpu_model
from bench.schema import Fingerprint, GpuInfo, GpuSample

CGROUP_ROOT = Path("/sys/fs/cgroup")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")

GPU_FIELDS = tuple(f.name for f in dataclasses.fields(GpuInfo))
SAMPLE_FIELDS = tuple(f.name for f in dataclasses.fields(GpuSample))

# NVML's clock event ("throttle") reason bits (nvml.h, stable across versions).
REASON_GPU_IDLE = 0x1
REASON_APPLICATIONS_CLOCKS = 0x2  # also "user defined clocks": locked or application clocks are in force
REASON_NAMES = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
NOT_THROTTLING = REASON_GPU_IDLE | REASON_APPLICATIONS_CLOCKS
CLOCK_DROP = 0.95  # an SM clock at the end below 95 % of the start's counts as a drop

_NVML_CLOCK_SM, _NVML_CLOCK_MEM, _NVML_TEMPERATURE_GPU = 1, 2, 0  # nvml.h enum values, used if pynvml lacks them


# ---- CPU and host ----------------------------------------------------------------------------------------------


def _host_name() -> str:
    return socket.gethostname() or platform.node()


def sha(text: str, length: int = 16) -> str:
    """SHA-256 of ``text`` as hex, truncated to ``length`` characters."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def machine_id(host_sha: str | None, cpu: str | None, gpu_uuid: str | None = None) -> str:
    """A short stable id of a machine: a hash of the hashed host name, the CPU model and the GPU UUID."""
    return sha("\x1f".join(part or "" for part in (host_sha, cpu, gpu_uuid)), 12)


def machine_of(machine: dict | None, env: dict | None) -> str:
    """The machine id of a record stored as JSON (:func:`bench.schema.machine_key`): its fingerprint's ``machine_id``
    when stored, else "env-" + a hash of its env."""
    from bench import schema

    ident = machine.get("machine_id") if isinstance(machine, dict) else None
    try:
        typed = schema.decode_object(schema.Env, env, "env") if isinstance(env, dict) else None
    except ValueError:
        typed = None
    return schema.machine_key(str(ident) if ident else None, typed)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def parse_cpu_max(text: str | None) -> float | None:
    """cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") as cores, None when unlimited or unreadable."""
    parts = (text or "").split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_memory_max(text: str | None) -> int | None:
    """cgroup ``memory.max`` / v1 ``memory.limit_in_bytes`` in bytes, None when unlimited or unreadable."""
    text = (text or "").strip()
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < 2**62 else None  # v1 writes "unlimited" as a number near 2**63


def _cgroup_paths(text: str) -> dict[str, str]:
    """/proc/self/cgroup as controller -> path ("" for the cgroup v2 line "0::/path")."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) == 3:
            for controller in fields[1].split(","):
                paths[controller] = fields[2].strip()
    return paths


def _up_from(base: Path, relative: str | None) -> list[Path]:
    """``base/relative`` and each of its parents up to ``base`` (a limit anywhere above applies too)."""
    parts = [p for p in (relative or "").split("/") if p and p not in (".", "..")]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _tightest(values) -> Any:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def cgroup_limits(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> dict:
    """``cgroup_cpu_max`` (cores) and ``cgroup_memory_max_bytes`` of this process, None when unlimited.

    Reads cgroup v2 (``cpu.max``, ``memory.max``) in the process's own cgroup and every
    parent, then falls back to cgroup v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
    ``memory.limit_in_bytes``); the tightest limit found wins. ``proc_cgroup`` is the text
    of /proc/self/cgroup (read when None).
    """
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup")) or ""
    paths = _cgroup_paths(proc_cgroup)
    v2 = _up_from(root, paths.get(""))
    cpu = _tightest(parse_cpu_max(_read(d / "cpu.max")) for d in v2)
    memory = _tightest(parse_memory_max(_read(d / "memory.max")) for d in v2)
    if cpu is None:  # cgroup v1
        cpu = _tightest(
            parse_cpu_max(f"{_read(d / 'cpu.cfs_quota_us')} {_read(d / 'cpu.cfs_period_us')}")
            for d in _up_from(root / "cpu", paths.get("cpu"))
        )
    if memory is None:
        memory = _tightest(
            parse_memory_max(_read(d / "memory.limit_in_bytes")) for d in _up_from(root / "memory", paths.get("memory"))
        )
    return {"cgroup_cpu_max": cpu, "cgroup_memory_max_bytes": memory}


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


# ---- GPU (NVML) ------------------------------------------------------------------------------------------------


def _nvml():
    """The pynvml module, initialised, or None (not installed, no driver, no permission)."""
    try:
        import pynvml
    except Exception:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml


def _shutdown(nv) -> None:
    try:
        nv.nvmlShutdown()
    except Exception:
        pass


def _call(nv, name: str, *args) -> Any:
    """``nv.<name>(*args)``, or None when it is missing or fails (NVMLError and anything else)."""
    fn = getattr(nv, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _const(nv, name: str, default: int) -> int:
    value = getattr(nv, name, default)
    return value if isinstance(value, int) else default


def _visible_index(device: str) -> int:
    """The position among visible GPUs of ``cuda`` / ``cuda:N`` (0 when not given)."""
    _, _, number = device.partition(":")
    try:
        return int(number) if number else 0
    except ValueError:
        return 0


def _handle(nv, position: int):
    """NVML handle of the ``position``-th GPU CUDA sees (CUDA_VISIBLE_DEVICES by index or UUID), or None."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if position < len(visible):
        entry = visible[position]
        if entry.isdigit():
            return _call(nv, "nvmlDeviceGetHandleByIndex", int(entry))
        return _call(nv, "nvmlDeviceGetHandleByUUID", entry)
    return _call(nv, "nvmlDeviceGetHandleByIndex", position)


def _mhz_clocks(nv, handle, getter: str) -> tuple[int | None, int | None]:
    sm = _call(nv, getter, handle, _const(nv, "NVML_CLOCK_SM", _NVML_CLOCK_SM))
    mem = _call(nv, getter, handle, _const(nv, "NVML_CLOCK_MEM", _NVML_CLOCK_MEM))
    return sm, mem


def _reasons(nv, handle) -> int | None:
    value = _call(nv, "nvmlDeviceGetCurrentClocksEventReasons", handle)
    if value is None:
        value = _call(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return value if isinstance(value, int) else None


def reason_names(mask: int | None) -> list[str] | None:
    """The names of the set bits of an NVML clock event reason mask (unknown bits as hex)."""
    if mask is None:
        return None
    names = [name for bit, name in REASON_NAMES.items() if mask & bit]
    unknown = mask & ~sum(REASON_NAMES)
    if unknown:
        names.append(hex(unknown))
    return names


def _clocks_locked(nv, handle, reasons: int | None) -> bool | None:
    """Best effort: application clocks away from their default, or the "applications/user clocks" reason set.

    NVML has no getter for ``nvidia-smi --lock-gpu-clocks``; while such a lock limits the
    clock the applications-clocks reason bit is set, which is what is read here.
    """
    app = _call(nv, "nvmlDeviceGetApplicationsClock", handle, _const(nv, "NVML_CLOCK_SM", _NVML_CLOCK_SM))
    default = _call(nv, "nvmlDeviceGetDefaultApplicationsClock", handle, _const(nv, "NVML_CLOCK_SM", _NVML_CLOCK_SM))
    known = False
    if app is not None and default is not None:
        known = True
        if app != default:
            return True
    if reasons is not None:
        known = True
        if reasons & REASON_APPLICATIONS_CLOCKS:
            return True
    return False if known else None


def _other_processes(nv, handle) -> int | None:
    """Compute processes on the GPU other than this one (PIDs as NVML sees them: in a container, the host's)."""
    for name in (
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetComputeRunningProcesses_v2",
    ):
        procs = _call(nv, name, handle)
        if procs is not None:
            me = os.getpid()
            return sum(1 for p in procs if getattr(p, "pid", None) != me)
    return None


def _cuda_version(value: Any) -> str | None:
    if not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


def _sample(nv, handle) -> GpuSample:
    sm, mem = _mhz_clocks(nv, handle, "nvmlDeviceGetClockInfo")
    reasons = _reasons(nv, handle)
    power = _call(nv, "nvmlDeviceGetPowerUsage", handle)
    names = reason_names(reasons)
    return GpuSample(
        sm_clock_mhz=sm,
        mem_clock_mhz=mem,
        temperature_c=_call(
            nv, "nvmlDeviceGetTemperature", handle, _const(nv, "NVML_TEMPERATURE_GPU", _NVML_TEMPERATURE_GPU)
        ),
        power_w=power / 1000 if isinstance(power, (int, float)) else None,
        throttle_reasons=reasons,
        throttle_reason_names=tuple(names) if names is not None else None,
        clocks_locked=_clocks_locked(nv, handle, reasons),
        other_processes=_other_processes(nv, handle),
    )


def gpu_info(device: str = "cuda") -> GpuInfo:
    """The GPU that ``device`` ("cuda" or "cuda:N") runs on, as NVML reports it; every unreadable field None."""
    info: dict[str, Any] = dict.fromkeys(GPU_FIELDS)
    info["index"] = _visible_index(device)
    nv = _nvml()
    if nv is None:
        return GpuInfo(**info)
    try:
        handle = _handle(nv, info["index"])
        info["driver"] = _text(_call(nv, "nvmlSystemGetDriverVersion"))
        info["cuda_version"] = _cuda_version(_call(nv, "nvmlSystemGetCudaDriverVersion"))
        if handle is None:
            return GpuInfo(**info)
        info["name"] = _text(_call(nv, "nvmlDeviceGetName", handle))
        info["uuid"] = _text(_call(nv, "nvmlDeviceGetUUID", handle))
        mig = _call(nv, "nvmlDeviceGetMigMode", handle)
        info["mig_mode"] = bool(mig[0]) if isinstance(mig, (list, tuple)) and mig else None
        limit = _call(nv, "nvmlDeviceGetEnforcedPowerLimit", handle)
        info["power_limit_w"] = limit / 1000 if isinstance(limit, (int, float)) else None
        info["max_sm_clock_mhz"], info["max_mem_clock_mhz"] = _mhz_clocks(nv, handle, "nvmlDeviceGetMaxClockInfo")
        persistence = _call(nv, "nvmlDeviceGetPersistenceMode", handle)
        info["persistence_mode"] = bool(persistence) if isinstance(persistence, int) else None
        sample = _sample(nv, handle)
        for key in ("sm_clock_mhz", "mem_clock_mhz", "clocks_locked", "temperature_c", "other_processes"):
            info[key] = getattr(sample, key)
    finally:
        _shutdown(nv)
    return GpuInfo(**info)


def gpu_sample(handle_or_index: Any = 0) -> GpuSample:
    """What changes during a run: clocks, temperature, power, throttle reasons, locked clocks, other processes.

    ``handle_or_index`` is an NVML device handle or a GPU index (NVML's numbering). Every
    field that cannot be read is None.
    """
    sample = GpuSample()
    nv = _nvml()
    if nv is None:
        return sample
    try:
        handle = handle_or_index
        if isinstance(handle_or_index, int) and not isinstance(handle_or_index, bool):
            handle = _call(nv, "nvmlDeviceGetHandleByIndex", handle_or_index)
        if handle is not None:
            sample = _sample(nv, handle)
    finally:
        _shutdown(nv)
    return sample


def fingerprint(device: str) -> Fingerprint:
    """The machine a run measures on: ids, CPU, cgroup limits, governor and (for CUDA) the GPU; never raises.

    Fields: machine_id, host_sha, cpu_model, cpu_count, cpu_affinity, cgroup_cpu_max,
    cgroup_memory_max_bytes, cpu_governor, gpu (a :class:`bench.schema.GpuInfo` for "cuda"
    devices, else None).
    """
    host = _safe(_host_name)
    host_sha = sha(host) if host else None
    cpu = _safe(cpu_model)
    gpu = _safe(lambda: gpu_info(device)) if str(device).startswith("cuda") else None
    if gpu is None and str(device).startswith("cuda"):
        gpu = GpuInfo()
    limits = _safe(cgroup_limits) or {"cgroup_cpu_max": None, "cgroup_memory_max_bytes": None}
    return Fingerprint(
        machine_id=machine_id(host_sha, cpu, gpu.uuid if gpu else None),
        host_sha=host_sha,
        cpu_model=cpu,
        cpu_count=os.cpu_count(),
        cpu_affinity=_affinity(),
        cgroup_cpu_max=limits["cgroup_cpu_max"],
        cgroup_memory_max_bytes=limits["cgroup_memory_max_bytes"],
        cpu_governor=_read(GOVERNOR),
        gpu=gpu,
    )


def warnings(start: GpuSample | None, end: GpuSample | None) -> list[str]:
    """What makes a run's GPU timings doubtful, from samples before and after it (:func:`gpu_sample`).

    One line each: clocks not locked, other processes on the GPU, throttle reasons other
    than idle (or the clock settings themselves), an SM clock that dropped by more than 5 %.
    Unknown (None) fields say nothing.
    """
    start, end = start or GpuSample(), end or GpuSample()
    out = []
    if start.clocks_locked is False or end.clocks_locked is False:
        out.append("GPU clocks are not locked: timings follow boost clocks and can vary between runs")
    others = [n for n in (start.other_processes, end.other_processes) if isinstance(n, int)]
    if others and max(others) > 0:
        out.append(f"GPU is shared: {max(others)} other compute process(es) on it during the run")
    for when, sample in (("start", start), ("end", end)):
        mask = sample.throttle_reasons
        if isinstance(mask, int) and mask & ~NOT_THROTTLING:
            names = ", ".join(reason_names(mask & ~NOT_THROTTLING) or [])
            out.append(f"GPU throttled at the {when} of the run ({names})")
    before, after = start.sm_clock_mhz, end.sm_clock_mhz
    if (
        isinstance(before, (int, float))
        and isinstance(after, (int, float))
        and before > 0
        and after < before * CLOCK_DROP
    ):
        out.append(f"GPU SM clock dropped from {before:g} to {after:g} MHz during the run")
    return out
