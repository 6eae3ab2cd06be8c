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
//!   of the delay) and `POST /recorder/reset` (forget everything).
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
    store: Mutex<Store>,
    identities: Mutex<HashMap<String, Identity>>,
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
        store: Mutex::new(Store::default()),
        identities: Mutex::new(HashMap::new()),
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
// Forwarding and recording

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// An IAM write call: (Action, all parameters in order).
fn iam_write_call(
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<(String, Vec<(String, String)>)> {
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(q) = uri.query() {
        params.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form {
        params.extend(form_urlencoded::parse(body).into_owned());
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("Version").as_deref() != Some(IAM_VERSION) {
        return None;
    }
    let action = get("Action")?;
    if action.is_empty() || READ_PREFIXES.iter().any(|p| action.starts_with(p)) {
        return None;
    }
    Some((action, params))
}

async fn proxy(
    st: &AppState,
    peer: SocketAddr,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    let call = iam_write_call(&parts.uri, &parts.headers, &body);
    let access_key = access_key_id(&parts.headers);
    // Resolve the caller before forwarding: the call may delete the very key it is signed with.
    let identity = match &call {
        Some(_) => Some(resolve_identity(st, &parts.headers).await),
        None => None,
    };

    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let uri: Uri = match format!("{}{}", st.upstream, path_and_query).parse() {
        Ok(u) => u,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("bad request URI: {e}")),
    };
    let mut up = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(uri);
    if let Some(h) = up.headers_mut() {
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name) {
                h.append(name.clone(), value.clone());
            }
        }
    }
    let up = match up.body(Full::new(body.clone())) {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("cannot forward request: {e}"),
            )
        }
    };
    let resp = match st.client.request(up).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("cloudtrail-recorder: upstream {} failed: {e}", st.upstream),
            );
        }
    };
    let (rparts, rbody) = resp.into_parts();
    let rbody = match rbody.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("cloudtrail-recorder: reading the upstream response failed: {e}"),
            )
        }
    };

    if let (Some((action, params)), Some(identity)) = (call, identity) {
        if rparts.status.is_success() {
            let xml = String::from_utf8_lossy(&rbody);
            let request_id = rparts
                .headers
                .get("x-amzn-requestid")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| xml_tag(&xml, "RequestId").map(xml_unescape))
                .unwrap_or_default();
            let user_agent = parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let record = build_record(
                &identity,
                access_key.as_deref(),
                &action,
                &params,
                &xml,
                &request_id,
                &peer.ip().to_string(),
                user_agent,
            );
            st.store().push(&identity.account, record);
        }
    }

    let mut out = Response::builder().status(rparts.status);
    if let Some(h) = out.headers_mut() {
        for (name, value) in &rparts.headers {
            if !is_hop_by_hop(name) {
                h.append(name.clone(), value.clone());
            }
        }
    }
    out.body(Body::from(rbody)).unwrap_or_else(|e| {
        plain(
            StatusCode::BAD_GATEWAY,
            format!("bad upstream response: {e}"),
        )
    })
}

/// The access key id from a SigV4 `Authorization` header.
fn access_key_id(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (_, rest) = auth.split_once("Credential=")?;
    let akid = rest.split('/').next()?.trim();
    (!akid.is_empty()).then(|| akid.to_string())
}

/// The caller's identity, from the cache or from moto's STS GetCallerIdentity (see the file
/// header for why this works).
async fn resolve_identity(st: &AppState, headers: &HeaderMap) -> Identity {
    let akid = access_key_id(headers);
    if let Some(k) = &akid {
        if let Some(id) = st.identities().get(k) {
            return id.clone();
        }
    }
    let id = match get_caller_identity(st, akid.as_deref(), headers).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "GetCallerIdentity on upstream failed; attributing to moto's default account");
            Identity {
                account: "123456789012".into(),
                arn: "arn:aws:sts::123456789012:user/moto".into(),
                principal_id: akid.clone().unwrap_or_default(),
                kind: "Unknown",
                user_name: None,
                seen_at: Utc::now(),
            }
        }
    };
    if let Some(k) = akid {
        if id.kind != "Unknown" {
            st.identities().entry(k).or_insert_with(|| id.clone());
        }
    }
    id
}

async fn get_caller_identity(
    st: &AppState,
    akid: Option<&str>,
    headers: &HeaderMap,
) -> Result<Identity, String> {
    let uri: Uri = format!("{}/", st.upstream)
        .parse()
        .map_err(|e| format!("bad upstream URL: {e}"))?;
    let now = Utc::now();
    let mut req = hyper::Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header("x-amz-date", now.format("%Y%m%dT%H%M%SZ").to_string());
    if let Some(k) = akid {
        req = req.header(
            header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential={k}/{}/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
                now.format("%Y%m%d"),
                "0".repeat(64)
            ),
        );
    }
    if let Some(t) = headers.get("x-amz-security-token") {
        req = req.header("x-amz-security-token", t.clone());
    }
    let req = req
        .body(Full::new(Bytes::from_static(
            b"Action=GetCallerIdentity&Version=2011-06-15",
        )))
        .map_err(|e| format!("cannot build GetCallerIdentity: {e}"))?;
    let resp = st
        .client
        .request(req)
        .await
        .map_err(|e| format!("GetCallerIdentity: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GetCallerIdentity body: {e}"))?
        .to_bytes();
    let xml = String::from_utf8_lossy(&body);
    if !status.is_success() {
        return Err(format!("GetCallerIdentity answered {status}: {xml}"));
    }
    let field = |t: &str| {
        xml_tag(&xml, t)
            .map(xml_unescape)
            .ok_or_else(|| format!("GetCallerIdentity response has no <{t}>: {xml}"))
    };
    let account = field("Account")?;
    let arn = field("Arn")?;
    let principal_id = field("UserId")?;
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    let (kind, user_name) = if arn.starts_with("arn:aws:iam::") && resource.starts_with("user/") {
        let name = resource.rsplit('/').next().unwrap_or_default().to_string();
        ("IAMUser", Some(name))
    } else if resource.starts_with("assumed-role/") {
        ("AssumedRole", None)
    } else if resource == "root" {
        ("Root", None)
    } else {
        ("Unknown", None)
    };
    Ok(Identity {
        account,
        arn,
        principal_id,
        kind,
        user_name,
        seen_at: now,
    })
}

/// Lower-camel-cases a parameter name the way CloudTrail does (`UserName` → `userName`).
fn lower_camel(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn param_value(name: &str, v: &str) -> Value {
    if BOOL_PARAMS.contains(&name) {
        match v {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    if INT_PARAMS.contains(&name) {
        if let Ok(n) = v.parse::<i64>() {
            return json!(n);
        }
    }
    json!(v)
}

/// `requestParameters` from Query parameters: names lower-camel-cased, `X.member.N[.Sub]`
/// lists turned into arrays, secrets left out. `null` when nothing is left.
fn request_parameters(params: &[(String, String)]) -> Value {
    let mut obj = Map::new();
    // list name → index → element (scalar, or object of fields)
    let mut lists: BTreeMap<String, BTreeMap<u64, Value>> = BTreeMap::new();
    for (k, v) in params {
        if k == "Action" || k == "Version" || SECRET_PARAMS.contains(&k.as_str()) {
            continue;
        }
        let parts: Vec<&str> = k.split('.').collect();
        let index = parts.get(2).and_then(|i| i.parse::<u64>().ok());
        match (parts.as_slice(), index) {
            ([name, "member", _], Some(i)) => {
                lists
                    .entry(lower_camel(name))
                    .or_default()
                    .insert(i, json!(v));
            }
            ([name, "member", _, field], Some(i)) => {
                let el = lists
                    .entry(lower_camel(name))
                    .or_default()
                    .entry(i)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = el {
                    m.insert(lower_camel(field), json!(v));
                }
            }
            _ => {
                let key = parts
                    .iter()
                    .map(|p| lower_camel(p))
                    .collect::<Vec<_>>()
                    .join(".");
                obj.insert(key, param_value(k, v));
            }
        }
    }
    for (name, els) in lists {
        obj.insert(name, Value::Array(els.into_values().collect()));
    }
    if obj.is_empty() {
        Value::Null
    } else {
        Value::Object(obj)
    }
}

/// The text between `<tag>` and `</tag>` (first occurrence; no attributes on `tag`).
fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// CloudTrail writes dates inside `responseElements` as "Aug 1, 2024 1:33:28 PM".
fn cloudtrail_date(s: &str) -> String {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => t
            .with_timezone(&Utc)
            .format("%b %-d, %Y %-I:%M:%S %p")
            .to_string(),
        Err(_) => s.to_string(),
    }
}

/// Copies the XML fields `(xml tag, json key)` found inside `section` into an object.
fn xml_object(section: &str, fields: &[(&str, &str)]) -> Map<String, Value> {
    let mut m = Map::new();
    for (tag, key) in fields {
        if let Some(v) = xml_tag(section, tag) {
            let v = xml_unescape(v);
            let v = match *tag {
                "CreateDate" | "UpdateDate" => json!(cloudtrail_date(&v)),
                "PasswordResetRequired" | "IsAttachable" => json!(v == "true"),
                "AttachmentCount" => v.parse::<i64>().map(|n| json!(n)).unwrap_or(json!(v)),
                _ => json!(v),
            };
            m.insert((*key).to_string(), v);
        }
    }
    m
}

/// `responseElements` for the calls whose real records carry them; `null` otherwise. Never
/// contains a secret access key.
fn response_elements(action: &str, xml: &str, request: &Value) -> Value {
    let out = match action {
        "CreateUser" => xml_tag(xml, "User").map(|u| {
            let mut m = xml_object(
                u,
                &[
                    ("Path", "path"),
                    ("UserName", "userName"),
                    ("UserId", "userId"),
                    ("Arn", "arn"),
                    ("CreateDate", "createDate"),
                ],
            );
            if let Some(tags) = request.get("tags") {
                m.insert("tags".into(), tags.clone());
            }
            json!({ "user": m })
        }),
        "CreateAccessKey" => xml_tag(xml, "AccessKey").map(|k| {
            json!({ "accessKey": xml_object(
                k,
                &[
                    ("AccessKeyId", "accessKeyId"),
                    ("Status", "status"),
                    ("UserName", "userName"),
                    ("CreateDate", "createDate"),
                ],
            ) })
        }),
        "CreateLoginProfile" => xml_tag(xml, "LoginProfile").map(|p| {
            json!({ "loginProfile": xml_object(
                p,
                &[
                    ("CreateDate", "createDate"),
                    ("PasswordResetRequired", "passwordResetRequired"),
                    ("UserName", "userName"),
                ],
            ) })
        }),
        "CreateGroup" => xml_tag(xml, "Group").map(|g| {
            json!({ "group": xml_object(
                g,
                &[
                    ("Path", "path"),
                    ("GroupName", "groupName"),
                    ("GroupId", "groupId"),
                    ("Arn", "arn"),
                    ("CreateDate", "createDate"),
                ],
            ) })
        }),
        "CreatePolicy" => xml_tag(xml, "Policy").map(|p| {
            json!({ "policy": xml_object(
                p,
                &[
                    ("PolicyName", "policyName"),
                    ("DefaultVersionId", "defaultVersionId"),
                    ("PolicyId", "policyId"),
                    ("Path", "path"),
                    ("Arn", "arn"),
                    ("AttachmentCount", "attachmentCount"),
                    ("IsAttachable", "isAttachable"),
                    ("CreateDate", "createDate"),
                    ("UpdateDate", "updateDate"),
                ],
            ) })
        }),
        _ => None,
    };
    out.unwrap_or(Value::Null)
}

#[allow(clippy::too_many_arguments)]
fn build_record(
    identity: &Identity,
    access_key: Option<&str>,
    action: &str,
    params: &[(String, String)],
    xml: &str,
    request_id: &str,
    source_ip: &str,
    user_agent: &str,
) -> Value {
    let request = request_parameters(params);
    let response = response_elements(action, xml, &request);
    json!({
        "eventVersion": "1.09",
        "userIdentity": identity.user_identity(access_key),
        "eventTime": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "eventSource": "iam.amazonaws.com",
        "eventName": action,
        "awsRegion": "us-east-1",
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
        "requestParameters": request,
        "responseElements": response,
        "requestID": request_id,
        "eventID": uuid::Uuid::new_v4().to_string(),
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": identity.account,
        "eventCategory": "Management",
    })
}

// ---------------------------------------------------------------------------------------
// LookupEvents

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    let body = json!({ "__type": kind, "message": message }).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .header("x-amzn-errortype", kind)
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn plain(status: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A time parameter: epoch seconds (number or numeric string) or an RFC 3339 string.
/// Returns whole epoch seconds, rounded down (CloudTrail event times have second precision).
fn time_param(v: Option<&Value>, name: &str) -> Result<Option<i64>, String> {
    let secs = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse::<f64>().ok().or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp() as f64)
        }),
        Some(_) => None,
    };
    match secs {
        Some(s) if s.is_finite() => Ok(Some(s.floor() as i64)),
        _ => Err(format!(
            "{name} must be a timestamp (epoch seconds), got {}",
            v.map(Value::to_string).unwrap_or_default()
        )),
    }
}

/// The `Username` LookupEvents reports: the IAM user name, or a role session's name.
fn summary_username(record: &Value) -> Option<String> {
    let id = record.get("userIdentity")?;
    if let Some(u) = id.get("userName").and_then(Value::as_str) {
        return Some(u.to_string());
    }
    let arn = id.get("arn").and_then(Value::as_str)?;
    if arn.contains(":assumed-role/") {
        return arn.rsplit('/').next().map(str::to_owned);
    }
    None
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn resources(record: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let req = record.get("requestParameters");
    for (key, kind) in [
        ("userName", "AWS::IAM::User"),
        ("groupName", "AWS::IAM::Group"),
        ("roleName", "AWS::IAM::Role"),
        ("policyArn", "AWS::IAM::Policy"),
        ("accessKeyId", "AWS::IAM::AccessKey"),
    ] {
        if let Some(name) = req.and_then(|r| r.get(key)).and_then(Value::as_str) {
            out.push(json!({ "ResourceType": kind, "ResourceName": name }));
        }
    }
    if let Some(k) = str_field(record, &["responseElements", "accessKey", "accessKeyId"]) {
        out.push(json!({ "ResourceType": "AWS::IAM::AccessKey", "ResourceName": k }));
    }
    out
}

fn any_string_equals(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Array(a) => a.iter().any(|x| any_string_equals(x, want)),
        Value::Object(m) => m.values().any(|x| any_string_equals(x, want)),
        _ => false,
    }
}

fn read_only(record: &Value) -> bool {
    match record.get("readOnly") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn matches_attribute(record: &Value, key: &str, value: &str) -> bool {
    match key {
        "EventId" => str_field(record, &["eventID"]) == Some(value),
        "EventName" => str_field(record, &["eventName"]) == Some(value),
        "EventSource" => str_field(record, &["eventSource"]) == Some(value),
        "Username" => summary_username(record).as_deref() == Some(value),
        "AccessKeyId" => str_field(record, &["userIdentity", "accessKeyId"]) == Some(value),
        "ReadOnly" => read_only(record).to_string() == value.to_ascii_lowercase(),
        "ResourceName" => {
            record
                .get("requestParameters")
                .is_some_and(|r| any_string_equals(r, value))
                || resources(record)
                    .iter()
                    .any(|r| r.get("ResourceName").and_then(Value::as_str) == Some(value))
        }
        "ResourceType" => resources(record)
            .iter()
            .any(|r| r.get("ResourceType").and_then(Value::as_str) == Some(value)),
        _ => false,
    }
}

const ATTRIBUTE_KEYS: &[&str] = &[
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
];

fn lookup_summary(record: &Value, time: DateTime<Utc>) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            m.insert(k.to_string(), json!(v));
        }
    };
    put("EventId", str_field(record, &["eventID"]));
    put("EventName", str_field(record, &["eventName"]));
    put(
        "AccessKeyId",
        str_field(record, &["userIdentity", "accessKeyId"]),
    );
    put("EventSource", str_field(record, &["eventSource"]));
    put("Username", summary_username(record).as_deref());
    m.insert(
        "ReadOnly".into(),
        json!(if read_only(record) { "true" } else { "false" }),
    );
    m.insert("EventTime".into(), json!(time.timestamp()));
    m.insert("Resources".into(), Value::Array(resources(record)));
    m.insert("CloudTrailEvent".into(), json!(record.to_string()));
    Value::Object(m)
}

/// Binds a NextToken to the query it continues.
fn fingerprint(
    account: &str,
    start: Option<i64>,
    end: Option<i64>,
    attr: &Option<(String, String)>,
) -> u64 {
    // DefaultHasher::new() is deterministic within one build, which is all a token needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (account, start, end, attr).hash(&mut h);
    h.finish()
}

fn encode_token(snapshot: u64, offset: usize, fp: u64) -> String {
    format!("v1.{snapshot:x}.{offset:x}.{fp:016x}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_token(token: &str) -> Option<(u64, usize, u64)> {
    if token.len() % 2 != 0 || token.len() > 256 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let s = String::from_utf8(bytes?).ok()?;
    let mut it = s.split('.');
    if it.next()? != "v1" {
        return None;
    }
    let snapshot = u64::from_str_radix(it.next()?, 16).ok()?;
    let offset = usize::from_str_radix(it.next()?, 16).ok()?;
    let fp = u64::from_str_radix(it.next()?, 16).ok()?;
    it.next().is_none().then_some((snapshot, offset, fp))
}

async fn lookup_events(st: &AppState, headers: &HeaderMap, body: &Bytes) -> Response<Body> {
    let bad = |kind: &str, msg: &str| aws_error(StatusCode::BAD_REQUEST, kind, msg);
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return bad(
                    "SerializationException",
                    "request body must be a JSON object",
                )
            }
            Err(e) => {
                return bad(
                    "SerializationException",
                    &format!("request body is not valid JSON: {e}"),
                )
            }
        }
    };
    let start = match time_param(req.get("StartTime"), "StartTime") {
        Ok(t) => t,
        Err(e) => return bad("InvalidTimeRangeException", &e),
    };
    let end = match time_param(req.get("EndTime"), "EndTime") {
        Ok(t) => t,
        Err(e) => return bad("InvalidTimeRangeException", &e),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return bad(
                "InvalidTimeRangeException",
                "StartTime must be before EndTime",
            );
        }
    }
    let attr = match req.get("LookupAttributes") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::Array(a)) if a.len() == 1 => {
            let key = a[0].get("AttributeKey").and_then(Value::as_str);
            let value = a[0].get("AttributeValue").and_then(Value::as_str);
            match (key, value) {
                (Some(k), Some(v)) if ATTRIBUTE_KEYS.contains(&k) => {
                    Some((k.to_string(), v.to_string()))
                }
                _ => {
                    return bad(
                        "InvalidLookupAttributesException",
                        &format!(
                            "a lookup attribute needs an AttributeKey (one of {}) and an AttributeValue",
                            ATTRIBUTE_KEYS.join(", ")
                        ),
                    )
                }
            }
        }
        Some(Value::Array(_)) => {
            return bad(
                "InvalidLookupAttributesException",
                "You cannot specify more than one lookup attribute.",
            )
        }
        Some(_) => {
            return bad(
                "InvalidLookupAttributesException",
                "LookupAttributes must be a list",
            )
        }
    };
    let max = match req.get("MaxResults") {
        None | Some(Value::Null) => MAX_RESULTS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_RESULTS).contains(&n) => n,
            _ => {
                return bad(
                    "InvalidMaxResultsException",
                    "MaxResults must be between 1 and 50",
                )
            }
        },
    } as usize;

    let identity = resolve_identity(st, headers).await;
    let fp = fingerprint(&identity.account, start, end, &attr);
    let token = match req.get("NextToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => match decode_token(t) {
            Some((snapshot, offset, tfp)) if tfp == fp => Some((snapshot, offset)),
            Some(_) => {
                return bad(
                    "InvalidNextTokenException",
                    "The NextToken does not belong to this query: repeat the query's StartTime, EndTime and LookupAttributes",
                )
            }
            None => return bad("InvalidNextTokenException", "Invalid NextToken."),
        },
        Some(_) => return bad("InvalidNextTokenException", "NextToken must be a string"),
    };

    let now = Instant::now();
    let (events, next) = {
        let store = st.store();
        let empty = Vec::new();
        let all = store.accounts.get(&identity.account).unwrap_or(&empty);
        let (snapshot, offset) = match token {
            Some(t) => t,
            None => {
                let visible = all
                    .iter()
                    .filter(|e| e.recorded_at + st.delay <= now)
                    .map(|e| e.seq)
                    .max()
                    .unwrap_or(0);
                (visible, 0)
            }
        };
        let mut hits: Vec<&Stored> = all
            .iter()
            .filter(|e| e.seq <= snapshot)
            .filter(|e| start.is_none_or(|s| e.time.timestamp() >= s))
            .filter(|e| end.is_none_or(|x| e.time.timestamp() <= x))
            .filter(|e| {
                attr.as_ref()
                    .is_none_or(|(k, v)| matches_attribute(&e.record, k, v))
            })
            .collect();
        hits.sort_by(|a, b| b.time.cmp(&a.time).then(b.seq.cmp(&a.seq)));
        let page: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(max)
            .map(|e| lookup_summary(&e.record, e.time))
            .collect();
        let next = (offset + max < hits.len()).then(|| encode_token(snapshot, offset + max, fp));
        (page, next)
    };
    let mut out = json!({ "Events": events });
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Body::from(out.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
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
        _ => plain(
            StatusCode::NOT_FOUND,
            "cloudtrail-recorder admin endpoints: POST /recorder/events?account=ID, GET /recorder/events?account=ID, POST /recorder/reset".into(),
        ),
    }
}
