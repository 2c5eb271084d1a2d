"""A real one-node Slurm cluster in a temporary folder: munged, slurmctld and slurmd, started and stopped.

Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them) run as root with a
configuration written here: ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``
(no cgroups needed), ``SelectType=select/cons_tres`` allocating CPUs, one node named after
this host (``hostname -s``) that declares :data:`CPUS` CPUs and :data:`MEMORY_MB` MB whatever
the machine has (``SlurmdParameters=config_overrides``), so a few one-CPU array tasks run at
once. Controller and node talk over 127.0.0.1 (no name resolution needed). Ports are
chosen free; every file (state, spool, logs, sockets, the munge key) lives under the folder
given. The client commands find the cluster through ``SLURM_CONF``
(:attr:`Cluster.env`). :func:`unavailable` says why a cluster cannot start here, or None.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
CPUS = 8
MEMORY_MB = 16000


def _find(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.is_file()), None
    )


def unavailable() -> str | None:
    """Why no cluster can start here (not root, a package missing), or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the Slurm cluster tests start slurmctld and slurmd, which needs root (.ci/run runs as root)"
    missing = [name for name in (*DAEMONS, *CLIENTS) if _find(name) is None]
    if missing:
        return f"{', '.join(missing)} not found: install Debian's slurm-wlm and munge (.ci/run does)"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Cluster:
    root: Path
    host: str
    env: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    def run(self, *argv: str, check: bool = True, cwd: Path | None = None, env: dict | None = None, timeout=60):
        done = subprocess.run(
            list(argv),
            env={**self.env, **(env or {})},
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` of one job (or array element) as a dict, {} once Slurm forgot it."""
        done = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        if done.returncode != 0:
            return {}
        fields = {}
        for word in done.stdout.split():
            if "=" in word:
                key, value = word.split("=", 1)
                fields.setdefault(key, value)
        return fields

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """Every record ``scontrol show job`` prints for ``job_id`` (an array: one per element)."""
        done = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        out = []
        for line in done.stdout.splitlines():
            fields: dict[str, str] = {}
            for word in line.split():
                if "=" in word:
                    key, value = word.split("=", 1)
                    fields.setdefault(key, value)
            if fields:
                out.append(fields)
        return out

    def wait(self, job_id: str, states=("COMPLETED",), timeout: float = 300) -> list[dict[str, str]]:
        """Wait until no record of ``job_id`` is pending or running any more; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.jobs(job_id)
            if found and all(
                j.get("JobState") not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED") for j in found
            ):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} still not done after {timeout} s: {[j.get('JobState') for j in found]}\n{self.logs()}"
                )
            time.sleep(1)

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.is_file():
                parts.append(
                    f"--- {name} (last lines)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
                )
        return "\n".join(parts)


def _conf(root: Path, host: str, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
ClusterName=mixerbench-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
InactiveLimit=0
SchedulerParameters=sched_interval=2,bf_interval=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={MEMORY_MB} State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def start(root: Path, timeout: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd under ``root``; wait until the node takes jobs."""
    host = socket.gethostname().split(".")[0]
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    ctld_port, slurmd_port = _free_ports(2)
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, host, ctld_port, slurmd_port))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SRUN_"))}
    env["SLURM_CONF"] = str(conf)
    cluster = Cluster(root, host, env)
    try:
        subprocess.run(
            [
                _find("munged"),
                "--force",
                f"--socket={root}/munge/munge.socket",
                f"--key-file={key}",
                f"--pid-file={root}/munge/munged.pid",
                f"--log-file={root}/munge/munged.log",
                f"--seed-file={root}/munge/munged.seed",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        cluster.pids["munged"] = int((root / "munge" / "munged.pid").read_text())
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run(
                [_find(daemon), "-f", str(conf), *(("-c", "-i") if daemon == "slurmctld" else ("-c",))],
                check=True,
                capture_output=True,
                env=env,
                timeout=30,
            )
            pid_file = root / f"{daemon}.pid"
            deadline = time.monotonic() + 10
            while not pid_file.is_file() and time.monotonic() < deadline:
                time.sleep(0.1)
            cluster.pids[daemon] = int(pid_file.read_text())
        deadline = time.monotonic() + timeout
        while True:
            state = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
            if state in ("idle", "mixed", "allocated"):
                return cluster
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Slurm node is {state or 'not up'} after {timeout} s\n{cluster.logs()}")
            time.sleep(0.5)
    except BaseException:
        stop(cluster)
        raise


def stop(cluster: Cluster) -> None:
    """Cancel every job, stop the daemons this module started (by their process ids)."""
    if "slurmctld" in cluster.pids:
        cluster.run("scancel", "--full", "--user=root", check=False)
        time.sleep(1)
    for name in ("slurmd", "slurmctld", "munged"):
        pid = cluster.pids.pop(name, None)
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
