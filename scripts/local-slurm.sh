#!/usr/bin/env bash
# local-slurm.sh — a real SLURM cluster on this machine, for trying hpcne's batch
# scripts (and for the tests in tests/slurm/) without a cluster: one node, or several
# emulated nodes (one slurmd each, HPCNE_SLURM_NODES) for multi-node jobs.
#
# Usage:
#   sudo scripts/local-slurm.sh start    # install if needed, configure, start, wait until the node is idle
#   scripts/local-slurm.sh status        # daemons + sinfo; exit 0 when healthy, 1 otherwise
#   eval "$(scripts/local-slurm.sh env)" # export SLURM_CONF so sbatch/srun/squeue find the cluster
#   sudo scripts/local-slurm.sh stop     # cancel all jobs, stop slurmd, slurmctld, munged
#
# What it needs: Debian/Ubuntu (apt-get), root for `start`/`stop` (slurmd must run
# as root to launch jobs; the packages are installed with apt-get), no systemd or
# cgroups (process tracking is proctrack/linuxproc, tasks are not confined).
#
# Everything lives in one state folder, $HPCNE_SLURM_DIR (default /tmp/hpcne-slurm):
#   slurm.conf           the generated configuration (clients need SLURM_CONF=<this>)
#   munge/               a private munge key, socket, pid and log: a system munged,
#                        if any, is left alone
#   state/ spool/        slurmctld's StateSaveLocation, slurmd's SlurmdSpoolDir
#   log/                 slurmctld.log, slurmd.log, jobcomp.log (one line per finished job)
#   run/                 pid files
# Nothing is written to /etc/slurm, so a real SLURM configuration on a workstation
# is untouched; the daemons get `-f slurm.conf` and clients read SLURM_CONF.
#
# Settings (environment; `sudo` drops them unless given as `sudo VAR=... $0 start`
# or with `sudo -E`):
#   HPCNE_SLURM_DIR            state folder                       [/tmp/hpcne-slurm]
#   HPCNE_SLURM_CPUS           pretend the node has N CPUs (SlurmdParameters=
#                              config_overrides) to try scripts that ask for
#                              more ranks than this machine has   [detected]
#   HPCNE_SLURMCTLD_PORT       slurmctld port                     [6817]
#   HPCNE_SLURMD_PORT          slurmd port (of the first node)    [6818]
#   HPCNE_SLURM_NODES          emulated nodes: N > 1 starts N slurmd daemons
#                              (`slurmd -N <host>-1` ... `<host>-N`, ports
#                              HPCNE_SLURMD_PORT, +1, ...), each with all of
#                              this machine's CPUs, so that `sbatch --nodes=2`
#                              and `srun -N 2` place tasks on two SLURM nodes
#                              (SLURM_NODEID 0 and 1)               [1]
#   HPCNE_SLURM_CRED_EXPIRE    job credential lifetime in seconds; it is also how
#                              long a requeued job waits before it may start again
#                              (SLURM's default is 120 s; values below 5 are
#                              rejected and silently mean 120)    [5]
#   HPCNE_SLURM_START_TIMEOUT  seconds `start` waits for the node to be idle [60]
set -euo pipefail

# The daemons and admin tools live in /usr/sbin, which is not on a normal user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

STATE_DIR="${HPCNE_SLURM_DIR:-/tmp/hpcne-slurm}"
CONF="$STATE_DIR/slurm.conf"
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket"
LOG_DIR="$STATE_DIR/log"
RUN_DIR="$STATE_DIR/run"
CTLD_PORT="${HPCNE_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${HPCNE_SLURMD_PORT:-6818}"
CRED_EXPIRE="${HPCNE_SLURM_CRED_EXPIRE:-5}"
START_TIMEOUT="${HPCNE_SLURM_START_TIMEOUT:-60}"
PARTITION="debug"
NODES="${HPCNE_SLURM_NODES:-1}"
# The node is named like the machine, as slurmd expects (`slurmd -N` is passed too).
HOST="$(hostname -s 2>/dev/null || uname -n)"
HOST="${HOST%%.*}"
NODE="$HOST"
CLUSTER="hpcne-local"

# Clients run from this script (sinfo, scontrol, scancel) use the generated config.
export SLURM_CONF="$CONF"

log() { printf 'local-slurm: %s\n' "$*"; }
err() { printf 'local-slurm: error: %s\n' "$*" >&2; }
die() {
    err "$*"
    exit 1
}

# Print the last lines of a log file to stderr, to explain a failure.
show_log() {
    local file="$1"
    if [[ -s "$file" ]]; then
        printf -- '--- last lines of %s ---\n' "$file" >&2
        tail -n 25 "$file" >&2
        printf -- '---\n' >&2
    fi
}

[[ "$NODES" =~ ^[1-9][0-9]?$ ]] || die "HPCNE_SLURM_NODES must be a number of nodes from 1 to 99; got '$NODES'"

# The node names: the machine's name for one node, <host>-1 ... <host>-N for several.
node_names() {
    local i
    if ((NODES == 1)); then
        echo "$NODE"
    else
        for ((i = 1; i <= NODES; i++)); do echo "$HOST-$i"; done
    fi
}

# The slurmd daemons' names for pid_file/daemon_pid: one per node.
slurmd_daemons() {
    local name
    if ((NODES == 1)); then
        echo slurmd
    else
        for name in $(node_names); do echo "slurmd-$name"; done
    fi
}

all_slurmd_running() {
    local d
    for d in $(slurmd_daemons); do is_running "$d" || return 1; done
}

any_slurmd_running() {
    local d
    for d in $(slurmd_daemons); do is_running "$d" && return 0; done
    return 1
}

# Root is needed to install packages and run slurmd.  A non-root user with password-less
# sudo (a CI runner, say) gets the command re-run through `sudo -n`, settings included.
need_root() {
    [[ "$(id -u)" -eq 0 ]] && return 0
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        local -a settings=()
        local var
        for var in "${!HPCNE_SLURM@}"; do
            settings+=("$var=${!var}")
        done
        log "'$1' needs root: running it again with sudo"
        exec sudo -n env "${settings[@]}" bash "$0" "$1"
    fi
    die "'$1' must run as root (try: sudo $0 $1)"
}

# --- process bookkeeping -----------------------------------------------------
# Daemons are found through their pid files, never by name, so a system munged or
# another SLURM on the same machine is never touched.  /proc is read instead of
# `kill -0` so that a non-root user can tell whether root's daemons are alive.
pid_file() {
    case "$1" in
        munged) echo "$MUNGE_DIR/munged.pid" ;;
        *) echo "$RUN_DIR/$1.pid" ;;
    esac
}

# Whether a process exists and is not a zombie.  A killed daemon stays a zombie
# until PID 1 reaps it, and in containers PID 1 may take its time.
proc_alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# Print the pid of a running daemon, or fail.  The command name is checked too,
# so a stale pid file pointing at a recycled pid does not count.
daemon_pid() {
    local name="$1" file pid comm
    file="$(pid_file "$name")"
    [[ -r "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" ]] && proc_alive "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == "${name%%-*}"* ]] || return 1  # slurmd-<node> runs as slurmd
    echo "$pid"
}

is_running() { daemon_pid "$1" >/dev/null; }

# SIGTERM a daemon and wait (bounded) for it to exit; SIGKILL as a last resort.
stop_daemon() {
    local name="$1" pid i
    pid="$(daemon_pid "$name")" || {
        rm -f "$(pid_file "$name")"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        proc_alive "$pid" || break
        sleep 0.2
    done
    if proc_alive "$pid"; then
        err "$name (pid $pid) ignored SIGTERM for 20 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pid_file "$name")"
    log "stopped $name (pid $pid)"
}

stop_slurmds() {
    local d
    for d in $(slurmd_daemons); do stop_daemon "$d"; done
}

# The log file of a node's slurmd.
slurmd_log() {
    if ((NODES == 1)); then echo "$LOG_DIR/slurmd.log"; else echo "$LOG_DIR/slurmd-$1.log"; fi
}

# A node's state as sinfo prints it: idle, mix, alloc, comp, idle*, down*, drain...
node_state() {
    { sinfo -h -N -n "${1:-$NODE}" -o '%t' 2>/dev/null || true; } | head -n 1
}

node_ok() {
    local name
    for name in $(node_names); do
        case "$(node_state "$name")" in
            idle | mix | alloc | comp) ;;
            *) return 1 ;;
        esac
    done
}

healthy() {
    is_running munged && is_running slurmctld && all_slurmd_running \
        && scontrol ping >/dev/null 2>&1 && node_ok
}

# --- installation ------------------------------------------------------------
have_binaries() {
    local b
    for b in munged mungekey slurmctld slurmd sinfo sbatch srun scontrol; do
        command -v "$b" >/dev/null 2>&1 || return 1
    done
}

install_packages() {
    have_binaries && return 0
    need_root start
    command -v apt-get >/dev/null 2>&1 || die "SLURM is not installed and apt-get is not available; install slurmctld, slurmd, slurm-client and munge by hand"
    log "installing slurmctld slurmd slurm-client munge (apt-get)"
    local apt_log="$STATE_DIR/log/apt.log"
    # The packages' maintainer scripts try to start services; there is no init
    # system here (and we start our own daemons), so that failing is harmless.
    # Another apt-get/dpkg may be running (e.g. a parallel setup): wait for its lock.
    local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0
        -o DPkg::Lock::Timeout=300)
    local -a pkgs=(slurmctld slurmd slurm-client munge)
    if ! "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >"$apt_log" 2>&1; then
        # Package lists may be missing (fresh container) or stale: refresh once.
        if ! { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${pkgs[@]}"; } >>"$apt_log" 2>&1; then
            show_log "$apt_log"
            die "apt-get install failed"
        fi
    fi
    have_binaries || die "packages installed but munged/slurmctld/slurmd/sinfo are still missing"
}

# --- configuration -----------------------------------------------------------
# Hardware as slurmd sees it (`slurmd -C`), so the node registers without being
# marked INVALID; falls back to nproc/free.
node_line() {
    local detected cpus=1 sockets=1 cores=1 threads=1 mem=1024 kv
    detected="$(slurmd -C 2>/dev/null | head -n 1)" || detected=""
    for kv in $detected; do
        case "$kv" in
            CPUs=*) cpus="${kv#*=}" ;;
            SocketsPerBoard=*) sockets="${kv#*=}" ;;
            CoresPerSocket=*) cores="${kv#*=}" ;;
            ThreadsPerCore=*) threads="${kv#*=}" ;;
            RealMemory=*) mem="${kv#*=}" ;;
        esac
    done
    if [[ -z "$detected" ]]; then
        cpus="$(nproc)"
        cores="$cpus"
        mem="$(free -m | awk '/^Mem:/ {print $2}')"
    fi
    if [[ -n "${HPCNE_SLURM_CPUS:-}" ]]; then
        cpus="$HPCNE_SLURM_CPUS" sockets=1 cores="$HPCNE_SLURM_CPUS" threads=1
    fi
    # NodeAddr=127.0.0.1: never depend on the hostname resolving to a reachable address.
    local hardware="CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem"
    if ((NODES == 1)); then
        echo "NodeName=$NODE NodeAddr=127.0.0.1 $hardware State=UNKNOWN"
        return 0
    fi
    # Emulated nodes share this machine: one slurmd each, on its own port.
    local i=0 name
    for name in $(node_names); do
        echo "NodeName=$name NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((SLURMD_PORT + i)) $hardware State=UNKNOWN"
        i=$((i + 1))
    done
}

# Where each slurmd keeps its pid, spool and log: one set per emulated node (%n: its name).
slurmd_paths() {
    local suffix=""
    ((NODES == 1)) || suffix="-%n"
    echo "SlurmdSpoolDir=$STATE_DIR/spool$suffix"
    echo "SlurmdPidFile=$RUN_DIR/slurmd$suffix.pid"
    echo "SlurmdLogFile=$LOG_DIR/slurmd$suffix.log"
}

render_conf() {
    local overrides=""
    [[ -n "${HPCNE_SLURM_CPUS:-}" ]] && overrides="SlurmdParameters=config_overrides"
    cat <<EOF
# Generated by scripts/local-slurm.sh — edits are overwritten on the next start.
# A single-node test cluster: no accounting database, no cgroups, no systemd.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# root runs everything: the state folder is root's, and no 'slurm' user is needed.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Private munged socket (see munge/).  cred_expire is the job credential lifetime,
# and also how long a requeued job is held (Reason=BeginTime) before it may start
# again (begin time = requeue time + cred_expire + 1): SLURM's default of 120 s
# makes requeue tests slow; 5 is the smallest value slurm accepts (a smaller one
# is logged as invalid and replaced by 120), and gives a ~7 s restart.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE

StateSaveLocation=$STATE_DIR/state
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
$(slurmd_paths)
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups or systemd here: track processes through /proc, do not bind tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# sacct needs slurmdbd, which we do not run; one line per finished job instead.
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
# The PyPI mpich wheel (and most MPIs) bootstrap through PMI-2 under srun.
MpiDefault=pmi2
SwitchType=switch/none
# No mail on this machine; the default /usr/bin/mail is usually missing.
MailProg=/bin/true
$overrides

SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Schedule every second instead of every 30-60 s: a job whose begin time has
# passed (e.g. after a requeue) starts at once.
SchedulerParameters=bf_interval=1,sched_interval=2,batch_sched_delay=0

# Test-friendly timings: finished jobs stay visible to scontrol for 60 s (long
# enough for pollers), time-limited jobs get SIGKILL 5 s after SIGTERM, and a
# node that went down comes back by itself when its slurmd registers.
MinJobAge=60
KillWait=5
OverTimeLimit=0
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmdTimeout=60
ReturnToService=2
JobRequeue=1

$(node_line)
PartitionName=$PARTITION Nodes=$(node_names | paste -sd,) Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

# --- munge ---------------------------------------------------------------------
make_munge_key() {
    [[ -s "$MUNGE_KEY" ]] && return 0
    log "creating munge key $MUNGE_KEY"
    if ! mungekey --create --keyfile="$MUNGE_KEY" 2>/dev/null; then
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
    # munged refuses keys readable by anyone but its own user.
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
}

start_munged() {
    if is_running munged; then
        return 0
    fi
    id munge >/dev/null 2>&1 || die "user 'munge' does not exist (is the munge package installed?)"
    # munged checks that its folders are not writable by others and that the key
    # belongs to the user it runs as; 0711 lets non-root clients reach the socket.
    chown munge:munge "$MUNGE_DIR"
    chmod 0711 "$MUNGE_DIR"
    make_munge_key
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    if ! runuser -u munge -- munged \
        --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" >"$MUNGE_DIR/start.out" 2>&1; then
        cat "$MUNGE_DIR/start.out" >&2
        show_log "$MUNGE_DIR/munged.log"
        die "munged failed to start"
    fi
    local i
    for ((i = 0; i < 50; i++)); do
        if munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; then
            log "munged running (pid $(daemon_pid munged))"
            return 0
        fi
        sleep 0.1
    done
    show_log "$MUNGE_DIR/munged.log"
    die "munged started but does not answer on $MUNGE_SOCKET"
}

# --- slurm daemons -------------------------------------------------------------
start_slurmctld() {
    is_running slurmctld && return 0
    # Without -c the saved state (job id counter, held jobs) is kept across
    # restarts, so job ids and slurm-<id>.out files do not repeat.
    if ! slurmctld -f "$CONF" >"$LOG_DIR/slurmctld.start.out" 2>&1; then
        cat "$LOG_DIR/slurmctld.start.out" >&2
        show_log "$LOG_DIR/slurmctld.log"
        die "slurmctld failed to start"
    fi
    local i
    for ((i = 0; i < 100; i++)); do
        if scontrol ping 2>/dev/null | grep -q 'is UP'; then
            log "slurmctld running (pid $(daemon_pid slurmctld || echo '?'))"
            return 0
        fi
        if ((i > 10)) && ! is_running slurmctld; then
            break
        fi
        sleep 0.2
    done
    cat "$LOG_DIR/slurmctld.start.out" >&2
    show_log "$LOG_DIR/slurmctld.log"
    die "slurmctld is not answering (scontrol ping)"
}

start_slurmd() {
    local name daemon log_file
    for name in $(node_names); do
        daemon="slurmd" log_file="$(slurmd_log "$name")"
        if ((NODES > 1)); then
            daemon="slurmd-$name"
            mkdir -p "$STATE_DIR/spool-$name"
        fi
        is_running "$daemon" && continue
        if ! slurmd -f "$CONF" -N "$name" >"$LOG_DIR/$daemon.start.out" 2>&1; then
            cat "$LOG_DIR/$daemon.start.out" >&2
            show_log "$log_file"
            die "slurmd for node $name failed to start"
        fi
        log "slurmd for node $name started"
    done
}

# Wait (bounded) until every node is usable.  A node left DOWN or DRAINED by an
# earlier run (e.g. "Kill task failed", "Not responding") is resumed.
wait_for_node() {
    local deadline=$((SECONDS + START_TIMEOUT)) state="" name waiting
    while ((SECONDS < deadline)); do
        waiting=""
        for name in $(node_names); do
            state="$(node_state "$name")"
            case "$state" in
                idle | mix | alloc | comp) continue ;;
                down | drain | drng | drain* | fail | failg | inval)
                    scontrol update NodeName="$name" State=RESUME >/dev/null 2>&1 || true
                    ;;
            esac
            waiting="$name"
            break
        done
        if [[ -z "$waiting" ]]; then
            log "node(s) $(node_names | paste -sd,) ready (partition $PARTITION)"
            return 0
        fi
        if ! all_slurmd_running; then
            show_log "$(slurmd_log "$waiting")"
            die "a slurmd exited"
        fi
        if ! is_running slurmctld; then
            show_log "$LOG_DIR/slurmctld.log"
            die "slurmctld exited"
        fi
        sleep 0.5
    done
    err "node $waiting not idle after ${START_TIMEOUT}s (state: ${state:-unknown})"
    scontrol show node "$waiting" >&2 2>/dev/null || true
    show_log "$(slurmd_log "$waiting")"
    show_log "$LOG_DIR/slurmctld.log"
    exit 1
}

cmd_start() {
    # Healthy with the same configuration: nothing to do (no root needed).
    if have_binaries && [[ -f "$CONF" && "$(cat "$CONF")" == "$(render_conf)" ]] && healthy; then
        log "already running and healthy (SLURM_CONF=$CONF)"
        sinfo
        return 0
    fi
    need_root start
    # Root daemons read this folder: it must not belong to an ordinary user.
    if [[ -e "$STATE_DIR" && "$(stat -c %u "$STATE_DIR")" != 0 ]]; then
        die "$STATE_DIR exists and is not owned by root: remove it or set HPCNE_SLURM_DIR"
    fi
    mkdir -p "$STATE_DIR" "$LOG_DIR" 2>/dev/null || die "cannot create $STATE_DIR"
    install_packages

    local new_conf
    new_conf="$(render_conf)"

    # A configuration change (new script version, HPCNE_SLURM_CPUS...) is applied
    # by restarting the slurm daemons; munged does not depend on it.
    if [[ -f "$CONF" && "$(cat "$CONF")" != "$new_conf" ]] \
        && { is_running slurmctld || any_slurmd_running; }; then
        log "configuration changed: restarting slurmctld and slurmd"
        stop_slurmds
        stop_daemon slurmctld
    fi

    mkdir -p "$MUNGE_DIR" "$RUN_DIR" "$STATE_DIR/state" "$STATE_DIR/spool"
    chmod 0755 "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
    printf '%s\n' "$new_conf" >"$CONF"
    chmod 0644 "$CONF"

    start_munged
    start_slurmctld
    start_slurmd
    wait_for_node
    sinfo
    log "ready: run  eval \"\$($0 env)\"  to use sbatch/srun/squeue"
}

cmd_stop() {
    if ! is_running munged && ! is_running slurmctld && ! any_slurmd_running; then
        log "not running"
        return 0
    fi
    need_root stop
    if is_running slurmctld && scontrol ping >/dev/null 2>&1; then
        # Cancel every job first so no job step outlives slurmd; wait (bounded)
        # until they are gone (KillWait=5 s plus a little).
        local jobs i
        jobs="$({ squeue -h -o '%A' 2>/dev/null || true; } | tr '\n' ' ')"
        if [[ -n "${jobs// /}" ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086  # one argument per job id
            scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 40; i++)); do
                [[ -z "$(squeue -h -t RUNNING,COMPLETING -o '%A' 2>/dev/null)" ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_slurmds
    stop_daemon slurmctld
    stop_daemon munged
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
}

cmd_status() {
    local name pid rc=0
    for name in munged slurmctld $(slurmd_daemons); do
        if pid="$(daemon_pid "$name")"; then
            printf '%-10s running (pid %s)\n' "$name" "$pid"
        else
            printf '%-10s not running\n' "$name"
            rc=1
        fi
    done
    printf 'SLURM_CONF=%s\n' "$CONF"
    if [[ -f "$CONF" ]] && sinfo 2>&1; then
        node_ok || rc=1
    else
        rc=1
    fi
    return "$rc"
}

cmd_env() {
    printf 'export SLURM_CONF=%q\n' "$CONF"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
