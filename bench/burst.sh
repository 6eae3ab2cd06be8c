#!/usr/bin/env bash
# Benchmark: the daemon under a burst of SQS events on a large account.
#
# moto on a free port; bench/seed.py --users USERS (1,000) --drift 0, brought onto the
# baseline by `iam-warden enforce` (the bench configuration of bench/lib.sh: the MFA group
# for console users, the source-IP group for everyone). Then `iam-warden run` (release, mode
# enforce, that configuration, only the SQS source, resync 1h, default write and read
# limits and safety limits) and, once it is ready and idle, bench/daemon.py burst: COUNT
# (200) new console users (user + login profile) are created directly in moto, then their
# CreateLoginProfile events go to the queue within a second (SendMessageBatch, 10 a call,
# 4 calls at once). Each user is on the baseline when the daemon's journal has an applied
# add_user_to_group for both baseline groups. Measured: per-user latency (the user's last
# applied journal time - the moment its SendMessageBatch returned; p50/p99/max), the time
# from the first send to the last user's last write, the writes, and the goal
#     last user on the baseline <= writes / writes_per_second + 2 s
# (writes_per_second: the daemon's write ceiling, the default unless WRITES_PER_SECOND).
# Then the same with the fault-injecting proxy between the daemon and moto answering
# THROTTLE_RATE (30 %) of the IAM calls with a throttling error (a second daemon with its
# own queue; COUNT more users). Afterwards `iam-warden plan` over the whole account must
# plan nothing for any burst user.
# Results: $RESULTS/burst.json and a summary on stdout.
# Environment: USERS (1000), COUNT (200), THROTTLE_RATE (0.3; 0 skips that part),
# BURST_TIMEOUT (300 s: users not on the baseline by then are reported, and the script fails), WRITES_PER_SECOND (unset:
# the default), BENCH_BUILD=0 (reuse the release binary).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
USERS=${USERS:-1000} COUNT=${COUNT:-200} THROTTLE_RATE=${THROTTLE_RATE:-0.3} BURST_TIMEOUT=${BURST_TIMEOUT:-300}

lib_init bench-burst
bench_t0=$(now_s)
bench_build
start_moto moto
emulator_env "$MOTO_URL"
unset "${!IAM_WARDEN_@}"   # nothing from the caller's environment configures the daemons
CONFIG="$WORK/iam-warden.toml"
bench_config "$CONFIG"
echo "seeding $USERS users (on the baseline)..." >&2
"$VENV_PY" bench/seed.py --users "$USERS" --drift 0 --warden "$WARDEN" --warden-config "$CONFIG" >"$WORK/seed.json"
cat "$WORK/seed.json" >&2

# The write ceiling the daemon runs with (the configured default unless overridden).
rate=${WRITES_PER_SECOND:-$("$WARDEN" --config "$CONFIG" check-config 2>/dev/null |
    sed -n 's/^writes_per_second *= *\([0-9.]*\).*/\1/p' | head -n1)}
[ -n "$rate" ] || die "could not read controller.writes_per_second from iam-warden check-config"
new_queue() { "$VENV_PY" "$BENCH_PY" queue --endpoint "$MOTO_URL" --name "$1" --visibility 30; }
DAEMON_ENV=(IAM_WARDEN_CONFIG="$CONFIG" IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED=false
    IAM_WARDEN_RESYNC__INTERVAL=1h IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND="$rate")

# burst NAME PREFIX [VAR=VALUE...]: a daemon with its own queue, the burst, the daemon stopped.
burst() {
    local name=$1 prefix=$2 queue
    shift 2
    queue=$(new_queue "events-$name")
    start_daemon "$name" "${DAEMON_ENV[@]}" IAM_WARDEN_SOURCES__SQS__QUEUE_URL="$queue" "$@"
    "$VENV_PY" "$BENCH_PY" burst --endpoint "$MOTO_URL" --queue-url "$queue" --url "$DAEMON_URL" \
        --pid "$DAEMON_PID" --journal "$DAEMON_DIR/state/journal.jsonl" --count "$COUNT" \
        --prefix "$prefix" --groups iam-warden-require-mfa iam-warden-source-ip \
        --writes-per-second "$rate" --timeout "$BURST_TIMEOUT" --out "$WORK/$name.json"
    stop_daemon "$name"
}

echo "1. burst of $COUNT, no faults (write ceiling $rate/s)..." >&2
burst clean clean-

if [ "$THROTTLE_RATE" != 0 ]; then
    echo "2. burst of $COUNT, $THROTTLE_RATE of the IAM calls throttled..." >&2
    start_fault_proxy faults "$MOTO_URL" "$THROTTLE_RATE" throttle
    burst throttled thr- AWS_ENDPOINT_URL="$FAULT_URL" IAM_WARDEN_AWS__ENDPOINT_URL="$FAULT_URL"
fi

echo "plan over the whole account..." >&2
rc=0
"$WARDEN" --config "$CONFIG" plan --output json >"$WORK/plan.json" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 1 ] || [ "$rc" = 3 ] || die "plan exited $rc"

bench_s=$(elapsed "$bench_t0" "$(now_s)")
mkdir -p "$RESULTS"
"$VENV_PY" - "$WORK" "$(machine)" "$bench_s" "$THROTTLE_RATE" "$(uptime)" "${SHUTDOWN_RC[*]}" \
    >"$RESULTS/burst.json" <<'PY'
import json, sys
work, machine, bench_s, throttle, load, rcs = sys.argv[1:]
plan = json.load(open(f"{work}/plan.json"))["plan"]
left = {u["verdict"]["user"]: [a["action"] for a in u["actions"]] for u in plan["users"] if u["actions"]}
burst_left = {k: v for k, v in left.items() if k.startswith(("clean-burst-", "thr-burst-"))}
print(json.dumps({
    "benchmark": "burst",
    "machine": machine,
    "load_at_end": load.strip(),
    "bench_seconds": round(float(bench_s), 1),
    "seed": json.load(open(f"{work}/seed.json")),
    "clean": json.load(open(f"{work}/clean.json")),
    "throttled": dict(json.load(open(f"{work}/throttled.json")), throttle_rate=float(throttle)) if float(throttle) else None,
    "plan_after": {"users_with_actions": len(left), "burst_users_with_actions": burst_left},
    "daemon_exit_codes": [int(x) for x in rcs.split()],
}, indent=2))
PY
"$VENV_PY" - "$RESULTS/burst.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"burst of {r['clean']['users']} new console users on SQS, {r['seed']['users']}-user account, on {r['machine']}")
for k in ("clean", "throttled"):
    b = r[k]
    if not b:
        continue
    label = f"{b['throttle_rate']:.0%} throttled" if k == "throttled" else "no faults"
    l = b["latency"]
    if b["not_on_baseline"]:
        print(f"  {label}: {len(b['not_on_baseline'])} users NOT on the baseline in time, e.g. {b['not_on_baseline'][:3]}")
    last = f"{b['last_on_baseline_seconds']:.2f} s" if b["last_on_baseline_seconds"] is not None else "never"
    print(f"  {label}: sent in {b['send_seconds']:.2f} s; event -> on baseline p50 {l.get('p50', 0):.2f} s, p99 {l.get('p99', 0):.2f} s, "
          f"max {l.get('max', 0):.2f} s (n={l['count']}); last user after {last} "
          f"(goal {b['goal_seconds']:.1f} s = {b['goal_formula']}: {'met' if b['within_goal'] else 'NOT met'})")
    print(f"     {b['writes']} writes, {b['aws_calls_total']} AWS calls, throttles {b['aws_throttles'] or 0}; journal {b['journal_by_action']}")
p = r["plan_after"]
print(f"  plan afterwards: {p['users_with_actions']} users with actions, burst users among them: {len(p['burst_users_with_actions'])}")
print(f"  daemon exit codes on SIGTERM: {r['daemon_exit_codes']}; load at the end: {r['load_at_end']}")
print(f"  results: {sys.argv[1]}")
PY
[ -z "$(py 'd["plan_after"]["burst_users_with_actions"]' "$RESULTS/burst.json" | tr -d '{}')" ] ||
    die "burst users are not on the baseline (see plan_after in $RESULTS/burst.json)"
