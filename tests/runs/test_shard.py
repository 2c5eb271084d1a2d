"""Shards: "K/N" parsing, Slurm and Kubernetes environments, and the cost-balanced assignment."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys

import pytest

from bench.runs import shard as sh
from bench.schema import encode
from helpers import PYTHONPATH, ROOT


def grid_costs() -> list[tuple[str, float]]:
    """A skewed grid as a sweep makes it: 4 models x 5 resolutions, cost ~ tokens^2 (attention-like)."""
    items = []
    for model in ("mixer", "vit_fused", "vit_explicit", "resnet"):
        for res in (64, 96, 128, 160, 192):
            tokens = (res // 4) ** 2
            items.append((f"{model}@{res}", tokens**2 / 1e6))
    return items


def loads(assignment: dict[str, int], items, count: int) -> list[float]:
    cost = dict(items)
    out = [0.0] * count
    for key, index in assignment.items():
        out[index] += cost[key]
    return out


# ---- parse / Shard ----------------------------------------------------------------------------------------------


def test_parse_and_to_json():
    s = sh.parse("2/5")
    assert s == sh.Shard(2, 5, "cli")
    assert encode(s) == {"index": 2, "count": 5, "source": "cli"}
    assert str(s) == "2/5"
    assert sh.parse(" 0 / 1 ") == sh.Shard(0, 1, "cli")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.index = 3  # frozen


@pytest.mark.parametrize(
    "text, words",
    [
        ("a/4", "not of the form K/N"),
        ("1.5/4", "not of the form K/N"),
        ("1", "not of the form K/N"),
        ("", "not of the form K/N"),
        ("1/2/3", "not of the form K/N"),
        ("4/4", "index must be in 0..3"),
        ("-1/4", "index must be in 0..3"),
        ("0/0", "count must be at least 1"),
        ("0/-2", "count must be at least 1"),
    ],
)
def test_parse_errors_are_one_line(text, words):
    with pytest.raises(ValueError) as info:
        sh.parse(text)
    message = str(info.value)
    assert words in message
    assert "\n" not in message and "--" not in message  # one line, no command-line flag


def test_shard_validates_itself():
    with pytest.raises(ValueError, match="source"):
        sh.Shard(0, 2, "pbs")
    with pytest.raises(ValueError, match="index must be"):
        sh.Shard(2, 2, "cli")
    with pytest.raises(ValueError, match="integer"):
        sh.Shard(True, 2, "cli")


# ---- environment ------------------------------------------------------------------------------------------------


def test_no_scheduler_means_no_shard():
    assert sh.from_environment({}) is None
    assert sh.from_environment({"MIXERBENCH_SHARD_COUNT": "4", "HOME": "/x"}) is None
    assert sh.resolve(None, {}) is None


def test_slurm_count_variant():
    assert sh.from_environment({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == sh.Shard(3, 8, "slurm")


def test_slurm_min_max_variant():
    # sbatch --array=1-8: IDs 1..8 map to shards 0..7
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "8"}
    assert sh.from_environment(env) == sh.Shard(0, 8, "slurm")
    env["SLURM_ARRAY_TASK_ID"] = "8"
    assert sh.from_environment(env) == sh.Shard(7, 8, "slurm")
    # what Slurm really sets: all of them, step 1, count consistent
    full = dict(env, SLURM_ARRAY_TASK_ID="5", SLURM_ARRAY_TASK_COUNT="8", SLURM_ARRAY_TASK_STEP="1")
    assert sh.from_environment(full) == sh.Shard(4, 8, "slurm")


def test_kubernetes_indexed_job():
    env = {"JOB_COMPLETION_INDEX": "2", "MIXERBENCH_SHARD_COUNT": "3"}
    assert sh.from_environment(env) == sh.Shard(2, 3, "kubernetes")


BAD_ENVIRONMENTS = [
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"}, "is not an integer"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "four"}, "is not an integer"),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "index must be in 0..3"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "0"}, "count must be at least 1"),
    ({"SLURM_ARRAY_TASK_ID": "0"}, "neither SLURM_ARRAY_TASK_COUNT"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0"}, "SLURM_ARRAY_TASK_MAX is not"),
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "8"}, "outside"),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "2"}, "below"),
    # --array=0-9:2 -> Slurm sets STEP=2 and COUNT=5 over 0..8
    (
        {
            "SLURM_ARRAY_TASK_ID": "2",
            "SLURM_ARRAY_TASK_MIN": "0",
            "SLURM_ARRAY_TASK_MAX": "8",
            "SLURM_ARRAY_TASK_COUNT": "5",
            "SLURM_ARRAY_TASK_STEP": "2",
        },
        "with a step",
    ),
    # a step seen only through COUNT (no STEP variable), or a list --array=1,3,7
    (
        {
            "SLURM_ARRAY_TASK_ID": "3",
            "SLURM_ARRAY_TASK_MIN": "1",
            "SLURM_ARRAY_TASK_MAX": "7",
            "SLURM_ARRAY_TASK_COUNT": "3",
        },
        "not supported",
    ),
    ({"JOB_COMPLETION_INDEX": "1"}, "MIXERBENCH_SHARD_COUNT is not"),
    ({"JOB_COMPLETION_INDEX": "1", "MIXERBENCH_SHARD_COUNT": ""}, "is not an integer"),
    ({"JOB_COMPLETION_INDEX": "one", "MIXERBENCH_SHARD_COUNT": "2"}, "is not an integer"),
    ({"JOB_COMPLETION_INDEX": "2", "MIXERBENCH_SHARD_COUNT": "2"}, "index must be in 0..1"),
    ({"JOB_COMPLETION_INDEX": "0", "MIXERBENCH_SHARD_COUNT": "0"}, "count must be at least 1"),
    (
        {
            "JOB_COMPLETION_INDEX": "0",
            "MIXERBENCH_SHARD_COUNT": "2",
            "SLURM_ARRAY_TASK_ID": "1",
            "SLURM_ARRAY_TASK_COUNT": "2",
        },
        "Slurm says shard 1/2 but Kubernetes",
    ),
]


@pytest.mark.parametrize("environ, words", BAD_ENVIRONMENTS)
def test_bad_environments_are_one_line_errors(environ, words):
    with pytest.raises(ValueError) as info:
        sh.from_environment(environ)
    message = str(info.value)
    assert words in message
    assert "\n" not in message and "--" not in message
    with pytest.raises(ValueError):  # resolve sees the same problem without a command-line value
        sh.resolve(None, environ)
    assert sh.resolve("0/2", environ) == sh.Shard(0, 2, "cli")  # with one, the environment is not read


def test_resolve_the_command_line_wins_and_the_environment_is_not_read():
    slurm = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert sh.resolve(None, slurm) == sh.Shard(1, 4, "slurm")
    assert sh.resolve("1/4", slurm) == sh.Shard(1, 4, "cli")
    assert sh.resolve("3/4", slurm) == sh.Shard(3, 4, "cli")  # the index is the command line's
    assert sh.resolve("1/3", slurm) == sh.Shard(1, 3, "cli")
    # `sbatch --array=2 sweep.sbatch` re-runs shard 2 of 4 alone: Slurm says task 0 of 1
    resubmitted = {
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_ARRAY_TASK_MIN": "2",
        "SLURM_ARRAY_TASK_MAX": "2",
        "SLURM_ARRAY_TASK_COUNT": "1",
        "SLURM_ARRAY_TASK_STEP": "1",
    }
    assert sh.resolve("2/4", resubmitted) == sh.Shard(2, 4, "cli")
    assert sh.resolve(None, resubmitted) == sh.Shard(0, 1, "slurm")


def test_resolve_refuses_a_malformed_command_line():
    with pytest.raises(ValueError, match="not of the form"):
        sh.resolve("x", {})


# ---- assign / select --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 25])
def test_every_key_in_exactly_one_shard(count):
    items = grid_costs()
    keys = {k for k, _ in items}
    shards = [sh.select(items, sh.Shard(i, count, "cli")) for i in range(count)]
    assert set().union(*shards) == keys
    assert sum(len(s) for s in shards) == len(keys)  # disjoint
    assignment = sh.assign(items, count)
    assert set(assignment) == keys and set(assignment.values()) <= set(range(count))


def test_deterministic_under_permutation():
    items = grid_costs() + [(f"tie{i}", 1.0) for i in range(9)]  # equal costs: order must not matter either
    reference = sh.assign(items, 4)
    rng = random.Random(0)
    for _ in range(20):
        shuffled = list(items)
        rng.shuffle(shuffled)
        assert sh.assign(shuffled, 4) == reference
    assert sh.assign(dict(items), 4) == reference  # a mapping gives the same


def test_deterministic_across_processes():
    # every task of a job array computes the assignment on its own: no hash seed may leak in
    code = (
        "from bench.runs import shard; from tests.runs.test_shard import grid_costs; "
        "print(sorted(shard.assign(grid_costs(), 3).items()))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": PYTHONPATH},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    assert str(sorted(sh.assign(grid_costs(), 3).items())) == runs.pop().strip()


def test_balanced_by_cost_and_within_the_lpt_bound():
    items = grid_costs()
    count = 5
    costs = [c for _, c in items]
    lpt = loads(sh.assign(items, count), items, count)
    assert max(lpt) <= sum(costs) / count + max(costs)
    # round-robin by count over the grid order gives each shard one resolution: the 192 px cases all on one
    robin = loads({k: i % count for i, (k, _) in enumerate(items)}, items, count)
    mean = sum(costs) / count
    assert max(robin) / mean > 2.5
    assert max(lpt) / mean < 1.25
    assert max(lpt) < max(robin) / 2


def test_lpt_bound_on_random_costs():
    rng = random.Random(1)
    for _trial in range(50):
        items = [(f"k{i}", rng.paretovariate(1.2)) for i in range(rng.randint(1, 60))]
        count = rng.randint(1, 9)
        costs = [c for _, c in items]
        assert max(loads(sh.assign(items, count), items, count)) <= sum(costs) / count + max(costs) + 1e-9


def test_ties_go_to_the_lowest_index():
    assert sh.assign([("a", 1.0), ("b", 1.0), ("c", 1.0)], 3) == {"a": 0, "b": 1, "c": 2}
    assert sh.assign([("big", 10.0), ("x", 1.0), ("y", 1.0)], 2) == {"big": 0, "x": 1, "y": 1}
    assert sh.assign([], 3) == {}


@pytest.mark.parametrize(
    "items, count, words",
    [
        ([("a", 1.0)], 0, "1..100000"),
        ([("a", 1.0)], 1.5, "1..100000"),
        ([("a", 1.0), ("a", 2.0)], 2, "more than once"),
        ([("a", -1.0)], 2, "finite number >= 0"),
        ([("a", float("nan"))], 2, "finite number >= 0"),
        ([("a", "3")], 2, "finite number >= 0"),
    ],
)
def test_assign_errors(items, count, words):
    with pytest.raises(ValueError) as info:
        sh.assign(items, count)
    assert words in str(info.value) and "\n" not in str(info.value)


# ---- bounds: no work proportional to the shard count (issue 19, class 3) ----------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("0/1000000000", "at most 100000"),
        ("0/100001", "at most 100000"),
        ("0/" + "9" * 5000, "at most 100000"),
        ("9" * 5000 + "/4", "below the shard count"),
    ],
)
def test_huge_shard_counts_are_refused_by_the_limit(text, words):
    with pytest.raises(ValueError) as info:
        sh.parse(text)
    message = str(info.value)
    assert words in message and "\n" not in message and len(message) < 200


@pytest.mark.parametrize(
    "environ",
    [
        {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "1000000000"},
        {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "999999999"},
        {"JOB_COMPLETION_INDEX": "0", "MIXERBENCH_SHARD_COUNT": "1000000000"},
        {"JOB_COMPLETION_INDEX": "0", "MIXERBENCH_SHARD_COUNT": "1" + "0" * 5000},
    ],
)
def test_huge_scheduler_counts_are_refused_by_the_limit(environ):
    with pytest.raises(ValueError) as info:
        sh.from_environment(environ)
    assert "at most 100000" in str(info.value) and "\n" not in str(info.value)


def test_assign_builds_nothing_per_shard():
    """The largest count allowed costs what a count of 10 costs: memory follows the items, not the shards."""
    import tracemalloc

    items = grid_costs()
    small = sh.assign(items, 10 * len(items))
    tracemalloc.start()
    try:
        big = sh.assign(items, sh.MAX_SHARDS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert big == small  # the same assignment: shards past the number of items never get one
    assert peak < 1_000_000, peak  # one entry per shard would be ~10 MB at 100000 shards
    with pytest.raises(ValueError, match="1..100000"):
        sh.assign(items, sh.MAX_SHARDS + 1)


def test_no_torch_import():
    code = "import sys, bench.runs.shard; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT)})
