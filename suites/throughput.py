"""Latency of one forward pass and one training step on small configurations (noisy).

Each ``time_`` calls the step that ``bench.measure.timing.make_step`` builds: a forward pass
under ``inference_mode``, or forward + cross-entropy + backward + SGD step. On CUDA the
step synchronises before it returns, so asv's timer (which does not synchronise) sees
the device's work. CUDA cases are skipped (n/a) where torch sees no GPU.
"""

from __future__ import annotations

from .common import DEVICES, MODES, TIMED_MODELS, build_step


class Step:
    """One step of a TIMED_BATCH x 3 x TIMED_IMG_SIZE^2 batch, float32, random weights."""

    params = (TIMED_MODELS, DEVICES, MODES)
    param_names = ("model", "device", "mode")
    # Per process round: at least 3 and at most 10 samples within 4 s, one step each.
    number = 1
    repeat = (3, 10, 4.0)
    warmup_time = 0.5
    timeout = 180

    def setup(self, model: str, device: str, mode: str) -> None:
        self.step = build_step(model, device, mode)
        self.step()  # one-off work (CUDA context and kernel loading, cuBLAS handles) stays out of every sample

    def time_step(self, model: str, device: str, mode: str) -> None:
        self.step()
