"""Merge sweep folders (shards of one sweep, or runs on several machines) into one folder.

:func:`merge` unions the ``results.jsonl`` (and ``peers.jsonl``, when present) of several
folders into a new folder, read as typed records by the schema's reader
(:func:`bench.schema.read_jsonl`) and written back by its writer (:func:`bench.schema.dumps`).
A record's identity is its case (``Record.key``, ``PeerRecord.key``) on a machine (:func:`machine_of`):

- new records carry ``machine.machine_id`` (:mod:`bench.measure.fingerprint`);
- older records only have ``env``; their machine is a hash of the environment's device,
  device name, CPU model and CPU count (prefixed "env-"). Such ids can tell an H200 host
  from a 2-core CPU runner, not two identical cloud machines apart; and a machine's old
  and new records get different ids.

Per identity:

- identical records (the same JSON) collapse to one;
- records whose status is neither "ok" nor "oom" (failures) are dropped when an ok/oom
  record exists; of failures alone, only the newest is kept;
- two different ok/oom records from different folders conflict: :class:`MergeConflict`
  names the case and both folders, unless ``prefer="newest"``, which keeps only the one
  with the latest ``env.date`` (ties: the later folder, then the later line);
- different records that already sit together in one folder are that folder's own history
  (a re-run at another thread count, as in ``results/cpu-peers/peers.jsonl``, whose case
  key does not hold the thread count) and are all kept, in order: the merge did not bring
  them together. Only a pair that no single folder holds side by side conflicts.

Shards of one sweep (folders with a ``shard.json``, :func:`bench.runs.shard_cases.write_marker`,
or whose records all name one shard) must form one complete set: every folder of the same
shard count, every index 0..N-1 present, and every case a shard's marker lists recorded
(an empty shard is complete). Otherwise :func:`merge` refuses, naming the shards missing,
incomplete or of another count; ``incomplete=True`` merges anyway and returns each of
those as a warning (:attr:`MergeSummary.shard_warnings`).

Records keep their first-seen order. Everything is read and checked before anything is
written; a merge with no valid line at all (every line invalid) is an error. ``out`` is
written under its folder lock (:func:`bench.files.folder_lock`, the lock a sweep holds), and
that ``out/results.jsonl`` is new is checked again under it: a sweep or a second merge into
the same folder raises :class:`bench.files.FolderBusy` or finds the file and refuses; each output file is written to a temporary file, fsync'ed, then moved into place
with ``os.replace``, so a failure leaves no half-written file. Nothing here imports torch.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import schema
from bench.files import LOCK_NAME, folder_lock, write_together
from bench.runs import records, shard_cases
from bench.schema import PeerRecord, Record

PEERS_FILENAME = "peers.jsonl"
PREFER = ("newest",)
KEPT_STATUSES = ("ok", "oom")


class MergeConflict(ValueError):
    """Two different measurements of the same case on the same machine."""


@dataclass(frozen=True)
class MergeSummary:
    """What :func:`merge` read and wrote."""

    out: str
    folders: tuple[str, ...]  # folders read, in order
    records_in: int  # valid records read, all folders
    records_out: int  # records written
    duplicates: int  # identical copies collapsed
    superseded: int  # failures dropped for an ok/oom record (or a newer failure) of the same case and machine
    replaced: int  # conflicting records dropped by prefer="newest"
    peers_in: int
    peers_out: int
    machines: tuple[str, ...]  # machine ids of the records written, sorted
    problems: tuple[str, ...]  # broken lines skipped, "path line N: why"
    shard_warnings: tuple[str, ...] = ()  # shards missing, incomplete or of another count (merged anyway)

    def to_json(self) -> dict:
        return {name: list(v) if isinstance(v, tuple) else v for name, v in self.__dict__.items()}


Line = Record | PeerRecord  # a line of results.jsonl or peers.jsonl, as bench.schema reads it


def machine_of(record: Line) -> str:
    """The machine id of a record (:func:`bench.schema.machine_key`: its fingerprint, else a hash of its env)."""
    if isinstance(record, Record):
        return record.machine_key
    return schema.machine_key(None, record.env)  # peers lines carry no fingerprint


def _canonical(record: Line) -> str:
    return schema.dumps(record)


def _date(record: Line) -> datetime.datetime:
    """``env.date`` as an aware datetime; missing or unreadable dates sort first."""
    text = record.env.date if record.env is not None else None
    oldest = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    if not isinstance(text, str):
        return oldest
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return oldest
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def _describe(record: Line) -> str:
    """A case in words, e.g. "vit_b16 fused (384 px, patch 16, batch 32, cuda, bfloat16, infer)"."""
    case = record.case
    if isinstance(record, Record):
        name, patch = record.name, record.case.patch_size
    else:
        name, patch = record.case.ours, None
    details = [f"{case.img_size} px"] + ([f"patch {patch}"] if patch else [])
    details += [f"batch {case.batch}", str(case.device), str(case.dtype), str(case.mode)]
    return f"{name} ({', '.join(details)})"


@dataclass
class _Counts:
    duplicates: int = 0
    superseded: int = 0
    replaced: int = 0


@dataclass(frozen=True)
class Entry:
    """What a merge keeps of a record it read (the record itself is dropped at once, so a merge of large
    folders holds one line of text per record): identity, status, date, shard and the line to write."""

    key: str  # Record.key / PeerRecord.key
    machine: str  # machine_of(record)
    status: str
    date: datetime.datetime  # _date(record)
    shard: tuple[int, int] | None  # (index, count) of a results record that names its shard
    text: str  # the canonical line (schema.dumps): identical records have identical text; written as is
    described: str  # _describe(record), for a conflict's message

    @classmethod
    def of(cls, record: Line) -> Entry:
        shard = record.shard if isinstance(record, Record) else None
        return cls(
            key=record.key,
            machine=machine_of(record),
            status=record.status,
            date=_date(record),
            shard=(shard.index, shard.count) if shard is not None else None,
            text=_canonical(record),
            described=_describe(record),
        )


Row = tuple[Entry, int, int, str]  # (entry, folder index, line number, folder)


def _merge_rows(rows: list[Row], prefer: str | None, counts: _Counts, what: str) -> list[Entry]:
    """Union of (record, folder index, line number, folder) rows by the module's rules, in first-read order."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row[0].key, row[0].machine), []).append(row)
    merged = []
    for (_, machine), group in groups.items():
        first: dict[str, Row] = {}  # canonical JSON -> where it was first read
        homes: dict[str, set[int]] = {}  # canonical JSON -> the folders that hold it
        for row in group:
            text = row[0].text
            homes.setdefault(text, set()).add(row[1])
            if text in first:
                counts.duplicates += 1
            else:
                first[text] = row

        def age(text: str) -> tuple:  # newest last: date, then the latest folder holding it, then its line
            return first[text][0].date, max(homes[text]), first[text][2]  # noqa: B023 (called in this iteration)

        kept = [text for text, row in first.items() if row[0].status in KEPT_STATUSES]
        if not kept:  # failures only: the newest one
            kept = [max(first, key=age)]
        counts.superseded += len(first) - len(kept)
        # Different records that sat side by side in one folder are that folder's own history
        # (re-runs, e.g. peers at several thread counts) and are all kept; two that never did conflict.
        clash = next(((a, b) for i, a in enumerate(kept) for b in kept[i + 1 :] if not homes[a] & homes[b]), None)
        if clash is not None:
            if prefer != "newest":
                a, b = (first[t] for t in clash)
                raise MergeConflict(
                    f"conflicting {what} for {a[0].described} on machine {machine}: "
                    f"{a[3]} and {b[3]} measured it differently"
                )
            counts.replaced += len(kept) - 1
            kept = [max(kept, key=age)]
        merged += [first[text] for text in kept]
    merged.sort(key=lambda r: (r[1], r[2]))  # in the order the kept records were first read
    return [row[0] for row in merged]


def _read(path: Path, folder_index: int, folder: str, problems: list[str], peers: bool = False) -> list[Row]:
    """An :class:`Entry` per valid line of ``path``, read one line at a time by the schema's one reader (typed
    records of any stored version, :func:`bench.schema.iter_jsonl`); bad lines go to ``problems``."""
    rows: list[Row] = []
    items: Iterator[Line | schema.Problem] = (
        schema.iter_jsonl(path, PeerRecord) if peers else schema.iter_jsonl(path, Record)
    )
    for item in items:
        if isinstance(item, schema.Problem):
            problems.append(str(item))
        else:
            rows.append((Entry.of(item), folder_index, len(rows), folder))
    return rows


def _rows_writer(rows: list[Entry]):
    """A writer of ``rows``' canonical lines (the schema's :func:`bench.schema.dumps`), for
    :func:`bench.files.write_together`."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for row in rows:
                f.write((row.text + "\n").encode("utf-8"))

    return write


def _write_locked(out: Path, targets: list, check_new) -> None:
    """Write ``targets`` together into ``out`` under its folder lock (:func:`bench.files.folder_lock`, as a sweep
    holds it), after ``check_new()`` again under the lock; a failure removes what this merge created.

    A ``.lock`` file this merge created is removed while still held (once results.jsonl is in place, a
    later merge refuses the folder anyway), so the merged folder holds only what was merged.
    """
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock_created = not os.path.lexists(out / LOCK_NAME)
    try:
        with folder_lock(out):  # a sweep or another merge writing into out: FolderBusy, nothing written
            try:
                check_new()
                write_together(targets)  # all or nothing; results.jsonl last: its presence means the merge finished
            finally:
                if lock_created:
                    (out / LOCK_NAME).unlink(missing_ok=True)
    except BaseException:
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise


class IncompleteShards(ValueError):
    """The folders are shards of one sweep, but not a complete set of one shard count."""


def _listing(items: list, limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_shards(folders: Sequence[Path], rows: list[Row]) -> list[str]:
    """What is wrong with ``folders`` as one complete set of shards (one line each); [] when nothing is.

    A folder's shard is its ``shard.json`` or, for shards written before markers existed,
    the one shard all its records name. Folders with neither (unsharded runs) are not checked.
    """
    identity: dict[int, tuple[int, int]] = {}
    planned: dict[int, frozenset[str]] = {}
    for i, folder in enumerate(folders):
        marker = shard_cases.read_marker(folder)
        if marker is not None:
            identity[i], planned[i] = (marker.index, marker.count), marker.keys
            continue
        named = {r.shard for r, index, _, _ in rows if index == i and r.shard is not None}
        if len(named) == 1:
            identity[i] = next(iter(named))
    if not identity:
        return []
    found = []
    by_count: dict[int, list[int]] = {}
    for i, (_, count) in identity.items():
        by_count.setdefault(count, []).append(i)
    if len(by_count) > 1:
        usual = max(by_count, key=lambda c: (len(by_count[c]), -c))
        for count, members in sorted(by_count.items()):
            if count != usual:
                where = _listing([f"{folders[i]} (shard {identity[i][0]}/{count})" for i in members])
                found.append(f"shards of another count than {usual}: {where}")
    else:
        usual = next(iter(by_count))
    present = {identity[i][0] for i in by_count[usual]}
    missing = [k for k in range(usual) if k not in present] if usual - len(present) <= 10_000 else None
    if missing is None:
        found.append(f"{usual - len(present)} of {usual} shards are missing")
    elif missing:
        found.append(f"shard{'s' if len(missing) > 1 else ''} {_listing(missing)} of {usual} missing")
    recorded: dict[int, set[str]] = {}
    for r, index, _, _ in rows:
        recorded.setdefault(index, set()).add(r.key)
    for i, keys in planned.items():
        lacking = len(keys - recorded.get(i, set()))
        if lacking:
            index, count = identity[i]
            found.append(
                f"shard {index}/{count} ({folders[i]}) is incomplete: {lacking} of its {len(keys)} cases have no record"
            )
    return found


def merge(out: Path, folders: Sequence[Path], prefer: str | None = None, incomplete: bool = False) -> MergeSummary:
    """Union the results (and peers) of ``folders`` into ``out/results.jsonl`` (``out`` is created).

    Raises ``ValueError`` (one line) when a folder has no results.jsonl, ``out/results.jsonl``
    or ``out/peers.jsonl`` already exists, ``prefer`` is unknown, or two different ok/oom
    records of one case on one machine conflict (:class:`MergeConflict`, unless
    ``prefer="newest"``), or the folders are shards of one sweep but not a complete set
    (:class:`IncompleteShards`, unless ``incomplete``: then :attr:`MergeSummary.shard_warnings`).
    """
    out = Path(out)
    folders = [Path(f) for f in folders]
    if prefer is not None and prefer not in PREFER:
        raise ValueError(f"prefer must be one of {', '.join(PREFER)} or None, got {prefer!r}")
    if not folders:
        raise ValueError("no folders to merge")
    for folder in folders:
        if not (folder / records.FILENAME).is_file():
            raise ValueError(f"{folder / records.FILENAME} not found (is {folder} a sweep folder?)")
    results_target, peers_target = out / records.FILENAME, out / PEERS_FILENAME
    any_peers = any((folder / PEERS_FILENAME).is_file() for folder in folders)

    def check_new() -> None:
        if results_target.exists():
            raise ValueError(f"{results_target} already exists; merge into a new folder")
        if any_peers and peers_target.exists():
            raise ValueError(f"{peers_target} already exists; merge into a new folder")

    check_new()
    problems: list[str] = []
    result_rows: list[Row] = []
    peer_rows: list[Row] = []
    for index, folder in enumerate(folders):
        result_rows += _read(folder / records.FILENAME, index, str(folder), problems)
        if (folder / PEERS_FILENAME).is_file():
            peer_rows += _read(folder / PEERS_FILENAME, index, str(folder), problems, peers=True)
    if problems and not result_rows and not peer_rows:  # every line invalid: nothing to merge is not a merge
        raise ValueError(f"no valid record to merge: all {len(problems)} lines are invalid (first: {problems[0]})")
    shard_warnings = check_shards(folders, result_rows)
    if shard_warnings and not incomplete:
        raise IncompleteShards("; ".join(shard_warnings))
    counts = _Counts()
    merged = _merge_rows(result_rows, prefer, counts, "results")
    peer_counts = _Counts()
    peers = _merge_rows(peer_rows, prefer, peer_counts, "peer results")
    targets = ([(peers_target, _rows_writer(peers))] if any_peers else []) + [(results_target, _rows_writer(merged))]
    _write_locked(out, targets, check_new)

    return MergeSummary(
        out=str(out),
        folders=tuple(str(f) for f in folders),
        records_in=len(result_rows),
        records_out=len(merged),
        duplicates=counts.duplicates + peer_counts.duplicates,
        superseded=counts.superseded + peer_counts.superseded,
        replaced=counts.replaced + peer_counts.replaced,
        peers_in=len(peer_rows),
        peers_out=len(peers),
        machines=tuple(sorted({r.machine for r in merged})),
        problems=tuple(problems),
        shard_warnings=tuple(shard_warnings),
    )
