"""A case's compile time and energy reach its record and survive results.jsonl (timing and memory stubbed)."""

from __future__ import annotations

import pytest

from bench.measure import compiling, energy, timing
from bench.runs import records, sweep
from bench.schema import Case, CompileTime, Memory, Timing
from helpers import TINY_VIT


class Worker:
    """The CPU memory worker, stubbed: a fixed memory record."""

    def measure(self, case):
        return Memory("cpu_peak_rss", 10**6, 10**9, 10**6, 10**8)


def case(compile_mode: str):
    return Case("vit_s16", 32, 8, 2, "cpu", "float32", "infer", dict(TINY_VIT), compile=compile_mode, label="tiny")


@pytest.fixture
def measured(monkeypatch):
    """timing.measure_case stubbed: one Timing, the CompileTime of compiled cases, an Energy."""

    def measure_case(case, **kwargs):
        mode = compiling.normalise(case.compile)
        ct = None if mode == "none" else CompileTime(mode, 12.5, 0.75, 5)
        used = energy.Energy(joules_per_image=0.125, mean_watts=250.0, window_s=1.05, steps=42)
        return timing.Measured(Timing(0.02, 0.001, 0.02, 3, 1, 2, 1, (0.02,) * 3), ct, used)

    monkeypatch.setattr(timing, "measure_case", measure_case)


def round_trip(tmp_path, record):
    with records.ResultsWriter(tmp_path / "results.jsonl") as writer:
        writer.append(record)
    (back,), problems = records.read_results(tmp_path / "results.jsonl")
    assert not problems
    return back, record.to_json()


def test_a_compiled_case_keeps_its_compile_time_and_energy(tmp_path, measured):
    record = sweep.run_case(case("default"), sweep.RunContext(env=None, roof=1e10), worker=Worker())
    assert record.status == "ok", record.error
    back, line = round_trip(tmp_path, record)
    assert line["compile_time"] == {"mode": "default", "first_call_s": 12.5, "warmup_s": 0.75, "warmup_steps": 5}
    assert line["energy"]["joules_per_image"] == 0.125 and line["energy"]["mean_watts"] == 250.0
    assert back.to_json()["compile_time"] == line["compile_time"] and back.to_json()["energy"] == line["energy"]
    assert compiling.normalise(back.case.compile) == "default"


def test_an_eager_case_has_no_compile_time_and_the_same_key_as_before(tmp_path, measured):
    record = sweep.run_case(case("none"), sweep.RunContext(env=None, roof=1e10), worker=Worker())
    back, line = round_trip(tmp_path, record)
    assert line.get("compile_time") is None and line["energy"]["steps"] == 42
    # records written before compile modes stored "compile": false; an eager case still matches them
    assert '"compile":false' in back.key
