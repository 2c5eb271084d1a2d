"""What ``mixerbench predict --out DIR`` writes: a Markdown table, the predicted crossovers and a plot.

Two crossovers per GPU, from the predictions at the resolutions asked for (linear interpolation
between the two resolutions that bracket the change, so they are only as fine as that grid):

- **attention half**: the resolution where a ViT's attention takes more than half of its
  predicted step (``class_share["attention"] > 0.5``);
- **ViT behind Mixer**: the resolution where a ViT's predicted step gets longer than the Mixer of
  the same size and patch (ViT-B/16 and Mixer-B/16; timm's vit_base_patch16_* and mixer_b16_*).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.schema import ATTENTION, StepPrediction
from bench.text import markdown as md
from bench.text import mathtext

TABLE = "prediction.md"
PLOT = "predicted_throughput.png"
SIZE_WORDS = {"tiny": "ti", "small": "s", "base": "b", "large": "l", "huge": "h"}
_REFERENCE = re.compile(r"^(vit|mixer)_(ti|s|b|l|h)(\d+)$")
_TIMM_VIT = re.compile(r"^timm:(?:vit|deit)_(tiny|small|base|large|huge)_patch(\d+)")
_TIMM_MIXER = re.compile(r"^timm:mixer_(ti|s|b|l|h)(\d+)")


def kind_and_size(model: str) -> tuple[str, str] | None:
    """("vit" or "mixer", "<size><patch>") of a ViT or Mixer name, reference or timm; None for other models."""
    if m := _REFERENCE.match(model):
        return m.group(1), m.group(2) + m.group(3)
    if m := _TIMM_VIT.match(model):
        return "vit", SIZE_WORDS[m.group(1)] + m.group(2)
    if m := _TIMM_MIXER.match(model):
        return "mixer", m.group(1) + m.group(2)
    return None


@dataclass(frozen=True)
class Crossover:
    """Where something predicted changes side on one GPU: at ``px`` (interpolated), or not within the sizes."""

    gpu: str
    what: str  # "attention over half of the step" or "slower than <mixer>"
    model: str
    px: float | None  # None: not crossed between the smallest and the largest size predicted
    note: str  # "at 512 px", "between 448 and 512 px", "not up to 1024 px", "already at 224 px"


def _series(predictions: Sequence[StepPrediction]) -> dict[tuple[str, str, int | None], list[StepPrediction]]:
    """(gpu, model, patch) -> its predictions in order of resolution."""
    out: dict[tuple[str, str, int | None], list[StepPrediction]] = {}
    for p in predictions:
        if p.case is not None:
            out.setdefault((p.gpu, p.case.model, p.case.patch_size), []).append(p)
    return {k: sorted(v, key=lambda p: p.case.img_size if p.case else 0) for k, v in out.items()}


def _crossing(sizes: Sequence[int], margin: Sequence[float]) -> tuple[float | None, str]:
    """The first size where ``margin`` turns positive, interpolated linearly between the bracketing sizes."""
    if margin[0] > 0:
        return None, f"already at {sizes[0]} px"
    for (s0, m0), (s1, m1) in zip(zip(sizes, margin), zip(sizes[1:], margin[1:])):
        if m1 > 0:
            return s0 + (s1 - s0) * (-m0) / (m1 - m0), f"between {s0} and {s1} px"
    return None, f"not up to {sizes[-1]} px"


def crossovers(predictions: Sequence[StepPrediction]) -> list[Crossover]:
    """Both crossovers (the module doc) of every ViT predicted at two sizes or more, per GPU."""
    series = _series(predictions)
    out = []
    for (gpu, model, patch), run in series.items():
        kind = kind_and_size(model)
        if kind is None or kind[0] != "vit" or len(run) < 2:
            continue
        sizes = [p.case.img_size for p in run if p.case]
        share = [p.class_share.get(ATTENTION, 0.0) - 0.5 for p in run]
        px, note = _crossing(sizes, share)
        out.append(Crossover(gpu, "attention over half of the step", model, px, note))
        mixers = [k for k in series if k[0] == gpu and k[2] == patch and kind_and_size(k[1]) == ("mixer", kind[1])]
        for key in mixers:
            mixer = {p.case.img_size: p.step_s for p in series[key] if p.case}
            both = [p for p in run if p.case and p.case.img_size in mixer]
            if len(both) < 2:
                continue
            sizes = [p.case.img_size for p in both if p.case]
            margin = [math.log(p.step_s / mixer[s]) for p, s in zip(both, sizes)]
            px, note = _crossing(sizes, margin)
            out.append(Crossover(gpu, f"slower than {key[1]}", model, px, note))
    return out


def crossover_table(rows: Sequence[Crossover]) -> str:
    lines = ["| gpu | model | predicted crossover | px |", "| --- | --- | --- | ---: |"]
    for c in rows:
        px = f"{c.px:.0f}" if c.px is not None else "-"
        lines.append(f"| {md(c.gpu)} | {md(c.model)} | {md(c.what)}: {md(c.note)} | {px} |")
    return "\n".join(lines)


def plot(path: Path, predictions: Sequence[StepPrediction], rows: Sequence[Crossover], validation: str = "") -> None:
    """Predicted images/s against resolution, one panel per GPU, one line per model; crossovers dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(predictions)
    gpus = list(dict.fromkeys(k[0] for k in series))
    fig, axes = plt.subplots(1, len(gpus), figsize=(5.5 * len(gpus), 4.2), squeeze=False)
    for ax, gpu in zip(axes[0], gpus):
        for (g, model, patch), run in series.items():
            if g != gpu:
                continue
            label = model + (f" /{patch}" if patch else "")
            ax.plot([p.case.img_size for p in run if p.case], [p.images_per_s for p in run], marker="o", label=label)
        style: dict[str, Callable[[Crossover], bool]] = {"C3": lambda c: "attention" in c.what, "C7": lambda c: True}
        for c in rows:
            if c.gpu == gpu and c.px is not None:
                color = next(k for k, test in style.items() if test(c))
                ax.axvline(c.px, color=color, linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("resolution (px)")
        ax.set_ylabel("predicted images/s")
        ax.set_title(f"{gpu}: PREDICTED", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Predicted throughput (not measured); dashed: predicted crossovers", fontsize=10)
    if validation:
        fig.text(0.5, 0.005, mathtext(validation), ha="center", va="bottom", fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, predictions: list[StepPrediction], validation: str) -> list[Path]:
    """DIR/prediction.md (the predictions, the crossovers, the validated error) and DIR/predicted_throughput.png;
    the paths written."""
    from bench.analysis.predict import predictions_table

    out.mkdir(parents=True, exist_ok=True)
    rows = crossovers(predictions)
    text = (
        "# Predicted steps (a prediction from the counted cost, not a measurement)\n\n"
        f"Validated error: {md(validation)}\n\n" + predictions_table(predictions) + "\n\n"
        "## Predicted crossovers\n\n" + crossover_table(rows) + "\n"
    )
    table, figure = out / TABLE, out / PLOT
    plot(figure, predictions, rows, validation)
    table.write_text(text, encoding="utf-8")
    return [table, figure]
