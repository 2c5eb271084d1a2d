"""examples/slurm on a real one-node Slurm cluster, submitted as a user submits them.

Each test starts a cluster of its own (:mod:`slurm_cluster`: munged, slurmctld, slurmd in a
temporary folder, up in about a second), so the tests run side by side. It needs
root and Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs both); without them the
tests skip and say why. The scripts run unchanged: only what their headers document is set:
``OUT``, ``SHARDS``, ``MIXERBENCH``, sbatch options (a one-CPU, 1 GB request for this small CPU
partition, ``--array``, ``--dependency``) and the sweep's arguments after the script. The grid
is tiny (two tiny models, 32..80 px, one thread, one round) so the longest test takes about
two minutes on two shared cores.

- 4-task array + ``afterok`` merge: the merged cases are the grid, each once, and the merged
  report's verdicts decided by exact counts equal an unsharded run's (its timing and memory
  verdicts depend on this noisy machine and are compared by their rows only);
  one element cancelled mid-run cancels the merge (``--kill-on-invalid-dep``); resubmitting
  that element alone with the same ``OUT`` resumes its shard and the merge then succeeds;
  one element requeued mid-run (``scontrol requeue``) resumes from its shard's records;
  nothing is measured twice.
- More tasks than cases: the empty shards still let the merge run.
- ``--array=1-4`` and ``--array=0-6:2`` (with 4 shards) are refused by every task in one
  line before any work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slurm_cluster  # noqa: E402

from helpers import ROOT

SWEEP = ROOT / "examples" / "slurm" / "sweep.sbatch"
MERGE = ROOT / "examples" / "slurm" / "merge.sbatch"
SMALL_PARTITION = ("--cpus-per-task=1", "--mem=1G")  # what a small CPU partition grants; overrides #SBATCH
MODELS, SIZES = ("vit_ti16", "mixer_s16"), (32, 48, 64, 80)


def _grid_args(models=MODELS, sizes=SIZES, min_run_time="0.5", report=False) -> list[str]:
    return [
        "--device",
        "cpu",
        "--threads",
        "1",
        "--models",
        ",".join(models),
        "--resolutions",
        ",".join(map(str, sizes)),
        "--min-run-time",
        min_run_time,
        "--rounds",
        "1",
        *(() if report else ("--no-report",)),
    ]


pytestmark = pytest.mark.skipif(slurm_cluster.unavailable() is not None, reason=str(slurm_cluster.unavailable()))


@pytest.fixture
def cluster(tmp_path_factory):
    """A cluster of the test's own (it starts in about a second): the tests run side by side on xdist's workers."""
    started = time.perf_counter()
    c = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    print(f"slurm cluster up in {time.perf_counter() - started:.1f} s")
    yield c
    slurm_cluster.stop(c)


@pytest.fixture
def user(tmp_path):
    """The user's shell: a working folder to submit from, and MIXERBENCH pointing at this checkout."""
    wrapper = tmp_path / "mixerbench"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m bench "$@"\n')
    wrapper.chmod(0o755)
    return {"MIXERBENCH": str(wrapper), "OUT": str(tmp_path / "sweep"), "PYTHONUNBUFFERED": "1"}


def _sbatch(cluster, cwd: Path, env: dict, *options: str, script: Path, args=()) -> str:
    done = cluster.run("sbatch", "--parsable", *options, str(script), *args, cwd=cwd, env=env)
    return done.stdout.strip().split(";")[0]


def _keys(folder: Path) -> list[str]:
    from bench.runs import records

    path = folder / records.FILENAME
    if not path.is_file():
        return []
    found, problems = records.read_results(path)
    assert problems == []
    return [r.key for r in found]


def _until(what: str, check, timeout: float = 300, cluster=None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{cluster.logs() if cluster else ''}")
        time.sleep(0.2)


def _state(cluster, job: str) -> str:
    return cluster.job(job).get("JobState", "")


def _grid(models=MODELS, sizes=SIZES) -> list:
    from bench.runs import presets

    quick = presets.PRESETS["quick"]
    return presets.build_grid(
        presets.expand(quick, list(models), None),
        list(sizes),
        [None],
        batch=quick.batch,
        device="cpu",
        dtypes=quick.dtypes["cpu"],
        modes=quick.modes,
        threads=1,
    )


def _exact_verdicts(folder: Path) -> tuple[set, dict]:
    fits = json.loads((folder / "fits.json").read_text())
    rows = {(f["label"], f["quantity"], f["axis"], f["per_image"]) for f in fits}
    exact = {
        (f["label"], f["quantity"], f["axis"], f["per_image"]): f["verdict"]
        for f in fits
        if f["decided_by"] == "exact count"
    }
    return rows, exact


@pytest.mark.slow
def test_array_merge_cancel_resubmit_and_requeue(cluster, user, tmp_path):
    from bench.measure import counting
    from bench.runs import shard_cases
    from bench.runs.shard import Shard

    started = time.perf_counter()
    out = Path(user["OUT"])
    # the unsharded reference run of the same grid (and its report), beside the cluster
    reference = tmp_path / "unsharded"
    unsharded = subprocess.Popen(
        [user["MIXERBENCH"], "sweep", *_grid_args(report=True), "--out", str(reference)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        grid = _grid()
        counted: dict[str, int] = {}  # each case's MACs counted once for the four plans

        def macs(case) -> int:
            if case.key not in counted:
                counted[case.key] = counting.count(case).macs
            return counted[case.key]

        plans = {k: shard_cases.plan(grid, Shard(k, 4, "cli"), macs) for k in range(4)}
        two_or_more = [k for k, p in plans.items() if len(p.cases) >= 2]
        assert len(two_or_more) >= 2, {k: len(p.cases) for k, p in plans.items()}
        cancelled, requeued = two_or_more[:2]
        _chain(cluster, user, tmp_path, out, grid, plans, cancelled, requeued, unsharded)
    finally:
        if unsharded.poll() is None:
            unsharded.kill()
            unsharded.wait()
    print(f"array + cancel + resubmit + requeue + merge: {time.perf_counter() - started:.0f} s")


def _chain(cluster, user, tmp_path, out, grid, plans, cancelled, requeued, unsharded) -> None:
    array = _sbatch(cluster, tmp_path, user, *SMALL_PARTITION, script=SWEEP, args=_grid_args(min_run_time="2"))
    merge = _sbatch(
        cluster,
        tmp_path,
        user,
        f"--dependency=afterok:{array}",
        "--kill-on-invalid-dep=yes",
        *SMALL_PARTITION,
        script=MERGE,
    )

    def first_record(k: int) -> bool:
        state = _state(cluster, f"{array}_{k}")
        assert state in ("PENDING", "CONFIGURING", "RUNNING"), f"shard {k} is {state} before its first record was seen"
        return state == "RUNNING" and len(_keys(out / f"shard-{k}")) >= 1

    _until(f"a first record of shard {cancelled}", lambda: first_record(cancelled), cluster=cluster)
    cluster.run("scancel", f"{array}_{cancelled}")
    _until(f"a first record of shard {requeued}", lambda: first_record(requeued), cluster=cluster)
    before_requeue = _keys(out / f"shard-{requeued}")
    assert len(before_requeue) < len(plans[requeued].cases), "the requeued shard finished before the requeue"
    cluster.run("scontrol", "requeue", f"{array}_{requeued}")
    # Slurm holds a requeued job for two minutes (BeginTime); a user in a hurry moves that start forward.
    # Not to "now": slurmd revoked the first run's credential when it killed it, and it refuses a credential
    # issued in the same second as that revocation or before (whole seconds), so an element started again
    # within that second fails ("Job credential revoked"). PENDING (no longer COMPLETING) means the node
    # has killed the first run, so its revocation is in the past; one second later is after it.
    _until("the requeued element pending", lambda: _state(cluster, f"{array}_{requeued}") == "PENDING")
    cluster.run("scontrol", "update", f"JobId={array}_{requeued}", "StartTime=now+1")

    states = {j["ArrayTaskId"]: j for j in cluster.wait(array, timeout=600)}
    assert states[str(cancelled)]["JobState"] == "CANCELLED"
    assert all(states[str(k)]["JobState"] == "COMPLETED" for k in range(4) if k != cancelled), states
    assert states[str(requeued)]["Restarts"] == "1"
    merge_state = _until("the merge cancelled", lambda: _state(cluster, merge) in ("CANCELLED", "COMPLETED", "FAILED"))
    assert _state(cluster, merge) == "CANCELLED", cluster.job(merge)  # --kill-on-invalid-dep
    assert merge_state and not (out / "merged").exists()
    partial = _keys(out / f"shard-{cancelled}")
    assert 1 <= len(partial) < len(plans[cancelled].cases)

    # resubmit the cancelled element alone, same OUT; then the merge again
    again = _sbatch(
        cluster,
        tmp_path,
        user,
        *SMALL_PARTITION,
        f"--array={cancelled}",
        script=SWEEP,
        args=_grid_args(min_run_time="2"),
    )
    merge = _sbatch(
        cluster,
        tmp_path,
        user,
        f"--dependency=afterok:{again}",
        "--kill-on-invalid-dep=yes",
        *SMALL_PARTITION,
        script=MERGE,
    )
    cluster.wait(again, timeout=600)
    (done,) = cluster.wait(merge, timeout=600)
    log = (tmp_path / f"slurm-mixerbench-merge-{merge}.out").read_text()
    assert done["JobState"] == "COMPLETED", log

    # every case of the grid once; every shard measured each of its cases once
    merged = _keys(out / "merged")
    assert sorted(merged) == sorted(c.key for c in grid) and len(set(merged)) == len(merged)
    for k, plan in plans.items():
        keys = _keys(out / f"shard-{k}")
        assert sorted(keys) == sorted(c.key for c in plan.cases), f"shard {k} measured a case twice or lacks one"
    assert _keys(out / f"shard-{cancelled}")[: len(partial)] == partial  # resumed, not restarted
    assert _keys(out / f"shard-{requeued}")[: len(before_requeue)] == before_requeue
    requeue_log = (tmp_path / f"slurm-mixerbench-sweep-{array}_{requeued}.out").read_text()
    assert f"({len(before_requeue)} already in " in requeue_log, requeue_log
    resubmit_log = (tmp_path / f"slurm-mixerbench-sweep-{again}_{cancelled}.out").read_text()
    assert f"({len(partial)} already in " in resubmit_log, resubmit_log
    assert (out / "merged" / "report.md").is_file()

    # the merged report's verdicts against the unsharded run's
    output, _ = unsharded.communicate(timeout=600)
    assert unsharded.returncode == 0, output
    reference = tmp_path / "unsharded"
    merged_rows, merged_exact = _exact_verdicts(out / "merged")
    reference_rows, reference_exact = _exact_verdicts(reference)
    assert merged_rows == reference_rows
    assert merged_exact == reference_exact and merged_exact  # MACs: linear for Mixer, quadratic for ViT
    assert {q: v for (label, q, *_), v in merged_exact.items() if label.startswith("vit")} == {"macs": "quadratic"}


@pytest.mark.slow
def test_more_tasks_than_cases_still_merges(cluster, user, tmp_path):
    started = time.perf_counter()
    args = _grid_args(models=("vit_ti16",), sizes=(32, 48), min_run_time="0.1")
    array = _sbatch(cluster, tmp_path, user, *SMALL_PARTITION, script=SWEEP, args=args)
    merge = _sbatch(
        cluster,
        tmp_path,
        user,
        f"--dependency=afterok:{array}",
        "--kill-on-invalid-dep=yes",
        *SMALL_PARTITION,
        script=MERGE,
    )
    states = cluster.wait(array, timeout=600)
    assert [j["JobState"] for j in states] == ["COMPLETED"] * 4
    (done,) = cluster.wait(merge, timeout=600)
    out = Path(user["OUT"])
    assert done["JobState"] == "COMPLETED", (tmp_path / f"slurm-mixerbench-merge-{merge}.out").read_text()
    assert sorted(_keys(out / "merged")) == sorted(c.key for c in _grid(("vit_ti16",), (32, 48)))
    assert sum(1 for k in range(4) if not _keys(out / f"shard-{k}")) == 2  # two empty shards, merged all the same
    print(f"4 tasks over 2 cases + merge: {time.perf_counter() - started:.0f} s")


@pytest.mark.parametrize("array", ["1-4", "0-6:2"])
def test_an_array_that_is_not_the_shards_is_refused_before_any_work(cluster, user, tmp_path, array):
    job = _sbatch(cluster, tmp_path, user, *SMALL_PARTITION, f"--array={array}", script=SWEEP, args=_grid_args())
    states = cluster.wait(job, timeout=300)
    assert len(states) == 4 and {j["JobState"] for j in states} == {"FAILED"}
    assert {j["ExitCode"] for j in states} == {"2:0"}
    for j in states:
        text = (tmp_path / f"slurm-mixerbench-sweep-{job}_{j['ArrayTaskId']}.out").read_text()
        assert text.count("\n") == 1 and "the task id is the shard index, 0..3" in text, text
    assert not Path(user["OUT"]).exists()  # refused before any work
