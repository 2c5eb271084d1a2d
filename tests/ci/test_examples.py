"""The cluster examples in examples/: their shard counts agree, and the scripts do what they say.

- Kubernetes: both manifests validate offline against the Kubernetes API schemas of
  :data:`K8S_VERSIONS` (``kubernetes-validate``, strict: unknown fields are errors), and a
  deliberately broken copy does not; sweep-job.yaml is an Indexed Job whose
  MIXERBENCH_SHARD_COUNT equals its completions, asks for one GPU, writes
  /out/shard-$(index) on a PVC defined beside it, and the index reaches mixerbench as the
  shard (the container's command run with a stand-in); merge-job.yaml merges as many shards
  as there are completions, from the same PVC.
- Slurm: sweep.sbatch's --array range is 0..SHARDS-1 and merge.sbatch expects SHARDS shards;
  it asks for no GPU (sbatch --gres=gpu:1 does, as its header says); run with a stand-in for
  mixerbench, array task K passes --shard K/SHARDS, its own --out and the arguments given after
  the script; an array outside 0..SHARDS-1 is refused; the merge passes the shard folders that
  exist (mixerbench merge names the missing ones). tests/ci/test_slurm_cluster.py runs them on
  a real Slurm.
- GitHub Actions: the matrix's shard list is 0..SHARDS-1 and each shard gets its own artifact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install -e '.[dev]' installs it)")

# an older cluster still in service, and the newest schemas kubernetes-validate ships
K8S_VERSIONS = ("1.29.0", "1.37.0")
EXAMPLES = ROOT / "examples"
SLURM_SWEEP = EXAMPLES / "slurm" / "sweep.sbatch"
SLURM_MERGE = EXAMPLES / "slurm" / "merge.sbatch"
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _pvc_claims(pod_spec: dict) -> set[str]:
    return {
        v["persistentVolumeClaim"]["claimName"] for v in pod_spec.get("volumes", []) if "persistentVolumeClaim" in v
    }


# --- Kubernetes -------------------------------------------------------------------------------


def test_kubernetes_sweep_is_an_indexed_job_whose_shard_count_equals_its_completions():
    docs = _docs(EXAMPLES / "kubernetes" / "sweep-job.yaml")
    job = _one(docs, "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    completions = spec["completions"]
    assert isinstance(completions, int) and completions >= 2
    assert 1 <= spec["parallelism"] <= completions
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert int(_env(container)["MIXERBENCH_SHARD_COUNT"]) == completions
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1 and resources["requests"]["nvidia.com/gpu"] == 1
    command = " ".join(container.get("command", []) + container.get("args", []))
    assert "mixerbench sweep" in command and "--resume" in command
    assert re.search(r'--out "?/out/shard-\$\{?JOB_COMPLETION_INDEX\}?', command), command
    pvc = _one(docs, "PersistentVolumeClaim")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]  # pods on several nodes write at once
    assert _pvc_claims(pod) == {pvc["metadata"]["name"]}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/out" in mounts


def test_kubernetes_merge_reads_every_shard_from_the_same_volume():
    sweep_docs = _docs(EXAMPLES / "kubernetes" / "sweep-job.yaml")
    sweep = _one(sweep_docs, "Job")
    merge = _one(_docs(EXAMPLES / "kubernetes" / "merge-job.yaml"), "Job")
    pod = merge["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert int(_env(container)["SHARDS"]) == sweep["spec"]["completions"]
    assert _pvc_claims(pod) == _pvc_claims(sweep["spec"]["template"]["spec"])
    script = " ".join(container.get("args", []))
    assert "mixerbench merge /out/merged" in script and "mixerbench report /out/merged" in script
    assert "nvidia.com/gpu" not in str(container.get("resources"))


def _validate(doc: dict, version: str) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", ["sweep-job.yaml", "merge-job.yaml"])
def test_kubernetes_manifests_validate_against_the_api_schemas(name, version):
    pytest.importorskip("kubernetes_validate", reason="pip install -e '.[dev]' installs kubernetes-validate")
    docs = _docs(EXAMPLES / "kubernetes" / name)
    assert docs
    for doc in docs:
        _validate(doc, version)


BROKEN_MANIFESTS = {
    "a misspelt field": lambda job: job["spec"].update(completionsMode=job["spec"].pop("completionMode")),
    "completions as a string": lambda job: job["spec"].update(completions="four"),
    # (the schemas hold no enums: completionMode "Numbered" would pass them; the Indexed test below catches it)
    "volumes as a mapping": lambda job: job["spec"]["template"]["spec"].update(volumes={"out": {}}),
    "env without a name": lambda job: job["spec"]["template"]["spec"]["containers"][0]["env"][0].pop("name"),
}


@pytest.mark.parametrize("why", BROKEN_MANIFESTS)
def test_kubernetes_validation_goes_red_on_a_broken_manifest(why):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    job = _one(_docs(EXAMPLES / "kubernetes" / "sweep-job.yaml"), "Job")
    BROKEN_MANIFESTS[why](job)
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(job, K8S_VERSIONS[-1])


@needs_bash
def test_kubernetes_index_reaches_mixerbench_as_the_shard(fake_mixerbench, tmp_path):
    """Each pod's command, run as Kubernetes runs it (JOB_COMPLETION_INDEX set), starts mixerbench on its shard."""
    fake, log = fake_mixerbench
    job = _one(_docs(EXAMPLES / "kubernetes" / "sweep-job.yaml"), "Job")
    completions = job["spec"]["completions"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {**_env(container), "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    for index in range(completions):
        done = subprocess.run(
            [*container["command"], *container["args"]],
            env={**env, "JOB_COMPLETION_INDEX": str(index)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls == [f"sweep --out /out/shard-{k} --resume" for k in range(completions)]
    # mixerbench itself turns the pod's environment into its shard
    from bench.runs import shard

    for index in range(completions):
        environ = {
            "JOB_COMPLETION_INDEX": str(index),
            "MIXERBENCH_SHARD_COUNT": _env(container)["MIXERBENCH_SHARD_COUNT"],
        }
        assert shard.from_environment(environ) == shard.Shard(index, completions, "kubernetes")


# --- Slurm ------------------------------------------------------------------------------------


def _slurm_counts() -> tuple[int, int, int]:
    text = SLURM_SWEEP.read_text()
    array = re.findall(r"^#SBATCH\s+--array[= ](\d+)-(\d+)(?:%\d+)?\s*$", text, re.M)
    assert len(array) == 1, f"expected one `#SBATCH --array=A-B` line, found {array}"
    shards = re.findall(r"^SHARDS=\$\{SHARDS:-(\d+)\}", text, re.M)
    assert len(shards) == 1, f"expected one `SHARDS=${{SHARDS:-N}}` line, found {shards}"
    return int(array[0][0]), int(array[0][1]), int(shards[0])


def test_slurm_array_range_and_shard_count_agree():
    first, last, shards = _slurm_counts()
    assert first == 0, f"--array starts at {first}: shard indices are 0..N-1"
    assert last - first + 1 == shards, f"--array={first}-{last} has {last - first + 1} tasks, SHARDS={shards}"
    assert re.search(r'--shard "\$task/\$SHARDS"', SLURM_SWEEP.read_text())
    merge_default = re.findall(r"^SHARDS=\$\{SHARDS:-(\d+)\}", SLURM_MERGE.read_text(), re.M)
    assert merge_default == [str(shards)], f"merge.sbatch expects {merge_default} shards, sweep.sbatch writes {shards}"


@pytest.fixture
def fake_mixerbench(tmp_path) -> tuple[Path, Path]:
    """A stand-in for mixerbench that logs its arguments, one call per line."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "mixerbench"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    fake.chmod(0o755)
    return fake, log


def _run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "SHARDS"}
    return subprocess.run(
        ["bash", str(script), *args], env={**keep, **env}, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def test_slurm_sweep_asks_for_no_gpu_and_its_header_says_how_to():
    text = SLURM_SWEEP.read_text()
    assert not re.search(r"^#SBATCH\s+--(gres|gpus)", text, re.M)  # a CPU partition takes it as it is
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "--gres=gpu:1" in header and "SBATCH_GRES=gpu:1" in header and "--partition=gpu" in header


@needs_bash
def test_slurm_array_task_runs_its_own_shard(fake_mixerbench, tmp_path):
    fake, log = fake_mixerbench
    _, last, shards = _slurm_counts()
    out = tmp_path / "out"
    for task in (0, last):
        done = _run(
            SLURM_SWEEP,
            {
                "MIXERBENCH": str(fake),
                "OUT": str(out),
                "SLURM_ARRAY_TASK_ID": str(task),
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": str(last),
            },
            "--device",
            "cpu",
            "--models",
            "vit_ti16",
        )
        assert done.returncode == 0, done.stderr
    resubmitted = _run(  # `sbatch --array=1 sweep.sbatch`: Slurm says task 1 of 1..1
        SLURM_SWEEP,
        {"MIXERBENCH": str(fake), "OUT": str(out), **{f"SLURM_ARRAY_TASK_{v}": "1" for v in ("ID", "MIN", "MAX")}},
    )
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert log.read_text().splitlines() == [
        f"sweep --shard 0/{shards} --out {out}/shard-0 --resume --device cpu --models vit_ti16",
        f"sweep --shard {last}/{shards} --out {out}/shard-{last} --resume --device cpu --models vit_ti16",
        f"sweep --shard 1/{shards} --out {out}/shard-1 --resume",
    ]
    for env in (
        {"SLURM_ARRAY_TASK_ID": str(shards)},
        {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": str(shards)},  # --array=1-4
        {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6"},  # --array=0-6:2
        {"SLURM_ARRAY_TASK_ID": "0", "SHARDS": "0"},
        {"SLURM_ARRAY_TASK_ID": "0", "SHARDS": "many"},
    ):
        refused = _run(SLURM_SWEEP, {"MIXERBENCH": str(fake), "OUT": str(tmp_path / "refused"), **env})
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, (env, refused.stderr)
        assert "shard" in refused.stderr
    assert len(log.read_text().splitlines()) == 3  # the refused tasks ran nothing
    assert not (tmp_path / "refused").exists()


@needs_bash
def test_slurm_merge_passes_the_shard_folders_there_are(fake_mixerbench, tmp_path):
    fake, log = fake_mixerbench
    *_, shards = _slurm_counts()
    out = tmp_path / "out"
    none = _run(SLURM_MERGE, {"MIXERBENCH": str(fake), "OUT": str(out)})
    assert none.returncode == 2 and "no shard folder" in none.stderr and not log.exists()
    for k in range(shards):
        if k != 1:  # shard 1 never started
            (out / f"shard-{k}").mkdir(parents=True)
    done = _run(SLURM_MERGE, {"MIXERBENCH": str(fake), "OUT": str(out)})
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        f"merge {out}/merged " + " ".join(f"{out}/shard-{k}" for k in range(shards) if k != 1),
        f"report {out}/merged",
    ]


# --- GitHub Actions matrix ----------------------------------------------------------------------


def test_github_matrix_covers_every_shard_once_and_merges_them_all():
    doc = yaml.safe_load((EXAMPLES / "github" / "sweep-matrix.yml").read_text())
    shards = int(doc["env"]["SHARDS"])
    sweep = doc["jobs"]["sweep"]
    assert sweep["strategy"]["matrix"]["shard"] == list(range(shards))
    steps = sweep["steps"]
    run = " ".join(s.get("run", "") for s in steps)
    assert '--shard "$SHARD/$SHARDS"' in run and '--out "shards/shard-$SHARD"' in run
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["name"] == "sweep-shard-${{ matrix.shard }}"
    assert upload["with"]["path"] == "shards/shard-${{ matrix.shard }}"
    merge = doc["jobs"]["merge"]
    assert merge["needs"] == "sweep"
    download = next(s for s in merge["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["pattern"] == "sweep-shard-*" and not download["with"].get("merge-multiple")
    merge_run = " ".join(s.get("run", "") for s in merge["steps"])
    assert "mixerbench merge sweep-merged" in merge_run and "mixerbench report sweep-merged" in merge_run


@needs_bash
def test_github_merge_step_merges_the_downloaded_shards(fake_mixerbench, tmp_path):
    fake, log = fake_mixerbench
    doc = yaml.safe_load((EXAMPLES / "github" / "sweep-matrix.yml").read_text())
    shards = int(doc["env"]["SHARDS"])
    (step,) = [s for s in doc["jobs"]["merge"]["steps"] if "mixerbench merge" in s.get("run", "")]
    work = tmp_path / "work"
    for k in range(shards):  # what download-artifact leaves: one folder per artifact
        (work / "shards" / f"sweep-shard-{k}").mkdir(parents=True)
        (work / "shards" / f"sweep-shard-{k}" / "results.jsonl").write_text("{}\n")
    env = {**os.environ, "SHARDS": str(shards), "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=work, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [
        "merge sweep-merged " + " ".join(f"shards/sweep-shard-{k}" for k in range(shards)),
        "report sweep-merged",
    ]
    shutil.rmtree(work / "shards" / "sweep-shard-0")  # a shard without an artifact: merge is told the others
    log.unlink()
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=work, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines()[0] == "merge sweep-merged " + " ".join(
        f"shards/sweep-shard-{k}" for k in range(1, shards)
    )
