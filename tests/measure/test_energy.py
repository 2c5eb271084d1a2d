"""Energy per image through a fake pynvml: a counter that counts, one that updates every 100 ms, none at all.

Time is a fake clock that only the fake step moves, so every figure has a closed form:
a GPU drawing P watts for a step of s seconds on a batch of b images uses P s / b joules
per image, whatever the counter's update period.
"""

from __future__ import annotations

import math
import sys
import types

import pytest

from bench.measure import energy


class FakeNVMLError(Exception):
    def __init__(self, value: int):
        super().__init__({3: "Not Supported", 999: "Unknown Error"}.get(value, str(value)))
        self.value = value


class FakeNotSupported(FakeNVMLError):
    def __init__(self):
        super().__init__(3)


class Clock:
    def __init__(self, start: float = 0.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def fake_pynvml(clock: Clock, *, watts: float, period_s: float = 0.0, error: Exception | None = None):
    """A pynvml whose energy counter (mJ) is ``watts`` x the clock, updated every ``period_s`` (0: at every read)."""
    m = types.ModuleType("pynvml")
    m.calls = []
    m.NVMLError = FakeNVMLError
    m.NVMLError_NotSupported = FakeNotSupported
    m.NVML_ERROR_NOT_SUPPORTED = 3
    m.nvmlInit = lambda: m.calls.append("init")
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetHandleByIndex = lambda i: ("index", i)
    m.nvmlDeviceGetHandleByUUID = lambda u: ("uuid", u)

    def counter(handle):
        m.calls.append("energy")
        if error is not None:
            raise error
        t = clock.now if period_s == 0 else math.floor(clock.now / period_s) * period_s
        return int(round(watts * t * 1000))

    m.nvmlDeviceGetTotalEnergyConsumption = counter
    return m


def stepper(clock: Clock, step_s: float):
    def step():
        clock.now += step_s

    return step


@pytest.fixture
def no_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def run(monkeypatch, module, clock, step_s, batch=32, **kw) -> energy.Energy:
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return energy.measure(stepper(clock, step_s), batch=batch, device="cuda", clock=clock, **kw)


def test_a_counter_that_counts_gives_the_closed_form(monkeypatch, no_cuda_env):
    clock = Clock(3.0)
    nvml = fake_pynvml(clock, watts=300.0)
    e = run(monkeypatch, nvml, clock, step_s=0.010, batch=32)
    assert e.unavailable is None
    assert e.mean_watts == pytest.approx(300.0, rel=1e-6)
    assert e.joules_per_image == pytest.approx(300.0 * 0.010 / 32, rel=1e-6)  # P s / b
    assert e.window_s >= 1.0 and e.steps == pytest.approx(e.window_s / 0.010, abs=1)
    assert nvml.calls[0] == "init" and nvml.calls[-1] == "shutdown"


@pytest.mark.parametrize("start", [0.0, 0.003, 0.051, 0.0995])
def test_a_counter_updated_every_100_ms_gives_the_closed_form_within_one_step(monkeypatch, no_cuda_env, start):
    # Read at arbitrary moments, a 100 ms counter is off by up to a whole period at each end of a 1 s window
    # (up to 20 %); windows that start and end on updates are off by at most one 7 ms step per end (1.4 %).
    clock = Clock(start)
    e = run(monkeypatch, fake_pynvml(clock, watts=450.0, period_s=0.1), clock, step_s=0.007, batch=8)
    assert e.unavailable is None
    expected = 450.0 * 0.007 / 8
    assert e.joules_per_image == pytest.approx(expected, rel=0.015)
    assert e.mean_watts == pytest.approx(450.0, rel=0.015)
    assert e.window_s >= 1.0


def test_slow_steps_still_make_a_window_of_a_second(monkeypatch, no_cuda_env):
    clock = Clock(0.02)
    e = run(monkeypatch, fake_pynvml(clock, watts=200.0, period_s=0.1), clock, step_s=0.35, batch=4)
    assert e.window_s >= 1.0 and e.steps >= 3
    assert e.joules_per_image == pytest.approx(200.0 * 0.35 / 4, rel=0.01)


def test_not_supported_says_why_and_holds_nulls(monkeypatch, no_cuda_env):
    clock = Clock()
    nvml = fake_pynvml(clock, watts=100.0, error=FakeNotSupported())
    e = run(monkeypatch, nvml, clock, step_s=0.01)
    assert (e.joules_per_image, e.mean_watts, e.window_s, e.steps) == (None, None, 0.0, 0)
    assert "Not Supported" in e.unavailable and "Volta" in e.unavailable
    assert nvml.calls[-1] == "shutdown"


def test_another_nvml_error_says_what_nvml_said(monkeypatch, no_cuda_env):
    clock = Clock()
    e = run(monkeypatch, fake_pynvml(clock, watts=100.0, error=FakeNVMLError(999)), clock, step_s=0.01)
    assert e.joules_per_image is None and "Unknown Error" in e.unavailable


def test_a_counter_that_never_moves_is_not_a_measurement(monkeypatch, no_cuda_env):
    clock = Clock()
    e = run(monkeypatch, fake_pynvml(clock, watts=0.0), clock, step_s=0.05, max_wait_s=2.0)
    assert e.joules_per_image is None and "did not change in 2 s" in e.unavailable


def test_without_nvml(monkeypatch, no_cuda_env):
    clock = Clock()
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    e = energy.measure(stepper(clock, 0.01), batch=1, device="cuda", clock=clock)
    assert e.joules_per_image is None and "not installed" in e.unavailable


def test_nvml_that_does_not_start(monkeypatch, no_cuda_env):
    clock = Clock()
    nvml = fake_pynvml(clock, watts=1.0)

    def fail():
        raise FakeNVMLError(999)

    nvml.nvmlInit = fail
    e = run(monkeypatch, nvml, clock, step_s=0.01)
    assert e.joules_per_image is None and e.unavailable.startswith("NVML did not start")


def test_an_old_binding_without_the_call(monkeypatch, no_cuda_env):
    clock = Clock()
    nvml = fake_pynvml(clock, watts=1.0)
    del nvml.nvmlDeviceGetTotalEnergyConsumption
    e = run(monkeypatch, nvml, clock, step_s=0.01)
    assert "no nvmlDeviceGetTotalEnergyConsumption" in e.unavailable


def test_the_cpu_is_not_measured_and_nothing_runs():
    ran = []
    e = energy.measure(lambda: ran.append(1), batch=1, device="cpu")
    assert e.unavailable == energy.CPU_REASON and not ran


def test_the_record_part_round_trips():
    from bench.schema import Energy, decode, encode

    e = Energy(joules_per_image=0.25, mean_watts=400.0, window_s=1.02, steps=51)
    assert decode(Energy, encode(e)) == e
    assert decode(Energy, encode(energy.unavailable("x"))) == energy.unavailable("x")
