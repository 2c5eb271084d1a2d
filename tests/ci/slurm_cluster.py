"""A real one-node Slurm cluster in a temporary folder: munged, slurmctld and slurmd, started and stopped.

Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them) run as root with a
configuration written here: ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``
(no cgroups needed), ``SelectType=select/cons_tres`` allocating CPUs, one node named after
this host (``hostname -s``) that declares :data:`CPUS` CPUs and :data:`MEMORY_MB` MB whatever
the machine has (``SlurmdParameters=config_overrides``), so a few one-CPU array tasks run at
once. Controller and node talk over 127.0.0.1 (no name resolution needed). Ports are
chosen free; every file (state, spool, logs, sockets, the munge key) lives under the folder
given. The client commands find the cluster through ``SLURM_CONF``
(:attr:`Cluster.env`). The daemons are children of the test process (run in the foreground);
:func:`stop` lets the node end every job before it stops them, and waits for each to exit, so a
cluster started right after leaves no trace of the previous one. :func:`unavailable` says why a
cluster cannot start here, or None.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "munge")
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
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

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
        for name in ("slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"):
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


def _munge_answers(root: Path) -> bool:
    done = subprocess.run(
        [_find("munge"), "-n", f"--socket={root}/munge/munge.socket"], capture_output=True, timeout=30, check=False
    )
    return done.returncode == 0


def _daemon(cluster: Cluster, name: str, *argv: str) -> None:
    """Start one daemon in the foreground, as a child of this process (its log: ``ROOT/NAME.out``)."""
    with open(cluster.root / f"{name}.out", "ab") as log:
        cluster.procs[name] = subprocess.Popen(
            [_find(name), *argv],
            env=cluster.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the tests reaches stop(), not the daemons first
        )


def _until(cluster: Cluster, what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}\n{cluster.logs()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {timeout} s\n{cluster.logs()}")
        time.sleep(0.1)


def start(root: Path, timeout: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd under ``root``; wait until the node takes jobs.

    The daemons run in the foreground, as children of this process: no pid file to wait for and read back, and
    :func:`stop` waits for each of them to exit.
    """
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
        _daemon(
            cluster,
            "munged",
            "--foreground",
            "--force",
            f"--socket={root}/munge/munge.socket",
            f"--key-file={key}",
            f"--pid-file={root}/munge/munged.pid",
            f"--log-file={root}/munge/munged.log",
            f"--seed-file={root}/munge/munged.seed",
        )
        _until(cluster, "munge credential", lambda: _munge_answers(root), timeout)
        _daemon(cluster, "slurmctld", "-D", "-f", str(conf), "-c", "-i")
        _daemon(cluster, "slurmd", "-D", "-f", str(conf), "-c")

        def node_up() -> bool:
            state = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
            return state in ("idle", "mixed", "allocated")

        _until(cluster, "idle Slurm node", node_up, timeout)
        return cluster
    except BaseException:
        stop(cluster)
        raise


def stop(cluster: Cluster, timeout: float = 60) -> None:
    """Cancel every job and wait until the node has ended them; stop the daemons and wait for each to exit.

    Nothing of the cluster outlives this call: no job step still being killed (its ``slurmstepd`` would stay
    behind once ``slurmd`` is gone), no daemon still shutting down when the next cluster starts.
    """
    ctld = cluster.procs.get("slurmctld")
    if ctld is not None and ctld.poll() is None:
        cluster.run("scancel", "--full", "--user=root", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = cluster.run("squeue", "-h", "-o", "%i %T", check=False)  # pending, running or completing
            if left.returncode != 0 or not left.stdout.strip():
                break
            time.sleep(0.2)
    for name in ("slurmd", "slurmctld", "munged"):
        proc = cluster.procs.pop(name, None)
        if proc is None:
            continue
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
