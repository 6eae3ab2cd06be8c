# Shared helpers for scripts/demo.sh and bench/*.sh (sourced, not executed).
#
# Every process started here is tied to the calling script: it reads a FIFO the script
# holds open, and exits at EOF, so nothing outlives the script even after kill -9.
# `cleanup` (installed as an EXIT trap by `lib_init`) also stops them at once.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VENV_PY="$ROOT/.venv/bin/python"

lib_init() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/iam-warden-$1.XXXXXX")
    LIB_PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cleanup() {
    local rc=$?
    local pid
    for pid in "${LIB_PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${LIB_PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        if [ "${KEEP:-0}" = 1 ]; then
            echo "kept $WORK (KEEP=1)" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    return "$rc"
}

die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 1
}

# wait_for_line FILE REGEX SECONDS: print the first match of REGEX in FILE.
wait_for_line() {
    local file=$1 re=$2 secs=$3 i line
    for ((i = 0; i < secs * 10; i++)); do
        line=$(grep -m1 -oE "$re" "$file" 2>/dev/null || true)
        if [ -n "$line" ]; then
            echo "$line"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

faketime_lib() {
    local p
    for p in /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 \
        /usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1 \
        /usr/lib/faketime/libfaketimeMT.so.1; do
        [ -e "$p" ] && { echo "$p"; return 0; }
    done
    return 1
}

# start_moto NAME [faketime]: start moto on a free port. Sets MOTO_URL and, with
# faketime, FAKETIME_FILE (its clock offset; bench/seed.py --faketime-file writes it).
start_moto() {
    local name=$1 fake=${2:-} fifo="$WORK/$1.stdin" log="$WORK/$1.log" fd
    [ -x "$VENV_PY" ] || die "$VENV_PY is missing: run scripts/setup.sh (make demo / make test do)"
    mkfifo "$fifo"
    if [ "$fake" = faketime ]; then
        local lib
        lib=$(faketime_lib) || die "libfaketimeMT.so.1 not found: apt-get install faketime (scripts/setup.sh does)"
        FAKETIME_FILE="$WORK/$name.faketime"
        echo "+0d" >"$FAKETIME_FILE"
        LD_PRELOAD="$lib" FAKETIME_TIMESTAMP_FILE="$FAKETIME_FILE" FAKETIME_NO_CACHE=1 \
            "$VENV_PY" "$ROOT/scripts/moto-server.py" <"$fifo" >/dev/null 2>"$log" &
    else
        "$VENV_PY" "$ROOT/scripts/moto-server.py" <"$fifo" >/dev/null 2>"$log" &
    fi
    LIB_PIDS+=($!)
    exec {fd}>"$fifo"   # held open until this script exits
    MOTO_URL=$(wait_for_line "$log" 'http://127\.0\.0\.1:[0-9]+' 60) || {
        cat "$log" >&2
        die "moto did not start within 60 s (log above)"
    }
}

# start_tied NAME CMD...: run CMD (a proxy that prints its http://127.0.0.1:PORT URL on
# stdout) tied to this script; prints the URL.
start_tied() {
    local name=$1 fifo="$WORK/$1.stdin" log="$WORK/$1.out" fd url
    shift
    mkfifo "$fifo"
    "$@" <"$fifo" >"$log" 2>"$WORK/$name.err" &
    LIB_PIDS+=($!)
    exec {fd}>"$fifo"
    url=$(wait_for_line "$log" 'http://127\.0\.0\.1:[0-9]+' 30) || {
        cat "$WORK/$name.err" >&2
        die "$name did not start within 30 s"
    }
    echo "$url"
}

# start_recorder UPSTREAM [BINARY]: cloudtrail-recorder (target/debug, or BINARY) in front
# of moto. Sets RECORDER_URL.
start_recorder() {
    local bin=${2:-$ROOT/target/debug/cloudtrail-recorder}
    [ -x "$bin" ] || die "$bin is missing: cargo build --locked --bins"
    start_tied recorder "$bin" --upstream "$1" --listen 127.0.0.1:0 --exit-on-stdin-eof >"$WORK/recorder.url"
    RECORDER_URL=$(cat "$WORK/recorder.url")
}

# start_count_proxy UPSTREAM: bench/count-proxy.py in front of UPSTREAM. Sets PROXY_URL.
start_count_proxy() {
    start_tied proxy "$VENV_PY" "$ROOT/bench/count-proxy.py" --upstream "$1" >"$WORK/proxy.url"
    PROXY_URL=$(cat "$WORK/proxy.url")
}

free_port() {
    "$VENV_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Environment for anything that talks to the emulator: static test credentials (moto's
# default account 123456789012), never a real profile or instance role.
emulator_env() {
    local endpoint=$1
    unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN \
        AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_EC2_METADATA_DISABLED=true
    export AWS_ENDPOINT_URL="$endpoint"
    export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
}

# median of numbers on stdin
median() {
    sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# now_s: seconds since the epoch with nanoseconds
now_s() { date +%s.%N; }
# elapsed T0 T1: seconds between two now_s values, 3 decimals
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
