"""Predict step time, throughput and peak memory on a GPU from the counted cost (no GPU, no weights needed).

Every case is counted on the meta device as CUDA runs it (autocast's dtypes, the fused
attention kernels) and priced kernel by kernel on each device of the device table: matmuls
and convolutions by how their output tiles fill the SMs, memory-bound operators at a
calibrated fraction of the bandwidth, a least time per kernel (launch and dispatch).
Everything printed is a PREDICTION, with the model's validated error
(docs/methodology/prediction.md). float16 and bfloat16 mean autocast (timm's --amp).

examples:
  mixerbench predict --models timm:vit_base_patch16_224,timm:mixer_b16_224,timm:resnet50 \\
      --resolutions 224 --batch 256 --dtype float16 --gpu rtx-4090 --json
  mixerbench predict --models mixer_b16,vit_b16,resnet50 --gpu h100-sxm --gpu l4 --out predicted/
  mixerbench predict --list-devices
  mixerbench predict --devices my-gpus.json --gpu my-gpu
  mixerbench predict --cpu-results results/cpu-quick-v3 --gpu cpu --dtype float32
  mixerbench predict --validate          # calibration and leave-one-device-out error on the shipped data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.cli.args import batch_size, image_sizes, model_list, out_folder, patch_sizes, progress
from bench.errors import UsageError

NAME = "predict"
HELP = "predict step time, throughput and peak memory on a GPU from the counted cost (a prediction, no GPU needed)"
DEFAULT_MODELS = ("mixer_b16", "vit_b16", "resnet50")
DEFAULT_GPU = "h100-sxm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        type=model_list,
        default=None,
        help=f"comma-separated reference models or timm:<name> (default: {','.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--resolutions",
        type=image_sizes,
        default=None,
        help="comma-separated square input sizes in pixels (default: 224,448,512,672,896,1024, each model "
        "taking those its patch divides)",
    )
    parser.add_argument(
        "--patch-sizes", type=patch_sizes, default=None, help="comma-separated patch sizes (default: each preset's own)"
    )
    parser.add_argument("--batch", type=batch_size, default=256, help="images per step (default: 256)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float16",
        help="compute dtype; float16/bfloat16 mean autocast, as timm's --amp (default: float16)",
    )
    parser.add_argument("--mode", choices=("infer", "train"), default="infer", help="the step (default: infer)")
    parser.add_argument(
        "--gpu",
        action="append",
        default=None,
        metavar="NAME",
        help=f"a device of the table (repeatable; default: {DEFAULT_GPU}); --list-devices names them",
    )
    parser.add_argument(
        "--devices",
        type=Path,
        default=None,
        metavar="FILE",
        help="a device table of your own (JSON, the layout of bench/data/devices.json) added to the shipped one",
    )
    parser.add_argument(
        "--cpu-results",
        type=Path,
        default=None,
        metavar="DIR",
        help="add a device `cpu` built from the matmul roof and copy bandwidth the CPU sweep in DIR measured",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per (case, gpu) on stdout")
    parser.add_argument(
        "--out",
        type=out_folder,
        default=None,
        metavar="DIR",
        help="also write DIR/prediction.md (table) and DIR/predicted_throughput.png (throughput against "
        "resolution per model on each GPU, with the predicted crossovers)",
    )
    parser.add_argument("--list-devices", action="store_true", help="list the devices and their numbers, then exit")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="price the shipped measured data (timm's RTX 3090/4090 tables, results/h200-*) and print the "
        "calibration and leave-one-device-out error tables",
    )


def _table(args: argparse.Namespace):
    import dataclasses

    from bench import files, schema
    from bench.analysis import predict

    try:
        table = predict.load_table(args.devices)
        if args.cpu_results is not None:
            path = args.cpu_results / schema.RESULTS_FILENAME
            if not files.check_regular(path):
                raise ValueError(f"{args.cpu_results} holds no {schema.RESULTS_FILENAME}")
            records, _problems = schema.read_results(path)
            table = dataclasses.replace(table, devices={**table.devices, "cpu": predict.cpu_device(records)})
        return table
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from bench.analysis import predict
    from bench.schema import Case, encode

    table = _table(args)
    if args.list_devices:
        print(predict.devices_table(table))
        return 0
    if args.validate:
        from bench.analysis import calibration

        print(calibration.validation_report(table))
        return 0
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    gpus = args.gpu or [DEFAULT_GPU]
    unknown = [g for g in gpus if g not in table.devices]
    if unknown:
        raise UsageError(f"unknown --gpu {unknown[0]!r} (known: {', '.join(sorted(table.devices))})")
    from bench.runs.counts import plan

    models = args.models if args.models is not None else list(DEFAULT_MODELS)
    try:
        grid = plan(models, args.resolutions, args.patch_sizes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cases = [
        Case(c.model, c.img_size, c.patch_size, batch=args.batch, device="cuda", dtype=args.dtype, mode=args.mode)
        for c in grid
    ]
    show = progress("counting") if not args.json else None
    predictions = []
    for i, case in enumerate(cases, 1):
        try:
            predictions += [predict.predict_case(case, g, table.devices, classes=table.classes) for g in gpus]
        except (ValueError, RuntimeError, NotImplementedError, TypeError) as exc:
            raise UsageError(f"{case.model} at {case.img_size} px cannot be counted: {exc}") from None
        if show:
            show(i, len(cases), f"{case.model} {case.img_size}")
    if args.json:
        for p in predictions:
            print(json.dumps(encode(p), sort_keys=True))
    else:
        print(predict.predictions_table(predictions))
    if args.out is not None:
        from bench.analysis import prediction_report

        for path in prediction_report.write(args.out, predictions, table.validation):
            print(f"wrote {path}")
    return 0
