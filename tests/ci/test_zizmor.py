"""zizmor over the repository's workflows and the example workflow: no finding of medium or higher severity.

zizmor (``pip install -e '.[dev]'`` installs it) audits GitHub Actions workflows offline:
template injection (``${{ }}`` expanded inside ``run:``), unpinned actions, checkouts that
keep their token (artipacked), overly broad permissions, dangerous triggers and more. The
test runs it on every workflow file by name (zizmor collects a directory only when it is a
``.github/workflows``, so examples/github is listed file by file), with
``--strict-collection`` so that a file it cannot parse fails the test instead of being
skipped with a warning, and ``--no-ignores`` so that an inline ``# zizmor: ignore[...]``
comment cannot silence a finding. Severity is read from the JSON output and filtered here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

WORKFLOW_DIRS = (ROOT / ".github" / "workflows", ROOT / "examples" / "github")
BLOCKING = {"medium", "high"}  # fail on these; informational and low are reported only


def _zizmor() -> str | None:
    """zizmor on PATH, or next to this interpreter (a venv used without activating it)."""
    found = shutil.which("zizmor")
    if found:
        return found
    beside = Path(sys.executable).with_name("zizmor")
    return str(beside) if beside.is_file() else None


def _workflow_files() -> list[Path]:
    return sorted(p for d in WORKFLOW_DIRS for p in (*d.glob("*.yml"), *d.glob("*.yaml")))


def _audit(zizmor: str, files: list[Path]) -> list[dict]:
    done = subprocess.run(
        [
            zizmor,
            "--offline",
            "--strict-collection",
            "--no-ignores",
            "--no-exit-codes",
            "--no-progress",
            "--format",
            "json",
            *(str(f.relative_to(ROOT)) for f in files),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"zizmor failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def _describe(finding: dict) -> str:
    where = []
    for loc in finding.get("locations", []):
        if loc.get("symbolic", {}).get("kind") != "Primary":
            continue
        path = loc["symbolic"]["key"].get("Local", {}).get("given_path") or loc["symbolic"]["key"].get("Local", {}).get(
            "verbatim_path", "?"
        )
        row = loc.get("concrete", {}).get("location", {}).get("start_point", {}).get("row", -1) + 1
        where.append(f"{path}:{row} ({loc['symbolic'].get('annotation', '')})")
    det = finding["determinations"]
    return f"{finding['ident']} [{det['severity']}, confidence {det['confidence']}]: {finding['desc']} at {'; '.join(where)}"


def test_the_workflows_to_audit_are_there():
    names = {p.name for p in _workflow_files()}
    assert {"benchmarks.yml", "gpu.yml", "sweep-matrix.yml"} <= names, names


def test_zizmor_finds_nothing_of_medium_or_high_severity():
    zizmor = _zizmor()
    if zizmor is None:
        pytest.skip("zizmor is not installed (pip install -e '.[dev]' installs it)")
    findings = _audit(zizmor, _workflow_files())
    blocking = [f for f in findings if f["determinations"]["severity"].lower() in BLOCKING]
    assert not blocking, (
        "zizmor: " + f"{len(blocking)} finding(s) of medium or high severity:\n" + "\n".join(map(_describe, blocking))
    )
