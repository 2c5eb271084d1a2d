"""The suite's layout on xdist's workers (tests/conftest.py), run on a small suite of its own in a temporary folder.

Two workers: the tests that share a module-scoped fixture get one instance of it (they run on one worker), a test
computes on one thread, and a test marked ``timing`` runs while no other test runs, with torch's default threads. The small suite's tests write when they start and end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from helpers import ROOT

SHARED = """
import os, pytest

@pytest.fixture(scope="module")
def built():
    with open(os.environ["LAYOUT_LOG"] + ".built", "a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")

@pytest.mark.parametrize("i", range(6))
def test_uses_the_fixture(built, i):
    pass
"""

SPANS = """
import json, os, time, pytest

def span(name):
    import torch

    start = time.monotonic()
    time.sleep(0.2)
    threads = [torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")]
    with open(os.environ["LAYOUT_LOG"], "a") as f:
        f.write(json.dumps([name, start, time.monotonic(), threads]) + "\\n")

@pytest.mark.parametrize("i", range(8))
def test_plain(i):
    span(f"plain{i}")

@pytest.mark.timing
@pytest.mark.parametrize("i", range(2))
def test_timed(i):
    span(f"timing{i}")
"""


def test_a_shared_fixture_is_built_once_and_a_timing_test_runs_alone(tmp_path):
    suite = tmp_path / "suite"
    (suite / "tests").mkdir(parents=True)
    for name in ("conftest.py", "helpers.py"):
        shutil.copy2(ROOT / "tests" / name, suite / "tests" / name)
    (suite / "tests" / "test_shared.py").write_text(SHARED)
    (suite / "tests" / "test_spans.py").write_text(SPANS)
    (suite / "pytest.ini").write_text(
        "[pytest]\ntestpaths = tests\npythonpath = tests\nmarkers =\n    timing: alone\n"
        "addopts = -n 2 --dist loadgroup -p no:cacheprovider -p no:benchmark\n"
    )
    log = tmp_path / "log"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=suite,
        env={"PATH": "/usr/bin:/bin", "LAYOUT_LOG": str(log), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "16 passed" in done.stdout, done.stdout

    assert len(log.with_suffix(".built").read_text().split()) == 1  # one worker built it, once

    spans = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(spans) == 10
    for name, start, end, threads in spans:
        if name.startswith("timing"):
            others = [(n, s, e) for n, s, e, _ in spans if n != name and s < end and start < e]
            assert not others, f"{name} ran beside {others}"
            assert threads == [len(os.sched_getaffinity(0)), None], name  # torch's default: one per CPU
        else:
            assert threads == [1, "1"], name
    plain = sorted((s, e) for n, s, e, _ in spans if n.startswith("plain"))
    assert any(b[0] < a[1] for a, b in zip(plain, plain[1:])), "the plain tests never ran side by side"
