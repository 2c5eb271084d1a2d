"""List the reference model zoo with its parameter counts at 224 px.

No model is built: the counts come from closed forms of each preset's configuration
(bench.measure.formulas), so this takes no memory and well under a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

NAME = "list"
HELP = "list the reference models with their parameter counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")


def run(args: argparse.Namespace) -> int:
    from bench.measure.formulas import zoo

    rows = zoo()
    if args.format == "json":
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return 0
    print(f"{'model':<11} {'family':<7} {'patch':>5} {'tokens':>6} {'params':>13}  (at 224 px)")
    for r in rows:
        patch = "-" if r.patch_size is None else r.patch_size
        tokens = "-" if r.tokens is None else r.tokens
        print(f"{r.model:<11} {r.family:<7} {patch:>5} {tokens:>6} {r.params:>13,}")
    print("\nAny timm model also works as a peer: timm:<name>, e.g. timm:convnext_tiny.")
    return 0
