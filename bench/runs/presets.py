"""Presets and the grid of cases they expand to.

A :class:`Preset` is a small data table: its models (:class:`Entry`: a registry name,
config overrides, the name reports use), sizes, batch, dtypes per device, modes and
timing settings. :func:`expand` applies the command line's model and attention choices
to a preset; :func:`build_grid` turns entries and sizes into :class:`~bench.schema.Case`
objects. This module imports no torch at import time (the command line reads it for --help).

``quick`` is the CPU default: narrow, shallow models (overrides on the reference presets,
kept in every record) at patch 4, so S reaches 2,305 tokens where a 64-wide ViT's
attention (2 S^2 d MACs per block) outweighs its linear part (12 S d^2) about six to one,
in seconds per case. ``paper`` (the CUDA default) runs the papers' B and L models at
224 px and above.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bench.schema import Case

PEER_PAIRS = (
    ("mixer_b16", "timm:mixer_b16_224"),
    ("vit_b16", "timm:vit_base_patch16_224"),
    ("resnet50", "timm:resnet50"),
)


@dataclass(frozen=True)
class Entry:
    """A model of a preset: a registry name, config overrides, and the name reports use.

    ``stem`` is that name without the attention backend: a ViT entry is named
    "<stem> <backend>" (``attn_backend`` in its overrides), so that one entry can be
    re-made for other backends (:meth:`with_attention`) without parsing labels.
    """

    model: str
    overrides: dict = field(default_factory=dict)
    stem: str = ""
    resolutions: tuple[int, ...] | None = None  # this model's own sizes in a preset (None: the preset's)

    @property
    def attention(self) -> str | None:
        return self.overrides.get("attn_backend")

    @property
    def name(self) -> str:
        stem = self.stem or self.model
        return f"{stem} {self.attention}" if self.attention else stem

    def with_attention(self, backend: str) -> Entry:
        return Entry(self.model, dict(self.overrides, attn_backend=backend), self.stem, self.resolutions)


@dataclass(frozen=True)
class Preset:
    name: str
    entries: tuple[Entry, ...]
    resolutions: tuple[int, ...]
    patch_sizes: tuple[int | None, ...]  # for token models; None: the preset's own patch
    batch: int
    dtypes: dict[str, tuple[str, ...]]  # device -> dtypes
    modes: tuple[str, ...]
    min_run_time: float  # seconds of timed steps per case (torch.utils.benchmark)
    min_runs: int  # timed samples per case at least (slow steps)
    warmup: int  # untimed steps before timing
    note: str
    rounds: int = 3  # timing rounds per series, sizes in a shuffled order each round (bench.runs.rounds)
    threads: int | None = None  # torch threads unless --threads (None: torch's default)
    # With min_rounds, `rounds` is a maximum: a series stops adding rounds once its verdicts are decided
    # (bench.analysis.sequential); None: always `rounds`.
    min_rounds: int | None = None


# Narrow, shallow versions of the reference models, for the CPU (paper ratios kept: D_S = C/2, D_C = 4C, mlp = 4d).
_MIXER_SMALL = {"hidden_dim": 128, "num_blocks": 2, "tokens_mlp_dim": 64, "channels_mlp_dim": 512}
_VIT_SMALL = {"hidden_dim": 64, "num_blocks": 2, "num_heads": 2, "mlp_dim": 256}

# The three presets are alike in shape on purpose: each is one row of data, read top to bottom.
PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        entries=(
            Entry("mixer_s16", _MIXER_SMALL, "mixer C128 x2"),
            Entry("vit_s16", dict(_VIT_SMALL, attn_backend="fused"), "vit d64 x2"),
            Entry("vit_s16", dict(_VIT_SMALL, attn_backend="explicit"), "vit d64 x2"),
            # ResNet-18 at half width (32 channels in the first stage, as narrow as the others: a quarter of the MACs).
            # Its MACs are a polynomial in pixels only at multiples of 32, and at full width below ~300 px a 4.7 MiB
            # oneDNN weight buffer in layer4 outweighs the activations: 320-928 px, 8.4x the pixels
            Entry("resnet18", {"width": 32}, "resnet18 w32", resolutions=(320, 416, 544, 704, 928)),
        ),
        resolutions=(64, 80, 96, 112, 128, 160, 192),
        patch_sizes=(4,),
        batch=1,
        dtypes={"cpu": ("float32",), "cuda": ("float32",)},
        modes=("infer",),
        min_run_time=0.3,
        min_runs=6,
        warmup=1,
        note="small widths (Mixer C=128, ViT d=64, 2 blocks) at patch 4: S = 256..2,305; ResNet-18; one thread, "
        "2-3 shuffled timing rounds (stops at 2 once the verdicts are decided)",
        rounds=3,
        threads=1,
        min_rounds=2,
    ),
    "paper": Preset(
        name="paper",
        entries=(
            Entry("mixer_b16"),
            Entry("vit_b16", {"attn_backend": "fused"}),
            Entry("vit_b16", {"attn_backend": "explicit"}),
            Entry("resnet50"),
            Entry("mixer_l16"),
            Entry("vit_l16", {"attn_backend": "fused"}),
        ),
        resolutions=(224, 288, 384, 448, 512, 640, 768),
        patch_sizes=(None,),
        batch=32,
        dtypes={"cpu": ("float32",), "cuda": ("bfloat16",)},
        modes=("infer",),
        min_run_time=1.0,
        min_runs=5,
        warmup=3,
        note="the papers' B/16 and L/16 models and ResNet-50 at 224-768 px (a GPU job)",
        min_rounds=2,
    ),
    "full": Preset(
        name="full",
        entries=(
            Entry("mixer_b16"),
            Entry("mixer_b32"),
            Entry("vit_b16", {"attn_backend": "fused"}),
            Entry("vit_b16", {"attn_backend": "explicit"}),
            Entry("vit_b32", {"attn_backend": "fused"}),
            Entry("resnet50"),
            Entry("mixer_l16"),
            Entry("vit_l16", {"attn_backend": "fused"}),
            Entry("vit_l16", {"attn_backend": "explicit"}),
        ),
        resolutions=(224, 288, 384, 448, 512, 640, 768, 896, 1024),
        patch_sizes=(None,),
        batch=32,
        dtypes={"cpu": ("float32",), "cuda": ("float32", "bfloat16")},
        modes=("infer", "train"),
        min_run_time=1.0,
        min_runs=5,
        warmup=3,
        note="paper's models plus /32 variants, up to 1024 px, inference and training (a long GPU job)",
    ),
}


def expand(preset: Preset, models: Sequence[str] | None = None, attention: Sequence[str] | None = None) -> list[Entry]:
    """The entries to run: ``models`` instead of the preset's, each ViT once per ``attention`` backend.

    With ``models``, ViTs get ``attention`` or "fused"; without, the preset's ViT entries
    are re-made for each backend in ``attention`` (one per distinct model and overrides).
    """
    import architectures

    if models:
        chosen: list[Entry] = []
        for name in models:
            if architectures.family(name) == "vit":
                chosen += [Entry(name).with_attention(b) for b in (attention or ["fused"])]
            else:
                chosen.append(Entry(name))
        return chosen
    if not attention:
        return list(preset.entries)
    entries: list[Entry] = []
    seen = set()
    for entry in preset.entries:
        if entry.attention is None:
            entries.append(entry)
            continue
        base = Entry(
            entry.model,
            {k: v for k, v in entry.overrides.items() if k != "attn_backend"},
            entry.stem,
            entry.resolutions,
        )
        if repr(base) in seen:
            continue
        seen.add(repr(base))
        entries += [base.with_attention(b) for b in attention]
    return entries


def build_grid(
    entries: Iterable[Entry],
    resolutions: Iterable[int],
    patch_sizes: Iterable[int | None],
    *,
    batch: int | Literal["max"],
    device: str,
    dtypes: Iterable[str],
    modes: Iterable[str],
    compiles: Iterable[str] = ("none",),
    threads: int | None = None,
) -> list[Case]:
    """Every combination, in the order a report reads best: model, patch, mode, dtype, compile mode, resolution.

    Patch sizes apply to token models only; convnets get one case per resolution and run
    channels_last (``architectures.traits``). Repeated values (a model, size or patch given
    twice) collapse: each case (its :attr:`Case.key`) appears once, where it first occurs.
    """
    import architectures

    cases: dict[str, Case] = {}
    for entry in entries:
        traits = architectures.traits(entry.model)
        for patch in patch_sizes if traits.has_tokens else (None,):
            for mode in modes:
                for dtype in dtypes:
                    for compile_mode in compiles:
                        for res in entry.resolutions or resolutions:
                            case = Case(
                                entry.model,
                                res,
                                patch,
                                batch,
                                device,
                                dtype,
                                mode,
                                dict(entry.overrides),
                                traits.channels_last,
                                compile_mode,
                                entry.name,
                                threads,
                            )
                            cases.setdefault(case.key, case)
    return list(cases.values())
