"""Generate CloudTrail log files as S3 delivers them for bench/impact.sh.

Usage: impact-gen.py DIR --records N --per-file M --account ID --users U
Writes DIR/AWSLogs/ID/CloudTrail/us-east-1/2026/01/DD/*.json.gz, each {"Records": [...]}
of about 1 KB records: IAM users' long-term-key calls and MFA sessions from a pool of
addresses (IPv4 and IPv6), calls through VPC endpoints, calls AWS services make for users,
role sessions. Deterministic (seeded). Two processes.
"""

import argparse
import gzip
import json
import os
import random
import uuid
from multiprocessing import Pool

ACTIONS = [
    ("s3.amazonaws.com", "GetObject"), ("s3.amazonaws.com", "ListBuckets"),
    ("ec2.amazonaws.com", "DescribeInstances"), ("iam.amazonaws.com", "GetUser"),
    ("sts.amazonaws.com", "GetCallerIdentity"), ("kms.amazonaws.com", "Decrypt"),
    ("dynamodb.amazonaws.com", "DescribeTable"), ("lambda.amazonaws.com", "ListFunctions20150331"),
]


def record(rng, a, users, addrs, day):
    src, name = rng.choice(ACTIONS)
    user = rng.choice(users)
    kind = rng.random()
    ident = {
        "type": "IAMUser", "principalId": "AIDA" + "X" * 17, "userName": user,
        "arn": f"arn:aws:iam::{a.account}:user/{user}", "accountId": a.account,
        "accessKeyId": "AKIA" + "Y" * 16,
    }
    r = {
        "eventVersion": "1.09", "userIdentity": ident,
        "eventTime": f"2026-01-{day:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
        "eventSource": src, "eventName": name, "awsRegion": "us-east-1",
        "sourceIPAddress": rng.choice(addrs),
        "userAgent": "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-aws exe/x86_64.ubuntu.22 prompt/off command/" + name.lower(),
        "requestParameters": {"bucketName": "example-bucket-" + str(rng.randint(0, 99)), "key": "path/to/object/" + uuid.UUID(int=rng.getrandbits(128)).hex},
        "responseElements": None,
        "requestID": uuid.UUID(int=rng.getrandbits(128)).hex.upper()[:16],
        "eventID": str(uuid.UUID(int=rng.getrandbits(128))),
        "readOnly": True, "eventType": "AwsApiCall", "managementEvent": True,
        "recipientAccountId": a.account, "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": src},
    }
    if kind < 0.20:
        ident["accessKeyId"] = "ASIA" + "Z" * 16
        ident["sessionContext"] = {"sessionIssuer": {}, "attributes": {"creationDate": r["eventTime"], "mfaAuthenticated": "true"}}
    elif kind < 0.25:
        r["vpcEndpointId"] = f"vpce-0{rng.randint(0, 3)}a1b2c3d4e5f6789"
        r["sourceIPAddress"] = f"10.0.{rng.randint(0, 3)}.{rng.randint(1, 254)}"
    elif kind < 0.30:
        ident["invokedBy"] = "cloudformation.amazonaws.com"
        r["sourceIPAddress"] = "cloudformation.amazonaws.com"
    elif kind < 0.35:
        r["userIdentity"] = {"type": "AssumedRole", "accountId": a.account, "arn": f"arn:aws:sts::{a.account}:assumed-role/app/i-0abc",
                             "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "app"}, "attributes": {"mfaAuthenticated": "false"}}}
    return r


def write_file(job):
    a, i, users, addrs = job
    rng = random.Random(i)
    day = 1 + i % 7
    d = os.path.join(a.dir, "AWSLogs", a.account, "CloudTrail", "us-east-1", "2026", "01", f"{day:02d}")
    os.makedirs(d, exist_ok=True)
    n = min(a.per_file, a.records - i * a.per_file)
    recs = [record(rng, a, users, addrs, day) for _ in range(n)]
    body = json.dumps({"Records": recs}, separators=(",", ":")).encode()
    with gzip.open(os.path.join(d, f"{a.account}_CloudTrail_us-east-1_{i:06d}.json.gz"), "wb", compresslevel=6) as f:
        f.write(body)
    return n, len(body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--per-file", type=int, default=2000)
    p.add_argument("--account", default="123456789012")
    p.add_argument("--users", type=int, default=50)
    a = p.parse_args()
    rng = random.Random(7)
    users = [f"user{i}" for i in range(a.users)]
    addrs = [f"198.51.{rng.randint(0, 40)}.{rng.randint(1, 254)}" for _ in range(1500)]
    addrs += [f"203.0.113.{rng.randint(1, 254)}" for _ in range(300)]
    addrs += [f"2001:db8:{rng.randint(0, 20):x}::{rng.randint(1, 9999):x}" for _ in range(200)]
    files = (a.records + a.per_file - 1) // a.per_file
    with Pool(2) as pool:
        done = pool.map(write_file, [(a, i, users, addrs) for i in range(files)], chunksize=4)
    n = sum(d[0] for d in done)
    size = sum(d[1] for d in done)
    print(json.dumps({"records": n, "files": files, "uncompressed_bytes": size, "bytes_per_record": round(size / max(n, 1))}))


if __name__ == "__main__":
    main()
