"""Argument types and the parser class shared by the sub-commands (imports nothing heavy)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


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
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of positive integers, got {text!r}"
        ) from None
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


def progress(label: str, stream=None) -> Callable[[int, int, str], None] | None:
    """A progress callback ``(done, total, item)`` that redraws one line on stderr, or None when stderr is not a terminal.

    Long commands pass it to the library (which knows nothing of terminals), so logs and
    pipes stay free of carriage returns.
    """
    stream = stream or sys.stderr
    if not stream.isatty():
        return None

    def show(done: int, total: int, item: str) -> None:
        line = f"{label}: {done}/{total} {item}"
        print(f"\r{line[:79]:<79}", end="\n" if done == total else "", file=stream, flush=True)

    return show


def finite_float(text: str) -> float:
    """Parse one finite float (an argparse ``type=``): 'nan', 'inf' and '-inf' are refused."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """Parse one finite float above 0 (an argparse ``type=``)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def seed_int(text: str) -> int:
    """Parse a random seed: an integer with 0 <= seed < 2**63 (what torch.manual_seed accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**63), got {text!r}")
    return value


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; os.cpu_count() where that is unknown)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_count(text: str) -> int:
    """Parse torch threads: a positive integer no larger than the CPUs available to this process."""
    value = positive_int(text)
    cpus = available_cpus()
    if value > cpus:
        raise argparse.ArgumentTypeError(
            f"{value} threads, but only {cpus} CPU{'s' * (cpus != 1)} are available to this process"
        )
    return value


def out_folder(text: str):
    """Parse an output folder path (an argparse ``type=``); the empty string is refused (Path('') is '.')."""
    from pathlib import Path

    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    return Path(text)
