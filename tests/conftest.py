"""Fixtures shared by the test folders. Constants and plain functions are in helpers.py."""

from __future__ import annotations

import pytest

from helpers import fake_record


class _NoWorker:
    """Stands in for the memory worker when no case is measured (the sweep only closes it)."""

    def close(self) -> None:
        pass


@pytest.fixture
def stub_measuring(monkeypatch):
    """The sweep's run_case returns an ok record at once; no roof is timed and no memory worker starts.

    Returns the list of cases run, in order, for tests of what the sweep does around its cases.
    """
    from bench.measure import memory, timing
    from bench.runs import sweep

    ran = []

    def run_case(case, run, **kwargs):
        ran.append(case)
        return fake_record(case, env=run.env, roof=run.roof)

    monkeypatch.setattr(sweep, "run_case", run_case)
    monkeypatch.setattr(timing, "matmul_roof", lambda device, dtype: 1e9)
    monkeypatch.setattr(memory, "MemoryWorker", _NoWorker)
    return ran
