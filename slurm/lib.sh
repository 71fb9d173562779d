# shellcheck shell=bash disable=SC2034  # CONFIG, HPCNE_DIR, HPCNE_FLAGS, HPCNE_STEP_STATUS are for the scripts
# slurm/lib.sh — what hpcne's batch scripts (cpu.sbatch, gpu.sbatch, sweep.sbatch) share:
# reading CONFIG / RUN_DIR / extra flags, the site set-up, the job step run in the
# background with stop signals forwarded to it, and the requeue after a checkpoint.
# It is sourced, not run; it defines functions and changes nothing until they are called.
#
# The flow of a script:
#   hpcne_parse_args "$@"            CONFIG, RUN_DIR and HPCNE_FLAGS from arguments or environment
#   hpcne_setup "$RUN_DIR"           traps, modules, python env, OMP_NUM_THREADS=1, run dir, log link
#   hpcne_run_step srun ... hpcne train "$CONFIG" --run-dir "$RUN_DIR" "${HPCNE_FLAGS[@]}"
#   hpcne_finish "$HPCNE_STEP_STATUS" exit 0, requeue (75: checkpointed), or fail with a message
#
# Exit statuses of a batch script (the job's ExitCode):
#   0   the run finished, or it checkpointed and the job was requeued (it restarts by itself)
#   2   a usage error (no CONFIG, a missing file), or hpcne refused the configuration
#   75  the run checkpointed after a stop signal but was not requeued (restart cap reached,
#       or `scontrol requeue` refused): resubmit the same command to resume
#   other  hpcne's (or srun's) own status: the log says why

HPCNE_EXIT_PREEMPTED=75  # hpcne.run.EXIT_PREEMPTED: stopped by a signal after writing a checkpoint

hpcne_log() { printf 'hpcne-slurm: %s\n' "$*"; }
hpcne_err() { printf 'hpcne-slurm: error: %s\n' "$*" >&2; }

# The job's name for files: "<array job>_<task>" in an array, else the job id ("local" outside SLURM).
hpcne_job_tag() {
    if [[ -n "${SLURM_ARRAY_JOB_ID:-}" && -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
        printf '%s_%s\n' "$SLURM_ARRAY_JOB_ID" "$SLURM_ARRAY_TASK_ID"
    else
        printf '%s\n' "${SLURM_JOB_ID:-local}"
    fi
}

hpcne_usage() {
    local script="${HPCNE_SCRIPT_NAME:-slurm/cpu.sbatch}" dir_name="${HPCNE_DIR_NAME:-RUN_DIR}"
    cat >&2 <<EOF
usage: sbatch [SBATCH OPTIONS] $script CONFIG.toml [$dir_name] [HPCNE FLAGS...]
   or: sbatch --export=ALL,CONFIG=CONFIG.toml[,$dir_name=DIR][,HPCNE_ARGS="--seed 3"] $script
  CONFIG       hpcne's TOML configuration (\`hpcne train CONFIG\`)
  $dir_name  ${HPCNE_DIR_HELP:-the run directory; default runs/<config name>-<job id>}
  HPCNE FLAGS  more \`hpcne train\` flags, e.g. --generations 200 --opt center_learning_rate=0.1
EOF
}

# Read "CONFIG [DIR] [FLAGS...]"; arguments win over the environment (CONFIG, <dir variable>,
# HPCNE_ARGS, word-split).  The second argument is the directory unless it starts with "-".
# Sets CONFIG, HPCNE_DIR (the directory given, may be empty) and the array HPCNE_FLAGS.
hpcne_parse_args() {
    local dir_var="${HPCNE_DIR_NAME:-RUN_DIR}"
    CONFIG="${CONFIG:-}"
    HPCNE_DIR="${!dir_var:-}"
    HPCNE_FLAGS=()
    if [[ -n "${HPCNE_ARGS:-}" ]]; then
        # shellcheck disable=SC2206  # word splitting is the point: HPCNE_ARGS="--seed 3 --generations 9"
        HPCNE_FLAGS=(${HPCNE_ARGS})
    fi
    if (($# > 0)) && [[ "$1" != -* ]]; then
        CONFIG="$1"
        shift
        if (($# > 0)) && [[ "$1" != -* ]]; then
            HPCNE_DIR="$1"
            shift
        fi
    fi
    HPCNE_FLAGS+=("$@")
    if [[ -z "$CONFIG" ]]; then
        hpcne_err "no CONFIG given"
        hpcne_usage
        exit 2
    fi
    if [[ ! -f "$CONFIG" ]]; then
        hpcne_err "CONFIG $CONFIG: no such file (relative paths start from $PWD)"
        hpcne_usage
        exit 2
    fi
}

# The configuration's name without folder and .toml, for default directory names.
hpcne_config_name() {
    local name="${CONFIG##*/}"
    printf '%s\n' "${name%.toml}"
}

# Site set-up: MODULES, VENV, one thread per rank.  Variables come from the batch script.
hpcne_setup_env() {
    if [[ -n "${MODULES:-}" ]]; then
        if ! command -v module >/dev/null 2>&1 && [[ -r /etc/profile.d/modules.sh ]]; then
            # shellcheck disable=SC1091
            source /etc/profile.d/modules.sh
        fi
        command -v module >/dev/null 2>&1 || {
            hpcne_err "MODULES is set but the 'module' command is missing (try '#!/bin/bash -l')"
            exit 2
        }
        # shellcheck disable=SC2086  # one argument per module
        module load ${MODULES}
    fi
    if [[ -n "${VENV:-}" ]]; then
        [[ -r "$VENV/bin/activate" ]] || {
            hpcne_err "VENV=$VENV has no bin/activate"
            exit 2
        }
        # Activation scripts are not written for `set -u`.
        set +u
        # shellcheck disable=SC1091
        source "$VENV/bin/activate"
        set -u
    fi
    command -v hpcne >/dev/null 2>&1 || {
        hpcne_err "'hpcne' is not on PATH: set VENV (or load the module or env that has hpcne)"
        exit 2
    }
    # One thread per MPI rank: the ranks are the parallelism (torch and BLAS would
    # otherwise each start one thread per core of the node).
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
}

# Create the run directory and link SLURM's output file into it as slurm-<tag>.out.
hpcne_prepare_run_dir() {
    local dir="$1" tag out
    tag="$(hpcne_job_tag)"
    mkdir -p "$dir"
    if [[ -n "${SLURM_JOB_ID:-}" ]]; then
        out="$(scontrol show job "$tag" 2>/dev/null | sed -n 's/^ *StdOut=//p' | head -n 1)" || out=""
        if [[ -n "$out" && -f "$out" && ! -e "$dir/slurm-$tag.out" ]]; then
            ln -s "$(realpath "$out")" "$dir/slurm-$tag.out" 2>/dev/null || true
        fi
    fi
}

# Everything before the job step: stop signals caught from now on (one that comes before
# the step starts makes hpcne_run_step requeue at once), the site environment, the run
# directory with the log link, and a banner.
hpcne_setup() {
    local sig
    for sig in USR1 TERM INT; do
        # shellcheck disable=SC2064  # the signal name is fixed now
        trap "_hpcne_forward $sig" "$sig"
    done
    hpcne_setup_env
    hpcne_prepare_run_dir "$1"
    hpcne_banner "$1"
}

# Print what runs where, once per start (and restart).
hpcne_banner() {
    hpcne_log "job $(hpcne_job_tag) on ${SLURM_JOB_NODELIST:-$(hostname -s)}: ${SLURM_NTASKS:-1} tasks," \
        "SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0} (MAX_RESTARTS=${MAX_RESTARTS:-0})"
    hpcne_log "config $CONFIG, run directory $1"
}

# --- the job step, with stop signals forwarded -----------------------------------------
# The batch shell gets the --signal=B:USR1@N warning (and SIGTERM on preemption), but
# bash runs a trap only between commands: the step is therefore started in the
# background and waited for in a loop.  The trap passes SIGUSR1 to srun, which forwards
# it to every task; hpcne then finishes its generation, checkpoints and exits 75.
# SIGTERM is passed on as SIGUSR1 too: srun answers a SIGTERM by killing the tasks.
HPCNE_STEP_PID=""
HPCNE_STOP_SIGNAL=""
HPCNE_STEP_STATUS=0
_HPCNE_TRAPPED=0

_hpcne_forward() {
    _HPCNE_TRAPPED=1
    [[ -n "$HPCNE_STOP_SIGNAL" ]] || HPCNE_STOP_SIGNAL="$1"
    if [[ -n "$HPCNE_STEP_PID" ]]; then
        hpcne_log "got SIG$1: asking the job step to checkpoint and stop (SIGUSR1 to srun, pid $HPCNE_STEP_PID)"
        kill -USR1 "$HPCNE_STEP_PID" 2>/dev/null || true
    else
        hpcne_log "got SIG$1 before the job step started"
    fi
}

# Run "$@" (an srun command line) in the background, forwarding USR1, TERM and INT to it;
# wait for it and set HPCNE_STEP_STATUS for hpcne_finish.  (A stop signal that came before
# the step could start requeues the job at once instead.)
hpcne_run_step() {
    local sig
    for sig in USR1 TERM INT; do
        # shellcheck disable=SC2064  # the signal name is fixed now
        trap "_hpcne_forward $sig" "$sig"
    done
    if [[ -n "$HPCNE_STOP_SIGNAL" ]]; then  # nothing ran yet, so nothing to checkpoint
        trap - USR1 TERM INT
        hpcne_requeue_or_fail "got SIG$HPCNE_STOP_SIGNAL before the job step started"
    fi
    "$@" &
    HPCNE_STEP_PID=$!
    local status
    while :; do
        _HPCNE_TRAPPED=0
        status=0
        wait "$HPCNE_STEP_PID" || status=$?
        # A wait cut short by a trapped signal returns >128: wait again (bash keeps the
        # status of a step that has ended meanwhile, so this never loses it).
        ((_HPCNE_TRAPPED && status > 128)) || break
    done
    HPCNE_STEP_PID=""
    HPCNE_STEP_STATUS=$status
    trap - USR1 TERM INT
}

# Requeue this job unless it already restarted MAX_RESTARTS times; exits the script.
hpcne_requeue_or_fail() {
    local restarts="${SLURM_RESTART_COUNT:-0}" max="${MAX_RESTARTS:-0}" why="$1"
    if [[ -z "${SLURM_JOB_ID:-}" ]]; then
        hpcne_err "$why; not in a SLURM job, so not requeued: run the same command again to resume"
        exit "$HPCNE_EXIT_PREEMPTED"
    fi
    if ((restarts >= max)); then
        hpcne_err "$why, but the job already restarted $restarts times (MAX_RESTARTS=$max): not requeued." \
            "Resubmit the same command to resume from the checkpoint."
        exit "$HPCNE_EXIT_PREEMPTED"
    fi
    # The task's own id in an array: the array job's id would requeue every task.
    local job
    job="$(hpcne_job_tag)"
    hpcne_log "$why: requeueing job $job (restart $((restarts + 1)) of at most $max);" \
        "it resumes from the checkpoint when it starts again"
    if ! scontrol requeue "$job"; then
        hpcne_err "scontrol requeue $job failed (was the job cancelled, or submitted with --no-requeue?)." \
            "Resubmit the same command to resume from the checkpoint."
        exit "$HPCNE_EXIT_PREEMPTED"
    fi
    # The requeue ends this run of the job; exiting now frees the node at once.
    exit 0
}

# Turn the step's status into the job's end: done, requeued, or failed with a message.
hpcne_finish() {
    local status="$1"
    if ((status == 0)); then
        hpcne_log "the run finished (job $(hpcne_job_tag))"
        exit 0
    fi
    if ((status == HPCNE_EXIT_PREEMPTED)); then
        # HPCNE_STOP_SIGNAL is empty when the signal went straight to the tasks (scancel, preemption).
        hpcne_requeue_or_fail "hpcne checkpointed after ${HPCNE_STOP_SIGNAL:+SIG}${HPCNE_STOP_SIGNAL:-a stop signal} (exit $status)"
    fi
    if [[ -n "$HPCNE_STOP_SIGNAL" ]] && ((status > 128)); then
        # The signal came before hpcne could handle it (e.g. while it started): the run
        # resumes from its last periodic checkpoint, if any.
        hpcne_requeue_or_fail "the job step was killed (exit $status) after SIG$HPCNE_STOP_SIGNAL"
    fi
    hpcne_err "the job step failed with exit status $status (see the messages above)"
    exit "$status"
}
