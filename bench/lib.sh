# Shared by bench/*.sh (sourced): release build, bench config, result files.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
RESULTS="$ROOT/state/bench"
WARDEN="$ROOT/target/release/iam-warden"

# BENCH_BUILD=0 skips the build and uses the release binaries as they are (to re-measure
# with a binary built before, e.g. while other builds would compete for the CPU).
bench_build() {
    if [ "${BENCH_BUILD:-1}" = 0 ]; then
        [ -x "$WARDEN" ] || die "$WARDEN is missing: run without BENCH_BUILD=0 once"
        return 0
    fi
    echo "building the release binary (cargo build --release --locked --bins)..." >&2
    (cd "$ROOT" && cargo build --release --locked --bins --quiet)
}

# bench_config FILE: the benchmark configuration (the demo's: MFA policy for console
# users, source-IP policy for everyone; everything else default).
bench_config() {
    cat >"$1" <<EOT
mode = "dry-run"
state_dir = "$WORK/state"

[baseline.source_ip_policy]
enabled = true
allowed_cidrs = ["192.0.2.0/24", "2001:db8::/32"]
EOT
}

machine() {
    echo "$(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
}

# jq-like helper: py EXPR FILE: evaluate a Python expression on the JSON in FILE (as `d`).
py() {
    "$VENV_PY" -c 'import json, sys; d = json.load(open(sys.argv[2])); r = eval(sys.argv[1]); print(json.dumps(r) if isinstance(r, (dict, list)) else r)' "$1" "$2"
}

# ---- daemons (bench/daemon.sh, bench/burst.sh) ---------------------------------------------
BENCH_PY="$ROOT/bench/daemon.py"

declare -A SHUTDOWN_S SHUTDOWN_RC

# start_daemon NAME [VAR=VALUE...]: `iam-warden run` in the background, in mode enforce
# with its own state directory and a free port, plus the given variables. Waits (with a
# deadline) for /readyz 200. Sets DAEMON_PID, DAEMON_URL, DAEMON_DIR, READY_S.
start_daemon() {
    local name=$1 port t0
    shift
    port=$(free_port)
    DAEMON_DIR="$WORK/$name"
    DAEMON_URL="http://127.0.0.1:$port"
    mkdir -p "$DAEMON_DIR/state"
    t0=$(date +%s.%N)
    # setpriv --pdeathsig: the daemon gets SIGTERM should this script die without cleanup.
    env IAM_WARDEN_MODE=enforce IAM_WARDEN_STATE_DIR="$DAEMON_DIR/state" \
        IAM_WARDEN_SERVER__LISTEN="127.0.0.1:$port" IAM_WARDEN_LOG_FORMAT=json "$@" \
        setpriv --pdeathsig TERM "$WARDEN" run </dev/null >"$DAEMON_DIR/daemon.log" 2>&1 &
    DAEMON_PID=$!
    LIB_PIDS+=("$DAEMON_PID")
    READY_S=$("$VENV_PY" "$BENCH_PY" ready --url "$DAEMON_URL" --pid "$DAEMON_PID" --timeout 600 --since "$t0") || {
        tail -n 20 "$DAEMON_DIR/daemon.log" >&2
        die "daemon $name did not become ready (log above)"
    }
    echo "daemon $name (pid $DAEMON_PID) ready in $READY_S s" >&2
}

# stop_daemon NAME: SIGTERM, then wait (deadline 60 s, then SIGKILL) for the exit.
# Records SHUTDOWN_S[NAME] (SIGTERM -> the process is gone) and SHUTDOWN_RC[NAME].
stop_daemon() {
    local name=$1 pid=$DAEMON_PID t0 t1 i state rc=0
    t0=$(now_s)
    kill -TERM "$pid"
    for ((i = 0; i < 6000; i++)); do
        state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || state=
        [ -z "$state" ] || [ "$state" = Z ] && break
        sleep 0.01
    done
    t1=$(now_s)
    if [ "$i" = 6000 ]; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "daemon $name did not exit within 60 s of SIGTERM: killed" >&2
    fi
    wait "$pid" || rc=$?
    SHUTDOWN_S[$name]=$(elapsed "$t0" "$t1")
    SHUTDOWN_RC[$name]=$rc
    echo "daemon $name stopped in ${SHUTDOWN_S[$name]} s, exit $rc" >&2
    [ "$rc" = 0 ] || tail -n 20 "$DAEMON_DIR/daemon.log" >&2
}

# start_fault_proxy NAME UPSTREAM RATE FAULTS: the fault-injecting proxy (target/release/
# fault-proxy, src/bin/fault-proxy/) in front of UPSTREAM: each IAM/STS request gets, with
# probability RATE, one of FAULTS (comma-separated kinds, e.g. throttle,500,reset); seeded
# by FAULT_SEED (1). Sets FAULT_URL; its counts: GET $FAULT_URL/fault-proxy/stats.
start_fault_proxy() {
    local name=$1 bin="$ROOT/target/release/fault-proxy"
    [ -x "$bin" ] || die "$bin is missing: run without BENCH_BUILD=0 once"
    start_tied "$name" "$bin" --upstream "$2" --rate "$3" --faults "$4" --seed "${FAULT_SEED:-1}" \
        --exit-on-stdin-eof >"$WORK/$name.url"
    FAULT_URL=$(cat "$WORK/$name.url")
}
