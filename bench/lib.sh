# Shared by bench/*.sh (sourced): release build, bench config, result files.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
RESULTS="$ROOT/state/bench"
WARDEN="$ROOT/target/release/iam-warden"

bench_build() {
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
