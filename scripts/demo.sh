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
#  8. key rotation of a 100-day-old key in use: plan (due date), enforce (new key stored in
#     Secrets Manager, read back and proven with sts; the old key drains), the consumer
#     switches, the drain proof holds the old key, a day later (IAM_WARDEN_TEST_CLOCK) it
#     is deactivated; the keys, the rotation tag and the journal
#  9. iam-warden run against the CloudTrail recorder and an SQS queue: a user created through
#     the recorder is brought onto the baseline; an AWS Health AWS_RISK_CREDENTIALS_EXPOSED
#     event on the queue deactivates exactly that key at once; the journal, the metrics,
#     SIGTERM -> exit 0
# 10. one daemon for the three accounts of 6d on one SQS queue: each account's first
#     resync, an event of one account enforced there, one of an account out of scope skipped
#
# Owner notices go to scripts/webhook-receiver.py, which checks their signature and prints
# each one (enforce and the daemon are configured with it).
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

# run_to RC OUT CMD...: like expect, but stdout goes to OUT (shown filtered by the caller);
# stderr (warnings, errors) is shown as it comes.
run_to() {
    local want=$1 out=$2 rc=0
    shift 2
    note "\$ ${*/#$WARDEN/iam-warden}"
    "$@" >"$out" || rc=$?
    if [ "$rc" != "$want" ]; then
        cat "$out"
        die "\`${*/#$WARDEN/iam-warden}\` exited $rc, expected $want"
    fi
}

# only_user USER FILE: a plan/enforce text report cut down to its header, USER's changes
# and findings, USER's next due step and the call count.
only_user() {
    awk -v u="$1" '
        NR == 1 || /^[0-9]+ changes for / || /AWS API calls/ { print; next }
        $0 == u ":" { inb = 1; print; next }
        inb && /^  / { print; next }
        { inb = 0 }
        index($0, "  " u ": ") == 1 { print }' "$2"
}

# The webhook receiver's lines after line FROM (line 1 is its URL), or a note that none came.
hook_lines() { wc -l <"$HOOK_OUT"; }

# create_queue NAME: a moto SQS queue; prints its URL.
create_queue() {
    "$VENV_PY" -c 'import sys, boto3
print(boto3.client("sqs", endpoint_url=sys.argv[1], region_name="us-east-1").create_queue(
    QueueName=sys.argv[2])["QueueUrl"])' "$MOTO_URL" "$1"
}

# stop_daemon LOG: SIGTERM to $DAEMON_PID; the demo stops unless it exits 0 (LOG's tail shown).
stop_daemon() {
    kill -TERM "$DAEMON_PID"
    rc=0
    wait "$DAEMON_PID" || rc=$?
    [ "$rc" = 0 ] || { tail -n 20 "$1" >&2; die "the daemon exited $rc on SIGTERM, expected 0"; }
}
# show_notices FROM [EVENT]: with EVENT, that notice must arrive (polled for up to 10 s:
# delivery is in the background) or the demo stops.
show_notices() {
    local from=$1 event=${2:-} n i
    if [ -n "$event" ]; then
        for i in $(seq 1 100); do
            tail -n +"$((from + 1))" "$HOOK_OUT" | grep -q "event=$event " && break
            [ "$i" -lt 100 ] || die "no $event notice reached the webhook (see $HOOK_OUT)"
            sleep 0.1
        done
    fi
    n=$(($(hook_lines) - from))
    if [ "$n" -le 0 ]; then
        note "(no owner notice reached the webhook)"
        return 0
    fi
    note "the webhook received $n notice(s):"
    tail -n +"$((from + 1))" "$HOOK_OUT" | head -n 8 | sed 's/^/  /'
    [ "$n" -le 8 ] || note "  ... and $((n - 8)) more"
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

# The owners' webhook: scripts/webhook-receiver.py checks each notice's
# X-Iam-Warden-Signature (HMAC-SHA256 keyed with this file) and prints one line per notice.
HOOK_KEY="$WORK/webhook-key"
(umask 077 && "$VENV_PY" -c 'import secrets; print(secrets.token_hex(32))' >"$HOOK_KEY")
# Not in $(...): start_tied keeps the receiver's stdin open in this shell, not a subshell.
start_tied webhook "$VENV_PY" "$ROOT/scripts/webhook-receiver.py" --key-file "$HOOK_KEY" >"$WORK/webhook.url"
HOOK_URL=$(cat "$WORK/webhook.url")
HOOK_OUT="$WORK/webhook.out" # the receiver's stdout: its URL, then one line per request
note "webhook receiver: $HOOK_URL (scripts/webhook-receiver.py)"

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

[notifications]
default_owner = "security@example.com"
webhook_url = "$HOOK_URL"
webhook_secret_file = "$HOOK_KEY"
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
note "Key rotation is on by default: keys past 90 days in use (dave+admin, svc-backup) get a new"
note "key stored in Secrets Manager, and the old key drains (step 8 follows one rotation through)."
hook0=$(hook_lines)
IAM_WARDEN_MODE=enforce expect 0 "$WARDEN" enforce --once --confirm-large-change
show_notices "$hook0" key-rotated

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
note "deny-unless-MFA policy until they enrol), old keys still draining to their new key (cut"
note "off only once the consumer has switched), a user with two keys in use (two-active-keys;"
note "no room for a new key, so plan and enforce report rotation-stuck), keys on a console"
note "user; exempt users are untouched."
expect 1 "$WARDEN" audit

step "6a. The same audit as CIS AWS Foundations v5.0 section 1: each control, and what fails it"
note "moto's credential report has no root row, so the root controls (1.3-1.6) are \"cannot"
note "check\", never a pass; 1.1, 1.2 and 1.17 are manual (a person checks them)."
run_to 1 "$WORK/cis.txt" "$WARDEN" audit --benchmark cis-5.0
grep -E '^ *1\.[0-9]+ |pass|fail' "$WORK/cis.txt" | head -n 30

step "6b. Findings into Security Hub (ASFF), where the security team triages"
"$VENV_PY" - "$MOTO_URL" <<'PY'
import sys, boto3
boto3.client("securityhub", endpoint_url=sys.argv[1], region_name="us-east-1").enable_security_hub()
PY
note "Security Hub enabled in the emulated account; one finding per (check, resource), with"
note "its CIS control in Compliance.RelatedRequirements; findings that went away are archived."
IAM_WARDEN_EXPORT__SECURITYHUB__ENABLED=true run_to 1 "$WORK/audit-export.txt" "$WARDEN" audit --export
"$VENV_PY" - "$MOTO_URL" <<'PY'
import collections, sys, boto3
hub = boto3.client("securityhub", endpoint_url=sys.argv[1], region_name="us-east-1")
found = [f for page in hub.get_paginator("get_findings").paginate() for f in page["Findings"]
         if f["GeneratorId"].startswith("iam-warden/")]
by = collections.Counter(f["GeneratorId"].split("/", 1)[1] for f in found)
print(f"{len(found)} iam-warden findings in Security Hub:")
for check, n in sorted(by.items()):
    print(f"  {n:3d}  {check}")
if not found:
    sys.exit("no findings reached Security Hub")
PY

step "6c. Before switching the policies on: what would they have denied? (impact --from)"
note "A copy of the account's CloudTrail files (as a trail delivers them to S3, .json.gz) is"
note "replayed against the MFA and source-IP policies as configured."
TRAIL="$WORK/trail"
mkdir -p "$TRAIL"
"$VENV_PY" - "$TRAIL" <<'PY'
import datetime, gzip, json, sys
acct = "123456789012"
now = datetime.datetime.now(datetime.timezone.utc)
def rec(i, user, ip, action="DescribeInstances", source="ec2.amazonaws.com", console=None, vpce=None, invoked=None):
    key = ("ASIA" if console is not None else "AKIA") + "DEMODEMODEMO%04d" % (i % 10000)
    ident = {"type": "IAMUser", "userName": user, "accountId": acct,
             "arn": f"arn:aws:iam::{acct}:user/{user}", "accessKeyId": key}
    if console is not None:
        ident["sessionContext"] = {"attributes": {"mfaAuthenticated": "true" if console else "false"}}
    if invoked:
        ident["invokedBy"] = invoked
    r = {"eventVersion": "1.09", "eventTime": (now - datetime.timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "eventSource": source, "eventName": action, "eventType": "AwsApiCall", "awsRegion": "us-east-1",
         "sourceIPAddress": invoked or ip, "recipientAccountId": acct, "userIdentity": ident}
    if vpce:
        r["vpcEndpointId"] = vpce
    return r
records = []
for i in range(6):   # a console user with MFA, from the office network: allowed
    records.append(rec(i, "alice.nguyen@example.com", "192.0.2.15", console=True))
for i in range(3):   # the same user from a hotel: outside allowed_cidrs
    records.append(rec(10 + i, "alice.nguyen@example.com", "203.0.113.40", console=True))
for i in range(4):   # a console user without MFA: denied by the MFA policy
    records.append(rec(20 + i, "carol.diaz@example.com", "192.0.2.16", console=False))
for i in range(5):   # a pipeline from a CI runner network nobody listed
    records.append(rec(30 + i, "svc-ci-deployer", "198.51.100.%d" % (20 + i), "PutObject", "s3.amazonaws.com"))
for i in range(3):   # through a VPC endpoint: no aws:SourceIp, the deny applies
    records.append(rec(40 + i, "svc-metrics-exporter", "10.0.1.7", "PutMetricData", "monitoring.amazonaws.com", vpce="vpce-0a1b2c3d4e5f60718"))
for i in range(2):   # AWS acting for the user: not judged by aws:SourceIp
    records.append(rec(50 + i, "svc-log-shipper", "", "PutObject", "s3.amazonaws.com", invoked="cloudformation.amazonaws.com"))
with gzip.open(f"{sys.argv[1]}/{acct}_CloudTrail_us-east-1_demo.json.gz", "wt") as f:
    json.dump({"Records": records}, f)
print(f"{len(records)} records written")
PY
expect 1 "$WARDEN" impact --from "$TRAIL" --suggest-networks

step "6d. Several accounts: one audit over a list of accounts (accounts.source = \"list\")"
note "Two more emulated accounts, each read through its role iam-warden (STS AssumeRole); the"
note "demo account itself with iam-warden's own credentials. One text section per account."
"$VENV_PY" - "$MOTO_URL" <<'PY'
import sys, boto3
ep = sys.argv[1]
sts = boto3.client("sts", endpoint_url=ep, region_name="us-east-1")
for acct, users in (("111122223333", 3), ("444455556666", 2)):
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{acct}:role/iam-warden", RoleSessionName="demo-seed")["Credentials"]
    iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1", aws_access_key_id=c["AccessKeyId"],
                       aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
    for i in range(users):
        iam.create_user(UserName=f"team{i}")
        iam.create_login_profile(UserName=f"team{i}", Password="Correct-Horse-Battery-9!")
    print(f"account {acct}: {users} console users without MFA")
PY
ORG_CONFIG="$WORK/iam-warden-accounts.toml"
cat "$CONFIG" >"$ORG_CONFIG"
cat >>"$ORG_CONFIG" <<'EOF'

[accounts]
source = "list"

[[accounts.list]]
id = "123456789012"

[[accounts.list]]
id = "111122223333"

[[accounts.list]]
id = "444455556666"
EOF
note "\$ tail -n 11 $ORG_CONFIG"
tail -n 11 "$ORG_CONFIG"
IAM_WARDEN_CONFIG="$ORG_CONFIG" run_to 1 "$WORK/accounts.txt" "$WARDEN" audit
grep -E '^iam-warden audit of [0-9]+ accounts|audited, .* not readable|^=== |^[0-9]+ users: ' "$WORK/accounts.txt"

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

# --- key rotation ---
# show_keys USER: USER's access keys (id, status, created, last used) and rotation tags.
show_keys() {
    "$VENV_PY" - "$MOTO_URL" "$1" <<'PY'
import sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1")
user = sys.argv[2]
keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
for k in sorted(keys, key=lambda k: k["CreateDate"]):
    used = iam.get_access_key_last_used(AccessKeyId=k["AccessKeyId"])["AccessKeyLastUsed"]
    last = f"{used['LastUsedDate']:%Y-%m-%d %H:%M}" if "LastUsedDate" in used else "never"
    print(f"  {k['AccessKeyId']}  {k['Status']:<8}  created {k['CreateDate']:%Y-%m-%d %H:%M}  last used {last}")
for t in iam.list_user_tags(UserName=user)["Tags"]:
    if t["Key"].startswith("iam-warden/rotation/"):
        print(f"  tag {t['Key']} = {t['Value']}")
PY
}

step "8. Key rotation: a 100-day-old key in use, rotated without cutting off its consumer"
note "svc-billing (on the baseline, owner billing-team@example.com) got its key 100 days ago;"
note "its consumer last called with it 3 hours ago (moto's clock moved back with faketime)."
"$VENV_PY" - "$MOTO_URL" "$FAKETIME_FILE" <<'PY'
import os, sys, boto3
moto, ft = sys.argv[1], sys.argv[2]

def clock(offset):  # moto's clock offset: libfaketime re-reads this file on every call
    with open(ft + ".tmp", "w") as f:
        f.write(offset + "\n")
    os.replace(ft + ".tmp", ft)

iam = boto3.client("iam", endpoint_url=moto, region_name="us-east-1")
try:
    clock("-100d")
    iam.create_user(UserName="svc-billing", Path="/svc/", Tags=[
        {"Key": "iam-warden/access", "Value": "programmatic"},
        {"Key": "iam-warden/owner", "Value": "billing-team@example.com"}])
    iam.add_user_to_group(GroupName="iam-warden-source-ip", UserName="svc-billing")
    key = iam.create_access_key(UserName="svc-billing")["AccessKey"]
    clock("-3h")
    boto3.client("iam", endpoint_url=moto, region_name="us-east-1",
                 aws_access_key_id=key["AccessKeyId"],
                 aws_secret_access_key=key["SecretAccessKey"]).get_user(UserName="svc-billing")
finally:
    clock("+0d")
print(f"created svc-billing with access key {key['AccessKeyId']} (the secret is not shown)")
PY
show_keys svc-billing

step "8a. Plan: the rotation, with the date it became due"
run_to 1 "$WORK/plan-rotation.out" "$WARDEN" plan
only_user svc-billing "$WORK/plan-rotation.out"
note "(exit 1: changes planned; the plan's other users are unchanged and cut here)"

step "8b. Enforce: a new key, stored in Secrets Manager; the old key keeps working (draining)"
hook0=$(hook_lines)
IAM_WARDEN_MODE=enforce run_to 0 "$WORK/rotate.out" "$WARDEN" enforce --once
only_user svc-billing "$WORK/rotate.out"
note "(exit 0)"
show_keys svc-billing
show_notices "$hook0" key-rotated
note "The secret, read back (only its AccessKeyId is shown) and used to sign sts GetCallerIdentity:"
"$VENV_PY" - "$MOTO_URL" "$STATE/journal.jsonl" "$WORK/rotate.out" "$HOOK_OUT" <<'PY'
import json, sys, boto3
moto, files = sys.argv[1], sys.argv[2:]
name = "iam-warden/svc-billing/access-key"
sm = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1")
v = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
kid, secret = v["AccessKeyId"], v["SecretAccessKey"]
sts = boto3.client("sts", endpoint_url=moto, region_name="us-east-1",
                   aws_access_key_id=kid, aws_secret_access_key=secret)
arn = sts.get_caller_identity()["Arn"]
print(f"  secret {name}: AccessKeyId {kid}, UserName {v['UserName']}, CreateDate {v['CreateDate']}")
print(f"  sts GetCallerIdentity signed with it: {arn}")
if not (":user/" in arn and arn.rsplit("/", 1)[-1] == "svc-billing"):
    sys.exit(f"demo: error: the stored key answers for {arn}, not for svc-billing")
leaks = [f for f in files if secret in open(f).read()]
if leaks:
    sys.exit(f"demo: error: the secret access key was written to {leaks}")
print("  the secret access key is in none of: the journal, iam-warden's output, the notices")
PY

step "8c. The consumer switches to the new key (read from the secret); the old key is held"
"$VENV_PY" - "$MOTO_URL" <<'PY'
import json, sys, boto3
moto = sys.argv[1]
sm = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1")
v = json.loads(sm.get_secret_value(SecretId="iam-warden/svc-billing/access-key")["SecretString"])
boto3.client("iam", endpoint_url=moto, region_name="us-east-1", aws_access_key_id=v["AccessKeyId"],
             aws_secret_access_key=v["SecretAccessKey"]).get_user(UserName="svc-billing")
print(f"the consumer now calls with {v['AccessKeyId']}")
PY
note "Drain proof: the old key is deactivated only once the new key has been used AND the old"
note "one has been quiet for rotation.drain_quiet (1d). It was used 3 hours ago: kept."
IAM_WARDEN_MODE=enforce run_to 0 "$WORK/drain-held.out" "$WARDEN" enforce --once
only_user svc-billing "$WORK/drain-held.out"
note "(exit 0)"

step "8d. A day later: the old key has been quiet for drain_quiet, so it is deactivated"
# Time passes through IAM_WARDEN_TEST_CLOCK (iam-warden's clock), not faketime (moto's): the
# drain proof compares the last-use dates IAM reports with iam-warden's own "now", so it is
# iam-warden's clock that must move a day ahead; moving moto's clock ahead would only date
# the new key's use in iam-warden's future. `enforce --at` is refused on purpose (enforce
# writes its time into AWS tags); the test-only variable is the way, and iam-warden warns
# about it on stderr. The tags of this pass carry that future time.
later=$(date -u -d '+25 hours' +%Y-%m-%dT%H:%M:%SZ)
note "IAM_WARDEN_TEST_CLOCK=$later: iam-warden runs as if now were 25 hours later"
hook0=$(hook_lines)
IAM_WARDEN_MODE=enforce IAM_WARDEN_TEST_CLOCK="$later" \
    run_to 0 "$WORK/drain-done.out" "$WARDEN" enforce --once
only_user svc-billing "$WORK/drain-done.out"
note "(exit 0)"
show_keys svc-billing
show_notices "$hook0" key-deactivated
note "Until recovery_days (7) pass, \`iam-warden reactivate svc-billing <old key id>\` puts the old"
note "key back (draining again); then it is deleted."
note "The journal lines for svc-billing (outcomes; each write also has an intent line before"
note "it): every phase change is a rotation_phase line."
grep '"user":"svc-billing"' "$STATE/journal.jsonl" | grep -v '"outcome":"intent"'

# --- daemon part ---
step "9. The daemon: iam-warden run, watching CloudTrail and an SQS queue"
note "moto has no CloudTrail, so cloudtrail-recorder sits in front of it: it records each IAM"
note "write made through it as a CloudTrail record and answers LookupEvents. The daemon polls"
note "it every 2 s (default 60 s); resync is an hour away, so only the events can trigger it."
note "The SQS queue stands for the one EventBridge feeds (here: an AWS Health event, step 12)."
start_recorder "$MOTO_URL"
note "recorder: $RECORDER_URL"
QUEUE_URL=$(create_queue iam-warden-events)
note "queue: $QUEUE_URL"
PORT=$(free_port)
DAEMON_LOG="$WORK/daemon.log"
IAM_WARDEN_MODE=enforce \
    IAM_WARDEN_SERVER__LISTEN="127.0.0.1:$PORT" \
    IAM_WARDEN_SOURCES__CLOUDTRAIL__ENDPOINT_URL="$RECORDER_URL" \
    IAM_WARDEN_SOURCES__CLOUDTRAIL__POLL_INTERVAL=2s \
    IAM_WARDEN_SOURCES__SQS__QUEUE_URL="$QUEUE_URL" \
    IAM_WARDEN_SOURCES__SQS__WAIT_TIME=1s \
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

step "10. Someone creates a user with a console password and an access key"
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

step "11. The journal lines for new-hire"
tail -n +"$((before + 1))" "$JOURNAL" | grep '"user":"new-hire"'

step "12. An exposed key: AWS Health reports svc-metrics-exporter's key on a public repository"
note "The AWS Health event AWS_RISK_CREDENTIALS_EXPOSED (tests/fixtures/, the documented example,"
note "with this account and the key filled in) goes to the queue, as EventBridge would send it."
note "The daemon deactivates exactly that key at once: no wait for the work queue or the write"
note "limiter, not held by the blast-radius breaker."
before=$(wc -l <"$JOURNAL")
hook0=$(hook_lines)
"$VENV_PY" - "$MOTO_URL" "$QUEUE_URL" "$ROOT/tests/fixtures/health-credentials-exposed.json" <<'PY'
import datetime, json, sys, time, uuid, boto3
moto, queue, fixture = sys.argv[1:]
iam = boto3.client("iam", endpoint_url=moto, region_name="us-east-1")
user = "svc-metrics-exporter"
key = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
       if k["Status"] == "Active"][0]
event = json.load(open(fixture))
event["id"] = str(uuid.uuid4())
event["account"] = "123456789012"
event["time"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
event["detail"]["affectedEntities"] = [{"entityValue": key}]
t0 = time.monotonic()
boto3.client("sqs", endpoint_url=moto, region_name="us-east-1").send_message(
    QueueUrl=queue, MessageBody=json.dumps(event))
print(f"sent: AWS_RISK_CREDENTIALS_EXPOSED for {key} ({user})")
deadline = t0 + 30
while time.monotonic() < deadline:
    status = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
    if status.get(key) == "Inactive":
        print(f"{key} is Inactive {time.monotonic() - t0:.3f} s after the message was sent")
        break
    time.sleep(0.02)
else:
    sys.exit(f"demo: error: {key} was still {status.get(key)} 30 s after the Health event")
PY
show_keys svc-metrics-exporter
note "The journal lines (reason \"exposed\"):"
tail -n +"$((before + 1))" "$JOURNAL" | grep '"user":"svc-metrics-exporter"' | grep -v '"outcome":"intent"' || true
show_notices "$hook0" key-exposed

step "13. What the daemon logged (stderr; JSON when not a terminal, text here)"
grep -E 'listening|running as|resync done| write|reconcile failed' "$DAEMON_LOG" | tail -n 8 || true

step "14. Its metrics (a few series of GET /metrics)"
note "(non-zero samples only; no user name, ARN or key id is ever a label)"
http /metrics | grep -E '^iam_warden_(events_total|writes_total|reconciles_total|event_to_enforcement_seconds_(sum|count)|users\{|ready |breaker_tripped|resyncs_total|quarantines_total|notices_total|notifications_total)' |
    grep -vE ' 0$' || true

step "15. SIGTERM: readiness off, sources stop, in-flight work drains, checkpoint saved, exit 0"
stop_daemon "$DAEMON_LOG"
note "(exit $rc; CloudTrail checkpoint saved in $STATE/cloudtrail-checkpoint.json: polled until"
note " $("$VENV_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["polled_until"])' "$STATE/cloudtrail-checkpoint.json"))"

step "16. One daemon for several accounts (the accounts of step 6d), one SQS queue for all"
note "iam-warden run with the accounts list of 6d: a controller per account (its own role,"
note "queue, breaker, resync and journal lines), one queue fed by an organization-wide rule:"
note "each event goes to the account its envelope names; an account out of scope is skipped."
ORG_QUEUE_URL=$(create_queue iam-warden-org-events)
PORT=$(free_port)
ORG_DAEMON_LOG="$WORK/daemon-accounts.log"
before=$(wc -l <"$JOURNAL")
IAM_WARDEN_CONFIG="$ORG_CONFIG" IAM_WARDEN_MODE=enforce \
    IAM_WARDEN_SAFETY__CONFIRM_LARGE_CHANGE=true \
    IAM_WARDEN_SERVER__LISTEN="127.0.0.1:$PORT" \
    IAM_WARDEN_SOURCES__CLOUDTRAIL__ENABLED=false \
    IAM_WARDEN_SOURCES__SQS__QUEUE_URL="$ORG_QUEUE_URL" \
    IAM_WARDEN_SOURCES__SQS__WAIT_TIME=1s \
    IAM_WARDEN_RESYNC__INTERVAL=1h \
    "$WARDEN" run 2>"$ORG_DAEMON_LOG" &
DAEMON_PID=$!
LIB_PIDS+=("$DAEMON_PID")
note "\$ IAM_WARDEN_CONFIG=$(basename "$ORG_CONFIG") IAM_WARDEN_MODE=enforce iam-warden run   (pid $DAEMON_PID)"
up=""
for _ in $(seq 1 300); do
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$ORG_DAEMON_LOG" >&2; die "the daemon exited (log above)"; }
    up=$(http /metrics | grep -c '^iam_warden_account_up{account="[0-9]*"} 1' || true)
    [ "$up" = 3 ] && [ "$(http /readyz | cut -d' ' -f1)" = 200 ] && break
    sleep 0.2
done
[ "$up" = 3 ] || { cat "$ORG_DAEMON_LOG" >&2; die "not every account was up within 60 s"; }
http /metrics | grep -E '^iam_warden_account_up\{'
# The first resyncs' writes: the team users of 6d (5 console users without MFA) join both
# baseline groups in their own accounts.
added=0
for _ in $(seq 1 300); do
    added=$(tail -n +"$((before + 1))" "$JOURNAL" | grep '"action":"add_user_to_group"' | grep -c '"outcome":"applied"' || true)
    [ "$added" -ge 10 ] && break
    sleep 0.1
done
[ "$added" -ge 10 ] || { tail -n 20 "$ORG_DAEMON_LOG" >&2; die "the team users were not on the baseline within 30 s"; }
note "The first resync of each account: applied writes by account, from the journal (the"
note "team users of 6d joined the baseline groups in their own accounts; the demo account"
note "was on the baseline already):"
tail -n +"$((before + 1))" "$JOURNAL" | "$VENV_PY" -c '
import collections, json, sys
n = collections.Counter((e.get("account", "?"), e["action"]) for e in map(json.loads, sys.stdin)
                        if e.get("outcome") == "applied")
for (acct, action), k in sorted(n.items()):
    print(f"  account {acct}: {k} x {action}")'
note "A contractor gets a console password in account 444455556666; its event, and one of an"
note "account not in scope (999988887777), arrive on the one queue:"
"$VENV_PY" - "$MOTO_URL" "$ORG_QUEUE_URL" <<'PY'
import datetime, json, sys, time, uuid, boto3
moto, queue = sys.argv[1:]
sts = boto3.client("sts", endpoint_url=moto, region_name="us-east-1")
c = sts.assume_role(RoleArn="arn:aws:iam::444455556666:role/iam-warden", RoleSessionName="demo-admin")["Credentials"]
iam = boto3.client("iam", endpoint_url=moto, region_name="us-east-1", aws_access_key_id=c["AccessKeyId"],
                   aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
iam.create_user(UserName="contractor")
iam.create_login_profile(UserName="contractor", Password="Correct-Horse-Battery-9!")
sqs = boto3.client("sqs", endpoint_url=moto, region_name="us-east-1")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
def event(acct, user):
    record = {"eventVersion": "1.09", "eventTime": now, "eventSource": "iam.amazonaws.com",
              "userIdentity": {"type": "AssumedRole", "accountId": acct,
                               "arn": f"arn:aws:sts::{acct}:assumed-role/admin/demo"},
              "eventName": "CreateLoginProfile", "awsRegion": "us-east-1",
              "requestParameters": {"userName": user}, "responseElements": None,
              "eventID": str(uuid.uuid4()), "readOnly": False, "eventType": "AwsApiCall",
              "recipientAccountId": acct}
    return json.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS API Call via CloudTrail",
                       "source": "aws.iam", "account": acct, "time": now, "region": "us-east-1",
                       "resources": [], "detail": record})
t0 = time.monotonic()
sqs.send_message(QueueUrl=queue, MessageBody=event("444455556666", "contractor"))
sqs.send_message(QueueUrl=queue, MessageBody=event("999988887777", "contractor"))
while time.monotonic() < t0 + 30:
    groups = [g["GroupName"] for g in iam.list_groups_for_user(UserName="contractor")["Groups"]]
    if "iam-warden-require-mfa" in groups:
        print(f"contractor (444455556666) in {', '.join(sorted(groups))} "
              f"{time.monotonic() - t0:.2f} s after the event was sent")
        break
    time.sleep(0.05)
else:
    sys.exit("demo: error: contractor was not on the baseline 30 s after its event")
PY
skipped=""
for _ in $(seq 1 100); do
    skipped=$(http /metrics | grep '^iam_warden_sqs_messages_skipped_total{reason="not_in_scope"}' | cut -d' ' -f2)
    [ "$skipped" = 1 ] && break
    sleep 0.1
done
[ "$skipped" = 1 ] || die "the event of the account out of scope was not counted as skipped"
note "The event of 999988887777 was counted and deleted, never acted on:"
sed 's/\x1b\[[0-9;]*m//g' "$ORG_DAEMON_LOG" | grep -m1 'SQS event of an account iam-warden does not cover' |
    cut -c1-220 || true
http /metrics | grep '^iam_warden_sqs_messages_skipped_total{reason="not_in_scope"}'
stop_daemon "$ORG_DAEMON_LOG"
note "(SIGTERM: exit $rc)"
# --- end of daemon part ---

step "Done"
note "Everything ran against moto on $MOTO_URL; the temporary directory is removed now"
note "(KEEP=1 make demo keeps it)."
