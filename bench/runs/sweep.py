"""The sweep: a grid of cases (``bench.runs.presets``), each counted, timed and measured, one Record per case.

For each :class:`~bench.schema.Case` :func:`run_case` returns a
:class:`~bench.runs.records.Record` holding

- the count (:func:`bench.measure.counting.count`: parameters, MACs per image, tokens S),
- latency median and IQR, images/s (:mod:`bench.measure.timing`),
- peak memory, weights and activations apart (:mod:`bench.measure.memory`),
- achieved FLOP/s and MFU against the matmul roof measured at the start of the run,
- the environment (:mod:`bench.measure.env`),

and :func:`run_sweep` appends it to ``results.jsonl`` as soon as it exists
(:mod:`bench.runs.records`). A case that runs out of memory is recorded with status "oom",
one whose memory worker is killed without evidence of OOM "killed", any other failure
"error", and the sweep goes on; ``resume=True`` skips cases already recorded as "ok" or "oom".
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import architectures
from bench import schema
from bench.runs.records import ResultsWriter
from bench.schema import FLOPS_PER_MAC, Case, Env, PeerCase, PeerRecord, Record, Shard

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class SweepConfig:
    cases: tuple[Case, ...]
    out: Path
    preset: str
    resume: bool = False
    min_run_time: float = 1.0
    min_runs: int = 5
    warmup: int = 2
    threads: int | None = None
    rounds: int = 1  # timing rounds per series, sizes shuffled each round (bench.runs.rounds); 1: case by case
    # With min_rounds, `rounds` is a maximum: a series stops once its verdicts are decided (bench.analysis.sequential)
    min_rounds: int | None = None
    shard: Shard | None = None  # the shard this run is (stored in every record), or None

    def __post_init__(self):
        import math

        if not (
            isinstance(self.min_run_time, (int, float)) and math.isfinite(self.min_run_time) and self.min_run_time > 0
        ):
            raise ValueError(f"min_run_time must be a finite positive number of seconds, got {self.min_run_time!r}")
        if self.min_runs < 1 or self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise ValueError(
                f"min_runs >= 1, warmup >= 0 and threads >= 1 needed, got {self.min_runs}, {self.warmup}, {self.threads}"
            )


def validate_cases(cases: Iterable[Case]) -> None:
    """Build every case on the meta device; raise ValueError naming the first impossible one."""
    from bench.measure import counting

    for case in cases:
        try:
            counting.build(case)  # the config checks the overrides; a model built but not used is dropped
        except (ValueError, TypeError, AssertionError) as exc:
            size = f"{case.img_size} px" + (f", patch {case.patch_size}" if case.patch_size else "")
            raise ValueError(f"{case.model} at {size}: {str(exc).splitlines()[0]}") from None


def find_max_batch(fits: Callable[[int], bool], *, start: int = 1, limit: int = 4096) -> int:
    """The largest batch in [1, limit] for which ``fits(batch)`` holds (0 if not even 1 fits).

    Doubles from ``start`` until a batch fails, then bisects between the last batch that
    fitted and the first that did not (like timm's benchmark, which backs off on OOM).
    Assumes that whatever fits, any smaller batch fits too.
    """
    if not fits(start):
        if start == 1:
            return 0
        return find_max_batch(fits, start=1, limit=start - 1)
    good, bad = start, None
    while bad is None and good < limit:
        trial = min(good * 2, limit)
        if fits(trial):
            good = trial
        else:
            bad = trial
    if bad is None:
        return good
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def _free_cuda() -> None:
    """Give a finished case's CUDA memory back before the next one (a no-op without a GPU).

    On the CPU nothing needs it: tensors go with their last reference, and the memory
    worker measures in its own process (a full ``gc.collect`` here cost 0.2 s a call).
    """
    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def _cuda_batch_fits(case: Case, log: TextIO | None = None) -> Callable[[int], bool]:
    """``fits(batch)``: whether one step of ``case`` at that batch runs without CUDA OOM (each try on ``log``)."""
    import torch

    from bench.measure import memory

    def fits(batch: int) -> bool:
        started = time.perf_counter()
        try:
            memory.measure_in_process(case, batch=batch)
            ok = True
        except torch.OutOfMemoryError:
            ok = False
        finally:
            _free_cuda()
        if log is not None:
            verdict = "fits" if ok else "out of memory"
            print(
                f"  max batch search: {batch} {verdict} ({time.perf_counter() - started:.1f} s)", file=log, flush=True
            )
        return ok

    return fits


@dataclass(frozen=True)
class RunContext:
    """What the cases of one run on one device share: where they run and how they are timed."""

    env: Env | None  # the software and device (bench.measure.env.environment)
    roof: float  # the matmul roof of the case's device and dtype, FLOP/s (MFU's denominator)
    copy_bytes_per_s: float | None = None  # copy bandwidth, the roofline's memory roof
    min_run_time: float = 1.0
    min_runs: int = 5
    warmup: int = 2


def run_case(
    case: Case,
    run: RunContext,
    *,
    worker=None,
    log: TextIO | None = None,
    pretimed=None,
) -> Record:
    """Count, time and measure one case; the record to append (status "ok", "oom", "killed" or "error").

    Any exception of the case becomes its record (its type and first line in ``error``);
    what was measured before it (count, timing) stays in the record.

    ``log`` receives a line per try of the max-batch search (``case.batch == "max"``).
    ``pretimed`` (a :class:`bench.runs.rounds.SeriesTiming`) holds the case's timing from
    the rounds of its series, used instead of timing it here.
    """
    import torch

    from bench.measure import cost, counting, memory, timing

    record = Record(
        case=case,
        status="error",
        label=case.name,
        family=architectures.family(case.model),
        env=run.env,
        roof_flops_per_s=run.roof,
        flops_per_mac=FLOPS_PER_MAC[case.mode],
        copy_bytes_per_s=run.copy_bytes_per_s,
    )
    started = time.perf_counter()
    try:
        record.counts = counting.count(case)
        batch = case.batch
        if batch == "max":
            batch = find_max_batch(_cuda_batch_fits(case, log))
            if batch == 0:
                raise torch.OutOfMemoryError("not even batch 1 fits")
        record.batch = batch
        sized = case.replace(batch=batch)
        record.cost = cost.cost_or_none(sized)  # bytes moved, peak activation bytes, operators (meta device)
        if pretimed is not None:
            if pretimed.error is not None:
                raise pretimed.error
            record.time = pretimed.timing
            record.profile = pretimed.profile()
            record.compile_time, record.energy = pretimed.compile_time, pretimed.energy
        else:
            measured = timing.measure_case(
                sized, min_run_time=run.min_run_time, min_runs=run.min_runs, warmup=run.warmup
            )
            record.time, record.compile_time, record.energy = measured.timing, measured.compile_time, measured.energy
        record.achieved_flops_per_s = timing.achieved_flops(record.counts.macs, record.time.images_per_s, case.mode)
        record.mfu = record.achieved_flops_per_s / run.roof
        _free_cuda()
        record.memory = memory.measure_in_process(sized) if case.device == "cuda" else worker.measure(sized)
        record.status = "ok"
    except memory.WorkerKilled as exc:  # no evidence of OOM: "killed", measured again on --resume
        record.status, record.error = "killed", _first_line(exc)
    except Exception as exc:  # any failure of one case is recorded; KeyboardInterrupt and SystemExit propagate
        if memory.is_out_of_memory(exc):
            record.status, record.error = "oom", _first_line(exc) or "out of memory"
        else:
            record.error = f"{type(exc).__name__}: {_first_line(exc)}"
    finally:
        _free_cuda()
    record.elapsed_s = round(time.perf_counter() - started, 3)
    return record


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def describe(record: Record) -> str:
    """One line for the console: the case and what it measured."""
    case = record.case
    size = f"{case.img_size}px" + (f"/p{case.patch_size}" if case.patch_size else "")
    tokens = f" S={record.tokens}" if record.tokens else ""
    compiled = "" if case.compile in ("none", False) else f" compiled {case.compile}"
    head = f"{record.name} {size}{tokens} b{record.batch or case.batch} {case.dtype} {case.mode}{compiled}"
    if record.status != "ok":
        return f"{head}: {record.status.upper()} ({record.error or ''})"
    t, m = record.time, record.memory
    assert t is not None and m is not None  # an ok record has both (bench.schema.Record)
    return (
        f"{head}: {t.median_s * 1e3:.1f} ms (IQR {t.iqr_s * 1e3:.1f}), {t.images_per_s:.1f} img/s, "
        f"MFU {record.mfu:.0%}, activations {m.activation_bytes / 2**20:.1f} MiB"
    )


def run_sweep(config: SweepConfig, *, log: TextIO | None = None) -> list[Record]:
    """Run the cases not yet in ``config.out/results.jsonl``, appending one record per case.

    Returns the newest record of every case in the file afterwards (a case measured
    again on resume supersedes its earlier line). Progress goes to ``log`` (default: the
    ``sys.stdout`` of the moment of the call): case i/N, elapsed time and an estimate of what is left.
    """
    from bench import files
    from bench.measure import timing

    with files.folder_lock(config.out), timing.torch_threads(config.threads):
        path = config.out / schema.RESULTS_FILENAME
        if not config.resume and path.exists() and path.stat().st_size > 0:  # checked again under the lock
            raise files.FolderBusy(f"{path} exists (another sweep wrote it meanwhile?); continue it with --resume")
        return _run_sweep(config, sys.stdout if log is None else log)


class RecordNotWritten(OSError):
    """Appending a measured record to results.jsonl failed (disk full, file too large); the record went to stderr."""


def _append(writer: ResultsWriter, record: Record | PeerRecord) -> None:
    """Append ``record``; when that fails, print its line to stderr (so it is not lost) and raise RecordNotWritten."""
    try:
        writer.append(record)
    except OSError as exc:
        print(schema.dumps(record), file=sys.stderr, flush=True)
        raise RecordNotWritten(
            f"cannot append to {writer.path} ({exc.strerror or exc}); the record just measured is the JSON line above: "
            f"add it to {writer.path} once there is room, then resume the sweep"
        ) from None


def _run_sweep(config: SweepConfig, log: TextIO) -> list[Record]:
    from bench.measure import cost, memory, timing
    from bench.measure import env as envinfo
    from bench.runs import machine, rounds

    path = config.out / schema.RESULTS_FILENAME
    if config.shard is not None:  # before any case: an empty or interrupted shard is told from a missing one
        from bench.runs import shard_cases

        shard_cases.write_marker(config.out, config.shard, config.cases)
    done: set[str] = set()
    invalid = ""
    if config.resume and path.exists():
        previous, problems = schema.read_results(path)
        for problem in problems:  # the line stays in the file; a case it names is run only if no valid record stands
            print(f"warning: {problem} (line skipped)", file=sys.stderr)
        done = {k for k, r in schema.latest_by_key(previous).items() if r.status in schema.FINAL_STATUSES}
        invalid = f"; {len(problems)} invalid line{'s' * (len(problems) != 1)} skipped" if problems else ""
    todo = [c for c in config.cases if c.key not in done]
    skipped = len(config.cases) - len(todo)
    print(
        f"sweep: {len(config.cases)} cases ({skipped} already in {path}{invalid}), {len(todo)} to run",
        file=log,
        flush=True,
    )
    if todo:
        devices = {c.device for c in todo}
        env = {d: envinfo.environment(d) for d in devices}
        roofs = {}
        for device, dtype in sorted({(c.device, c.dtype) for c in todo}):
            roofs[device, dtype] = timing.matmul_roof(device, dtype)
            print(f"matmul roof {device} {dtype}: {roofs[device, dtype] / 1e9:.1f} GFLOP/s", file=log, flush=True)
        copies = {
            d: cost.copy_bandwidth(d) for d in sorted(devices)
        }  # the roofline's memory roof (bench.report.roofline)
        worker = memory.MemoryWorker() if "cpu" in devices else None
        machines, run_started = {d: machine.start(d) for d in devices}, machine.now()  # fingerprint, GPU sample
        started = time.perf_counter()
        try:
            with ResultsWriter(path) as writer:
                for i, (case, pretimed) in enumerate(rounds.pretime(todo, config, log), start=1):
                    run = RunContext(
                        env=env[case.device],
                        roof=roofs[case.device, case.dtype],
                        copy_bytes_per_s=copies[case.device],
                        min_run_time=config.min_run_time,
                        min_runs=config.min_runs,
                        warmup=config.warmup,
                    )
                    record = run_case(case, run, worker=worker, log=log, pretimed=pretimed)
                    record.shard = config.shard
                    record.machine = machines[case.device]
                    _append(writer, record)
                    elapsed = time.perf_counter() - started
                    eta = elapsed / i * (len(todo) - i)
                    print(
                        f"case {i}/{len(todo)}  {describe(record)}  [elapsed {_clock(elapsed)}, ETA {_clock(eta)}]",
                        file=log,
                        flush=True,
                    )
        finally:
            if worker is not None:
                worker.close()
            machine.write_end(config.out, machines, run_started, config.shard, log)
    elif not path.exists():  # nothing to run (an empty shard): still a sweep folder that merge and report read
        ResultsWriter(path).close()
    records, _ = schema.read_results(path)
    return list(schema.latest_by_key(records).values())


def run_peers(
    pairs: Iterable[tuple[str, str]],
    *,
    out: Path,
    img_size: int = 224,
    batch: int = 8,
    device: str = "cpu",
    dtype: str = "float32",
    mode: str = "infer",
    rounds: int = 5,
    threads: int | None = None,
    log: TextIO | None = None,
) -> list[PeerRecord]:
    """Latency ratio ours/timm of each pair, timed interleaved in this run (see :func:`bench.measure.timing.paired_ratio`).

    Both models of a pair hold the same weights (timm's state dict loaded into ours,
    strictly) and run the same batch. One record per pair goes to ``out/peers.jsonl``; a pair
    that fails (weights that do not match, a model that does not build) is one line on
    ``log`` and is not recorded: fewer records than pairs returned means some failed.
    """
    from bench import files
    from bench.measure import timing

    with files.folder_lock(out), timing.torch_threads(threads):
        setup = PeerCase(
            "", "", img_size, batch, device, dtype, mode, channels_last=False
        )  # each pair fills in the rest
        return _run_peers(pairs, out, setup, rounds, sys.stdout if log is None else log)


def _run_peers(
    pairs: Iterable[tuple[str, str]], out: Path, setup: PeerCase, rounds: int, log: TextIO
) -> list[PeerRecord]:
    from bench.measure import env as envinfo
    from bench.measure import timing

    img_size, batch, device, dtype, mode = setup.img_size, setup.batch, setup.device, setup.dtype, setup.mode
    env = envinfo.environment(device)
    records = []
    mine: nn.Module | None
    theirs: nn.Module | None
    with ResultsWriter(out / schema.PEERS_FILENAME) as writer:
        for ours, peer in pairs:
            channels_last = timing.uses_channels_last(ours)
            try:
                theirs = timing.build_model(peer, img_size, device=device, channels_last=channels_last)
                mine = timing.build_model(ours, img_size, device=device, channels_last=channels_last)
                mine.load_state_dict(theirs.state_dict(), strict=True)
                steps = [
                    timing.make_step(
                        model,
                        batch=batch,
                        img_size=img_size,
                        device=device,
                        dtype=dtype,
                        mode=mode,
                        channels_last=channels_last,
                    )
                    for model in (mine, theirs)
                ]
                paired = timing.paired_ratio(steps[0], steps[1], rounds=rounds, number=1)
            except Exception as exc:  # one failed pair (e.g. weights that do not match): one line, then the next pair
                text = " ".join(str(exc).split())
                text = text if len(text) <= 200 else text[:197] + "..."
                print(f"{ours:<10} / {peer:<28} FAILED: {type(exc).__name__}: {text}", file=log, flush=True)
                mine = theirs = None
                gc.collect()
                continue
            case = dataclasses.replace(setup, ours=ours, timm=peer, channels_last=channels_last)
            record = PeerRecord(case=case, paired=paired, env=env)
            _append(writer, record)
            records.append(record)
            print(
                f"{ours:<10} / {peer:<28} ratio {paired.ratio_median:.3f} (IQR {paired.ratio_q1:.3f}-{paired.ratio_q3:.3f}, "
                f"{rounds} rounds)  ours {paired.median_a_s * 1e3:.0f} ms, timm {paired.median_b_s * 1e3:.0f} ms",
                file=log,
                flush=True,
            )
            del mine, theirs
            gc.collect()
    return records


def default_out(device: str, preset: str) -> Path:
    """mixerbench-results/<device>-<preset>-<UTC time>: a new folder per run, never an old one."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("mixerbench-results") / f"{device}-{preset}-{stamp}"
