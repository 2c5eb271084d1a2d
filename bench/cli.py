"""The ``mixerbench`` command line (also ``python -m bench``).

Each sub-command lives in its own module ``bench/cmd_<name>.py`` exposing ``NAME``,
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; list it in ``COMMANDS``.
Bad input raises :class:`bench.errors.UsageError` (or fails argparse) and becomes one
line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UsageError

COMMANDS = (
    "bench.cmd_list",
    "bench.cmd_flops",
    "bench.cmd_sweep",
    "bench.cmd_report",
    "bench.cmd_compare",
    "bench.cmd_properties",
    "bench.cmd_shuffle",
    "bench.cmd_dashboard",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (no usage dump), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """Parse one positive integer (an argparse ``type=``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    """Parse "224,384,512" into positive integers (an argparse ``type=``)."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of positive integers, got {text!r}")
    try:
        values = [int(t) for t in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of positive integers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"values must be positive, got {text!r}")
    return values


def model_list(text: str) -> list[str]:
    """Parse "mixer_b16,vit_b16,timm:resnet50" and check every name exists (an argparse ``type=``)."""
    import architectures

    names = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of model names, got {text!r}")
    for name in names:
        if name.startswith(architectures.TIMM_PREFIX):
            import timm

            if not timm.is_model(name[len(architectures.TIMM_PREFIX) :]):
                raise argparse.ArgumentTypeError(f"unknown timm model {name!r}")
        else:
            try:
                architectures.family(name)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = OneLineParser(
        prog="mixerbench",
        description="MLP-Mixer next to ViT and ResNet: parameters, FLOPs, throughput and memory as resolution and patch count vary.",
    )
    parser.add_argument("--version", action="version", version=f"mixerbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"mixerbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mixerbench {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `mixerbench list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
