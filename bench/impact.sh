#!/usr/bin/env bash
# Benchmark: `iam-warden impact --from DIR` over 1,000,000 CloudTrail records (~1 KB each)
# in gzipped files as S3 delivers them (bench/impact-gen.py, 2,000 records a file, in
# $WORK under /tmp), against an account of 50 users on moto (plain). Measured with
# /usr/bin/time -v: wall time and maximum resident set size.
# Environment: RECORDS (1000000), BENCH_BUILD (1: build --release first; 0: use the
# release binary as it is), WARDEN (another binary, e.g. target/debug/iam-warden, for an
# estimate on a smaller RECORDS when the machine is too busy for a release build).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
RECORDS=${RECORDS:-1000000}
WARDEN=${WARDEN_BIN:-$WARDEN}

lib_init bench-impact
[ -n "${WARDEN_BIN:-}" ] || bench_build
start_moto moto
emulator_env "$MOTO_URL"
CONFIG="$WORK/iam-warden.toml"
bench_config "$CONFIG"

"$VENV_PY" - <<'PY'
import boto3
iam = boto3.client("iam")
for i in range(50):
    iam.create_user(UserName=f"user{i}")
    iam.create_access_key(UserName=f"user{i}")
    if i % 5 == 0:
        iam.create_login_profile(UserName=f"user{i}", Password="Correct-Horse-Battery-9!")
PY

echo "generating $RECORDS records..." >&2
t0=$(now_s)
"$VENV_PY" bench/impact-gen.py "$WORK/trail" --records "$RECORDS" >"$WORK/gen.json"
echo "generated in $(elapsed "$t0" "$(now_s)") s: $(cat "$WORK/gen.json"), $(du -sh "$WORK/trail" | cut -f1) on disk" >&2

rc=0
/usr/bin/time -v -o "$WORK/time.txt" "$WARDEN" --config "$CONFIG" impact --from "$WORK/trail" \
    --suggest-networks --output json >"$WORK/impact.json" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 1 ] || die "impact exited $rc: $(tail -3 "$WORK/time.txt")"
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$WORK/time.txt")
rss_kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.txt")
cpu=$(awk -F': ' '/Percent of CPU/ { print $2 }' "$WORK/time.txt")
"$VENV_PY" - "$WORK/impact.json" "$wall" "$rss_kb" "$cpu" "$(machine)" "$WARDEN" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall, rss, cpu, machine, binary = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
s = r["summary"]
print(f"impact --from: {s['records']} records in {r['source']['files']['files']} files on {machine} ({binary})")
print(f"  wall {wall}, max RSS {rss / 1024:.0f} MiB, CPU {cpu}")
print(f"  {s['sentence']}; skipped {sum(r['skipped'].values())}; {len(r['suggestions']['networks'])} networks suggested")
PY
# An example text report (one day's files), for the README.
mkdir -p "$RESULTS"
"$WARDEN" --config "$CONFIG" impact --from "$WORK/trail/AWSLogs/123456789012/CloudTrail/us-east-1/2026/01/01" \
    --suggest-networks >"$RESULTS/impact-example.txt" || true
cp "$WORK/impact.json" "$RESULTS/impact.json"
echo "  results: $RESULTS/impact.json, $RESULTS/impact-example.txt" >&2
