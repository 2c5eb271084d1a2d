"""What several test files share: the repository root, the tiny model, the CLI's exit code, one-line errors.

Importable as ``helpers`` from any test (``pythonpath = ["tests"]`` in pyproject.toml); fixtures are in
conftest.py. Imports nothing heavy at module level, so a test of start-up time can still import it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: the cwd and PYTHONPATH of the ``python -m bench`` subprocesses."""

TINY_VIT = {"hidden_dim": 32, "num_blocks": 1, "num_heads": 2, "mlp_dim": 64}
"""A one-block ViT, two heads of width 16: measured in milliseconds on a CPU (use as ``dict(TINY_VIT, ...)``)."""

PYTHONPATH = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
"""For a subprocess that imports the project (and these helpers) without an installed copy."""


def tiny_sweep(resolutions: Sequence[int] = (32, 64)) -> list[str]:
    """``sweep`` arguments for vit_ti16 at a few small resolutions, batch 1, one thread, no report."""
    return [
        "sweep",
        "--models",
        "vit_ti16",
        "--resolutions",
        ",".join(map(str, resolutions)),
        "--batch",
        "1",
        "--min-run-time",
        "0.01",
        "--threads",
        "1",
        "--no-report",
    ]


def main_code(argv: Sequence[str]) -> int:
    """``bench.cli.main``'s exit code, whether argparse exits (a bad argument) or the command returns."""
    from bench import cli

    try:
        return cli.main(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def one_line(err: str, *needles: str) -> str:
    """The single line of ``err`` (no traceback), after checking that it holds every needle."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


def one_line_error(capsys, *needles: str) -> str:
    """The one line a command wrote to stderr (see :func:`one_line`)."""
    return one_line(capsys.readouterr().err, *needles)


def ok_record(case, *, env=None, roof: float | None = None):
    """An "ok" record for ``case`` with made-up measurements, for tests of what happens around measuring.

    The numbers are arbitrary but valid (positive times, an MFU of 0.1); ``env`` defaults to the case's
    thread count, as a real run records it.
    """
    from bench.schema import Counts, Env, Memory, Record, Timing

    return Record(
        case=case,
        status="ok",
        label=case.name,
        env=Env(torch_threads=case.threads) if env is None else env,
        roof_flops_per_s=roof,
        batch=1,
        counts=Counts(case.model, case.img_size, case.patch_size, 17, 1000, 10**6, 0, {}, 10**6),
        time=Timing(0.01, 0.001, 0.01, 3, 1, 1, 1, (0.01, 0.01, 0.01)),
        memory=Memory("cpu_peak_rss", 10**6, 10**9, 10**6, 10**8),
        mfu=0.1,
    )


def tiny_cases(sizes: Sequence[int] = (32, 48), threads: int | None = None, **overrides):
    """One CPU case of the tiny ViT (patch 8, batch 1, float32, inference) per image size, labelled "tiny"."""
    from bench.schema import Case

    return [
        Case("vit_s16", s, 8, 1, "cpu", "float32", "infer", dict(TINY_VIT, **overrides), label="tiny", threads=threads)
        for s in sizes
    ]
