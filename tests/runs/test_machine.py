"""machine.json through bench.schema (MachineFile, MachineRun, Fingerprint): typed reading of the files in results/,
tolerant reading of damaged or foreign files, earlier entries kept when a run is appended.

The reference is each machine.json of results/ parsed as plain JSON.
"""

from __future__ import annotations

import json

import pytest

from bench import schema
from bench.runs import machine
from bench.schema import GpuSample, Machine, MachineFile
from helpers import ROOT

FILES = sorted((ROOT / "results").glob("*/machine.json"))


@pytest.mark.parametrize("path", FILES, ids=[p.parent.name for p in FILES])
def test_the_machine_json_files_of_results_read_typed_with_every_value(path):
    plain = json.loads(path.read_text())
    typed = machine.read(path)
    assert isinstance(typed, MachineFile) and typed.schema == plain["schema"] == machine.SCHEMA
    assert [schema.encode(run) for run in typed.runs] == plain["runs"]
    assert typed.runs[0].fingerprint.machine_id == plain["runs"][0]["fingerprint"]["machine_id"]


@pytest.mark.parametrize("text", ["{broken", "[]", '{"runs": 3}', "", '{"runs": [1]}' + "]" * 40])
def test_an_unreadable_machine_json_is_none_never_an_exception(tmp_path, text):
    path = tmp_path / "machine.json"
    path.write_text(text)
    assert machine.read(path) is None or machine.read(path).runs == ()
    assert machine.read(tmp_path / "missing.json") is None


def test_a_run_this_version_cannot_read_is_left_out_on_reading_and_kept_on_writing(tmp_path, monkeypatch):
    (good,) = json.loads(FILES[0].read_text())["runs"][:1]
    foreign = dict(good, power_cap_w=400.0)  # a key a newer mixerbench might add
    damaged = dict(good, warnings="not a list")
    path = tmp_path / "machine.json"
    path.write_text(json.dumps({"schema": 1, "runs": [foreign, damaged, good, "junk"]}))
    assert [schema.encode(r) for r in machine.read(path).runs] == [good]

    monkeypatch.setattr(machine, "sample", lambda device: GpuSample(clocks_locked=False))
    started = Machine(machine_id="m1", cpu_model="cpu", gpu_start=GpuSample(clocks_locked=False))
    machine.finish(tmp_path, {"cuda": started}, "2026-11-27T00:00:00+00:00", schema.Shard(0, 2, "cli"))
    runs = json.loads(path.read_text())["runs"]
    assert runs[:4] == [foreign, damaged, good, "junk"]  # nothing already there is lost
    new = machine.read(path).runs[-1]
    assert new.device == "cuda" and new.machine_id == "m1" and new.shard == schema.Shard(0, 2, "cli")
    assert new.fingerprint == started.fingerprint and "gpu_start" not in runs[-1]["fingerprint"]
    assert new.warnings == ("GPU clocks are not locked: timings follow boost clocks and can vary between runs",)


def test_report_warnings_come_from_the_typed_runs_and_records():
    data = MachineFile(
        schema=1,
        runs=(
            schema.MachineRun(
                device="cuda",
                machine_id="m1",
                shard=None,
                started=None,
                finished=None,
                gpu_start=None,
                gpu_end=None,
                warnings=("GPU is shared: 2 other compute process(es) on it during the run",),
                fingerprint=schema.Fingerprint(machine_id="m1", gpu=schema.GpuInfo(name="H200")),
            ),
        ),
    )
    assert machine.report_warnings([], data) == [
        "H200 (machine m1): GPU is shared: 2 other compute process(es) on it during the run"
    ]
    assert machine.report_warnings([], None) == []
