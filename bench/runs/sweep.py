"""The sweep: a grid of cases, each counted, timed and measured, one JSON line per case.

A :class:`Case` is one model (with its config overrides) at one resolution and patch
size, batch, device, dtype and mode. For each case :func:`run_case` records

- the FLOPs issue's count (:func:`bench.measure.counting.count`: parameters, MACs per image, tokens S),
- latency median and IQR, images/s (:mod:`bench.measure.timing`),
- peak memory, weights and activations apart (:mod:`bench.memory`),
- achieved FLOP/s and MFU against the matmul roof measured at the start of the run,
- the environment (:mod:`bench.measure.env`),

and :func:`run_sweep` appends it to ``results.jsonl`` as soon as it exists
(:mod:`bench.runs.records`). A case that runs out of memory is recorded with status "oom"
and the sweep goes on; ``resume=True`` skips cases already recorded as "ok" or "oom".

Presets (:data:`PRESETS`) are a small table. ``quick`` is the CPU default: narrow,
shallow models (overrides on the reference presets, kept in every record) at patch 4,
so S reaches 2,305 tokens where a 64-wide ViT's attention (2 S^2 d MACs per block)
outweighs its linear part (12 S d^2) about six to one, in seconds per case. ``paper``
(the CUDA default) runs the papers' B and L models at 224 px and above.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TextIO

import architectures

from bench.runs import records as results

PEER_PAIRS = (
    ("mixer_b16", "timm:mixer_b16_224"),
    ("vit_b16", "timm:vit_base_patch16_224"),
    ("resnet50", "timm:resnet50"),
)


@dataclass(frozen=True)
class Entry:
    """A model of a preset: a registry name, config overrides, and the name reports use."""

    model: str
    overrides: dict = field(default_factory=dict)
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.model


@dataclass(frozen=True)
class Preset:
    name: str
    entries: tuple[Entry, ...]
    resolutions: tuple[int, ...]
    patch_sizes: tuple[int | None, ...]  # for token models; None: the preset's own patch
    batch: int
    dtypes: dict[str, tuple[str, ...]]  # device -> dtypes
    modes: tuple[str, ...]
    min_run_time: float  # seconds of timed steps per case (torch.utils.benchmark)
    min_runs: int  # timed samples per case at least (slow steps)
    warmup: int  # untimed steps before timing
    note: str


# Narrow, shallow versions of the reference models, for the CPU (paper ratios kept: D_S = C/2, D_C = 4C, mlp = 4d).
_MIXER_SMALL = {"hidden_dim": 64, "num_blocks": 2, "tokens_mlp_dim": 32, "channels_mlp_dim": 256}
_VIT_SMALL = {"hidden_dim": 64, "num_blocks": 2, "num_heads": 2, "mlp_dim": 256}
_RESNET_SMALL = {"width": 16}

PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        entries=(
            Entry("mixer_s16", _MIXER_SMALL, "mixer C64 x2"),
            Entry("vit_s16", dict(_VIT_SMALL, attn_backend="fused"), "vit d64 x2 fused"),
            Entry("vit_s16", dict(_VIT_SMALL, attn_backend="explicit"), "vit d64 x2 explicit"),
            Entry("resnet18", _RESNET_SMALL, "resnet18 w16"),
        ),
        resolutions=(64, 96, 128, 160, 192),
        patch_sizes=(4,),
        batch=1,
        dtypes={"cpu": ("float32",), "cuda": ("float32",)},
        modes=("infer",),
        min_run_time=0.2,
        min_runs=3,
        warmup=1,
        note="small widths (Mixer C=64, ViT d=64, 2 blocks; ResNet-18 at width 16), patch 4: S = 256..2,305",
    ),
    "paper": Preset(
        name="paper",
        entries=(
            Entry("mixer_b16"),
            Entry("vit_b16", {"attn_backend": "fused"}, "vit_b16 fused"),
            Entry("vit_b16", {"attn_backend": "explicit"}, "vit_b16 explicit"),
            Entry("resnet50"),
            Entry("mixer_l16"),
            Entry("vit_l16", {"attn_backend": "fused"}, "vit_l16 fused"),
        ),
        resolutions=(224, 288, 384, 448, 512, 640, 768),
        patch_sizes=(None,),
        batch=32,
        dtypes={"cpu": ("float32",), "cuda": ("bfloat16",)},
        modes=("infer",),
        min_run_time=1.0,
        min_runs=5,
        warmup=3,
        note="the papers' B/16 and L/16 models and ResNet-50 at 224-768 px (a GPU job)",
    ),
    "full": Preset(
        name="full",
        entries=(
            Entry("mixer_b16"),
            Entry("mixer_b32"),
            Entry("vit_b16", {"attn_backend": "fused"}, "vit_b16 fused"),
            Entry("vit_b16", {"attn_backend": "explicit"}, "vit_b16 explicit"),
            Entry("vit_b32", {"attn_backend": "fused"}, "vit_b32 fused"),
            Entry("resnet50"),
            Entry("mixer_l16"),
            Entry("vit_l16", {"attn_backend": "fused"}, "vit_l16 fused"),
            Entry("vit_l16", {"attn_backend": "explicit"}, "vit_l16 explicit"),
        ),
        resolutions=(224, 288, 384, 448, 512, 640, 768, 896, 1024),
        patch_sizes=(None,),
        batch=32,
        dtypes={"cpu": ("float32",), "cuda": ("float32", "bfloat16")},
        modes=("infer", "train"),
        min_run_time=1.0,
        min_runs=5,
        warmup=3,
        note="paper's models plus /32 variants, up to 1024 px, inference and training (a long GPU job)",
    ),
}


@dataclass(frozen=True)
class Case:
    """One measurement. ``batch`` is "max" when the largest batch that fits is searched (CUDA)."""

    model: str
    img_size: int
    patch_size: int | None
    batch: int | str
    device: str
    dtype: str
    mode: str
    overrides: dict = field(default_factory=dict)
    channels_last: bool = False
    compile: bool = False
    label: str = ""

    def to_dict(self) -> dict:
        """The case as stored in each record; its key (:func:`bench.runs.records.case_key`) ignores ``label``."""
        d = dataclasses.asdict(self)
        d.pop("label")
        return d

    @property
    def key(self) -> str:
        return results.case_key(self.to_dict())

    @property
    def name(self) -> str:
        return self.label or self.model


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


def has_tokens(model: str) -> bool:
    """True for models that mix tokens (Mixer, ViT, timm patch models), False for convnets."""
    fam = architectures.family(model)
    if fam in ("mixer", "vit"):
        return True
    if fam == "resnet":
        return False
    import torch

    with torch.device("meta"):
        return architectures.num_tokens(architectures.create(model)) is not None


def build_grid(
    entries: Iterable[Entry],
    resolutions: Iterable[int],
    patch_sizes: Iterable[int | None],
    *,
    batch: int | str,
    device: str,
    dtypes: Iterable[str],
    modes: Iterable[str],
    compile: bool = False,
) -> list[Case]:
    """Every combination, in the order a report reads best: model, patch, mode, dtype, resolution.

    Patch sizes apply to token models only; convnets get one case per resolution.
    """
    from bench.measure import timing

    cases = []
    for entry in entries:
        tokens = has_tokens(entry.model)
        channels_last = timing.uses_channels_last(entry.model)
        for patch in (patch_sizes if tokens else (None,)):
            for mode in modes:
                for dtype in dtypes:
                    for res in resolutions:
                        cases.append(
                            Case(entry.model, res, patch, batch, device, dtype, mode, dict(entry.overrides),
                                 channels_last, compile, entry.name)
                        )
    return cases


def validate_cases(cases: Iterable[Case]) -> None:
    """Build every case on the meta device; raise ValueError naming the first impossible one."""
    import torch

    for case in cases:
        try:
            with torch.device("meta"):
                architectures.create(case.model, img_size=case.img_size, patch_size=case.patch_size, **case.overrides)
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
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _cuda_batch_fits(case: Case, log: TextIO | None = None) -> Callable[[int], bool]:
    """``fits(batch)``: whether one step of ``case`` at that batch runs without CUDA OOM (each try on ``log``)."""
    import torch

    from bench.measure import memory

    def fits(batch: int) -> bool:
        started = time.perf_counter()
        try:
            memory.measure_in_process(
                case.model, case.img_size, case.patch_size, batch=batch, device="cuda", dtype=case.dtype,
                mode=case.mode, overrides=case.overrides, channels_last=case.channels_last,
            )
            ok = True
        except torch.OutOfMemoryError:
            ok = False
        finally:
            _free_cuda()
        if log is not None:
            verdict = "fits" if ok else "out of memory"
            print(f"  max batch search: {batch} {verdict} ({time.perf_counter() - started:.1f} s)", file=log, flush=True)
        return ok

    return fits


def run_case(
    case: Case, *, env: dict, roof: float, min_run_time: float = 1.0, min_runs: int = 5, warmup: int = 2, worker=None,
    log: TextIO | None = None,
) -> dict:
    """Count, time and measure one case; the record to append (status "ok", "oom" or "error").

    ``log`` receives a line per try of the max-batch search (``case.batch == "max"``).
    """
    import torch

    from bench.measure import counting as flops

    from bench.measure import memory

    from bench.measure import timing

    record: dict = {
        "schema": results.SCHEMA_VERSION,
        "case": case.to_dict(),
        "label": case.name,
        "family": architectures.family(case.model),
        "env": env,
        "roof_flops_per_s": roof,
        "flops_per_mac": timing.FLOPS_PER_MAC[case.mode],
    }
    started = time.perf_counter()
    try:
        count = flops.count(case.model, case.img_size, case.patch_size, **case.overrides)
        record.update(tokens=count.tokens, params=count.params, macs=count.macs, flops=count.to_dict())
        batch = case.batch
        if batch == "max":
            batch = find_max_batch(_cuda_batch_fits(case, log))
            if batch == 0:
                raise torch.OutOfMemoryError("not even batch 1 fits")
        record["batch"] = batch
        spec = dict(batch=batch, device=case.device, dtype=case.dtype, mode=case.mode, overrides=case.overrides,
                    channels_last=case.channels_last)
        t = timing.measure(case.model, case.img_size, case.patch_size, compile=case.compile,
                           min_run_time=min_run_time, min_runs=min_runs, warmup=warmup, **spec)
        achieved = timing.achieved_flops(count.macs, t.images_per_s, case.mode)
        record.update(time=t.to_dict(), achieved_flops_per_s=achieved, mfu=achieved / roof)
        _free_cuda()
        if case.device == "cuda":
            mem = memory.measure_in_process(case.model, case.img_size, case.patch_size, **spec)
        else:
            mem = worker.measure(model_name=case.model, img_size=case.img_size, patch_size=case.patch_size, **spec)
        record.update(memory=mem.to_dict(), status="ok")
    except (torch.OutOfMemoryError, memory.WorkerOOM) as exc:
        record.update(status="oom", error=str(exc).splitlines()[0] if str(exc) else "out of memory")
    except (RuntimeError, ValueError) as exc:
        record.update(status="error", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        _free_cuda()
    record["elapsed_s"] = round(time.perf_counter() - started, 3)
    return record


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def describe(record: dict) -> str:
    """One line for the console: the case and what it measured."""
    case = record["case"]
    size = f"{case['img_size']}px" + (f"/p{case['patch_size']}" if case["patch_size"] else "")
    tokens = f" S={record['tokens']}" if record.get("tokens") else ""
    head = f"{record['label']} {size}{tokens} b{record.get('batch', case['batch'])} {case['dtype']} {case['mode']}"
    if record["status"] != "ok":
        return f"{head}: {record['status'].upper()} ({record.get('error', '')})"
    t, m = record["time"], record["memory"]
    return (f"{head}: {t['median_s'] * 1e3:.1f} ms (IQR {t['iqr_s'] * 1e3:.1f}), {t['images_per_s']:.1f} img/s, "
            f"MFU {record['mfu']:.0%}, activations {m['activation_bytes'] / 2**20:.1f} MiB")


def run_sweep(config: SweepConfig, *, log: TextIO = sys.stdout) -> list[dict]:
    """Run the cases not yet in ``config.out/results.jsonl``, appending one record per case.

    Returns all records of the file afterwards. Progress goes to ``log``: case i/N,
    elapsed time and an estimate of what is left.
    """
    import torch

    from bench.measure import env as envinfo

    from bench.measure import memory

    from bench.measure import timing

    if config.threads:
        torch.set_num_threads(config.threads)
    path = config.out / results.FILENAME
    done: set[str] = set()
    if config.resume and path.exists():
        previous, problems = results.read_results(path)
        for problem in problems:
            print(f"warning: {problem} (kept; that case is measured again)", file=sys.stderr)
        done = {k for k, r in results.latest_by_key(previous).items() if r["status"] in ("ok", "oom")}
    todo = [c for c in config.cases if c.key not in done]
    skipped = len(config.cases) - len(todo)
    print(f"sweep: {len(config.cases)} cases ({skipped} already in {path}), {len(todo)} to run", file=log, flush=True)
    if todo:
        devices = {c.device for c in todo}
        env = {d: envinfo.environment(d) for d in devices}
        roofs = {}
        for device, dtype in sorted({(c.device, c.dtype) for c in todo}):
            roofs[device, dtype] = timing.matmul_roof(device, dtype)
            print(f"matmul roof {device} {dtype}: {roofs[device, dtype] / 1e9:.1f} GFLOP/s", file=log, flush=True)
        worker = memory.MemoryWorker() if "cpu" in devices else None
        started = time.perf_counter()
        try:
            with results.ResultsWriter(path) as writer:
                for i, case in enumerate(todo, start=1):
                    record = run_case(case, env=env[case.device], roof=roofs[case.device, case.dtype],
                                      min_run_time=config.min_run_time, min_runs=config.min_runs,
                                      warmup=config.warmup, worker=worker, log=log)
                    writer.append(record)
                    elapsed = time.perf_counter() - started
                    eta = elapsed / i * (len(todo) - i)
                    print(f"case {i}/{len(todo)}  {describe(record)}  [elapsed {_clock(elapsed)}, ETA {_clock(eta)}]",
                          file=log, flush=True)
        finally:
            if worker is not None:
                worker.close()
    records, _ = results.read_results(path)
    return records


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
    log: TextIO = sys.stdout,
) -> list[dict]:
    """Latency ratio ours/timm of each pair, timed interleaved in this run (see :func:`bench.measure.timing.paired_ratio`).

    Both models of a pair hold the same weights (timm's state dict loaded into ours,
    strictly) and run the same batch. One record per pair goes to ``out/peers.jsonl``.
    """
    import torch

    from bench.measure import env as envinfo

    from bench.measure import timing

    if threads:
        torch.set_num_threads(threads)
    env = envinfo.environment(device)
    records = []
    with results.ResultsWriter(out / "peers.jsonl") as writer:
        for ours, peer in pairs:
            channels_last = timing.uses_channels_last(ours)
            theirs = timing.build_model(peer, img_size, device=device, channels_last=channels_last)
            mine = timing.build_model(ours, img_size, device=device, channels_last=channels_last)
            mine.load_state_dict(theirs.state_dict(), strict=True)
            kw = dict(batch=batch, img_size=img_size, device=device, dtype=dtype, mode=mode, channels_last=channels_last)
            paired = timing.paired_ratio(timing.make_step(mine, **kw), timing.make_step(theirs, **kw), rounds=rounds, number=1)
            record = {
                "schema": results.SCHEMA_VERSION,
                "case": {"ours": ours, "timm": peer, "img_size": img_size, "batch": batch, "device": device,
                         "dtype": dtype, "mode": mode, "channels_last": channels_last},
                "status": "ok",
                "paired": paired.to_dict(),
                "env": env,
            }
            writer.append(record)
            records.append(record)
            print(f"{ours:<10} / {peer:<28} ratio {paired.ratio_median:.3f} (IQR {paired.ratio_q1:.3f}-{paired.ratio_q3:.3f}, "
                  f"{rounds} rounds)  ours {paired.median_a_s * 1e3:.0f} ms, timm {paired.median_b_s * 1e3:.0f} ms",
                  file=log, flush=True)
            del mine, theirs
            gc.collect()
    return records


def default_out(device: str, preset: str) -> Path:
    """mixerbench-results/<device>-<preset>-<UTC time>: a new folder per run, never an old one."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("mixerbench-results") / f"{device}-{preset}-{stamp}"


def check_writable(out: Path) -> None:
    """Raise ValueError when ``out`` cannot be created or written (creates nothing)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {probe} is not writable")
    target = out / results.FILENAME
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"--out {out}: {target} is not writable")

