"""The patch-shuffle experiment (Tolstikhin et al. 2021, Sec. 3.4), small enough for a CPU.

Tiny Mixer, ViT and ResNet models are trained, with the same budget and the same batch
order, on procedural seven-segment digits (nothing is downloaded) under three
conditions: the original images, one fixed global permutation of their P x P patches,
and one fixed global permutation of their pixels. Several seeds give a mean and a spread.

The exact claim is checked too: a Mixer started from the *correspondingly permuted*
initialisation (see :func:`bench.experiments.properties.permute_token_order`) and trained on
patch-shuffled images follows the same trajectory as the unpermuted Mixer on the
original images, up to float rounding, so it ends with the same accuracy. The pair
trains in float64 (conditions ``original_float64`` and
``patch_shuffled_permuted_init_float64``): in float32 the two trajectories start equal
to about 1e-7, but the rounding of sums taken in permuted order is amplified by
training (measured here: loss differences up to 1e-3 and one test image after 100
steps), while in float64 they stay within 1e-6. Every other run is float32 and starts
from the plain initialisation of its seed.

Training is deterministic: the seed fixes the weights and the batch order, and
``torch.use_deterministic_algorithms(True)`` is on while training.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import architectures
from bench.experiments.properties import permute_patches, permute_pixels, permute_token_order, random_permutation
from bench.measure.timing import torch_threads

MODELS = ("mixer", "vit", "resnet")
CONDITIONS = ("original", "patch_shuffled", "pixel_shuffled")
CLAIM_CONDITIONS = ("original_float64", "patch_shuffled_permuted_init_float64")  # Mixer only: the exact claim
ALL_CONDITIONS = CONDITIONS + CLAIM_CONDITIONS

# Which segments each digit lights: a top, b top right, c bottom right, d bottom, e bottom left, f top left, g middle.
SEGMENTS = ("abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg", "abcdfg")


@dataclass(frozen=True)
class DataConfig:
    img_size: int = 16  # square, one channel
    train_size: int = 2000
    test_size: int = 500
    jitter: int = 1  # the digit's centre moves up to this many pixels from the image centre
    noise: float = 0.15  # std of the Gaussian noise added to every pixel
    seed: int = 1234  # the data set (and the two fixed permutations) do not change with the training seed


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100
    batch_size: int = 64
    lr: float = 3e-3  # Adam, constant
    patch_size: int = 4  # the Mixer's and ViT's patch, and the grid the patch shuffle permutes
    threads: int = 1  # torch threads while training: these models are tiny, and on a shared 2-core CPU
    # two threads ran 5-40x slower per step than one (measured here under load)


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[str, ...] = MODELS

    def __post_init__(self):
        side = self.data.img_size // self.train.patch_size
        if self.data.img_size % self.train.patch_size or side * side < 2:
            raise ValueError(
                f"img_size {self.data.img_size} must be a multiple of patch_size {self.train.patch_size} with at least 2 patches"
            )
        if self.data.img_size < 8:
            raise ValueError(f"img_size must be at least 8 to draw a digit, got {self.data.img_size}")
        for name, value in (
            ("train_size", self.data.train_size),
            ("test_size", self.data.test_size),
            ("steps", self.train.steps),
            ("batch_size", self.train.batch_size),
            ("threads", self.train.threads),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not self.seeds:
            raise ValueError("need at least one seed")
        unknown = sorted(set(self.models) - set(MODELS))
        if unknown or not self.models:
            raise ValueError(f"models must be among {', '.join(MODELS)}, got {', '.join(self.models) or 'none'}")

    def runs(self) -> list[tuple[str, str, int]]:
        """Every (model, condition, seed) to train, in order."""
        plan = []
        for seed in self.seeds:
            for model in self.models:
                conditions = ALL_CONDITIONS if model == "mixer" else CONDITIONS
                plan += [(model, condition, seed) for condition in conditions]
        return plan


@dataclass(frozen=True)
class RunRecord:
    model: str
    condition: str
    seed: int
    accuracy: float  # on the test set, after training
    final_loss: float  # training loss of the last batch
    losses: tuple[float, ...]  # training loss at every step
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Summary:
    model: str
    condition: str
    n: int
    mean: float
    std: float  # sample standard deviation over seeds (0 for one seed)
    min: float
    max: float


# ---------------------------------------------------------------------------- data


def seven_segment_digits(
    n: int, img_size: int, jitter: int, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy seven-segment digits: images (n, 1, img_size, img_size) float32, labels (n,) int64.

    Each digit has a random width, height, stroke thickness, brightness and a centre
    jittered around the image centre: spatial structure a convolution exploits and a
    patch shuffle breaks up.
    """
    rng = np.random.default_rng(seed)
    s = img_size
    labels = rng.integers(0, 10, n)
    w = rng.integers(round(0.4 * s), round(0.55 * s) + 1, n)  # digit box width
    h = rng.integers(round(0.65 * s), round(0.8 * s) + 1, n)  # digit box height
    t = rng.integers(max(1, s // 10), max(1, s // 8) + 1, n)  # stroke thickness
    x0 = np.clip(s // 2 + rng.integers(-jitter, jitter + 1, n) - w // 2, 0, s - w)
    y0 = np.clip(s // 2 + rng.integers(-jitter, jitter + 1, n) - h // 2, 0, s - h)
    mid = y0 + h // 2
    xs = np.arange(s)[None, None, :]
    ys = np.arange(s)[None, :, None]

    def box(left, right, top, bottom):  # (n, s, s) mask of [left, right) x [top, bottom)
        return (
            (xs >= left[:, None, None])
            & (xs < right[:, None, None])
            & (ys >= top[:, None, None])
            & (ys < bottom[:, None, None])
        )

    masks = {
        "a": box(x0, x0 + w, y0, y0 + t),
        "g": box(x0, x0 + w, mid - t // 2, mid - t // 2 + t),
        "d": box(x0, x0 + w, y0 + h - t, y0 + h),
        "f": box(x0, x0 + t, y0, mid + 1),
        "b": box(x0 + w - t, x0 + w, y0, mid + 1),
        "e": box(x0, x0 + t, mid, y0 + h),
        "c": box(x0 + w - t, x0 + w, mid, y0 + h),
    }
    strokes = np.zeros((n, s, s), dtype=bool)
    for segment, mask in masks.items():
        lit = np.array([segment in SEGMENTS[label] for label in labels])
        strokes |= mask & lit[:, None, None]
    brightness = rng.uniform(0.5, 1.0, (n, 1, 1))
    images = strokes * brightness + rng.normal(0.0, noise, (n, s, s))
    return torch.from_numpy(images.astype(np.float32)[:, None]), torch.from_numpy(labels.astype(np.int64))


@dataclass(frozen=True)
class Dataset:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    patch_perm: torch.Tensor  # the one fixed patch permutation
    pixel_perm: torch.Tensor  # the one fixed pixel permutation

    def under(self, condition: str, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(train images, test images) under ``condition``; labels do not change."""
        if condition in ("original", "original_float64"):
            return self.train_x, self.test_x
        if condition in ("patch_shuffled", "patch_shuffled_permuted_init_float64"):
            return (
                permute_patches(self.train_x, self.patch_perm, patch_size),
                permute_patches(self.test_x, self.patch_perm, patch_size),
            )
        if condition == "pixel_shuffled":
            return permute_pixels(self.train_x, self.pixel_perm), permute_pixels(self.test_x, self.pixel_perm)
        raise ValueError(f"unknown condition {condition!r}")


def make_dataset(data: DataConfig, patch_size: int) -> Dataset:
    train_x, train_y = seven_segment_digits(data.train_size, data.img_size, data.jitter, data.noise, data.seed)
    test_x, test_y = seven_segment_digits(data.test_size, data.img_size, data.jitter, data.noise, data.seed + 1)
    side = data.img_size // patch_size
    return Dataset(
        train_x,
        train_y,
        test_x,
        test_y,
        patch_perm=random_permutation(side * side, data.seed + 2),
        pixel_perm=random_permutation(data.img_size**2, data.seed + 3),
    )


# ---------------------------------------------------------------------------- models and training


def tiny_model(kind: str, img_size: int, patch_size: int, seed: int) -> nn.Module:
    """A few-hundred-thousand-parameter model of family ``kind``, one input channel, 10 classes."""
    torch.manual_seed(seed)
    common = dict(img_size=img_size, num_classes=10, in_chans=1)
    if kind == "mixer":  # C = 64, D_S = 32, D_C = 128
        return architectures.create(
            "mixer_s16",
            patch_size=patch_size,
            num_blocks=2,
            hidden_dim=64,
            tokens_mlp_dim=32,
            channels_mlp_dim=128,
            **common,
        )
    if kind == "vit":  # D = 64, 4 heads, MLP 128
        return architectures.create(
            "vit_ti16", patch_size=patch_size, num_blocks=2, hidden_dim=64, num_heads=4, mlp_dim=128, **common
        )
    if kind == "resnet":  # ResNet-18 layout with one basic block per stage, width 16
        return architectures.create("resnet18", width=16, layers=(1, 1, 1, 1), **common)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODELS)}")


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic algorithms and ``threads`` torch threads inside the block; previous settings after."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch_threads(threads):
            yield
    finally:
        torch.use_deterministic_algorithms(previous)


def batch_order(n: int, train: TrainConfig, seed: int) -> torch.Tensor:
    """(steps, batch_size) indices: reshuffled epochs from ``seed``, the same for every model and condition."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(train.steps * train.batch_size / n) + 1
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(epochs)])
    return order[: train.steps * train.batch_size].reshape(train.steps, train.batch_size)


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, train: TrainConfig, seed: int) -> list[float]:
    """Adam with a constant learning rate over the seed's batch order; returns the loss at every step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr)
    losses = []
    model.train()
    with deterministic(train.threads):
        for idx in batch_order(len(x), train, seed):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            correct += (
                (model(x[start : start + batch_size]).argmax(dim=1) == y[start : start + batch_size]).sum().item()
            )
    return correct / len(x)


def train_one(dataset: Dataset, config: ExperimentConfig, kind: str, condition: str, seed: int) -> RunRecord:
    """Train one model under one condition from the seed's initialisation; see the module docstring."""
    start = time.perf_counter()
    model = tiny_model(kind, config.data.img_size, config.train.patch_size, seed)
    if condition == "patch_shuffled_permuted_init_float64":
        model = permute_token_order(model, dataset.patch_perm)
    dtype = torch.float64 if condition in CLAIM_CONDITIONS else torch.float32
    model = model.to(dtype)
    train_x, test_x = (x.to(dtype) for x in dataset.under(condition, config.train.patch_size))
    losses = train_model(model, train_x, dataset.train_y, config.train, seed)
    acc = accuracy(model, test_x, dataset.test_y)
    return RunRecord(kind, condition, seed, acc, losses[-1], tuple(losses), time.perf_counter() - start)


def run_experiment(
    config: ExperimentConfig,
    on_record: Callable[[RunRecord, int, int], None] | None = None,
) -> list[RunRecord]:
    """Train every run of ``config.runs()``; ``on_record(record, i, total)`` is called as each one ends."""
    dataset = make_dataset(config.data, config.train.patch_size)
    plan = config.runs()
    records = []
    for i, (kind, condition, seed) in enumerate(plan, start=1):
        record = train_one(dataset, config, kind, condition, seed)
        records.append(record)
        if on_record is not None:
            on_record(record, i, len(plan))
    return records


# ---------------------------------------------------------------------------- results


def summarize(records: list[RunRecord]) -> list[Summary]:
    """Accuracy mean, spread and range per (model, condition), in the order they first appear."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in records:
        groups.setdefault((r.model, r.condition), []).append(r.accuracy)
    summaries = []
    for (model, condition), accs in groups.items():
        values = np.array(accs)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summaries.append(
            Summary(model, condition, len(values), float(values.mean()), std, float(values.min()), float(values.max()))
        )
    return summaries


@dataclass(frozen=True)
class ClaimCheck:
    """The exact claim, per seed: the permuted-init Mixer on shuffled patches vs the Mixer on the originals (float64)."""

    seeds: tuple[int, ...]
    max_accuracy_diff: float
    max_loss_diff: float  # over every training step
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_accuracy_diff == 0.0 and self.max_loss_diff <= self.tolerance


def check_claim(records: list[RunRecord], tolerance: float = 1e-6) -> ClaimCheck | None:
    """Compare each seed's two float64 Mixer runs of ``CLAIM_CONDITIONS`` (None if there are none)."""
    by_key = {(r.model, r.condition, r.seed): r for r in records}
    reference, permuted = CLAIM_CONDITIONS
    seeds = sorted(
        seed
        for (model, condition, seed) in by_key
        if model == "mixer" and condition == permuted and ("mixer", reference, seed) in by_key
    )
    if not seeds:
        return None
    acc_diff = loss_diff = 0.0
    for seed in seeds:
        a, b = by_key[("mixer", reference, seed)], by_key[("mixer", permuted, seed)]
        acc_diff = max(acc_diff, abs(a.accuracy - b.accuracy))
        loss_diff = max(loss_diff, float(np.max(np.abs(np.array(a.losses) - np.array(b.losses)))))
    return ClaimCheck(tuple(seeds), acc_diff, loss_diff, tolerance)


def markdown_table(summaries: list[Summary]) -> str:
    """One row per model, one column per condition: mean ± std (min-max) test accuracy in %."""
    conditions = [c for c in ALL_CONDITIONS if any(s.condition == c for s in summaries)]
    models = list(dict.fromkeys(s.model for s in summaries))
    cell = {(s.model, s.condition): s for s in summaries}
    lines = ["| model | " + " | ".join(conditions) + " |", "| --- |" + " --- |" * len(conditions)]
    for model in models:
        cells = []
        for condition in conditions:
            s = cell.get((model, condition))
            cells.append(
                "-" if s is None else f"{100 * s.mean:.1f} ± {100 * s.std:.1f} ({100 * s.min:.1f}-{100 * s.max:.1f})"
            )
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[RunRecord], summaries: list[Summary], path) -> None:
    """Grouped bars (mean, error bar = std) with every seed's accuracy as a dot; PNG at ``path``.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conditions = [c for c in ALL_CONDITIONS if any(s.condition == c for s in summaries)]
    models = list(dict.fromkeys(s.model for s in summaries))
    cell = {(s.model, s.condition): s for s in summaries}
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(conditions)
    for j, condition in enumerate(conditions):
        xs, means, stds = [], [], []
        for i, model in enumerate(models):
            s = cell.get((model, condition))
            if s is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            xs.append(x)
            means.append(100 * s.mean)
            stds.append(100 * s.std)
            dots = [100 * r.accuracy for r in records if r.model == model and r.condition == condition]
            ax.plot([x] * len(dots), dots, "k.", markersize=4)
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=condition.replace("_", " "))
    ax.axhline(10, color="grey", linestyle=":", linewidth=1)  # chance: 10 classes
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    seeds = len({r.seed for r in records})
    ax.set_title(f"Patch and pixel shuffling, seven-segment digits ({seeds} seed{'s' * (seeds > 1)}, mean ± std)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)


def summary_markdown(config: ExperimentConfig, summaries: list[Summary], claim: ClaimCheck | None) -> str:
    """shuffle.md: the setting, the accuracy table and the exact claim's outcome."""
    if claim is None:
        claim_line = "Exact claim: not checked (no Mixer in the models run)."
    else:
        verdict = "holds" if claim.passed else "FAILS"
        claim_line = (
            f"Exact claim {verdict}: Mixer from the permuted initialisation on shuffled patches vs Mixer on the originals, "
            f"seeds {', '.join(map(str, claim.seeds))}: max |accuracy diff| {claim.max_accuracy_diff:.4f}, "
            f"max |loss diff| over all steps {claim.max_loss_diff:.1e} (tolerance {claim.tolerance:.0e})."
        )
    header = (
        f"Test accuracy (%), mean ± std (min-max) over {len(config.seeds)} seed(s); "
        f"{config.train.steps} steps of batch {config.train.batch_size}, {config.data.train_size} training and "
        f"{config.data.test_size} test images, {config.data.img_size}x{config.data.img_size} px, "
        f"{config.train.patch_size}x{config.train.patch_size} patches."
    )
    return f"{header}\n\n{markdown_table(summaries)}\n\n{claim_line}\n"


def summary_json(config: ExperimentConfig, summaries: list[Summary], claim: ClaimCheck | None, seconds: float) -> dict:
    """summary.json: the configuration, the summaries and the claim."""
    return {
        "config": asdict(config),
        "summaries": [asdict(s) for s in summaries],
        "claim": None if claim is None else {**asdict(claim), "passed": claim.passed},
        "seconds": seconds,
    }
