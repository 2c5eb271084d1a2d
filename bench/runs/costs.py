"""The deterministic cost beyond MACs for ``mixerbench flops``: one step per case, attention backend and mode, and its fits;
and :func:`fill_missing_costs`, which prices records written before the cost existed, for the report.

Each counted case (a :class:`~bench.schema.Counts`) is priced by
:func:`bench.measure.cost.cost` at batch 1 in float32 (per image, like the MACs) for every
mode asked for (infer, train) and, for ViTs, every attention backend asked for. The
bytes moved, peak activation bytes and operator count of every series swept over at least
three token counts (pixels for convnets) get the same exact two-term fit and verdict as
the MACs (:func:`bench.analysis.scaling.fit`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench import schema
from bench.schema import Case, Cost, Counts, Record

if TYPE_CHECKING:
    from bench.analysis.scaling import ScalingFit

COST_QUANTITIES = ("bytes_moved", "peak_activation_bytes", "ops")
COST_KEYS = (
    "attention",
    "mode",
    "batch",
    "dtype",
    "bytes_moved",
    "peak_activation_bytes",
    "peak_step_bytes",
    "ops",
    "gradient_bytes",
    "optimizer_bytes",
    "by_class",
)


@dataclass(frozen=True)
class Priced:
    """A counted case with the cost of one step of it."""

    counts: Counts
    cost: Cost

    def to_json(self, record_keys) -> dict:
        out = {k: schema.encode(getattr(self.counts, k)) for k in record_keys}
        out.update({k: schema.encode(getattr(self.cost, k)) for k in COST_KEYS})
        return out


def has_attention_backends(model: str) -> bool:
    import architectures

    return not model.startswith(architectures.TIMM_PREFIX) and hasattr(architectures.get_config(model), "attn_backend")


def price_case(model: str, img_size: int, patch: int | None, mode: str, overrides: dict, channels_last: bool) -> Case:
    """The case :func:`price` prices: batch 1, float32, on the CPU's autocast policy."""
    return Case(model, img_size, patch, mode=mode, overrides=overrides, channels_last=channels_last)


def price(records: list, attentions: list[str] | None, modes: list[str]) -> list[Priced]:
    """Every record at every mode and (ViTs only) every attention backend; None: each model's own backend."""
    import architectures
    from bench.measure.cost import cost
    from bench.measure.timing import uses_channels_last

    priced = []
    for r in records:
        patch = (
            None if r.patch_size == architectures.traits(r.model).patch_size else r.patch_size
        )  # None: the model's own
        backends = attentions if attentions and has_attention_backends(r.model) else [None]
        for backend in backends:
            overrides: dict[str, Any] = {} if backend is None else {"attn_backend": backend}
            for mode in modes:
                try:
                    priced.append(
                        Priced(
                            r,
                            cost(price_case(r.model, r.img_size, patch, mode, overrides, uses_channels_last(r.model))),
                        )
                    )
                except (RuntimeError, NotImplementedError) as exc:  # a timm peer that cannot run on meta
                    raise ValueError(f"{r.model} at {r.img_size} px: cannot be priced on meta ({exc})") from None
    return priced


@dataclass(frozen=True)
class CostFit:
    """The exact fit of one cost quantity of one series (model, patch, attention backend, mode) over >= 3 sizes."""

    model: str
    patch_size: int | None  # the series' patch (None for convnets)
    attention: str | None  # ViT attention backend; None for other models
    mode: str  # "infer" or "train"
    quantity: str  # one of COST_QUANTITIES
    x: list[int]  # S per size (pixels for convnets), in the order priced
    fit: ScalingFit

    def to_json(self) -> dict[str, Any]:
        """The fit as ``mixerbench flops --format json`` writes it: the series, then the fit's fields."""
        return {
            "model": self.model,
            "patch_size": self.patch_size,
            "img_size": None,
            "attention": self.attention,
            "mode": self.mode,
            "quantity": self.quantity,
            "x": self.x,
            **self.fit.to_dict(),
        }


def fits(priced: list[Priced]) -> list[CostFit]:
    """Exact fits of bytes moved, peak activation bytes and operators against S (pixels) per series of >= 3 sizes."""
    from bench.analysis.scaling import fit
    from bench.analysis.series import fit_axis, fit_x

    groups: dict[tuple, list[Priced]] = {}
    for p in priced:
        groups.setdefault((p.counts.model, p.counts.patch_size, p.cost.attention, p.cost.mode), []).append(p)
    out = []
    for (model, patch, attention, mode), group in groups.items():
        if len({p.counts.img_size for p in group}) < 3:
            continue
        x = [fit_x(p.counts.img_size, p.counts.tokens) for p in group]
        for quantity in COST_QUANTITIES:
            result = fit(x, [getattr(p.cost, quantity) for p in group], axis=fit_axis(group[0].counts.tokens))
            out.append(CostFit(model, patch if group[0].counts.tokens else None, attention, mode, quantity, x, result))
    return out


def needs_cost(record: Record) -> bool:
    """Whether the report's roofline would use ``record`` but it carries no cost (written before the cost existed)."""
    return (
        record.cost is None
        and record.status == "ok"
        and bool(record.roof_flops_per_s)
        and (bool(record.copy_bytes_per_s) or record.case.device == "cuda")
    )


def fill_missing_costs(records: list[Record]) -> list[Record]:
    """``records`` with the cost of each one that needs it (:func:`needs_cost`) counted on the meta device from its
    case, in memory (results.jsonl is not rewritten). Records that already carry a cost are returned as they are, so
    the step costs nothing on a folder written since the cost existed; a case that cannot run on meta stays without.

    The ``report`` command calls this before building the report; the report itself never counts or re-costs
    (:mod:`bench.report.roofline` prices only records that carry a cost and says how many do not).
    """
    if not any(needs_cost(r) for r in records):
        return records
    from bench.measure.cost import cost_or_none

    return [dataclasses.replace(r, cost=cost_or_none(r.case, r.batch)) if needs_cost(r) else r for r in records]
