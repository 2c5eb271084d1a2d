"""Count parameters, MACs and activations per case, and fit MACs against tokens.

One row per (model, img_size, patch_size), counted on the meta device (nothing runs,
nothing is allocated): MACs in fvcore's convention with attention counted. For every
model swept over at least three token counts (by resolution at a fixed patch, or by
patch size at a fixed resolution) it fits MACs = a*S + b*S^2 + c and gives the verdict
(linear / quadratic), the crossover S* = a/b and the quadratic share at the largest S.
Convnets have no tokens: they are fitted against pixels (axis "pixels").

examples:
  mixerbench flops                                      # the whole zoo at six resolutions
  mixerbench flops --models mixer_b16,vit_b16,resnet50 --resolutions 224,384,512
  mixerbench flops --models vit_b16 --resolutions 224 --patch-sizes 8,14,16,28,32
  mixerbench flops --check                              # + FlopCounterMode and closed forms
  mixerbench flops --check --fvcore --resolutions 224   # + fvcore on real tensors (runs the models)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import TYPE_CHECKING

from bench.cli.args import image_sizes, model_list, patch_sizes, progress
from bench.errors import UsageError
from bench.runs.counts import DEFAULT_RESOLUTIONS

if TYPE_CHECKING:
    from bench.runs.costs import CostFit, Priced
    from bench.runs.counts import CountCheck, MacFit
    from bench.schema import Counts

NAME = "flops"
HELP = "parameters, MACs (attention counted) and activations per case; linear/quadratic verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        type=model_list,
        default=None,
        help="comma-separated reference models or timm:<name> (default: every reference model)",
    )
    parser.add_argument(
        "--resolutions",
        type=image_sizes,
        default=None,
        help="comma-separated square input sizes in pixels; each must be divisible by every patch size "
        f"used (default: {','.join(map(str, DEFAULT_RESOLUTIONS))}, each model taking those its patch divides)",
    )
    parser.add_argument(
        "--patch-sizes",
        type=patch_sizes,
        default=None,
        help="comma-separated patch sizes for Mixer/ViT models (default: each preset's own); "
        "convnets are counted once per resolution",
    )
    parser.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="output format (default: table); csv has the records only",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="cross-check the matmul/conv/attention MACs against FlopCounterMode and the closed forms; "
        "exit 1 if any disagrees at all (they agree exactly)",
    )
    parser.add_argument(
        "--fvcore",
        action="store_true",
        help="with --check, also run fvcore on real CPU tensors (executes every case once at batch 1)",
    )
    from bench.cli.cmd_sweep import _names

    parser.add_argument(
        "--attention",
        type=_names(("fused", "explicit")),
        default=None,
        help="attention backends of reference ViTs to price, e.g. fused,explicit (default: the preset's)",
    )
    parser.add_argument(
        "--mode",
        type=_names(("infer", "train")),
        default=["infer"],
        help="steps to price: infer, train or both (default: infer); see docs/methodology/cost-model.md",
    )


RECORD_KEYS = (
    "model",
    "img_size",
    "patch_size",
    "tokens",
    "params",
    "macs",
    "activations",
    "matmul_macs",
    "uncounted",
    "device",
)


def run(args: argparse.Namespace) -> int:
    import architectures

    if args.fvcore and not args.check:
        raise UsageError("--fvcore only makes sense with --check")
    from bench.runs import costs
    from bench.runs.counts import check, count_and_price, fits, plan

    models = args.models if args.models is not None else architectures.list_models()
    try:  # counts, then bytes moved, peak activation bytes, ops (docs/methodology/cost-model.md)
        cases = plan(models, args.resolutions, args.patch_sizes)
        records, priced = count_and_price(cases, args.attention, args.mode, progress("counting"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fit_rows = fits(records)
    cost_fits = costs.fits(priced)
    checks = check(records, args.fvcore) if args.check else None
    if args.format == "json":
        fit_objects = [f.to_json() for f in fit_rows] + [f.to_json() for f in cost_fits]
        payload: dict[str, list] = {"records": [p.to_json(RECORD_KEYS) for p in priced], "fits": fit_objects}
        if checks is not None:
            payload.update(checks=[c.to_json() for c in checks])
        print(json.dumps(payload, indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(
            [
                "model",
                "img_size",
                "patch_size",
                "tokens",
                "params",
                "macs",
                "gmacs",
                "activations",
                "matmul_macs",
                "device",
            ]
        )
        for r in records:
            writer.writerow(
                [
                    r.model,
                    r.img_size,
                    _blank(r.patch_size),
                    _blank(r.tokens),
                    r.params,
                    r.macs,
                    f"{r.gmacs:.4f}",
                    r.activations,
                    r.matmul_macs,
                    r.device,
                ]
            )
    else:
        print_table(records, fit_rows, checks)
        print_cost_table(priced, cost_fits)
    if checks is not None and not all(c.ok for c in checks):
        bad = [c for c in checks if not c.ok]
        print(f"mixerbench flops: {len(bad)} case(s) disagree (exact agreement required)", file=sys.stderr)
        return 1
    return 0


def _blank(value) -> str:
    return "" if value is None else str(value)


def _dash(value) -> str:
    return "-" if value is None else str(value)


def _commas(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def print_table(records: list[Counts], fit_rows: list[MacFit], checks: list[CountCheck] | None) -> None:
    width = max(len("model"), *(len(r.model) for r in records))
    print(f"{'model':<{width}} {'img':>5} {'patch':>5} {'tokens':>6} {'params':>13} {'GMACs':>10} {'activations':>13}")
    for r in records:
        print(
            f"{r.model:<{width}} {r.img_size:>5} {_dash(r.patch_size):>5} {_dash(r.tokens):>6} {r.params:>13,} "
            f"{r.gmacs:>10.3f} {r.activations:>13,}"
        )
    uncounted = sorted({op for r in records for op in r.uncounted})
    if uncounted:
        print(f"\nuncounted (no FLOP rule, as in fvcore; per case in --format json): {', '.join(uncounted)}")
    on_cpu = [r for r in records if r.device != "meta"]
    if on_cpu:
        print(f"counted on real CPU tensors (cannot run on meta): {', '.join(sorted({r.model for r in on_cpu}))}")
    if fit_rows:
        print("\nMACs = a*S + b*S^2 + c (S tokens; convnets: S = pixels)")
        print(
            f"{'model':<{width}} {'axis':<10} {'fixed':>8} {'S range':>13} {'a':>11} {'b':>9} {'S* = a/b':>9} "
            f"{'res*':>6} {'quad share':>10} {'exponents':<17} verdict"
        )
        for f in fit_rows:
            g = f.fit
            fixed = f"patch {f.patch_size}" if f.patch_size is not None else (f"{f.img_size} px" if f.img_size else "-")
            span = f"{g.x_min:.0f}..{g.x_max:.0f}"
            cross = "-" if g.crossover is None else f"{g.crossover:.0f}"
            res = "-" if f.crossover_resolution is None else f"{f.crossover_resolution:.0f}"
            exps = f"{min(g.local_exponents):.2f}..{max(g.local_exponents):.2f}"
            print(
                f"{f.model:<{width}} {g.axis:<10} {fixed:>8} {span:>13} {g.a:>11.4g} {g.b:>9.4g} {cross:>9} "
                f"{res:>6} {g.quadratic_share:>10.1%} {exps:<17} {g.verdict}"
            )
    if checks is not None:
        print("\nmatmul/conv/attention MACs, cross-checked (fvcore: only with --fvcore; closed form: reference models)")
        print(
            f"{'model':<{width}} {'img':>5} {'patch':>5} {'this counter':>16} {'FlopCounterMode':>16} "
            f"{'closed form':>16} {'fvcore':>16} {'max diff':>9}"
        )
        for c in checks:
            print(
                f"{c.model:<{width}} {c.img_size:>5} {_dash(c.patch_size):>5} {c.counter:>16,} "
                f"{c.flop_counter_mode:>16,} {_commas(c.closed_form):>16} {_commas(c.fvcore):>16} "
                f"{c.max_rel_diff:>9.2e} {'ok' if c.ok else 'FAIL'}"
            )
        agree = sum(c.ok for c in checks)
        worst = max(c.max_rel_diff for c in checks)
        print(f"{agree} of {len(checks)} cases agree exactly (largest relative difference {worst:.2e})")


def print_cost_table(priced: list[Priced], cost_fits: list[CostFit]) -> None:
    """Bytes moved, peak activation memory and operators of one step per image (batch 1, float32)."""
    width = max(len("model"), *(len(p.counts.model) for p in priced))
    print("\none step per image (batch 1, float32, counted on meta): bytes moved, peak activation memory, operators")
    print(
        f"{'model':<{width}} {'img':>5} {'attention':>9} {'mode':>5} {'MB moved':>10} {'peak act MiB':>12} {'ops':>6}"
    )
    for p in priced:
        c = p.cost
        print(
            f"{p.counts.model:<{width}} {p.counts.img_size:>5} {_dash(c.attention):>9} {c.mode:>5} {c.bytes_moved / 1e6:>10.1f} "
            f"{c.peak_activation_bytes / 2**20:>12.2f} {c.ops:>6}"
        )
    if cost_fits:
        print("\ncost = a*S + b*S^2 + c (S tokens; convnets: S = pixels)")
        print(f"{'model':<{width}} {'attention':>9} {'mode':>5} {'quantity':<22} {'b':>10} {'quad share':>10} verdict")
        for f in cost_fits:
            print(
                f"{f.model:<{width}} {_dash(f.attention):>9} {f.mode:>5} {f.quantity:<22} {f.fit.b:>10.4g} "
                f"{f.fit.quadratic_share:>10.1%} {f.fit.verdict}"
            )
