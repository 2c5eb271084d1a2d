"""Argument types and the parser class shared by the sub-commands (imports nothing heavy)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

# The largest values a size or count may take on the command line: refused while parsing,
# before any model is built or any memory allocated (a huge size reached the allocator).
MAX_IMG_SIZE = 8192  # pixels per side: ViT-B/16 has 262,145 tokens there, far past any measured crossover
MAX_PATCH_SIZE = MAX_IMG_SIZE
MAX_BATCH = 65536
MAX_ROUNDS = 1000
MAX_MIN_RUN_TIME = 3600.0  # seconds of timed steps per case
MAX_SEEDS = 1000
MAX_STEPS = 1_000_000
MAX_DEPTH = 1000  # blocks of a Mixer or ViT
MAX_IMAGES = 1_000_000  # synthetic training or test images (shuffle)


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


def at_most(limit: int, what: str) -> Callable[[str], int]:
    """An argparse ``type=``: one positive integer no larger than ``limit`` (the refusal names the limit)."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"{what} must be at most {limit:,}, got {text!r}")
        return value

    return parse


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


def list_at_most(limit: int, what: str) -> Callable[[str], list[int]]:
    """An argparse ``type=``: :func:`int_list`, each value no larger than ``limit`` (the refusal names the limit)."""

    def parse(text: str) -> list[int]:
        values = int_list(text)
        big = [v for v in values if v > limit]
        if big:
            raise argparse.ArgumentTypeError(f"{what} must be at most {limit:,}, got {big[0]:,}")
        return values

    return parse


image_sizes = list_at_most(MAX_IMG_SIZE, "image sizes (pixels per side)")
patch_sizes = list_at_most(MAX_PATCH_SIZE, "patch sizes (pixels per side)")
batch_size = at_most(MAX_BATCH, "the batch")
batch_sizes = list_at_most(MAX_BATCH, "batch sizes")


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

    from bench.text import terminal

    write = getattr(stream, "write_raw", stream.write)  # the carriage return is ours; the item is escaped

    def show(done: int, total: int, item: str) -> None:
        line = terminal(f"{label}: {done}/{total} {item}")
        write(f"\r{line[:79]:<79}" + ("\n" if done == total else ""))
        stream.flush()

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


def run_time(text: str) -> float:
    """Seconds of timed steps per case: above 0 and at most :data:`MAX_MIN_RUN_TIME`."""
    value = positive_float(text)
    if value > MAX_MIN_RUN_TIME:
        raise argparse.ArgumentTypeError(f"seconds per case must be at most {MAX_MIN_RUN_TIME:g}, got {text!r}")
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
