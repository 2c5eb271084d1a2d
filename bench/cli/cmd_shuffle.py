"""The patch-shuffle experiment, small: tiny Mixer, ViT and ResNet on original, patch-shuffled and pixel-shuffled digits.

Procedural 16x16 seven-segment digits (nothing downloaded), one fixed global
permutation of the 4x4 patches, one of the pixels; the same training budget and batch
order for every model and condition; several seeds. A Mixer started from the
correspondingly permuted initialisation is also trained on the patch-shuffled images
(condition patch_shuffled_permuted_init_float64): it must follow the original Mixer's
loss trajectory (original_float64) up to float rounding (max |diff| <= 1e-6) and end
with the same accuracy. This pair trains in float64: in float32 rounding differences
grow during training (see bench/experiments/shuffle.py).

Writes into --out (the runs stream to runs.jsonl.partial as each ends; at the end all
four outputs are moved into place together, so an interrupted run, with --overwrite too,
leaves the earlier results untouched and its finished runs in runs.jsonl.partial; with --overwrite
the earlier runs.jsonl is kept beside as runs.jsonl.replaced-<UTC time>, with a warning):
  runs.jsonl    one JSON line per training run
  summary.json  configuration, accuracy mean/std/min/max per model and condition, the claim check
  shuffle.md    the table;  shuffle.png  the plot
About 1-3 minutes on a 2-core CPU with the defaults. Exit code 0 when the claim check
passes, 1 when it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import files
from bench.cli.args import MAX_IMAGES, MAX_SEEDS, MAX_STEPS, at_most, out_folder
from bench.errors import UsageError
from bench.files import write_together

NAME = "shuffle"
HELP = "train tiny Mixer, ViT and ResNet on patch- and pixel-shuffled images (the paper's Sec. 3.4, small)"
OUTPUTS = ("runs.jsonl", "summary.json", "shuffle.md", "shuffle.png")
PARTIAL = "runs.jsonl.partial"  # the runs of a run in progress (or interrupted)


def kind_list(text: str) -> list[str]:
    """Parse "mixer,resnet" into model kinds of the experiment (an argparse ``type=``)."""
    from bench.experiments.shuffle import MODELS

    kinds = [t.strip() for t in text.split(",")]
    bad = [k for k in kinds if k not in MODELS]
    if not text.strip() or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(MODELS)}, got {text!r}")
    return list(dict.fromkeys(kinds))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=out_folder, default="shuffle-results", help="output directory (default: shuffle-results)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results already in --out (the earlier runs.jsonl is kept beside it)",
    )
    parser.add_argument(
        "--seeds", type=at_most(MAX_SEEDS, "seeds"), default=3, help="number of seeds, 0..N-1 (default: 3)"
    )
    parser.add_argument(
        "--steps", type=at_most(MAX_STEPS, "steps"), default=100, help="training steps per run (default: 100)"
    )
    parser.add_argument(
        "--train-size",
        type=at_most(MAX_IMAGES, "training images"),
        default=2000,
        help="training images (default: 2000)",
    )
    parser.add_argument(
        "--test-size", type=at_most(MAX_IMAGES, "test images"), default=500, help="test images (default: 500)"
    )
    parser.add_argument(
        "--models",
        type=kind_list,
        default=["mixer", "vit", "resnet"],
        help="subset of mixer,vit,resnet (default: all three)",
    )


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create ``out`` and prove it writable before any training; refuse to clobber results silently."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise UsageError(
            f"--out {out} already holds results ({', '.join(existing)}); pass --overwrite or choose another directory"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to --out {out}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    from bench.experiments.shuffle import (
        DataConfig,
        ExperimentConfig,
        TrainConfig,
        check_claim,
        plot,
        run_experiment,
        summarize,
        summary_json,
        summary_markdown,
    )

    try:
        config = ExperimentConfig(
            data=DataConfig(train_size=args.train_size, test_size=args.test_size),
            train=TrainConfig(steps=args.steps),
            seeds=tuple(range(args.seeds)),
            models=tuple(args.models),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out)
    prepare_out(out, args.overwrite)

    runs_path = out / "runs.jsonl"
    partial = out / PARTIAL  # runs stream here; every output is swapped in together at the end
    start = time.perf_counter()
    with open(partial, "w", encoding="utf-8") as runs_file:

        def on_record(record, i, total):
            runs_file.write(json.dumps(record.to_json()) + "\n")
            runs_file.flush()
            print(
                f"[{i}/{total}] {record.model} {record.condition} seed {record.seed}: accuracy {100 * record.accuracy:.1f}% "
                f"({record.seconds:.1f} s; elapsed {time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

        print(
            f"training {len(config.runs())} runs ({config.train.steps} steps each); results stream to {partial}",
            file=sys.stderr,
            flush=True,
        )
        try:
            records = run_experiment(config, on_record)
        except KeyboardInterrupt:
            print(
                f"interrupted: the finished runs are in {partial}; {out}'s earlier results are untouched",
                file=sys.stderr,
                flush=True,
            )
            raise
        os.fsync(runs_file.fileno())

    summaries = summarize(records)
    claim = check_claim(records)
    text = summary_markdown(config, summaries, claim)
    summary = summary_json(config, summaries, claim, seconds=time.perf_counter() - start)
    if runs_path.exists():  # --overwrite: the earlier runs are kept beside, never lost
        kept = files.keep_beside(runs_path, "replaced")
        print(f"warning: the earlier {runs_path} is kept as {kept}", file=sys.stderr, flush=True)
    write_together(
        [
            (out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")),
            (out / "shuffle.md", lambda p: p.write_text(text, encoding="utf-8")),
            (out / "shuffle.png", lambda p: plot(records, summaries, p)),
        ],
        ready=[(partial, runs_path)],
    )  # renames only after everything is written: all four outputs change together
    print(f"{text}\nwrote {', '.join(str(out / name) for name in OUTPUTS)}")
    return 0 if claim is None or claim.passed else 1
