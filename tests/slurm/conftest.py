"""Fixtures for tests that run jobs on a real, local single-node SLURM cluster.

The cluster is the one ``scripts/local-slurm.sh start`` sets up (munged, slurmctld
and slurmd on this machine, configuration in ``$HPCNE_SLURM_DIR``, default
``/tmp/hpcne-slurm``).  The session fixture ``slurm_cluster`` starts it once (a
no-op when it is already running and healthy), points ``SLURM_CONF`` at it and
yields a :class:`SlurmCluster` with the helpers ``submit``, ``wait``, ``job_info``,
``cancel`` and ``srun``.

When the cluster cannot be started (no apt-get, not root, ...) every test here is
skipped with the script's own explanation; set ``HPCNE_SLURM_REQUIRED=1`` (e.g. in
CI, where it must work) to turn that skip into an error.  A cluster that the
fixture started is stopped again at the end of the session unless
``HPCNE_SLURM_KEEP=1``; one that was already running is left running.

Every test under tests/slurm/ gets the ``slurm`` marker, so ``pytest -m "not slurm"``
leaves them out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "local-slurm.sh"
HERE = Path(__file__).resolve().parent

#: Job states after which a job never runs again (squeue/scontrol spelling).
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)

# "Key=Value" pairs of `scontrol show job`: a key starts after whitespace; a value
# runs up to the next key (values may contain spaces, e.g. a command line).
_PAIR = re.compile(r"(?:^|\s)([A-Za-z][\w/:.\[\]-]*)=(.*?)(?=\s+[A-Za-z][\w/:.\[\]-]*=|\s*$)", re.S)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from tests/slurm/ (this hook sees all items)."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.slurm)


def _is_file(name: str) -> bool:
    try:
        return "\n" not in name and Path(name).is_file()
    except OSError:  # e.g. a long command line: "File name too long"
        return False


def parse_pairs(text: str) -> dict[str, str]:
    """Parse ``Key=Value Key=Value ...`` text (scontrol, jobcomp.log) into a dict."""
    return {m.group(1): m.group(2).strip() for m in _PAIR.finditer(text)}


class SlurmCluster:
    """Helpers around the local cluster's client commands.

    Job ids are strings: ``"12"`` for a job, ``"12_1"`` for task 1 of array job 12.
    """

    def __init__(self, state_dir: Path, conf: Path) -> None:
        self.state_dir = state_dir
        self.conf = conf
        #: The venv's interpreter and bin folder (mpiexec, ...), for use inside jobs.
        self.python = sys.executable
        self.bin_dir = Path(sys.executable).parent
        self.jobcomp_log = state_dir / "log" / "jobcomp.log"
        self._last_state: dict[str, str] = {}

    # -- running commands ------------------------------------------------------
    def run(self, *cmd: str, timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """Run a command with the cluster's environment; output captured as text.

        ``SLURM_CONF`` names this cluster, so that commands (and the jobs they submit, which inherit
        it) reach it even while another cluster's fixture is active.
        """
        kw.setdefault("env", {**os.environ, "SLURM_CONF": str(self.conf)})
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def srun(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """``srun ARGS...`` in the foreground (an allocation of its own)."""
        return self.run("srun", *args, timeout=timeout, check=check)

    def submit(
        self,
        script_or_wrap: str | os.PathLike,
        *args: str,
        cwd: str | os.PathLike | None = None,
        script_args: Sequence[str | os.PathLike] = (),
    ) -> str:
        """Submit a batch job and return its id.

        ``script_or_wrap`` is a batch script (a ``Path`` or the name of an existing
        file) or else a shell command line for ``sbatch --wrap``.  ``args`` are more
        sbatch options (``"--time=00:01:00"``, ``"--output=/x/%j.out"``, ...), given
        before the script, and ``script_args`` the script's own arguments.  The job
        runs in ``cwd`` (default: the current folder), which is also where relative
        ``--output`` paths and slurm-<id>.out go.
        """
        cmd = ["sbatch", "--parsable", *map(str, args)]
        if isinstance(script_or_wrap, os.PathLike) or _is_file(str(script_or_wrap)):
            cmd += [str(script_or_wrap), *map(str, script_args)]
        else:
            assert not script_args, "sbatch --wrap takes no script arguments"
            cmd.append(f"--wrap={script_or_wrap}")
        proc = self.run(*cmd, cwd=cwd, timeout=30)
        # --parsable prints "jobid" or "jobid;cluster".
        return proc.stdout.strip().split(";")[0]

    def cancel(self, job_id: str, *args: str) -> None:
        """``scancel [ARGS] JOB_ID`` (e.g. ``"--signal=USR1", "--batch"``)."""
        self.run("scancel", *args, str(job_id), timeout=30)

    # -- inspecting jobs ------------------------------------------------------------
    def job_records(self, job_id: str) -> list[dict[str, str]]:
        """``scontrol show job`` for the id as dicts (one per array task); [] once purged."""
        proc = self.run("scontrol", "--oneliner", "show", "job", str(job_id), check=False, timeout=30)
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return []
            raise RuntimeError(f"scontrol show job {job_id}: {proc.stderr.strip()}")
        return [parse_pairs(line) for line in proc.stdout.splitlines() if line.strip()]

    def completion_records(self, job_id: str) -> list[dict[str, str]]:
        """The jobcomp.log lines of a finished job (or of all tasks of an array job)."""
        if not self.jobcomp_log.exists():
            return []
        job_id = str(job_id)
        found: dict[str, dict[str, str]] = {}
        for line in self.jobcomp_log.read_text(errors="replace").splitlines():
            rec = parse_pairs(line)
            task = f"{rec.get('ArrayJobId')}_{rec.get('ArrayTaskId')}" if "ArrayJobId" in rec else None
            if job_id in (rec.get("JobId"), task) or (rec.get("ArrayJobId") == job_id):
                found[rec.get("JobId", "")] = rec  # the last line of a job wins (requeues)
        return list(found.values())

    def job_info(self, job_id: str) -> dict[str, str]:
        """Everything ``scontrol show job`` says about a job (first record for an
        array job: ask for ``"12_1"`` to get one task).  Once the controller has
        forgotten the job (MinJobAge=60 s after it ended), the jobcomp.log record
        is returned instead (fewer keys, but JobState and ExitCode are there).
        Raises KeyError for an unknown job."""
        records = self.job_records(job_id) or self.completion_records(job_id)
        if not records:
            raise KeyError(f"job {job_id} unknown to slurmctld and not in {self.jobcomp_log}")
        return records[0]

    def state(self, job_id: str) -> str:
        """The job's current state, e.g. PENDING, RUNNING, COMPLETED (first array task)."""
        return self.job_info(job_id)["JobState"]

    def wait(self, job_id: str, timeout: float = 60, poll: float = 0.25, cancel_on_timeout: bool = True) -> str:
        """Wait until the job (every task of an array job) has ended; return its
        final state: COMPLETED, FAILED, CANCELLED, TIMEOUT, ...  For an array job,
        COMPLETED only if every task completed, else the first other state found.

        A requeued job is followed through its restart (PENDING/REQUEUED are not
        final).  Raises TimeoutError (after cancelling the job, by default)."""
        job_id = str(job_id)
        deadline = time.monotonic() + timeout
        records: list[dict[str, str]] = []
        while True:
            records = self.job_records(job_id)
            if not records:
                # Purged from the controller: fall back on what we saw or jobcomp.log.
                records = self.completion_records(job_id)
                if not records and job_id in self._last_state:
                    return self._last_state[job_id]
                if not records:
                    raise KeyError(f"job {job_id} is unknown to slurmctld and not in {self.jobcomp_log}")
            states = [r.get("JobState", "UNKNOWN") for r in records]
            if all(s in TERMINAL_STATES for s in states):
                final = next((s for s in states if s != "COMPLETED"), "COMPLETED")
                self._last_state[job_id] = final
                return final
            if time.monotonic() > deadline:
                if cancel_on_timeout:
                    self.run("scancel", job_id, check=False, timeout=30)
                raise TimeoutError(f"job {job_id} still {states} after {timeout} s: {records}")
            time.sleep(poll)

    def wait_for_state(self, job_id: str, wanted: str, timeout: float = 30, poll: float = 0.25) -> dict:
        """Wait until ``job_info(job_id)["JobState"] == wanted`` (e.g. RUNNING); return the info."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job_info(job_id)
            if info.get("JobState") == wanted:
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not {wanted} after {timeout} s: {info}")
            time.sleep(poll)


def _script(command: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start the local SLURM cluster once per session and yield a :class:`SlurmCluster`."""
    yield from local_cluster(dict(os.environ))


@pytest.fixture(scope="session")
def two_nodes() -> Iterator[SlurmCluster]:
    """A second cluster with two emulated nodes (``HPCNE_SLURM_NODES=2``: two slurmd daemons on this
    machine), beside the main one: its own state folder ``$HPCNE_SLURM_DIR-2nodes``, munged and ports
    (the main cluster's + 20)."""
    port = int(os.environ.get("HPCNE_SLURMCTLD_PORT", "6817")) + 20
    env = {
        **os.environ,
        "HPCNE_SLURM_DIR": os.environ.get("HPCNE_SLURM_DIR", "/tmp/hpcne-slurm") + "-2nodes",
        "HPCNE_SLURM_NODES": "2",
        "HPCNE_SLURMCTLD_PORT": str(port),
        "HPCNE_SLURMD_PORT": str(port + 1),
    }
    yield from local_cluster(env, export_conf=False)


def local_cluster(env: dict[str, str], *, export_conf: bool = True) -> Iterator[SlurmCluster]:
    """Start the cluster that ``env`` (HPCNE_SLURM_* settings) describes, yield it, stop it if it was not
    running. With ``export_conf`` this process's ``SLURM_CONF`` points at it meanwhile."""
    state_dir = Path(env.get("HPCNE_SLURM_DIR", "/tmp/hpcne-slurm"))
    conf = state_dir / "slurm.conf"
    was_running = _script("status", timeout=60, env=env).returncode == 0
    try:
        # Bounded by the script itself (apt-get, a 60 s wait for the node); 600 s
        # is only a safety net for a hung apt-get.
        proc = _script("start", env=env)
    except subprocess.TimeoutExpired as exc:
        proc = subprocess.CompletedProcess(exc.cmd, 124, exc.stdout or "", exc.stderr or "timed out after 600 s")
    if proc.returncode != 0:
        output = "\n".join(p for p in (proc.stdout, proc.stderr) if p).strip()
        tail = "\n".join(output.splitlines()[-15:])
        message = (
            f"local SLURM cluster could not start (scripts/local-slurm.sh start exited {proc.returncode}):\n{tail}"
        )
        if os.environ.get("HPCNE_SLURM_REQUIRED", "") not in ("", "0"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    with pytest.MonkeyPatch.context() as mp:
        # Clients (sbatch, srun, scontrol) find the cluster through SLURM_CONF, and
        # jobs inherit it (sbatch --export=ALL is the default).
        if export_conf:
            mp.setenv("SLURM_CONF", str(conf))
        yield SlurmCluster(state_dir, conf)

    if not was_running and os.environ.get("HPCNE_SLURM_KEEP", "") in ("", "0"):
        _script("stop", timeout=120, env=env)
