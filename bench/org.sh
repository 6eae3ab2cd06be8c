#!/usr/bin/env bash
# Benchmark: `iam-warden audit` of an emulated AWS Organization (accounts.source =
# "organization").
#
# moto (plain) on a free port; bench/org_seed.py creates the organization in moto's
# default account 123456789012 (the management account) with ACCOUNTS member accounts and
# seeds USERS users in each through AssumeRole into it; `iam-warden enforce --once` over
# the organization brings every account onto the baseline, then DRIFT of each account's
# users drift. Then `iam-warden audit --output json` (release build) over the organization,
# the management account excluded (it has no users), RUNS times with the CIS account checks
# on (the default) and RUNS times with `cis.enabled = false`: median wall time, calls per
# account (`accounts[].report.aws_calls`), discovery calls (`discovery_aws_calls`), and once
# more each through bench/count-proxy.py for the calls per API operation.
#
# With C7N_ORG=1, Cloud Custodian's c7n-org (installed by this script into state/c7n-venv,
# as bench/custodian.sh does) runs bench/custodian-policies.yml with --dryrun (its filters,
# i.e. its reads, and no action) over the same member accounts through the same role,
# once, through the counting proxy: its wall time and calls per account. c7n-org runs one
# process per account (C7N_ORG_PARALLEL at a time, default 4 x cores).
# Environment: ACCOUNTS (100), USERS (100), DRIFT (0.1), RUNS (3), CONCURRENCY
# (accounts.concurrency, default iam-warden's), BASELINE (1; 0 skips the baseline enforce),
# C7N_ORG (0), ALSO_CONCURRENCY (unset: with a number N, RUNS more audits of each kind with
# accounts.concurrency = N, on the same organization), MEM_ROUNDS (3; 0 skips the daemon's
# memory), MEM_INTERVAL (the daemon's resync interval there, 30s).
#
# Each audit run also records the CPU seconds moto (one Python process) and iam-warden
# used: moto busy for most of the wall time means the emulator, not iam-warden, sets it.
#
# Last, the daemon's memory: `iam-warden run` (dry-run, CloudTrail off) over the same
# organization, its VmRSS and VmHWM (peak) once ready and after every account resynced
# MEM_ROUNDS times.
# Results: state/bench/org-ACCOUNTSxUSERS.json.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ACCOUNTS=${ACCOUNTS:-100} USERS=${USERS:-100} DRIFT=${DRIFT:-0.1} RUNS=${RUNS:-3}
BASELINE=${BASELINE:-1} MEM_ROUNDS=${MEM_ROUNDS:-3} MEM_INTERVAL=${MEM_INTERVAL:-30s}

lib_init bench-org
bench_build
start_moto moto
MOTO_PID=${LIB_PIDS[-1]}
emulator_env "$MOTO_URL"
CONFIG="$WORK/iam-warden.toml"
bench_config "$CONFIG"
cat >>"$CONFIG" <<EOT

[accounts]
source = "organization"
# The management account (moto's default account) has no users.
exclude = ["123456789012"]
EOT
[ -z "${CONCURRENCY:-}" ] || echo "concurrency = $CONCURRENCY" >>"$CONFIG"

echo "seeding an organization of $ACCOUNTS accounts x $USERS users (drift $DRIFT)..." >&2
warden_args=()
[ "$BASELINE" = 0 ] || warden_args=(--warden "$WARDEN" --warden-config "$CONFIG")
"$VENV_PY" bench/org_seed.py --accounts "$ACCOUNTS" --users "$USERS" --drift "$DRIFT" \
    "${warden_args[@]}" >"$WORK/seed.json"
cat "$WORK/seed.json" >&2

# cpu_s PID: the CPU seconds (user + system, every thread) PID has used so far.
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

# audit_runs NAME [VAR=VALUE...]: RUNS audits, then one through the counting proxy.
audit_runs() {
    local name=$1 i t0 t1 rc m0 m1
    shift
    : >"$WORK/$name.times"
    : >"$WORK/$name.cpu"
    for ((i = 1; i <= RUNS; i++)); do
        m0=$(cpu_s "$MOTO_PID")
        t0=$(now_s)
        rc=0
        /usr/bin/time -f '%U %S' -o "$WORK/$name.time1" \
            env "$@" "$WARDEN" --config "$CONFIG" audit --output json >"$WORK/$name.json" || rc=$?
        t1=$(now_s)
        m1=$(cpu_s "$MOTO_PID")
        [ "$rc" = 0 ] || [ "$rc" = 1 ] || die "audit ($name) exited $rc"
        elapsed "$t0" "$t1" >>"$WORK/$name.times"
        echo >>"$WORK/$name.times"
        # "moto's CPU seconds, iam-warden's CPU seconds" of the run
        # (GNU time's last line: a failing exit adds a line before it; audit exits 1 on findings)
        echo "$(elapsed "$m0" "$m1") $(tail -n1 "$WORK/$name.time1" | awk '{ printf "%.2f", $1 + $2 }')" >>"$WORK/$name.cpu"
        echo "$name run $i: $(tail -n1 "$WORK/$name.times") s, $(py 'd["aws_calls"]' "$WORK/$name.json") AWS calls, exit $rc, CPU s moto/iam-warden $(tail -n1 "$WORK/$name.cpu"), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    done
    "$VENV_PY" -c 'import urllib.request, sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/__reset", method="POST")).read()' "$PROXY_URL"
    env "$@" AWS_ENDPOINT_URL="$PROXY_URL" "$WARDEN" --config "$CONFIG" audit --output json >"$WORK/$name-proxy.json" || true
    "$VENV_PY" -c 'import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1] + "/__counts").read().decode())' \
        "$PROXY_URL" >"$WORK/$name-ops.json"
}

start_count_proxy "$MOTO_URL"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
audit_runs cis-on
audit_runs cis-off IAM_WARDEN_CIS__ENABLED=false
if [ -n "${ALSO_CONCURRENCY:-}" ]; then
    audit_runs cis-on-c IAM_WARDEN_ACCOUNTS__CONCURRENCY="$ALSO_CONCURRENCY"
    audit_runs cis-off-c IAM_WARDEN_CIS__ENABLED=false IAM_WARDEN_ACCOUNTS__CONCURRENCY="$ALSO_CONCURRENCY"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- daemon memory -------------------------------------------------------------------------
# `iam-warden run` over the same organization (dry-run, CloudTrail off, no queue, resync
# every MEM_INTERVAL): VmRSS/VmHWM at ready and after every account resynced MEM_ROUNDS
# times (resyncs_total counts one per account resync). MEM_ROUNDS=0 skips it.
echo '{}' >"$WORK/memory.json"
if [ "$MEM_ROUNDS" != 0 ]; then
    echo "daemon memory: iam-warden run over the organization, until each account resynced $MEM_ROUNDS times..." >&2
    start_daemon memory IAM_WARDEN_CONFIG="$CONFIG" IAM_WARDEN_MODE=dry-run \
        IAM_WARDEN_RESYNC__INTERVAL="$MEM_INTERVAL" IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED=false
    "$VENV_PY" "$BENCH_PY" memory --url "$DAEMON_URL" --pid "$DAEMON_PID" \
        --resyncs "$((MEM_ROUNDS * ACCOUNTS))" --timeout 1800 --out "$WORK/memory.json"
    stop_daemon memory
fi

# ---- c7n-org (optional) --------------------------------------------------------------------
echo '{}' >"$WORK/c7n.json"
if [ "${C7N_ORG:-0}" = 1 ]; then
    C7N_VENV="$ROOT/state/c7n-venv"
    if ! [ -x "$C7N_VENV/bin/c7n-org" ]; then
        echo "installing c7n-org into $C7N_VENV (pip install c7n-org)..." >&2
        "$VENV_PY" -m venv "$C7N_VENV"
        "$C7N_VENV/bin/pip" install --quiet --disable-pip-version-check c7n-org ||
            die "pip install c7n-org failed (PyPI must be reachable)"
    fi
    "$VENV_PY" - "$WORK/seed.json" >"$WORK/c7n-accounts.yml" <<'PY'
import json, sys
seed = json.load(open(sys.argv[1]))
print("accounts:")
for i, a in enumerate(seed["accounts"]):
    print(f'  - account_id: "{a}"\n    name: bench-{i:04d}\n    regions: [us-east-1]\n'
          f'    role: arn:aws:iam::{a}:role/iam-warden')
PY
    "$VENV_PY" -c 'import urllib.request, sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/__reset", method="POST")).read()' "$PROXY_URL"
    echo "c7n-org run --dryrun over $ACCOUNTS accounts..." >&2
    rc=0
    t0=$(now_s)
    AWS_ENDPOINT_URL="$PROXY_URL" "$C7N_VENV/bin/c7n-org" run --dryrun -c "$WORK/c7n-accounts.yml" \
        -u bench/custodian-policies.yml -s "$WORK/c7n-out" -r us-east-1 >"$WORK/c7n.log" 2>&1 || rc=$?
    t1=$(now_s)
    [ "$rc" = 0 ] || { tail -n 20 "$WORK/c7n.log" >&2; die "c7n-org exited $rc"; }
    "$VENV_PY" -c 'import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1] + "/__counts").read().decode())' \
        "$PROXY_URL" >"$WORK/c7n-ops.json"
    "$VENV_PY" - "$WORK" "$(elapsed "$t0" "$t1")" "$("$C7N_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("c7n"), m.version("c7n-org"))')" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" >"$WORK/c7n.json" <<'PY'
import glob, json, sys
work, secs, versions, load = sys.argv[1:5]
ops = json.load(open(f"{work}/c7n-ops.json"))
n = len(json.load(open(f"{work}/seed.json"))["accounts"])
matched = {}
for f in glob.glob(f"{work}/c7n-out/*/*/*/resources.json"):
    policy = f.split("/")[-2]
    matched[policy] = matched.get(policy, 0) + len(json.load(open(f)))
print(json.dumps({
    "versions": versions,
    "seconds": float(secs),
    "load_average_after": load,
    "aws_calls": sum(ops.values()),
    "calls_per_account": round(sum(ops.values()) / n, 1),
    "calls_by_operation": ops,
    "matched_by_policy": matched,
}))
PY
    echo "c7n-org: $(py 'd["seconds"]' "$WORK/c7n.json") s, $(py 'd["aws_calls"]' "$WORK/c7n.json") calls" >&2
fi

mkdir -p "$RESULTS"
OUT="$RESULTS/org-${ACCOUNTS}x${USERS}.json"
"$VENV_PY" - "$WORK" "$(machine)" "$load_before" "$load_after" >"$OUT" <<'PY'
import json, os, statistics, sys
work, machine, load_before, load_after = sys.argv[1:5]
seed = json.load(open(f"{work}/seed.json"))

def runs(name):
    a = json.load(open(f"{work}/{name}.json"))
    times = [float(t) for t in open(f"{work}/{name}.times").read().split()]
    per = [x["report"]["aws_calls"] for x in a["accounts"] if "report" in x]
    ops = json.load(open(f"{work}/{name}-ops.json"))
    cpu = [tuple(map(float, l.split())) for l in open(f"{work}/{name}.cpu") if l.strip()]
    return {
        "runs_seconds": [round(t, 3) for t in times],
        "median_seconds": round(statistics.median(times), 3),
        # CPU seconds of each run: moto's (one Python process: its request handling is
        # serial) and iam-warden's.
        "moto_cpu_seconds": [c[0] for c in cpu],
        "iam_warden_cpu_seconds": [c[1] for c in cpu],
        "accounts_in_scope": a["summary"].get("accounts"),
        "audited": a["summary"].get("audited"),
        "failed": a["summary"].get("failed"),
        "users": a["summary"]["users"],
        "findings": a["summary"]["findings"],
        "aws_calls": a["aws_calls"],
        "discovery_aws_calls": a["discovery_aws_calls"],
        "calls_per_account": {"min": min(per), "max": max(per), "median": statistics.median(per)},
        # Every call but GetCallerIdentity and ListAccounts, per account: its AssumeRole
        # (counted under discovery) and its own reads.
        "calls_per_account_with_assume_role": round((a["aws_calls"] - (a["discovery_aws_calls"] - len(per))) / len(per), 2),
        "calls_by_operation": ops,
        "errors": a.get("errors", []),
    }

print(json.dumps({
    "benchmark": "org",
    "machine": machine,
    "load_average_before": load_before,
    "load_average_after": load_after,
    "seed": {**seed, "accounts": len(seed["accounts"])},
    "cis_on": runs("cis-on"),
    "cis_off": runs("cis-off"),
    "c7n_org": json.load(open(f"{work}/c7n.json")),
    "daemon_memory": json.load(open(f"{work}/memory.json")),
    **({"also_concurrency": {"concurrency": int(os.environ["ALSO_CONCURRENCY"]),
                             "cis_on": runs("cis-on-c"), "cis_off": runs("cis-off-c")}}
       if os.environ.get("ALSO_CONCURRENCY") else {}),
}, indent=2))
PY
"$VENV_PY" - "$OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"audit of an organization on {r['machine']} (load {r['load_average_before']} -> {r['load_average_after']})")
for k in ("cis_on", "cis_off"):
    x = r[k]
    print(f"  {k}: {x['audited']} accounts, {x['users']} users, {x['findings']} findings, {len(x['errors'])} errors")
    print(f"    wall time, median of {len(x['runs_seconds'])}: {x['median_seconds']:.3f} s   (runs: {', '.join(f'{t:.3f}' for t in x['runs_seconds'])})")
    print(f"    CPU seconds per run: moto {', '.join(map(str, x['moto_cpu_seconds']))}; iam-warden {', '.join(map(str, x['iam_warden_cpu_seconds']))}")
    c = x["calls_per_account"]
    print(f"    AWS calls: {x['aws_calls']} = discovery {x['discovery_aws_calls']} (GetCallerIdentity, ListAccounts pages, one AssumeRole per account) + per account {c['median']} (min {c['min']}, max {c['max']})")
    print(f"    by operation: {', '.join(f'{k2} {v}' for k2, v in sorted(x['calls_by_operation'].items()))}")
a = r.get("also_concurrency")
if a:
    for k in ("cis_on", "cis_off"):
        x = a[k]
        print(f"  {k} with accounts.concurrency = {a['concurrency']}: median {x['median_seconds']:.3f} s (runs: {', '.join(f'{t:.3f}' for t in x['runs_seconds'])}), {x['aws_calls']} calls")
m = r["daemon_memory"]
if m:
    a1, a2 = m["after_ready"]["status"], m["after_resync"]["status"]
    print(f"  daemon: ready with VmRSS {a1['VmRSS'] / 1024:.1f} MiB; after {m['after_resync']['resyncs']} account resyncs "
          f"({m['after_resync']['waited_seconds']} s) VmRSS {a2['VmRSS'] / 1024:.1f} MiB, peak VmHWM {a2['VmHWM'] / 1024:.1f} MiB "
          f"({m['after_resync']['users']} users); goal between resyncs <= 60 MB: {a2['VmRSS'] * 1024 <= 60e6}")
c = r["c7n_org"]
if c:
    print(f"  c7n-org {c['versions']} --dryrun: {c['seconds']:.1f} s, {c['aws_calls']} calls ({c['calls_per_account']} per account)")
    print(f"    by operation: {', '.join(f'{k2} {v}' for k2, v in sorted(c['calls_by_operation'].items()))}")
print(f"  results: {sys.argv[1]}")
PY
