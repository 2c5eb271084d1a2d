"""Machine fingerprint: CPU fields here, the GPU through a fake pynvml, nulls instead of errors, run warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from bench.measure import fingerprint as fp
from bench.schema import GpuSample, encode
from helpers import ROOT

UUID = "GPU-8f3c2a10-0000-4000-8000-000000000001"


class FakeNVMLError(Exception):
    pass


def fake_pynvml(**state) -> types.ModuleType:
    """A pynvml stand-in: an H200 at boost clocks, this process on it; ``state`` overrides values."""
    s = {
        "sm": 1980,
        "mem": 3201,
        "max_sm": 1980,
        "max_mem": 3201,
        "app_sm": 1980,
        "default_app_sm": 1980,
        "reasons": 0x0,
        "procs": [os.getpid()],
        "temp": 41,
        "power_mw": 123_000,
        "limit_mw": 700_000,
        "mig": [0, 0],
        "persistence": 1,
    }
    s.update(state)
    m = types.ModuleType("pynvml")
    m.state = s
    m.calls = []
    m.NVMLError = FakeNVMLError
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0
    m.nvmlInit = lambda: m.calls.append("init")
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlSystemGetDriverVersion = lambda: "570.124.06"
    m.nvmlSystemGetCudaDriverVersion = lambda: 12080
    m.nvmlDeviceGetHandleByIndex = lambda i: ("index", i)
    m.nvmlDeviceGetHandleByUUID = lambda u: ("uuid", u)
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H200"  # older bindings return bytes
    m.nvmlDeviceGetUUID = lambda h: UUID
    m.nvmlDeviceGetMigMode = lambda h: list(s["mig"])
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: s["limit_mw"]
    m.nvmlDeviceGetClockInfo = lambda h, t: {1: s["sm"], 2: s["mem"]}[t]
    m.nvmlDeviceGetMaxClockInfo = lambda h, t: {1: s["max_sm"], 2: s["max_mem"]}[t]
    m.nvmlDeviceGetApplicationsClock = lambda h, t: s["app_sm"]
    m.nvmlDeviceGetDefaultApplicationsClock = lambda h, t: s["default_app_sm"]
    m.nvmlDeviceGetPersistenceMode = lambda h: s["persistence"]
    m.nvmlDeviceGetTemperature = lambda h, sensor: s["temp"]
    m.nvmlDeviceGetPowerUsage = lambda h: s["power_mw"]
    m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: s["reasons"]
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        types.SimpleNamespace(pid=p, usedGpuMemory=1) for p in s["procs"]
    ]
    return m


def raising(*args):
    raise FakeNVMLError("Insufficient Permissions")


@pytest.fixture
def nvml(monkeypatch):
    module = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return module


# ---- this machine (CPU) ----------------------------------------------------------------------------------------


def test_cpu_fields_filled_here():
    info = encode(fp.fingerprint("cpu"))
    assert set(info) == {
        "machine_id",
        "host_sha",
        "cpu_model",
        "cpu_count",
        "cpu_affinity",
        "cgroup_cpu_max",
        "cgroup_memory_max_bytes",
        "cpu_governor",
        "gpu",
    }
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert info["cpu_count"] == os.cpu_count() >= 1
    assert info["cpu_affinity"] == len(os.sched_getaffinity(0))
    assert len(info["machine_id"]) == 12 and int(info["machine_id"], 16) >= 0
    assert len(info["host_sha"]) == 16 and int(info["host_sha"], 16) >= 0
    assert info["gpu"] is None
    json.dumps(info, allow_nan=False)  # storable as is


def test_cuda_without_nvml_gives_nulls(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    info = encode(fp.fingerprint("cuda"))
    assert set(info["gpu"]) == set(fp.GPU_FIELDS)
    assert all(info["gpu"][k] is None for k in fp.GPU_FIELDS if k != "index")
    assert info["cpu_model"] and info["machine_id"]
    assert fp.gpu_sample(0) == GpuSample() and encode(GpuSample()) == dict.fromkeys(fp.SAMPLE_FIELDS)


def test_cuda_with_the_real_pynvml_never_raises():
    info = encode(fp.fingerprint("cuda"))  # here: no driver, so nvmlInit fails; on a GPU machine: filled
    assert set(info["gpu"]) == set(fp.GPU_FIELDS)


def test_host_name_never_stored(monkeypatch):
    monkeypatch.setattr(fp, "_host_name", lambda: "build-node-secret-7")
    info = encode(fp.fingerprint("cpu"))
    assert "secret" not in json.dumps(info)
    assert info["host_sha"] == fp.sha("build-node-secret-7")


def test_machine_id_stable_and_tied_to_the_host(monkeypatch):
    first, second = encode(fp.fingerprint("cpu")), encode(fp.fingerprint("cpu"))
    assert first["machine_id"] == second["machine_id"]
    monkeypatch.setattr(fp, "_host_name", lambda: "another-host")
    other = encode(fp.fingerprint("cpu"))
    assert other["host_sha"] != first["host_sha"]
    assert other["machine_id"] != first["machine_id"]
    assert fp.machine_id("a", "cpu") != fp.machine_id("b", "cpu")
    assert fp.machine_id("a", "cpu", "GPU-1") != fp.machine_id("a", "cpu", "GPU-2")
    assert fp.machine_id("a", "cpu", None) == fp.machine_id("a", "cpu")


def test_no_torch_import():
    code = "import sys, bench.measure.fingerprint as f; f.fingerprint('cpu'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT)})


# ---- cgroup and governor files ---------------------------------------------------------------------------------


def test_cgroup_v2(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    (tmp_path / "memory.max").write_text("8589934592\n")
    assert fp.cgroup_limits(tmp_path, "0::/\n") == {"cgroup_cpu_max": 2.5, "cgroup_memory_max_bytes": 8589934592}
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert fp.cgroup_limits(tmp_path, "0::/\n") == {"cgroup_cpu_max": None, "cgroup_memory_max_bytes": None}


def test_cgroup_v1_fallback_and_missing(tmp_path):
    assert fp.cgroup_limits(tmp_path, "0::/\n") == {"cgroup_cpu_max": None, "cgroup_memory_max_bytes": None}
    (tmp_path / "cpu").mkdir()
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("1073741824\n")
    assert fp.cgroup_limits(tmp_path, "0::/\n") == {"cgroup_cpu_max": 0.5, "cgroup_memory_max_bytes": 1073741824}
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "unlimited"
    assert fp.cgroup_limits(tmp_path, "0::/\n") == {"cgroup_cpu_max": None, "cgroup_memory_max_bytes": None}


def test_cgroup_nested_tightest_limit_wins(tmp_path):
    # v2: this process in /kubepods/pod1/c1; the pod's limit (above it) is tighter than the container's
    leaf = tmp_path / "kubepods" / "pod1" / "c1"
    leaf.mkdir(parents=True)
    (leaf / "cpu.max").write_text("400000 100000\n")
    (leaf.parent / "cpu.max").write_text("300000 100000\n")
    (leaf / "memory.max").write_text("max\n")
    (leaf.parent / "memory.max").write_text("4294967296\n")
    limits = fp.cgroup_limits(tmp_path, "0::/kubepods/pod1/c1\n")
    assert limits == {"cgroup_cpu_max": 3.0, "cgroup_memory_max_bytes": 4294967296}
    # v1 (hybrid hosts): per-controller paths
    v1 = tmp_path / "v1"
    (v1 / "memory" / "job" / "7").mkdir(parents=True)
    (v1 / "memory" / "job" / "7" / "memory.limit_in_bytes").write_text("2147483648\n")
    (v1 / "cpu" / "job").mkdir(parents=True)
    (v1 / "cpu" / "job" / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu" / "job" / "cpu.cfs_period_us").write_text("100000\n")
    text = "4:memory:/job/7\n1:cpu,cpuacct:/job\n0::/\n"
    assert fp.cgroup_limits(v1, text) == {"cgroup_cpu_max": 1.5, "cgroup_memory_max_bytes": 2147483648}


@pytest.mark.parametrize(
    "text, cores",
    [("200000 100000", 2.0), ("max 100000", None), ("", None), (None, None), ("garbage", None), ("0 100000", None)],
)
def test_parse_cpu_max(text, cores):
    assert fp.parse_cpu_max(text) == cores


def test_governor(tmp_path, monkeypatch):
    governor = tmp_path / "scaling_governor"
    governor.write_text("performance\n")
    monkeypatch.setattr(fp, "GOVERNOR", governor)
    assert encode(fp.fingerprint("cpu"))["cpu_governor"] == "performance"
    monkeypatch.setattr(fp, "GOVERNOR", tmp_path / "missing")
    assert encode(fp.fingerprint("cpu"))["cpu_governor"] is None


# ---- GPU through a fake pynvml ---------------------------------------------------------------------------------


def test_gpu_filled_from_nvml(nvml):
    info = encode(fp.fingerprint("cuda"))
    gpu = info["gpu"]
    assert gpu == {
        "index": 0,
        "name": "NVIDIA H200",
        "uuid": UUID,
        "mig_mode": False,
        "driver": "570.124.06",
        "cuda_version": "12.8",
        "power_limit_w": 700.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 3201,
        "max_sm_clock_mhz": 1980,
        "max_mem_clock_mhz": 3201,
        "clocks_locked": False,
        "persistence_mode": True,
        "temperature_c": 41,
        "other_processes": 0,
    }
    assert info["machine_id"] == fp.machine_id(info["host_sha"], info["cpu_model"], UUID)
    assert info["machine_id"] != encode(fp.fingerprint("cpu"))["machine_id"]
    assert nvml.calls.count("init") == nvml.calls.count("shutdown") >= 1


def test_visible_devices_pick_the_gpu(nvml, monkeypatch):
    seen = []
    nvml.nvmlDeviceGetUUID = lambda h: seen.append(h) or UUID
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    encode(fp.fingerprint("cuda:1"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc")
    encode(fp.fingerprint("cuda"))
    assert seen == [("index", 1), ("uuid", "GPU-abc")]


def test_one_failing_call_gives_one_null(nvml):
    nvml.nvmlDeviceGetUUID = raising
    nvml.nvmlDeviceGetEnforcedPowerLimit = raising
    del nvml.nvmlDeviceGetMigMode  # an old binding without the call
    gpu = encode(fp.fingerprint("cuda"))["gpu"]
    assert gpu["uuid"] is None and gpu["power_limit_w"] is None and gpu["mig_mode"] is None
    assert gpu["name"] == "NVIDIA H200" and gpu["sm_clock_mhz"] == 1980


def test_every_call_failing_gives_nulls(nvml):
    for name in dir(nvml):
        if name.startswith("nvmlDevice") or name.startswith("nvmlSystem"):
            setattr(nvml, name, raising)
    gpu = encode(fp.fingerprint("cuda"))["gpu"]
    assert all(gpu[k] is None for k in fp.GPU_FIELDS if k != "index")
    assert fp.gpu_sample(0) == GpuSample() and encode(GpuSample()) == dict.fromkeys(fp.SAMPLE_FIELDS)


def test_init_failing_gives_nulls(nvml):
    nvml.nvmlInit = raising  # no driver / permission denied
    gpu = encode(fp.fingerprint("cuda"))["gpu"]
    assert all(gpu[k] is None for k in fp.GPU_FIELDS if k != "index")


def test_clocks_locked(nvml):
    nvml.state["app_sm"] = 1500  # application clocks set away from the default
    assert encode(fp.fingerprint("cuda"))["gpu"]["clocks_locked"] is True
    nvml.state["app_sm"] = 1980
    nvml.state["reasons"] = fp.REASON_APPLICATIONS_CLOCKS  # nvidia-smi --lock-gpu-clocks limiting the clock
    assert encode(fp.fingerprint("cuda"))["gpu"]["clocks_locked"] is True
    nvml.nvmlDeviceGetApplicationsClock = raising
    nvml.nvmlDeviceGetCurrentClocksEventReasons = raising
    assert encode(fp.fingerprint("cuda"))["gpu"]["clocks_locked"] is None  # nothing to tell from


def test_sample_and_older_throttle_call(nvml):
    del nvml.nvmlDeviceGetCurrentClocksEventReasons
    nvml.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x1 | 0x20
    sample = encode(fp.gpu_sample(0))
    assert sample == {
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 3201,
        "temperature_c": 41,
        "power_w": 123.0,
        "throttle_reasons": 0x21,
        "throttle_reason_names": ["gpu_idle", "sw_thermal_slowdown"],
        "clocks_locked": False,
        "other_processes": 0,
    }
    assert encode(fp.gpu_sample(("index", 0))) == sample  # a handle works as well
    assert fp.reason_names(0x401) == ["gpu_idle", "0x400"]  # a bit newer than this table stays visible
    assert fp.reason_names(None) is None


# ---- warnings --------------------------------------------------------------------------------------------------


def good(**change) -> GpuSample:
    sample = {
        "sm_clock_mhz": 1755,
        "mem_clock_mhz": 3201,
        "temperature_c": 40,
        "power_w": 300.0,
        "throttle_reasons": fp.REASON_APPLICATIONS_CLOCKS,
        "throttle_reason_names": ["applications_clocks_setting"],
        "clocks_locked": True,
        "other_processes": 0,
    }
    sample.update(change)
    return GpuSample(**sample)


def test_no_warning_for_a_clean_run():
    assert fp.warnings(good(), good(throttle_reasons=fp.REASON_GPU_IDLE | fp.REASON_APPLICATIONS_CLOCKS)) == []
    assert fp.warnings(GpuSample(), GpuSample()) == []  # unknown says nothing
    assert fp.warnings(None, None) == []


def test_warning_unlocked_clocks():
    (message,) = fp.warnings(good(clocks_locked=False), good(clocks_locked=False))
    assert "not locked" in message


def test_warning_shared_gpu():
    (message,) = fp.warnings(good(), good(other_processes=2))
    assert "shared" in message and "2 other" in message


def test_warning_throttle_reason():
    (message,) = fp.warnings(good(), good(throttle_reasons=0x4 | 0x2))
    assert "throttled at the end" in message and "sw_power_cap" in message


def test_warning_clock_drop(nvml):
    (message,) = fp.warnings(good(sm_clock_mhz=1980), good(sm_clock_mhz=1410))
    assert "dropped from 1980 to 1410 MHz" in message
    assert fp.warnings(good(sm_clock_mhz=1980), good(sm_clock_mhz=1950)) == []  # within 5 %
    # from real (fake) samples: a hot GPU at the end
    start = fp.gpu_sample(0)
    nvml.state.update(sm=1200, reasons=0x40, procs=[os.getpid(), 4242])
    messages = fp.warnings(start, fp.gpu_sample(0))
    assert len(messages) == 4  # unlocked, shared, thermal, drop
    assert all("\n" not in m for m in messages)
