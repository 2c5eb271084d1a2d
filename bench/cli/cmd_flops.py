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
from dataclasses import dataclass

from bench.cli.args import int_list, model_list
from bench.errors import UsageError

NAME = "flops"
HELP = "parameters, MACs (attention counted) and activations per case; linear/quadratic verdict"
DEFAULT_RESOLUTIONS = (224, 448, 512, 672, 896, 1024)  # 224 to 1024: each model takes those its patch divides
CHECK_TOLERANCE = 0.01  # the counters must agree within 1% on the matmul/conv/attention part


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=model_list, default=None,
                        help="comma-separated reference models or timm:<name> (default: every reference model)")
    parser.add_argument("--resolutions", type=int_list, default=None,
                        help="comma-separated square input sizes in pixels; each must be divisible by every patch size "
                             f"used (default: {','.join(map(str, DEFAULT_RESOLUTIONS))}, each model taking those its patch divides)")
    parser.add_argument("--patch-sizes", type=int_list, default=None,
                        help="comma-separated patch sizes for Mixer/ViT models (default: each preset's own); "
                             "convnets are counted once per resolution")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output format (default: table); csv has the records only")
    parser.add_argument("--check", action="store_true",
                        help="cross-check the matmul/conv/attention MACs against FlopCounterMode and the closed forms; "
                             "exit 1 if any disagrees by more than 1%%")
    parser.add_argument("--fvcore", action="store_true",
                        help="with --check, also run fvcore on real CPU tensors (executes every case once at batch 1)")


@dataclass(frozen=True)
class Case:
    model: str
    img_size: int
    patch_size: int | None  # None: the model's own (or no patch: convnet)


def plan(models: list[str], resolutions: list[int] | None, patch_sizes: list[int] | None) -> list[Case]:
    """Every case to count. With explicit resolutions, one a patch does not divide is a UsageError."""
    import torch

    import architectures

    from bench.measure.counting import model_patch_size

    strict = resolutions is not None
    sizes = list(resolutions) if strict else list(DEFAULT_RESOLUTIONS)
    cases = []
    for model in models:
        if model.startswith(architectures.TIMM_PREFIX):
            try:
                with torch.device("meta"):
                    own_patch = model_patch_size(architectures.create(model))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        else:
            own_patch = getattr(architectures.get_config(model), "patch_size", None)
        if own_patch is None:  # convnet: patch sizes do not apply
            patches: list[int | None] = [None]
        else:
            patches = list(patch_sizes) if patch_sizes else [own_patch]
        for patch in patches:
            effective = own_patch if patch is None else patch
            for size in sizes:
                if effective is not None and size % effective:
                    if strict:
                        raise UsageError(f"resolution {size} is not divisible by patch size {effective} ({model})")
                    continue
                cases.append(Case(model, size, None if patch == own_patch else patch))
    if not cases:
        raise UsageError("no case to count: no default resolution is divisible by the patch sizes given")
    return cases


def count_cases(cases: list[Case]) -> list:
    from bench.measure.counting import count

    records = []
    for case in cases:
        try:
            records.append(count(case.model, case.img_size, case.patch_size))
        except ValueError as exc:
            raise UsageError(f"{case.model} at {case.img_size} px: {exc}") from None
    return records


def fits(records: list) -> list[dict]:
    """One fit per model swept over >= 3 token counts (or pixel counts for convnets)."""
    from bench.analysis.scaling import crossover_resolution, fit

    out = []
    by_patch: dict[tuple, list] = {}
    by_size: dict[tuple, list] = {}
    for r in records:
        by_patch.setdefault((r.model, r.patch_size), []).append(r)
        if r.tokens is not None:
            by_size.setdefault((r.model, r.img_size), []).append(r)
    for (model, patch), group in by_patch.items():
        if len({r.img_size for r in group}) < 3:
            continue
        if group[0].tokens is None:
            result = fit([r.img_size**2 for r in group], [r.macs for r in group], axis="pixels")
            entry = {"model": model, "patch_size": None, "img_size": None, "x": [r.img_size**2 for r in group]}
            entry.update(result.to_dict())
            entry["crossover_resolution"] = None
        else:
            result = fit([r.tokens for r in group], [r.macs for r in group], axis="resolution")
            prefix = group[0].tokens - (group[0].img_size // patch) ** 2
            entry = {"model": model, "patch_size": patch, "img_size": None, "x": [r.tokens for r in group]}
            entry.update(result.to_dict())
            entry["crossover_resolution"] = crossover_resolution(result.crossover_tokens, patch, prefix)
        out.append(entry)
    for (model, size), group in by_size.items():
        if len({r.patch_size for r in group}) < 3:
            continue
        result = fit([r.tokens for r in group], [r.macs for r in group], axis="patch_size")
        entry = {"model": model, "patch_size": None, "img_size": size, "x": [r.tokens for r in group]}
        entry.update(result.to_dict())
        entry["crossover_resolution"] = None
        out.append(entry)
    return out


def check(records: list, with_fvcore: bool) -> list[dict]:
    """Matmul/conv/attention MACs by this counter, FlopCounterMode, the closed form and (optionally) fvcore."""
    import architectures

    from bench.measure import formulas
    from bench.measure.counting import build, flop_counter_macs, fvcore_count

    rows = []
    for r in records:
        patch = None if r.patch_size is None else r.patch_size
        fcm = flop_counter_macs(r.model, r.img_size, patch)
        closed = None
        if not r.model.startswith(architectures.TIMM_PREFIX):
            closed = formulas.closed_form(build(r.model, r.img_size, patch).config).matmul
        fv = fvcore_count(r.model, r.img_size, patch).matmul_macs if with_fvcore else None
        others = [v for v in (fcm, closed, fv) if v is not None]
        worst = max(abs(v - r.matmul_macs) / r.matmul_macs for v in others)
        rows.append({"model": r.model, "img_size": r.img_size, "patch_size": r.patch_size, "counter": r.matmul_macs,
                     "flop_counter_mode": fcm, "closed_form": closed, "fvcore": fv, "max_rel_diff": worst,
                     "ok": worst <= CHECK_TOLERANCE})
    return rows


RECORD_KEYS = ("model", "img_size", "patch_size", "tokens", "params", "macs", "activations", "matmul_macs", "uncounted", "device")


def run(args: argparse.Namespace) -> int:
    import architectures

    if args.fvcore and not args.check:
        raise UsageError("--fvcore only makes sense with --check")
    models = args.models if args.models is not None else architectures.list_models()
    records = count_cases(plan(models, args.resolutions, args.patch_sizes))
    fit_rows = fits(records)
    checks = check(records, args.fvcore) if args.check else None
    if args.format == "json":
        payload = {"records": [{k: getattr(r, k) for k in RECORD_KEYS} for r in records], "fits": fit_rows}
        if checks is not None:
            payload["checks"] = checks
        print(json.dumps(payload, indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["model", "img_size", "patch_size", "tokens", "params", "macs", "gmacs", "activations", "matmul_macs", "device"])
        for r in records:
            writer.writerow([r.model, r.img_size, _blank(r.patch_size), _blank(r.tokens), r.params, r.macs,
                             f"{r.gmacs:.4f}", r.activations, r.matmul_macs, r.device])
    else:
        print_table(records, fit_rows, checks)
    if checks is not None and not all(c["ok"] for c in checks):
        bad = [c for c in checks if not c["ok"]]
        print(f"mixerbench flops: {len(bad)} case(s) disagree by more than {CHECK_TOLERANCE:.0%}", file=sys.stderr)
        return 1
    return 0


def _blank(value) -> str:
    return "" if value is None else str(value)


def _dash(value) -> str:
    return "-" if value is None else str(value)


def _commas(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def print_table(records: list, fit_rows: list[dict], checks: list[dict] | None) -> None:
    width = max(len("model"), *(len(r.model) for r in records))
    print(f"{'model':<{width}} {'img':>5} {'patch':>5} {'tokens':>6} {'params':>13} {'GMACs':>10} {'activations':>13}")
    for r in records:
        print(f"{r.model:<{width}} {r.img_size:>5} {_dash(r.patch_size):>5} {_dash(r.tokens):>6} {r.params:>13,} "
              f"{r.gmacs:>10.3f} {r.activations:>13,}")
    uncounted = sorted({op for r in records for op in r.uncounted})
    if uncounted:
        print(f"\nuncounted (no FLOP rule, as in fvcore; per case in --format json): {', '.join(uncounted)}")
    on_cpu = [r for r in records if r.device != "meta"]
    if on_cpu:
        print(f"counted on real CPU tensors (cannot run on meta): {', '.join(sorted({r.model for r in on_cpu}))}")
    if fit_rows:
        print("\nMACs = a*S + b*S^2 + c (S tokens; convnets: S = pixels)")
        print(f"{'model':<{width}} {'axis':<10} {'fixed':>8} {'S range':>13} {'a':>11} {'b':>9} {'S* = a/b':>9} "
              f"{'res*':>6} {'quad share':>10} {'exponents':<17} verdict")
        for f in fit_rows:
            fixed = f"patch {f['patch_size']}" if f["patch_size"] is not None else (f"{f['img_size']} px" if f["img_size"] else "-")
            span = f"{f['x_min']:.0f}..{f['x_max']:.0f}"
            cross = "-" if f["crossover"] is None else f"{f['crossover']:.0f}"
            res = "-" if f["crossover_resolution"] is None else f"{f['crossover_resolution']:.0f}"
            exps = f"{min(f['local_exponents']):.2f}..{max(f['local_exponents']):.2f}"
            print(f"{f['model']:<{width}} {f['axis']:<10} {fixed:>8} {span:>13} {f['a']:>11.4g} {f['b']:>9.4g} {cross:>9} "
                  f"{res:>6} {f['quadratic_share']:>10.1%} {exps:<17} {f['verdict']}")
    if checks is not None:
        print("\nmatmul/conv/attention MACs, cross-checked (fvcore: only with --fvcore; closed form: reference models)")
        print(f"{'model':<{width}} {'img':>5} {'patch':>5} {'this counter':>16} {'FlopCounterMode':>16} "
              f"{'closed form':>16} {'fvcore':>16} {'max diff':>9}")
        for c in checks:
            print(f"{c['model']:<{width}} {c['img_size']:>5} {_dash(c['patch_size']):>5} {c['counter']:>16,} "
                  f"{c['flop_counter_mode']:>16,} {_commas(c['closed_form']):>16} {_commas(c['fvcore']):>16} "
                  f"{c['max_rel_diff']:>9.2e} {'ok' if c['ok'] else 'FAIL'}")
        agree = sum(c["ok"] for c in checks)
        worst = max(c["max_rel_diff"] for c in checks)
        print(f"{agree} of {len(checks)} cases agree within {CHECK_TOLERANCE:.0%} (largest difference {worst:.2e})")
