"""pytest-benchmark: ``mixerbench report`` on synthetic sweeps of 10^3, 10^4 and 10^5 records (tests/synth_records.py).

On demand only (each size is a child process; 10^5 records are a 430 MB results.jsonl and minutes of work):
the suite's ``--benchmark-disable`` skips it. Measure with

    python -m pytest tests/report/test_benchmark_report.py --benchmark-enable -s

Each size runs ``python -m bench report DIR`` once in a child process and gives its wall time and CPU time (user
and system), each also per record, and the child's peak resident set size (``os.wait4``); the peak must stay
under 2 GiB at every size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import synth_records

from helpers import PYTHONPATH, ROOT

GiB = 2**30
SIZES = (1_000, 10_000, 100_000)


def report_child(folder) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS bytes) of ``python -m bench report folder`` in a child process."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench", "report", str(folder)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=PYTHONPATH),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, f"report exited {child.returncode}"
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024  # Linux: KiB


@pytest.mark.parametrize("n", SIZES)
def test_report_time_and_memory(benchmark, tmp_path, n):
    if benchmark.disabled:
        pytest.skip("on demand: pytest tests/report/test_benchmark_report.py --benchmark-enable -s")
    synth_records.write(tmp_path, n)
    measured: list[tuple[float, float, int]] = []
    benchmark.pedantic(lambda: measured.append(report_child(tmp_path)), rounds=1, iterations=1)
    seconds, peak = measured[0]
    benchmark.extra_info.update(records=n, ms_per_record=1e3 * seconds / n, peak_rss_mib=peak / 2**20)
    print(
        f"\n{n:>7} records: {seconds:7.1f} s, {1e3 * seconds / n:.2f} ms per record, peak RSS {peak / 2**20:,.0f} MiB"
    )
    assert peak < 2 * GiB
