"""The local SLURM cluster itself (scripts/local-slurm.sh): batch jobs, MPI ranks
under srun, failures, arrays, cancellation, --signal and requeue behave as on a
real cluster.  About 30-60 s in all (the --signal test waits for slurmctld's
30 s time-limit sweep).  Needs root (or an already running cluster); skipped
with the reason otherwise (see conftest.py)."""

from __future__ import annotations

import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

MPI_HELLO = "from mpi4py import MPI; c = MPI.COMM_WORLD; print(c.rank, c.size, flush=True)"


def write_script(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def restart_times(text: str) -> dict[int, float]:
    """``run restart=N at T`` lines of the requeue job -> {N: T}."""
    return {int(n): float(t) for n, t in re.findall(r"run restart=(\d+) at ([\d.]+)", text)}


@pytest.mark.timeout(60, func_only=True)
def test_sbatch_wrap_completes(slurm_cluster, tmp_path):
    job = slurm_cluster.submit(
        f'echo "hello from job $SLURM_JOB_ID"; {slurm_cluster.python} -c "import sys; print(sys.prefix)"',
        "--time=00:01:00",
        f"--output={tmp_path}/wrap-%j.out",
    )
    assert slurm_cluster.wait(job, timeout=45) == "COMPLETED"
    info = slurm_cluster.job_info(job)
    assert info["ExitCode"] == "0:0"
    out = (tmp_path / f"wrap-{job}.out").read_text()
    assert f"hello from job {job}" in out
    assert sys.prefix in out  # the job ran the test's own interpreter


@pytest.mark.timeout(60, func_only=True)
def test_srun_two_mpi_ranks(slurm_cluster):
    proc = slurm_cluster.srun(
        "-n",
        "2",
        "--mpi=pmi2",
        "--time=00:01:00",
        slurm_cluster.python,
        "-m",
        "mpi4py",
        "-c",
        MPI_HELLO,
        timeout=45,
    )
    assert sorted(proc.stdout.split("\n")[:-1]) == ["0 2", "1 2"], proc.stdout + proc.stderr


@pytest.mark.timeout(60, func_only=True)
def test_batch_job_runs_mpi_ranks_with_srun(slurm_cluster, tmp_path):
    script = write_script(
        tmp_path / "mpi.sh",
        f"""
        #!/bin/bash
        #SBATCH --ntasks=2
        #SBATCH --time=00:01:00
        set -euo pipefail
        srun --mpi=pmi2 {slurm_cluster.python} -m mpi4py -c "{MPI_HELLO}"
        """,
    )
    job = slurm_cluster.submit(script, f"--output={tmp_path}/mpi-%j.out", cwd=tmp_path)
    assert slurm_cluster.wait(job, timeout=45) == "COMPLETED"
    lines = (tmp_path / f"mpi-{job}.out").read_text().split("\n")
    assert sorted(line for line in lines if line) == ["0 2", "1 2"]


@pytest.mark.timeout(60, func_only=True)
def test_failing_step_ends_failed_with_error_in_log(slurm_cluster, tmp_path):
    job = slurm_cluster.submit(
        f"echo before; srun {slurm_cluster.python} -c \"import sys; sys.exit('boom: failed on purpose')\"",
        "--time=00:01:00",
        f"--output={tmp_path}/fail-%j.out",
    )
    assert slurm_cluster.wait(job, timeout=45) == "FAILED"
    info = slurm_cluster.job_info(job)
    assert info["ExitCode"] == "1:0"
    assert info["Reason"] == "NonZeroExitCode"
    out = (tmp_path / f"fail-{job}.out").read_text()
    assert "before" in out
    assert "boom: failed on purpose" in out
    assert "exit code 1" in out  # srun's own report of the failed task


@pytest.mark.timeout(60, func_only=True)
def test_array_job_writes_one_output_per_task(slurm_cluster, tmp_path):
    job = slurm_cluster.submit(
        'echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID count $SLURM_ARRAY_TASK_COUNT"',
        "--array=0-2",
        "--time=00:01:00",
        f"--output={tmp_path}/arr-%A_%a.out",
    )
    assert slurm_cluster.wait(job, timeout=45) == "COMPLETED"
    for task in range(3):
        out = (tmp_path / f"arr-{job}_{task}.out").read_text()
        assert out.strip() == f"task {task} of {job} count 3"
    assert len(list(tmp_path.glob("arr-*.out"))) == 3


@pytest.mark.timeout(60, func_only=True)
def test_cancelled_job_ends_cancelled(slurm_cluster, tmp_path):
    job = slurm_cluster.submit("sleep 300", "--time=00:10:00", f"--output={tmp_path}/%j.out")
    slurm_cluster.wait_for_state(job, "RUNNING", timeout=30)
    slurm_cluster.cancel(job)
    assert slurm_cluster.wait(job, timeout=30) == "CANCELLED"


@pytest.mark.slow
@pytest.mark.timeout(100, func_only=True)
def test_signal_before_time_limit_reaches_batch_shell(slurm_cluster, tmp_path):
    # Due 5 s after the start, but slurmctld looks at time limits only every 30 s:
    # the signal arrives 5-35 s into the job.
    script = write_script(
        tmp_path / "signal.sh",
        """
        #!/bin/bash
        #SBATCH --time=00:01:00
        #SBATCH --signal=B:USR1@55
        start=$SECONDS
        trap 'echo "caught USR1 after $((SECONDS - start)) s"; exit 0' USR1
        echo started
        for _ in $(seq 120); do sleep 1; done
        echo "no signal"
        """,
    )
    job = slurm_cluster.submit(script, f"--output={tmp_path}/signal-%j.out", cwd=tmp_path)
    assert slurm_cluster.wait(job, timeout=90) == "COMPLETED"
    out = (tmp_path / f"signal-{job}.out").read_text()
    assert "caught USR1" in out, out


REQUEUE_SCRIPT = """
    #!/bin/bash
    #SBATCH --requeue
    #SBATCH --open-mode=append
    #SBATCH --time=00:02:00
    echo "run restart=${SLURM_RESTART_COUNT:-0} at $(date +%s.%N)"
    if [ "${SLURM_RESTART_COUNT:-0}" -eq 0 ]; then
        scontrol requeue "$SLURM_JOB_ID"
        sleep 60  # killed by the requeue
        echo "not requeued"
        exit 1
    fi
    echo "finished after restart"
    """


@pytest.mark.timeout(60, func_only=True)
def test_requeued_job_restarts_with_restart_count(slurm_cluster, tmp_path):
    # A requeued job is held (Reason=BeginTime) for AuthInfo cred_expire + 1 s:
    # 5 + 1 on the local cluster (SLURM's default 120 + 1 elsewhere).
    script = write_script(tmp_path / "requeue.sh", REQUEUE_SCRIPT)
    job = slurm_cluster.submit(script, f"--output={tmp_path}/rq-%j.out", cwd=tmp_path)
    assert slurm_cluster.wait(job, timeout=50) == "COMPLETED"
    info = slurm_cluster.job_info(job)
    assert info["Restarts"] == "1"
    out = (tmp_path / f"rq-{job}.out").read_text()
    assert "finished after restart" in out and "not requeued" not in out, out
    times = restart_times(out)
    assert sorted(times) == [0, 1], out
    assert times[1] - times[0] < 30, f"restart took {times[1] - times[0]:.1f} s"


@pytest.mark.timeout(60, func_only=True)
def test_requeue_hold_is_shortened_by_start_time(slurm_cluster, tmp_path):
    # `scontrol update JobId=X StartTime=now+2` once the requeued job is pending
    # (Reason=BeginTime) lets it start again after ~2 s, whatever cred_expire is.
    # Not `StartTime=now`: a relaunch within the second of the requeue gets a
    # credential no newer than the revoked one, and slurmctld fails the job
    # ("Killing non-startable batch JobId=X: Job credential revoked").
    script = write_script(tmp_path / "requeue.sh", REQUEUE_SCRIPT)
    job = slurm_cluster.submit(script, f"--output={tmp_path}/rq-%j.out", cwd=tmp_path)
    info = {}
    for _ in range(300):
        info = slurm_cluster.job_info(job)
        if info["Restarts"] == "1" and info["JobState"] == "PENDING" and info["Reason"] == "BeginTime":
            break
        time.sleep(0.1)
    assert info["Reason"] == "BeginTime", info
    slurm_cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now+2")
    assert slurm_cluster.wait(job, timeout=30) == "COMPLETED"
    times = restart_times((tmp_path / f"rq-{job}.out").read_text())
    assert times[1] - times[0] < 5, f"restart took {times[1] - times[0]:.1f} s"
