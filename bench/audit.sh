#!/usr/bin/env bash
# Benchmark: `iam-warden audit` of an account of 1,000 users.
#
# moto (plain) on a free port; bench/seed.py --users 1000 --drift 0.1 (700 service users
# with a key, 300 console users with password and MFA, 1 % exempt; brought onto the
# baseline by iam-warden enforce, then 10 % drift); then `iam-warden audit --output json`
# (release build) 5 times: median wall time and `aws_calls`; as many times with
# `cis.enabled = false` (no CIS section 1 account checks); and once more through
# bench/count-proxy.py for the calls per API operation.
# Environment: USERS (1000), DRIFT (0.1), RUNS (5).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
USERS=${USERS:-1000} DRIFT=${DRIFT:-0.1} RUNS=${RUNS:-5}

lib_init bench-audit
bench_build
start_moto moto
emulator_env "$MOTO_URL"
CONFIG="$WORK/iam-warden.toml"
bench_config "$CONFIG"

echo "seeding $USERS users (drift $DRIFT)..." >&2
"$VENV_PY" bench/seed.py --users "$USERS" --drift "$DRIFT" \
    --warden "$WARDEN" --warden-config "$CONFIG" >"$WORK/seed.json"
cat "$WORK/seed.json" >&2

times=()
for ((i = 1; i <= RUNS; i++)); do
    t0=$(now_s)
    rc=0
    "$WARDEN" --config "$CONFIG" audit --output json >"$WORK/audit.json" || rc=$?
    t1=$(now_s)
    [ "$rc" = 0 ] || [ "$rc" = 1 ] || die "audit exited $rc"
    times+=("$(elapsed "$t0" "$t1")")
    echo "run $i: $(printf '%.3f' "${times[-1]}") s, $(py 'd["aws_calls"]' "$WORK/audit.json") AWS calls, exit $rc" >&2
done
median_s=$(printf '%s\n' "${times[@]}" | median)
# The same account without the CIS section 1 account checks (cis.enabled = false).
off_times=()
for ((i = 1; i <= RUNS; i++)); do
    t0=$(now_s)
    rc=0
    IAM_WARDEN_CIS__ENABLED=false "$WARDEN" --config "$CONFIG" audit --output json >"$WORK/audit-off.json" || rc=$?
    t1=$(now_s)
    [ "$rc" = 0 ] || [ "$rc" = 1 ] || die "audit (CIS off) exited $rc"
    off_times+=("$(elapsed "$t0" "$t1")")
    echo "CIS off, run $i: $(printf '%.3f' "${off_times[-1]}") s, $(py 'd["aws_calls"]' "$WORK/audit-off.json") AWS calls, exit $rc" >&2
done
off_median_s=$(printf '%s\n' "${off_times[@]}" | median)

start_count_proxy "$MOTO_URL"
AWS_ENDPOINT_URL="$PROXY_URL" "$WARDEN" --config "$CONFIG" audit --output json >"$WORK/audit-proxy.json" || true
"$VENV_PY" -c 'import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1] + "/__counts").read().decode())' \
    "$PROXY_URL" >"$WORK/ops.json"

mkdir -p "$RESULTS"
"$VENV_PY" - "$WORK" "$median_s" "$(machine)" "${times[*]}" "$off_median_s" "${off_times[*]}" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" >"$RESULTS/audit.json" <<'PY'
import json, sys
work, median, machine, times = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split()
off_median, off_times, load = float(sys.argv[5]), sys.argv[6].split(), sys.argv[7]
a = json.load(open(f"{work}/audit.json"))
off = json.load(open(f"{work}/audit-off.json"))
print(json.dumps({
    "benchmark": "audit",
    "machine": machine,
    "seed": json.load(open(f"{work}/seed.json")),
    "users": a["summary"]["users"],
    "summary": {k: v for k, v in a["summary"].items() if k != "by_check"},
    "findings_by_check": {k: v for k, v in a["summary"]["by_check"].items() if v},
    "runs_seconds": [round(float(t), 3) for t in times],
    "median_seconds": round(median, 3),
    "aws_calls": a["aws_calls"],
    "calls_by_operation": json.load(open(f"{work}/ops.json")),
    "load_average_after": load,
    "cis_off": {
        "runs_seconds": [round(float(t), 3) for t in off_times],
        "median_seconds": round(off_median, 3),
        "aws_calls": off["aws_calls"],
    },
}, indent=2))
PY
"$VENV_PY" - "$RESULTS/audit.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
print(f"audit of {r['users']} users ({s['violating']} violating, {s['exempt']} exempt, {s['findings']} findings) on {r['machine']}")
print(f"  wall time, median of {len(r['runs_seconds'])}: {r['median_seconds']:.3f} s   (runs: {', '.join(f'{t:.3f}' for t in r['runs_seconds'])})")
o = r["cis_off"]
print(f"  without the CIS account checks (cis.enabled = false): median {o['median_seconds']:.3f} s (runs: {', '.join(f'{t:.3f}' for t in o['runs_seconds'])}), {o['aws_calls']} AWS calls")
print(f"  AWS calls: {r['aws_calls']}   by operation: {', '.join(f'{k} {v}' for k, v in r['calls_by_operation'].items())}")
print(f"  (a per-user scanner needs about 5 calls per user: ~{5 * r['users']} calls)")
print(f"  results: {sys.argv[1]}")
PY
