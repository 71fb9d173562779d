"""hpcne's own batch scripts (slurm/*.sbatch) submitted to the local SLURM cluster.

Training on 2 MPI ranks, a stop signal that checkpoints, requeues and resumes to the same
results as an uninterrupted run, the restart cap, a seed sweep with its report, and jobs
whose ranks fail.  Tiny CartPole runs: about 2-3 minutes in all on 2 busy cores (most of
it is starting Python and torch in every job).  Skipped with the reason when the cluster
cannot start (see conftest.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import pytest

from hpcne.io.analysis import read_results
from hpcne.io.checkpoint import CheckpointManager

if TYPE_CHECKING:
    from conftest import SlurmCluster  # tests/slurm/conftest.py

SLURM = Path(__file__).resolve().parents[2] / "slurm"
CPU, GPU, SWEEP, LIB = SLURM / "cpu.sbatch", SLURM / "gpu.sbatch", SLURM / "sweep.sbatch", SLURM / "lib.sh"
EXIT_PREEMPTED = 75  # hpcne.run.EXIT_PREEMPTED, and the scripts' status when they do not requeue

# Short time limits; the USR1 warning (the scripts ask for 300 s before the end, more than the
# limit) is moved to 10 s before the end so that it never comes during these runs.
LIMITS = ("--time=00:04:00", "--signal=B:USR1@10")

# Five quick generations (episodes of at most 50 steps).
TINY = """
env = "CartPole-v1"
network = "Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)"
observation_normalization = false
algo = "pgpe"
generations = 5
episode_length = 50
seed = 0
checkpoint_every = 2

[algo_options]
popsize = 10
center_learning_rate = 0.2
stdev_learning_rate = 0.1
radius_init = 4.5
optimizer = "clipup"
"""

# Long enough (30 generations, episodes up to 200 steps, observation normalization) for a
# signal sent after the first generation to land mid-run: a few seconds of training.
LONG = """
env = "CartPole-v1"
network = "Linear(obs_length, 8) >> Tanh() >> Linear(8, act_length)"
observation_normalization = true
algo = "pgpe"
generations = 30
episode_length = 200
seed = 1
checkpoint_every = 100

[algo_options]
popsize = 20
center_learning_rate = 0.2
stdev_learning_rate = 0.1
radius_init = 4.5
optimizer = "clipup"
"""

# A CartPole whose rank 1 fails in its first step: an exception, or a hard exit.
FAULTY_ENV = '''
"""CartPole that fails on MPI rank 1 (SLURM_PROCID=1): raises, or exits the process."""
import os

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class FaultyCartPole(CartPoleEnv):
    def __init__(self, mode="raise", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def step(self, action):
        if os.environ.get("SLURM_PROCID") == "1":
            if self.mode == "exit":
                os._exit(3)
            raise RuntimeError("faulty env: rank 1 exploded on purpose")
        return super().step(action)


gym.register("Faulty-v0", entry_point=FaultyCartPole, max_episode_steps=50)
'''


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def export(cluster: SlurmCluster, **env: str | int) -> str:
    """``--export=ALL,...``: the test's interpreter as VENV, the start-up line on, plus ``env``."""
    values = {"VENV": str(Path(cluster.python).parent.parent), "HPCNE_QUIET": "0", **env}
    for key, value in values.items():
        assert "," not in str(value), f"sbatch --export cannot carry a comma: {key}={value}"
    return "--export=ALL," + ",".join(f"{k}={v}" for k, v in values.items())


def log_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else f"<no log at {path}>"


def wait_done(cluster: SlurmCluster, job: str, log: Path, timeout: float) -> tuple[str, dict[str, str]]:
    """Wait for the job to end; return its final state and ``scontrol`` record (log shown on timeout)."""
    try:
        state = cluster.wait(job, timeout=timeout)
    except TimeoutError as err:
        raise AssertionError(f"{err}\n--- log {log} ---\n{log_of(log)}") from None
    return state, cluster.job_info(job)


def wait_for_log(log: Path, pattern: str, timeout: float, cluster: SlurmCluster, job: str) -> re.Match[str]:
    """Wait until ``pattern`` (multiline regex) appears in the job's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, log_of(log), re.M)
        if match:
            return match
        if cluster.state(job) not in ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED"):
            break
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not in the log of job {job} ({cluster.state(job)})\n{log_of(log)}")


def assert_same_run(run: Path, reference: Path) -> None:
    """The results log (except timing columns), best solution and final center of two runs are equal."""
    a, b = read_results(run), read_results(reference)
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b), f"{len(a)} rows against {len(b)}"
    for column in a.columns:
        if column.endswith("_time"):  # wall_time, eval_time, comm_time, ...
            continue
        assert np.array_equal(a[column].to_numpy(), b[column].to_numpy(), equal_nan=True), column
    with h5py.File(run / "results.h5", "r") as fa, h5py.File(reference / "results.h5", "r") as fb:
        for name in ("best/values", "best/eval", "best/generation"):
            assert np.array_equal(fa[name][()], fb[name][()]), name
    ca, cb = (CheckpointManager(d / "checkpoints").load_latest() for d in (run, reference))
    assert ca is not None and cb is not None
    assert ca.generation == cb.generation
    for key in ("center", "stdev"):
        assert np.array_equal(np.asarray(ca.state["searcher"]["search"][key]), cb.state["searcher"]["search"][key])


# --------------------------------------------------------------------------------------------
@pytest.fixture
def cluster(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmCluster]:
    """The session's cluster; jobs the test submitted and left running are cancelled after it."""
    submitted: list[str] = []
    submit = slurm_cluster.submit

    def recording_submit(*args: Any, **kwargs: Any) -> str:
        job = submit(*args, **kwargs)
        submitted.append(job)
        return job

    monkeypatch.setattr(slurm_cluster, "submit", recording_submit)
    yield slurm_cluster
    for job in submitted:
        slurm_cluster.run("scancel", job, check=False, timeout=30)


def test_scripts_are_valid_bash():
    for script in (CPU, GPU, SWEEP, LIB):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = [
        str(p.relative_to(SLURM.parent)) for p in (LIB, CPU, GPU, SWEEP, SLURM.parent / "scripts" / "local-slurm.sh")
    ]
    proc = subprocess.run([shellcheck, "-x", *scripts], cwd=SLURM.parent, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(90, func_only=True)
def test_cpu_script_trains_on_two_ranks(cluster, tmp_path):
    config = write(tmp_path / "tiny.toml", TINY)
    out = tmp_path / "slurm-%j.out"
    job = cluster.submit(
        CPU, "--ntasks=2", *LIMITS, f"--output={out}", export(cluster), cwd=tmp_path, script_args=[config.name]
    )
    log = tmp_path / f"slurm-{job}.out"
    state, info = wait_done(cluster, job, log, timeout=80)
    text = log_of(log)
    assert (state, info["ExitCode"]) == ("COMPLETED", "0:0"), text
    assert "MPI, 2 ranks" in text and "hpcne-slurm: the run finished" in text, text
    run_dir = tmp_path / "runs" / f"tiny-{job}"  # the default run directory: <config name>-<job id>
    results = read_results(run_dir)
    assert results["generation"].tolist() == [1, 2, 3, 4, 5], text
    assert (results["popsize"] == 10).all()
    assert json.loads(results.attrs["config"])["episode_length"] == 50
    assert (run_dir / f"slurm-{job}.out").resolve() == log.resolve()  # the log, linked into the run dir
    assert CheckpointManager(run_dir / "checkpoints").load_latest().generation == 5


@pytest.mark.timeout(120, func_only=True)
def test_gpu_script_without_gpus_prints_the_device_map_and_trains(cluster, tmp_path):
    # The local node has no GPU: --gpus-per-task=0 replaces the script's 1 and GPU_BIND is
    # left empty; the rest (the tasks' device list, hpcne info's map, training) runs as on GPUs.
    config = write(tmp_path / "tiny.toml", TINY)
    job = cluster.submit(
        GPU,
        "--gpus-per-task=0",
        "--ntasks-per-node=2",
        "--cpus-per-task=1",
        *LIMITS,
        f"--output={tmp_path}/slurm-%j.out",
        export(cluster, GPU_BIND=""),
        cwd=tmp_path,
        script_args=[config.name, "runs/gpu", "--generations", "3"],
    )
    log = tmp_path / f"slurm-{job}.out"
    state, info = wait_done(cluster, job, log, timeout=100)
    text = log_of(log)
    assert (state, info["ExitCode"]) == ("COMPLETED", "0:0"), text
    for rank in (0, 1):  # the tasks' own view, then hpcne info's rank -> host -> device map
        assert re.search(rf"^task {rank} on \S+: node-local rank {rank}, CUDA_VISIBLE_DEVICES=none$", text, re.M), text
        assert re.search(rf"^  rank {rank}: host \S+, node-local rank {rank}, device cpu$", text, re.M), text
    assert "ranks      2 on 1 hosts" in text, text
    assert read_results(tmp_path / "runs" / "gpu")["generation"].tolist() == [1, 2, 3], text


@pytest.mark.timeout(60, func_only=True)
def test_missing_config_is_a_usage_error(cluster, tmp_path):
    job = cluster.submit(CPU, "--ntasks=1", *LIMITS, f"--output={tmp_path}/slurm-%j.out", cwd=tmp_path)
    log = tmp_path / f"slurm-{job}.out"
    state, info = wait_done(cluster, job, log, timeout=40)
    text = log_of(log)
    assert (state, info["ExitCode"]) == ("FAILED", "2:0"), text
    assert "no CONFIG given" in text and "usage: sbatch" in text, text


@pytest.mark.timeout(330, func_only=True)
def test_signal_checkpoints_requeues_and_resumes_to_the_same_results(cluster, tmp_path):
    config = write(tmp_path / "long.toml", LONG)
    # The uninterrupted reference run and the interrupted one side by side (they share the cores).
    jobs = {}
    for name in ("reference", "interrupted"):
        jobs[name] = cluster.submit(
            CPU,
            "--ntasks=2",
            "--oversubscribe",
            *LIMITS,
            f"--output={tmp_path}/{name}-%j.out",
            export(cluster),
            cwd=tmp_path,
            script_args=[config.name, f"runs/{name}"],
        )
    job = jobs["interrupted"]
    log = tmp_path / f"interrupted-{job}.out"
    # Once generation 1 is done, the batch shell gets SIGUSR1 as from --signal=B:USR1@N. (Its row may
    # reach results.h5 up to a second later: rows are written in batches. The run has 29 tiny
    # generations left, and waiting for the row could let it finish before the signal.)
    wait_for_log(log, r"^gen 1/30", timeout=90, cluster=cluster, job=job)
    cluster.cancel(job, "--signal=USR1", "--batch")

    state, info = wait_done(cluster, job, log, timeout=150)
    text = log_of(log)
    assert (state, info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), text
    stopped = re.search(r"hpcne: stopped by SIGUSR1 after generation (\d+); checkpoint written", text)
    assert stopped, text
    generation = int(stopped.group(1))
    assert 1 <= generation < 30, f"the signal did not land mid-run:\n{text}"
    assert f"hpcne-slurm: hpcne checkpointed after SIGUSR1 (exit {EXIT_PREEMPTED}): requeueing job {job}" in text
    assert "SLURM_RESTART_COUNT=1 (MAX_RESTARTS=10)" in text, text
    assert f"hpcne: resuming runs/interrupted from generation {generation}" in text, text
    assert "hpcne: done (reached 30 generations)" in text, text

    reference = jobs["reference"]
    ref_log = tmp_path / f"reference-{reference}.out"
    state, info = wait_done(cluster, reference, ref_log, timeout=60)
    assert (state, info["Restarts"]) == ("COMPLETED", "0"), log_of(ref_log)
    assert "resuming" not in log_of(ref_log)
    assert read_results(tmp_path / "runs" / "reference")["generation"].tolist() == list(range(1, 31))
    assert_same_run(tmp_path / "runs" / "interrupted", tmp_path / "runs" / "reference")


@pytest.mark.timeout(180, func_only=True)
def test_restart_cap_stops_requeueing(cluster, tmp_path):
    config = write(tmp_path / "long.toml", LONG)
    job = cluster.submit(
        CPU,
        "--ntasks=2",
        *LIMITS,
        f"--output={tmp_path}/slurm-%j.out",
        export(cluster, MAX_RESTARTS=0),
        cwd=tmp_path,
        script_args=[config.name, "runs/capped"],
    )
    log = tmp_path / f"slurm-{job}.out"
    wait_for_log(log, r"^gen 1/30", timeout=90, cluster=cluster, job=job)
    cluster.cancel(job, "--signal=USR1", "--batch")
    state, info = wait_done(cluster, job, log, timeout=60)
    text = log_of(log)
    # Not requeued: the job ends FAILED with status 75 and says how to go on.
    assert (state, info["ExitCode"], info["Restarts"]) == ("FAILED", f"{EXIT_PREEMPTED}:0", "0"), text
    assert "the job already restarted 0 times (MAX_RESTARTS=0): not requeued" in text, text
    assert "Resubmit the same command to resume from the checkpoint" in text, text
    assert "requeueing job" not in text, text
    # ... after checkpointing the generation it stopped at.
    stopped = re.search(r"stopped by SIGUSR1 after generation (\d+)", text)
    assert stopped, text
    checkpoint = CheckpointManager(tmp_path / "runs" / "capped" / "checkpoints").load_latest()
    assert checkpoint is not None and checkpoint.generation == int(stopped.group(1)) < 30


@pytest.mark.timeout(360, func_only=True)
def test_sweep_array_requeues_one_task_then_report(cluster, tmp_path):
    config = write(tmp_path / "long.toml", LONG)
    sweep = tmp_path / "sweep"
    # 2 seeds (10, 11), one task each, side by side on the 2 cores; 20 generations.
    job = cluster.submit(
        SWEEP,
        "--array=0-1",
        "--ntasks=1",
        *LIMITS,
        f"--output={tmp_path}/sweep-%A_%a.out",
        export(cluster, SEED_OFFSET=10),
        cwd=tmp_path,
        script_args=[config.name, "sweep", "--generations", "20"],
    )
    # The report, as slurm/README.md submits it: after every task of the array succeeded.
    hpcne = Path(cluster.python).parent / "hpcne"
    report = cluster.submit(
        f"{hpcne} report sweep/seed* --plot sweep/curves.png --csv sweep/all.csv",
        f"--dependency=afterok:{job}",
        "--time=00:02:00",
        f"--output={tmp_path}/report-{job}.out",
        cwd=tmp_path,
    )
    logs = [tmp_path / f"sweep-{job}_{task}.out" for task in range(2)]
    # Stop task 1 mid-run: it alone checkpoints, requeues (as <array job>_1, whose own job id
    # is the array's) and resumes; task 0 runs through.
    wait_for_log(logs[1], r"^gen 1/20", timeout=90, cluster=cluster, job=f"{job}_1")
    cluster.cancel(f"{job}_1", "--signal=USR1", "--batch")
    state, _ = wait_done(cluster, job, logs[0], timeout=180)
    texts = [log_of(log) for log in logs]
    both = "\n".join(f"--- task {t} ---\n{text}" for t, text in enumerate(texts))
    assert state == "COMPLETED", both
    assert [cluster.job_info(f"{job}_{t}")["Restarts"] for t in range(2)] == ["0", "1"], both
    assert f"requeueing job {job}_1 (restart 1 of at most 10)" in texts[1], both
    assert "SLURM_RESTART_COUNT=1" in texts[1] and "hpcne: resuming sweep/seed11 from generation" in texts[1], both
    assert "SLURM_RESTART_COUNT=1" not in texts[0] and "resuming" not in texts[0], both
    for task in range(2):
        seed = 10 + task
        run_dir = sweep / f"seed{seed}"
        results = read_results(run_dir)
        assert results["generation"].tolist() == list(range(1, 21)), both
        assert json.loads(results.attrs["config"])["seed"] == seed
        assert (run_dir / f"slurm-{job}_{task}.out").resolve() == logs[task].resolve()
    report_log = tmp_path / f"report-{job}.out"
    state, info = wait_done(cluster, report, report_log, timeout=60)
    text = log_of(report_log)
    assert (state, info["ExitCode"]) == ("COMPLETED", "0:0"), text
    rows = [line.split()[0] for line in text.splitlines() if re.match(r"seed\d+\s+20\s", line)]
    assert rows == ["seed10", "seed11"], text
    assert (sweep / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = (sweep / "all.csv").read_text().splitlines()
    assert len(csv) == 1 + 2 * 20 and csv[0].startswith("run,generation"), csv[:2]


@pytest.mark.timeout(240, func_only=True)
def test_failing_jobs_end_failed_with_the_error_in_their_log(cluster, tmp_path):
    write(tmp_path / "faulty_env.py", FAULTY_ENV)
    faulty = 'env = "faulty_env:Faulty-v0"'
    cases = {  # name: (config changes, exit code, text the log must hold)
        "raises": (f'{faulty}\nenv_config = {{ mode = "raise" }}', "1:0", "rank 1 exploded on purpose"),
        "exits": (f'{faulty}\nenv_config = {{ mode = "exit" }}', None, "task 1: Exited with exit code 3"),
        "bad-env": ('env = "NoSuchEnv-v9"', "2:0", "Could not create the environment 'NoSuchEnv-v9'"),
    }
    jobs = {}
    for name, (change, _, _) in cases.items():
        config = write(tmp_path / f"{name}.toml", TINY.replace('env = "CartPole-v1"', change))
        jobs[name] = cluster.submit(
            CPU,
            "--ntasks=2",
            "--oversubscribe",
            *LIMITS,
            f"--output={tmp_path}/{name}-%j.out",
            export(cluster, PYTHONPATH=tmp_path),
            cwd=tmp_path,
            script_args=[config.name, f"runs/{name}"],
        )
    started = time.monotonic()
    for name, (_, exit_code, message) in cases.items():
        log = tmp_path / f"{name}-{jobs[name]}.out"
        state, info = wait_done(cluster, jobs[name], log, timeout=120)
        text = log_of(log)
        assert state == "FAILED", f"{name}: {state}\n{text}"
        assert exit_code is None or info["ExitCode"] == exit_code, f"{name}: {info['ExitCode']}\n{text}"
        assert info["ExitCode"] != "0:0" and info["Restarts"] == "0", text
        assert message in text, f"{name}:\n{text}"
        assert "hpcne-slurm: error: the job step failed with exit status" in text, text
    # Far from the 4-minute limit: nothing hung in a collective.
    assert time.monotonic() - started < 120


@pytest.mark.timeout(240, func_only=True)
def test_the_default_requests_fit_a_two_cpu_cluster(cluster, tmp_path):
    """The README's commands, without resource options: they must start on the 2-CPU local node, not pend."""
    config = write(tmp_path / "tiny.toml", TINY)
    cpu = cluster.submit(
        CPU, *LIMITS, f"--output={tmp_path}/cpu-%j.out", export(cluster), cwd=tmp_path, script_args=[config.name]
    )
    sweep = cluster.submit(
        SWEEP,
        "--array=0-1",
        *LIMITS,
        f"--output={tmp_path}/sweep-%A_%a.out",
        export(cluster),
        cwd=tmp_path,
        script_args=[config.name, "sweep", "--generations", "2"],
    )
    for job, log in ((cpu, tmp_path / f"cpu-{cpu}.out"), (sweep, tmp_path / f"sweep-{sweep}_1.out")):
        state, info = wait_done(cluster, job, log, timeout=200)
        assert (state, info["ExitCode"]) == ("COMPLETED", "0:0"), log_of(log)
        assert "MPI, 2 ranks" in log_of(log), log_of(log)
    assert read_results(tmp_path / "runs" / f"tiny-{cpu}")["generation"].tolist() == [1, 2, 3, 4, 5]
    for seed in (0, 1):
        assert read_results(tmp_path / "sweep" / f"seed{seed}")["generation"].tolist() == [1, 2]
