"""Cases shared by the suites. Append to these tuples; never reorder or rename entries.

asv keys results by parameter values, so renaming a value orphans its history on the
dashboard, and ``asv continuous`` only compares parameters both commits know.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

# A training step imports torch's compiler stack (torch._dynamo, about 1.5 s here) at its first optimizer step.
# asv's fork server (`asv.benchmark run_server`) imports the suites once and forks a process per benchmark:
# importing it there makes every benchmark process inherit it instead of paying for it again. asv's discovery and
# each `setup_cache` are fresh interpreters that never take a training step, so they skip it.
if sys.argv[1:2] == ["run_server"]:
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


@dataclass(frozen=True)
class CountedCache:
    """Every count, MAC fit and cost the deterministic suites track, for one commit (asv pickles it)."""

    counts: dict  # (model, img_size) -> bench.schema.Counts (suites/flops.py)
    fits: dict  # model -> bench.analysis.scaling.ScalingFit (suites/scaling.py)
    costs: dict  # (model, img_size, mode) -> bench.schema.Cost (suites/cost.py)


class Counted:
    """The base of the deterministic suites flops.Count, scaling.MacsFit and cost.Step.

    asv keys a ``setup_cache`` by its source line, so the three share this one run per commit: one process (asv
    starts a fresh interpreter for every ``setup_cache``, about 4 s of imports apiece) counts, fits and costs
    everything they track.
    """

    def setup_cache(self) -> CountedCache:
        from . import cost, flops, scaling

        return CountedCache(counts=flops.count_cases(), fits=scaling.fit_models(), costs=cost.cost_cases())


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


# --- Measured curves and verdicts (suites/curves.py, suites/measured.py, fvcore_count's *Axis classes) ---
# The configurations of `mixerbench sweep --preset quick` (bench.runs.presets), under short names
# (asv parameter values), by the label the sweep reports them under.
QUICK_SERIES = {
    "mixer_c128": "mixer C128 x2",
    "vit_d64_fused": "vit d64 x2 fused",
    "vit_d64_explicit": "vit d64 x2 explicit",
    "resnet18": "resnet18 w32",
    # ViT d=64 at the model's default attention (the quick entry without attn_backend; fused today): a commit
    # that changes the default moves this series, not the two that name their backend.
    "vit_d64": "vit d64 x2",
}
TOKEN_SERIES = ("mixer_c128", "vit_d64_fused", "vit_d64_explicit", "vit_d64")
PIXEL_SERIES = ("resnet18",)
# Resolution axis at the quick preset's patch 4: S = 256..2,304 (9x; ViT adds its class token).
CURVE_IMG_SIZES = (64, 96, 128, 160, 192)
# ResNet-18 over pixels: the quick preset's own sizes (multiples of 32; 8.4x the pixels).
PIXEL_IMG_SIZES = (320, 416, 544, 704, 928)
# Patch-size axis at a fixed resolution: S = 2,304 / 1,024 / 576 / 256 / 144 at 192 px (16x). Larger patches
# at a smaller size hold a constant floor (the stem's buffers) that outweighs the activations of 16 tokens.
CURVE_PATCH_IMG_SIZE = 192
CURVE_PATCH_SIZES = (4, 6, 8, 12, 16)

# The same on CUDA with the paper preset's models (batch 32, bfloat16); n/a without a GPU.
PAPER_SERIES = {
    "mixer_b16": "mixer_b16",
    "vit_b16_fused": "vit_b16 fused",
    "vit_b16_explicit": "vit_b16 explicit",
    "resnet50": "resnet50",
}
PAPER_TOKEN_SERIES = ("mixer_b16", "vit_b16_fused", "vit_b16_explicit")
PAPER_PIXEL_SERIES = ("resnet50",)
PAPER_IMG_SIZES = (224, 320, 448, 640, 768)  # patch 16: S = 196..2,304 (11.8x)
PAPER_PATCH_IMG_SIZE = 384
PAPER_PATCH_SIZES = (8, 16, 32, 48)  # S = 2,304 / 576 / 144 / 64 at 384 px

AXES = ("resolution", "patch_size")
# The series of suites/measured.py: the four verdict pairs of the quick configurations, ViT at its default
# attention (fused today) beside the explicit one.
MEASURED_SERIES = ("mixer_c128", "vit_d64", "vit_d64_explicit", "resnet18")
QUANTITIES = ("latency", "memory")  # memory: activation memory, the profiled steps' peak tensor bytes


def series_case(series: str, img_size: int, patch_size: int | None = None, device: str = "cpu"):
    """The sweep's Case for ``series`` (a key of QUICK_SERIES on CPU, of PAPER_SERIES on CUDA) at one size.

    Built by the sweep's own grid (``bench.runs.presets.build_grid``) from the preset's entry:
    on CPU the quick preset's batch, dtype and one thread; on CUDA the paper preset's.
    """
    import dataclasses

    from bench.runs import presets

    preset, label = (
        (presets.PRESETS["quick"], QUICK_SERIES[series])
        if device == "cpu"
        else (presets.PRESETS["paper"], PAPER_SERIES[series])
    )
    entries = [e for e in preset.entries if e.name == label]
    if not entries:  # "<stem>": the first entry of that stem at the model's default attention
        entries = [
            dataclasses.replace(e, overrides={k: v for k, v in e.overrides.items() if k != "attn_backend"})
            for e in preset.entries
            if e.stem == label
        ][:1]
    (entry,) = [dataclasses.replace(e, resolutions=None) for e in entries]
    (case,) = presets.build_grid(
        [entry],
        [img_size],
        [patch_size or preset.patch_sizes[0]],
        batch=preset.batch,
        device=device,
        dtypes=preset.dtypes[device][:1],
        modes=("infer",),
        threads=TIMED_THREADS if device == "cpu" else None,
    )
    return case
