#!/usr/bin/env bash
# Benchmark: enforce under injected faults (src/bin/fault-proxy/ between iam-warden and
# moto), against the same enforce without faults.
#
# Three moto servers under libfaketime, each seeded identically (bench/seed.py --users
# USERS --drift DRIFT --seed SEED, as bench/enforce.sh), each behind its own fault-proxy:
#   clean     rate 0 (the proxy forwards everything: the same path as the others)
#   mixed     RATE of the IAM/STS requests get one fault drawn from MIXED: throttling,
#             500/503, resets before and after moto applied the call, slow answers, a
#             truncated body, a non-XML page
#   throttle  RATE of the requests are throttled
# On each account, passes of `iam-warden enforce --once --confirm-large-change` (mode
# enforce, default limits) through its proxy until `iam-warden plan` (directly on moto, no
# faults) plans nothing, at most MAX_PASSES. Per pass: exit code, wall time, AWS calls
# (iam-warden's count, retries included), outcomes; per account: passes to converge and
# their total time; and the proxy's fault counts. Goals (issue 9): mixed converges in at
# most 2 passes and at most 5x the clean time; throttle within 10x the clean time.
# "hang" is not among the mixed faults: each one only costs aws.attempt_timeout (30 s).
# Results: $RESULTS/faults.json and a summary on stdout.
# Environment: USERS (1000), DRIFT (0.333), SEED (42), RATE (0.3), MAX_PASSES (4),
# SCENARIOS ("clean mixed throttle"), PASS_TIMEOUT (600 s: a pass still running then is
# stopped, exit 124, and counts as a pass), FAULT_SEED (1), BENCH_BUILD=0 (reuse the release build).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
USERS=${USERS:-1000} DRIFT=${DRIFT:-0.333} SEED=${SEED:-42} RATE=${RATE:-0.3}
MAX_PASSES=${MAX_PASSES:-4} PASS_TIMEOUT=${PASS_TIMEOUT:-600} SCENARIOS=${SCENARIOS:-clean mixed throttle}
MIXED=throttle,500,503,reset,applied-then-500,applied-then-reset,slow,truncated,non-xml

lib_init bench-faults
bench_t0=$(now_s)
bench_build
unset "${!IAM_WARDEN_@}"   # nothing from the caller's environment configures iam-warden

for sc in $SCENARIOS; do
    case $sc in
    clean) rate=0 kinds=throttle ;;
    mixed) rate=$RATE kinds=$MIXED ;;
    throttle) rate=$RATE kinds=throttle ;;
    *) die "unknown scenario $sc (use clean, mixed, throttle)" ;;
    esac
    dir="$WORK/$sc"
    mkdir -p "$dir"
    start_moto "moto-$sc" faketime
    moto=$MOTO_URL
    bench_config "$dir/iam-warden.toml"
    sed -i "s|^state_dir = .*|state_dir = \"$dir/state\"|" "$dir/iam-warden.toml"
    emulator_env "$moto"
    echo "$sc: seeding $USERS users (drift $DRIFT, seed $SEED)..." >&2
    "$VENV_PY" bench/seed.py --users "$USERS" --drift "$DRIFT" --seed "$SEED" --faketime-file "$FAKETIME_FILE" \
        --warden "$WARDEN" --warden-config "$dir/iam-warden.toml" >"$dir/seed.json"
    cat "$dir/seed.json" >&2
    start_fault_proxy "fault-$sc" "$moto" "$rate" "$kinds"
    echo "$FAULT_URL" >"$dir/proxy.url"
    echo "$rate $kinds" >"$dir/faults"
    for ((pass = 1; pass <= MAX_PASSES; pass++)); do
        emulator_env "$FAULT_URL"
        rc=0
        t0=$(now_s)
        timeout --signal=TERM "$PASS_TIMEOUT" env IAM_WARDEN_MODE=enforce "$WARDEN" --config "$dir/iam-warden.toml" enforce --once \
            --confirm-large-change --output json >"$dir/pass$pass.json" 2>"$dir/pass$pass.log" || rc=$?
        t1=$(now_s)
        echo "$rc $(elapsed "$t0" "$t1")" >"$dir/pass$pass.rc"
        echo "$sc: pass $pass exited $rc after $(elapsed "$t0" "$t1") s" >&2
        [ "$rc" != 3 ] || die "$sc: the blast-radius breaker tripped despite --confirm-large-change"
        # Converged? A plan straight against moto (no faults) plans nothing.
        emulator_env "$moto"
        prc=0
        "$WARDEN" --config "$dir/iam-warden.toml" plan --output json >"$dir/plan$pass.json" 2>"$dir/plan$pass.log" || prc=$?
        [ "$prc" = 0 ] || [ "$prc" = 1 ] || { cat "$dir/plan$pass.log" >&2; die "$sc: plan exited $prc"; }
        [ "$prc" = 1 ] || break
    done
    curl -fsS "$FAULT_URL/fault-proxy/stats" >"$dir/proxy-stats.json"
done

bench_s=$(elapsed "$bench_t0" "$(now_s)")
mkdir -p "$RESULTS"
"$VENV_PY" - "$WORK" "$(machine)" "$bench_s" "$(uptime)" "$SCENARIOS" >"$RESULTS/faults.json" <<'PY'
import collections, json, os, sys
work, machine, bench_s, load, scenarios = sys.argv[1:]

def plan_actions(path):
    p = json.load(open(path))["plan"]
    acts = p["account_actions"] + [a for u in p["users"] for a in u["actions"]]
    return dict(sorted(collections.Counter(a["action"] for a in acts).items()))

out = {"benchmark": "faults", "machine": machine, "load_at_end": load.strip(),
       "bench_seconds": round(float(bench_s), 1), "scenarios": {}}
for sc in scenarios.split():
    d = f"{work}/{sc}"
    rate, kinds = open(f"{d}/faults").read().split()
    passes = []
    n = 1
    while os.path.exists(f"{d}/pass{n}.rc"):
        rc, secs = open(f"{d}/pass{n}.rc").read().split()
        p = {"exit": int(rc), "seconds": float(secs), "left_after": plan_actions(f"{d}/plan{n}.json")}
        try:
            r = json.load(open(f"{d}/pass{n}.json"))
            p.update(aws_calls=r["aws_calls"], aws_write_calls=r["aws_write_calls"],
                     outcomes=dict(collections.Counter(
                         (x["outcome"] if isinstance(x["outcome"], str) else next(iter(x["outcome"])))
                         for x in r["results"])))
        except (ValueError, KeyError, OSError):
            p["error"] = open(f"{d}/pass{n}.log").read().strip().splitlines()[-1:]  # one line, no secrets
        passes.append(p)
        n += 1
    converged = not passes[-1]["left_after"]
    out["scenarios"][sc] = {
        "fault_rate": float(rate), "fault_kinds": kinds.split(","),
        "seed": json.load(open(f"{d}/seed.json")),
        "passes": passes,
        "converged": converged,
        "passes_to_converge": len(passes) if converged else None,
        "seconds_to_converge": round(sum(p["seconds"] for p in passes), 3) if converged else None,
        "proxy": json.load(open(f"{d}/proxy-stats.json")),
    }
clean = out["scenarios"].get("clean", {}).get("seconds_to_converge")
for sc, s in out["scenarios"].items():
    if clean and s["seconds_to_converge"]:
        s["times_clean"] = round(s["seconds_to_converge"] / clean, 2)
goals = {"mixed": (2, 5.0), "throttle": (None, 10.0)}
for sc, (max_passes, max_times) in goals.items():
    s = out["scenarios"].get(sc)
    if s and "times_clean" in s:
        s["goal"] = {"max_passes": max_passes, "max_times_clean": max_times,
                     "met": (max_passes is None or s["passes_to_converge"] <= max_passes) and s["times_clean"] <= max_times}
print(json.dumps(out, indent=2))
PY
"$VENV_PY" - "$RESULTS/faults.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
first = next(iter(r["scenarios"].values()))
d = first["seed"]["drift"]
print(f"enforce under faults, {first['seed']['users']} users, {d['users']} drifting, on {r['machine']} (bench {r['bench_seconds']:.0f} s)")
for sc, s in r["scenarios"].items():
    head = f"  {sc} ({s['fault_rate']:.0%} of {'/'.join(s['fault_kinds']) if s['fault_rate'] else 'nothing'}):"
    if s["converged"]:
        head += f" converged in {s['passes_to_converge']} passes, {s['seconds_to_converge']:.1f} s"
        if "times_clean" in s:
            head += f" = {s['times_clean']}x clean"
        if "goal" in s:
            g = s["goal"]
            head += f"; goal ({'<= %d passes, ' % g['max_passes'] if g['max_passes'] else ''}<= {g['max_times_clean']:g}x): {'met' if g['met'] else 'NOT met'}"
    else:
        head += f" NOT converged after {len(s['passes'])} passes"
    print(head)
    for i, p in enumerate(s["passes"], 1):
        print(f"     pass {i}: exit {p['exit']}, {p['seconds']:.1f} s, {p.get('aws_calls', '?')} calls, outcomes {p.get('outcomes', p.get('error'))}, left {p['left_after'] or 'nothing'}")
    print(f"     proxy: {s['proxy']['requests']} requests, faults {s['proxy']['faults']}")
print(f"  load at the end: {r['load_at_end']}")
print(f"  results: {sys.argv[1]}")
PY
