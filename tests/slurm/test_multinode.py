"""Jobs on two SLURM nodes: the rank map, and distributed training that is requeued and resumes.

A second local cluster with two emulated nodes (the ``two_nodes`` fixture of conftest.py), so
that ``--nodes=2`` really places tasks on two SLURM nodes (SLURM_NODEID 0 and 1). Results are
compared with a serial run of the same configuration: with observation normalization off the
distributed mode on 4 ranks over 2 nodes gives the same bits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_scripts import CPU, LIMITS, LONG, assert_same_run, export, log_of, wait_done, wait_for_log, write

if TYPE_CHECKING:
    from conftest import SlurmCluster  # tests/slurm/conftest.py (where the two_nodes fixture is)

PLACEMENT = ("--nodes=2", "--ntasks-per-node=2")  # 4 ranks, two per node
TWO_NODES = (*PLACEMENT, "--ntasks=4", "--oversubscribe")  # sbatch: replaces cpu.sbatch's --ntasks=8


@pytest.fixture
def cluster(two_nodes: SlurmCluster) -> Iterator[SlurmCluster]:
    """The two-node cluster; jobs a test left behind are cancelled after it."""
    before = set(two_nodes.run("squeue", "-h", "-o", "%A").stdout.split())
    yield two_nodes
    left = set(two_nodes.run("squeue", "-h", "-o", "%A").stdout.split()) - before
    for job in left:
        two_nodes.cancel(job)


def node_names(cluster: SlurmCluster) -> list[str]:
    return sorted(cluster.run("sinfo", "-h", "-N", "-o", "%N").stdout.split())


def serial_run(tmp_path: Path, config: Path, name: str) -> Path:
    """The same configuration trained in one process, as the reference."""
    run_dir = tmp_path / "runs" / name
    done = subprocess.run(
        [sys.executable, "-m", "hpcne", "train", str(config), "--run-dir", str(run_dir), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "HPCNE_QUIET": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return run_dir


@pytest.mark.timeout(120, func_only=True)
def test_srun_places_two_ranks_on_each_node_and_hpcne_info_maps_them(cluster: SlurmCluster) -> None:
    nodes = node_names(cluster)
    assert len(nodes) == 2
    done = cluster.srun(
        *TWO_NODES[:2], "--mpi=pmi2", cluster.python, "-m", "mpi4py", "-m", "hpcne", "info", timeout=100
    )
    assert "ranks      4 on 2 hosts" in done.stdout, done.stdout + done.stderr
    for rank in range(4):
        line = rf"^  rank {rank}: host {nodes[rank // 2]}, node-local rank {rank % 2}, device cpu$"
        assert re.search(line, done.stdout, re.M), done.stdout


@pytest.mark.timeout(420, func_only=True)
def test_a_distributed_job_on_two_nodes_requeues_and_resumes_to_the_serial_results(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    """Distributed training on 4 ranks over 2 nodes, stopped by SIGUSR1, requeued and resumed on 2 nodes
    again: bit-identical to the serial run."""
    config = write(
        tmp_path / "long.toml", LONG.replace("observation_normalization = true", "observation_normalization = false")
    )
    job = cluster.submit(
        CPU,
        *TWO_NODES,
        *LIMITS,
        f"--output={tmp_path}/slurm-%j.out",
        export(cluster),
        cwd=tmp_path,
        script_args=[config.name, "runs/requeued", "--distributed"],
    )
    log = tmp_path / f"slurm-{job}.out"
    wait_for_log(log, r"^gen 1/30", timeout=150, cluster=cluster, job=job)
    cluster.cancel(job, "--signal=USR1", "--batch")
    state, info = wait_done(cluster, job, log, timeout=240)
    text = log_of(log)
    assert (state, info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), text
    stopped = re.search(r"hpcne: stopped by SIGUSR1 after generation (\d+); checkpoint written", text)
    assert stopped and 1 <= int(stopped.group(1)) < 30, text
    assert f"hpcne: resuming runs/requeued from generation {stopped.group(1)}" in text, text
    assert "hpcne: done (reached 30 generations)" in text, text
    nodes = node_names(cluster)
    assert text.count("MPI, 4 ranks") == 2, text  # the first start and the resumed one
    for rank in range(4):  # the run's own rank -> node map
        assert re.search(rf"^  rank {rank}: {nodes[rank // 2]} cpu$", text, re.M), text
    assert_same_run(tmp_path / "runs" / "requeued", serial_run(tmp_path, config, "serial"))
