#!/usr/bin/env python3
"""Measurements for bench/daemon.sh (the `iam-warden run` benchmark); run by it, one
subcommand per step. The shell script starts and stops the processes (moto, the
cloudtrail-recorder, the daemons); this only talks to them and reads /proc.

    daemon.py queue       --endpoint MOTO --name NAME [--visibility 30]   prints the queue URL
    daemon.py ready       --url DAEMON --pid PID [--timeout S] [--since T]
    daemon.py sqs         --endpoint MOTO --queue-url Q --url DAEMON --pid PID --journal J
                          [--samples N] [--warmup N] [--burst N] [--prefix P] --out F
    daemon.py quarantine  --endpoint MOTO --queue-url Q --url DAEMON --pid PID --journal J
                          [--samples N] [--warmup N] [--burst N] --out F
    daemon.py cloudtrail  --endpoint MOTO --recorder REC --url DAEMON --pid PID --journal J
                          [--samples N] [--poll-interval S] --out F
    daemon.py burst       --endpoint MOTO --queue-url Q --url DAEMON --pid PID --journal J
                          --groups G... --writes-per-second R [--count N] [--prefix P] --out F
    daemon.py idle        --url DAEMON --pid PID [--seconds S] --out F
    daemon.py memory      --url DAEMON --pid PID [--resyncs N] [--timeout S] --out F
    daemon.py report      --results F --part NAME=FILE ... --extra JSON   (assembles daemon.json)
    daemon.py summary     --results F                                     (human summary)

Latency, everywhere: the `time` of the daemon's last `applied` journal line for the user
(src/apply.rs takes it with Utc::now() after the IAM write returned, just before the line
is written and synced) minus the wall-clock time at which the triggering call returned
to this script (SendMessage for SQS, CreateLoginProfile for CloudTrail); for an exposed
key the `applied` `quarantine_access_key` line (the key is inactive when it is written).
Both clocks are
this machine's. Percentiles are nearest-rank.

Only loopback http:// endpoints are used, with the static test credentials `testing`.
Credentials obtained from the emulator (AssumeRole) stay in memory and are never printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from urllib.parse import urlparse

ACCOUNT = "123456789012"
MFA_GROUP = "iam-warden-require-mfa"
PASSWORD = "Emulator-Only-Password-1!"  # fake, for the emulator only; never printed
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"daemon-bench: {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> None:
    log(f"error: {msg}")
    sys.exit(1)


def loopback(url: str) -> str:
    u = urlparse(url)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost", "::1"):
        fail(f"{url} is not a loopback http:// URL; this benchmark only talks to local processes")
    return url


def client(service: str, endpoint: str, key="testing", secret="testing", token=None):
    import boto3  # here: `ready` runs without it, and starts faster
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name="us-east-1",
    ).client(
        service,
        endpoint_url=loopback(endpoint),
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=60),
    )


# ---- small helpers -----------------------------------------------------------------------

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def rfc3339(s: str) -> float:
    """RFC 3339 (any number of fractional digits) to seconds since the epoch."""
    m = _TS.match(s)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {s!r}")
    base = datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S")
    off = 0
    if m[3] != "Z":
        sign = 1 if m[3][0] == "+" else -1
        off = sign * (int(m[3][1:3]) * 3600 + int(m[3][4:6]) * 60)
    frac = float("0." + m[2]) if m[2] else 0.0
    return base.replace(tzinfo=timezone.utc).timestamp() - off + frac


def utc_now_str() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def percentile(sorted_vals: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(1, math.ceil(p / 100 * len(sorted_vals)))
    return sorted_vals[k - 1]


def stats(vals: list[float]) -> dict:
    if not vals:
        return {"count": 0}
    s = sorted(vals)
    r = lambda x: round(x, 4)  # noqa: E731
    return {
        "count": len(s),
        "min": r(s[0]),
        "p50": r(percentile(s, 50)),
        "p90": r(percentile(s, 90)),
        "p99": r(percentile(s, 99)),
        "max": r(s[-1]),
        "mean": r(sum(s) / len(s)),
    }


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics(url: str) -> list[tuple[str, dict, float]]:
    code, text = http_get(url.rstrip("/") + "/metrics")
    if code != 200:
        raise RuntimeError(f"/metrics answered {code}")
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            out.append((m[1], dict(_LABEL.findall(m[2] or "")), float(m[3])))
    return out


def metric_sum(ms, name: str, **labels) -> float:
    return sum(v for n, lab, v in ms if n == name and all(lab.get(k) == w for k, w in labels.items()))


def enforcement_histogram(ms) -> dict:
    out = {}
    for frm in ("received", "event_time"):
        s = metric_sum(ms, "iam_warden_event_to_enforcement_seconds_sum", **{"from": frm})
        c = metric_sum(ms, "iam_warden_event_to_enforcement_seconds_count", **{"from": frm})
        buckets = {
            lab["le"]: int(v)
            for n, lab, v in ms
            if n == "iam_warden_event_to_enforcement_seconds_bucket" and lab.get("from") == frm
        }
        out[frm] = {
            "sum": round(s, 4),
            "count": int(c),
            "mean": round(s / c, 4) if c else None,
            "buckets": buckets,
        }
    return out


def histogram_delta(after: dict, before: dict) -> dict:
    out = {}
    for frm, a in after.items():
        b = before.get(frm, {"sum": 0, "count": 0, "buckets": {}})
        s, c = a["sum"] - b["sum"], a["count"] - b["count"]
        out[frm] = {
            "sum": round(s, 4),
            "count": c,
            "mean": round(s / c, 4) if c else None,
            "buckets": {le: n - b["buckets"].get(le, 0) for le, n in a["buckets"].items()},
        }
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads, dead ones included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def task_cpu_ns(pid: int) -> dict[str, int]:
    """CPU time (ns, /proc/PID/task/TID/schedstat) of each live thread."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "VmSize", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])  # kB (Threads: a count)
    return out


def mib(kb: int) -> float:
    return round(kb / 1024, 1)


class Daemon:
    def __init__(self, url: str, pid: int):
        self.url = loopback(url)
        self.pid = pid

    def check(self) -> None:
        if not alive(self.pid):
            fail(f"the daemon (pid {self.pid}) exited; see its log")

    def metrics(self):
        self.check()
        return metrics(self.url)

    def wait_idle(self, deadline: float, what: str) -> None:
        """Nothing in flight and no reconcile started or finished, three checks in a row
        200 ms apart. (The queue depth counts delayed items too: every reconciled user is
        requeued for when its credentials next come due, so it never returns to 0.)"""
        calm, last = 0, None
        while time.time() < deadline:
            ms = self.metrics()
            now = (
                metric_sum(ms, "iam_warden_reconciles_total"),
                metric_sum(ms, "iam_warden_queue_adds_total"),
            )
            if metric_sum(ms, "iam_warden_queue_in_flight") == 0 and now == last:
                calm += 1
                if calm >= 2:
                    return
            else:
                calm = 0
            last = now
            time.sleep(0.2)
        fail(f"the daemon's work queue did not drain ({what})")


class Journal:
    """Tails the daemon's journal.jsonl; entries by user."""

    def __init__(self, path: str):
        self.path = path
        self.pos = 0
        self.buf = b""
        self.by_user: dict[str, list[dict]] = {}
        self.all: list[dict] = []

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        self.pos += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line.strip():
                e = json.loads(line)
                self.all.append(e)
                self.by_user.setdefault(e.get("user") or "", []).append(e)

    def applied(self, user: str, action: str | None = None) -> list[dict]:
        return [
            e
            for e in self.by_user.get(user, [])
            if e["outcome"] == "applied" and (action is None or e["action"] == action)
        ]

    def wait(self, users: list[str], deadline: float, daemon: Daemon, action="add_user_to_group") -> list[str]:
        """Wait until every user has an applied `action` line; returns those that do not."""
        pending = set(users)
        last_check = 0.0
        while True:
            self.poll()
            pending = {u for u in pending if not self.applied(u, action)}
            if not pending or time.time() > deadline:
                return sorted(pending)
            if time.time() - last_check > 1:
                daemon.check()
                last_check = time.time()
            time.sleep(0.005)

    def latency(self, user: str, t0: float) -> float:
        return max(rfc3339(e["time"]) for e in self.applied(user)) - t0


def create_console_user(iam, name: str) -> None:
    iam.create_user(UserName=name)
    iam.create_login_profile(UserName=name, Password=PASSWORD, PasswordResetRequired=False)


def envelope(user: str) -> str:
    now = utc_now_str()
    record = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/admin/bench",
            "accountId": ACCOUNT,
        },
        "eventTime": now,
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateLoginProfile",
        "awsRegion": "us-east-1",
        "requestParameters": {"userName": user, "passwordResetRequired": False},
        "responseElements": None,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "recipientAccountId": ACCOUNT,
    }
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.iam",
            "account": ACCOUNT,
            "time": now,
            "region": "us-east-1",
            "resources": [],
            "detail": record,
        }
    )


def wait_baseline_group(iam, daemon: Daemon, deadline: float) -> None:
    """The first resync's account reconcile created the MFA group and attached its policy."""
    while time.time() < deadline:
        daemon.check()
        try:
            if iam.list_attached_group_policies(GroupName=MFA_GROUP)["AttachedPolicies"]:
                return
        except iam.exceptions.NoSuchEntityException:
            pass
        time.sleep(0.1)
    fail(f"the baseline group {MFA_GROUP} did not appear with its policy")


def user_actions(journal: Journal, user: str) -> list[str]:
    return [f"{e['action']} {e['outcome']}" for e in journal.by_user.get(user, [])]


# ---- subcommands -------------------------------------------------------------------------


def send_burst(sqs, queue_url: str, names: list[str], body, t0s: dict[str, float]) -> float:
    """Send the message `body(name)` of every name at once (SendMessageBatch, 10 a call);
    t0s[name] = when its call returned. Returns the seconds the sending took."""
    t_first = time.time()
    for k in range(0, len(names), 10):
        chunk = names[k : k + 10]
        r = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(j), "MessageBody": body(n)} for j, n in enumerate(chunk)],
        )
        t0 = time.time()
        if r.get("Failed"):
            fail(f"SendMessageBatch failed for {len(r['Failed'])} messages")
        for n in chunk:
            t0s[n] = t0
    return time.time() - t_first


def cmd_queue(a) -> int:
    sqs = client("sqs", a.endpoint)
    url = sqs.create_queue(QueueName=a.name, Attributes={"VisibilityTimeout": str(a.visibility)})["QueueUrl"]
    print(url)
    return 0


def cmd_ready(a) -> int:
    d = Daemon(a.url, a.pid)
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        d.check()
        try:
            code, _ = http_get(d.url + "/readyz", timeout=2)
        except OSError:
            code = 0
        if code == 200:
            if a.since:
                print(f"{time.time() - a.since:.3f}")
            return 0
        time.sleep(0.05)
    fail(f"/readyz of {d.url} did not answer 200 within {a.timeout} s")
    return 1


def cmd_sqs(a) -> int:
    d = Daemon(a.url, a.pid)
    iam = client("iam", a.endpoint)
    sqs = client("sqs", a.endpoint)
    journal = Journal(a.journal)
    wait_baseline_group(iam, d, time.time() + 60)
    d.wait_idle(time.time() + 60, "after the first resync")
    out: dict = {"queue_visibility_timeout_seconds": a.visibility, "sequential_spacing_seconds": a.spacing}
    h0 = enforcement_histogram(d.metrics())

    last_send = [0.0]

    def one(name: str) -> float:
        # At most one event per `spacing` seconds: back to back, the samples would soon
        # measure the write limiter (5 writes/s by default: its bucket of 10 drains after
        # ~10 samples, then every write waits ~200 ms for a token), not the pipeline.
        time.sleep(max(0.0, last_send[0] + a.spacing - time.time()))
        create_console_user(iam, name)
        last_send[0] = time.time()
        sqs.send_message(QueueUrl=a.queue_url, MessageBody=envelope(name))
        t0 = time.time()
        missing = journal.wait([name], time.time() + a.sample_timeout, d)
        if missing:
            fail(f"no applied add_user_to_group for {name} within {a.sample_timeout} s")
        return t0

    # Sequential: one event at a time, the next only once the previous one is enforced.
    warm, seq, t0s = [], [], {}
    for i in range(a.warmup):
        name = f"{a.prefix}warmup-{i}"
        t0s[name] = one(name)
        warm.append(name)
    for i in range(a.samples):
        name = f"{a.prefix}lat-{i}"
        t0s[name] = one(name)
        seq.append(name)
        if (i + 1) % 25 == 0:
            log(f"sqs: {i + 1}/{a.samples} sequential samples")
    h1 = enforcement_histogram(d.metrics())

    # Burst: the users first, then all their events at once (SendMessageBatch, 10 a call).
    burst = [f"{a.prefix}burst-{i}" for i in range(a.burst)]
    for name in burst:
        create_console_user(iam, name)
    send_seconds = send_burst(sqs, a.queue_url, burst, envelope, t0s)
    missing = journal.wait(burst, time.time() + a.sample_timeout + a.burst, d)
    if missing:
        fail(f"burst: {len(missing)} users not enforced in time, e.g. {missing[:3]}")
    d.wait_idle(time.time() + 60, "after the burst")
    h2 = enforcement_histogram(d.metrics())
    ms = d.metrics()

    journal.poll()  # every line written so far (a later line for a user counts)
    lat = {n: round(journal.latency(n, t0s[n]), 4) for n in t0s}
    actions = sorted({" + ".join(user_actions(journal, n)) for n in seq + burst})
    out.update(
        {
            "warmup": [lat[n] for n in warm],
            "sequential": stats([lat[n] for n in seq]),
            "sequential_samples": [lat[n] for n in seq],
            "burst": stats([lat[n] for n in burst]),
            "burst_samples": [lat[n] for n in burst],
            "burst_send_seconds": round(send_seconds, 4),
            "journal_per_user": actions,
            "metrics_histogram": {
                "sequential": histogram_delta(h1, h0),
                "burst": histogram_delta(h2, h1),
                "total": h2,
            },
            "events_total": {
                f"{lab.get('event')} {lab.get('outcome')}": int(v)
                for n, lab, v in ms
                if n == "iam_warden_events_total" and v
            },
            "writes_total": {
                f"{lab.get('action')} {lab.get('outcome')}": int(v)
                for n, lab, v in ms
                if n == "iam_warden_writes_total" and v
            },
        }
    )
    # Where the worst sample spent its time, for the report: the journal line and t0.
    if seq:
        worst = max(seq, key=lambda n: lat[n])
        out["sequential_worst"] = {"user": worst, "latency": lat[worst], "index": seq.index(worst)}
    json.dump(out, open(a.out, "w"), indent=2)
    return 0


def health_event(key_id: str) -> str:
    """An AWS Health AWS_RISK_CREDENTIALS_EXPOSED event for one key, in its EventBridge
    envelope (the shape of tests/fixtures/health-credentials-exposed.json)."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "AWS Health Event",
            "source": "aws.health",
            "account": ACCOUNT,
            "time": utc_now_str(),
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventArn": "arn:aws:health:us-east-1::event/RISK/AWS_RISK_CREDENTIALS_EXPOSED/bench",
                "service": "RISK",
                "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
                "eventTypeCategory": "issue",
                "affectedEntities": [{"entityValue": key_id}],
            },
        }
    )


def user_with_key(iam, name: str) -> str:
    """A user with one access key; returns the key id (the secret is dropped here)."""
    iam.create_user(UserName=name)
    return iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]


def cmd_quarantine(a) -> int:
    """Exposed-key quarantine: event (SQS) -> key inactive. Sequential samples, one event at
    a time, then a burst of events sent at once (SendMessageBatch, 10 a call)."""
    d = Daemon(a.url, a.pid)
    iam = client("iam", a.endpoint)
    sqs = client("sqs", a.endpoint)
    journal = Journal(a.journal)
    d.wait_idle(time.time() + 60, "after the first resync")
    action = "quarantine_access_key"
    keys: dict[str, str] = {}
    t0s: dict[str, float] = {}

    def one(name: str) -> None:
        keys[name] = user_with_key(iam, name)
        sqs.send_message(QueueUrl=a.queue_url, MessageBody=health_event(keys[name]))
        t0s[name] = time.time()
        if journal.wait([name], time.time() + a.sample_timeout, d, action=action):
            fail(f"no applied {action} for {name} within {a.sample_timeout} s")

    warm = [f"q-warmup-{i}" for i in range(a.warmup)]
    seq = [f"q-lat-{i}" for i in range(a.samples)]
    for name in warm + seq:
        one(name)
    burst = [f"q-burst-{i}" for i in range(a.burst)]
    for name in burst:
        keys[name] = user_with_key(iam, name)
    t_first = time.time()
    send_seconds = send_burst(sqs, a.queue_url, burst, lambda n: health_event(keys[n]), t0s)
    missing = journal.wait(burst, time.time() + a.sample_timeout + a.burst, d, action=action)
    if missing:
        fail(f"burst: {len(missing)} keys not quarantined in time, e.g. {missing[:3]}")
    journal.poll()
    lat = {n: round(rfc3339(journal.applied(n, action)[0]["time"]) - t0s[n], 4) for n in t0s}
    # Cross-check against IAM: every exposed key is inactive now.
    active = [
        n
        for n in t0s
        if any(
            m["AccessKeyId"] == keys[n] and m["Status"] != "Inactive"
            for m in iam.list_access_keys(UserName=n)["AccessKeyMetadata"]
        )
    ]
    if active:
        fail(f"{len(active)} exposed keys are still active, e.g. {active[:3]}")
    ms = d.metrics()
    out = {
        "warmup": [lat[n] for n in warm],
        "sequential": stats([lat[n] for n in seq]),
        "sequential_samples": [lat[n] for n in seq],
        "burst": stats([lat[n] for n in burst]),
        "burst_samples": [lat[n] for n in burst],
        "burst_send_seconds": round(send_seconds, 4),
        "burst_all_inactive_seconds": round(max((lat[n] + t0s[n] for n in burst), default=t_first) - t_first, 4),
        "quarantines_total": {
            lab.get("outcome"): int(v) for n, lab, v in ms if n == "iam_warden_quarantines_total" and v
        },
    }
    json.dump(out, open(a.out, "w"), indent=2)
    return 0


def cmd_cloudtrail(a) -> int:
    d = Daemon(a.url, a.pid)
    iam = client("iam", a.endpoint)
    journal = Journal(a.journal)
    wait_baseline_group(iam, d, time.time() + 60)
    d.wait_idle(time.time() + 60, "after the first resync")
    # The admin: a different identity from the daemon's (whose own writes are skipped).
    role = "bench-admin"
    try:
        iam.create_role(
            RoleName=role,
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    creds = client("sts", a.endpoint).assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName="admin"
    )["Credentials"]
    admin = client(
        "iam", a.recorder, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
    )
    del creds
    rng = random.Random(a.seed)
    names, t0s, offsets = [], {}, []
    t_start = time.time()
    for i in range(a.samples):
        # A random moment within the poll interval (the previous sample was enforced right
        # after a poll, so this spreads the samples over the interval).
        off = rng.uniform(0, a.poll_interval)
        offsets.append(round(off, 3))
        time.sleep(off)
        name = f"ct-{i}"
        admin.create_user(UserName=name)
        admin.create_login_profile(UserName=name, Password=PASSWORD, PasswordResetRequired=False)
        t0s[name] = time.time()
        names.append(name)
        if journal.wait([name], time.time() + 2 * a.poll_interval + 15, d):
            fail(f"cloudtrail: no applied add_user_to_group for {name} within {2 * a.poll_interval + 15:.0f} s")
        if (i + 1) % 5 == 0:
            log(f"cloudtrail: {i + 1}/{a.samples} samples")
    d.wait_idle(time.time() + 30, "after the CloudTrail samples")
    journal.poll()
    ms = d.metrics()
    lat = [round(journal.latency(n, t0s[n]), 4) for n in names]
    bound = a.poll_interval + 1.0
    json.dump(
        {
            "poll_interval_seconds": a.poll_interval,
            "bound_seconds": bound,
            "latency": stats(lat),
            "samples": lat,
            "offsets": offsets,
            "max_within_bound": bool(lat) and max(lat) <= bound,
            "over_bound": [(n, x) for n, x in zip(names, lat) if x > bound],
            "seconds": round(time.time() - t_start, 1),
            "journal_per_user": sorted({" + ".join(user_actions(journal, n)) for n in names}),
            "metrics_histogram": enforcement_histogram(ms),
            "lookup_events_calls": int(
                metric_sum(ms, "iam_warden_aws_calls_total", service="cloudtrail", operation="LookupEvents")
            ),
            "events_total": {
                f"{lab.get('event')} {lab.get('outcome')}": int(v)
                for n, lab, v in ms
                if n == "iam_warden_events_total" and v
            },
        },
        open(a.out, "w"),
        indent=2,
    )
    return 0


def aws_calls(ms) -> dict:
    out: dict[str, int] = {}
    for n, lab, v in ms:
        if n == "iam_warden_aws_calls_total" and v:
            k = f"{lab.get('service')}:{lab.get('operation')}"
            out[k] = out.get(k, 0) + int(v)
    return out


def cmd_burst(a) -> int:
    """COUNT new console users announced on SQS within a second; each is on the baseline
    once the journal has an applied add_user_to_group for every group in --groups."""
    from concurrent.futures import ThreadPoolExecutor

    d = Daemon(a.url, a.pid)
    iam = client("iam", a.endpoint)
    sqs = client("sqs", a.endpoint)
    journal = Journal(a.journal)
    wait_baseline_group(iam, d, time.time() + 120)
    d.wait_idle(time.time() + 300, "after the first resync")
    journal.poll()
    skip = len(journal.all)  # the first resync's lines are not the burst's
    ms0 = d.metrics()
    names = [f"{a.prefix}burst-{i}" for i in range(a.count)]
    log(f"burst: creating {len(names)} console users...")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: create_console_user(iam, n), names))

    # Every event within a second: SendMessageBatch (10 a call) from 4 threads at once.
    chunks = [names[k : k + 10] for k in range(0, len(names), 10)]
    t0s: dict[str, float] = {}

    def send(chunk):
        r = sqs.send_message_batch(
            QueueUrl=a.queue_url,
            Entries=[{"Id": str(j), "MessageBody": envelope(n)} for j, n in enumerate(chunk)],
        )
        t = time.time()
        if r.get("Failed"):
            fail(f"SendMessageBatch failed for {len(r['Failed'])} messages")
        return chunk, t

    t_first = time.time()
    with ThreadPoolExecutor(4) as pool:
        for chunk, t in pool.map(send, chunks):
            for n in chunk:
                t0s[n] = t
    send_seconds = max(t0s.values()) - t_first
    if send_seconds > 1:
        log(f"warning: sending took {send_seconds:.2f} s, more than the 1 s the scenario asks for")

    groups = set(a.groups)
    deadline = time.time() + a.timeout
    pending = set(names)
    while pending and time.time() < deadline:
        journal.poll()
        pending = {
            n for n in pending if not groups <= {e["target"] for e in journal.applied(n, "add_user_to_group")}
        }
        d.check()
        time.sleep(0.01)
    if pending:  # reported (and the script fails), not fatal here: the figures are kept
        log(f"error: burst: {len(pending)} users not on the baseline within {a.timeout:.0f} s, e.g. {sorted(pending)[:3]}")
    else:
        d.wait_idle(time.time() + 120, "after the burst")
    journal.poll()
    ms1 = d.metrics()

    done = [n for n in names if n not in pending]
    lat = {n: journal.latency(n, t0s[n]) for n in done}
    last_applied = max((rfc3339(e["time"]) for n in done for e in journal.applied(n)), default=t_first)
    burst_set = set(names)
    mine = [e for e in journal.all[skip:] if e.get("user") in burst_set]
    writes = [e for e in mine if e["outcome"] == "applied"]
    others = collections.Counter(
        f"{e['action']} {e['outcome']}" for e in journal.all[skip:] if e.get("user") not in burst_set
    )

    def delta(name, **labels):
        return metric_sum(ms1, name, **labels) - metric_sum(ms0, name, **labels)

    throttles = {
        lab.get("operation", "all"): int(v - metric_sum(ms0, n, **lab))
        for n, lab, v in ms1
        if n == "iam_warden_aws_throttles_total" and v - metric_sum(ms0, n, **lab)
    }
    calls = {k: v - aws_calls(ms0).get(k, 0) for k, v in aws_calls(ms1).items() if v - aws_calls(ms0).get(k, 0)}
    rate = a.writes_per_second
    bound = len(writes) / rate + 2.0
    out = {
        "users": len(names),
        "send_seconds": round(send_seconds, 4),
        "writes_per_second": rate,
        "writes": len(writes),
        "journal_by_action": dict(sorted(collections.Counter(f"{e['action']} {e['outcome']}" for e in mine).items())),
        "journal_other_users": dict(sorted(others.items())),
        "latency": stats(list(lat.values())),
        "not_on_baseline": sorted(pending),
        "last_on_baseline_seconds": round(last_applied - t_first, 4) if not pending else None,
        "goal_seconds": round(bound, 3),
        "goal_formula": f"{len(writes)} writes / {rate:g} per s + 2 s",
        "within_goal": not pending and last_applied - t_first <= bound,
        "aws_calls": calls,
        "aws_calls_total": sum(calls.values()),
        "aws_throttles": throttles,
        "write_rate_per_second_at_end": metric_sum(ms1, "iam_warden_write_rate_per_second"),
        "reconciles": int(delta("iam_warden_reconciles_total")),
    }
    json.dump(out, open(a.out, "w"), indent=2)
    return 0


def cmd_idle(a) -> int:
    d = Daemon(a.url, a.pid)
    deadline = time.time() + 120
    # Ready (first resync done), the first CloudTrail poll done, nothing queued.
    while time.time() < deadline:
        ms = d.metrics()
        if metric_sum(ms, "iam_warden_last_poll_success_timestamp_seconds", source="cloudtrail") > 0:
            break
        time.sleep(0.2)
    else:
        fail("the first CloudTrail poll did not succeed within 120 s")
    d.wait_idle(time.time() + 120, "before the idle measurement")
    before_calls = aws_calls(d.metrics())
    s0, c0, w0 = task_cpu_ns(a.pid), cpu_seconds(a.pid), time.time()
    time.sleep(a.seconds)  # the measurement window itself
    s1, c1, w1 = task_cpu_ns(a.pid), cpu_seconds(a.pid), time.time()
    # Finer than the clock ticks of /proc/PID/stat; misses the time of threads that
    # ended within the window after it began (tokio's blocking threads, if any).
    sched = sum(v - s0.get(t, 0) for t, v in s1.items()) / 1e9
    d.check()
    after_calls = aws_calls(d.metrics())
    cpu, wall = c1 - c0, w1 - w0
    json.dump(
        {
            "seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 3),
            "cpu_percent_of_one_core": round(cpu / wall * 100, 3),
            "cpu_seconds_per_minute": round(cpu / wall * 60, 3),
            "clock_tick_seconds": 1 / CLK_TCK,
            "schedstat_cpu_seconds": round(sched, 6),
            "schedstat_cpu_seconds_per_minute": round(sched / wall * 60, 6),
            "threads_at_start_and_end": [len(s0), len(s1)],
            "aws_calls_in_window": {k: v - before_calls.get(k, 0) for k, v in after_calls.items() if v - before_calls.get(k, 0)},
            "status": proc_status(a.pid),
        },
        open(a.out, "w"),
        indent=2,
    )
    return 0


def cmd_memory(a) -> int:
    d = Daemon(a.url, a.pid)
    t_start = time.time()
    ms = d.metrics()
    first = {
        "status": proc_status(a.pid),
        "resyncs": int(metric_sum(ms, "iam_warden_resyncs_total", result="success")),
        "users": int(metric_sum(ms, "iam_warden_users")),
        "aws_calls": aws_calls(ms),
        "cpu_seconds": round(cpu_seconds(a.pid), 2),
    }
    deadline = time.time() + a.timeout
    while True:
        ms = d.metrics()
        n = int(metric_sum(ms, "iam_warden_resyncs_total", result="success"))
        if n >= a.resyncs:
            break
        if metric_sum(ms, "iam_warden_resyncs_total", result="error") > 0:
            log("warning: a resync failed (see the daemon log)")
        if time.time() > deadline:
            fail(f"fewer than {a.resyncs} successful resyncs within {a.timeout} s")
        time.sleep(0.5)
    second = {
        "status": proc_status(a.pid),
        "resyncs": n,
        "users": int(metric_sum(ms, "iam_warden_users")),
        "aws_calls": aws_calls(ms),
        "cpu_seconds": round(cpu_seconds(a.pid), 2),
        "waited_seconds": round(time.time() - t_start, 1),
        "breaker_tripped": int(metric_sum(ms, "iam_warden_breaker_tripped")),
        "queue_adds": {
            lab.get("source"): int(v) for n2, lab, v in ms if n2 == "iam_warden_queue_adds_total" and v
        },
    }
    json.dump({"after_ready": first, "after_resync": second}, open(a.out, "w"), indent=2)
    return 0


def cmd_report(a) -> int:
    r = json.loads(a.extra)
    for part in a.part:
        name, _, path = part.partition("=")
        r[name] = json.load(open(path))
    json.dump(r, open(a.results, "w"), indent=2)
    return 0


def cmd_summary(a) -> int:
    r = json.load(open(a.results))
    s = r["sqs"]
    p = lambda x: f"{x * 1000:.0f} ms"  # noqa: E731

    def line(st):
        return (
            f"p50 {p(st['p50'])}, p90 {p(st['p90'])}, p99 {p(st['p99'])}, max {p(st['max'])} "
            f"(n={st['count']})"
        )

    print(f"iam-warden run (release) against moto on {r['machine']}; bench took {r['bench_seconds']:.0f} s")
    print(f"1. SQS event -> enforcement (journal time - SendMessage returned), goal p50 and p99 < 1 s:")
    print(f"   sequential, 1 per {s['sequential_spacing_seconds']:g} s:      {line(s['sequential'])}")
    print(f"   burst of {s['burst']['count']}, default limiter:  {line(s['burst'])}")
    fast = r.get("sqs_unthrottled")
    if fast:
        print(f"   burst of {fast['burst']['count']}, limiter off:      {line(fast['burst'])}")
    for label, part in (("sequential", "sequential"), ("burst", "burst")):
        h = s["metrics_histogram"][part]
        print(
            f"   daemon's own histogram ({label}): from received mean {h['received']['mean']} s "
            f"(n={h['received']['count']}), from eventTime mean {h['event_time']['mean']} s"
        )
    q = r.get("quarantine")
    if q:
        print(f"   exposed key (AWS Health event) -> key inactive, goal p99 < 1 s:")
        print(f"   sequential:                   {line(q['sequential'])}")
        print(
            f"   burst of {q['burst']['count']}:                  {line(q['burst'])}; "
            f"every key inactive {q['burst_all_inactive_seconds']:.2f} s after the first send"
        )
    c = r["cloudtrail"]
    lt = c["latency"]
    print(
        f"2. CloudTrail LookupEvents (poll {c['poll_interval_seconds']:.0f} s) -> enforcement: p50 {lt['p50']:.2f} s, "
        f"max {lt['max']:.2f} s (n={lt['count']}); max <= poll interval + 1 s: {c['max_within_bound']}"
    )
    i = r["idle"]
    print(
        f"3. idle CPU over {i['seconds']:.0f} s: {i['cpu_seconds']:.2f} s CPU = {i['cpu_percent_of_one_core']:.3f} % of one core "
        f"= {i['cpu_seconds_per_minute']:.3f} s CPU/min (/proc/PID/stat, {i['clock_tick_seconds']} s ticks)"
    )
    print(
        f"   per-thread schedstat: {i['schedstat_cpu_seconds'] * 1000:.1f} ms CPU = "
        f"{i['schedstat_cpu_seconds_per_minute'] * 1000:.1f} ms/min; AWS calls in the window: {i['aws_calls_in_window']}"
    )
    m = r["memory"]
    a1, a2 = m["after_ready"]["status"], m["after_resync"]["status"]
    print(
        f"4. memory with {m['after_ready']['users']} users: after the first resync VmRSS {mib(a1['VmRSS'])} MiB "
        f"(peak VmHWM {mib(a1['VmHWM'])} MiB); after resync #{m['after_resync']['resyncs']} VmRSS {mib(a2['VmRSS'])} MiB "
        f"(peak {mib(a2['VmHWM'])} MiB); goal < 50 MB: {a2['VmHWM'] * 1024 < 50e6}"
    )
    print(
        "   shutdown, SIGTERM -> process gone (signal -> \"stopped\" in its log): "
        + ", ".join(f"{k} {v['seconds']} s ({v['in_log_seconds']} s), exit {v['rc']}" for k, v in sorted(r["shutdown"].items()))
    )
    print(f"   time to ready (start -> /readyz 200): " + ", ".join(f"{k} {v} s" for k, v in sorted(r["ready_seconds"].items())))
    print(f"   results: {a.results}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    q = sub.add_parser("queue")
    q.add_argument("--endpoint", required=True)
    q.add_argument("--name", required=True)
    q.add_argument("--visibility", type=int, default=30)

    def daemon_args(p):
        p.add_argument("--url", required=True, help="the daemon's http://127.0.0.1:PORT")
        p.add_argument("--pid", type=int, required=True)

    r = sub.add_parser("ready")
    daemon_args(r)
    r.add_argument("--timeout", type=float, default=120)
    r.add_argument("--since", type=float, help="print the seconds since this epoch time when ready")

    s = sub.add_parser("sqs")
    daemon_args(s)
    s.add_argument("--endpoint", required=True)
    s.add_argument("--queue-url", required=True)
    s.add_argument("--visibility", type=int, default=30)
    s.add_argument("--journal", required=True)
    s.add_argument("--samples", type=int, default=100)
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--burst", type=int, default=50)
    s.add_argument("--prefix", default="")
    s.add_argument("--sample-timeout", type=float, default=30)
    s.add_argument("--spacing", type=float, default=0.5, help="sequential: seconds from one user creation to the next, at least")
    s.add_argument("--out", required=True)

    qp = sub.add_parser("quarantine")
    daemon_args(qp)
    qp.add_argument("--endpoint", required=True)
    qp.add_argument("--queue-url", required=True)
    qp.add_argument("--journal", required=True)
    qp.add_argument("--samples", type=int, default=50)
    qp.add_argument("--warmup", type=int, default=3)
    qp.add_argument("--burst", type=int, default=50)
    qp.add_argument("--sample-timeout", type=float, default=30)
    qp.add_argument("--out", required=True)

    c = sub.add_parser("cloudtrail")
    daemon_args(c)
    c.add_argument("--endpoint", required=True)
    c.add_argument("--recorder", required=True)
    c.add_argument("--journal", required=True)
    c.add_argument("--samples", type=int, default=20)
    c.add_argument("--poll-interval", type=float, default=5)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--out", required=True)

    b = sub.add_parser("burst")
    daemon_args(b)
    b.add_argument("--endpoint", required=True)
    b.add_argument("--queue-url", required=True)
    b.add_argument("--journal", required=True)
    b.add_argument("--count", type=int, default=200)
    b.add_argument("--prefix", default="")
    b.add_argument("--groups", nargs="+", required=True, help="the baseline groups a new console user must join")
    b.add_argument("--writes-per-second", type=float, required=True, help="the daemon's write rate, for the goal")
    b.add_argument("--timeout", type=float, default=300)
    b.add_argument("--out", required=True)

    i = sub.add_parser("idle")
    daemon_args(i)
    i.add_argument("--seconds", type=float, default=60)
    i.add_argument("--out", required=True)

    m = sub.add_parser("memory")
    daemon_args(m)
    m.add_argument("--resyncs", type=int, default=2)
    m.add_argument("--timeout", type=float, default=900)
    m.add_argument("--out", required=True)

    rp = sub.add_parser("report")
    rp.add_argument("--results", required=True)
    rp.add_argument("--part", action="append", default=[])
    rp.add_argument("--extra", default="{}")

    sm = sub.add_parser("summary")
    sm.add_argument("--results", required=True)

    a = ap.parse_args()
    return {
        "queue": cmd_queue,
        "ready": cmd_ready,
        "sqs": cmd_sqs,
        "quarantine": cmd_quarantine,
        "cloudtrail": cmd_cloudtrail,
        "burst": cmd_burst,
        "idle": cmd_idle,
        "memory": cmd_memory,
        "report": cmd_report,
        "summary": cmd_summary,
    }[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
