#!/usr/bin/env bash
# Run hpcne's whole test suite: serial tests (SLURM tests included when a local cluster can
# start), then the MPI tests on 2 and 3 ranks; every phase runs, and the exit status is 1 if any failed.
# Creates .venv and installs hpcne if needed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
# The CPU wheel first, so that pip does not pull a multi-GB CUDA build of torch.
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[dev,mpich,mujoco]"

export MPIEXEC_TIMEOUT="${MPIEXEC_TIMEOUT:-900}"  # the launcher kills a hung MPI job
export HPCNE_QUIET=1

# Every phase runs, whatever the ones before it did, and all are reported at the end: a newcomer sees
# every result and every cause. pytest exits 5 when it collected no tests: a failure here, not a pass.
failed=()
run() {
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "test.sh: no tests were collected by: $*" >&2; fi
  if [ "$rc" -ne 0 ]; then
    echo "test.sh: failed (exit $rc): $*" >&2
    failed+=("exit $rc: $*")
  fi
}

echo "== serial tests"
run python -m pytest -q -p no:cacheprovider --durations=15 tests
for n in 2 3; do
  echo "== MPI tests on $n ranks"
  run mpiexec -n "$n" python -m mpi4py -m pytest -q -p no:cacheprovider --with-mpi -m mpi tests
done

echo "== summary"
if [ "${#failed[@]}" -eq 0 ]; then
  echo "test.sh: every phase passed"
  exit 0
fi
printf 'test.sh: FAILED: %s\n' "${failed[@]}" >&2
exit 1
