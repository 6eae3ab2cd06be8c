#!/usr/bin/env bash
# Compare iam-warden's CIS verdicts with Prowler's on the same moto account.
# Prowler (PyPI) goes into state/prowler-venv, never into .venv; moto runs from .venv on a
# free port; both tools reach it through AWS_ENDPOINT_URL. Prints one line per
# (Prowler check, resource): Prowler's status, iam-warden's verdict, agree or DISAGREE.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=state/prowler
mkdir -p "$STATE"
VENV=state/prowler-venv
if [ ! -x "$VENV/bin/prowler" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q prowler==5.46.0
fi
[ -x target/debug/iam-warden ] || cargo build --bin iam-warden
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOTO_IAM_LOAD_MANAGED_POLICIES=true .venv/bin/moto_server -p "$PORT" >"$STATE/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true' EXIT
EP="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf -o /dev/null "$EP/moto-api/" && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
  AWS_REGION=us-east-1 AWS_ENDPOINT_URL="$EP" AWS_EC2_METADATA_DISABLED=true
.venv/bin/python bench/prowler_seed.py "$EP"
CHECKS="iam_root_mfa_enabled iam_no_root_access_key iam_aws_attached_policy_no_administrative_privileges
iam_customer_attached_policy_no_administrative_privileges iam_customer_unattached_policy_no_administrative_privileges
iam_policy_attached_only_to_group_or_roles iam_no_expired_server_certificates_stored
iam_policy_cloudshell_admin_not_attached iam_support_role_created"
rm -rf "$STATE/out"
# Exit code 3: findings failed (expected).
"$VENV/bin/prowler" aws --region us-east-1 --checks $CHECKS -M json-ocsf -o "$STATE/out" \
  --no-banner >"$STATE/prowler.log" 2>&1 || [ $? -eq 3 ]
target/debug/iam-warden audit --output json >"$STATE/iam-warden.json" || true
python3 - "$STATE" <<'PY'
import glob, json, sys
state = sys.argv[1]
prowler = json.load(open(glob.glob(f"{state}/out/*.ocsf.json")[0]))
warden = json.load(open(f"{state}/iam-warden.json"))
acct = [(f["check"], f.get("resource", ""), f.get("cannot_check", False)) for f in warden["account_findings"]]
users = {u["user"]: [f["check"] for f in u["findings"]] for u in warden["users"]}
def ours(check, resource):
    """iam-warden's verdict for Prowler's (check, resource): FAIL, PASS or CANNOT."""
    if check.endswith("no_administrative_privileges"):
        hits = [c for k, r, c in acct if k == "policy-full-admin" and r == resource]
    elif check == "iam_no_expired_server_certificates_stored":
        hits = [c for k, r, c in acct if k == "server-certificate-expired" and r == resource]
    elif check == "iam_policy_attached_only_to_group_or_roles":
        return "FAIL" if "user-policy-attached" in users.get(resource.rsplit("/", 1)[-1], []) else "PASS"
    elif check == "iam_policy_cloudshell_admin_not_attached":
        hits = [c for k, r, c in acct if k == "cloudshell-full-access"]
    elif check == "iam_support_role_created":
        hits = [c for k, r, c in acct if k == "no-support-role"]
    else:
        return "?"
    if not hits:
        return "PASS"
    return "FAIL" if not all(hits) else "CANNOT"
seen = set()
bad = 0
for f in prowler:
    check, status = f["metadata"]["event_code"], f["status_code"]
    res = f["resources"][0]["uid"] if f["resources"] else ""
    seen.add(check)
    v = ours(check, res)
    ok = v == status
    bad += not ok
    print(f"{'agree   ' if ok else 'DISAGREE'} {check:58} {status:4} iam-warden {v:6} {res}")
for check in ["iam_root_mfa_enabled", "iam_no_root_access_key"]:
    if check not in seen:
        root = [c for k, r, c in acct if k in ("root-without-mfa", "root-access-key")]
        print(f"no verdict {check:56} Prowler: none (moto's credential report has no root row); "
              f"iam-warden: {'cannot-check' if root and all(root) else root}")
print(f"{bad} disagreement(s)")
sys.exit(1 if bad else 0)
PY
