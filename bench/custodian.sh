#!/usr/bin/env bash
# Benchmark: the first enforce of a drifted account, iam-warden against Cloud Custodian.
#
# Two moto servers under libfaketime, each seeded identically by bench/seed.py (--users
# USERS --drift DRIFT --seed SEED: the same users, the same drift; brought onto the baseline
# by iam-warden first), each behind its own bench/count-proxy.py. Then, on one account,
# `iam-warden enforce --once --confirm-large-change` (mode enforce, the default write and
# read limits unless WRITES_PER_SECOND is set); on the other, `custodian run` of
# bench/custodian-policies.yml (c7n 0.9.53: the same remediation as far as c7n has actions
# for it; what it has not is listed in that file). Measured for each: wall time of the
# process (start to exit; c7n's includes ~1 s of Python start-up, so its per-policy
# durations are reported too) and the HTTP requests to moto by operation (the proxy's
# counts). Then `iam-warden plan` on both accounts, before and after: the same changes are
# planned before on both (the seeding is identical), and what is left after shows what each
# tool did not do.
#
# Cloud Custodian is installed by this script into its own virtualenv, state/c7n-venv
# (`pip install c7n==0.9.53`; it pins an older boto3 than moto's .venv, so it does not go
# there); nothing else uses it.
# Results: $RESULTS/custodian.json and a summary on stdout.
# Environment: USERS (1000), DRIFT (0.333), SEED (42), WRITES_PER_SECOND (unset: the
# default), BENCH_BUILD=0 (reuse the release binary).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
USERS=${USERS:-1000} DRIFT=${DRIFT:-0.333} SEED=${SEED:-42}
C7N_VERSION=0.9.53
C7N_VENV="$ROOT/state/c7n-venv"
POLICIES="$ROOT/bench/custodian-policies.yml"

lib_init bench-custodian
bench_build
if ! "$C7N_VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("c7n") != sys.argv[1])' \
    "$C7N_VERSION" 2>/dev/null; then
    echo "installing Cloud Custodian $C7N_VERSION into $C7N_VENV..." >&2
    rm -rf "$C7N_VENV"
    "$VENV_PY" -m venv "$C7N_VENV"
    "$C7N_VENV/bin/pip" install --quiet --disable-pip-version-check "c7n==$C7N_VERSION" ||
        die "pip install c7n==$C7N_VERSION failed (PyPI must be reachable)"
fi
"$C7N_VENV/bin/custodian" validate "$POLICIES" 2>"$WORK/validate.log" || {
    cat "$WORK/validate.log" >&2
    die "bench/custodian-policies.yml does not validate (above)"
}
unset "${!IAM_WARDEN_@}"   # nothing from the caller's environment configures iam-warden

declare -A MOTO PROXY
for who in warden custodian; do
    start_moto "moto-$who" faketime
    MOTO[$who]=$MOTO_URL
    mkdir -p "$WORK/$who"
    bench_config "$WORK/$who/iam-warden.toml"
    sed -i "s|^state_dir = .*|state_dir = \"$WORK/$who/state\"|" "$WORK/$who/iam-warden.toml"
    echo "seeding the $who account: $USERS users (drift $DRIFT, seed $SEED)..." >&2
    emulator_env "$MOTO_URL"
    "$VENV_PY" bench/seed.py --users "$USERS" --drift "$DRIFT" --seed "$SEED" \
        --faketime-file "$FAKETIME_FILE" --warden "$WARDEN" \
        --warden-config "$WORK/$who/iam-warden.toml" >"$WORK/$who/seed.json"
    cat "$WORK/$who/seed.json" >&2
    # not in $(...): the proxy is tied to this shell, not to a subshell that ends at once
    start_tied "proxy-$who" "$VENV_PY" "$ROOT/bench/count-proxy.py" --upstream "$MOTO_URL" >"$WORK/$who/proxy.url"
    PROXY[$who]=$(cat "$WORK/$who/proxy.url")
done

# plan WHO NAME: `iam-warden plan --output json` on WHO's account (directly, not counted).
plan() {
    local rc=0
    emulator_env "${MOTO[$1]}"
    "$WARDEN" --config "$WORK/$1/iam-warden.toml" plan --output json >"$WORK/$1/plan-$2.json" || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 1 ] || [ "$rc" = 3 ] || die "plan on the $1 account exited $rc"
}
plan warden before
plan custodian before

# ---- iam-warden ----------------------------------------------------------------------------
emulator_env "${PROXY[warden]}"
curl -fsS -X POST "${PROXY[warden]}/__reset" >/dev/null
limits=()
[ -z "${WRITES_PER_SECOND:-}" ] || limits=(IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND="$WRITES_PER_SECOND")
echo "iam-warden enforce --once..." >&2
rc=0
t0=$(now_s)
env IAM_WARDEN_MODE=enforce "${limits[@]}" "$WARDEN" --config "$WORK/warden/iam-warden.toml" \
    enforce --once --confirm-large-change --output json >"$WORK/warden/enforce.json" 2>"$WORK/warden/enforce.log" || rc=$?
t1=$(now_s)
[ "$rc" = 0 ] || { tail -n 20 "$WORK/warden/enforce.log" >&2; die "iam-warden enforce exited $rc"; }
elapsed "$t0" "$t1" >"$WORK/warden/seconds"
curl -fsS "${PROXY[warden]}/__counts" >"$WORK/warden/counts.json"
echo "iam-warden: $(cat "$WORK/warden/seconds") s" >&2

# ---- Cloud Custodian -----------------------------------------------------------------------
emulator_env "${PROXY[custodian]}"
curl -fsS -X POST "${PROXY[custodian]}/__reset" >/dev/null
echo "custodian run..." >&2
rc=0
t0=$(now_s)
"$C7N_VENV/bin/custodian" run --region us-east-1 --output-dir "$WORK/custodian/out" \
    --cache "$WORK/custodian/c7n.cache" "$POLICIES" >"$WORK/custodian/run.log" 2>&1 || rc=$?
t1=$(now_s)
[ "$rc" = 0 ] || { tail -n 20 "$WORK/custodian/run.log" >&2; die "custodian run exited $rc"; }
elapsed "$t0" "$t1" >"$WORK/custodian/seconds"
curl -fsS "${PROXY[custodian]}/__counts" >"$WORK/custodian/counts.json"
echo "custodian: $(cat "$WORK/custodian/seconds") s" >&2

plan warden after
plan custodian after

mkdir -p "$RESULTS"
"$VENV_PY" - "$WORK" "$(machine)" "$POLICIES" "${WRITES_PER_SECOND:-}" "$(uptime)" >"$RESULTS/custodian.json" <<'PY'
import collections, glob, json, os, re, sys
work, machine, policies, wps, load = sys.argv[1:]
WRITE = re.compile(r"^(Add|Attach|Create|Deactivate|Delete|Detach|Put|Remove|Set|Tag|Untag|Update|Upload|Enable|Change|Reset)")

def planned(path):
    r = json.load(open(path))["plan"]
    acts = r["account_actions"] + [a for u in r["users"] for a in u["actions"]]
    return {"actions": len(acts),
            "by_action": dict(sorted(collections.Counter(a["action"] for a in acts).items()))}

def calls(path):
    c = json.load(open(path))
    writes = sum(v for k, v in c.items() if WRITE.match(k))
    checks = sum(c.get(k, 0) for k in ("ListAccessKeys", "GetAccessKeyLastUsed"))
    return {"total": sum(c.values()), "writes": writes, "reads": sum(c.values()) - writes,
            "key_reads": checks, "other_reads": sum(c.values()) - writes - checks, "by_operation": c}

out = {"benchmark": "custodian", "machine": machine, "load_at_end": load.strip(),
       "seed": json.load(open(f"{work}/warden/seed.json")),
       "seed_custodian": json.load(open(f"{work}/custodian/seed.json"))}
e = json.load(open(f"{work}/warden/enforce.json"))
out["iam_warden"] = {
    "writes_per_second": float(wps) if wps else "default",
    "seconds": float(open(f"{work}/warden/seconds").read()),
    "calls": calls(f"{work}/warden/counts.json"),
    "own_count": {"aws_calls": e["aws_calls"], "aws_write_calls": e["aws_write_calls"]},
    "users_changed": e["breaker"]["users_changed"],
    "planned_before": planned(f"{work}/warden/plan-before.json"),
    "planned_after": planned(f"{work}/warden/plan-after.json"),
}
pol = {}
for meta in sorted(glob.glob(f"{work}/custodian/out/*/metadata.json")):
    m = json.load(open(meta))
    name = os.path.basename(os.path.dirname(meta))
    pol[name] = {"resources": m["metrics"][0]["Value"] if m.get("metrics") else None,
                 "seconds": round(m["execution"]["duration"], 3)}
    res = f"{os.path.dirname(meta)}/resources.json"
    if os.path.exists(res):
        pol[name]["resources"] = len(json.load(open(res)))
out["custodian"] = {
    "version": "0.9.53",
    "seconds": float(open(f"{work}/custodian/seconds").read()),
    "policy_seconds_sum": round(sum(p["seconds"] for p in pol.values()), 3),
    "policies": pol,
    "calls": calls(f"{work}/custodian/counts.json"),
    "planned_before": planned(f"{work}/custodian/plan-before.json"),
    "planned_after": planned(f"{work}/custodian/plan-after.json"),
}
out["speedup_wall"] = round(out["custodian"]["seconds"] / out["iam_warden"]["seconds"], 2)
out["same_drift"] = out["iam_warden"]["planned_before"] == out["custodian"]["planned_before"]
print(json.dumps(out, indent=2))
PY
"$VENV_PY" - "$RESULTS/custodian.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
w, c = r["iam_warden"], r["custodian"]
d = r["seed"]["drift"]
print(f"first enforce of {r['seed']['users']} users, {d['users']} drifting ({', '.join(f'{k} {v}' for k, v in d['kinds'].items())}) on {r['machine']}")
print(f"  planned before (both accounts the same: {r['same_drift']}): {w['planned_before']['by_action']}")
print(f"  iam-warden (writes/s {w['writes_per_second']}): {w['seconds']:.2f} s, {w['calls']['total']} calls "
      f"({w['calls']['writes']} writes, {w['calls']['key_reads']} key reads, {w['calls']['other_reads']} other reads); left to do: {w['planned_after']['by_action'] or 'nothing'}")
print(f"  custodian {c['version']}: {c['seconds']:.2f} s (policies {c['policy_seconds_sum']:.2f} s), {c['calls']['total']} calls "
      f"({c['calls']['writes']} writes, {c['calls']['key_reads']} key reads, {c['calls']['other_reads']} other reads); left to do: {c['planned_after']['by_action'] or 'nothing'}")
for name, p in c["policies"].items():
    print(f"    {name}: {p['resources']} users, {p['seconds']:.2f} s")
print(f"  custodian / iam-warden wall time: {r['speedup_wall']}x; load at the end: {r['load_at_end']}")
print(f"  results: {sys.argv[1]}")
PY
