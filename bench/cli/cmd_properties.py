"""Check the seed's structural claims on small models: patch-permutation equivariance and isotropy.

For each model (random weights, small configuration: 64 px, 8 px patches, 2 blocks by
default; seconds on a CPU):

  patch_order_changes_logits               permuting the input's patches changes the logits
  equivariant_with_permuted_token_weights  (Mixer) ...unless the token-mixing weights are permuted too
  equivariant_with_permuted_pos_embed      (ViT) ...unless the positional embedding rows are permuted too
  invariant_without_pos_embed              (ViT) no positional embedding + mean pooling: order does not matter
  isotropy                                 per-block output shapes and bytes; Mixer and ViT all alike, ResNet not

"Same" means float32 max |diff| <= 1e-4; "changes" means max |diff| > 1e-3.
timm peers (timm:<name>) are listed as not applicable. Exit code 0 when every
applicable check passed, 1 otherwise (or when the models do not fit in memory: one line).
"""

from __future__ import annotations

import argparse
import json

from bench.cli.args import MAX_DEPTH, at_most, model_list, positive_int, progress, seed_int
from bench.errors import UsageError

NAME = "properties"
HELP = "check patch-permutation equivariance and isotropy of Mixer, ViT and ResNet"
DEFAULT_MODELS = "mixer_s16,vit_s16,resnet18"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        type=model_list,
        default=DEFAULT_MODELS,
        help=f"comma-separated model names (default: {DEFAULT_MODELS})",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    parser.add_argument("--img-size", type=positive_int, default=64, help="input side in pixels (default: 64)")
    parser.add_argument(
        "--patch-size",
        type=positive_int,
        default=8,
        help="patch grid to permute; also the Mixer's and ViT's patch size (default: 8)",
    )
    parser.add_argument(
        "--num-blocks", type=at_most(MAX_DEPTH, "the depth"), default=2, help="Mixer and ViT depth (default: 2)"
    )
    parser.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="seed for weights, inputs and the permutation, 0 <= seed < 2**63 (default: 0)",
    )


def run(args: argparse.Namespace) -> int:
    from bench.experiments.properties import ProbeConfig, run_checks

    try:
        probe = ProbeConfig(
            img_size=args.img_size, patch_size=args.patch_size, num_blocks=args.num_blocks, seed=args.seed
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        results = run_checks(args.models, probe, progress("checking"))
    except Exception as exc:  # out of memory: one line and exit 1, not a traceback
        import sys

        from bench.measure.memory import is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(
            f"mixerbench properties: error: out of memory ({detail}); try a smaller --img-size, a larger --patch-size "
            f"or fewer --models",
            file=sys.stderr,
        )
        return 1
    if args.format == "json":
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        width = max(len(r.model) for r in results)
        print(f"{'model':<{width}}  {'check':<40} {'result':<6}  measured")
        for r in results:
            status = "n/a" if r.passed is None else ("PASS" if r.passed else "FAIL")
            print(f"{r.model:<{width}}  {r.check:<40} {status:<6}  {r.detail}")
    return 0 if all(r.passed is not False for r in results) else 1
