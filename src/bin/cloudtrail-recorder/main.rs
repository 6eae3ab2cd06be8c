//! `cloudtrail-recorder`: test support, a recording HTTP proxy in front of moto.
//!
//! moto emulates IAM but has no CloudTrail `LookupEvents`. This proxy forwards every request
//! to moto unchanged (method, path, query, headers, body) and returns moto's response, and:
//!
//! - for every successful (2xx) IAM write call passing through it (Query protocol,
//!   `Version=2010-05-08`, an `Action` not starting with Get/List/Generate/Simulate) it stores
//!   a record shaped like a real CloudTrail record, per account;
//! - it answers `LookupEvents` (`X-Amz-Target: CloudTrail_20131101.LookupEvents`) itself, with
//!   the caller's account's events, time window, one lookup attribute, `MaxResults` and
//!   `NextToken` paging, newest first, honouring an optional delivery delay (`--delay`): an
//!   event becomes visible only that long after it was recorded, like real CloudTrail;
//! - admin endpoints, never forwarded: `POST /recorder/events?account=ID` (body: a JSON array
//!   of raw CloudTrail records, appended as they are), `GET /recorder/events[?account=ID]`
//!   (all records recorded for that account, or for every account, oldest first, regardless
//!   of the delay), `POST /recorder/reset` (forget everything) and
//!   `POST /recorder/lookup-denied` (body `true` / `false`: answer `LookupEvents` with
//!   `AccessDeniedException`, as for an identity without `cloudtrail:LookupEvents`).
//!
//! Usage: `cloudtrail-recorder --upstream http://127.0.0.1:PORT [--listen 127.0.0.1:0]
//! [--delay 2s] [--exit-on-stdin-eof]`. It prints one line, `Listening on http://ADDR`, then
//! serves until killed (or, with `--exit-on-stdin-eof`, until its stdin reaches EOF, so that a
//! test's child process dies with the test).
//!
//! # Who the caller is
//!
//! The access key id comes from the SigV4 `Authorization` header
//! (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`). The proxy cannot re-sign anything
//! (it never sees the secret), but moto does not verify SigV4 signatures (its
//! `INITIAL_NO_AUTH_ACTION_COUNT` is infinite by default): it only reads the access key id out
//! of the `Authorization` header and maps it to an account (`get_account_id_from`) and, for
//! STS `GetCallerIdentity`, to the assumed role or IAM user owning the key. So the proxy sends
//! moto its own `GetCallerIdentity` request whose `Authorization` header names the caller's
//! access key id (with a dummy signature), and caches the answer per access key id. This was
//! verified against moto 5.2: an AssumeRole key answers
//! `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`, an IAM user's key answers
//! `arn:aws:iam::ACCOUNT:user/NAME`, and an unknown key (e.g. `testing`) answers moto's
//! default account with `arn:aws:sts::123456789012:user/moto` (recorded as type `Unknown`,
//! and not cached). The identity is resolved before the write is forwarded, so a call that
//! deletes the caller's own key is still attributed correctly.
//!
//! # Deviations from real CloudTrail worth knowing
//!
//! - Password values (`Password`, `NewPassword`, `OldPassword`) and `PrivateKey` are left out
//!   of `requestParameters`, as real CloudTrail does for `CreateLoginProfile`; the secret
//!   access key of `CreateAccessKey` is never recorded.
//! - No `tlsDetails` (the proxy speaks plain HTTP) and no `sessionCredentialFromConsole`.
//! - Records injected through the admin endpoint are subject to the delivery delay too.
//!
//! # Test headers
//!
//! With `--record-reads`, IAM read calls (`Get*`, `List*`, ...) are recorded too, with
//! `readOnly: true` (off by default: the daemon tests see writes only). In tests a request
//! may set what the record says about where it came from (the headers are forwarded to moto,
//! which ignores them): `x-test-source-ip` the `sourceIPAddress`, `x-test-mfa: true|false`
//! a `sessionContext` with that `mfaAuthenticated` (a session of the user),
//! `x-test-vpce` the `vpcEndpointId`, `x-test-invoked-by` `userIdentity.invokedBy`.

mod forward;
mod lookup;
mod record;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use axum::Router;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Map, Value};

use forward::*;
use lookup::*;
use record::*;

/// Largest request or response body the proxy buffers.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The `X-Amz-Target` of CloudTrail `LookupEvents`.
const LOOKUP_EVENTS_TARGET: &str = "CloudTrail_20131101.LookupEvents";

/// The Query-protocol `Version` of IAM (STS is `2011-06-15`).
const IAM_VERSION: &str = "2010-05-08";

/// Action prefixes of IAM calls that change nothing.
const READ_PREFIXES: &[&str] = &["Get", "List", "Generate", "Simulate"];

/// Request parameters whose values CloudTrail never records.
const SECRET_PARAMS: &[&str] = &["Password", "NewPassword", "OldPassword", "PrivateKey"];

/// Request parameters CloudTrail records as JSON booleans.
const BOOL_PARAMS: &[&str] = &[
    "PasswordResetRequired",
    "SetAsDefault",
    "RequireSymbols",
    "RequireNumbers",
    "RequireUppercaseCharacters",
    "RequireLowercaseCharacters",
    "AllowUsersToChangePassword",
    "HardExpiry",
];

/// Request parameters CloudTrail records as JSON numbers.
const INT_PARAMS: &[&str] = &[
    "MaxPasswordAge",
    "MinimumPasswordLength",
    "PasswordReusePrevention",
    "MaxSessionDuration",
];

/// AWS allows at most this many events per `LookupEvents` page.
const MAX_RESULTS: u64 = 50;

#[derive(Debug, Parser)]
#[command(
    name = "cloudtrail-recorder",
    about = "Test support: a proxy in front of moto that records IAM writes as CloudTrail events and answers CloudTrail LookupEvents"
)]
struct Cli {
    /// The moto server to forward to, e.g. http://127.0.0.1:5000
    #[arg(long)]
    upstream: String,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Delivery delay: an event is visible to LookupEvents only this long after it was
    /// recorded ("0", "500ms", "2s", "1m").
    #[arg(long, default_value = "0", value_parser = parse_delay)]
    delay: Duration,
    /// Exit when stdin reaches EOF (lets a test's child process die with the test).
    #[arg(long)]
    exit_on_stdin_eof: bool,
    /// Record IAM read calls too (readOnly: true), not only writes.
    #[arg(long)]
    record_reads: bool,
}

/// Parses "0", "500ms", "2s", "1.5s", "1m", "1h"; a bare number means seconds.
fn parse_delay(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid delay {s:?}: expected e.g. \"0\", \"500ms\", \"2s\""))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid delay unit {unit:?} in {s:?}: use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid delay {s:?}: {e}"))
}

/// Who signed a request, as moto sees it.
#[derive(Debug, Clone)]
struct Identity {
    account: String,
    arn: String,
    /// `UserId` of GetCallerIdentity (`AROA...:session` for a role session).
    principal_id: String,
    /// `IAMUser`, `AssumedRole`, `Root` or `Unknown`.
    kind: &'static str,
    /// The IAM user name (IAMUser only).
    user_name: Option<String>,
    /// When the identity was first seen (stands in for a session's creation date).
    seen_at: DateTime<Utc>,
}

impl Identity {
    fn user_identity(&self, access_key_id: Option<&str>) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind));
        m.insert("principalId".into(), json!(self.principal_id));
        m.insert("arn".into(), json!(self.arn));
        m.insert("accountId".into(), json!(self.account));
        if let Some(k) = access_key_id {
            m.insert("accessKeyId".into(), json!(k));
        }
        if let Some(u) = &self.user_name {
            m.insert("userName".into(), json!(u));
        }
        if self.kind == "AssumedRole" {
            // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
            let role = self
                .arn
                .split_once(":assumed-role/")
                .and_then(|(_, rest)| rest.split('/').next())
                .unwrap_or_default();
            let role_id = self
                .principal_id
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            m.insert(
                "sessionContext".into(),
                json!({
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": role_id,
                        "arn": format!("arn:aws:iam::{}:role/{}", self.account, role),
                        "accountId": self.account,
                        "userName": role,
                    },
                    "attributes": {
                        "creationDate": self.seen_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        "mfaAuthenticated": "false",
                    }
                }),
            );
        }
        Value::Object(m)
    }
}

/// One stored record.
struct Stored {
    /// Global, increasing; assigned under the store lock together with `recorded_at`, so
    /// visibility (recorded_at + delay <= now) always covers a prefix of the sequence.
    seq: u64,
    recorded_at: Instant,
    /// `eventTime`, or the time of recording if the record has none usable.
    time: DateTime<Utc>,
    record: Value,
}

#[derive(Default)]
struct Store {
    next_seq: u64,
    accounts: HashMap<String, Vec<Stored>>,
}

impl Store {
    fn push(&mut self, account: &str, record: Value) {
        self.next_seq += 1;
        let time = record
            .get("eventTime")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        self.accounts
            .entry(account.to_string())
            .or_default()
            .push(Stored {
                seq: self.next_seq,
                recorded_at: Instant::now(),
                time,
                record,
            });
    }
}

struct AppState {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    delay: Duration,
    record_reads: bool,
    store: Mutex<Store>,
    identities: Mutex<HashMap<String, Identity>>,
    /// `POST /recorder/lookup-denied` (`true` / `false`): answer every `LookupEvents` with
    /// `AccessDeniedException`, as AWS does for an identity without `cloudtrail:LookupEvents`.
    lookup_denied: std::sync::atomic::AtomicBool,
}

impl AppState {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-updated in a way that
        // matters for a test proxy; keep serving.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn identities(&self) -> MutexGuard<'_, HashMap<String, Identity>> {
        self.identities.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudtrail-recorder: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("cloudtrail-recorder: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let upstream = cli.upstream.trim_end_matches('/').to_string();
    match upstream.parse::<Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {}
        _ => {
            return Err(format!(
                "--upstream {:?} is not an http:// URL; pass moto's address, e.g. http://127.0.0.1:5000",
                cli.upstream
            ))
        }
    }
    if cli.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let mut sink = [0u8; 4096];
            let mut stdin = std::io::stdin().lock();
            loop {
                match std::io::Read::read(&mut stdin, &mut sink) {
                    Ok(0) | Err(_) => std::process::exit(0),
                    Ok(_) => {}
                }
            }
        });
    }
    let state = Arc::new(AppState {
        upstream,
        client: Client::builder(TokioExecutor::new()).build_http(),
        delay: cli.delay,
        record_reads: cli.record_reads,
        store: Mutex::new(Store::default()),
        identities: Mutex::new(HashMap::new()),
        lookup_denied: std::sync::atomic::AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Listening on http://{addr}");
        let _ = out.flush();
    }
    let app = Router::new().fallback(handle).with_state(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .map_err(|e| format!("server error: {e}"))
}

async fn handle(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            )
        }
    };
    let path = parts.uri.path();
    if path == "/recorder" || path.starts_with("/recorder/") {
        return admin(&st, &parts.method, &parts.uri, &body);
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    if target == Some(LOOKUP_EVENTS_TARGET) {
        return lookup_events(&st, &parts.headers, &body).await;
    }
    proxy(&st, peer, parts, body).await
}

// ---------------------------------------------------------------------------------------
// Admin endpoints

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

fn admin(st: &AppState, method: &Method, uri: &Uri, body: &Bytes) -> Response<Body> {
    let account = query_param(uri, "account");
    match (method, uri.path()) {
        (&Method::POST, "/recorder/reset") => {
            *st.store() = Store::default();
            json_response(StatusCode::OK, &json!({ "reset": true }))
        }
        (&Method::GET, "/recorder/events") => {
            let store = st.store();
            let mut all: Vec<&Stored> = match &account {
                Some(a) => store.accounts.get(a).map(|v| v.iter().collect()).unwrap_or_default(),
                None => store.accounts.values().flatten().collect(),
            };
            all.sort_by_key(|e| e.seq);
            let records: Vec<Value> = all.iter().map(|e| e.record.clone()).collect();
            json_response(StatusCode::OK, &Value::Array(records))
        }
        (&Method::POST, "/recorder/events") => {
            let records = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Array(a)) => a,
                Ok(v @ Value::Object(_)) => vec![v],
                Ok(_) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        "expected a JSON array of CloudTrail records".into(),
                    )
                }
                Err(e) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        format!("body is not JSON: {e}; expected a JSON array of CloudTrail records"),
                    )
                }
            };
            let mut targets = Vec::with_capacity(records.len());
            for r in &records {
                let acct = account.clone().or_else(|| {
                    str_field(r, &["recipientAccountId"])
                        .or_else(|| str_field(r, &["userIdentity", "accountId"]))
                        .map(str::to_owned)
                });
                match acct {
                    Some(a) => targets.push(a),
                    None => {
                        return plain(
                            StatusCode::BAD_REQUEST,
                            "no account: pass ?account=ID or give each record a recipientAccountId"
                                .into(),
                        )
                    }
                }
            }
            let n = records.len();
            let mut store = st.store();
            for (a, r) in targets.iter().zip(records) {
                store.push(a, r);
            }
            json_response(StatusCode::OK, &json!({ "appended": n }))
        }
        (&Method::POST, "/recorder/lookup-denied") => {
            let denied = match std::str::from_utf8(body).map(str::trim) {
                Ok("true") => true,
                Ok("false") => false,
                _ => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        "expected the body true or false".into(),
                    )
                }
            };
            st.lookup_denied
                .store(denied, std::sync::atomic::Ordering::SeqCst);
            json_response(StatusCode::OK, &json!({ "lookup_denied": denied }))
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "cloudtrail-recorder admin endpoints: POST /recorder/events?account=ID, GET /recorder/events?account=ID, POST /recorder/reset, POST /recorder/lookup-denied (true|false)".into(),
        ),
    }
}
