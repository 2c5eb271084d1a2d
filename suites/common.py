"""Cases shared by the suites. Append to these tuples; never reorder or rename entries.

asv keys results by parameter values, so renaming a value orphans its history on the
dashboard, and ``asv continuous`` only compares parameters both commits know.
"""

from __future__ import annotations

# torch imports its compiler stack lazily when the first module is built (3-5 s here).
# asv's fork server imports the suites once and forks a process per benchmark: importing
# it here makes every benchmark process inherit it instead of paying for it again.
import torch._dynamo  # noqa: F401

# Models whose parameters and MACs are tracked, at each of RESOLUTIONS (counted on the
# meta device: about 0.1 s a case, no memory).
COUNTED_MODELS = ("mixer_s16", "mixer_b16", "vit_s16", "vit_b16", "resnet50")
RESOLUTIONS = (224, 384)

# One model per family for the two-term fit of MACs against tokens (pixels for ResNet),
# over SCALING_RESOLUTIONS (multiples of 32 so every model divides them evenly; S from 196
# to 3,136 tokens for a patch of 16).
SCALED_MODELS = ("mixer_b16", "vit_b16", "resnet50")
SCALING_RESOLUTIONS = (224, 320, 448, 640, 896)

# Timed and memory cases: small configurations that run in a fraction of a second on a
# 2-core CPU (a whole-size model at 224 px takes seconds per training step there).
TIMED_MODELS = ("mixer_s16", "vit_s16", "resnet18")
TIMED_IMG_SIZE = 96  # 36 tokens for a patch of 16
TIMED_BATCH = 2
# One CPU thread: a time_ gate must see the code, not the scheduler. With torch's default
# (every core) a step on a 2-core runner that anything else shares swings by 10x (measured
# here: 2.4 s with 2 threads under load vs 0.17 s with 1, same Mixer step); one thread
# keeps the spread to a few percent. `mixerbench sweep` measures full-machine throughput.
TIMED_THREADS = 1
DEVICES = ("cpu", "cuda")
MODES = ("infer", "train")

# Verdicts as numbers, ordered so that a move towards "quadratic" is an increase, which
# asv reports as a regression (asv treats every increase of a track_ value as worse).
VERDICT_CODES = {"linear": 0, "inconclusive": 1, "quadratic": 2}


def prepare_cpu() -> None:
    """Run this benchmark process on TIMED_THREADS threads (asv forks one process per benchmark)."""
    import torch

    torch.set_num_threads(TIMED_THREADS)


def build_step(model: str, device: str, mode: str):
    """The step every timed and memory suite measures: TIMED_BATCH images of TIMED_IMG_SIZE, float32, random weights.

    Runs the benchmark process on TIMED_THREADS threads first (CPU); skips (n/a) CUDA
    cases where torch sees no GPU.
    """
    from bench.measure import timing
    from bench.schema import Case

    require_device(device)
    prepare_cpu()
    case = Case(
        model,
        TIMED_IMG_SIZE,
        batch=TIMED_BATCH,
        device=device,
        mode=mode,
        channels_last=timing.uses_channels_last(model),
    )
    return timing.case_step(case, timing.build_case(case))


def require_device(device: str) -> None:
    """Skip a case (asv shows it as n/a) when ``device`` is "cuda" and torch sees no GPU."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA GPU visible to torch")
