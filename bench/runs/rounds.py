"""Timing a series in rounds: every size once per round, in a shuffled order, then a profiled step.

The sizes of one series (a model at several resolutions) are timed in ``rounds``
repetitions. Each round visits every size once, in an order shuffled afresh (seeded,
so reruns repeat it), and times ``blocks`` blocks of that size after one warm-up step;
a round ends with one profiled step per size (:func:`bench.measure.profile.profile_step`).
Slow drift of the machine (another job starting, clocks, thermal state) then falls on
all sizes alike instead of growing with the size, and the rounds are the independent
repetitions :mod:`bench.analysis.stats` summarises (median per round, then per size).

Models stay built between rounds on the CPU; on CUDA each round builds them again, so
the largest sizes of a series never hold memory at once. A case that fails (out of
memory, an error) is left out of the later rounds and its exception is handed to the
sweep, which records it as it would have.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bench.schema import Case, CompileTime, Energy, Profile, Timing

if TYPE_CHECKING:
    from bench.measure.profile import StepProfile


@dataclass
class SeriesTiming:
    """What the rounds measured for one case: a Timing over all blocks (with the blocks per round), profiles."""

    timing: Timing | None = None
    rounds: list[list[float]] = field(default_factory=list)
    profiles: list[StepProfile] = field(default_factory=list)
    work: dict | None = None
    error: BaseException | None = None
    compile_time: CompileTime | None = None  # of the first build (None: eager)
    energy: Energy | None = None  # measured after the first round's timing

    def profile(self) -> Profile | None:
        """The record's profile: per class the median and per-round times, the attention kernel, the class work."""
        if not self.profiles or any(sum(p.cpu_s.values()) <= 0 for p in self.profiles):
            return None  # no profile, or one that recorded no operator time (nothing to attribute)
        return summarise_profiles(self.profiles, self.work)


def summarise_profiles(profiles: list[StepProfile], work: dict | None) -> Profile:
    """Per class the median over rounds of the profiled time, the attention kernel, and the class work.

    ``profiles`` are :func:`bench.measure.profile.profile_step`'s results, one per round.
    """
    classes = profiles[0].cpu_s.keys()
    # A device profiler that saw no kernel time (all zero) is no device clock: the CPU times stand.
    device = bool(profiles[0].device_s) and all(sum(p.device_s.values()) > 0 for p in profiles)
    return Profile(
        steps=len(profiles),
        cpu_s={c: float(np.median([p.cpu_s[c] for p in profiles])) for c in classes},
        cpu_s_rounds={c: tuple(p.cpu_s[c] for p in profiles) for c in classes},
        attention_kernel=profiles[-1].attention_kernel,
        device_s={c: float(np.median([p.device_s[c] for p in profiles])) for c in classes} if device else {},
        device_s_rounds={c: tuple(p.device_s[c] for p in profiles) for c in classes} if device else {},
        tensor_peak_bytes_rounds=tuple(p.tensor_peak_bytes for p in profiles),
        work=work,
        unattributed=next((p.unattributed for p in reversed(profiles) if p.unattributed), None),
    )


def time_series(
    cases: list[Case],
    *,
    rounds: int,
    min_run_time: float,
    min_runs: int,
    warmup: int,
    seed: int = 0,
    profile: bool = True,
    energy: bool = True,
    min_rounds: int | None = None,
) -> dict[str, SeriesTiming]:
    """Time ``cases`` (one series; numeric batches) in ``rounds`` shuffled rounds; results by case key.

    With ``min_rounds`` (and ``profile``), ``rounds`` is a maximum: after each round from
    ``min_rounds`` on, the series stops once its verdicts are decided
    (:mod:`bench.analysis.sequential`).

    A compiled case warms up until steady on its first visit (its :class:`CompileTime`),
    and again whenever it was built afresh (CUDA: every round). With ``energy``, the first
    round measures each case's energy right after timing it (:mod:`bench.measure.energy`).
    """
    import torch

    from bench.measure import compiling, timing
    from bench.measure import energy as joules
    from bench.measure import profile as profiler

    out = {c.key: SeriesTiming() for c in cases}
    keep = all(c.device == "cpu" for c in cases)
    built: dict[str, tuple] = {}
    numbers: dict[str, int] = {}
    blocks = max(1, math.ceil(min_runs / rounds))
    per_block = min_run_time / (rounds * blocks)

    def make(case: Case):
        """(model, step, built just now)."""
        if case.key in built:
            return built[case.key] + (False,)
        model = timing.build_case(case)
        step = timing.case_step(case, model)
        if keep:
            built[case.key] = (model, step)
        return model, step, True

    def fail(case: Case, exc: BaseException) -> None:
        out[case.key].error = exc
        built.pop(case.key, None)

    if profile:
        for case in cases:
            try:
                out[case.key].work = profiler.class_work(case)
            except (RuntimeError, ValueError, NotImplementedError):
                out[case.key].work = None
    if profile:  # the profiler's first use in a process initialises it (slow, and noisy in the first profile)
        with profiler.quiet_profiler_logs(), torch.profiler.profile():
            torch.ones(8).add_(1)
    rng = random.Random(seed)
    for r in range(rounds):
        order = list(cases)
        rng.shuffle(order)
        for case in order:
            st = out[case.key]
            if st.error is not None:
                continue
            try:
                with timing.torch_threads(case.threads):
                    model, step, fresh = make(case)
                    if case.key not in numbers:  # first visit: warm up, then size the blocks from one timed step
                        st.compile_time = compiling.warm_up(step, case.compile, steps=max(1, warmup))
                        once = timing.time_blocks(step, 1)[0]
                        numbers[case.key] = max(1, int(per_block / max(once, 1e-9)))
                    elif fresh and compiling.normalise(case.compile) != "none":
                        compiling.warm_up(step, case.compile)  # built again: compiled (and graphs recorded) again
                    else:
                        step()  # the model's caches went cold while the other sizes ran
                    times = timing.time_blocks(step, numbers[case.key], blocks)
                    st.rounds.append(times)
                    if energy and r == 0:
                        st.energy = joules.measure(step, batch=int(case.batch), device=case.device)
                    if profile:
                        st.profiles.append(profiler.profile_step(model, step, case.device, case.compile))
            except (torch.OutOfMemoryError, RuntimeError, ValueError, MemoryError) as exc:
                fail(case, exc)
            finally:
                if not keep:
                    built.clear()
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
        if min_rounds is not None and profile and _decided(cases, out, r + 1, min_rounds):
            break
    built.clear()
    for case in cases:
        st = out[case.key]
        if st.error is None and st.rounds:
            all_times = [t for block in st.rounds for t in block]
            q1, q3 = (float(v) for v in np.percentile(all_times, [25, 75]))
            per_round = [float(np.median(b)) for b in st.rounds]
            st.timing = Timing(
                median_s=float(np.median(per_round)),
                iqr_s=q3 - q1,
                mean_s=float(np.mean(all_times)),
                runs=len(all_times),
                number_per_run=numbers[case.key],
                batch=int(case.batch),
                warmup=warmup if st.compile_time is None else 1 + st.compile_time.warmup_steps,
                times_s=tuple(all_times),
                rounds_s=tuple(tuple(b) for b in st.rounds),
            )
    return out


def _decided(cases: list[Case], out: dict[str, SeriesTiming], done: int, min_rounds: int) -> bool:
    """The sequential rule (:func:`bench.analysis.sequential.stop_after`) on the rounds measured so far."""
    import architectures
    from bench.analysis import sequential
    from bench.analysis.series import fit_axis, fit_x

    if done < min_rounds:
        return False
    ok = [c for c in cases if out[c.key].error is None and out[c.key].rounds]
    if len({c.img_size for c in ok}) < 3:
        return sequential.stop_after(done, min_rounds, None)
    if any(out[c.key].work is None or not out[c.key].profiles for c in ok):
        return False  # nothing to judge the verdicts by: every round runs
    tokens = [architectures.traits(c.model).tokens(c.img_size, c.patch_size) for c in ok]
    found = sequential.verdicts(
        [fit_x(c.img_size, s) for c, s in zip(ok, tokens)],
        [summarise_profiles(out[c.key].profiles, out[c.key].work) for c in ok],
        [float(np.median([np.median(b) for b in out[c.key].rounds])) for c in ok],
        axis=fit_axis(tokens[0]),
    )
    return sequential.stop_after(done, min_rounds, found)


def series_groups(cases: list[Case]) -> list[list[Case]]:
    """Cases grouped into series (everything but the image size equal), in first-seen order."""
    groups: dict[str, list[Case]] = {}
    for c in cases:
        groups.setdefault(c.series_key, []).append(c)
    return list(groups.values())


def pretime(cases: list[Case], config, log=None):
    """(case, SeriesTiming or None) for every case, in order: each series timed in rounds just before its cases.

    ``config`` is the sweep's :class:`~bench.runs.sweep.SweepConfig`; with ``config.rounds`` <= 1, or for
    ``--max-batch`` cases, None (the sweep times the case by itself).
    """
    for group in series_groups(cases):
        pre: dict = {}
        if config.rounds > 1 and all(c.batch != "max" for c in group):
            min_rounds = getattr(config, "min_rounds", None)
            if log is not None:
                upto = f"{min_rounds} to " if min_rounds is not None and min_rounds < config.rounds else ""
                print(
                    f"timing {group[0].name}: {len(group)} sizes x {upto}{config.rounds} rounds, shuffled",
                    file=log,
                    flush=True,
                )
            pre = time_series(
                group,
                rounds=config.rounds,
                min_run_time=config.min_run_time,
                min_runs=config.min_runs,
                warmup=config.warmup,
                min_rounds=min_rounds,
            )
            if log is not None and min_rounds is not None and min_rounds < config.rounds:
                ran = max((len(t.rounds) for t in pre.values()), default=0)
                print(f"  {ran} rounds ran (stops once the verdicts are decided)", file=log, flush=True)
        for case in group:
            yield case, pre.get(case.key)
