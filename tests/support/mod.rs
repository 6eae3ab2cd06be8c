//! Test support: a real `moto_server` on a free loopback port, one fresh emulated AWS
//! account per test (STS AssumeRole into a random account id), the real aws-sdk clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use iam_warden::aws::{CallStats, Clients};

/// Start a test proxy (`cmd` with its arguments) that prints `Listening on http://ADDR`
/// first and exits when its stdin closes (the returned child holds it): (child, URL).
pub fn spawn_proxy(mut cmd: Command, stderr: Stdio, what: &str) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the Listening line");
    let url = line
        .trim()
        .strip_prefix("Listening on ")
        .unwrap_or_else(|| panic!("unexpected first line of {what}: {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (child, url)
}

pub mod daemon;
pub mod faults;
pub mod lab;
pub mod recorder;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project venv's python (made by `make test`), or IAM_WARDEN_TEST_PYTHON.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("IAM_WARDEN_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = manifest_dir().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make test` (it creates the venv with moto[server])",
        p.display()
    );
    p
}

/// A running moto server. It exits when this process exits (it watches its stdin).
pub struct Moto {
    pub endpoint: String,
    child: Child,
    pub faketime_file: Option<PathBuf>,
}

const LAUNCHER: &str = r#"
import os, sys, threading
def watch():
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
# moto drops the login profile when UpdateLoginProfile omits Password; AWS keeps the
# password and changes only what is given (e.g. PasswordResetRequired). Behave like AWS.
from moto.iam import models as _iam_models
_update_login_profile = _iam_models.IAMBackend.update_login_profile
def _keep_password(self, user_name, password, password_reset_required):
    user = self.get_user(user_name)
    if password is None:
        password = user.password
    if password_reset_required is None:
        password_reset_required = user.password_reset_required
    return _update_login_profile(self, user_name, password, password_reset_required)
_iam_models.IAMBackend.update_login_profile = _keep_password
# moto answers GetFindings and BatchImportFindings without Security Hub enabled; AWS
# refuses them (InvalidAccessException: not subscribed to AWS Security Hub). Behave like AWS.
from moto.securityhub import models as _sh_models
def _needs_hub(call):
    def checked(self, *args, **kwargs):
        if not self.enabled:
            raise _sh_models.RESTError(
                "InvalidAccessException",
                f"Account {self.account_id} is not subscribed to AWS Security Hub",
            )
        return call(self, *args, **kwargs)
    return checked
for _call in ("get_findings", "batch_import_findings"):
    setattr(_sh_models.SecurityHubBackend, _call,
            _needs_hub(getattr(_sh_models.SecurityHubBackend, _call)))
from moto.server import main
main(["-H", "127.0.0.1", "-p", "0"])
"#;

impl Moto {
    /// Start a moto server on a free port. With `faketime`, moto runs under libfaketime
    /// and its clock follows the offset written to [`Moto::set_clock_offset`].
    pub fn start(faketime: bool) -> Moto {
        Moto::start_with(faketime, &[])
    }

    /// [`Moto::start`] with environment variables for moto (e.g.
    /// `MOTO_IAM_LOAD_MANAGED_POLICIES=true`, which gives accounts the AWS managed policies).
    pub fn start_with(faketime: bool, env: &[(&str, &str)]) -> Moto {
        let mut cmd = Command::new(python());
        cmd.envs(env.iter().copied());
        cmd.arg("-c")
            .arg(LAUNCHER)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut faketime_file = None;
        if faketime {
            let lib = [
                "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
            ]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("libfaketime is missing: apt-get install faketime (make test does)");
            let f = std::env::temp_dir().join(format!(
                "iam-warden-faketime-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::write(&f, "+0d\n").unwrap();
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &f)
                .env("FAKETIME_NO_CACHE", "1");
            faketime_file = Some(f);
        }
        let mut child = cmd.spawn().expect("cannot start moto_server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(i) = line.find("Running on http://") {
                        let url = line[i + "Running on ".len()..].trim().to_string();
                        let _ = tx.send(url);
                        sent = true;
                    }
                }
                // keep draining so moto never blocks on a full pipe
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("moto_server did not report its port within 60s");
        Moto {
            endpoint,
            child,
            faketime_file,
        }
    }

    /// Shift moto's clock: `-100d` makes what is created next 100 days old.
    pub fn set_clock_offset(&self, offset: &str) {
        let f = self
            .faketime_file
            .as_ref()
            .expect("moto was not started with faketime");
        // Atomic: libfaketime re-reads the file on every clock call.
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, f).unwrap();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(f) = &self.faketime_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// One moto server shared by all tests of the integration test binary.
pub fn shared_moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start(false))
}

/// A fresh, empty emulated account with its own credentials.
pub struct Account {
    pub id: String,
    pub endpoint: String,
    pub creds: Credentials,
    pub sdk: aws_types::SdkConfig,
    pub iam: aws_sdk_iam::Client,
}

fn base_loader(endpoint: &str, creds: Credentials) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .retry_config(aws_config::retry::RetryConfig::disabled())
}

impl Account {
    /// A new account on `moto` (AssumeRole into a random 12-digit account id).
    pub async fn new(moto: &Moto) -> Account {
        let id = format!("{:012}", fastrand::u64(100_000_000_000..999_999_999_999));
        let boot = base_loader(
            &moto.endpoint,
            Credentials::from_keys("testing", "testing", None),
        )
        .load()
        .await;
        Account::assumed(
            moto,
            &boot,
            &id,
            &format!("arn:aws:iam::{id}:role/iam-warden-test"),
            "iam-warden-test",
        )
        .await
    }

    /// Account `id` of the organization of `mgmt` (moto made it: `CreateAccount`), acting
    /// through the role moto creates in it.
    pub async fn member_of(moto: &Moto, mgmt: &Account, id: &str) -> Account {
        Account::assumed(
            moto,
            &mgmt.sdk,
            id,
            &format!("arn:aws:iam::{id}:role/OrganizationAccountAccessRole"),
            "seed",
        )
        .await
    }

    /// A new account of the organization of `mgmt` (`CreateAccount` named `name`), acting
    /// through the role moto creates in it.
    pub async fn create_member(moto: &Moto, mgmt: &Account, name: &str) -> Account {
        let out = aws_sdk_organizations::Client::new(&mgmt.sdk)
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .expect("CreateAccount on moto");
        let status = out.create_account_status().expect("the account's status");
        assert_eq!(
            status.state(),
            Some(&aws_sdk_organizations::types::CreateAccountState::Succeeded)
        );
        let id = status
            .account_id()
            .expect("the new account's id")
            .to_string();
        Account::member_of(moto, mgmt, &id).await
    }

    /// Account `id` with the credentials of `role_arn`, assumed by the identity of `by`.
    async fn assumed(
        moto: &Moto,
        by: &aws_types::SdkConfig,
        id: &str,
        role_arn: &str,
        session: &str,
    ) -> Account {
        let out = aws_sdk_sts::Client::new(by)
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            .send()
            .await
            .expect("AssumeRole on moto");
        let c = out.credentials().expect("credentials");
        let creds = Credentials::from_keys(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
        );
        let sdk = base_loader(&moto.endpoint, creds.clone()).load().await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        Account {
            id: id.to_string(),
            endpoint: moto.endpoint.clone(),
            creds,
            sdk,
            iam,
        }
    }

    /// iam-warden's clients for this account, with a fresh call counter.
    pub fn clients(&self) -> Clients {
        Clients::from_sdk_config(&self.sdk, None, CallStats::new())
    }

    /// Environment for an `iam-warden` child process acting in this account.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AWS_ACCESS_KEY_ID".into(),
                self.creds.access_key_id().into(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.creds.secret_access_key().into(),
            ),
            (
                "AWS_SESSION_TOKEN".into(),
                self.creds.session_token().unwrap_or_default().into(),
            ),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_MAX_ATTEMPTS".into(), "1".into()),
        ]
    }

    // ---- seeding through the real IAM API ----

    pub async fn user(&self, name: &str) -> &Self {
        self.user_at(name, "/", &[]).await
    }

    pub async fn user_at(&self, name: &str, path: &str, tags: &[(&str, &str)]) -> &Self {
        let mut req = self.iam.create_user().user_name(name).path(path);
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap(),
            );
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("CreateUser {name}: {e:?}"));
        self
    }

    pub async fn password(&self, name: &str) -> &Self {
        self.iam
            .create_login_profile()
            .user_name(name)
            .password("Correct-Horse-Battery-9!")
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateLoginProfile {name}: {e:?}"));
        self
    }

    /// Creates an access key and returns its id (the secret is dropped at once).
    pub async fn key(&self, name: &str) -> String {
        let out = self
            .iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateAccessKey {name}: {e:?}"));
        out.access_key().unwrap().access_key_id().to_string()
    }

    /// A virtual MFA device enabled for the user.
    /// (id, status) of the user's access keys, oldest first.
    pub async fn access_keys(&self, user: &str) -> Vec<(String, String)> {
        let out = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .expect("ListAccessKeys on moto");
        let mut m: Vec<_> = out.access_key_metadata().to_vec();
        m.sort_by_key(|k| k.create_date().map(|d| (d.secs(), d.subsec_nanos())));
        m.iter()
            .map(|k| {
                (
                    k.access_key_id().unwrap_or_default().to_string(),
                    k.status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The status of one access key of `user` (`gone` when it no longer exists).
    pub async fn access_key_status(&self, user: &str, key: &str) -> String {
        self.access_keys(user)
            .await
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s)
            .unwrap_or_else(|| "gone".into())
    }

    pub async fn mfa(&self, name: &str) -> &Self {
        let dev = self
            .iam
            .create_virtual_mfa_device()
            .virtual_mfa_device_name(format!("{name}-mfa"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateVirtualMFADevice {name}: {e:?}"));
        let serial = dev
            .virtual_mfa_device()
            .unwrap()
            .serial_number()
            .to_string();
        self.iam
            .enable_mfa_device()
            .user_name(name)
            .serial_number(serial)
            .authentication_code1("123456")
            .authentication_code2("654321")
            .send()
            .await
            .unwrap_or_else(|e| panic!("EnableMFADevice {name}: {e:?}"));
        self
    }

    pub async fn tag(&self, name: &str, k: &str, v: &str) -> &Self {
        self.iam
            .tag_user()
            .user_name(name)
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        self
    }

    pub async fn group(&self, group: &str) -> &Self {
        self.iam
            .create_group()
            .group_name(group)
            .send()
            .await
            .unwrap();
        self
    }

    pub async fn add_to_group(&self, name: &str, group: &str) -> &Self {
        self.iam
            .add_user_to_group()
            .user_name(name)
            .group_name(group)
            .send()
            .await
            .unwrap();
        self
    }
}

/// Creates an SQS queue with these attributes; returns its URL.
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(aws_sdk_sqs::types::QueueAttributeName, String)],
) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        req = req.attributes(k.clone(), v.clone());
    }
    req.send()
        .await
        .unwrap()
        .queue_url()
        .expect("CreateQueue returns the queue URL")
        .to_string()
}

/// An SNS topic `topic` in `acct` with a new SQS queue `queue` subscribed to it (the SNS
/// envelope as the message body, not raw): (topic ARN, queue URL).
pub async fn sns_topic_to_queue(acct: &Account, topic: &str, queue: &str) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(&acct.sdk);
    let sqs = aws_sdk_sqs::Client::new(&acct.sdk);
    let topic = sns
        .create_topic()
        .name(topic)
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let url = create_queue(&sqs, queue, &[]).await;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&arn)
        .attributes("RawMessageDelivery", "false")
        .send()
        .await
        .unwrap();
    (topic, url)
}

/// The built `iam-warden` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_iam-warden")
}

/// Poll `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut wait = Duration::from_millis(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(250));
    }
}
