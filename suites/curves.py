"""Measured curves: latency and activation memory against image size and patch size, per commit (noisy).

The quick preset's configurations (``bench.runs.presets``: Mixer C=128, ViT d=64 with fused and
with explicit attention, ResNet-18) at every size of a curve, CPU, one thread, batch 1; the
paper preset's models on CUDA (batch 32, bfloat16; n/a without a GPU). On the dashboard, a
benchmark's page with ``img_size`` (or ``patch_size``) on the x-axis draws the curve of one
commit; against commits, one line per size.

- ``time_step``: one forward pass (``bench.measure.timing.case_step``, the sweep's step);
- ``track_peak_tensor_bytes``: the peak of live tensor bytes during one profiled step
  (``bench.measure.profile.profile_step``), the activation memory the sweep fits
  (``bench.analysis.series.tensor_peaks``); process RSS stays with ``memory.CpuStep``.

Axes: ``Resolution`` (token models, patch 4, CURVE_IMG_SIZES: S = 256..2,304), ``Pixels``
(ResNet-18, PIXEL_IMG_SIZES: 8.4x the pixels), ``PatchSize`` (token models at 192 px,
patches 4..16: S = 2,304..144); ``Cuda*`` the same axes with the paper's models.
"""

from __future__ import annotations

from .common import (
    CURVE_IMG_SIZES,
    CURVE_PATCH_IMG_SIZE,
    CURVE_PATCH_SIZES,
    PAPER_IMG_SIZES,
    PAPER_PATCH_IMG_SIZE,
    PAPER_PATCH_SIZES,
    PAPER_PIXEL_SERIES,
    PAPER_TOKEN_SERIES,
    PIXEL_IMG_SIZES,
    PIXEL_SERIES,
    TOKEN_SERIES,
    prepare_cpu,
    require_device,
    series_case,
)


class _Curve:
    """One step of a series at one size; subclasses name the series and sizes (``params``)."""

    device = "cpu"
    # Per process round: 3 to 10 samples within 2 s; asv picks the steps per sample (2 ms .. 0.5 s a step).
    repeat = (3, 10, 2.0)
    warmup_time = 0.2
    timeout = 180

    def case(self, series: str, size: int):
        return series_case(series, size, device=self.device)

    def setup(self, series: str, size: int) -> None:
        from bench.measure import timing

        require_device(self.device)
        if self.device == "cpu":
            prepare_cpu()
        case = self.case(series, size)
        self.model = timing.build_case(case)
        self.step = timing.case_step(case, self.model)
        self.step()  # one-off work (allocations, CUDA context and kernels) stays out of every sample

    def time_step(self, series: str, size: int) -> None:
        self.step()

    def track_peak_tensor_bytes(self, series: str, size: int) -> int:
        from bench.measure import profile

        return int(profile.profile_step(self.model, self.step, self.device).tensor_peak_bytes)

    track_peak_tensor_bytes.unit = "bytes"


class Resolution(_Curve):
    """Token models at patch 4 over CURVE_IMG_SIZES (S = 256..2,304)."""

    params = (TOKEN_SERIES, CURVE_IMG_SIZES)
    param_names = ("series", "img_size")


class Pixels(_Curve):
    """ResNet-18 over PIXEL_IMG_SIZES (8.4x the pixels)."""

    params = (PIXEL_SERIES, PIXEL_IMG_SIZES)
    param_names = ("series", "img_size")


class PatchSize(_Curve):
    """Token models at CURVE_PATCH_IMG_SIZE over CURVE_PATCH_SIZES (S = 2,304..144)."""

    params = (TOKEN_SERIES, CURVE_PATCH_SIZES)
    param_names = ("series", "patch_size")

    def case(self, series: str, size: int):
        return series_case(series, CURVE_PATCH_IMG_SIZE, size, device=self.device)


class CudaResolution(Resolution):
    """The paper's token models over PAPER_IMG_SIZES (S = 196..2,304), batch 32, bfloat16."""

    device = "cuda"
    params = (PAPER_TOKEN_SERIES, PAPER_IMG_SIZES)


class CudaPixels(Pixels):
    """ResNet-50 over PAPER_IMG_SIZES, batch 32, bfloat16."""

    device = "cuda"
    params = (PAPER_PIXEL_SERIES, PAPER_IMG_SIZES)


class CudaPatchSize(PatchSize):
    """The paper's token models at PAPER_PATCH_IMG_SIZE over PAPER_PATCH_SIZES (S = 2,304..64)."""

    device = "cuda"
    params = (PAPER_TOKEN_SERIES, PAPER_PATCH_SIZES)

    def case(self, series: str, size: int):
        return series_case(series, PAPER_PATCH_IMG_SIZE, size, device=self.device)
