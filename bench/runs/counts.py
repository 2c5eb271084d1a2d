"""The grid that ``mixerbench flops`` counts, the MAC fits over it, and the cross-check of its counters."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.schema import Case, Counts

if TYPE_CHECKING:
    from bench.analysis.scaling import ScalingFit
    from bench.runs.costs import Priced

DEFAULT_RESOLUTIONS = (224, 448, 512, 672, 896, 1024)  # 224 to 1024: each model takes those its patch divides
CHECK_TOLERANCE = 0  # the counters must agree exactly on the matmul/conv/attention part (they do, for every preset)


def plan(models: list[str], resolutions: list[int] | None, patch_sizes: list[int] | None) -> list[Case]:
    """Every case (a :class:`~bench.schema.Case` at batch 1; patch size None: the model's own, or a convnet) to count, each once (repeated values collapse). With explicit resolutions, one a patch does not divide is a ValueError."""
    import architectures

    strict = resolutions is not None
    sizes = list(DEFAULT_RESOLUTIONS if resolutions is None else resolutions)
    cases = []
    for model in models:
        own_patch = architectures.traits(model).patch_size
        if own_patch is None:  # convnet: patch sizes do not apply
            patches: list[int | None] = [None]
        else:
            patches = list(patch_sizes) if patch_sizes else [own_patch]
        for patch in patches:
            effective = own_patch if patch is None else patch
            for size in sizes:
                if effective is not None and size % effective:
                    if strict:
                        raise ValueError(f"resolution {size} is not divisible by patch size {effective} ({model})")
                    continue
                case = Case(model, size, None if patch == own_patch else patch)
                if case not in cases:
                    cases.append(case)
    if not cases:
        raise ValueError("no case to count: no default resolution is divisible by the patch sizes given")
    return cases


def count_cases(cases: list[Case], progress: Callable[[int, int, str], None] | None = None) -> list[Counts]:
    """The count of every case in order (:func:`bench.measure.counting.count`); ``progress(done, total, case)``
    after each."""
    from bench.measure.counting import count

    records = []
    for i, case in enumerate(cases, start=1):
        if progress:
            progress(i - 1, len(cases), f"{case.model} {case.img_size} px")
        try:
            records.append(count(case))
        except ValueError as exc:
            raise ValueError(f"{case.model} at {case.img_size} px: {exc}") from None
    if progress and cases:
        progress(len(cases), len(cases), "counted")
    return records


def count_and_price(
    cases: list[Case],
    attentions: list[str] | None,
    modes: list[str],
    progress: Callable[[int, int, str], None] | None = None,
    workers: int | None = None,
) -> tuple[list[Counts], list[Priced]]:
    """:func:`count_cases` of ``cases`` and :func:`bench.runs.costs.price` of their counts: the same lists, the same
    ValueError (the first case that cannot be counted, else the first that cannot be priced).

    Each case is counted and priced in one go (costing takes over the model counting built), the cases shared among
    ``workers`` processes forked from this one once it has done the first (default: one per CPU this process may
    use; one runs them here, as does any system without fork). ``progress(done, total, case)`` as cases finish.
    """
    import multiprocessing
    import os

    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    fork = workers > 1 and len(cases) > 2 and "fork" in multiprocessing.get_all_start_methods()
    done: list[tuple] = []
    pool = results = None
    try:
        for i, case in enumerate(cases):
            if progress:
                progress(i, len(cases), f"{case.model} {case.img_size} px")
            if pool is None and fork and i == 1:  # the first case ran here: the workers start with torch warmed up
                from concurrent.futures import ProcessPoolExecutor

                sys.stdout.flush()
                sys.stderr.flush()
                pool = ProcessPoolExecutor(
                    min(workers, len(cases) - 1), mp_context=multiprocessing.get_context("fork"), initializer=_can_fork
                )
            if pool is not None:
                try:
                    if results is None:  # submitting raises too once a worker has failed to start
                        rest = cases[1:]
                        results = pool.map(_count_and_price, rest, [attentions] * len(rest), [modes] * len(rest))
                    done.append(next(results))
                    continue
                except BrokenProcessPool:  # a worker could not start (_can_fork): the rest run here
                    pool.shutdown(cancel_futures=True)
                    pool, fork = None, False
            done.append(_count_and_price(case, attentions, modes))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if progress and cases:
        progress(len(cases), len(cases), "counted and priced")
    for record, _ in done:
        if isinstance(record, ValueError):
            raise record
    for _, priced in done:
        if isinstance(priced, ValueError):
            raise priced
    return [r for r, _ in done], [p for _, ps in done for p in ps]


def _can_fork() -> None:
    """Raise in a forked worker that cannot price a training step: once this process has run autograd on threads
    of its own (a compiled step has), torch refuses backward passes in processes forked from it."""
    import torch

    torch.ones(1, device="meta", requires_grad=True).sum().backward()


def _count_and_price(case: Case, attentions: list[str] | None, modes: list[str]) -> tuple:
    """(Counts or the ValueError of counting, [Priced] or the ValueError of pricing) of one case."""
    from bench.runs.costs import price

    try:
        (record,) = count_cases([case])
    except ValueError as exc:
        return exc, []
    try:
        return record, price([record], attentions, modes)
    except ValueError as exc:
        return record, exc


@dataclass(frozen=True)
class MacFit:
    """The exact fit of one model's MACs over >= 3 sizes: by resolution at a fixed patch (``patch_size`` set, or
    None for a convnet, fitted against pixels) or by patch size at a fixed resolution (``img_size`` set)."""

    model: str
    patch_size: int | None  # the fixed patch of a sweep over resolutions (None for convnets and patch sweeps)
    img_size: int | None  # the fixed resolution of a sweep over patch sizes (None for resolution sweeps)
    x: list[int]  # S per size (pixels for convnets), in the order counted
    fit: ScalingFit
    crossover_resolution: float | None  # the resolution at S* = a/b (resolution sweeps of token models), else None

    def to_json(self) -> dict[str, Any]:
        """The fit as ``mixerbench flops --format json`` writes it: the sweep, the fit's fields, then the rest."""
        return {
            "model": self.model,
            "patch_size": self.patch_size,
            "img_size": self.img_size,
            "x": self.x,
            **self.fit.to_dict(),
            "crossover_resolution": self.crossover_resolution,
            "quantity": "macs",
        }


def fits(records: list[Counts]) -> list[MacFit]:
    """One fit per model swept over >= 3 token counts (or pixel counts for convnets)."""
    from bench.analysis.scaling import crossover_resolution, fit
    from bench.analysis.series import fit_axis, fit_x

    out = []
    by_patch: dict[tuple, list[Counts]] = {}
    by_size: dict[tuple, list[Counts]] = {}
    for r in records:
        by_patch.setdefault((r.model, r.patch_size), []).append(r)
        if r.tokens is not None:
            by_size.setdefault((r.model, r.img_size), []).append(r)
    for (model, patch), group in by_patch.items():
        if len({r.img_size for r in group}) < 3:
            continue
        x = [fit_x(r.img_size, r.tokens) for r in group]
        result = fit(x, [r.macs for r in group], axis=fit_axis(group[0].tokens))
        tokens = group[0].tokens
        crossover = None
        if tokens is not None and patch is not None:
            prefix = tokens - (group[0].img_size // patch) ** 2
            crossover = crossover_resolution(result.crossover_tokens, patch, prefix)
        out.append(MacFit(model, patch if tokens else None, None, x, result, crossover))
    for (model, size), group in by_size.items():
        if len({r.patch_size for r in group}) < 3:
            continue
        x = [r.tokens for r in group if r.tokens is not None]
        result = fit(x, [r.macs for r in group], axis="patch_size")
        out.append(MacFit(model, None, size, x, result, None))
    return out


@dataclass(frozen=True)
class CountCheck:
    """The matmul/conv/attention MACs of one case by this counter and by the independent counts beside it."""

    model: str
    img_size: int
    patch_size: int | None
    counter: int  # this counter (bench.measure.counting)
    flop_counter_mode: int  # torch's FlopCounterMode
    closed_form: int | None  # the closed form of a reference model (None for timm models)
    fvcore: int | None  # fvcore on real tensors (None unless asked for)
    max_rel_diff: float  # the largest relative difference to the counter
    ok: bool  # within CHECK_TOLERANCE

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check(records: list[Counts], with_fvcore: bool) -> list[CountCheck]:
    """Matmul/conv/attention MACs by this counter, FlopCounterMode, the closed form and (optionally) fvcore."""
    import architectures
    from bench.measure import formulas
    from bench.measure.counting import build, flop_counter_macs, fvcore_count

    rows = []
    for r in records:
        case = Case(r.model, r.img_size, r.patch_size)
        fcm = flop_counter_macs(case)
        closed = None
        if not r.model.startswith(architectures.TIMM_PREFIX):
            closed = formulas.closed_form(build(case).config).matmul
        fv = fvcore_count(case).matmul_macs if with_fvcore else None
        others = [v for v in (fcm, closed, fv) if v is not None]
        worst = max(abs(v - r.matmul_macs) / r.matmul_macs for v in others)
        rows.append(
            CountCheck(
                model=r.model,
                img_size=r.img_size,
                patch_size=r.patch_size,
                counter=r.matmul_macs,
                flop_counter_mode=fcm,
                closed_form=closed,
                fvcore=fv,
                max_rel_diff=worst,
                ok=worst <= CHECK_TOLERANCE,
            )
        )
    return rows
