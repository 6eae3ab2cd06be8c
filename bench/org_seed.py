#!/usr/bin/env python3
"""Seed an emulated AWS Organization (moto) for the organization benchmark (bench/org.sh).

    org_seed.py --endpoint URL --accounts N --users M [--drift F]
                [--warden BIN --warden-config CFG] [--workers W] [--seed S]

Only loopback http:// endpoints are accepted: this never talks to real AWS. The management
account is moto's default account 123456789012 (static test credentials `testing`). It
creates the organization (CreateOrganization, all features) and N member accounts
(CreateAccount), then seeds M users in each member account through that account's own
credentials: moto's AssumeRole into arn:aws:iam::ID:role/... answers credentials of
account ID (moto lets any role be assumed). The users are bench/seed.py's benchmark users
(70 % service users with a key, 30 % people with a password and MFA, 1 % exempt by tag).

With --warden, `iam-warden enforce --once --confirm-large-change` (mode enforce) over the
whole organization (the config must say accounts.source = "organization") brings every
account onto the baseline, then round(M*F) users of each account drift (people leave the
baseline groups, service users get a console password or a second key). Prints a JSON
summary on stdout: the member account ids and the seeding times.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed import ACCESS_TAG, EXEMPT_TAG, Clock, Seeder, bench_users, run_warden  # noqa: E402

MANAGEMENT = "123456789012"
SEED_ROLE = "OrganizationAccountAccessRole"


def log(msg: str) -> None:
    print(f"org_seed: {msg}", file=sys.stderr, flush=True)


def session(creds: dict | None = None) -> boto3.session.Session:
    if creds is None:
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )


def create_organization(endpoint: str, n: int, cfg: Config) -> list[str]:
    org = session().client("organizations", endpoint_url=endpoint, config=cfg)
    org.create_organization(FeatureSet="ALL")
    ids = []
    for i in range(n):
        st = org.create_account(AccountName=f"bench-{i:04d}", Email=f"bench-{i:04d}@example.com")
        st = st["CreateAccountStatus"]
        if st.get("State") != "SUCCEEDED":
            raise RuntimeError(f"CreateAccount bench-{i:04d}: {st.get('State')} {st.get('FailureReason', '')}")
        ids.append(st["AccountId"])
    return ids


class AccountSeeder(Seeder):
    """bench/seed.py's Seeder, signing with one member account's assumed-role credentials."""

    def __init__(self, endpoint: str, workers: int, creds: dict):
        super().__init__(endpoint, workers)
        self.iam = session(creds).client("iam", endpoint_url=endpoint, config=self.config)


def assume(endpoint: str, account: str, cfg: Config) -> dict:
    sts = session().client("sts", endpoint_url=endpoint, config=cfg)
    out = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{SEED_ROLE}", RoleSessionName="seed")
    return out["Credentials"]


def drift(s: Seeder, users: list[dict], n: int, rng: random.Random) -> dict:
    """round(n) users leave the baseline: people leave the baseline groups, service users
    alternately get a console password or a second key (no clock: no aged keys)."""
    candidates = [u for u in users if u["tags"].get(EXEMPT_TAG) != "true"]
    chosen = rng.sample(candidates, min(len(candidates), n))
    kinds = {"leave-baseline-groups": 0, "console-password": 0, "second-key": 0}
    plan = []
    flip = 0
    for u in chosen:
        if u["tags"].get(ACCESS_TAG) == "console":
            plan.append((u["name"], "leave-baseline-groups"))
        else:
            flip ^= 1
            plan.append((u["name"], "console-password" if flip else "second-key"))
    for _, k in plan:
        kinds[k] += 1

    def one(item):
        name, kind = item
        if kind == "leave-baseline-groups":
            s.op(name, "leave-baseline-groups")
        elif kind == "console-password":
            s.op(name, "password")
        else:
            s.op(name, "key", "k2")

    s.run_parallel(one, plan)
    return {k: v for k, v in kinds.items() if v}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"), help="moto's URL (default: AWS_ENDPOINT_URL)")
    ap.add_argument("--accounts", type=int, required=True, help="member accounts to create")
    ap.add_argument("--users", type=int, required=True, help="users in each member account")
    ap.add_argument("--drift", type=float, default=0.0, help="fraction of each account's users that drift (0..1)")
    ap.add_argument("--warden", help="iam-warden binary that enforces the baseline before the drift")
    ap.add_argument("--warden-config", help="its config file (accounts.source = \"organization\")")
    ap.add_argument("--workers", type=int, default=8, help="parallel requests (default 8)")
    ap.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    a = ap.parse_args()
    if not a.endpoint:
        ap.error("--endpoint (or AWS_ENDPOINT_URL) is required")
    u = urlparse(a.endpoint)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost", "::1"):
        ap.error(f"--endpoint {a.endpoint} is not a loopback http:// URL; this only seeds a local emulator")
    if a.accounts < 1 or a.users < 1:
        ap.error("--accounts and --users must be at least 1")
    if not 0.0 <= a.drift <= 1.0:
        ap.error("--drift must be between 0 and 1")
    if bool(a.warden) != bool(a.warden_config):
        ap.error("--warden and --warden-config go together")

    cfg = Config(region_name="us-east-1", retries={"mode": "standard", "max_attempts": 3}, read_timeout=120)
    clock = Clock(None)
    rng = random.Random(a.seed)
    out: dict = {"management_account": MANAGEMENT, "users_per_account": a.users}
    t0 = time.monotonic()
    try:
        ids = create_organization(a.endpoint, a.accounts, cfg)
        out["accounts"] = ids
        out["organization_seconds"] = round(time.monotonic() - t0, 2)
        log(f"organization with {len(ids)} member accounts in {out['organization_seconds']} s")

        t1 = time.monotonic()
        seeders: dict[str, AccountSeeder] = {}
        users: dict[str, list[dict]] = {}
        calls = 0
        for i, acct in enumerate(ids):
            s = AccountSeeder(a.endpoint, a.workers, assume(a.endpoint, acct, cfg))
            users[acct] = bench_users(a.users, rng, False)
            s.run_timeline(clock, users[acct])
            seeders[acct] = s
            if (i + 1) % 10 == 0 or i + 1 == len(ids):
                log(f"{i + 1}/{len(ids)} accounts seeded ({round(time.monotonic() - t1)} s)")
        out["seed_seconds"] = round(time.monotonic() - t1, 2)

        if a.warden:
            t2 = time.monotonic()
            r = run_warden(a.warden, a.warden_config)
            out["baseline_enforce"] = {
                "seconds": round(time.monotonic() - t2, 2),
                "aws_calls": r.get("aws_calls"),
                "aws_write_calls": r.get("aws_write_calls"),
                "errors": r.get("errors"),
            }
            log(f"baseline enforce over the organization in {out['baseline_enforce']['seconds']} s")

        t3 = time.monotonic()
        n = round(a.users * a.drift)
        kinds: dict[str, int] = {}

        def drift_one(acct):
            return drift(seeders[acct], users[acct], n, random.Random(f"{a.seed}-{acct}"))

        if n:
            with ThreadPoolExecutor(2) as pool:
                for k in pool.map(drift_one, ids):
                    for kind, v in k.items():
                        kinds[kind] = kinds.get(kind, 0) + v
        out["drift"] = {"users_per_account": n, "fraction": a.drift, "kinds": kinds}
        out["drift_seconds"] = round(time.monotonic() - t3, 2)
        for s in seeders.values():
            calls += s.calls
        out["seed_calls"] = calls + 1 + 2 * len(ids)
    except Exception as e:
        log(f"error: {e}")
        return 1
    out["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
