#!/usr/bin/env bash
# The iam-warden demo (`make demo`), against a local AWS emulator: nothing reaches AWS.
#
#  1. starts moto (from .venv) under libfaketime on a free loopback port and seeds a
#     realistic account of 34 IAM users (bench/seed.py --demo), backdating keys and
#     passwords by moving moto's clock;
#  2. iam-warden audit             -> exit 1: findings
#  3. iam-warden plan              -> exit 3: every change, and the blast-radius breaker
#  4. iam-warden enforce --once --confirm-large-change, mode enforce -> exit 0
#  5. the journal
#  6. a second enforce pass writes nothing; a second audit shows what is left for people
#  7. under pressure: drift made by hand, then enforce through fault-proxy answering 30 % of
#     IAM calls with throttling, 5xx, resets and applied-but-answer-lost: one pass converges,
#     nothing duplicated, and a plain pass after it has nothing to do
#  8. iam-warden run against the CloudTrail recorder: a user created through it is
#     brought onto the baseline; the journal, the metrics, SIGTERM -> exit 0
#
# Everything runs in a temporary directory that is removed on exit (KEEP=1 keeps it);
# every process started here stops with it. Run scripts/setup.sh first (make demo does).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
lib_init demo

if [ -t 1 ]; then
    B=$'\e[1m' D=$'\e[2m' R=$'\e[0m'
else
    B='' D='' R=''
fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$R"; }
note() { printf '%s%s%s\n' "$D" "$*" "$R"; }

# expect RC CMD...: run CMD, show its output, and stop the demo if it exits otherwise.
expect() {
    local want=$1 rc=0
    shift
    note "\$ ${*/#$WARDEN/iam-warden}"
    "$@" || rc=$?
    if [ "$rc" != "$want" ]; then
        die "\`${*/#$WARDEN/iam-warden}\` exited $rc, expected $want"
    fi
    note "(exit $rc)"
}

step "Building iam-warden (cargo build --locked --bins; the first build takes a few minutes)"
cargo build --locked --bins --quiet
WARDEN="$ROOT/target/debug/iam-warden"

step "Starting the AWS emulator (moto, under libfaketime) and seeding a demo account"
start_moto moto faketime
emulator_env "$MOTO_URL"
note "moto: $MOTO_URL (account 123456789012, static test credentials)"
seeded=$("$VENV_PY" bench/seed.py --demo --endpoint "$MOTO_URL" --faketime-file "$FAKETIME_FILE")
note "seeded: $seeded"

CONFIG="$WORK/iam-warden.toml"
STATE="$WORK/state"
cat >"$CONFIG" <<EOF
# Demo configuration: everything else is the default (config/iam-warden.toml).
mode = "dry-run"
state_dir = "$STATE"

[aws]
endpoint_url = "$MOTO_URL"

[baseline.source_ip_policy]
enabled = true
allowed_cidrs = ["192.0.2.0/24", "2001:db8::/32"]   # documentation networks

[exemptions]
users = ["break-glass"]
EOF
step "Demo configuration ($CONFIG)"
cat "$CONFIG"
export IAM_WARDEN_CONFIG="$CONFIG" IAM_WARDEN_LOG_FORMAT=text

step "1. Audit: one read-only pass over every user (exit 1 = findings)"
expect 1 "$WARDEN" audit

step "2. Plan: every change enforcement would make, and why (writes nothing)"
note "Exit 3: the pass would take access away from more than safety.max_users_changed (25)"
note "existing users, so the blast-radius breaker would hold them; enforce needs --confirm-large-change."
expect 3 "$WARDEN" plan

step "3. Enforce one pass (IAM_WARDEN_MODE=enforce, --confirm-large-change)"
note "Writes are paced adaptively: 20/s to start (controller.writes_per_second), halved whenever"
note "IAM answers with throttling, recovering when it stops."
IAM_WARDEN_MODE=enforce expect 0 "$WARDEN" enforce --once --confirm-large-change

step "4. The journal: one JSON line per write ($STATE/journal.jsonl)"
JOURNAL="$STATE/journal.jsonl"
"$VENV_PY" - "$JOURNAL" <<'EOF'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
c = collections.Counter((r["action"], r["outcome"]) for r in rows)
print(f"{len(rows)} entries:")
for (action, outcome), n in sorted(c.items()):
    print(f"  {n:4d}  {action:<24} {outcome}")
EOF
note "\$ tail -n 4 $JOURNAL"
tail -n 4 "$JOURNAL"

step "5. A second enforce pass: the account is on the baseline, nothing to write"
IAM_WARDEN_MODE=enforce expect 0 "$WARDEN" enforce --once

step "6. Audit again: what is left needs a person"
note "Not fixed automatically: console users without MFA (they are blocked by the"
note "deny-unless-MFA policy until they enrol), keys older than 90 days (rotation needs the"
note "key's owner), a second active key, keys on a console user; exempt users are untouched."
expect 1 "$WARDEN" audit

step "7. Under pressure: drift, then one enforce pass while 30 % of IAM calls fail"
note "Someone takes 8 users out of the baseline groups and detaches the MFA policy from its group."
"$VENV_PY" - "$MOTO_URL" <<'PY'
import sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1")
removed = 0
for g in ("iam-warden-require-mfa", "iam-warden-source-ip"):
    for u in iam.get_group(GroupName=g)["Users"][:4]:
        iam.remove_user_from_group(GroupName=g, UserName=u["UserName"])
        removed += 1
pol = [p for p in iam.list_attached_group_policies(GroupName="iam-warden-require-mfa")["AttachedPolicies"]]
for p in pol:
    iam.detach_group_policy(GroupName="iam-warden-require-mfa", PolicyArn=p["PolicyArn"])
print(f"removed {removed} memberships, detached {len(pol)} policy")
PY
note "fault-proxy (test support, src/bin/fault-proxy/) sits between iam-warden and the emulator:"
note "30 % of calls get throttling, a 500/503, a reset, or are applied and then answered 500."
# Not in $(...): start_tied keeps the proxy's stdin open in this shell, not a subshell.
start_tied faults "$ROOT/target/debug/fault-proxy" --upstream "$MOTO_URL" --seed 7 \
    --rate 0.3 --faults throttle,throttle-retry-after,500,503,reset,applied-then-500 \
    --retry-after 1 --exit-on-stdin-eof >"$WORK/faults.url"
FAULTS_URL=$(cat "$WORK/faults.url")
note "fault-proxy: $FAULTS_URL"
versions_before=$("$VENV_PY" - "$MOTO_URL" <<'PY'
import sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1")
print(sum(len(iam.list_policy_versions(PolicyArn=p["Arn"])["Versions"])
          for p in iam.list_policies(Scope="Local")["Policies"]))
PY
)
t0=$(now_s)
IAM_WARDEN_MODE=enforce IAM_WARDEN_AWS__ENDPOINT_URL="$FAULTS_URL" \
    expect 0 "$WARDEN" enforce --once --confirm-large-change
note "one pass in $(elapsed "$t0" "$(now_s)") s despite the faults; what the proxy did:"
"$VENV_PY" - "$FAULTS_URL" <<'PY'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/fault-proxy/stats", timeout=5))
print(f"  {s['requests']} requests, {sum(s['faults'].values())} faults: " +
      ", ".join(f"{k} {v}" for k, v in sorted(s["faults"].items()) if v))
PY
versions_after=$("$VENV_PY" - "$MOTO_URL" <<'PY'
import sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1")
print(sum(len(iam.list_policy_versions(PolicyArn=p["Arn"])["Versions"])
          for p in iam.list_policies(Scope="Local")["Policies"]))
PY
)
[ "$versions_before" = "$versions_after" ] ||
    die "policy versions went from $versions_before to $versions_after: a lost answer duplicated a write"
note "policy versions before and after: $versions_before and $versions_after (no write duplicated)"
note "A plain pass right after: the account is back on the baseline, nothing to write."
IAM_WARDEN_MODE=enforce expect 0 "$WARDEN" enforce --once

# --- daemon part ---
step "8. The daemon: iam-warden run, watching CloudTrail"
note "moto has no CloudTrail, so cloudtrail-recorder sits in front of it: it records each IAM"
note "write made through it as a CloudTrail record and answers LookupEvents. The daemon polls"
note "it every 2 s (default 60 s); resync is an hour away, so only the events can trigger it."
start_recorder "$MOTO_URL"
note "recorder: $RECORDER_URL"
PORT=$(free_port)
DAEMON_LOG="$WORK/daemon.log"
IAM_WARDEN_MODE=enforce \
    IAM_WARDEN_SERVER__LISTEN="127.0.0.1:$PORT" \
    IAM_WARDEN_SOURCES__CLOUDTRAIL__ENDPOINT_URL="$RECORDER_URL" \
    IAM_WARDEN_SOURCES__CLOUDTRAIL__POLL_INTERVAL=2s \
    IAM_WARDEN_RESYNC__INTERVAL=1h \
    "$WARDEN" run 2>"$DAEMON_LOG" &
DAEMON_PID=$!
LIB_PIDS+=("$DAEMON_PID")
note "\$ IAM_WARDEN_MODE=enforce iam-warden run   (pid $DAEMON_PID, http://127.0.0.1:$PORT)"

# http GET PATH: print "STATUS BODY" (python: no curl needed).
http() {
    "$VENV_PY" - "http://127.0.0.1:$PORT$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
except OSError:
    print(0)
PY
}
ready=""
for _ in $(seq 1 300); do
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$DAEMON_LOG" >&2; die "the daemon exited (log above)"; }
    ready=$(http /readyz)
    [ "${ready%% *}" = 200 ] && break
    sleep 0.2
done
[ "${ready%% *}" = 200 ] || { cat "$DAEMON_LOG" >&2; die "the daemon was not ready within 60 s"; }
note "/readyz: $ready (the first resync read the whole account; nothing needed a write)"

step "9. Someone creates a user with a console password and an access key"
note "As the role demo-admin, through the recorder (so CloudTrail sees it); iam-warden's own"
note "writes go straight to IAM and are skipped by the event source."
"$VENV_PY" - "$MOTO_URL" "$RECORDER_URL" <<'PY'
import sys, boto3
moto, recorder = sys.argv[1], sys.argv[2]
sts = boto3.client("sts", endpoint_url=moto, region_name="us-east-1")
c = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/demo-admin", RoleSessionName="alice")["Credentials"]
iam = boto3.client("iam", endpoint_url=recorder, region_name="us-east-1",
                   aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                   aws_session_token=c["SessionToken"])
iam.create_user(UserName="new-hire", Path="/engineering/")
iam.create_login_profile(UserName="new-hire", Password="Demo-only-Passw0rd!")
key = iam.create_access_key(UserName="new-hire")["AccessKey"]
print(f"created new-hire (console password, access key {key['AccessKeyId']}; the secret is not shown)")
PY
t0=$(now_s)
JOURNAL="$STATE/journal.jsonl"
before=$(wc -l <"$JOURNAL")
done_n=0
for _ in $(seq 1 300); do
    done_n=$(tail -n +"$((before + 1))" "$JOURNAL" | grep -c '"user":"new-hire"' || true)
    [ "$done_n" -ge 2 ] && break
    sleep 0.1
done
[ "$done_n" -ge 2 ] || { cat "$DAEMON_LOG" >&2; die "the daemon did not act on new-hire within 30 s"; }
note "the daemon brought new-hire onto the baseline $(elapsed "$t0" "$(now_s)") s after the last call"
note "(CloudTrail poll every 2 s; on real AWS, CloudTrail itself takes minutes, the SQS source seconds)"

step "10. The journal lines for new-hire"
tail -n +"$((before + 1))" "$JOURNAL" | grep '"user":"new-hire"'

step "11. What the daemon logged (stderr; JSON when not a terminal, text here)"
grep -E 'listening|running as|resync done| write|reconcile failed' "$DAEMON_LOG" | tail -n 8 || true

step "12. Its metrics (a few series of GET /metrics)"
note "(non-zero samples only; no user name, ARN or key id is ever a label)"
http /metrics | grep -E '^iam_warden_(events_total|writes_total|reconciles_total|event_to_enforcement_seconds_(sum|count)|users\{|ready |breaker_tripped|resyncs_total)' |
    grep -vE ' 0$' || true

step "13. SIGTERM: readiness off, sources stop, in-flight work drains, checkpoint saved, exit 0"
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
[ "$rc" = 0 ] || { tail -n 20 "$DAEMON_LOG" >&2; die "the daemon exited $rc on SIGTERM, expected 0"; }
note "(exit $rc; CloudTrail checkpoint saved in $STATE/cloudtrail-checkpoint.json: polled until"
note " $("$VENV_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["polled_until"])' "$STATE/cloudtrail-checkpoint.json"))"
# --- end of daemon part ---

step "Done"
note "Everything ran against moto on $MOTO_URL; the temporary directory is removed now"
note "(KEEP=1 make demo keeps it)."
