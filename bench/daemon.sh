#!/usr/bin/env bash
# Benchmark: the daemon, `iam-warden run` (release build), against moto on loopback.
#
# 1. SQS event -> enforcement latency. An SQS queue in moto (VisibilityTimeout 30 s); the
#    daemon in mode enforce with only the SQS source (CloudTrail off, resync 1h). For each
#    sample a console user `lat-<i>` (user + login profile) is created directly in moto,
#    then an EventBridge envelope of its CreateLoginProfile CloudTrail record is sent to the
#    queue. Latency = `time` of the daemon's last applied journal line for the user (taken
#    after the IAM write returned, src/apply.rs) - the moment SendMessage returned. SAMPLES
#    (100) sequential samples after WARMUP (3) unreported ones, at most one every SPACING
#    (0.5) s (below the default write limit of 5/s; with SPACING=0 the samples converge
#    on the limiter's 200 ms period once its bucket is empty), then a burst of BURST (50)
#    messages sent at once (users created first; SendMessageBatch, 10 per call) with the
#    default write limiter (5 writes/s, burst 10: the last of 50 writes cannot start before
#    ~8 s), then the same burst against a second daemon (on a queue of its own) whose
#    limiter is out of the way (100 writes/s, burst 1000).
#    The daemon's own iam_warden_event_to_enforcement_seconds histogram is scraped as a
#    cross-check (from="received": SQS receive -> reconcile end; from="event_time": the
#    record's eventTime, whole seconds, -> reconcile end).
# 1c. Exposed-key quarantine: event -> key inactive. A third daemon like the first (default
#    write limiter, which a quarantine does not wait for) on a queue of its own. Q_SAMPLES
#    (50) sequential samples after WARMUP ones: a user with one access key is created, then
#    an AWS Health AWS_RISK_CREDENTIALS_EXPOSED event for the key (EventBridge envelope) is
#    sent; latency = `time` of the daemon's applied quarantine_access_key journal line (taken
#    after UpdateAccessKey returned) - the moment SendMessage returned. Then a burst of
#    Q_BURST (50) events at once. Every key is checked Inactive in IAM afterwards.
# 2. CloudTrail LookupEvents latency: the cloudtrail-recorder (release) in front of moto,
#    the daemon with only the CloudTrail source pointed at it, poll interval CT_POLL (5s;
#    the default is 60s). An admin (AssumeRole bench-admin: not the daemon's identity, whose
#    own writes are skipped) creates CT_SAMPLES (20) console users through the recorder at
#    random moments within the poll interval. Latency = applied journal time - the moment
#    CreateLoginProfile returned; bound = poll interval + 1 s (the poller sleeps the interval
#    after each poll; the reconcile takes well under a second).
# 3. Idle CPU: the daemon with defaults (CloudTrail via the recorder every 60 s, resync
#    10m, no SQS), once ready and drained: utime+stime from /proc/PID/stat over
#    IDLE_SECONDS (60).
# 4. Memory: USERS_MEM (10000) users seeded (bench/seed.py --drift 0.0, not brought onto
#    the baseline, so in dry-run the blast-radius breaker holds every user write back and
#    the daemon only resyncs); the daemon in dry-run, resync every 10s (the shortest allowed),
#    CloudTrail via the recorder and SQS on; VmRSS/VmHWM after the first resync (ready) and
#    after MEM_RESYNCS (6) resyncs: VmHWM then is the highest peak of all of them.
#    moto answers GetAccountAuthorizationDetails in one page whatever MaxItems says (3.8 MB
#    of XML for 10,000 users) where AWS pages by the 1,000 asked for, so the transient peak
#    of a resync is somewhat higher here than against AWS.
#
# Every daemon is stopped with SIGTERM; its exit code (must be 0) and shutdown time are
# reported. Safety: phases 1 and 2 change 170+ users in one breaker window, so the
# blast-radius breaker is opened wide there (IAM_WARDEN_SAFETY__MAX_USERS_CHANGED*).
# Results: $RESULTS/daemon.json and a summary on stdout.
# Environment: SAMPLES (100), WARMUP (3), SPACING (0.5), BURST (50), Q_SAMPLES (50), Q_BURST (50),
# CT_SAMPLES (20), CT_POLL (5),
# IDLE_SECONDS (60), USERS_MEM (10000), MEM_RESYNCS (6).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
SAMPLES=${SAMPLES:-100} WARMUP=${WARMUP:-3} BURST=${BURST:-50} SPACING=${SPACING:-0.5}
Q_SAMPLES=${Q_SAMPLES:-50} Q_BURST=${Q_BURST:-50}
CT_SAMPLES=${CT_SAMPLES:-20} CT_POLL=${CT_POLL:-5}
IDLE_SECONDS=${IDLE_SECONDS:-60} USERS_MEM=${USERS_MEM:-10000} MEM_RESYNCS=${MEM_RESYNCS:-6}
BENCH_PY="$ROOT/bench/daemon.py"

lib_init bench-daemon
bench_t0=$(now_s)
bench_build
RECORDER_BIN="$ROOT/target/release/cloudtrail-recorder"
start_moto moto
start_recorder "$MOTO_URL" "$RECORDER_BIN"
emulator_env "$MOTO_URL"
unset "${!IAM_WARDEN_@}"   # nothing from the caller's environment configures the daemons

WIDE_BREAKER=(IAM_WARDEN_SAFETY__MAX_USERS_CHANGED=100000 IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT=100)
declare -A READY

# ---- 1. SQS -------------------------------------------------------------------------------
# One queue per daemon: a stopped daemon abandons its long poll, and moto keeps that
# ReceiveMessage waiting (up to 20 s): it takes the next message sent to the queue, which
# nobody receives, and which comes back only after the VisibilityTimeout (30 s).
new_queue() { "$VENV_PY" "$BENCH_PY" queue --endpoint "$MOTO_URL" --name "$1" --visibility 30; }
SQS_ENV=(IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED=false IAM_WARDEN_RESYNC__INTERVAL=1h "${WIDE_BREAKER[@]}")
echo "1. SQS latency: $SAMPLES sequential samples, then a burst of $BURST..." >&2
QUEUE_URL=$(new_queue iam-events)
start_daemon sqs "${SQS_ENV[@]}" IAM_WARDEN_SOURCES__SQS__QUEUE_URL="$QUEUE_URL"
READY[sqs]=$READY_S
"$VENV_PY" "$BENCH_PY" sqs --endpoint "$MOTO_URL" --queue-url "$QUEUE_URL" --url "$DAEMON_URL" \
    --pid "$DAEMON_PID" --journal "$DAEMON_DIR/state/journal.jsonl" --samples "$SAMPLES" \
    --warmup "$WARMUP" --burst "$BURST" --spacing "$SPACING" --out "$WORK/sqs.json"
stop_daemon sqs

echo "1b. SQS burst of $BURST with the write limiter out of the way..." >&2
QUEUE_URL=$(new_queue iam-events-unthrottled)
start_daemon sqs-unthrottled "${SQS_ENV[@]}" IAM_WARDEN_SOURCES__SQS__QUEUE_URL="$QUEUE_URL" \
    IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND=100 IAM_WARDEN_CONTROLLER__WRITE_BURST=1000
READY[sqs-unthrottled]=$READY_S
"$VENV_PY" "$BENCH_PY" sqs --endpoint "$MOTO_URL" --queue-url "$QUEUE_URL" --url "$DAEMON_URL" \
    --pid "$DAEMON_PID" --journal "$DAEMON_DIR/state/journal.jsonl" --samples 0 --warmup 0 \
    --burst "$BURST" --prefix fast- --out "$WORK/sqs-unthrottled.json"
stop_daemon sqs-unthrottled

echo "1c. exposed-key quarantine: $Q_SAMPLES sequential AWS Health events, then a burst of $Q_BURST..." >&2
QUEUE_URL=$(new_queue iam-events-quarantine)
start_daemon quarantine "${SQS_ENV[@]}" IAM_WARDEN_SOURCES__SQS__QUEUE_URL="$QUEUE_URL"
READY[quarantine]=$READY_S
"$VENV_PY" "$BENCH_PY" quarantine --endpoint "$MOTO_URL" --queue-url "$QUEUE_URL" --url "$DAEMON_URL" \
    --pid "$DAEMON_PID" --journal "$DAEMON_DIR/state/journal.jsonl" --samples "$Q_SAMPLES" \
    --warmup "$WARMUP" --burst "$Q_BURST" --out "$WORK/quarantine.json"
stop_daemon quarantine

# ---- 2. CloudTrail LookupEvents ------------------------------------------------------------
echo "2. CloudTrail latency: $CT_SAMPLES samples, poll interval ${CT_POLL}s..." >&2
start_daemon cloudtrail IAM_WARDEN_SOURCES__CLOUDTRAIL__ENDPOINT_URL="$RECORDER_URL" \
    IAM_WARDEN_SOURCES__CLOUDTRAIL__POLL_INTERVAL="${CT_POLL}s" IAM_WARDEN_RESYNC__INTERVAL=1h \
    "${WIDE_BREAKER[@]}"
READY[cloudtrail]=$READY_S
"$VENV_PY" "$BENCH_PY" cloudtrail --endpoint "$MOTO_URL" --recorder "$RECORDER_URL" --url "$DAEMON_URL" \
    --pid "$DAEMON_PID" --journal "$DAEMON_DIR/state/journal.jsonl" --samples "$CT_SAMPLES" \
    --poll-interval "$CT_POLL" --out "$WORK/cloudtrail.json"
stop_daemon cloudtrail

# ---- 3. idle CPU ---------------------------------------------------------------------------
echo "3. idle CPU over ${IDLE_SECONDS}s (defaults: CloudTrail every 60s via the recorder, resync 10m)..." >&2
start_daemon idle IAM_WARDEN_SOURCES__CLOUDTRAIL__ENDPOINT_URL="$RECORDER_URL"
READY[idle]=$READY_S
"$VENV_PY" "$BENCH_PY" idle --url "$DAEMON_URL" --pid "$DAEMON_PID" --seconds "$IDLE_SECONDS" \
    --out "$WORK/idle.json"
stop_daemon idle

# ---- 4. memory -----------------------------------------------------------------------------
echo "4. memory: seeding $USERS_MEM users..." >&2
"$VENV_PY" bench/seed.py --endpoint "$MOTO_URL" --users "$USERS_MEM" --drift 0.0 >"$WORK/seed.json"
cat "$WORK/seed.json" >&2
QUEUE_URL=$(new_queue iam-events-memory)
start_daemon memory IAM_WARDEN_MODE=dry-run IAM_WARDEN_RESYNC__INTERVAL=10s \
    IAM_WARDEN_SOURCES__CLOUDTRAIL__ENDPOINT_URL="$RECORDER_URL" \
    IAM_WARDEN_SOURCES__SQS__QUEUE_URL="$QUEUE_URL"
READY[memory]=$READY_S
"$VENV_PY" "$BENCH_PY" memory --url "$DAEMON_URL" --pid "$DAEMON_PID" --resyncs "$MEM_RESYNCS" --timeout 1200 \
    --out "$WORK/memory.json"
stop_daemon memory

# ---- results -------------------------------------------------------------------------------
bench_s=$(elapsed "$bench_t0" "$(now_s)")
extra=$("$VENV_PY" - "$(machine)" "$bench_s" "$SAMPLES" "$WARMUP" "$BURST" "$CT_SAMPLES" "$CT_POLL" \
    "$IDLE_SECONDS" "$USERS_MEM" "$WORK/seed.json" "$WORK" \
    "$(for k in "${!SHUTDOWN_S[@]}"; do echo "$k ${SHUTDOWN_S[$k]} ${SHUTDOWN_RC[$k]} ${READY[$k]}"; done)" <<'PY'
import json, sys
from datetime import datetime
(machine, bench_s, samples, warmup, burst, ct_samples, ct_poll, idle_s, users_mem, seed,
 work, stops) = sys.argv[1:]

def log_shutdown(name):
    """Seconds from the daemon's "signal received" log line to its "stopped" line."""
    t = {}
    for line in open(f"{work}/{name}/daemon.log"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        msg = e.get("message", "")
        key = "signal" if msg.startswith("signal received") else "stopped" if msg == "stopped" else None
        if key and key not in t:
            t[key] = datetime.fromisoformat(e["timestamp"][:26].rstrip("Z") + "+00:00")
    if len(t) == 2:
        return round((t["stopped"] - t["signal"]).total_seconds(), 4)
    return None

shutdown, ready = {}, {}
for line in stops.splitlines():
    name, secs, rc, ready_s = line.split()
    shutdown[name] = {"seconds": float(secs), "rc": int(rc), "in_log_seconds": log_shutdown(name)}
    ready[name] = float(ready_s)
print(json.dumps({
    "benchmark": "daemon",
    "machine": machine,
    "bench_seconds": round(float(bench_s), 1),
    "parameters": {"samples": int(samples), "warmup": int(warmup), "burst": int(burst),
                   "cloudtrail_samples": int(ct_samples), "cloudtrail_poll_seconds": float(ct_poll),
                   "idle_seconds": float(idle_s), "users_mem": int(users_mem)},
    "seed": json.load(open(seed)),
    "ready_seconds": ready,
    "shutdown": shutdown,
}))
PY
)
mkdir -p "$RESULTS"
"$VENV_PY" "$BENCH_PY" report --results "$RESULTS/daemon.json" --extra "$extra" \
    --part sqs="$WORK/sqs.json" --part sqs_unthrottled="$WORK/sqs-unthrottled.json" \
    --part quarantine="$WORK/quarantine.json" \
    --part cloudtrail="$WORK/cloudtrail.json" --part idle="$WORK/idle.json" --part memory="$WORK/memory.json"
"$VENV_PY" "$BENCH_PY" summary --results "$RESULTS/daemon.json"
rc=0
for k in "${!SHUTDOWN_RC[@]}"; do
    [ "${SHUTDOWN_RC[$k]}" = 0 ] || { echo "daemon $k exited ${SHUTDOWN_RC[$k]} on SIGTERM" >&2; rc=1; }
done
exit "$rc"
