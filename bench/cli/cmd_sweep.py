"""Measure time and memory over a grid of models, resolutions and patch sizes, then write the report.

With no arguments: the quick preset on CPU (a few minutes at most on 2 cores), the
paper preset on a GPU. Every case is appended to OUT/results.jsonl as soon as it is
measured; OUT/report.md and PNG plots are written at the end (`mixerbench report OUT`
rebuilds them). Ctrl-C keeps every finished case; `--resume --out OUT` runs the rest.
One sweep at a time writes into a folder (a lock on OUT/.lock): a second gets an error.

Presets:
  quick  narrow 2-block Mixer (C=128) and ViT (d=64; fused and explicit attention) and ResNet-18,
         patch 4, 64-192 px (S = 256..2,305 tokens), batch 1, float32, inference, one thread,
         2-3 timing rounds per series in a shuffled size order (2 once its verdicts are decided)
  paper  Mixer-B/16, ViT-B/16 (fused, explicit), ResNet-50, Mixer-L/16, ViT-L/16 at
         224-768 px, batch 32, bfloat16 on CUDA
  full   paper plus /32 models, up to 1024 px, float32 and bfloat16, inference and training

`--peers` instead times our Mixer-B/16, ViT-B/16 and ResNet-50 against timm's, interleaved
in one run (224 px, batch 8, float32, inference), and prints the latency ratios ours/timm
with their spread (OUT/peers.jsonl).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Literal

from bench.cli import shard_option
from bench.cli.args import (
    MAX_ROUNDS,
    at_most,
    batch_sizes,
    image_sizes,
    model_list,
    out_folder,
    patch_sizes,
    run_time,
    thread_count,
)
from bench.errors import UsageError

NAME = "sweep"
HELP = "measure time and memory over resolutions and patch sizes; write results.jsonl and the report (the main job)"


def _names(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",")]
        bad = [t for t in items if t not in choices]
        if not text.strip() or bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}; got {text!r}")
        return items

    return parse


def _attention_names(text: str) -> list[str]:
    """--attention's type: the backends ``architectures.vit`` knows (imported only when the option is given)."""
    from architectures.vit import ATTENTION_BACKENDS

    return _names(ATTENTION_BACKENDS)(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.runs.presets import PRESETS
    from bench.schema import COMPILE_MODES, DTYPES, MODES

    parser.add_argument("--preset", choices=tuple(PRESETS), help="grid to run (default: quick on CPU, paper on CUDA)")
    parser.add_argument(
        "--models",
        type=model_list,
        help="comma-separated models instead of the preset's (reference names or timm:<name>)",
    )
    parser.add_argument("--resolutions", type=image_sizes, help="comma-separated image sizes in pixels")
    parser.add_argument(
        "--patch-sizes",
        type=patch_sizes,
        help="comma-separated patch sizes (token models only; default: the preset's, or each model's own with --models)",
    )

    parser.add_argument(
        "--attention",
        type=_attention_names,
        help="attention backends of reference ViTs: explicit, "
        "sdpa (torch's default dispatch; alias fused), sdpa-math, sdpa-flash, sdpa-efficient, sdpa-cudnn "
        "(default: the preset's; fused with --models); one the device cannot run is an error",
    )
    parser.add_argument(
        "--batch",
        type=batch_sizes,
        help="comma-separated batch sizes, each a series of its own (default: the preset's; "
        "with --peers: one batch, default 8)",
    )
    parser.add_argument(
        "--max-batch", action="store_true", help="search the largest batch that fits for every case (CUDA)"
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda when available, else cpu"
    )
    parser.add_argument("--dtype", type=_names(DTYPES), help="comma-separated: float32, bfloat16, float16 (autocast)")
    parser.add_argument("--mode", type=_names(MODES), help="comma-separated: infer, train (default: the preset's)")
    parser.add_argument(
        "--compile",
        type=_names(COMPILE_MODES),
        nargs="?",
        const=["default"],
        metavar="MODES",
        help="comma-separated torch.compile modes, each a series of its own: none (eager, the default), default, "
        "reduce-overhead, max-autotune (the last two on CUDA only); --compile alone: default",
    )
    parser.add_argument("--min-run-time", type=run_time, help="seconds of timed steps per case (default: the preset's)")
    parser.add_argument(
        "--threads", type=thread_count, help="torch threads, at most the CPUs available (default: torch's own choice)"
    )
    parser.add_argument(
        "--out", type=out_folder, help="output folder (default: a new mixerbench-results/<device>-<preset>-<time>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue OUT/results.jsonl: skip cases recorded there as ok or oom (with --peers: pairs already in OUT/peers.jsonl)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="time ours against timm (Mixer-B/16, ViT-B/16, ResNet-50), interleaved; print ratios",
    )
    parser.add_argument(
        "--rounds",
        type=at_most(MAX_ROUNDS, "rounds"),
        help="timing rounds per series, sizes shuffled in each (default: the preset's); "
        "with --peers: interleaved rounds per pair (default: 5)",
    )
    shard_option.add_argument(parser)


def _check(args: argparse.Namespace) -> None:
    # --rounds, --threads and --min-run-time are checked by their argparse types
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out DIR (the folder of the sweep to continue)")


def _folder(out: Path, create: bool) -> None:
    """Check (and with ``create`` make) the output folder; the files a sweep opens there must be regular files."""
    from bench import files, schema
    from bench.runs import machine

    try:
        files.check_writable(out)
        if create:
            files.make_folder(out)
    except ValueError as exc:
        raise UsageError(f"--out {exc}") from None
    for name in (files.LOCK_NAME, schema.RESULTS_FILENAME, schema.PEERS_FILENAME, machine.FILENAME):
        files.check_regular(out / name)  # a symlink, FIFO or device: UnsafeFile, one line and exit 2


def _peers_to_run(out: Path, pairs, resume: bool, settings: dict):
    """The pairs to time into ``out``: an existing peers.jsonl is refused without --resume, which skips the pairs
    it holds with the same ``settings`` (img_size, batch, device, dtype, mode)."""
    from bench import schema

    path = out / schema.PEERS_FILENAME
    if not path.exists():
        return pairs
    if not resume:
        raise UsageError(f"{path} exists; add --resume to time the pairs it lacks, or choose another --out")
    done = {
        (r.case.ours, r.case.timm)
        for r in schema.read_peers(path)[0]
        if r.status == "ok" and all(getattr(r.case, k) == v for k, v in settings.items())
    }
    return tuple(p for p in pairs if tuple(p) not in done)


def run(args: argparse.Namespace) -> int:
    import sys

    from bench import files, report, schema
    from bench.measure import attention, compiling, timing
    from bench.runs import presets, sweep

    _check(args)
    shard = shard_option.resolve(args)
    try:
        device = timing.resolve_device(args.device)
        preset = presets.PRESETS[args.preset or ("paper" if device == "cuda" else "quick")]
        dtypes = args.dtype or list(preset.dtypes[device])
        for dtype in dtypes:
            timing.check_dtype(device, dtype)
            for backend in args.attention or ():
                attention.check_backend(device, backend, dtype)
        for mode in args.compile or ():
            compiling.check_mode(device, mode)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.max_batch and device != "cuda":
        raise UsageError("--max-batch searches GPU memory; it needs --device cuda")
    out = args.out or sweep.default_out(
        device, ("peers" if args.peers else preset.name) + shard_option.default_suffix(shard)
    )
    _folder(out, create=False)

    if args.peers:
        pairs: tuple[tuple[str, str], ...] = presets.PEER_PAIRS
        if args.models:
            if len(args.models) % 2:
                raise UsageError("--peers --models takes pairs: ours,timm:<name>,ours,timm:<name>...")
            pairs = tuple(zip(args.models[::2], args.models[1::2]))
        img_size = args.resolutions[0] if args.resolutions else 224
        if args.batch and len(args.batch) > 1:
            raise UsageError("--peers times one batch: give --batch a single size")
        settings = dict(
            img_size=img_size,
            batch=args.batch[0] if args.batch else 8,
            device=device,
            dtype=args.dtype[0] if args.dtype else "float32",
            mode=(args.mode or ["infer"])[0],
        )
        pairs = _peers_to_run(out, pairs, args.resume, settings)
        _folder(out, create=True)
        try:
            done = sweep.run_peers(
                pairs, out=out, **settings, rounds=args.rounds or 5, threads=args.threads, log=sys.stdout
            )
        except files.FolderBusy as exc:
            raise UsageError(str(exc)) from None
        except sweep.RecordNotWritten as exc:
            print(f"mixerbench sweep: error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {out / 'peers.jsonl'}")
        if len(done) < len(pairs):
            print(
                f"mixerbench sweep: error: {len(pairs) - len(done)} of {len(pairs)} pairs failed (see above)",
                file=sys.stderr,
            )
            return 1
        return 0

    patch_sizes = args.patch_sizes or (list(preset.patch_sizes) if not args.models else [None])
    entries = presets.expand(preset, args.models, args.attention)
    if args.resolutions:  # the command line's sizes for every model
        entries = [dataclasses.replace(e, resolutions=None) for e in entries]
    batches: list[int | Literal["max"]] = ["max"] if args.max_batch else list(args.batch or [preset.batch])
    cases = [
        case
        for batch in batches
        for case in presets.build_grid(
            entries,
            args.resolutions or preset.resolutions,
            patch_sizes,
            batch=batch,
            device=device,
            dtypes=dtypes,
            modes=args.mode or preset.modes,
            compiles=args.compile or ["none"],
            threads=args.threads if args.threads is not None else preset.threads,
        )
    ]
    try:
        sweep.validate_cases(cases)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if (
        (out / "results.jsonl").exists() and (out / "results.jsonl").stat().st_size > 0 and not args.resume
    ):  # empty: nothing to lose
        raise UsageError(f"{out / 'results.jsonl'} exists; add --resume to continue it, or choose another --out")
    cases = shard_option.select(cases, shard, out, args.resume)

    _folder(out, create=True)
    if not args.models:
        print(f"preset {preset.name}: {preset.note}")
    config = sweep.SweepConfig(
        cases=tuple(cases),
        out=out,
        preset=preset.name,
        resume=args.resume,
        min_run_time=args.min_run_time or preset.min_run_time,
        min_runs=preset.min_runs,
        warmup=preset.warmup,
        threads=args.threads if args.threads is not None else preset.threads,
        rounds=args.rounds or preset.rounds,
        min_rounds=None if args.rounds else preset.min_rounds,  # --rounds N: exactly N rounds
        shard=shard,
    )
    try:
        records = sweep.run_sweep(config)
    except files.FolderBusy as exc:
        raise UsageError(str(exc)) from None
    except sweep.RecordNotWritten as exc:
        print(f"mixerbench sweep: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished cases are in {out / 'results.jsonl'}; continue with the same arguments plus --resume --out {out}"
        )
        raise
    failed = [r for r in records if r.status not in schema.FINAL_STATUSES]  # error, killed: rerun by --resume
    if not args.no_report:
        from bench.runs.predictions import predict_records

        written, problems = schema.read_results(out / schema.RESULTS_FILENAME)  # resumed cases too
        summary = report.write_report(out, written, problems, predict_records(written))
        print(summary)
    print(f"results: {out / 'results.jsonl'}" + ("" if args.no_report else f"; report: {out / 'report.md'}"))
    return 1 if failed else 0
