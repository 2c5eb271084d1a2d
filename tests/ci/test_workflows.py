"""The workflows' safety rules, checked on the YAML itself (docs/guide/ci.md).

- A job on a self-hosted runner (the GPU machine) is only in workflows that pull requests
  cannot trigger: no pull_request, pull_request_target or workflow_run trigger (a fork could
  otherwise run code on the machine, or edit the ``if:`` that guards the job).
- Every ``uses:`` is a local action or pinned to a full 40-hex commit with the version in a
  comment; no ``${{ }}`` inside ``run:`` (event data goes through ``env:``).
- Permissions: ``{}`` or read-only at the top; write access only in the two publish jobs,
  which run on hosted runners and share one concurrency group that never cancels.
- Every checkout sets ``persist-credentials: false`` (none of them pushes with its token).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import ROOT

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install -e '.[dev]' installs it)")

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
EXAMPLES = sorted((ROOT / "examples" / "github").glob("*.y*ml"))
UNTRUSTED_TRIGGERS = {"pull_request", "pull_request_target", "workflow_run"}
# (workflow file, job id) -> the only write permissions anywhere
WRITERS = {("benchmarks.yml", "publish"): {"contents": "write"}, ("gpu.yml", "publish"): {"contents": "write"}}
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict) and "jobs" in doc, f"{path.name} is not a workflow"
    return doc


def _triggers(doc: dict) -> set[str]:
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    if isinstance(on, str):
        return {on}
    if isinstance(on, list):
        return set(on)
    return set(on or {})


def _runs_on(job: dict) -> list[str]:
    labels = job.get("runs-on", [])
    if isinstance(labels, dict):  # runs-on: {group:, labels:}
        labels = labels.get("labels", [])
    return [labels] if isinstance(labels, str) else list(labels)


def _steps(doc: dict):
    for job_id, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def _ids(paths):
    return [p.name for p in paths]


def test_there_is_a_gpu_job_and_every_self_hosted_job_is_out_of_reach_of_pull_requests():
    self_hosted = []
    for path in WORKFLOWS:
        doc = _load(path)
        for job_id, job in doc["jobs"].items():
            if "self-hosted" in _runs_on(job):
                self_hosted.append((path.name, job_id, _runs_on(job)))
                bad = _triggers(doc) & UNTRUSTED_TRIGGERS
                assert not bad, (
                    f"{path.name}: job {job_id!r} runs on a self-hosted runner, but the workflow has {sorted(bad)} triggers"
                )
    assert any("gpu" in labels for _, _, labels in self_hosted), (
        f"no job on the self-hosted `gpu` runner: {self_hosted}"
    )


def test_pull_requests_run_the_tests_and_the_asv_gate():
    doc = _load(ROOT / ".github" / "workflows" / "benchmarks.yml")
    assert "pull_request" in _triggers(doc)
    jobs = doc["jobs"]
    runs = " ".join(step.get("run", "") for step in jobs["tests"]["steps"])
    assert "pip install -e '.[dev]'" in runs and "python -m pytest" in runs, runs
    for job_id in ("tests", "gate"):
        condition = str(jobs[job_id].get("if", "pull_request"))
        assert "pull_request" in condition, f"{job_id} does not run on pull requests: if: {condition}"


@pytest.mark.parametrize("path", WORKFLOWS + EXAMPLES, ids=_ids(WORKFLOWS + EXAMPLES))
def test_every_action_is_pinned_to_a_commit_with_its_version_in_a_comment(path):
    doc = _load(path)
    uses = [(job_id, step["uses"]) for job_id, step in _steps(doc) if "uses" in step]
    uses += [(job_id, job["uses"]) for job_id, job in doc["jobs"].items() if "uses" in job]  # reusable workflows
    assert uses, f"{path.name} uses no action at all?"
    for job_id, ref in uses:
        if ref.startswith("./"):
            continue
        assert PINNED.match(ref), f"{path.name}, job {job_id}: `uses: {ref}` is not pinned to a 40-hex commit"
    text = path.read_text()
    for line in text.splitlines():
        match = re.search(r"uses:\s*(\S+@[0-9a-f]{40})(.*)", line)
        if match:
            assert re.match(r"\s+#\s*v\d+(\.\d+)*", match.group(2)), (
                f"{path.name}: no `# vX.Y.Z` comment after {match.group(1)}"
            )


@pytest.mark.parametrize("path", WORKFLOWS + EXAMPLES, ids=_ids(WORKFLOWS + EXAMPLES))
def test_no_template_expansion_inside_run(path):
    doc = _load(path)
    for job_id, step in _steps(doc):
        assert "${{" not in step.get("run", ""), (
            f"{path.name}, job {job_id}, step {step.get('name', step.get('run'))!r}: ${{{{ }}}} inside run: (pass it through env:)"
        )


@pytest.mark.parametrize("path", WORKFLOWS + EXAMPLES, ids=_ids(WORKFLOWS + EXAMPLES))
def test_least_privilege(path):
    doc = _load(path)
    top = doc.get("permissions")
    assert top is not None, f"{path.name}: no top-level permissions (the default token may write)"
    assert top in ({}, {"contents": "read"}), (
        f"{path.name}: top-level permissions {top!r} (want {{}} or contents: read)"
    )
    for job_id, job in doc["jobs"].items():
        perms = job.get("permissions", {})
        assert isinstance(perms, dict), f"{path.name}, job {job_id}: permissions {perms!r} (list them one by one)"
        writes = {k: v for k, v in perms.items() if v == "write"}
        expected = WRITERS.get((path.name, job_id), {}) if path in WORKFLOWS else {}
        assert writes == expected, f"{path.name}, job {job_id}: write permissions {writes} (allowed here: {expected})"
        if writes:
            assert "self-hosted" not in _runs_on(job), (
                f"{path.name}, job {job_id}: a token that writes on a self-hosted runner"
            )


@pytest.mark.parametrize("path", WORKFLOWS + EXAMPLES, ids=_ids(WORKFLOWS + EXAMPLES))
def test_checkouts_do_not_keep_their_token(path):
    doc = _load(path)
    for job_id, step in _steps(doc):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert (step.get("with") or {}).get("persist-credentials") is False, (
                f"{path.name}, job {job_id}: actions/checkout without persist-credentials: false"
            )


def test_the_publish_jobs_share_one_concurrency_group_that_never_cancels():
    groups = []
    for name, job_id in WRITERS:
        job = _load(ROOT / ".github" / "workflows" / name)["jobs"][job_id]
        concurrency = job.get("concurrency")
        assert isinstance(concurrency, dict), f"{name}, job {job_id}: no concurrency group"
        assert concurrency.get("cancel-in-progress") is False, (
            f"{name}, job {job_id}: a publish would be cancelled mid-push"
        )
        assert concurrency.get("queue") == "max", (
            f"{name}, job {job_id}: a waiting publish would be replaced by a newer one"
        )
        groups.append(concurrency["group"])
        runs = " ".join(step.get("run", "") for step in job["steps"])
        assert ".github/scripts/publish-dashboard" in runs, (
            f"{name}, job {job_id} does not publish through the shared script"
        )
    assert len(set(groups)) == 1 and "${{" not in groups[0], f"the publish jobs' groups differ: {groups}"


def test_the_gate_measures_each_commit_once_and_writes_its_summary_to_the_job_summary():
    job = _load(ROOT / ".github" / "workflows" / "benchmarks.yml")["jobs"]["gate"]
    steps = job["steps"]
    runs = [step.get("run", "") for step in steps]
    assert not [r for r in runs if "asv continuous" in r], "the gate measures the base again in every asv continuous"
    (measure,) = [i for i, r in enumerate(runs) if re.search(r"\basv run\b", r)]
    assert "HASHFILE:" in runs[measure] and '"$(mixerbench gate --bench-regex)"' in runs[measure], runs[measure]
    judged = [(i, re.search(r"mixerbench gate .*--out (\S+)", r)) for i, r in enumerate(runs)]
    ((judge, match),) = [(i, m) for i, m in judged if m]
    assert measure < judge and "continue-on-error" not in steps[judge], "the gate's verdict must fail the job"
    summary = match.group(1)
    # After the verdict, also when it failed (a failed step skips the steps after it unless their if: says otherwise).
    writers = [i for i, r in enumerate(runs) if '>> "$GITHUB_STEP_SUMMARY"' in r and summary in r]
    uploads = [
        i
        for i, step in enumerate(steps)
        if step.get("uses", "").startswith("actions/upload-artifact@") and summary in step["with"]["path"]
    ]
    for i in writers[:1] + uploads[:1]:
        assert i > judge and re.search(r"always\(\)|!cancelled\(\)", str(steps[i].get("if", ""))), steps[i]
    assert writers and uploads, "the gate's summary goes to the job summary and to an artifact"
    assert job["permissions"] == {"contents": "read"}, "the summary needs no write permission"
