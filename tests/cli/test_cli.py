"""The command line as a layer: --help without torch, progress only on terminals."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from bench.cli import COMMANDS, args
from bench.runs import counts
from helpers import ROOT


@pytest.mark.parametrize("command", [None] + [m.rsplit("cmd_", 1)[1] for m in COMMANDS])
def test_help_imports_no_torch(command):
    argv = ["--help"] if command is None else [command, "--help"]
    code = (
        "import sys; from bench.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'timm', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert "usage: mixerbench" in done.stdout


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal():
    assert args.progress("x", io.StringIO()) is None
    term = Terminal()
    show = args.progress("counting", term)
    plan = counts.plan(["mixer_s16"], [32, 64], None)
    counts.count_cases(plan, show)
    text = term.getvalue()
    assert "counting: 0/2 mixer_s16 32 px" in text and "counting: 2/2 counted" in text
    assert text.endswith("\n") and text.count("\n") == 1  # one line redrawn, ended once
