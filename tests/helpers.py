"""What several test files share: the repository root, the tiny model, the CLI's exit code, one-line errors,
and the one builder of made-up records.

Importable as ``helpers`` from any test (``pythonpath = ["tests"]`` in pyproject.toml); fixtures are in
conftest.py. Imports nothing heavy at module level, so a test of start-up time can still import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: the cwd and PYTHONPATH of the ``python -m bench`` subprocesses."""

TINY_VIT = {"hidden_dim": 32, "num_blocks": 1, "num_heads": 2, "mlp_dim": 64}
"""A one-block ViT, two heads of width 16: measured in milliseconds on a CPU (use as ``dict(TINY_VIT, ...)``)."""

NPM_CACHE = Path.home() / ".cache" / "mixerbench" / "npm"
"""The npm tarballs ``mixerbench dashboard`` vendors (the CLI's default cache): fetched once per machine."""

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


def run_bench(*argv, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300, **kwargs):
    """``python -m bench ARGV`` in a child process, its output captured as text; a hang fails the test.

    The child imports the project from ``cwd`` (the repository root unless a test made a copy) and
    these helpers through :data:`PYTHONPATH`; ``env`` replaces the environment (then it must carry
    its own PYTHONPATH), ``kwargs`` go to :func:`subprocess.run` (``preexec_fn``, ...).
    """
    return subprocess.run(
        [sys.executable, "-m", "bench", *map(str, argv)],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=PYTHONPATH) if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


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


def fake_record(
    case,
    *,
    status: str = "ok",
    error: str | None = None,
    tokens: int | None = 17,
    macs: int = 10**6,
    seconds: float = 0.01,
    wobble: Sequence[float] = (1.0, 1.0, 1.0),
    activation_bytes: int = 10**6,
    mfu: float | None = 0.1,
    env=None,
    roof: float | None = None,
    **parts,
):
    """A record of ``case`` with made-up measurements: the one way tests build a results.jsonl line by hand.

    The numbers are arbitrary but valid: ``seconds`` per step of one image, timed in three blocks
    (``seconds`` times each ``wobble``, IQR 1% of ``seconds``), ``macs`` per image, ``activation_bytes``
    above 10^6 bytes of weights and a 4*10^8-byte baseline. A record whose ``status`` is not "ok"
    carries its counts and ``error`` only. ``env`` defaults to a "test cpu" with the case's thread
    count, as a real run records it; ``parts`` are further fields of :class:`bench.schema.Record`
    (``profile``, ``energy``, ``family``, ...). Write it with ``record.to_json()`` or
    :func:`write_results`, so the line is what the schema's own codec writes.
    """
    from bench.schema import Counts, Env, Memory, Record, Timing

    ok = status == "ok"
    times = tuple(seconds * w for w in wobble)
    return Record(
        case=case,
        status=status,
        error=error,
        label=case.name,
        env=Env(device=case.device, device_name="test cpu", cpu_model="test cpu", torch_threads=case.threads)
        if env is None
        else env,
        roof_flops_per_s=roof,
        batch=1,
        counts=Counts(case.model, case.img_size, case.patch_size, tokens, 1000, macs, 0, {}, macs),
        time=Timing(seconds, 0.01 * seconds, sum(times) / len(times), len(times), 1, 1, 1, times) if ok else None,
        memory=Memory("cpu_peak_rss", 10**6, 5 * 10**8, activation_bytes, 4 * 10**8) if ok else None,
        mfu=mfu if ok else None,
        **parts,
    )


def mixer_record(size: int, *, label: str = "mixer", threads: int | None = None, **more):
    """A made-up Mixer (mixer_s16, patch 4, CPU) at ``size`` px whose costs are exactly linear in S = (size/4)^2.

    1000 S MACs, 1 us times S per image (blocks 0.2% apart), 2000 S activation bytes, a roof of 10^11
    FLOP/s; ``more`` overrides any of them (see :func:`fake_record`). The case is the one
    ``sweep --models mixer_s16 --resolutions SIZE --patch-sizes 4 --batch 1`` runs.
    """
    from bench.schema import Case

    tokens = (size // 4) ** 2
    numbers = {
        "tokens": tokens,
        "macs": 1000 * tokens,
        "seconds": 1e-6 * tokens,
        "wobble": (1.0, 1.002, 0.998),
        "activation_bytes": 2000 * tokens,
        "roof": 1e11,
        "family": "mixer",
    }
    return fake_record(Case("mixer_s16", size, 4, threads=threads, label=label), **(numbers | more))


def write_results(folder: Path, records, extra_lines: Sequence[str] = ()) -> Path:
    """``folder``/results.jsonl (folder made if missing) holding ``records`` as the sweep writes them, then any
    ``extra_lines`` as they are (a broken or hand-edited line); returns ``folder``."""
    from bench.runs.records import FILENAME, ResultsWriter

    folder.mkdir(parents=True, exist_ok=True)
    with ResultsWriter(folder / FILENAME) as writer:
        for record in records:
            writer.append(record)
    with open(folder / FILENAME, "a") as f:
        for line in extra_lines:
            f.write(line + "\n")
    return folder


def tiny_cases(sizes: Sequence[int] = (32, 48), threads: int | None = None, **overrides):
    """One CPU case of the tiny ViT (patch 8, batch 1, float32, inference) per image size, labelled "tiny"."""
    from bench.schema import Case

    return [
        Case("vit_s16", s, 8, 1, "cpu", "float32", "infer", dict(TINY_VIT, **overrides), label="tiny", threads=threads)
        for s in sizes
    ]
