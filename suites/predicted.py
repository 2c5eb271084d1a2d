"""Predicted milliseconds per step on two GPUs no runner has: deterministic, so any move is a code change.

``bench.analysis.predict.predict_case`` (the model behind ``mixerbench predict``) of the
paper's models at 224 and 512 px, batch 32, bfloat16 (autocast), inference, on an H100 SXM
and an RTX 4090 from the shipped device table. The step is counted on the meta device as CUDA
runs it and priced kernel by kernel, so a commit that moves bytes or launches kernels that
the MACs do not show (explicit attention, an extra copy per block) raises these tracks, and
the pull-request gate flags any increase (``asv continuous --factor 1.0``). A change of the
model's constants or of the device table moves them too: that is a change to review, like a
change of the counting rules.
"""

from __future__ import annotations

from bench.analysis import predict
from bench.measure.timing import uses_channels_last
from bench.schema import Case, StepPrediction

# Append only (asv keys history by these values). "vit_b16" is ViT at the model's default attention
# (fused today): a commit that changes the default moves it, not "vit_b16_explicit", which names its backend.
PREDICTED_MODELS = ("mixer_b16", "vit_b16", "vit_b16_explicit", "resnet50")
PREDICTED_IMG_SIZES = (224, 512)
PREDICTED_GPUS = ("h100-sxm", "rtx-4090")  # keys of bench/data/devices.json
PREDICTED_BATCH = 32
PREDICTED_DTYPE = "bfloat16"

_OVERRIDES = {"vit_b16_explicit": {"attn_backend": "explicit"}}


def predicted_case(name: str, img_size: int) -> Case:
    """The case a track predicts: ``name`` (a PREDICTED_MODELS entry) at ``img_size``, batch 32, bfloat16, CUDA."""
    model = name.removesuffix("_explicit")
    return Case(
        model,
        img_size,
        batch=PREDICTED_BATCH,
        device="cuda",
        dtype=PREDICTED_DTYPE,
        overrides=dict(_OVERRIDES.get(name, {})),
        channels_last=uses_channels_last(model),
    )


class Step:
    """The predicted step of each model at each size on each GPU (batch 32, bfloat16, inference)."""

    params = (PREDICTED_MODELS, PREDICTED_IMG_SIZES, PREDICTED_GPUS)
    param_names = ("model", "img_size", "gpu")

    def setup_cache(self) -> dict[tuple[str, int, str], StepPrediction]:
        # Eight cases counted once (a second or two each on meta), each priced on both GPUs, in one process.
        return {
            (m, s, gpu): predict.predict_case(predicted_case(m, s), gpu)
            for m in PREDICTED_MODELS
            for s in PREDICTED_IMG_SIZES
            for gpu in PREDICTED_GPUS
        }

    def track_ms(self, predictions: dict[tuple[str, int, str], StepPrediction], model: str, img_size: int, gpu: str):
        return predictions[model, img_size, gpu].step_ms

    track_ms.unit = "ms"
