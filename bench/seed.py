#!/usr/bin/env python3
"""Seed an emulated AWS account (moto) with IAM users for the iam-warden demo and benchmarks.

    seed.py --endpoint URL --demo [--faketime-file F]
    seed.py --endpoint URL --users N --drift F [--faketime-file F]
            [--warden BIN --warden-config CFG]

Only loopback http:// endpoints are accepted: this never talks to real AWS. It signs with
the static test credentials `testing`/`testing`, i.e. moto's default account 123456789012.

Ages. AWS sets creation and last-use dates itself, so old keys and passwords cannot be
created through the API. When moto runs under libfaketime (LD_PRELOAD=libfaketimeMT.so.1
FAKETIME_TIMESTAMP_FILE=F FAKETIME_NO_CACHE=1), `--faketime-file F` lets this script move
moto's clock: it writes an offset such as `-120d` to F (atomically) before creating what
must be 120 days old, and `+0d` when it is done. Without it everything is created "now"
and the kinds of drift that need an age are replaced by ones that do not.

--demo: a realistic account of 34 users (see DEMO below): humans with and without MFA,
service users with fresh, old, unused and double keys, a console user who never signed in,
a service user with a console password, a break-glass user, an exempt-by-tag user, paths
such as /engineering/ and /svc/, and names with the characters + = , . @ _ -.

--users N --drift F (benchmarks): N users, 70 % service users with one access key and
30 % console users with a password and MFA, all tagged with their access class. With
--warden, `iam-warden enforce --once --confirm-large-change` (mode enforce) then brings
the account onto the baseline (baseline policies, groups, memberships, password policy),
exactly as iam-warden itself would. Then round(N*F) users drift: console users leave the
baseline groups, service users get a console password, or (with a clock) their key is
replaced by one created 60 days ago and never used. Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import urllib.request
from urllib.parse import urlencode

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ACCESS_TAG = "iam-warden/access"
EXEMPT_TAG = "iam-warden/exempt"
# An obviously fake password that satisfies any password policy; moto stores it, nothing
# ever prints it.
DEMO_PASSWORD = "Emulator-Only-Password-1!"
BASELINE_GROUP_PREFIX = "iam-warden-"


def log(msg: str) -> None:
    print(f"seed: {msg}", file=sys.stderr, flush=True)


class Clock:
    """moto's clock offset, through libfaketime's timestamp file."""

    def __init__(self, path: str | None):
        self.path = path
        self.days = 0

    @property
    def available(self) -> bool:
        return self.path is not None

    def set(self, days: int) -> None:
        if self.path is None:
            if days != 0:
                raise RuntimeError("an age was requested without --faketime-file")
            return
        tmp = f"{self.path}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{days:+d}d\n")
        os.replace(tmp, self.path)  # atomic: libfaketime re-reads the file on every call
        self.days = days


class Seeder:
    def __init__(self, endpoint: str, workers: int):
        self.endpoint = endpoint
        self.workers = workers
        self.config = Config(
            region_name="us-east-1",
            max_pool_connections=workers * 2,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=120,
        )
        self.iam = self.client("testing", "testing")
        self._lock = threading.Lock()
        self.calls = 0
        # Secrets of the keys created, only in memory (to sign a request as the key and
        # so make moto record its last use). Never printed, never written.
        self._secrets: dict[str, str] = {}
        self.keys: dict[tuple[str, str], str] = {}  # (user, label) -> key id

    def client(self, key_id: str, secret: str):
        return boto3.session.Session(
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        ).client("iam", endpoint_url=self.endpoint, config=self.config)

    def use_key(self, user: str, kid: str) -> None:
        """One IAM GetUser signed (SigV4) with the key: moto records it as the key's last
        use, at moto's (possibly shifted) now."""
        body = urlencode({"Action": "GetUser", "Version": "2010-05-08", "UserName": user})
        req = AWSRequest(
            method="POST",
            url=self.endpoint.rstrip("/") + "/",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        SigV4Auth(Credentials(kid, self._secrets[kid]), "iam", "us-east-1").add_auth(req)
        with self._lock:
            self.calls += 1
        r = urllib.request.Request(req.url, data=body.encode(), headers=dict(req.headers.items()), method="POST")
        with urllib.request.urlopen(r, timeout=60) as resp:
            resp.read()

    def call(self, op: str, **kw):
        with self._lock:
            self.calls += 1
        return getattr(self.iam, op)(**kw)

    # ---- per-user operations --------------------------------------------------------

    def op(self, user: str, what: str, arg=None, path: str = "/", tags=None) -> None:
        if what == "user":
            self.call(
                "create_user",
                UserName=user,
                Path=path,
                Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
            )
        elif what == "password":
            self.call("create_login_profile", UserName=user, Password=DEMO_PASSWORD)
        elif what == "mfa":
            dev = self.call("create_virtual_mfa_device", VirtualMFADeviceName=f"{user}-mfa")
            self.call(
                "enable_mfa_device",
                UserName=user,
                SerialNumber=dev["VirtualMFADevice"]["SerialNumber"],
                AuthenticationCode1="123456",
                AuthenticationCode2="654321",
            )
        elif what == "key":
            out = self.call("create_access_key", UserName=user)["AccessKey"]
            with self._lock:
                self.keys[(user, arg)] = out["AccessKeyId"]
                self._secrets[out["AccessKeyId"]] = out["SecretAccessKey"]
        elif what == "use":
            self.use_key(user, self.keys[(user, arg)])
        elif what == "deactivate":
            self.call(
                "update_access_key",
                UserName=user,
                AccessKeyId=self.keys[(user, arg)],
                Status="Inactive",
            )
        elif what == "delete-key":
            self.call("delete_access_key", UserName=user, AccessKeyId=self.keys[(user, arg)])
        elif what == "group":
            self.call("add_user_to_group", UserName=user, GroupName=arg)
        elif what == "leave-baseline-groups":
            groups = self.call("list_groups_for_user", UserName=user)["Groups"]
            for g in groups:
                if g["GroupName"].startswith(BASELINE_GROUP_PREFIX):
                    self.call("remove_user_from_group", UserName=user, GroupName=g["GroupName"])
        else:
            raise ValueError(f"unknown operation {what}")

    def run_timeline(self, clock: Clock, users: list[dict]) -> None:
        """users: {name, path, tags, created, events: [(day, op, arg)]}. Runs one clock
        phase at a time (oldest first), the users of a phase in parallel and the
        operations of one user in order."""
        phases: dict[int, dict[str, list]] = {}
        for u in users:
            ops = [(u["created"], "user", None)] + sorted(u.get("events", []), key=lambda e: e[0])
            for day, what, arg in ops:
                if day < u["created"]:
                    raise ValueError(f"{u['name']}: {what} at {day}d before the user exists")
                phases.setdefault(day, {}).setdefault(u["name"], []).append((what, arg))
        by_name = {u["name"]: u for u in users}
        with ThreadPoolExecutor(self.workers) as pool:
            for day in sorted(phases):
                clock.set(day)

                def run(item, _by=by_name):
                    name, ops = item
                    u = _by[name]
                    for what, arg in ops:
                        try:
                            self.op(name, what, arg, path=u.get("path", "/"), tags=u.get("tags"))
                        except Exception as e:  # say who and what, then stop
                            raise RuntimeError(f"{what} for user {name!r}: {e}") from e

                list(pool.map(run, phases[day].items()))
        clock.set(0)

    def run_parallel(self, fn, items) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(fn, items))


# ---- the demo account ------------------------------------------------------------------


def human(name, path="/engineering/", created=-30, mfa=True, tagged=True, extra=(), groups=(), access="console"):
    ev = [(created, "password", None)]
    if mfa:
        ev.append((created, "mfa", None))
    ev += [(created, "group", g) for g in groups]
    ev += list(extra)
    tags = {ACCESS_TAG: access} if tagged else {}
    return {"name": name, "path": path, "tags": tags, "created": created, "events": ev}


def service(name, keys, path="/svc/", created=None, tagged=True, extra=(), tags=None):
    """keys: [(label, created_day, used_day or None, active)]"""
    created = min([k[1] for k in keys] + [created if created is not None else 0])
    ev = []
    for label, kday, used, active in keys:
        ev.append((kday, "key", label))
        if used is not None:
            ev.append((used, "use", label))
        if not active:
            ev.append((max(kday, used or kday), "deactivate", label))
    ev += list(extra)
    t = dict(tags or {})
    if tagged:
        t.setdefault(ACCESS_TAG, "programmatic")
    return {"name": name, "path": path, "tags": t, "created": created, "events": ev}


def demo_users(aged: bool) -> list[dict]:
    """34 users. Comments say what iam-warden makes of each with the demo config (MFA
    policy for console users, source-IP policy for everyone, break-glass exempt)."""
    d = (lambda days: days) if aged else (lambda days: 0)
    users = [
        # Humans with a password and MFA: they only need the baseline groups.
        human("alice.nguyen@example.com", groups=["developers"]),
        human("bob.martin@example.com", groups=["developers"]),
        human("erin_obrien", path="/finance/", created=d(-20)),
        human("heidi,lee", path="/engineering/data/", groups=["developers"]),
        human("niaj.patel@example.com", path="/engineering/data/", groups=["developers"]),
        human("olivia-ops", path="/ops/", groups=["ops"]),
        human("peggy.sue@example.com", path="/ops/", groups=["ops"]),
        human("quinn.roe@example.com", created=d(-5)),
        # Humans without MFA: console-without-mfa (critical). iam-warden cannot enrol MFA
        # for them; the deny-unless-MFA policy it adds blocks them until they do.
        human("carol.diaz@example.com", mfa=False, groups=["developers"]),
        human("frank=contractor", path="/contractors/", mfa=False, created=d(-10)),
        human("trent.w@example.com", mfa=False, tagged=False),  # class derived: console
        # Console users who never signed in: console-unused, the password is removed.
        human("ivan.petrov@example.com", mfa=False, created=d(-120)),
        human("mallory+audit@example.com", path="/contractors/", mfa=True, created=d(-60)),
        # An admin who works through the CLI: an old key in daily use (key-too-old, rotate
        # by hand) and a console password unused for 400 days (console-unused, removed).
        human(
            "dave+admin@example.com",
            path="/",
            created=d(-400),
            groups=["admins"],
            access="both",
            extra=[(d(-200), "key", "k1"), (d(-1), "use", "k1")],
        ),
        # A console-only human with an access key: keys-on-console-user.
        human(
            "judy.kim@example.com",
            extra=[(d(-10), "key", "k1"), (d(-2), "use", "k1")],
        ),
        # A new hire with no credentials yet (derived programmatic: source-IP policy only).
        {"name": "rupert.t", "path": "/engineering/", "tags": {}, "created": 0, "events": []},
        # Service users.
        service("svc-ci-deployer", [("k1", d(-20), d(-1), True)]),
        service("svc-metrics-exporter", [("k1", d(-40), d(0), True)]),
        service("svc-log-shipper", [("k1", d(-30), d(-1), True)]),
        service("svc.github-actions", [("k1", d(-80), d(0), True)]),
        service("svc-mobile-push", [("k1", d(-15), d(-3), True)], path="/svc/mobile/"),
        service("svc-search-indexer", [("k1", d(-7), d(-1), True)]),
        service("svc-k8s-external-dns", [("k1", d(-25), d(-3), True)], path="/svc/k8s/"),
        service("svc-data-sync", [("k1", d(-12), d(-1), True)], tagged=False),
        # key-too-old but in use: a finding, never auto-fixed (rotation needs the owner).
        service("svc-backup", [("k1", d(-150), d(-1), True)]),
        # Unused keys: key-unused; deactivated (by id, after a live last-use check) and
        # tagged iam-warden/inactive-since/<KeyId>, deleted 30 days later.
        service("svc-legacy-sftp", [("k1", d(-200), None, True)]),
        service("svc-reporting", [("k1", d(-60), None, True)]),
        service("svc_alerting", [("k1", d(-50), d(-50), True)]),
        # Two active keys mid-rotation: two-active-keys (and the old one is too old).
        service("svc-terraform", [("k1", d(-100), d(-30), True), ("k2", d(-5), d(-1), True)]),
        # An inactive key left behind: gets the inactive-since tag, deleted 30 days later.
        service("svc-old-etl", [("k1", d(-200), d(-100), False)]),
        # A service user with a console password: console-on-programmatic-user, removed.
        service(
            "svc-payments@prod",
            [("k1", d(-10), d(0), True)],
            extra=[(d(-10), "password", None)],
        ),
        # Untagged, keys and a password: derived "both", no MFA.
        service(
            "svc-jenkins",
            [("k1", d(-30), d(-1), True)],
            tagged=False,
            path="/",
            extra=[(d(-30), "password", None)],
        ),
        # Exempt by tag: an SSO bridge managed elsewhere (old key, untouched).
        service(
            "aws-sso-bridge",
            [("k1", d(-300), d(-1), True)],
            path="/system/",
            tags={EXEMPT_TAG: "true"},
        ),
    ]
    # The break-glass user: password, no MFA, an old key; exempt by the demo config's
    # exemptions.users, never touched.
    bg = human("break-glass", path="/break-glass/", mfa=False, created=d(-365), tagged=False)
    bg["events"].append((d(-365), "key", "k1"))
    users.append(bg)
    return users


def seed_demo(s: Seeder, clock: Clock) -> dict:
    # Account-level state first: pre-existing groups and a weak password policy.
    s.call(
        "update_account_password_policy",
        MinimumPasswordLength=8,
        RequireNumbers=True,
        AllowUsersToChangePassword=True,
    )
    readonly = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}],
        }
    )
    pol = s.call("create_policy", PolicyName="developers-read-only", PolicyDocument=readonly)
    for g in ("developers", "admins", "ops"):
        s.call("create_group", GroupName=g)
    s.call("attach_group_policy", GroupName="developers", PolicyArn=pol["Policy"]["Arn"])
    users = demo_users(clock.available)
    s.run_timeline(clock, users)
    return {"users": len(users), "aged": clock.available}


# ---- benchmark accounts ----------------------------------------------------------------

FIRST = ["alex", "sam", "kim", "lee", "noor", "ola", "pat", "ravi", "sol", "tess", "uma", "vic"]
TEAMS = ["engineering", "data", "ops", "finance", "sales"]
APPS = ["api", "etl", "ci", "backup", "sync", "exporter", "worker", "cron", "indexer"]


def bench_users(n: int, rng: random.Random, aged: bool) -> list[dict]:
    users = []
    for i in range(n):
        if i % 10 < 3:  # 30 % humans: password + MFA
            name = f"{rng.choice(FIRST)}.{i:05d}+{rng.choice(TEAMS)}@example.com"
            u = human(name, path=f"/{rng.choice(TEAMS)}/", created=0)
        else:  # 70 % service users with one key, used recently when ages are available
            name = f"svc-{rng.choice(APPS)}_{i:05d}=prod"
            if aged:
                kday = -rng.choice([80, 60, 40, 20, 0])
                keys = [("k1", kday, -1 if kday < 0 else 0, True)]
            else:
                keys = [("k1", 0, None, True)]
            u = service(name, keys, path=f"/svc/{rng.choice(APPS)}/")
        if i % 100 == 99:  # 1 % exempt by tag
            u["tags"][EXEMPT_TAG] = "true"
        users.append(u)
    return users


def run_warden(bin_path: str, cfg: str) -> dict:
    env = dict(os.environ)
    env.update(
        IAM_WARDEN_MODE="enforce",
        IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND="100",
        IAM_WARDEN_CONTROLLER__WRITE_BURST="1000",
    )
    cmd = [bin_path, "--config", cfg, "enforce", "--once", "--confirm-large-change", "--output", "json"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise RuntimeError(f"baseline enforce exited {p.returncode}: {' '.join(cmd)}")
    return json.loads(p.stdout)


def seed_bench(s: Seeder, clock: Clock, n: int, drift: float, seed: int, warden, warden_cfg) -> dict:
    rng = random.Random(seed)
    users = bench_users(n, rng, clock.available)
    t0 = time.monotonic()
    s.run_timeline(clock, users)
    out = {"users": n, "seed_seconds": round(time.monotonic() - t0, 2)}
    if warden:
        t1 = time.monotonic()
        r = run_warden(warden, warden_cfg)
        out["baseline_enforce"] = {
            "seconds": round(time.monotonic() - t1, 2),
            "aws_calls": r.get("aws_calls"),
            "aws_write_calls": r.get("aws_write_calls"),
        }
    # Drift, on users that are not exempt.
    candidates = [u for u in users if u["tags"].get(EXEMPT_TAG) != "true"]
    k = min(len(candidates), round(n * drift))
    chosen = rng.sample(candidates, k)
    kinds = {"leave-baseline-groups": 0, "console-password": 0, "unused-key": 0, "second-key": 0}
    plan = []
    flip = 0
    for u in chosen:
        if u["tags"].get(ACCESS_TAG) == "console":
            plan.append((u["name"], "leave-baseline-groups"))
        else:
            flip ^= 1
            if flip:
                plan.append((u["name"], "console-password"))
            else:
                plan.append((u["name"], "unused-key" if clock.available else "second-key"))
    for _, kind in plan:
        kinds[kind] += 1

    def early(item):
        name, kind = item
        if kind == "unused-key":
            s.op(name, "delete-key", "k1")
            s.op(name, "key", "k2")

    def late(item):
        name, kind = item
        if kind == "leave-baseline-groups":
            s.op(name, "leave-baseline-groups")
        elif kind == "console-password":
            s.op(name, "password")
        elif kind == "second-key":
            s.op(name, "key", "k2")

    t2 = time.monotonic()
    if kinds["unused-key"]:
        clock.set(-60)  # a replacement key created 60 days ago and never used
        s.run_parallel(early, plan)
        clock.set(0)
    s.run_parallel(late, plan)
    out["drift"] = {"users": k, "fraction": drift, "kinds": {k2: v for k2, v in kinds.items() if v}}
    out["drift_seconds"] = round(time.monotonic() - t2, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"), help="moto's URL (default: AWS_ENDPOINT_URL)")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--demo", action="store_true", help="the demo account (34 users)")
    mode.add_argument("--users", type=int, help="benchmark: this many users")
    ap.add_argument("--drift", type=float, default=0.0, help="benchmark: fraction of users that drift (0..1)")
    ap.add_argument("--faketime-file", help="libfaketime timestamp file of the moto process")
    ap.add_argument("--warden", help="benchmark: iam-warden binary that enforces the baseline before the drift")
    ap.add_argument("--warden-config", help="its config file")
    ap.add_argument("--workers", type=int, default=8, help="parallel requests (default 8)")
    ap.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    a = ap.parse_args()

    if not a.endpoint:
        ap.error("--endpoint (or AWS_ENDPOINT_URL) is required")
    u = urlparse(a.endpoint)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost", "::1"):
        ap.error(f"--endpoint {a.endpoint} is not a loopback http:// URL; this only seeds a local emulator")
    if a.users is not None and a.users < 1:
        ap.error("--users must be at least 1")
    if not 0.0 <= a.drift <= 1.0:
        ap.error("--drift must be between 0 and 1")
    if bool(a.warden) != bool(a.warden_config):
        ap.error("--warden and --warden-config go together")

    clock = Clock(a.faketime_file)
    s = Seeder(a.endpoint, a.workers)
    t0 = time.monotonic()
    try:
        if a.demo:
            out = seed_demo(s, clock)
        else:
            out = seed_bench(s, clock, a.users, a.drift, a.seed, a.warden, a.warden_config)
    except Exception as e:
        if clock.available:
            clock.set(0)
        log(f"error: {e}")
        return 1
    out["seed_calls"] = s.calls
    out["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
