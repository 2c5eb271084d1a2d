"""Faults during a sweep and bad data in its folder: nothing measured is lost, nothing is silently wrong.

Issue 14. Each test here failed on the code before its fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cli
from bench.measure.spec import Case
from bench.runs import presets, sweep
from bench.runs import records as results

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
TINY_VIT = {"hidden_dim": 32, "num_blocks": 1, "num_heads": 2, "mlp_dim": 64}


def main_code(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def run_cli(*argv, timeout=300, **kwargs):
    return subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=timeout, **kwargs)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- degenerate models ------------------------------------------------------------------------


@pytest.mark.parametrize("model, overrides", [
    ("mixer_s16", {"num_blocks": -1}),
    ("mixer_s16", {"num_blocks": 0}),
    ("mixer_s16", {"tokens_mlp_dim": 0}),
    ("vit_s16", {"num_heads": 0}),
    ("vit_s16", {"mlp_dim": -4}),
    ("resnet18", {"width": 0}),
    ("resnet18", {"layers": (2, 0, 2, 2)}),
])
def test_degenerate_overrides_are_refused_before_the_sweep(model, overrides):
    entry = presets.Entry(model, overrides, "degenerate")
    cases = presets.build_grid([entry], [64], [8], batch=1, device="cpu", dtypes=["float32"], modes=["infer"])
    with pytest.raises(ValueError) as exc:
        sweep.validate_cases(cases)
    message = str(exc.value)
    assert f"{model} at 64 px" in message and next(iter(overrides)) in message and "\n" not in message
