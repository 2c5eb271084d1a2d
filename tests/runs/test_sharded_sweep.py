"""Sharded sweeps: --shard and the scheduler's environment, per-shard resume, machine fingerprints, merged reports."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cli
from bench.runs import presets, records, shard_cases
from bench.runs.shard import Shard
from bench.schema import Case, Machine
from helpers import ROOT, one_line_error, run_bench

SCHEDULER_VARS = (
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "MIXERBENCH_SHARD_COUNT",
)
MODELS, SIZES = ["vit_ti16", "mixer_s16"], [32, 48, 64]
SMALL = [
    "sweep",
    "--models",
    ",".join(MODELS),
    "--resolutions",
    ",".join(map(str, SIZES)),
    "--min-run-time",
    "0.01",
    "--threads",
    "1",
    "--device",
    "cpu",
]


def small_grid() -> list[Case]:
    """The grid SMALL asks for, built with the presets functions (not by running it)."""
    quick = presets.PRESETS["quick"]
    return presets.build_grid(
        presets.expand(quick, MODELS, None),
        SIZES,
        [None],
        batch=quick.batch,
        device="cpu",
        dtypes=quick.dtypes["cpu"],
        modes=quick.modes,
        threads=1,
    )


@pytest.fixture
def no_scheduler(monkeypatch):
    for name in SCHEDULER_VARS:
        monkeypatch.delenv(name, raising=False)


# ---- bad shards ------------------------------------------------------------------------------------------------


def test_the_command_line_shard_wins_over_the_environment(tmp_path, monkeypatch, no_scheduler, stub_measuring, capsys):
    """`sbatch --array=2 sweep.sbatch` re-runs shard 2 of 4 alone; Slurm then says "task 0 of 1" (seen on slurm 22.05)."""
    for name, value in dict(ID="2", MIN="2", MAX="2", COUNT="1", STEP="1").items():
        monkeypatch.setenv(f"SLURM_ARRAY_TASK_{name}", value)
    assert cli.main([*SMALL, "--shard", "2/4", "--no-report", "--out", str(tmp_path / "out")]) == 0
    assert "shard 2/4 (cli): " in capsys.readouterr().out
    mine = {c.key for c in shard_cases.plan(small_grid(), Shard(2, 4, "cli")).cases}
    assert {c.key for c in stub_measuring} == mine


@pytest.mark.parametrize(
    "argv, env, words",
    [
        (["--shard", "3/3"], {}, "0..2"),
        (["--shard=-1/3"], {}, "0..2"),
        (["--shard", "1of3"], {}, "K/N"),
        ([], {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3"}, "environment"),
        ([], {"JOB_COMPLETION_INDEX": "0"}, "MIXERBENCH_SHARD_COUNT"),
        (["--peers", "--shard", "0/2"], {}, "--peers"),
        (["--shard", "0/1000000000"], {}, "at most 100000"),
        ([], {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "1000000000"}, "at most 100000"),
        ([], {"JOB_COMPLETION_INDEX": "0", "MIXERBENCH_SHARD_COUNT": "10000000000000000000000"}, "at most 100000"),
    ],
)
def test_bad_shards_are_one_line_exit_2(argv, env, words, tmp_path, monkeypatch, no_scheduler, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main([*SMALL, *argv, "--out", str(tmp_path / "out")]) == 2
    err = one_line_error(capsys)
    assert "--shard" in err and words in err
    assert not (tmp_path / "out").exists()


# ---- the plan --------------------------------------------------------------------------------------------------


def fake_macs(case: Case) -> int:
    return case.img_size**2 * (3 if case.model.startswith("vit") else 1)


def test_shards_partition_the_grid_whatever_the_order():
    quick = presets.PRESETS["quick"]
    grid = presets.build_grid(
        quick.entries,
        quick.resolutions,
        quick.patch_sizes,
        batch=1,
        device="cpu",
        dtypes=["float32"],
        modes=["infer", "train"],
    )
    keys = {c.key for c in grid}
    for count in (1, 2, 3, 7, len(grid) + 2):
        plans = [shard_cases.plan(grid, Shard(k, count, "cli"), fake_macs) for k in range(count)]
        chosen = [c.key for p in plans for c in p.cases]
        assert sorted(chosen) == sorted(keys)  # every case exactly once
        assert sum(p.share for p in plans) == pytest.approx(1.0)
        assert all(p.grid_cases == len(grid) for p in plans)
        shuffled = random.Random(count).sample(grid, len(grid))
        again = [shard_cases.plan(shuffled, Shard(k, count, "slurm"), fake_macs) for k in range(count)]
        assert [{c.key for c in p.cases} for p in again] == [{c.key for c in p.cases} for p in plans]
    costs = shard_cases.costs(grid, fake_macs)
    three = [shard_cases.plan(grid, Shard(k, 3, "cli"), fake_macs) for k in range(3)]
    loads = [sum(costs[c.key] for c in p.cases) for p in three]
    assert max(loads) - min(loads) <= max(costs.values())  # balanced by cost, not by count


def test_cost_is_macs_times_batch_and_max_counts_as_one():
    cases = [
        Case("mixer_s16", 32, None, 8),
        Case("mixer_s16", 32, None, "max"),
        Case("mixer_s16", 32, None, 1, mode="train"),
    ]
    costs = shard_cases.costs(cases, lambda c: 1000)
    assert [costs[c.key] for c in cases] == [8000, 1000, 1000]
    broken = shard_cases.costs(cases + [Case("vit_ti16", 48)], lambda c: 1 / 0 if c.model == "vit_ti16" else 10)
    assert broken[Case("vit_ti16", 48).key] == 10  # uncountable: the median of the others


def test_records_name_their_shard_and_machine_and_old_ones_still_load():
    old = json.loads((ROOT / "results" / "cpu-quick" / "results.jsonl").read_text().splitlines()[0])
    record = records.Record.from_json(old)
    assert record.shard is None and record.machine is None and "shard" not in record.extra
    assert record.to_json() == old  # nothing added to an old record
    new = dict(old, shard={"index": 1, "count": 3, "source": "slurm"}, machine={"machine_id": "abc", "gpu": None})
    again = records.Record.from_json(json.loads(json.dumps(records.Record.from_json(new).to_json())))
    assert again.shard == Shard(1, 3, "slurm") and again.machine == Machine(machine_id="abc") and again.extra == {}
    with pytest.raises(ValueError, match="shard: expected an object, got '1/3'"):
        records.Record.from_json(dict(old, shard="1/3"))


# ---- resume per shard (measurements replaced by a stub: this checks which cases run) -----------------------------


def keys_in(folder: Path) -> list[str]:
    found, problems = records.read_results(folder / records.FILENAME)
    assert problems == []
    return [r.key for r in found]


def test_resume_of_one_shard_runs_only_its_missing_cases(tmp_path, no_scheduler, stub_measuring, capsys):
    out = tmp_path / "shard0"
    argv = [*SMALL, "--shard", "0/2", "--no-report", "--out", str(out)]
    mine = {c.key for c in shard_cases.plan(small_grid(), Shard(0, 2, "cli")).cases}
    assert 0 < len(mine) < len(small_grid())

    assert cli.main(argv) == 0
    assert {c.key for c in stub_measuring} == mine and len(stub_measuring) == len(mine)
    printed = capsys.readouterr().out
    assert (
        f"shard 0/2 (cli): {len(mine)} of {len(small_grid())} cases" in printed and "of the predicted cost" in printed
    )
    found, _ = records.read_results(out / records.FILENAME)
    assert all(r.shard == Shard(0, 2, "cli") for r in found)

    lines = (out / records.FILENAME).read_text().splitlines(keepends=True)
    dropped = json.loads(lines[-1])
    (out / records.FILENAME).write_text("".join(lines[:-1]))  # as if killed before the last case
    stub_measuring.clear()
    assert cli.main(argv + ["--resume"]) == 0
    assert [c.key for c in stub_measuring] == [records.case_key(dropped["case"])]  # only the missing one
    assert sorted(keys_in(out)) == sorted(mine)

    stub_measuring.clear()
    assert (
        cli.main([*SMALL, "--shard", "1/2", "--no-report", "--resume", "--out", str(out)]) == 2
    )  # another shard's folder
    assert "one --out folder per shard" in one_line_error(capsys)
    assert stub_measuring == []


def test_an_empty_shard_leaves_an_empty_sweep_folder(tmp_path, no_scheduler, stub_measuring, capsys):
    out = tmp_path / "empty"
    count = len(small_grid()) + 1
    assert cli.main([*SMALL, "--shard", f"{count - 1}/{count}", "--out", str(out)]) == 0
    assert stub_measuring == [] and (out / records.FILENAME).read_text() == ""
    assert "0 of 6 cases" in capsys.readouterr().out


# ---- merging shards: a complete set of one count, or a refusal that names what is wrong (issue 19, class 6) ----


@pytest.fixture
def quick_shards(stub_measuring, monkeypatch):
    """stub_measuring, and no timing rounds before the cases (these tests check which shards a merge takes)."""
    from bench.measure import cost
    from bench.runs import rounds

    monkeypatch.setattr(rounds, "pretime", lambda todo, config, log: ((case, None) for case in todo))
    monkeypatch.setattr(cost, "copy_bandwidth", lambda device, **kwargs: 1e9)
    return stub_measuring


def _shards(tmp_path, count: int, only=None) -> list[Path]:
    folders = []
    for k in range(count) if only is None else only:
        folder = tmp_path / f"of{count}" / f"shard-{k}"
        assert cli.main([*SMALL, "--shard", f"{k}/{count}", "--no-report", "--out", str(folder)]) == 0
        folders.append(folder)
    return folders


def _merge(capsys, out: Path, *folders: Path, extra=()) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["merge", str(out), *map(str, folders), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_merge_takes_a_complete_set_and_an_empty_shard_counts_as_done(tmp_path, no_scheduler, quick_shards, capsys):
    count = len(small_grid()) + 2  # more shards than cases: two shards run nothing
    folders = _shards(tmp_path, count)
    assert (folders[-1] / records.FILENAME).read_text() == ""  # empty, but its shard.json says it ran
    code, out, err = _merge(capsys, tmp_path / "merged", *folders)
    assert code == 0 and err == "", err
    assert sorted(keys_in(tmp_path / "merged")) == sorted(c.key for c in small_grid())


def test_merge_names_missing_shards_and_refuses(tmp_path, no_scheduler, quick_shards, capsys):
    folders = _shards(tmp_path, 4, only=[0, 2])
    code, out, err = _merge(capsys, tmp_path / "merged", *folders)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "shards 1, 3 of 4 missing" in err and "--incomplete" in err
    assert not (tmp_path / "merged").exists()
    code, out, err = _merge(capsys, tmp_path / "merged", *folders, extra=["--incomplete"])
    assert code == 0 and "warning: shards 1, 3 of 4 missing" in err and "warning" not in out


def test_merge_names_shards_of_another_count(tmp_path, no_scheduler, quick_shards, capsys):
    threes, two = _shards(tmp_path, 3), _shards(tmp_path, 2, only=[1])
    code, _, err = _merge(capsys, tmp_path / "merged", *threes, *two)
    assert code == 2 and "shards of another count than 3" in err and f"{two[0]} (shard 1/2)" in err, err


def test_merge_names_an_unfinished_shard(tmp_path, no_scheduler, quick_shards, capsys):
    folders = _shards(tmp_path, 2)
    path = folders[1] / records.FILENAME
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # cancelled before its last case
    code, _, err = _merge(capsys, tmp_path / "merged", *folders)
    assert code == 2 and f"shard 1/2 ({folders[1]}) is incomplete: 1 of its {len(lines)} cases have no record" in err


def test_shards_written_before_markers_are_told_by_their_records(tmp_path, no_scheduler, quick_shards, capsys):
    folders = _shards(tmp_path, 3)
    for folder in folders:
        (folder / shard_cases.MARKER).unlink()
    assert _merge(capsys, tmp_path / "all", *folders)[0] == 0
    code, _, err = _merge(capsys, tmp_path / "two", *folders[:2])
    assert code == 2 and "shard 2 of 3 missing" in err


def test_a_folder_of_another_shard_is_refused_by_its_marker(tmp_path, no_scheduler, quick_shards, capsys):
    count = len(small_grid()) + 1
    (empty,) = _shards(tmp_path, count, only=[count - 1])
    capsys.readouterr()
    assert cli.main([*SMALL, "--shard", f"0/{count}", "--no-report", "--resume", "--out", str(empty)]) == 2
    assert f"is shard {count - 1}/{count}" in one_line_error(capsys)


# ---- machine fingerprints ----------------------------------------------------------------------------------------


def test_every_record_carries_the_fingerprint_and_machine_json_has_the_run(tmp_path, no_scheduler, stub_measuring):
    from bench.runs import machine

    out = tmp_path / "fp"
    assert cli.main([*SMALL, "--no-report", "--out", str(out)]) == 0
    found, _ = records.read_results(out / records.FILENAME)
    assert len(found) == 6
    ids = {r.machine.machine_id for r in found}
    assert len(ids) == 1 and all(r.machine.cpu_model and r.machine.gpu is None for r in found)
    assert all(r.machine.gpu_start is None for r in found)  # CPU: null
    assert all('"gpu_start": null' in line for line in (out / records.FILENAME).read_text().splitlines())
    assert all(r.shard is None and r.to_json()["shard"] is None for r in found)  # unsharded: null
    data = json.loads((out / machine.FILENAME).read_text())
    (run,) = data["runs"]
    assert run["machine_id"] in ids and run["gpu_start"] is None and run["gpu_end"] is None and run["warnings"] == []
    assert run["started"] <= run["finished"] and run["fingerprint"]["machine_id"] in ids
    from bench.runs.merge import machine_of

    assert {machine_of(r) for r in found} == ids  # merge tells machines apart by this id


def test_cuda_samples_and_their_warnings_reach_machine_json_and_the_report(tmp_path, monkeypatch):
    import dataclasses
    import shutil

    from bench import report
    from bench.measure import fingerprint
    from bench.runs import machine
    from bench.schema import GpuSample, encode

    assert machine.sample("cuda") is not None  # no GPU here: every field null, never an error
    assert machine.sample("cpu") is None
    start = GpuSample(clocks_locked=False, other_processes=2, sm_clock_mhz=1980, throttle_reasons=0)
    end = dataclasses.replace(start, sm_clock_mhz=1500, throttle_reasons=0x8, other_processes=0)
    samples = iter([start, end])
    monkeypatch.setattr(machine, "sample", lambda device: next(samples))
    m = machine.start("cuda")
    assert m.gpu_start == start and set(encode(m.gpu)) == set(fingerprint.GPU_FIELDS)
    folder = tmp_path / "h200"
    folder.mkdir()
    rows = (ROOT / "results" / "h200-paper" / "results.jsonl").read_text().splitlines()[:6]
    lines = (json.dumps(dict(json.loads(r), machine=encode(m))) + "\n" for r in rows)
    (folder / "results.jsonl").write_text("".join(lines))
    machine.finish(folder, {"cuda": m}, machine.now())
    run = json.loads((folder / machine.FILENAME).read_text())["runs"][0]
    assert run["gpu_start"] == encode(start) and run["gpu_end"] == encode(end)
    assert any("not locked" in w for w in run["warnings"]) and any("shared" in w for w in run["warnings"])
    assert any("throttled at the end" in w and "hw_slowdown" in w for w in run["warnings"])
    assert any("dropped from 1980 to 1500" in w for w in run["warnings"])

    md, _, _, warnings = report.build(folder)
    section = md[md.index("## Warnings") :]
    for words in ("not locked", "2 other compute process", "throttled at the end", "dropped"):
        assert words in section
    assert len([w for w in warnings if "not locked" in w]) == 1  # records and machine.json: said once

    (folder / machine.FILENAME).write_text("{broken")  # an unreadable machine.json: the records still warn
    md, _, _, _ = report.build(folder)
    assert "not locked" in md and "throttled at the end" not in md
    clean = tmp_path / "old"
    clean.mkdir()
    shutil.copy(ROOT / "results" / "h200-paper" / "results.jsonl", clean / "results.jsonl")
    assert "## Warnings" not in report.build(clean)[0]  # old records: no fingerprint, no warning


# ---- end to end: a Slurm job array of three tasks, merged and reported --------------------------------------------


def subprocess_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SCHEDULER_VARS}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return dict(env, **extra)


@pytest.mark.slow  # about 20 s; the wall-time bound below is 7x that, so it shares the cores (not `timing`)
def test_three_slurm_shards_merge_into_the_whole_grid(tmp_path):
    started = time.perf_counter()
    folders = [tmp_path / f"task{k}" for k in range(3)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench", *SMALL, "--no-report", "--out", str(folder)],
            cwd=ROOT,
            env=subprocess_env(SLURM_ARRAY_TASK_ID=str(k), SLURM_ARRAY_TASK_COUNT="3"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k, folder in enumerate(folders)
    ]
    outputs = [p.communicate(timeout=150) for p in procs]
    for k, (p, (stdout, stderr)) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, stderr
        assert f"shard {k}/3 (slurm): " in stdout and " of 6 cases" in stdout

    grid = {c.key for c in small_grid()}
    per_shard = [keys_in(folder) for folder in folders]
    flat = [key for keys in per_shard for key in keys]
    assert len(flat) == len(set(flat)) == len(grid)  # nothing measured twice
    assert all(per_shard)  # six cases over three shards: each got some
    for k, folder in enumerate(folders):
        found, _ = records.read_results(folder / records.FILENAME)
        assert all(r.shard == Shard(k, 3, "slurm") and r.status == "ok" for r in found)
        assert json.loads((folder / "machine.json").read_text())["runs"][0]["shard"]["index"] == k

    merged = tmp_path / "merged"
    done = run_bench("merge", merged, *folders, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    assert "machines: 1 " in done.stdout
    assert set(keys_in(merged)) == grid and len(keys_in(merged)) == len(grid)  # the union is the unsharded grid

    done = run_bench("report", merged, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    md = (merged / "report.md").read_text()
    assert "6 cases from `results.jsonl`: 6 ok." in md and "## Scaling fits" in md
    assert "Devices side by side" not in md  # one machine
    assert time.perf_counter() - started < 150
