"""Shards: split one sweep's cases between N machines (job-array tasks), balanced by cost.

A :class:`Shard` is "index K of N" (0-based). It comes from the command line ("K/N",
:func:`parse`) or from the scheduler's environment (:func:`from_environment`):

- Slurm job arrays: ``SLURM_ARRAY_TASK_ID`` with ``SLURM_ARRAY_TASK_MIN`` and
  ``SLURM_ARRAY_TASK_MAX`` (index = ID - MIN, count = MAX - MIN + 1), or with
  ``SLURM_ARRAY_TASK_COUNT`` alone (then the array must start at 0: index = ID).
  Arrays with a step (``0-9:2``) or an explicit list (``1,3,7``) are not supported: the
  shard indices must be contiguous. They are detected where Slurm's variables show it
  (``SLURM_ARRAY_TASK_STEP`` other than 1, or ``SLURM_ARRAY_TASK_COUNT`` smaller than
  MAX - MIN + 1) and refused.
- Kubernetes Indexed Jobs: ``JOB_COMPLETION_INDEX`` with ``MIXERBENCH_SHARD_COUNT``
  (required with it; set it to the Job's ``completions``). ``MIXERBENCH_SHARD_COUNT``
  without ``JOB_COMPLETION_INDEX`` is ignored.

:func:`resolve` combines both: the command line wins, and then the environment is not
read at all. A job script that computes its own shard (``examples/slurm/sweep.sbatch``
maps array task K to shard K) can so re-run one task alone (``sbatch --array=2``: Slurm
then says "task 0 of 1") or run a subset with a step (``--array=1-3:2``).

:func:`assign` splits keyed items (a case key and its estimated cost) into shards with
the longest-processing-time greedy rule, so every shard gets about the same cost; it
depends only on the set of items, never on their order, so every task of an array
computes the same assignment independently.

A shard count is at most :data:`MAX_SHARDS`, checked before anything is built, and
:func:`assign` keeps one entry per shard that can receive an item (at most one per item),
never one per shard of the count: a count of 10**9 costs no more than a count of 10.

Every bad value raises ``ValueError`` with a one-line message that names the value and
where it came from, but no command-line flag (the CLI layer adds those). Nothing here
imports torch.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Mapping, Sequence

from bench.schema import SHARD_SOURCES, Shard

SOURCES = SHARD_SOURCES

SLURM_ID = "SLURM_ARRAY_TASK_ID"
SLURM_COUNT = "SLURM_ARRAY_TASK_COUNT"
SLURM_MIN = "SLURM_ARRAY_TASK_MIN"
SLURM_MAX = "SLURM_ARRAY_TASK_MAX"
SLURM_STEP = "SLURM_ARRAY_TASK_STEP"
K8S_INDEX = "JOB_COMPLETION_INDEX"
K8S_COUNT = "MIXERBENCH_SHARD_COUNT"

MAX_SHARDS = 100_000  # Kubernetes' limit on an Indexed Job's completions; Slurm's MaxArraySize default is 1001

# ASCII digits only: int() would also read "1_0" as 10 and "٣" (Arabic-Indic three) as 3
_SHARD_TEXT = re.compile(r"^\s*([+-]?[0-9]+)\s*/\s*([+-]?[0-9]+)\s*$", re.ASCII)
_INTEGER = re.compile(r"^[+-]?[0-9]+$", re.ASCII)
_DIGITS = 12  # longer numbers are refused by their length, before int() reads them


def _check_range(index: int, count: int, what: str) -> None:
    if count < 1:
        raise ValueError(f"{what}: the shard count must be at least 1, got {count}")
    if count > MAX_SHARDS:
        raise ValueError(f"{what}: the shard count must be at most {MAX_SHARDS}, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"{what}: the shard index must be in 0..{count - 1} (0-based), got {index}")


def parse(text: str) -> Shard:
    """Parse "K/N" (shard K of N, 0-based: 0 <= K < N) into a Shard from the command line."""
    match = _SHARD_TEXT.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"shard {text!r} is not of the form K/N with integers K and N (0-based, e.g. 0/4)")
    if len(match.group(2).lstrip("+-0")) > _DIGITS:
        raise ValueError(f"shard {text.strip()[:40]!r}: the shard count must be at most {MAX_SHARDS}")
    if len(match.group(1).lstrip("+-0")) > _DIGITS:
        raise ValueError(f"shard {text.strip()[:40]!r}: the shard index must be below the shard count")
    index, count = int(match.group(1)), int(match.group(2))
    _check_range(index, count, f"shard {text.strip()!r}")
    return Shard(index, count, "cli")


def _env_int(environ: Mapping[str, str], name: str) -> int:
    """The variable ``name`` as an integer of ASCII digits (an optional sign, spaces around); ValueError otherwise."""
    text = str(environ[name]).strip(" \t\r\n")
    if not _INTEGER.match(text):
        raise ValueError(f"{name}={str(environ[name])[:40]!r} is not an integer of ASCII digits 0-9")
    if len(text.lstrip("+-0")) > _DIGITS:
        raise ValueError(f"{name}={text[:40]!r}... is too large (a shard count is at most {MAX_SHARDS})")
    return int(text)


def _from_slurm(environ: Mapping[str, str]) -> Shard:
    task = _env_int(environ, SLURM_ID)
    if SLURM_STEP in environ and _env_int(environ, SLURM_STEP) != 1:
        raise ValueError(
            f"Slurm job arrays with a step ({SLURM_STEP}={environ[SLURM_STEP]}) are not supported; "
            "the array must be contiguous, e.g. 0-7"
        )
    has_min, has_max = SLURM_MIN in environ, SLURM_MAX in environ
    if has_min != has_max:
        present, missing = (SLURM_MIN, SLURM_MAX) if has_min else (SLURM_MAX, SLURM_MIN)
        raise ValueError(f"{present} is set but {missing} is not")
    if has_min:
        low, high = _env_int(environ, SLURM_MIN), _env_int(environ, SLURM_MAX)
        if high < low:
            raise ValueError(f"{SLURM_MAX}={high} is below {SLURM_MIN}={low}")
        count = high - low + 1
        _check_range(0, count, f"Slurm array {SLURM_MIN}={low}..{SLURM_MAX}={high}")
        if SLURM_COUNT in environ:
            tasks = _env_int(environ, SLURM_COUNT)
            if tasks != count:
                raise ValueError(
                    f"the Slurm job array has {tasks} tasks ({SLURM_COUNT}) but spans {low}..{high}: "
                    "arrays with a step or a list of indices are not supported, use a contiguous range"
                )
        if not low <= task <= high:
            raise ValueError(f"{SLURM_ID}={task} is outside {SLURM_MIN}..{SLURM_MAX} ({low}..{high})")
        return Shard(task - low, count, "slurm")
    if SLURM_COUNT not in environ:
        raise ValueError(f"{SLURM_ID} is set but neither {SLURM_COUNT} nor {SLURM_MIN}/{SLURM_MAX} is")
    count = _env_int(environ, SLURM_COUNT)
    _check_range(task, count, f"Slurm array task {SLURM_ID}={task} of {SLURM_COUNT}={count}")
    return Shard(task, count, "slurm")


def _from_kubernetes(environ: Mapping[str, str]) -> Shard:
    index = _env_int(environ, K8S_INDEX)
    if K8S_COUNT not in environ:
        raise ValueError(f"{K8S_INDEX} is set but {K8S_COUNT} is not (set it to the Indexed Job's completions)")
    count = _env_int(environ, K8S_COUNT)
    _check_range(index, count, f"Kubernetes {K8S_INDEX}={index} of {K8S_COUNT}={count}")
    return Shard(index, count, "kubernetes")


def from_environment(environ: Mapping[str, str]) -> Shard | None:
    """The shard a Slurm job-array task or a Kubernetes Indexed Job pod runs, or None outside both.

    If both schedulers' variables are set they must describe the same shard (the Slurm one is returned).
    """
    slurm = _from_slurm(environ) if SLURM_ID in environ else None
    kube = _from_kubernetes(environ) if K8S_INDEX in environ else None
    if slurm is not None and kube is not None and (slurm.index, slurm.count) != (kube.index, kube.count):
        raise ValueError(f"Slurm says shard {slurm} but Kubernetes says shard {kube}")
    return slurm if slurm is not None else kube


def resolve(cli_text: str | None, environ: Mapping[str, str]) -> Shard | None:
    """The shard to run: the command line's "K/N" if given (the environment unread), else the environment's, else None."""
    if cli_text is None:
        return from_environment(environ)
    return parse(cli_text)


def assign(items: Sequence[tuple[str, float]] | Mapping[str, float], count: int) -> dict[str, int]:
    """Key -> shard index for ``count`` shards, balanced by cost (longest processing time first).

    Items are sorted by cost (descending), then key; each goes to the shard with the least
    cost so far (ties: the lowest index). The result depends only on the set of items,
    not their order. The heaviest shard costs at most total/count + the largest cost.
    Keys must be unique; costs finite and >= 0.
    """
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"the shard count must be an integer in 1..{MAX_SHARDS}, got {count!r}")
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    seen: set[str] = set()
    for key, cost in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears more than once")
        seen.add(key)
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost < 0:
            raise ValueError(f"the cost of {key!r} must be a finite number >= 0, got {cost!r}")
    pairs.sort(key=lambda kc: (-kc[1], kc[0]))
    # Only the first min(count, items) shards can receive an item: while item i is placed,
    # at most i shards hold any cost, so one of shards 0..i is still empty and comes before
    # every higher (empty) one. The heap holds those shards only, never one entry per shard.
    loads = [(0.0, index) for index in range(min(count, len(pairs)))]  # already a heap
    assignment: dict[str, int] = {}
    for key, cost in pairs:
        load, index = heapq.heappop(loads)
        assignment[key] = index
        heapq.heappush(loads, (load + cost, index))
    return assignment


def select(keys_costs: Sequence[tuple[str, float]] | Mapping[str, float], shard: Shard) -> set[str]:
    """The keys of ``keys_costs`` that ``shard`` runs (see :func:`assign`)."""
    return {key for key, index in assign(keys_costs, shard.count).items() if index == shard.index}
