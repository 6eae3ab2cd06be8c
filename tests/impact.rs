//! `iam-warden impact`: trail files (good, truncated, not gzip), the real CloudTrail
//! fixtures, and the command against moto through the cloudtrail-recorder, with calls made
//! as users from chosen addresses, with and without MFA, through a VPC endpoint, invoked by
//! a service, over IPv6. The report's numbers must be the ones the test made.

use crate::support;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_credential_types::Credentials;
use flate2::write::GzEncoder;
use iam_warden::baseline::impact::{evaluate, Outcome, Record, Rules, Skip, Tally, UserScope};
use iam_warden::config::{AccessClass, AppliesTo, Config};
use iam_warden::sources::trail::replay_dir;
use serde_json::{json, Value};
use support::lab::spawn_warden;
use support::recorder::Recorder;
use support::{shared_moto, Account};

const ACCT: &str = "111122223333";

fn record(user: &str, ip: &str, time: &str) -> Value {
    json!({
        "eventVersion": "1.09", "eventTime": time, "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets", "eventType": "AwsApiCall", "sourceIPAddress": ip,
        "recipientAccountId": ACCT, "readOnly": true,
        "userIdentity": {"type": "IAMUser", "userName": user, "accountId": ACCT,
            "arn": format!("arn:aws:iam::{ACCT}:user/{user}"),
            "accessKeyId": concat!("AKIA", "EXAMPLEEXAMPLE01")}
    })
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn trail_file(records: &[Value]) -> Vec<u8> {
    json!({ "Records": records }).to_string().into_bytes()
}

fn rules(cfg: &Config, acct: &str) -> Rules {
    Rules::from_config(cfg, acct).unwrap()
}

fn sip_cfg() -> Config {
    let mut cfg = Config::default();
    cfg.baseline.mfa_policy.applies_to = AppliesTo::All;
    cfg.baseline.source_ip_policy.enabled = true;
    cfg.baseline.source_ip_policy.allowed_cidrs = vec!["203.0.113.0/24".into()];
    cfg
}

#[test]
fn trail_files_good_truncated_and_not_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir
        .path()
        .join("AWSLogs")
        .join(ACCT)
        .join("CloudTrail/us-east-1/2026/01/05");
    std::fs::create_dir_all(&deep).unwrap();
    let a: Vec<Value> = (0..30)
        .map(|i| {
            record(
                "alice",
                "198.51.100.7",
                &format!("2026-01-05T10:00:{i:02}Z"),
            )
        })
        .collect();
    let b: Vec<Value> = (0..5)
        .map(|i| record("bob", "203.0.113.9", &format!("2026-01-06T10:00:0{i}Z")))
        .collect();
    std::fs::write(deep.join("a.json.gz"), gz(&trail_file(&a))).unwrap();
    std::fs::write(dir.path().join("b.json"), trail_file(&b)).unwrap();
    let whole = gz(&trail_file(&a));
    std::fs::write(deep.join("truncated.json.gz"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(deep.join("plain.json.gz"), trail_file(&a)).unwrap();
    std::fs::write(deep.join("notes.txt"), "not a trail file").unwrap();

    let users: HashMap<String, UserScope> = ["alice", "bob"]
        .iter()
        .map(|u| {
            (
                u.to_string(),
                UserScope {
                    class: AccessClass::Programmatic,
                    exempt: false,
                },
            )
        })
        .collect();
    let r = rules(&sip_cfg(), ACCT);
    let (tallies, stats) = replay_dir(dir.path(), 2, Tally::default, |t, rec| {
        t.add(&evaluate(rec, &users, &r))
    })
    .unwrap();
    let mut t = Tally::default();
    for x in tallies {
        t.merge(x);
    }
    assert_eq!(stats.files, 4, "{stats:?}");
    let skipped: Vec<(String, String)> = stats
        .skipped
        .iter()
        .map(|s| {
            let name = Path::new(&s.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, s.error.clone())
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|(n, e)| n == "truncated.json.gz" && e.contains("gzip")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|(n, e)| n == "plain.json.gz" && e.contains("gzip")),
        "{skipped:?}"
    );
    assert_eq!((t.records, t.calls, t.denied), (35, 35, 35));
    assert_eq!(t.users["alice"].denied, 30);
    assert_eq!(
        t.users["bob"].denied, 5,
        "long-term keys: no MFA (applies_to all)"
    );
    assert_eq!(t.first.as_deref(), Some("2026-01-05T10:00:00Z"));
    assert_eq!(t.last.as_deref(), Some("2026-01-06T10:00:04Z"));

    // An empty directory is an error, not an empty report.
    let empty = tempfile::tempdir().unwrap();
    let e = replay_dir(empty.path(), 2, Tally::default, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no CloudTrail log files") && !e.contains('\n'),
        "{e}"
    );
}

/// The real CloudTrail records beside the crate (see tests/recorder.rs).
fn fixtures_dir() -> PathBuf {
    std::env::var_os("IAM_WARDEN_CLOUDTRAIL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cloudtrail-real")
        })
}

#[test]
fn real_records_are_judged_or_skipped_by_reason() {
    let dir = fixtures_dir();
    if !dir.is_dir() {
        eprintln!(
            "NOTICE: {} is missing; skipping the real CloudTrail records",
            dir.display()
        );
        return;
    }
    let cfg = sip_cfg();
    let mut judged = 0;
    let mut by_skip: HashMap<Skip, usize> = HashMap::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        files += 1;
        let records: Vec<Record> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for r in &records {
            let acct = r.recipient_account_id.clone().unwrap();
            let users: HashMap<String, UserScope> = [(
                "christophe".to_string(),
                UserScope {
                    class: AccessClass::Programmatic,
                    exempt: false,
                },
            )]
            .into();
            // The records of another account are never judged.
            assert_eq!(
                evaluate(r, &users, &rules(&cfg, "000000000000")),
                Outcome::Skip(Skip::OtherAccount)
            );
            match evaluate(r, &users, &rules(&cfg, &acct)) {
                Outcome::Call(c) => {
                    judged += 1;
                    // Long-term key (AKIA, no session): no MFA; addresses outside 203.0.113.0/24.
                    assert!(
                        c.mfa_denied.is_some() && c.source_ip_denied.is_some(),
                        "{c:?}"
                    );
                }
                Outcome::Skip(s) => *by_skip.entry(s).or_insert(0) += 1,
            }
        }
    }
    if files == 0 {
        eprintln!("NOTICE: no fixtures in {}; skipping", dir.display());
        return;
    }
    // The publisher anonymised some addresses into invalid ones ("211.9.016.253",
    // "075.050.255.67"): counted as hostname-address, never judged as an address.
    assert_eq!(by_skip.get(&Skip::HostnameAddress), Some(&4), "{by_skip:?}");
    assert_eq!(judged, 4);
}

/// A user's IAM client through the recorder, its calls marked by x-test-* headers.
struct Caller {
    iam: aws_sdk_iam::Client,
}

impl Caller {
    async fn new(rec: &Recorder, acct: &Account, user: &str) -> Caller {
        let k = acct
            .iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .unwrap();
        let k = k.access_key().unwrap();
        let creds = Credentials::from_keys(k.access_key_id(), k.secret_access_key(), None);
        Caller {
            iam: rec.iam_with(acct, creds),
        }
    }

    async fn call(&self, n: usize, headers: &[(&'static str, &str)]) {
        for _ in 0..n {
            let hs: Vec<(&'static str, String)> =
                headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
            self.iam
                .list_groups()
                .customize()
                .mutate_request(move |r| {
                    for (k, v) in &hs {
                        r.headers_mut().insert(*k, v.clone());
                    }
                })
                .send()
                .await
                .unwrap();
        }
    }
}

fn impact_cli(acct: &Account, dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let cfg = dir.join("impact.toml").to_string_lossy().into_owned();
    let mut all = vec!["--config", cfg.as_str()];
    all.extend_from_slice(args);
    let o = spawn_warden(&all, acct, dir, &acct.endpoint, &[], None)
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (o.status.code().unwrap_or(-1), v, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_counts_what_the_users_did() {
    let rec = Recorder::start_with(shared_moto(), "0", &["--record-reads"]);
    let acct = Account::new(shared_moto()).await;
    acct.user_at("dev", "/", &[("iam-warden/access", "both")])
        .await;
    acct.password("dev").await;
    acct.user_at("ci", "/", &[("iam-warden/access", "programmatic")])
        .await;
    acct.user_at("v6", "/", &[("iam-warden/access", "programmatic")])
        .await;
    acct.user_at("ops", "/", &[("iam-warden/exempt", "true")])
        .await;
    acct.password("ops").await;
    let (dev, ci, v6, ops) = (
        Caller::new(&rec, &acct, "dev").await,
        Caller::new(&rec, &acct, "ci").await,
        Caller::new(&rec, &acct, "v6").await,
        Caller::new(&rec, &acct, "ops").await,
    );
    const IP: &str = "x-test-source-ip";
    // dev (console and keys; the MFA policy covers console users by default):
    dev.call(3, &[(IP, "198.51.100.7")]).await; // no MFA, outside: denied twice over
    dev.call(2, &[(IP, "203.0.113.5"), ("x-test-mfa", "true")])
        .await; // fine
    dev.call(
        1,
        &[
            (IP, "10.0.0.5"),
            ("x-test-mfa", "true"),
            ("x-test-vpce", "vpce-0123abcd"),
        ],
    )
    .await; // no aws:SourceIp through an endpoint: denied
            // ci (programmatic: not under the MFA policy):
    ci.call(2, &[(IP, "203.0.113.20")]).await; // fine
    ci.call(
        1,
        &[
            (IP, "198.51.100.9"),
            ("x-test-invoked-by", "cloudformation.amazonaws.com"),
        ],
    )
    .await; // aws:ViaAWSService: fine
    ci.call(2, &[(IP, "2001:db8:ffff::1")]).await; // IPv6 outside: denied
    v6.call(2, &[(IP, "2a00:1450::1")]).await; // every call denied: locked out
    ops.call(1, &[(IP, "198.51.100.7")]).await; // exempt: fine

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("impact.toml"),
        format!(
            "[baseline.source_ip_policy]\nenabled = true\nallowed_cidrs = [\"203.0.113.0/24\"]\n\
             [sources.cloudtrail]\nendpoint_url = \"{}\"\n",
            rec.url
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, r, stderr) = impact_cli(
        &acct,
        dir.path(),
        &["impact", "--output", "json", "--suggest-networks"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(started.elapsed().as_secs() < 20);
    let expect_summary = |r: &Value| {
        let s = &r["summary"];
        assert_eq!(s["calls"], 14, "{s}");
        assert_eq!(s["denied"], 8, "{s}");
        assert_eq!(s["users_seen"], 4);
        assert_eq!(s["users_denied"], 3);
        assert_eq!(s["locked_out"], json!(["v6"]));
        assert_eq!(
            s["by_reason"],
            json!({"no-mfa": 3, "outside-networks": 3, "ipv6": 4, "vpc-endpoint": 1})
        );
        assert_eq!(s["by_policy"], json!({"mfa": 3, "source-ip": 8}));
        let users: HashMap<String, &Value> = r["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u["user"].as_str().unwrap().to_string(), u))
            .collect();
        assert_eq!(
            (
                users["dev"]["calls"].as_u64(),
                users["dev"]["denied"].as_u64()
            ),
            (Some(6), Some(4))
        );
        assert_eq!(
            users["dev"]["top_actions"][0],
            json!({"name": "iam:ListGroups", "calls": 4, "denied": 4})
        );
        assert_eq!(
            (
                users["ci"]["calls"].as_u64(),
                users["ci"]["denied"].as_u64()
            ),
            (Some(5), Some(2))
        );
        assert_eq!(users["ops"]["denied"], 0);
        assert_eq!(users["ops"]["exempt"], true);
        assert_eq!(r["break_glass"], json!({"ok": true, "users": ["ops"]}));
    };
    expect_summary(&r);
    // Progress on stderr (not a terminal: lines), with the pace and the time left.
    assert!(
        stderr.contains("impact: 1 pages") && stderr.contains("LookupEvents allows 2 requests/s"),
        "{stderr}"
    );
    assert_eq!(r["source"]["kind"], "lookup-events");
    assert_eq!(r["source"]["days"], 7);
    assert!(r["summary"]["sentence"]
        .as_str()
        .unwrap()
        .starts_with("enabling the baseline as configured would have denied 8 of 14 calls of 4 users over 7 days"));
    let sg = &r["suggestions"];
    let nets: Vec<&str> = sg["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["network"].as_str().unwrap())
        .collect();
    // In scope, from addresses: dev 198.51.100.7 (3), 203.0.113.5 (2); ci 203.0.113.20 (2),
    // 2001:db8:ffff::1 (2); v6 2a00:1450::1 (2). Not: the endpoint, the service, exempt ops.
    assert_eq!(
        nets,
        [
            "203.0.113.0/24",
            "198.51.100.0/24",
            "2001:db8:ffff::/48",
            "2a00:1450::/48"
        ]
    );
    assert_eq!(sg["networks"][0]["users"], 2);
    assert_eq!(sg["networks"][0]["already_allowed"], true);
    assert_eq!(
        sg["allowed_cidrs_toml"],
        "allowed_cidrs = [\"198.51.100.0/24\", \"203.0.113.0/24\", \"2001:db8:ffff::/48\", \"2a00:1450::/48\"]"
    );
    assert_eq!(
        sg["allowed_vpc_endpoints_toml"],
        "allowed_vpc_endpoints = [\"vpce-0123abcd\"]"
    );

    // The same records as trail files (plus a truncated one): the same numbers.
    let (_, records) = rec.recorded(&acct.id).await;
    let trail = dir.path().join("trail");
    std::fs::create_dir_all(&trail).unwrap();
    let (first, second) = records.split_at(records.len() / 2);
    std::fs::write(trail.join("1.json.gz"), gz(&trail_file(first))).unwrap();
    std::fs::write(trail.join("2.json.gz"), gz(&trail_file(second))).unwrap();
    std::fs::write(trail.join("3.json.gz"), &gz(&trail_file(second))[..20]).unwrap();
    let (code, r, stderr) = impact_cli(
        &acct,
        dir.path(),
        &[
            "impact",
            "--output",
            "json",
            "--from",
            trail.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    expect_summary(&r);
    assert_eq!(r["source"]["kind"], "trail-files");
    assert_eq!(r["source"]["files"]["files"], 3);
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("3.json.gz") && warnings.contains("gzip"),
        "{warnings}"
    );

    // The text report says the same.
    let cfg = dir
        .path()
        .join("impact.toml")
        .to_string_lossy()
        .into_owned();
    let o = spawn_warden(
        &[
            "--config",
            &cfg,
            "impact",
            "--suggest-networks",
            "--from",
            trail.to_str().unwrap(),
        ],
        &acct,
        dir.path(),
        &acct.endpoint,
        &[],
        None,
    )
    .wait_with_output()
    .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    for want in [
        "would have denied 8 of 14 calls of 4 users over 1 day\n",
        "locked out completely: v6",
        "v6 (programmatic): 2 of 2 calls denied (locked out)",
        "VPC endpoint vpce-0123abcd: 1 calls",
        "break-glass: ok (ops)",
        "allowed_cidrs = [\"198.51.100.0/24\", \"203.0.113.0/24\", \"2001:db8:ffff::/48\", \"2a00:1450::/48\"]",
        "warning: trail file",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }

    // A window CloudTrail does not keep is a one-line error.
    let o = spawn_warden(
        &["impact", "--since", "91d"],
        &acct,
        dir.path(),
        &acct.endpoint,
        &[],
        None,
    )
    .wait_with_output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("90 days") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// The pre-flight gate (`safety.preview_window`): a user whose recent calls would be
/// denied by the source-IP policy is held by `enforce --once` (not in the group, a journal
/// line, a finding in `plan`); a quiet user and a user with only allowed calls are put
/// under it; the held user goes through once tagged `iam-warden/accept-impact=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_gate_holds_a_user_whose_traffic_would_break() {
    let rec = Recorder::start_with(shared_moto(), "0", &["--record-reads"]);
    let acct = Account::new(shared_moto()).await;
    for u in ["loud", "fine", "quiet"] {
        acct.user_at(u, "/", &[("iam-warden/access", "programmatic")])
            .await;
    }
    let (loud, fine) = (
        Caller::new(&rec, &acct, "loud").await,
        Caller::new(&rec, &acct, "fine").await,
    );
    const IP: &str = "x-test-source-ip";
    loud.call(2, &[(IP, "198.51.100.7")]).await; // outside: denied
    loud.call(1, &[(IP, "203.0.113.5")]).await; // allowed
    fine.call(2, &[(IP, "203.0.113.9")]).await; // allowed only

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("impact.toml"),
        format!(
            "[baseline.source_ip_policy]\nenabled = true\nallowed_cidrs = [\"203.0.113.0/24\"]\n\
             [safety]\npreview_window = \"1h\"\n\
             [sources.cloudtrail]\nendpoint_url = \"{}\"\n",
            rec.url
        ),
    )
    .unwrap();
    let group = Config::default().baseline.source_ip_policy.group;
    let started = std::time::Instant::now();

    // plan: the held change with its counts, and the finding.
    let (code, plan, stderr) = impact_cli(&acct, dir.path(), &["plan", "--output", "json"]);
    assert_eq!(code, 1, "{stderr}");
    let held = plan["held"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{plan}");
    assert_eq!(held[0]["user"], "loud");
    assert_eq!(held[0]["policy"], "source-ip");
    assert_eq!(
        (held[0]["denied"].as_u64(), held[0]["calls"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(held[0]["planned"]["action"], "add_user_to_group");
    let findings = |v: &Value, user: &str| -> Vec<String> {
        v["plan"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["verdict"]["user"] == user)
            .flat_map(|u| u["verdict"]["findings"].as_array().unwrap().clone())
            .filter(|f| f["check"] == "baseline-would-deny")
            .map(|f| f["reason"].as_str().unwrap().to_string())
            .collect()
    };
    let f = findings(&plan, "loud");
    assert_eq!(f.len(), 1, "{plan}");
    assert!(
        f[0].contains("2 of 3 calls of loud in the last 1h")
            && f[0].contains("outside-networks 2")
            && f[0].contains("iam-warden/accept-impact=true"),
        "{}",
        f[0]
    );
    assert!(findings(&plan, "fine").is_empty() && findings(&plan, "quiet").is_empty());
    let cfg = dir.path().join("impact.toml");
    let o = spawn_warden(
        &["--config", cfg.to_str().unwrap(), "plan"],
        &acct,
        dir.path(),
        &acct.endpoint,
        &[],
        None,
    )
    .wait_with_output()
    .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("held by the pre-flight gate (safety.preview_window), not applied:\n  loud: add_user_to_group")
            && text.contains("2 of 3 calls of loud"),
        "{text}"
    );

    // enforce --once: loud held, fine and quiet put under the policy.
    let (code, _, stderr) = impact_cli(
        &acct,
        dir.path(),
        &["enforce", "--once", "--output", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let groups_of = |user: &'static str| {
        let iam = acct.iam.clone();
        async move {
            iam.list_groups_for_user()
                .user_name(user)
                .send()
                .await
                .unwrap()
                .groups()
                .iter()
                .map(|g| g.group_name().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(!groups_of("loud").await.contains(&group));
    assert!(groups_of("fine").await.contains(&group));
    assert!(groups_of("quiet").await.contains(&group));
    let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
    let lines: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["user"] == "loud" && e["action"] == "add_user_to_group")
        .collect();
    assert_eq!(lines.len(), 1, "{journal}");
    assert_eq!(lines[0]["outcome"], "skipped");
    let why = lines[0]["error"].as_str().unwrap();
    assert!(
        why.contains("2 of 3 calls") && why.contains("accept-impact"),
        "{why}"
    );

    // Accepted by the tag: the next pass puts loud under the policy.
    acct.tag("loud", "iam-warden/accept-impact", "true").await;
    let (code, report, stderr) = impact_cli(
        &acct,
        dir.path(),
        &["enforce", "--once", "--output", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["held"], json!([]), "{report}");
    assert!(groups_of("loud").await.contains(&group));
    assert!(started.elapsed().as_secs() < 20);
}

/// CloudTrail unreadable (the recorder answers `LookupEvents` with AccessDeniedException):
/// `enforce --once` applies no policy-adding change; each is held (0 of 0 calls), journaled
/// as skipped with one line saying why and how to fix it, and shown by `plan` with its
/// `baseline-would-deny` finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_gate_holds_when_cloudtrail_cannot_be_read() {
    let rec = Recorder::start(shared_moto(), "0");
    let acct = Account::new(shared_moto()).await;
    for u in ["ann", "bob"] {
        acct.user_at(u, "/", &[("iam-warden/access", "programmatic")])
            .await;
    }
    rec.deny_lookups(true).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("impact.toml"),
        format!(
            "[baseline.source_ip_policy]\nenabled = true\nallowed_cidrs = [\"203.0.113.0/24\"]\n\
             [safety]\npreview_window = \"24h\"\n\
             [sources.cloudtrail]\nendpoint_url = \"{}\"\n",
            rec.url
        ),
    )
    .unwrap();
    let group = Config::default().baseline.source_ip_policy.group;
    let one_line_why = |why: &str, user: &str| {
        assert!(
            why.contains("held: cannot read CloudTrail: AWS cloudtrail LookupEvents failed")
                && why.contains("not authorized to perform: cloudtrail:LookupEvents")
                && why.contains("allow cloudtrail:LookupEvents")
                && why.contains(&format!("tag {user} iam-warden/accept-impact=true"))
                && !why.contains('\n'),
            "{why}"
        );
    };

    let (code, plan, stderr) = impact_cli(&acct, dir.path(), &["plan", "--output", "json"]);
    assert_eq!(code, 1, "{stderr}");
    let held = plan["held"].as_array().unwrap();
    assert_eq!(held.len(), 2, "{plan}");
    for h in held {
        assert_eq!(
            (h["denied"].as_u64(), h["calls"].as_u64()),
            (Some(0), Some(0))
        );
        one_line_why(h["reason"].as_str().unwrap(), h["user"].as_str().unwrap());
    }
    let would_deny = plan["plan"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["verdict"]["findings"].as_array().unwrap().clone())
        .filter(|f| f["check"] == "baseline-would-deny")
        .count();
    assert_eq!(would_deny, 2, "{plan}");

    let (code, report, stderr) = impact_cli(
        &acct,
        dir.path(),
        &["enforce", "--once", "--output", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["held"].as_array().map(Vec::len), Some(2), "{report}");
    let journal = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
    let adds: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["action"] == "add_user_to_group")
        .collect();
    assert_eq!(adds.len(), 2, "{journal}");
    for e in &adds {
        assert_eq!(e["outcome"], "skipped", "{e}");
        one_line_why(e["error"].as_str().unwrap(), e["user"].as_str().unwrap());
    }
    for u in ["ann", "bob"] {
        let groups = acct
            .iam
            .list_groups_for_user()
            .user_name(u)
            .send()
            .await
            .unwrap();
        assert!(
            !groups.groups().iter().any(|g| g.group_name() == group),
            "{u} was put under the policy blind"
        );
    }
}
