""".ci/gpu, read statically and run with a stand-in python: its steps, their time boxes, one output folder.

The script itself needs a GPU; what can go wrong without one is checked here: its syntax
(``bash -n``), that every step is time-boxed and the default steps fit in 9 minutes on
the GPU, that the compile step covers every compile mode on the three models at 224 and
384 px, that the batch step sweeps from batch 1 and reports the predictions beside its points,
that every sweep writes under OUT, and which steps run for a given argument list
(with ``echo`` as the python, every step returns at once).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from bench.measure.compiling import COMPILE_MODES
from helpers import ROOT

SCRIPT = ROOT / ".ci" / "gpu"
BUDGET_S = 9 * 60
DEFAULT = {"tests", "paper", "compile", "batch", "peers", "asv"}
OPTIONAL = {"energy", "peers-fp32", "train", "oom", "max-batch"}

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash")


def commands() -> list[str]:
    """The script's lines with backslash continuations joined, comments and blank lines dropped."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def steps() -> list[tuple[str, int, str]]:
    """(name, seconds, command) of every ``step`` call."""
    out = []
    for ln in commands():
        m = re.match(r"step ([\w:.-]+) (\d+) (.+)$", ln)
        if m:
            out.append((m.group(1), int(m.group(2)), m.group(3)))
    return out


def default_steps() -> set[str]:
    m = re.search(r"^steps=\$\{\*:-([^}]+)\}$", SCRIPT.read_text(), re.MULTILINE)
    assert m, "the default step list (steps=${*:-...}) is gone"
    return set(m.group(1).split())


def selected(name: str, asked: set[str]) -> bool:
    """The script's rule: a step runs when its name, or the part before its colon, was asked for."""
    return name in asked or name.split(":")[0] in asked


def test_bash_syntax():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_step_is_boxed_and_the_default_ones_fit_in_nine_minutes():
    header = [int(m) for ln in commands() for m in re.findall(r"^timeout (\d+) ", ln)]
    assert len(header) == 2  # nvidia-smi and the version line are boxed too
    assert default_steps() == DEFAULT
    names = {n for n, _, _ in steps()}
    assert {n.split(":")[0] for n in names} == DEFAULT | OPTIONAL
    boxes = sum(s for n, s, _ in steps() if selected(n, DEFAULT))
    assert boxes + sum(header) <= BUDGET_S, f"default steps {boxes} s + header {sum(header)} s > {BUDGET_S} s"
    assert f"the default steps add up to {boxes} s, plus {sum(header)} s for the header" in SCRIPT.read_text()
    assert not any(selected(n, DEFAULT) for n in OPTIONAL)  # optional steps never run by default
    body = [ln for ln in commands() if not ln.startswith(("step ", "timeout ", "set ", "export "))]
    # the rest is assignments, the step function itself and mkdir: nothing else runs unboxed
    assert all(
        re.match(r"^(\w+=|step\(\)|local |shift |case |echo |SECONDS=|timeout \"\$limit\"|mkdir |\{ |\})", ln)
        for ln in body
    ), body


def test_the_compile_step_covers_every_mode_on_three_models_at_two_sizes():
    modes = set()
    for name, _, cmd in steps():
        if name.startswith("compile:") and "sweep" in cmd:
            modes.update(re.search(r"--compile ([\w,-]+)", cmd).group(1).split(","))
            assert '--models "$models"' in cmd and "--resolutions 224,384 " in cmd
            assert '--resume --out "$out/cuda-compile"' in cmd  # one folder, one mode after another
    assert modes == set(COMPILE_MODES)
    assert re.search(r"^models=mixer_b16,vit_b16,resnet50$", SCRIPT.read_text(), re.MULTILINE)


def test_the_batch_step_sweeps_from_one_image_to_the_energy_batch_then_reports(tmp_path):
    (name, _, sweep), (report, _, command) = [(n, s, c) for n, s, c in steps() if n.split(":")[0] == "batch"]
    assert (name, report) == ("batch", "batch:report")
    batches = [int(b) for b in re.search(r"--batch ([\d,]+) ", sweep).group(1).split(",")]
    assert batches[0] == 1 and all(b == a * 4 for a, b in zip(batches, batches[1:])) and len(batches) >= 5
    assert '--models "$models" --resolutions 224 ' in sweep and "--no-report" in sweep
    assert "--dtype" not in sweep  # the paper preset's bfloat16 on CUDA, as the energy step
    # Its largest batch is the energy step's case (same models, size and batch), which is optional now.
    energy = next(c for n, _, c in steps() if n == "energy")
    assert '--models "$models" --resolutions 224 --batch 256 ' in energy and batches[-1] == 256
    # The report of the sweep's folder (the calibrated prediction beside each point) follows it.
    assert command == '"$py" -m bench report "$out/cuda-batch"' and '--out "$out/cuda-batch"' in sweep
    log = run(tmp_path, "batch")
    assert ran(log) == {"batch", "batch:report"}
    assert log.index("== batch:report") > log.index("== batch (at most")


def test_the_tests_step_runs_every_test_file_with_cuda_tests():
    marked = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if re.search(r"pytest\.mark\.cuda\b", p.read_text())
    }
    command = next(cmd for name, _, cmd in steps() if name == "tests")
    assert "-m cuda" in command
    assert marked and marked <= set(command.split())


def test_every_sweep_writes_under_out():
    for name, _, cmd in steps():
        if " sweep " in f" {cmd} ":
            assert re.search(r'--out "\$out/[\w-]+"', cmd), (name, cmd)
    assert '--junitxml "$out/cuda-tests.xml"' in SCRIPT.read_text()
    assert 'tee -a "$out/gpu-checks.log"' in SCRIPT.read_text()


def run(tmp_path, *asked: str) -> str:
    env = dict(os.environ, PYTHON="echo", PATH=os.environ["PATH"])
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out"), *asked],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (tmp_path / "out" / "gpu-checks.log").read_text()
    assert result.stdout == log  # everything on the console is in OUT/gpu-checks.log too
    return log


def ran(log: str) -> set[str]:
    return set(re.findall(r"^== ([\w:.-]+) \(at most", log, re.MULTILINE))


def test_the_steps_that_run(tmp_path):
    log = run(tmp_path)
    assert {n.split(":")[0] for n in ran(log)} == DEFAULT
    assert ran(log) == {n for n, _, _ in steps() if selected(n, DEFAULT)}
    assert ran(run(tmp_path / "a", "compile:max-autotune")) == {"compile:max-autotune"}
    assert ran(run(tmp_path / "b", "peers-fp32", "oom")) == {"peers-fp32", "oom"}
