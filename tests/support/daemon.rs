//! A spawned `iam-warden run` process (its JSON log lines from stderr collected, the
//! address of its HTTP server read from the `listening` line, killed on drop), a plain HTTP
//! GET for its endpoints, and access keys used the way a consumer would use them; the
//! daemon's own session, its base command, and the CloudTrail event of an IAM call as
//! EventBridge delivers it to the SQS source.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::eventually;

const DEADLINE: Duration = Duration::from_secs(60);

/// A running daemon. Each test module adds its own `start` (its environment) through a
/// trait of its own.
pub struct Daemon {
    pub child: Child,
    addr: Arc<Mutex<Option<String>>>,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Spawn `cmd` (an `iam-warden run` with `IAM_WARDEN_LOG_FORMAT=json`) with stdin and
    /// stdout null and stderr read by a thread: every line kept, the address of the
    /// `listening` line noted.
    pub fn spawn(mut cmd: Command) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let addr = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(String::new()));
        let (a, l) = (addr.clone(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
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

    /// The HTTP server's address, once the daemon has logged it.
    pub async fn addr(&self) -> String {
        let a = self.addr.clone();
        eventually("the daemon to listen", DEADLINE, || {
            let a = a.clone();
            async move { a.lock().unwrap().clone() }
        })
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr().await, path)
    }

    pub async fn wait_ready(&self) {
        let addr = self.addr().await;
        eventually("/readyz to say ready", DEADLINE, || {
            let addr = addr.clone();
            async move { (http_get(&addr, "/readyz").0 == 200).then_some(()) }
        })
        .await;
    }

    /// The whole /metrics exposition.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }

    /// The value of the first /metrics line starting with `needle`, or of the same name
    /// having (at least) the labels of `needle` (0 when absent): `name{check="x"}` finds
    /// `name{account="1",check="x"}`.
    pub async fn metric(&self, needle: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        body.lines()
            .find(|l| l.starts_with(needle) || has_labels(l, needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM and wait for the exit code (with a deadline); the exit code and the log.
    pub async fn stop(mut self) -> (i32, String) {
        self.signal("TERM");
        let code = wait_exit(&mut self.child, DEADLINE).await;
        (code, self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether sample `line` is of the metric of `needle` (`name{a="x",b="y"}`) with at least
/// its labels.
pub fn has_labels(line: &str, needle: &str) -> bool {
    let Some((name, want)) = needle.split_once('{') else {
        return false;
    };
    let Some((have, _)) = line
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('{'))
        .and_then(|r| r.split_once('}'))
    else {
        return false;
    };
    want.trim_end_matches('}')
        .split(',')
        .filter(|p| !p.is_empty())
        .all(|p| have.split(',').any(|h| h == p))
}

/// Wait (at most `deadline`) for `child` to exit; its exit code (-1: killed by a signal).
pub async fn wait_exit(child: &mut Child, deadline: Duration) -> i32 {
    eventually("the daemon to exit", deadline, || {
        let r = child.try_wait().unwrap();
        async move { r.map(|s| s.code().unwrap_or(-1)) }
    })
    .await
}

/// GET `path` from `addr` over HTTP/1.1: (status, body); (0, "") when it cannot connect.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// An SDK configuration that signs with the access key `id`/`secret` at `endpoint`.
pub fn sdk_for(endpoint: &str, id: &str, secret: &str) -> aws_types::SdkConfig {
    aws_types::SdkConfig::builder()
        .region(aws_types::region::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::from_keys(id, secret, None),
            ),
        )
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build()
}

/// Sign one IAM request with the key: moto records it as the key's last use.
pub async fn use_key(endpoint: &str, id: &str, secret: &str) {
    aws_sdk_iam::Client::new(&sdk_for(endpoint, id, secret))
        .list_users()
        .send()
        .await
        .unwrap();
}

/// sts GetCallerIdentity with the key: the ARN it answers for.
pub async fn caller_arn(endpoint: &str, id: &str, secret: &str) -> String {
    aws_sdk_sts::Client::new(&sdk_for(endpoint, id, secret))
        .get_caller_identity()
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap_or_default()
        .to_string()
}

/// Credentials of another session in `acct` (role `iam-warden`, session `name`): the
/// daemon's own identity.
pub async fn session(acct: &super::Account, name: &str) -> aws_credential_types::Credentials {
    let out = aws_sdk_sts::Client::new(&acct.sdk)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{}:role/iam-warden", acct.id))
        .role_session_name(name)
        .send()
        .await
        .expect("AssumeRole for the daemon");
    let c = out.credentials().expect("credentials");
    aws_credential_types::Credentials::from_keys(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
    )
}

/// `iam-warden run` with a clean environment: `creds` at the moto `endpoint`, JSON logs at
/// info, the HTTP server on a free port. Each test adds its own settings.
pub fn run_command(creds: &aws_credential_types::Credentials, endpoint: &str) -> Command {
    let mut cmd = Command::new(super::bin());
    cmd.arg("run")
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
        .env(
            "AWS_SESSION_TOKEN",
            creds.session_token().unwrap_or_default(),
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("IAM_WARDEN_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("IAM_WARDEN_SERVER__LISTEN", "127.0.0.1:0");
    cmd
}

/// An EventBridge envelope with a CloudTrail `event` record for `user` by an admin role.
pub fn iam_event(acct: &super::Account, event: &str, user: &str) -> String {
    let record = serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "arn": format!("arn:aws:sts::{}:assumed-role/admin/x", acct.id), "accountId": acct.id},
        "eventTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": "iam.amazonaws.com",
        "eventName": event,
        "awsRegion": "us-east-1",
        "requestParameters": {"userName": user},
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
