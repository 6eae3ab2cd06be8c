#!/usr/bin/env bash
# Benchmark: `iam-warden enforce --once` on 1,000 users of which a third drift, then a
# second pass over the now compliant account.
#
# moto under libfaketime on a free port; bench/seed.py --users 1000 --drift 0.333 (the
# compliant account is brought onto the baseline by iam-warden enforce first; drift:
# console users out of the baseline groups, service users with a console password,
# service users whose key was replaced by one created 60 days ago and never used).
# Then, in mode enforce with --confirm-large-change and a write limit of 100/s (burst
# 100, so the limiter does not dominate): pass 1, then pass 2. Reported from the JSON
# report: aws_calls, aws_write_calls, planned actions, users changed, wall time.
# Environment: USERS (1000), DRIFT (0.333).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
USERS=${USERS:-1000} DRIFT=${DRIFT:-0.333}

lib_init bench-enforce
bench_build
start_moto moto faketime
emulator_env "$MOTO_URL"
CONFIG="$WORK/iam-warden.toml"
bench_config "$CONFIG"

echo "seeding $USERS users (drift $DRIFT)..." >&2
"$VENV_PY" bench/seed.py --users "$USERS" --drift "$DRIFT" --faketime-file "$FAKETIME_FILE" \
    --warden "$WARDEN" --warden-config "$CONFIG" >"$WORK/seed.json"
cat "$WORK/seed.json" >&2

export IAM_WARDEN_MODE=enforce
export IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND=100 IAM_WARDEN_CONTROLLER__WRITE_BURST=100
JOURNAL="$WORK/state/journal.jsonl"
for pass in 1 2; do
    wc -l <"$JOURNAL" >"$WORK/pass$pass.journal-start"
    t0=$(now_s)
    rc=0
    "$WARDEN" --config "$CONFIG" enforce --once --confirm-large-change --output json \
        >"$WORK/pass$pass.json" || rc=$?
    t1=$(now_s)
    [ "$rc" = 0 ] || die "enforce pass $pass exited $rc"
    elapsed "$t0" "$t1" >"$WORK/pass$pass.seconds"
    echo "pass $pass: $(cat "$WORK/pass$pass.seconds") s" >&2
done

mkdir -p "$RESULTS"
"$VENV_PY" - "$WORK" "$(machine)" >"$RESULTS/enforce.json" <<'PY'
import collections, json, sys
work, machine = sys.argv[1], sys.argv[2]

journal = open(f"{work}/state/journal.jsonl").read().splitlines()

def summary(n):
    r = json.load(open(f"{work}/pass{n}.json"))
    start = int(open(f"{work}/pass{n}.journal-start").read())
    end = int(open(f"{work}/pass{n + 1}.journal-start").read()) if n == 1 else len(journal)
    entries = [json.loads(l) for l in journal[start:end] if l.strip()]
    plan = r["plan"]
    actions = plan["account_actions"] + [a for u in plan["users"] for a in u["actions"]]
    return {
        "seconds": float(open(f"{work}/pass{n}.seconds").read()),
        "users_total": r["breaker"]["users_total"],
        "users_changed": r["breaker"]["users_changed"],
        "planned_actions": len(actions),
        "planned_by_action": dict(sorted(collections.Counter(a["action"] for a in actions).items())),
        "outcomes": dict(collections.Counter(
            (x["outcome"] if isinstance(x["outcome"], str) else next(iter(x["outcome"])))
            for x in r["results"])),
        "journal_by_action": dict(sorted(collections.Counter(
            f"{e['action']} {e['outcome']}" for e in entries).items())),
        "aws_calls": r["aws_calls"],
        "aws_write_calls": r["aws_write_calls"],
    }

print(json.dumps({
    "benchmark": "enforce",
    "machine": machine,
    "seed": json.load(open(f"{work}/seed.json")),
    "writes_per_second": 100,
    "write_burst": 100,
    "pass1": summary(1),
    "pass2": summary(2),
}, indent=2))
PY
"$VENV_PY" - "$RESULTS/enforce.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["seed"]["drift"]
print(f"enforce --once on {r['pass1']['users_total']} users, {d['users']} drifting ({', '.join(f'{k} {v}' for k, v in d['kinds'].items())}) on {r['machine']}")
for n in ("pass1", "pass2"):
    p = r[n]
    print(f"  {n}: {p['seconds']:.2f} s, {p['users_changed']} users changed, {p['planned_actions']} planned writes, "
          f"{p['aws_calls']} AWS calls of which {p['aws_write_calls']} writes")
    if p["planned_by_action"]:
        print(f"         planned: {', '.join(f'{k} {v}' for k, v in p['planned_by_action'].items())}; outcomes: {p['outcomes']}")
        print(f"         journal: {', '.join(f'{k} {v}' for k, v in p['journal_by_action'].items())}")
print(f"  results: {sys.argv[1]}")
PY
