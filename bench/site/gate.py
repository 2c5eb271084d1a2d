"""The pull-request gate over asv's stored results: one verdict per group of benchmarks, and its Markdown summary.

CI measures the pull request's base and head once (``asv run`` over both commits, the
benchmarks of :func:`bench_regex`) and judges every group of :data:`GROUPS` on the stored
results, with the rule of ``asv continuous`` (``asv.commands.compare``: a value worse than
``factor`` times the other, and for timed benchmarks with samples also a significant
difference by asv's Mann-Whitney test). A group that gates fails the pull request when a
benchmark in it got worse, or fails on the head; a report group never does. A benchmark is
judged in the first group whose pattern matches its name (the curves' peak tensor bytes gate
at 1.0 and are not judged again in the curves' report).

:func:`compare` reads the two commits' results (asv's own ``asv.results`` readers);
:func:`summary` writes the Markdown: the verdict per group, the deterministic tracks that
changed, the measured verdicts that changed (per series, quantity and axis, with the
quadratic shares and their 95% bounds), and the report groups' largest changes. Every string
read from the results (names, parameters, units, the machine) is escaped for Markdown.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UsageError
from bench.text import markdown


@dataclass(frozen=True)
class Group:
    """Benchmarks whose names match ``pattern`` (``re.search``, as ``asv run --bench``), compared at ``factor``."""

    name: str
    title: str
    pattern: str
    factor: float
    gates: bool  # False: a report, never fails the pull request
    reports: str | None = None  # in a gating group: its benchmarks that are compared and shown but never fail it

    def matches(self, benchmark: str) -> bool:
        return re.search(self.pattern, benchmark) is not None

    def gates_on(self, benchmark: str) -> bool:
        """Whether ``benchmark`` (of this group) can fail the pull request."""
        return self.gates and not (self.reports and re.search(self.reports, benchmark))


# The gate of docs/guide/asv.md: the deterministic suites and the CPU curves' peak tensor bytes at 1.0, the measured
# verdicts, quadratic shares and attention's share at 1.5 (identical-code noise study there); the rest reports. The
# shares' 95% bounds report beside them: a bound is the uncertainty, not the scaling, and on identical code a busy
# base's lower bound can fall so far that the head's is 1.5x it.
COUNTS = Group(
    "counts",
    "deterministic suites",
    r"^(flops|scaling|cost|predicted)\.|^curves\.(Resolution|PatchSize)\.track_peak_tensor_bytes",
    1.0,
    gates=True,
)
VERDICTS = Group(
    "verdicts",
    "measured verdicts",
    r"^measured\.(Verdicts\.track_(verdict|quadratic_share)|AttentionShare\.)",
    1.5,
    gates=True,
    reports=r"^measured\.Verdicts\.track_quadratic_share_(low|high)_percent$",
)
TIMING = Group("timing", "timing and memory", r"^(throughput|memory)\.", 1.5, gates=False)
CURVES = Group(
    "curves", "measured curves, drifts, cost", r"^curves\.|^measured\.(Verdicts\.track_drift|Cost\.)", 1.5, gates=False
)
GROUPS = (COUNTS, VERDICTS, TIMING, CURVES)

VERDICT_NAMES = ("linear", "inconclusive", "quadratic")  # by code: suites/common.py's VERDICT_CODES
WORSE = ("worse", "failed", "failing")  # marks that fail a gating group


def bench_regex(groups: tuple[Group, ...] = GROUPS) -> str:
    """One ``asv run --bench`` pattern for every benchmark of ``groups``."""
    return "|".join(f"(?:{g.pattern})" for g in groups)


def group_of(benchmark: str, groups: tuple[Group, ...] = GROUPS) -> Group | None:
    """The first group whose pattern matches ``benchmark`` (module.Class.method), or None."""
    return next((g for g in groups if g.matches(benchmark)), None)


@dataclass(frozen=True)
class Row:
    """One benchmark and parameter combination at the two commits: values (None failed, NaN skipped) and asv's mark."""

    benchmark: str  # module.Class.method
    name: str  # as asv prints it: benchmark(param, ...)
    params: tuple[str, ...]  # asv's parameter reprs
    env: str
    group: Group
    unit: str | None
    before: float | None
    after: float | None
    mark: str  # worse, better, failed, fixed, failing (both failed), same, n/a (skipped), incomparable

    @property
    def fails(self) -> bool:
        """Whether this row fails the pull request: worse or failed, in a group that gates on it."""
        return self.mark in WORSE and self.group.gates_on(self.benchmark)

    @property
    def ratio(self) -> float | None:
        if not _number(self.before) or not _number(self.after) or self.before == 0:
            return None
        return self.after / self.before  # type: ignore[operator]

    def param(self, i: int) -> str:
        """Parameter ``i`` as written in the suite (a string's quotes removed)."""
        try:
            value = ast.literal_eval(self.params[i])
        except (ValueError, SyntaxError):
            return self.params[i]
        return str(value)


@dataclass
class Comparison:
    """The rows of two commits on one machine, judged per group."""

    machine: str
    base: str  # full hashes
    head: str
    base_name: str
    head_name: str
    groups: tuple[Group, ...]
    rows: list[Row] = field(default_factory=list)

    def of(self, group: Group) -> list[Row]:
        return [r for r in self.rows if r.group == group]

    def failing(self, group: Group) -> list[Row]:
        """What fails ``group``: its rows marked worse or failed that it gates on (none for a report group)."""
        return [r for r in self.of(group) if r.fails]

    def measured(self, group: Group) -> bool:
        """Whether some benchmark of ``group`` has a value (or a failure) at both commits."""
        return any(r.mark != "n/a" for r in self.of(group))

    @property
    def unmeasured(self) -> list[Group]:
        """Gating groups without results at one of the commits: the gate cannot pass on them."""
        return [g for g in self.groups if g.gates and not self.measured(g)]

    @property
    def passed(self) -> bool:
        return not self.unmeasured and not any(self.failing(g) for g in self.groups)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def mark(before, after, before_ss, after_ss, factor: float, same_version: bool = True) -> str:
    """asv's judgement of one value pair (``asv.commands.compare``, as ``asv continuous`` prints it)."""
    from asv.commands.compare import _is_result_better, _isna

    if not same_version:
        return "incomparable"
    if before is not None and after is None:
        return "failed"
    if before is None and after is not None:
        return "fixed"
    if before is None and after is None:
        return "failing"
    if _isna(before) or _isna(after):
        return "n/a"
    if _is_result_better(after, before, after_ss, before_ss, factor):
        return "better"
    if _is_result_better(before, after, before_ss, after_ss, factor):
        return "worse"
    return "same"


def machines(results_dir: Path) -> list[str]:
    """The asv machines with a results folder under ``results_dir``."""
    from asv.machine import iter_machine_files
    from asv.util import UserError, load_json

    names = []
    for path in iter_machine_files(str(results_dir)):
        try:
            name = load_json(path)["machine"]
        except (UserError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} is not an asv machine file ({' '.join(str(exc).split())})") from None
        names.append(str(name))
    return sorted(names)


def pick_machine(results_dir: Path, machine: str | None) -> str:
    """``machine``, checked, or the only machine with results."""
    if not results_dir.is_dir():
        raise UsageError(f"{results_dir} is not a folder (no asv results: run `asv run` first)")
    known = machines(results_dir)
    if not known:
        raise UsageError(f"{results_dir} holds no asv machine's results (run `asv run` first)")
    if machine is None:
        if len(known) > 1:
            raise UsageError(f"{results_dir} holds results of several machines ({', '.join(known)}): name one")
        return known[0]
    if machine not in known:
        raise UsageError(f"{results_dir} has no results of machine {machine!r} (it has: {', '.join(known)})")
    return machine


def load_config(config: Path):
    """asv's own reading of ``config`` (paths in it are relative to the folder asv runs in, as for asv itself)."""
    from asv import util
    from asv.config import Config

    try:
        return Config.load(str(config))
    except (util.UserError, ValueError, OSError) as exc:
        raise UsageError(f"{config}: {' '.join(str(exc).split())}") from None


def resolve(conf, name: str) -> str:
    """The full hash of commit ``name`` (a branch, tag, ``origin/main``, a hash) in the repository of asv config ``conf``."""
    from asv import util
    from asv.repo import NoSuchNameError, get_repo

    try:
        return get_repo(conf).get_hash_from_name(name)
    except NoSuchNameError:
        raise UsageError(f"unknown commit {name!r} (not in the repository {conf.repo!r})") from None
    except util.UserError as exc:
        raise UsageError(" ".join(str(exc).split())) from None


def _units(results_dir: Path) -> dict[str, str | None]:
    """Each benchmark's unit, from the benchmarks.json that ``asv run`` keeps beside the results (none without it)."""
    from asv.util import load_json

    path = results_dir / "benchmarks.json"
    if not path.is_file():
        return {}
    try:
        data = load_json(str(path))
    except Exception:  # a malformed benchmarks.json only costs the units
        return {}
    return {name: b.get("unit") for name, b in data.items() if isinstance(b, dict)}


def _values(results_dir: Path, machine: str, commit: str, label: str) -> dict[tuple[str, str], tuple]:
    """(asv's name with parameters, environment) -> (benchmark, params, value, (stats, samples), version) for ``commit``."""
    from asv.commands.compare import unroll_result
    from asv.results import iter_results_for_machine_and_hash
    from asv.util import UserError

    out: dict[tuple[str, str], tuple] = {}
    try:
        found = list(iter_results_for_machine_and_hash(str(results_dir), machine, commit))
    except UserError as exc:
        raise UsageError(f"{results_dir}: {exc}") from None
    if not found:
        raise UsageError(
            f"no asv results for {label} ({commit[:8]}) of machine {machine!r} in {results_dir} (run `asv run` on it first)"
        )
    for result in found:
        for key in result.get_all_result_keys():
            params = result.get_result_params(key)
            value = result.get_result_value(key, params)
            stats = result.get_result_stats(key, params)
            samples = result.get_result_samples(key, params)
            version = result.benchmark_version.get(key)
            combos = itertools.product(*params) if params else [()]
            for combo, (name, v, st, sa) in zip(combos, unroll_result(key, params, value, stats, samples)):
                out[name, result.env_name] = (key, tuple(combo), v, (st, sa), version)
    return out


def compare(
    results_dir: Path,
    machine: str,
    base: str,
    head: str,
    base_name: str | None = None,
    head_name: str | None = None,
    groups: tuple[Group, ...] = GROUPS,
) -> Comparison:
    """Judge ``head`` against ``base`` (full hashes) on ``machine``'s results in ``results_dir``, group by group."""
    before = _values(results_dir, machine, base, base_name or base)
    after = _values(results_dir, machine, head, head_name or head)
    units = _units(results_dir)
    out = Comparison(machine, base, head, base_name or base[:8], head_name or head[:8], groups)
    for key in sorted(before.keys() | after.keys()):
        b, a = before.get(key), after.get(key)
        benchmark, params = (a or b)[:2]  # type: ignore[index]
        group = group_of(benchmark, groups)
        if group is None:
            continue
        nan = (benchmark, params, math.nan, (None, None), None)
        b, a = b or nan, a or nan
        same_version = b[4] is None or a[4] is None or b[4] == a[4]
        verdict = mark(b[2], a[2], b[3], a[3], group.factor, same_version)
        out.rows.append(Row(benchmark, key[0], params, key[1], group, units.get(benchmark), b[2], a[2], verdict))
    return out


# --- the Markdown summary ----------------------------------------------------------------------------------------


def _value(value: float | None, unit: str | None) -> str:
    """Seconds and bytes as asv shows them; counts whole; other values to 4 significant digits."""
    from asv.util import human_value

    if unit in ("seconds", "bytes") or not _number(value):
        return markdown(human_value(value, unit))
    if float(value).is_integer():  # type: ignore[arg-type]
        return f"{int(value):d}"  # type: ignore[arg-type]
    return f"{value:.4g}"


def _ratio(row: Row) -> str:
    ratio = row.ratio
    return "n/a" if ratio is None else f"{ratio:.3g}"


def _verdict_name(value: float | None) -> str:
    if value is None:
        return "failed"
    if not _number(value) or int(value) != value or not 0 <= value < len(VERDICT_NAMES):
        return "n/a" if not _number(value) else f"code {value:g}"
    return VERDICT_NAMES[int(value)]


def _percent(value: float | None) -> str:
    return f"{value:.4g}%" if _number(value) else "n/a"


def _changed(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.mark not in ("same", "n/a")]


def _code_cell(pattern: str) -> str:
    """One of our own patterns as code in a table cell (GFM reads \\| in a cell as |)."""
    return "`" + pattern.replace("|", "\\|") + "`"


def _verdict_part(c: Comparison) -> list[str]:
    status = "passed" if c.passed else "FAILED"
    lines = [
        f"## asv gate: {status}",
        "",
        f"`{markdown(c.base_name)}` ({c.base[:8]}) -> `{markdown(c.head_name)}` ({c.head[:8]}), "
        f"asv machine {markdown(c.machine)}. A gating group fails when a benchmark in it got worse by more than its "
        "factor (timed benchmarks: also significantly) or fails on the head; report groups never fail.",
        "",
        "| group | benchmarks | factor | role | compared | worse | better | result |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for g in c.groups:
        rows = c.of(g)
        compared = sum(r.mark not in ("n/a", "incomparable") for r in rows)
        worse = sum(r.fails if g.gates else r.mark in WORSE for r in rows)
        better = sum(r.mark in ("better", "fixed") for r in rows)
        if not c.measured(g):
            result = "not measured" + (": fails" if g.gates else "")
        elif not g.gates:
            result = "report"
        else:
            result = "fails" if c.failing(g) else "passes"
        role = "gate" if g.gates else "report"
        if g.gates and g.reports:
            role += f" (report: {_code_cell(g.reports)})"
        lines.append(
            f"| {g.title} | {_code_cell(g.pattern)} | {g.factor:g} | {role} | {compared} | {worse} | {better} | {result} |"
        )
    return lines


def _counts_part(c: Comparison) -> list[str]:
    rows = [r for g in c.groups if g.gates and g.factor == 1.0 for r in _changed(c.of(g))]
    lines = ["", "### Deterministic tracks that changed", ""]
    if not rows:
        return [*lines, "None."]
    lines += ["| | benchmark | before | after | ratio |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r.mark} | {markdown(r.name)} | {_value(r.before, r.unit)} | {_value(r.after, r.unit)} | {_ratio(r)} |"
        )
    return lines


SHARE_TRACKS = ("quadratic_share_percent", "quadratic_share_low_percent", "quadratic_share_high_percent")


def _share(by: dict[str, Row], when: str) -> str:
    """The quadratic share with its 95% bounds, before or after: "83% [79%, 87%]"."""
    share, low, high = (getattr(by[k], when) if k in by else None for k in SHARE_TRACKS)
    return f"{_percent(share)} [{_percent(low)}, {_percent(high)}]"


def _measured_part(c: Comparison) -> list[str]:
    """Per series, quantity and axis of measured.Verdicts: the verdicts and shares that changed or were flagged."""
    lines = ["", "### Measured verdicts that changed", ""]
    if VERDICTS not in c.groups or not c.measured(VERDICTS):
        return [*lines, "Not measured."]
    tracks: dict[tuple[str, ...], dict[str, Row]] = {}
    for r in c.of(VERDICTS):
        if r.benchmark.startswith("measured.Verdicts.track_"):
            tracks.setdefault(r.params, {})[r.benchmark.removeprefix("measured.Verdicts.track_")] = r
    table = []
    for by in tracks.values():
        verdict = by.get("verdict")
        flagged = [name for name, r in by.items() if r.fails]
        moved = verdict is not None and verdict.before != verdict.after and verdict.mark != "n/a"
        if not (moved or flagged):
            continue
        first = next(iter(by.values()))
        who = " | ".join(markdown(first.param(i)) for i in range(3))
        change = "n/a" if verdict is None else f"{_verdict_name(verdict.before)} -> {_verdict_name(verdict.after)}"

        table.append(
            f"| {who} | {change} | {_share(by, 'before')} | {_share(by, 'after')} | {markdown(', '.join(flagged)) or '-'} |"
        )
    attention = [r for r in c.of(VERDICTS) if r.benchmark.startswith("measured.AttentionShare.") and r.fails]
    if not table and not attention:
        return [*lines, "None."]
    if table:
        lines += [
            "| series | quantity | axis | verdict | quadratic share [95%] before | after | flagged |",
            "| --- | --- | --- | --- | ---: | ---: | --- |",
            *table,
        ]
    for r in attention:
        lines += [
            "",
            f"- attention's share of the step, {markdown(r.param(0))}, {markdown(r.param(1))}: "
            f"{_percent(r.before)} -> {_percent(r.after)} ({r.mark})",
        ]
    return lines


def _report_part(c: Comparison, top: int) -> list[str]:
    rows = [r for g in c.groups if not g.gates for r in c.of(g)]
    lines = ["", f"### Timing report: the largest changes (at most {top})", ""]
    broken = [r for r in rows if r.mark in ("failed", "fixed", "failing")]
    sized = sorted((r for r in rows if r.ratio is not None and r.ratio > 0), key=lambda r: -abs(math.log(r.ratio)))  # type: ignore[arg-type]
    shown = (broken + sized)[:top]
    if not shown:
        return [*lines, "Not measured." if not any(c.measured(g) for g in c.groups if not g.gates) else "None."]
    lines += ["| | benchmark | before | after | ratio |", "| --- | --- | ---: | ---: | ---: |"]
    for r in shown:
        flag = r.mark if r.mark != "same" else ""
        lines.append(
            f"| {flag} | {markdown(r.name)} | {_value(r.before, r.unit)} | {_value(r.after, r.unit)} | {_ratio(r)} |"
        )
    return lines


def summary(c: Comparison, top: int = 10) -> str:
    """The Markdown summary: the verdict per group, the deterministic tracks and measured verdicts that changed, the report."""
    lines = _verdict_part(c)
    if c.unmeasured:
        names = ", ".join(g.title for g in c.unmeasured)
        lines += ["", f"No results at one of the commits for: {names}. The gate cannot pass without them."]
    return "\n".join(lines + _counts_part(c) + _measured_part(c) + _report_part(c, top)) + "\n"
