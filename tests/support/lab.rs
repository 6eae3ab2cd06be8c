//! Lab accounts for convergence tests: seeding, fast settings for `iam-warden` child
//! processes, and a canonical digest of everything the baseline touches, comparable across
//! accounts.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use iam_warden::config::{Config, Mode, INACTIVE_SINCE_TAG_PREFIX};
use iam_warden::pacing::{Backoff, PacingSettings};
use serde_json::{json, Value};

use super::{bin, Account};

/// Fast pacing for tests: high rates, small backoff caps, a short per-try limit.
pub fn fast_pacing() -> PacingSettings {
    PacingSettings {
        writes_per_second: 100.0,
        write_burst: 100,
        reads_per_second: 100.0,
        min_rate_per_second: 20.0,
        max_attempts: 8,
        backoff: Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(200),
        },
        attempt_timeout: Duration::from_secs(2),
    }
}

/// Mode enforce, the breaker out of the way, state in `dir`.
pub fn enforce_cfg(dir: &Path) -> Config {
    let mut cfg = Config {
        mode: Mode::Enforce,
        state_dir: dir.to_path_buf(),
        ..Default::default()
    };
    cfg.safety.max_users_changed_percent = 100.0;
    cfg.safety.max_users_changed = 10_000;
    cfg
}

/// The same settings as [`enforce_cfg`] and [`fast_pacing`], as environment for an
/// `iam-warden` child process.
pub const FAST_ENV: &[(&str, &str)] = &[
    ("IAM_WARDEN_MODE", "enforce"),
    ("IAM_WARDEN_SAFETY__MAX_USERS_CHANGED_PERCENT", "100"),
    ("IAM_WARDEN_CONTROLLER__WRITES_PER_SECOND", "100"),
    ("IAM_WARDEN_CONTROLLER__WRITE_BURST", "100"),
    ("IAM_WARDEN_CONTROLLER__READS_PER_SECOND", "100"),
    ("IAM_WARDEN_CONTROLLER__MIN_RATE_PER_SECOND", "20"),
    ("IAM_WARDEN_AWS__MAX_ATTEMPTS", "8"),
    ("IAM_WARDEN_AWS__BACKOFF_BASE_MS", "10"),
    ("IAM_WARDEN_AWS__BACKOFF_MAX_MS", "200"),
    ("IAM_WARDEN_AWS__ATTEMPT_TIMEOUT", "2s"),
];

/// The lab account: `n` users, a third drifting (console users outside the MFA group, and
/// programmatic users with a console password), the rest compliant (no console access).
pub async fn seed_lab(acct: &Account, n: usize) {
    for i in 0..n {
        let name = format!("lab-{i:03}");
        match i % 6 {
            0 => {
                acct.user(&name).await.password(&name).await;
            }
            3 => {
                acct.user_at(&name, "/svc/", &[("iam-warden/access", "programmatic")])
                    .await
                    .password(&name)
                    .await;
            }
            _ => {
                acct.user(&name).await;
            }
        }
    }
}

/// An `iam-warden` child process acting in `acct` through `endpoint` with [`FAST_ENV`],
/// its state (journal) in `dir`; `extra` environment on top; stdout and stderr to `log`.
pub fn spawn_warden(
    args: &[&str],
    acct: &Account,
    dir: &Path,
    endpoint: &str,
    extra: &[(&str, &str)],
    log: Option<&Path>,
) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .env("IAM_WARDEN_STATE_DIR", dir)
        .stdin(Stdio::null());
    for (k, v) in acct.env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint);
    for (k, v) in FAST_ENV.iter().chain(extra) {
        cmd.env(k, v);
    }
    match log {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("open the child's log file");
            let f2 = f.try_clone().expect("clone the log file handle");
            cmd.stdout(f).stderr(f2);
        }
        None => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    cmd.spawn().expect("cannot start iam-warden")
}

/// `iam-warden enforce --once` as a child process against `endpoint`: (exit code, stdout,
/// stderr).
pub fn enforce_cli(acct: &Account, dir: &Path, endpoint: &str) -> (i32, String, String) {
    let child = spawn_warden(ENFORCE_ONCE, acct, dir, endpoint, &[], None);
    let o = child.wait_with_output().expect("wait for iam-warden");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub const ENFORCE_ONCE: &[&str] = &["enforce", "--once", "--confirm-large-change"];

/// Everything the baseline touches, as moto now has it (read directly, never through a
/// proxy: GetAccountAuthorizationDetails, the credential report for console passwords and
/// who has keys, ListAccessKeys for those), canonical so that two accounts seeded alike
/// compare equal:
/// - users: groups, attached policies, console access, tags, access keys (status, in order
///   of creation, named `#0`, `#1`... by that order since ids differ between accounts);
///   an inactive-since tag names its key by that ordinal and its value is checked against
///   the key (`since=<time> created=<the key's creation time>` becomes
///   `since=* created=key`; anything else is kept as it is);
/// - groups: attached policies and members;
/// - customer policies: version count and default document;
/// - the password policy.
pub async fn digest(acct: &Account) -> Value {
    use aws_sdk_iam::types::EntityType;
    let iam = &acct.iam;
    // Users (groups, attached policies, tags), groups and customer policies (all versions)
    // in one paginated read; console access and keys per user.
    let (mut user_details, mut group_details, mut policy_details) = (vec![], vec![], vec![]);
    let mut marker = None;
    loop {
        let page = iam
            .get_account_authorization_details()
            .filter(EntityType::User)
            .filter(EntityType::Group)
            .filter(EntityType::LocalManagedPolicy)
            .set_marker(marker.take())
            .send()
            .await
            .expect("GetAccountAuthorizationDetails");
        user_details.extend(page.user_detail_list().iter().cloned());
        group_details.extend(page.group_detail_list().iter().cloned());
        policy_details.extend(page.policies().iter().cloned());
        match page.marker() {
            Some(m) if page.is_truncated() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let report = Arc::new(credential_report(iam).await);
    let mut reads = tokio::task::JoinSet::new();
    for u in user_details {
        let (iam, report) = (iam.clone(), report.clone());
        reads.spawn(async move {
            let name = u.user_name().unwrap_or_default().to_string();
            let v = user_digest(&iam, &u, report.get(&name).copied()).await;
            (name, v)
        });
    }
    let mut users = BTreeMap::new();
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(r) = reads.join_next().await {
        let (name, v) = r.expect("user digest task");
        for g in str_set(&v["groups"]) {
            members.entry(g).or_default().push(name.clone());
        }
        users.insert(name, v);
    }
    let mut groups = BTreeMap::new();
    for g in &group_details {
        let gname = g.group_name().unwrap_or_default().to_string();
        let mut pols: Vec<String> = g
            .attached_managed_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_string))
            .collect();
        pols.sort();
        let mut m = members.remove(&gname).unwrap_or_default();
        m.sort();
        groups.insert(gname, json!({"policies": pols, "members": m}));
    }
    let mut policies = BTreeMap::new();
    for p in &policy_details {
        let versions = p.policy_version_list();
        let default = versions
            .iter()
            .find(|v| v.is_default_version())
            .and_then(|v| v.document())
            .unwrap_or_default();
        // moto leaves PolicyName out here: the name is the ARN's last segment.
        let name = p
            .policy_name()
            .or_else(|| p.arn().and_then(|a| a.rsplit('/').next()))
            .unwrap_or_default();
        policies.insert(
            name.to_string(),
            json!({
                "versions": versions.len(),
                "document": iam_warden::inventory::decode_policy_document(default),
            }),
        );
    }
    let pp = iam
        .get_account_password_policy()
        .send()
        .await
        .ok()
        .and_then(|o| o.password_policy().map(|p| format!("{p:?}")));
    json!({"users": users, "groups": groups, "policies": policies, "password_policy": pp})
}

/// Per user, from the credential report: (has a console password, has access keys). Rows
/// that do not split into the report's 22 columns (a name with a comma) are left out: those
/// users are read one by one.
async fn credential_report(iam: &aws_sdk_iam::Client) -> BTreeMap<String, (bool, bool)> {
    let mut rows = BTreeMap::new();
    if iam.generate_credential_report().send().await.is_err() {
        return rows;
    }
    let Ok(out) = iam.get_credential_report().send().await else {
        return rows;
    };
    let text = out
        .content()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() == 22 {
            rows.insert(f[0].to_string(), (f[3] == "true", f[9] != "N/A"));
        }
    }
    rows
}

async fn user_digest(
    iam: &aws_sdk_iam::Client,
    u: &aws_sdk_iam::types::UserDetail,
    report: Option<(bool, bool)>,
) -> Value {
    let name = u.user_name().unwrap_or_default();
    let mut groups: Vec<String> = u.group_list().to_vec();
    groups.sort();
    let mut attached: Vec<String> = u
        .attached_managed_policies()
        .iter()
        .filter_map(|p| p.policy_name().map(str::to_string))
        .collect();
    attached.sort();
    let (console, has_keys) = match report {
        Some(r) => r,
        None => (
            iam.get_login_profile().user_name(name).send().await.is_ok(),
            true,
        ),
    };
    let keys_out = if has_keys {
        iam.list_access_keys()
            .user_name(name)
            .send()
            .await
            .expect("ListAccessKeys")
            .access_key_metadata()
            .to_vec()
    } else {
        Vec::new()
    };
    // (created, id, status), in order of creation.
    let mut keys: Vec<(String, String, String)> = keys_out
        .iter()
        .map(|k| {
            (
                k.create_date()
                    .map(|d| d.secs().to_string())
                    .unwrap_or_default(),
                k.access_key_id().unwrap_or_default().to_string(),
                k.status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    keys.sort();
    let mut tags = BTreeMap::new();
    for t in u.tags() {
        let (k, v) = canonical_tag(&keys, t.key(), t.value());
        tags.insert(k, v);
    }
    let keys: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, (_, _, status))| json!({"key": format!("#{i}"), "status": status}))
        .collect();
    json!({"groups": groups, "attached": attached, "console": console, "keys": keys, "tags": tags})
}

/// An inactive-since tag with its key id replaced by the key's ordinal, its value by
/// `since=* created=key` when it is well-formed and names the key's creation time.
fn canonical_tag(keys: &[(String, String, String)], key: &str, value: &str) -> (String, String) {
    let Some(id) = key.strip_prefix(INACTIVE_SINCE_TAG_PREFIX) else {
        return (key.to_string(), value.to_string());
    };
    let Some((i, (created, _, _))) = keys.iter().enumerate().find(|(_, k)| k.1 == id) else {
        return (
            format!("{INACTIVE_SINCE_TAG_PREFIX}<not a key of this user>"),
            value.to_string(),
        );
    };
    let canonical = (|| {
        let rest = value.strip_prefix("since=")?;
        let (since, created_at) = rest.split_once(" created=")?;
        chrono::DateTime::parse_from_rfc3339(since).ok()?;
        let c = chrono::DateTime::parse_from_rfc3339(created_at).ok()?;
        (c.timestamp().to_string() == *created).then(|| "since=* created=key".to_string())
    })();
    (
        format!("{INACTIVE_SINCE_TAG_PREFIX}#{i}"),
        canonical.unwrap_or_else(|| value.to_string()),
    )
}

/// A write iam-warden made that a change between two digests shows: its journal action,
/// user, and target (`None`: any target, e.g. a key id that the digest names by ordinal).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Write {
    pub action: &'static str,
    pub user: Option<String>,
    pub target: Option<String>,
}

fn write(action: &'static str, user: Option<&str>, target: Option<&str>) -> Write {
    Write {
        action,
        user: user.map(str::to_string),
        target: target.map(str::to_string),
    }
}

fn str_set(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The writes that turned digest `before` into digest `after` (both from [`digest`]), and
/// every change no iam-warden write explains (as text).
pub fn writes_between(before: &Value, after: &Value) -> (Vec<Write>, Vec<String>) {
    let mut writes = Vec::new();
    let mut odd = Vec::new();
    let empty = json!({});
    let users_before = before["users"].as_object().cloned().unwrap_or_default();
    let users_after = after["users"].as_object().cloned().unwrap_or_default();
    if users_before.keys().ne(users_after.keys()) {
        odd.push("the set of users changed".to_string());
    }
    for (u, a) in &users_after {
        let b = users_before.get(u).unwrap_or(&empty);
        let user = Some(u.as_str());
        let (gb, ga) = (str_set(&b["groups"]), str_set(&a["groups"]));
        for g in ga.difference(&gb) {
            writes.push(write("add_user_to_group", user, Some(g)));
        }
        if gb.difference(&ga).next().is_some() {
            odd.push(format!("{u} left a group"));
        }
        let (pb, pa) = (str_set(&b["attached"]), str_set(&a["attached"]));
        for p in pa.difference(&pb) {
            writes.push(write("attach_user_policy", user, Some(p)));
        }
        if pb.difference(&pa).next().is_some() {
            odd.push(format!("{u} lost an attached policy"));
        }
        match (b["console"].as_bool(), a["console"].as_bool()) {
            (Some(true), Some(false)) => writes.push(write("delete_login_profile", user, None)),
            (x, y) if x != y => odd.push(format!("{u} console {x:?} -> {y:?}")),
            _ => {}
        }
        let (kb, ka) = (
            b["keys"].as_array().cloned().unwrap_or_default(),
            a["keys"].as_array().cloned().unwrap_or_default(),
        );
        if kb.len() != ka.len() {
            odd.push(format!("{u} has {} keys, had {}", ka.len(), kb.len()));
        } else {
            for (x, y) in kb.iter().zip(&ka) {
                match (x["status"].as_str(), y["status"].as_str()) {
                    (Some("Active"), Some("Inactive")) => {
                        writes.push(write("deactivate_access_key", user, None))
                    }
                    (s, t) if s != t => odd.push(format!("{u} key {s:?} -> {t:?}")),
                    _ => {}
                }
            }
        }
        let (tb, ta) = (
            b["tags"].as_object().cloned().unwrap_or_default(),
            a["tags"].as_object().cloned().unwrap_or_default(),
        );
        for (k, v) in &ta {
            if tb.get(k) == Some(v) {
                continue;
            }
            if k.starts_with(INACTIVE_SINCE_TAG_PREFIX) {
                writes.push(write("tag_user", user, None));
            } else {
                odd.push(format!("{u} tag {k} = {v}"));
            }
        }
        if tb.keys().any(|k| !ta.contains_key(k)) {
            odd.push(format!("{u} lost a tag"));
        }
    }
    let groups_before = before["groups"].as_object().cloned().unwrap_or_default();
    for (g, a) in after["groups"].as_object().cloned().unwrap_or_default() {
        let b = groups_before.get(&g);
        if b.is_none() {
            writes.push(write("create_group", None, Some(&g)));
        }
        let pb = b.map(|b| str_set(&b["policies"])).unwrap_or_default();
        for p in str_set(&a["policies"]).difference(&pb) {
            writes.push(write(
                "attach_group_policy",
                None,
                Some(&format!("{g} <- {p}")),
            ));
        }
    }
    let policies_before = before["policies"].as_object().cloned().unwrap_or_default();
    for (p, a) in after["policies"].as_object().cloned().unwrap_or_default() {
        match policies_before.get(&p) {
            None => writes.push(write("create_policy", None, Some(&p))),
            Some(b) if b != &a => writes.push(write("create_policy_version", None, None)),
            Some(_) => {}
        }
    }
    if before["password_policy"] != after["password_policy"] {
        writes.push(write("update_password_policy", None, None));
    }
    writes.sort();
    (writes, odd)
}

/// Journal lines per outcome, and the intents no later outcome line settles (the process
/// stopped between the write and its outcome).
#[derive(Debug, Default)]
pub struct JournalSummary {
    pub lines: usize,
    pub applied: Vec<iam_warden::journal::Entry>,
    pub unsettled: Vec<iam_warden::journal::Entry>,
    pub other: usize,
}

/// Read `dir`'s journal (missing: empty) and pair each outcome line with the open intent of
/// the same action, user and target.
pub fn journal_summary(dir: &Path) -> JournalSummary {
    let path = dir.join("journal.jsonl");
    if !path.exists() {
        return JournalSummary::default();
    }
    let entries = iam_warden::journal::Journal::read_with_intents(&path)
        .unwrap_or_else(|e| panic!("the journal stays readable after a kill: {e}"));
    let mut s = JournalSummary {
        lines: entries.len(),
        ..Default::default()
    };
    let mut open: Vec<iam_warden::journal::Entry> = Vec::new();
    for e in entries {
        if e.is_intent() {
            open.push(e);
            continue;
        }
        if let Some(i) = open
            .iter()
            .position(|o| o.action == e.action && o.user == e.user && o.target == e.target)
        {
            open.remove(i);
        }
        if e.outcome == "applied" {
            s.applied.push(e);
        } else {
            s.other += 1;
        }
    }
    s.unsettled = open;
    s
}

/// Problems with the journal of a run that turned `before` into `after`: a visible write
/// with neither an `applied` line nor an unsettled intent (lost from the journal), a write
/// applied twice, a change no write explains.
pub fn journal_problems(dir: &Path, before: &Value, after: &Value) -> Vec<String> {
    let (writes, mut problems) = writes_between(before, after);
    let j = journal_summary(dir);
    let matches = |w: &Write, e: &iam_warden::journal::Entry| {
        e.action == w.action && e.user == w.user && w.target.as_ref().is_none_or(|t| &e.target == t)
    };
    for w in &writes {
        let applied = j.applied.iter().filter(|e| matches(w, e)).count();
        let intended = j.unsettled.iter().any(|e| matches(w, e));
        if applied == 0 && !intended {
            problems.push(format!("not in the journal: {w:?}"));
        }
    }
    let mut seen = BTreeMap::new();
    for e in &j.applied {
        *seen
            .entry((e.action.clone(), e.user.clone(), e.target.clone()))
            .or_insert(0) += 1;
    }
    for (k, n) in seen {
        if n > 1 {
            problems.push(format!("applied {n} times: {k:?}"));
        }
    }
    if writes.is_empty() {
        problems.push("no write to check: the lab did not drift".into());
    }
    problems
}

/// The paths where two JSON values differ (at most `max`), for assertion messages.
pub fn differences(a: &Value, b: &Value, max: usize) -> Vec<String> {
    fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        format!("{path}/{k}"),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{path}: {a} != {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out.truncate(max);
    out
}
