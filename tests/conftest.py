"""Fixtures shared by the test folders, and how the tests share the cores. Constants and plain functions are in
helpers.py.

The suite runs on pytest-xdist's workers (``-n auto --dist loadgroup`` in pyproject.toml), with these rules:

- Tests of one group run on one worker, one after another: the tests marked ``xdist_group(NAME)`` with the same
  NAME, and the tests of a file that use the same fixtures of module (class, package) scope defined in that file,
  so that such a fixture is built once. Every other test is sent to whichever worker is free.
- Each worker computes on one thread (:func:`_one_thread`).
- A test marked ``timing`` (it measures time, or its outcome depends on speed) runs alone: while it runs no other
  test does, on any worker. Every test holds a shared lock from its set-up to its teardown; a timing test takes
  it exclusively. Timing tests are collected last, so they run together at the end (and tests marked ``slow``
  first).

(xdist's own grouping appends the group to the test's id, which pytest 9 no longer allows; so each worker writes
the groups it collected to the session's temporary folder and the scheduler below reads them.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

import pytest

from helpers import NPM_CACHE, fake_record

_SHARED_SCOPES = ("module", "class", "package")


def _session_folder(config) -> Path:
    """The base temporary folder of the whole session: a worker's own is a folder inside it."""
    base = config._tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


def _group(item) -> str | None:
    names = sorted(
        {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    )
    if names:
        return "_".join(names)
    path = item.nodeid.split("::", 1)[0]
    info = getattr(item, "_fixtureinfo", None)
    shared = sorted(
        name
        for name, defs in (info.name2fixturedefs.items() if info is not None else ())
        if defs[-1].scope in _SHARED_SCOPES and defs[-1].baseid.startswith(path)
    )
    return f"{path}::{'+'.join(shared)}" if shared else None


def pytest_collection_modifyitems(config, items):
    # The slow tests first (a long test started last would keep its worker busy after the others are done), the
    # timing tests last; a stable sort keeps the rest in their order.
    items.sort(
        key=lambda item: (item.get_closest_marker("timing") is not None, item.get_closest_marker("slow") is None)
    )
    if hasattr(config, "workerinput"):
        groups = {item.nodeid: group for item in items if (group := _group(item))}
        path = _session_folder(config) / f"groups-{config.workerinput['workerid']}.json"
        path.write_text(json.dumps(groups))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Scheduling(LoadGroupScheduling):
        """xdist's loadgroup, its groups read from what the workers collected, sent out in the collection's order
        (slow first, timing last: see pytest_collection_modifyitems) rather than the largest group first."""

        groups: dict[str, str] | None = None

        def __init__(self, config, log=None) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # first called once every worker has collected
                self.groups = {}
                for path in _session_folder(config).glob("groups-*.json"):
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return Scheduling(config, log)


class _Cores:
    """The session's lock on the cores: shared by every test, exclusive for a timing test.

    Two ``flock`` files in the session's temporary folder: ``cores.gate``, which a timing test holds from before it
    waits until it ends (so that no test starts while it waits for the running ones to end), and ``cores.lock``,
    shared or exclusive.
    """

    def __init__(self, folder: Path) -> None:
        self.gate = os.open(folder / "cores.gate", os.O_RDWR | os.O_CREAT)
        self.cores = os.open(folder / "cores.lock", os.O_RDWR | os.O_CREAT)

    @contextlib.contextmanager
    def hold(self, exclusive: bool):
        fcntl.flock(self.gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self.cores, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(self.gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.cores, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(self.gate, fcntl.LOCK_UN)


_DEFAULT_THREADS: dict = {}  # what _one_thread replaced: torch's threads, OMP_NUM_THREADS


def pytest_configure(config):
    if int(getattr(config, "workerinput", {}).get("workercount", 1)) > 1:
        _one_thread(True)


def _one_thread(one: bool) -> None:
    """One compute thread per worker (torch here, OpenMP in the processes the tests start), or the defaults back.

    Each worker's torch would otherwise start a thread per core: more threads than cores, which spin-wait at
    every parallel region's barrier and made the numerical tests twice as slow. A timing test runs alone, so it
    gets the defaults back.
    """
    import torch

    if one:
        _DEFAULT_THREADS.setdefault("torch", torch.get_num_threads())
        _DEFAULT_THREADS.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS"))
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"
    elif _DEFAULT_THREADS:
        torch.set_num_threads(_DEFAULT_THREADS["torch"])
        if _DEFAULT_THREADS["OMP_NUM_THREADS"] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = _DEFAULT_THREADS["OMP_NUM_THREADS"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    config = item.config
    if not hasattr(config, "_mixerbench_cores"):
        config._mixerbench_cores = _Cores(_session_folder(config))
    timing = item.get_closest_marker("timing") is not None
    with config._mixerbench_cores.hold(exclusive=timing):
        if timing and _DEFAULT_THREADS:
            _one_thread(False)
        try:
            yield
        finally:
            if timing and _DEFAULT_THREADS:
                _one_thread(True)


@pytest.fixture(scope="session")
def session_folder(request) -> Path:
    """The test session's temporary folder, shared by every worker (for what is built once per session)."""
    return _session_folder(request.config)


@pytest.fixture(scope="session")
def npm_cache(request) -> Path:
    """:data:`helpers.NPM_CACHE` with every tarball ``mixerbench dashboard`` vendors, for ``--cache``.

    Filled once, by the first worker that needs it, while the others wait: two ``npm pack`` into one folder at
    once would let one of them read the other's half-written tarball.
    """
    from bench.site import dashboard

    with open(_session_folder(request.config) / "npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        dashboard.fetch_packages(NPM_CACHE)
    return NPM_CACHE


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
