//! End to end: a real Prometheus scrapes a real `iam-warden run` daemon (against moto, the
//! CloudTrail recorder, an SQS queue and the fault proxy) while a scenario makes every
//! kind of series move; then every Grafana panel query and every alert expression of
//! `deploy/` is evaluated by that Prometheus through its HTTP API, and the alert rules are
//! loaded into it and evaluated as a server would.
//!
//! Tools: `prometheus` (Debian package `prometheus`, which `make test` installs through
//! `scripts/setup.sh`). A missing binary FAILS the test; it is never skipped.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_iam::types::{StatusType, Tag};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::faults::FaultProxy;
use support::recorder::Recorder;
use support::{bin, create_queue, eventually, manifest_dir, Account, Moto};

const DEADLINE: Duration = Duration::from_secs(30);

/// Grafana's interval variables as concrete durations. The window covers the whole
/// scenario (the test lasts less than a minute): the dashboard as seen over the last
/// two minutes.
const GRAFANA_INTERVALS: &[(&str, &str)] = &[
    ("${__rate_interval}", "2m"),
    ("$__rate_interval", "2m"),
    ("${__range}", "2m"),
    ("$__range", "2m"),
    ("${__interval}", "1s"),
    ("$__interval", "1s"),
];

/// Panel targets (panel title, refId) that may legitimately show only zeros (or NaN) after
/// the scenario, with the reason. Every other target must return at least one finite,
/// non-zero value. Every target must return at least one series.
const MAY_BE_ZERO: &[(&str, &str, &str)] = &[
    (
        "CPU",
        "A",
        "the prometheus crate's process collector counts process_cpu_seconds_total in whole \
         seconds (an integer counter); the daemon uses less than one CPU second here",
    ),
    (
        "Work queue",
        "A",
        "a gauge: the queue holds only the blocked users' re-checks at the window's end, \
         which may be 0 once everything settled",
    ),
    (
        "Work queue",
        "B",
        "a gauge: no reconcile is running once the scenario has settled",
    ),
];

/// Alerts the scenario must make pending (their `for` is longer than the test), and why.
const EXPECT_PENDING: &[(&str, &str)] = &[
    ("IamWardenBreakerTripped", "the breaker is tripped"),
    (
        "IamWardenNonCompliantUsers",
        "the resync found violating users",
    ),
    (
        "IamWardenConsoleWithoutMfa",
        "`prog` has a console password and no MFA",
    ),
    ("IamWardenReconcileErrors", "one reconcile failed"),
    (
        "IamWardenCredentialReportStale",
        "moto answers GetCredentialReport with a fixed GeneratedTime of 2015-02-02",
    ),
    (
        "IamWardenRotationStuck",
        "`stuck-svc` has a key in phase stuck whose new key is never used",
    ),
    (
        "IamWardenExposedKey",
        "a Health event on SQS got `leaky`'s key deactivated",
    ),
];

/// Alerts that must stay quiet at the end, and why.
const EXPECT_QUIET: &[(&str, &str)] = &[
    ("IamWardenDown", "the daemon is scraped"),
    (
        "IamWardenNotReady",
        "ready since the first resync (pending only before it)",
    ),
    ("IamWardenResyncStale", "the resync is seconds old"),
    (
        "IamWardenCloudTrailPollStale",
        "CloudTrail is polled every second",
    ),
    (
        "IamWardenExposedKeyNotQuarantined",
        "the one exposed key was deactivated",
    ),
    (
        "IamWardenKeyTooOld",
        "the oldest active key is 100 days old, under 90 + 14",
    ),
];
// Neither list: IamWardenNotificationsFailing (deliveries to the scenario's unreachable
// webhook fail once notices are raised; the `for` is longer than the test either way),
// IamWardenAwsThrottling (one scripted throttle among many calls is under
// its 5 % threshold) and IamWardenWriteFailures (a scripted GetUser failure may or may
// not fail a write's live check, depending on which call it hits).

// ---------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------

/// `prometheus` on PATH, or a failure saying how to get it.
fn prometheus_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`prometheus` is not on PATH: run `make test` (scripts/setup.sh installs the \
                 Debian package prometheus), or apt-get install prometheus"
            )
        })
}

/// A free loopback port (bound, then released for the child to bind).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// Collects a child's stderr lines in the background.
fn drain(child: &mut Child) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    log
}

struct Prometheus {
    url: String,
    child: Child,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) every second as job `iam-warden`,
    /// with the alert rules `rules` evaluated every second; waits until /-/ready.
    async fn start(target: &str, rules: &Path) -> Prometheus {
        let binary = prometheus_binary();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: iam-warden\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules = serde_json::to_string(&rules.display().to_string()).unwrap(),
            ),
        )
        .unwrap();
        // The port is free when chosen; if someone takes it before Prometheus binds it,
        // Prometheus exits and another port is tried.
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut child = Command::new(&binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let log = drain(&mut child);
            let url = format!("http://{addr}");
            let started = Instant::now();
            loop {
                if let Ok((200, _)) = get(&format!("{url}/-/ready")).await {
                    return Prometheus {
                        url,
                        child,
                        log,
                        _dir: dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // exited: the port was taken, or a real error (shown below)
                }
                assert!(
                    started.elapsed() < DEADLINE,
                    "Prometheus not ready after {DEADLINE:?}:\n{}",
                    log.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let log = log.lock().unwrap().clone();
            if !log.contains("address already in use") {
                panic!("Prometheus exited at start:\n{log}");
            }
        }
        panic!("Prometheus could not bind a free port three times");
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// GET an API path; the `data` of a successful answer, else the error text.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let url = format!("{}{path}?{query}", self.url);
        let (status, body) = get(&url).await.map_err(|e| format!("GET {url}: {e}"))?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {url}: {status}, not JSON ({e}): {body}"))?;
        if status == 200 && v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(format!(
                "{status} {}: {}",
                v["errorType"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or(&body)
            ))
        }
    }

    /// An instant query now: its samples, or Prometheus's error.
    async fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await?;
        let value = |v: &Value| -> f64 {
            match v[1].as_str().unwrap_or("NaN") {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                s => s.parse().unwrap_or(f64::NAN),
            }
        };
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| Sample {
                    labels: s["metric"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    value: value(&s["value"]),
                })
                .collect()),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: value(&data["result"]),
            }]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    /// Polls until `expr` returns a sample (e.g. `metric >= 1`): Prometheus has scraped it.
    async fn wait_for(&self, expr: &str) {
        eventually(&format!("Prometheus to see {expr}"), DEADLINE, || async {
            self.query(expr)
                .await
                .ok()
                .filter(|s| !s.is_empty())
                .map(|_| ())
        })
        .await;
    }

    /// Values of `label` on the series matching `selector` (Grafana's `label_values`).
    async fn label_values(&self, selector: &str, label: &str) -> Vec<String> {
        let data = self
            .api(
                &format!("/api/v1/label/{label}/values"),
                &[("match[]", selector)],
            )
            .await
            .unwrap_or_else(|e| panic!("label_values({selector}, {label}): {e}"));
        data.as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One plain-HTTP GET: (status, body).
async fn get(url: &str) -> Result<(u16, String), String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

// ---------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------

struct Daemon {
    child: Child,
    addr: Arc<Mutex<Option<String>>>,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(creds: &Credentials, env: &[(&str, String)]) -> Daemon {
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
            .env(
                "AWS_SESSION_TOKEN",
                creds.session_token().unwrap_or_default(),
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("IAM_WARDEN_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("IAM_WARDEN_SERVER__LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("cannot start iam-warden run");
        let stderr = child.stderr.take().unwrap();
        let addr = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(String::new()));
        let (a, l) = (addr.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "listening" {
                        *a.lock().unwrap() = v["addr"].as_str().map(str::to_string);
                    }
                }
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Daemon { child, addr, log }
    }

    async fn addr(&self) -> String {
        eventually("the daemon to listen", DEADLINE, || async {
            self.addr.lock().unwrap().clone()
        })
        .await
    }

    /// The value of the first /metrics line starting with `needle` (0 if none).
    async fn metric(&self, needle: &str) -> f64 {
        let body = match get(&format!("http://{}/metrics", self.addr().await)).await {
            Ok((200, body)) => body,
            _ => return 0.0,
        };
        body.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Credentials of another session in the account: the daemon's own identity.
async fn session(acct: &Account, name: &str) -> Credentials {
    let sts = aws_sdk_sts::Client::new(&acct.sdk);
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{}:role/iam-warden", acct.id))
        .role_session_name(name)
        .send()
        .await
        .expect("AssumeRole for the daemon");
    let c = out.credentials().expect("credentials");
    Credentials::from_keys(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
    )
}

fn journal(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn applied(dir: &Path) -> BTreeSet<(String, String)> {
    journal(dir)
        .iter()
        .filter(|e| e["outcome"] == "applied")
        .map(|e| {
            (
                e["user"].as_str().unwrap_or("").to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// An EventBridge envelope with a CloudTrail `CreateLoginProfile` record for `user`.
fn login_profile_event(acct: &Account, user: &str) -> String {
    let record = serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{}:assumed-role/admin/x", acct.id), "accountId": acct.id},
        "eventTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateLoginProfile",
        "awsRegion": "us-east-1",
        "requestParameters": {"userName": user, "passwordResetRequired": false},
        "responseElements": null,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "recipientAccountId": acct.id,
    });
    serde_json::json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.iam",
        "account": acct.id, "time": record["eventTime"], "region": "us-east-1", "resources": [],
        "detail": record,
    })
    .to_string()
}

/// Sign one IAM request with the key (straight to moto): moto records it as the key's
/// last use.
async fn use_key(endpoint: &str, id: &str, secret: &str) {
    let sdk = aws_types::SdkConfig::builder()
        .region(aws_types::region::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::from_keys(
                id, secret, None,
            )),
        )
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    aws_sdk_iam::Client::new(&sdk)
        .list_users()
        .send()
        .await
        .unwrap();
}

/// An AWS Health `AWS_RISK_CREDENTIALS_EXPOSED` event for `key` in `account`, shaped like
/// the documented example (tests/fixtures/health-credentials-exposed.json).
fn health_event(account: &str, key: &str) -> String {
    let mut v: Value =
        serde_json::from_str(include_str!("fixtures/health-credentials-exposed.json")).unwrap();
    v["id"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
    v["account"] = serde_json::json!(account);
    v["time"] = serde_json::json!(rfc3339(chrono::Utc::now()));
    v["detail"]["affectedEntities"] = serde_json::json!([{ "entityValue": key }]);
    v.to_string()
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().unwrap()
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ---------------------------------------------------------------------------------
// deploy/
// ---------------------------------------------------------------------------------

fn deploy(rel: &str) -> PathBuf {
    manifest_dir().join("deploy").join(rel)
}

/// (panel title, refId, expr) of every panel target, rows' nested panels included.
fn dashboard_targets() -> Vec<(String, String, String)> {
    let path = deploy("grafana/iam-warden.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut panels = vec![];
    for p in dash["panels"].as_array().expect("panels") {
        panels.push(p.clone());
        panels.extend(p["panels"].as_array().into_iter().flatten().cloned());
    }
    let mut out = vec![];
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                title.clone(),
                t["refId"].as_str().unwrap_or("?").to_string(),
                t["expr"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// (alert name, expr) of deploy/prometheus/alerts.yml, read by Prometheus's own
/// configuration loader through /api/v1/rules.
async fn alert_rules(prom: &Prometheus) -> Vec<Value> {
    let data = prom
        .api("/api/v1/rules", &[])
        .await
        .unwrap_or_else(|e| panic!("/api/v1/rules: {e}"));
    data["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Grafana's substitution of `$job`, `$instance` and `$account` (a multi-value variable: its values
/// regex-escaped and joined with `|`, as Grafana does for `=~`).
fn substitute(expr: &str, job: &str, instances: &[String]) -> String {
    let instance = instances
        .iter()
        .map(|i| {
            i.chars()
                .map(|c| {
                    if ".+*?^$()[]{}|\\".contains(c) {
                        format!("\\\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("|");
    let mut e = expr.to_string();
    for (from, to) in GRAFANA_INTERVALS {
        e = e.replace(from, to);
    }
    // `$account`: the variable's "All" (its allValue).
    e.replace("${job}", job)
        .replace("$job", job)
        .replace("${instance}", &instance)
        .replace("$instance", &instance)
        .replace("${account}", ".*")
        .replace("$account", ".*")
}

// ---------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_and_alert_works_against_a_live_prometheus() {
    let started = Instant::now();
    let moto = Moto::start(true);
    let acct = Account::new(&moto).await;
    let rec = Recorder::start(&moto, "0");
    let admin = rec.iam(&acct);
    // Every IAM/STS call of the daemon fails (503) until the gate opens: Prometheus sees
    // the daemon before its first resync, so the first resync's writes are increases.
    let proxy = FaultProxy::start(&moto, 7, 1.0, &["503"]);
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let queue = create_queue(&sqs, &format!("iam-warden-prom-{}", acct.id), &[]).await;
    let dir = tempfile::tempdir().unwrap();

    // Existing users, made 100 days ago. Four lose access at the first resync (the
    // breaker's limit): a console password never used, a key never used, a key inactive
    // for 40 days, a password on a programmatic user.
    moto.set_clock_offset("-100d");
    acct.user("stale-console")
        .await
        .password("stale-console")
        .await
        .mfa("stale-console")
        .await;
    acct.user("idle-key").await;
    acct.key("idle-key").await;
    acct.user("dead-key").await;
    let dead = acct
        .iam
        .create_access_key()
        .user_name("dead-key")
        .send()
        .await
        .unwrap();
    let dead = dead.access_key().unwrap();
    let dead_created = dead.create_date().expect("CreateDate").secs();
    let dead_id = dead.access_key_id().to_string();
    acct.user_at("prog", "/svc/", &[("iam-warden/access", "programmatic")])
        .await;
    acct.password("prog").await;
    // A mark of a key that no longer exists: removed (untag_user).
    acct.user("stale-tag").await;
    // A key past the age limit, in use: rotated at the first resync (a new key stored in
    // Secrets Manager, the old one draining). And a rotation stuck since 20 days.
    acct.user("rotor").await;
    let rotor = acct
        .iam
        .create_access_key()
        .user_name("rotor")
        .send()
        .await
        .unwrap();
    let rotor = rotor.access_key().unwrap().clone();
    acct.user("stuck-svc").await;
    let stuck_old = acct
        .iam
        .create_access_key()
        .user_name("stuck-svc")
        .send()
        .await
        .unwrap();
    let stuck_old = stuck_old.access_key().unwrap().clone();
    moto.set_clock_offset("+0d");
    use_key(
        &moto.endpoint,
        rotor.access_key_id(),
        rotor.secret_access_key(),
    )
    .await;
    let stuck_new = acct.key("stuck-svc").await;
    let stuck_created =
        chrono::DateTime::from_timestamp(stuck_old.create_date().expect("CreateDate").secs(), 0)
            .unwrap();
    acct.iam
        .tag_user()
        .user_name("stuck-svc")
        .tags(tag(
            &format!("iam-warden/rotation/{}", stuck_old.access_key_id()),
            &format!(
                "phase=stuck since={} created={} new={stuck_new}",
                rfc3339(chrono::Utc::now() - chrono::Duration::days(20)),
                rfc3339(stuck_created)
            ),
        ))
        .send()
        .await
        .unwrap();
    // A key that AWS Health reports exposed later.
    acct.user("leaky").await;
    let leaky = acct.key("leaky").await;
    acct.iam
        .update_access_key()
        .user_name("dead-key")
        .access_key_id(&dead_id)
        .status(StatusType::Inactive)
        .send()
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let created = chrono::DateTime::from_timestamp(dead_created, 0).unwrap();
    acct.iam
        .tag_user()
        .user_name("dead-key")
        .tags(tag(
            &format!("iam-warden/inactive-since/{dead_id}"),
            &format!(
                "since={} created={}",
                rfc3339(now - chrono::Duration::days(40)),
                rfc3339(created)
            ),
        ))
        .send()
        .await
        .unwrap();
    acct.iam
        .tag_user()
        .user_name("stale-tag")
        .tags(tag(
            "iam-warden/inactive-since/AKIAGONEGONEGONEGONE",
            &format!(
                "since={} created={}",
                rfc3339(now - chrono::Duration::days(5)),
                rfc3339(now - chrono::Duration::days(90))
            ),
        ))
        .send()
        .await
        .unwrap();

    let creds = session(&acct, "iam-warden-daemon").await;
    let webhook_secret = dir.path().join("webhook-secret");
    std::fs::write(&webhook_secret, "prometheus-e2e-signing-key").unwrap();
    let env: Vec<(&str, String)> = vec![
        ("AWS_ENDPOINT_URL", proxy.url.clone()),
        ("IAM_WARDEN_STATE_DIR", dir.path().display().to_string()),
        ("IAM_WARDEN_MODE", "enforce".into()),
        ("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED", "4".into()),
        ("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT", "100".into()),
        ("IAM_WARDEN_SAFETY__NEW_USER_GRACE", "0s".into()),
        ("IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND", "100".into()),
        ("IAM_WARDEN_CONTROLLER__WRITE_BURST", "100".into()),
        ("IAM_WARDEN_RESYNC__INTERVAL", "1h".into()),
        ("IAM_WARDEN_AWS__MAX_ATTEMPTS", "2".into()),
        ("IAM_WARDEN_AWS__BACKOFF_MAX_MS", "200".into()),
        ("IAM_WARDEN_SOURCES__CLOUDTRAIL__POLL_INTERVAL", "1s".into()),
        (
            "IAM_WARDEN_SOURCES__CLOUDTRAIL__ENDPOINT_URL",
            rec.url.clone(),
        ),
        ("IAM_WARDEN_SOURCES__SQS__QUEUE_URL", queue.clone()),
        ("IAM_WARDEN_SOURCES__SQS__WAIT_TIME", "1s".into()),
        // Owner notifications to a webhook nobody listens on: deliveries fail.
        (
            "IAM_WARDEN_NOTIFICATIONS__WEBHOOK_URL",
            format!("http://127.0.0.1:{}/hook", free_port()),
        ),
        (
            "IAM_WARDEN_NOTIFICATIONS__WEBHOOK_SECRET_FILE",
            webhook_secret.display().to_string(),
        ),
        ("IAM_WARDEN_NOTIFICATIONS__MAX_ATTEMPTS", "1".into()),
        ("IAM_WARDEN_NOTIFICATIONS__TIMEOUT", "1s".into()),
    ];
    let d = Daemon::start(&creds, &env);
    let target = d.addr().await;
    let prom = Prometheus::start(&target, &deploy("prometheus/alerts.yml")).await;
    let job = "iam-warden";

    // Prometheus has scraped the daemon (the series exist) before the first resync.
    eventually("the first scrape", DEADLINE, || async {
        let data = prom
            .api(
                "/api/v1/series",
                &[("match[]", "iam_warden_ready{job=\"iam-warden\"}")],
            )
            .await
            .ok()?;
        (!data.as_array()?.is_empty()).then_some(())
    })
    .await;
    prom.wait_for("iam_warden_resyncs_total{result=\"success\"} == 0")
        .await;
    proxy.set_rate(0.0).await;

    // The first resync, and the writes it plans: the baseline, then the four users.
    prom.wait_for("iam_warden_ready == 1").await;
    let want: BTreeSet<(String, String)> = [
        ("", "create_policy"),
        ("", "create_group"),
        ("", "attach_group_policy"),
        ("", "update_password_policy"),
        ("stale-console", "add_user_to_group"),
        ("stale-console", "delete_login_profile"),
        ("idle-key", "deactivate_access_key"),
        ("idle-key", "tag_user"),
        ("dead-key", "delete_access_key"),
        ("prog", "delete_login_profile"),
        ("stale-tag", "untag_user"),
        ("rotor", "rotate_access_key"),
    ]
    .iter()
    .map(|(u, a)| (u.to_string(), a.to_string()))
    .collect();
    eventually("the first resync's writes", DEADLINE, || async {
        want.is_subset(&applied(dir.path())).then_some(())
    })
    .await;

    // One throttled call (retried), then events through CloudTrail: two console users
    // without MFA are created by someone else; the first one over the limit of 4 users
    // losing access trips the breaker.
    proxy.script("ListAccessKeys", "throttle").await;
    for u in ["ct-hire-1", "ct-hire-2"] {
        admin.create_user().user_name(u).send().await.unwrap();
        admin
            .create_login_profile()
            .user_name(u)
            .password("Correct-Horse-Battery-9!")
            .send()
            .await
            .unwrap();
    }
    eventually("the breaker to trip", DEADLINE, || async {
        (d.metric("iam_warden_breaker_trips_total").await >= 1.0).then_some(())
    })
    .await;
    eventually("no reconcile in flight", DEADLINE, || async {
        (d.metric("iam_warden_queue_in_flight").await == 0.0).then_some(())
    })
    .await;

    // Through SQS: a malformed message, and an event for a user with MFA whose first
    // reconcile fails (GetUser answers 500 to both attempts) and whose retry joins the
    // MFA group (nothing taken away: admitted although the breaker is tripped).
    acct.user("sqs-user")
        .await
        .password("sqs-user")
        .await
        .mfa("sqs-user")
        .await;
    proxy.script("GetUser", "500").await;
    proxy.script("GetUser", "500").await;
    for body in [
        "{\"detail-type\": \"truncated".to_string(),
        login_profile_event(&acct, "sqs-user"),
    ] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    eventually(
        "sqs-user in the MFA group after a retry",
        DEADLINE,
        || async {
            applied(dir.path())
                .contains(&("sqs-user".to_string(), "add_user_to_group".to_string()))
                .then_some(())
        },
    )
    .await;

    // An exposed key reported by AWS Health through SQS: quarantined at once.
    sqs.send_message()
        .queue_url(&queue)
        .message_body(health_event(&acct.id, &leaky))
        .send()
        .await
        .unwrap();
    eventually("the exposed key quarantined", DEADLINE, || async {
        (d.metric("iam_warden_quarantines_total{outcome=\"deactivated\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;

    assert_eq!(
        proxy.count("throttle").await,
        1,
        "the proxy throttled one ListAccessKeys"
    );
    // Prometheus has scraped the end of the scenario.
    for expr in [
        "iam_warden_breaker_tripped == 1",
        "iam_warden_aws_calls_total{service=\"iam\",operation=\"ListAccessKeys\",outcome=\"throttled\"} >= 1",
        "iam_warden_aws_throttles_total{operation=\"ListAccessKeys\"} >= 1",
        "iam_warden_reconciles_total{result=\"error\"} >= 1",
        "iam_warden_queue_retries_total >= 1",
        "iam_warden_events_total{event=\"other\",outcome=\"malformed\"} >= 1",
        "iam_warden_events_total{event=\"CreateLoginProfile\",outcome=\"enqueued\"} >= 3",
        "iam_warden_writes_total{action=\"add_user_to_group\",outcome=\"applied\"} >= 2",
        "iam_warden_quarantines_total{outcome=\"deactivated\"} >= 1",
        "iam_warden_rotation_events_total{event=\"draining\"} >= 1",
        "iam_warden_access_keys{phase=\"stuck\"} >= 1",
    ] {
        prom.wait_for(expr).await;
    }
    // Every write action the scenario made moved in Prometheus.
    for (_, action) in &want {
        let expr = format!(
            "increase(iam_warden_writes_total{{job=\"{job}\",action=\"{action}\",outcome=\"applied\"}}[2m]) > 0"
        );
        prom.wait_for(&expr).await;
    }

    // ---- The dashboard: every panel target, with Grafana's variables resolved the way
    // its template queries (label_values) resolve them.
    let jobs = prom.label_values("iam_warden_build_info", "job").await;
    assert_eq!(jobs, [job], "label_values(iam_warden_build_info, job)");
    let instances = prom
        .label_values(
            &format!("iam_warden_build_info{{job=\"{job}\"}}"),
            "instance",
        )
        .await;
    assert_eq!(instances, [target.as_str()], "label_values(..., instance)");
    let targets = dashboard_targets();
    assert!(targets.len() >= 20, "only {} panel targets", targets.len());
    for (title, ref_id, _) in MAY_BE_ZERO {
        assert!(
            targets.iter().any(|(t, r, _)| t == title && r == ref_id),
            "MAY_BE_ZERO names a target that is not on the dashboard: {title} / {ref_id}"
        );
    }
    let mut problems = vec![];
    let mut report = vec![];
    for (title, ref_id, expr) in &targets {
        let q = substitute(expr, job, &instances);
        let samples = match prom.query(&q).await {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{title} / {ref_id}: {q}\n      error: {e}"));
                continue;
            }
        };
        let nonzero = samples
            .iter()
            .filter(|s| s.value.is_finite() && s.value != 0.0)
            .count();
        report.push(format!(
            "{title} / {ref_id}: {} series, {nonzero} non-zero",
            samples.len()
        ));
        let may_be_zero = MAY_BE_ZERO
            .iter()
            .any(|(t, r, _)| t == title && r == ref_id);
        if samples.is_empty() {
            problems.push(format!("{title} / {ref_id}: no series: {q}"));
        } else if nonzero == 0 && !may_be_zero {
            problems.push(format!(
                "{title} / {ref_id}: only zero/NaN values {:?}: {q}",
                samples
                    .iter()
                    .map(|s| (&s.labels, s.value))
                    .collect::<Vec<_>>()
            ));
        }
    }

    // ---- The alerts: every expression of alerts.yml evaluates, Prometheus loaded every
    // rule of that file and evaluates it without error, and the scenario's alerts are
    // pending while the healthy-daemon alerts stay quiet.
    let file = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let rules = alert_rules(&prom).await;
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    let in_file = file.matches("- alert: ").count();
    assert!(
        in_file >= 10 && rules.len() == in_file,
        "Prometheus loaded {} rules, the file has {in_file}",
        rules.len()
    );
    for (name, _) in EXPECT_PENDING.iter().chain(EXPECT_QUIET) {
        assert!(names.contains(name), "{name} is not an alert of alerts.yml");
    }
    for rule in &rules {
        let name = rule["name"].as_str().unwrap_or("?");
        let expr = rule["query"].as_str().unwrap_or_default();
        if let Err(e) = prom.query(expr).await {
            problems.push(format!("alert {name}: {expr}\n      error: {e}"));
        }
    }
    let active = eventually("the expected alerts to be pending", DEADLINE, || async {
        let rules = alert_rules(&prom).await;
        let evaluated_ok = rules.iter().all(|r| {
            r["health"] == "ok"
                && !r["lastEvaluation"]
                    .as_str()
                    .unwrap_or("0001")
                    .starts_with("0001")
        });
        let active: BTreeSet<String> = rules
            .iter()
            .filter(|r| r["state"] != "inactive")
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect();
        (evaluated_ok && EXPECT_PENDING.iter().all(|(n, _)| active.contains(*n))).then_some(active)
    })
    .await;
    for (name, why) in EXPECT_QUIET {
        if active.contains(*name) {
            problems.push(format!(
                "alert {name} is active, but should be quiet: {why}"
            ));
        }
    }
    for rule in alert_rules(&prom).await {
        if rule["health"] != "ok" {
            problems.push(format!(
                "alert {}: health {} ({})",
                rule["name"], rule["health"], rule["lastError"]
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "{} problems:\n  {}\n--- all targets\n  {}\n--- daemon log (tail)\n{}\n--- prometheus log (tail)\n{}",
        problems.len(),
        problems.join("\n  "),
        report.join("\n  "),
        tail(&d.log(), 40),
        tail(&prom.log(), 20)
    );
    assert!(
        !d.log().contains("Correct-Horse-Battery-9!"),
        "a password reached the log"
    );
    println!(
        "prometheus e2e: {} panel targets and {} alerts checked in {:?}",
        targets.len(),
        rules.len(),
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the test took {:?}, budget 60 s",
        started.elapsed()
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
