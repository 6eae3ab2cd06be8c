//! The IAM credential report: one CSV with password, MFA and key facts for every user.
//!
//! Parsing is by column name (extra columns are ignored, missing required ones are an
//! error). A row that cannot be parsed is reported in [`ParsedReport::bad_rows`] with its
//! line and user, and the caller reads that user live: nothing is silently dropped.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::{AccessKeyState, PasswordState};
use crate::error::Error;

/// Credential facts of one user, from one report row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub user: String,
    pub arn: String,
    pub created: Option<DateTime<Utc>>,
    pub password: Option<PasswordState>,
    pub mfa_active: bool,
    pub keys: Vec<AccessKeyState>,
}

/// The root user's facts, from the report's `<root_account>` row (CIS 1.3, 1.4, 1.6).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootRow {
    pub arn: String,
    pub mfa_active: bool,
    /// When the root password was last used to sign in (`None`: never, or no information).
    pub password_last_used: Option<DateTime<Utc>>,
    /// The root user's access keys that exist (by slot; the report has no key ids).
    pub keys: Vec<RootKey>,
}

/// One root access key, by its report slot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootKey {
    pub slot: u8,
    pub active: bool,
    pub last_used: Option<DateTime<Utc>>,
}

/// What became of the report's `<root_account>` row.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootEntry {
    /// The report has no root row: the root checks cannot be made (never a pass).
    #[default]
    Missing,
    /// The root row could not be parsed: what is wrong with it.
    Unreadable(String),
    Read(RootRow),
}

#[derive(Debug, Clone, Default)]
pub struct ParsedReport {
    /// Rows by user name (the root account's row is in [`ParsedReport::root`]).
    pub rows: BTreeMap<String, ReportRow>,
    /// The `<root_account>` row.
    pub root: RootEntry,
    /// One description per row that could not be parsed: line, user if known, what is wrong.
    pub bad_rows: Vec<BadRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub user: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            // The name comes from the report: a line break in it must not break the line.
            Some(u) => write!(
                f,
                "credential report line {} (user {}): {}",
                self.line,
                u.escape_debug(),
                self.problem
            ),
            None => write!(f, "credential report line {}: {}", self.line, self.problem),
        }
    }
}

const REQUIRED: &[&str] = &[
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
];

/// At most this many characters of an unexpected header line are quoted in the error.
const MAX_HEADER_ECHO: usize = 400;

/// A report timestamp: a date, or one of the report's words for "none".
fn parse_time(col: &str, v: &str) -> Result<Option<DateTime<Utc>>, String> {
    match v.trim() {
        "" | "N/A" | "no_information" | "not_supported" => Ok(None),
        s => DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| format!("{col} = {s:?} is not a date")),
    }
}

fn parse_bool(col: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "n/a" | "not_supported" => Ok(false),
        s => Err(format!("{col} = {s:?} is not true or false")),
    }
}

/// Parse the report's CSV content.
pub fn parse(content: &[u8]) -> Result<ParsedReport, Error> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(content);
    let headers = rdr
        .headers()
        .map_err(|e| Error::CredentialReport(format!("the header line is unreadable: {e}")))?
        .clone();
    let index: HashMap<&str, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim(), i))
        .collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !index.contains_key(c))
        .collect();
    if !missing.is_empty() {
        // The header found is quoted escaped and cut short: it may be anything.
        let found: String = headers
            .iter()
            .collect::<Vec<_>>()
            .join(",")
            .escape_debug()
            .take(MAX_HEADER_ECHO)
            .collect();
        return Err(Error::CredentialReport(format!(
            "the report lacks the column(s) {}; found {found}. Is this an IAM credential report?",
            missing.join(", "),
        )));
    }
    let mut out = ParsedReport::default();
    for (i, rec) in rdr.records().enumerate() {
        let line = i as u64 + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                out.bad_rows.push(BadRow {
                    line,
                    user: None,
                    problem: format!("unreadable CSV: {e}"),
                });
                continue;
            }
        };
        let user = rec
            .get(index["user"])
            .map(str::to_string)
            .filter(|u| !u.is_empty());
        if user.as_deref() == Some(ROOT_USER) {
            out.root = match parse_root(&rec, &index, headers.len()) {
                Ok(r) => RootEntry::Read(r),
                Err(problem) => RootEntry::Unreadable(format!("line {line}: {problem}")),
            };
            continue;
        }
        let rec = repair_unquoted_commas(rec, &index, headers.len());
        let user = rec
            .get(index["user"])
            .map(str::to_string)
            .filter(|u| !u.is_empty())
            .or(user);
        match parse_row(&rec, &index, headers.len()) {
            Ok(row) => {
                out.rows.insert(row.user.clone(), row);
            }
            Err(problem) => out.bad_rows.push(BadRow {
                line,
                user,
                problem,
            }),
        }
    }
    Ok(out)
}

/// IAM user names may contain commas, and some report writers do not quote them: the
/// row then has 2k extra fields (k commas in the name, the same k in the ARN that ends
/// with the name). Rejoin them when the ARN proves the split; otherwise leave the row.
fn repair_unquoted_commas(
    rec: csv::StringRecord,
    index: &HashMap<&str, usize>,
    header_len: usize,
) -> csv::StringRecord {
    let extra = rec.len().saturating_sub(header_len);
    if extra == 0 || extra % 2 != 0 || index.get("user") != Some(&0) || index.get("arn") != Some(&1)
    {
        return rec;
    }
    let k = extra / 2;
    let fields: Vec<&str> = rec.iter().collect();
    let user = fields[..=k].join(",");
    let arn = fields[k + 1..=2 * k + 1].join(",");
    if !(arn.starts_with("arn:") && arn.ends_with(&format!("/{user}"))) {
        return rec;
    }
    let mut out = csv::StringRecord::new();
    out.push_field(&user);
    out.push_field(&arn);
    for f in &fields[2 * k + 2..] {
        out.push_field(f);
    }
    out
}

/// The user name the credential report gives the root user.
pub const ROOT_USER: &str = "<root_account>";

/// The root row: its password column says `not_supported`, but `password_last_used` is
/// when root last signed in.
fn parse_root(
    rec: &csv::StringRecord,
    index: &HashMap<&str, usize>,
    header_len: usize,
) -> Result<RootRow, String> {
    let row = parse_row(rec, index, header_len)?;
    let get = |col: &str| rec.get(index[col]).unwrap_or("");
    // A key is there when it is active or has a rotation date (an active key without a
    // date is still a root key: never dropped).
    let mut keys = Vec::new();
    for slot in 1..=2u8 {
        let col = |s: &str| format!("access_key_{slot}_{s}");
        let active = parse_bool(&col("active"), get(&col("active")))?;
        let rotated = parse_time(&col("last_rotated"), get(&col("last_rotated")))?;
        if active || rotated.is_some() {
            keys.push(RootKey {
                slot,
                active,
                last_used: parse_time(&col("last_used_date"), get(&col("last_used_date")))?,
            });
        }
    }
    Ok(RootRow {
        arn: row.arn,
        mfa_active: row.mfa_active,
        password_last_used: parse_time("password_last_used", get("password_last_used"))?,
        keys,
    })
}

fn parse_row(
    rec: &csv::StringRecord,
    index: &HashMap<&str, usize>,
    header_len: usize,
) -> Result<ReportRow, String> {
    if rec.len() < header_len {
        return Err(format!(
            "truncated row: {} fields, the header has {header_len}",
            rec.len()
        ));
    }
    let get = |col: &str| rec.get(index[col]).unwrap_or("");
    let user = get("user").to_string();
    if user.is_empty() {
        return Err("empty user name".into());
    }
    let password = if parse_bool("password_enabled", get("password_enabled"))? {
        Some(PasswordState {
            changed: parse_time("password_last_changed", get("password_last_changed"))?,
            last_used: parse_time("password_last_used", get("password_last_used"))?,
        })
    } else {
        None
    };
    let mut keys = Vec::new();
    for slot in 1..=2u8 {
        let col = |s: &str| format!("access_key_{slot}_{s}");
        let rotated_col = col("last_rotated");
        let Some(created) = parse_time(&rotated_col, get(&rotated_col))? else {
            continue;
        };
        let active_col = col("active");
        let used_col = col("last_used_date");
        keys.push(AccessKeyState {
            id: None,
            slot,
            active: parse_bool(&active_col, get(&active_col))?,
            created,
            last_used: parse_time(&used_col, get(&used_col))?,
        });
    }
    Ok(ReportRow {
        arn: get("arn").to_string(),
        created: parse_time("user_creation_time", get("user_creation_time"))?,
        mfa_active: parse_bool("mfa_active", get("mfa_active"))?,
        password,
        keys,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    fn report(rows: &[&str]) -> Vec<u8> {
        let mut s = String::from(HEADER);
        for r in rows {
            s.push('\n');
            s.push_str(r);
        }
        s.into_bytes()
    }

    const ROOT: &str = "<root_account>,arn:aws:iam::123456789012:root,2020-01-01T00:00:00+00:00,not_supported,2026-01-01T00:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A";
    const ALICE: &str = "alice,arn:aws:iam::123456789012:user/alice,2025-01-01T00:00:00+00:00,true,no_information,2025-01-02T00:00:00+00:00,N/A,false,true,2025-02-01T10:00:00+00:00,N/A,N/A,N/A,false,2025-03-01T00:00:00+00:00,2025-03-05T00:00:00+00:00,us-east-1,s3,false,N/A,false,N/A";
    const SVC: &str = "svc+ci=x,arn:aws:iam::123456789012:user/ci/svc+ci=x,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2025-06-01T00:00:00Z,2025-06-02T00:00:00Z,not_supported,not_supported,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A";

    #[test]
    fn parses_users_keys_and_report_words() {
        let r = parse(&report(&[ROOT, ALICE, SVC])).unwrap();
        assert!(r.bad_rows.is_empty(), "{:?}", r.bad_rows);
        assert_eq!(r.rows.len(), 2, "root row left out");
        let a = &r.rows["alice"];
        let pw = a.password.as_ref().unwrap();
        assert_eq!(pw.last_used, None, "no_information = never used");
        assert_eq!(
            pw.changed.unwrap().to_rfc3339(),
            "2025-01-02T00:00:00+00:00"
        );
        assert!(!a.mfa_active);
        assert_eq!(a.keys.len(), 2);
        assert!(a.keys[0].active && a.keys[0].last_used.is_none() && a.keys[0].id.is_none());
        assert!(!a.keys[1].active);
        assert_eq!(a.keys[1].slot, 2);
        assert_eq!(
            a.keys[1].last_used.unwrap().to_rfc3339(),
            "2025-03-05T00:00:00+00:00"
        );
        let s = &r.rows["svc+ci=x"];
        assert!(s.password.is_none());
        assert_eq!(s.keys.len(), 1);
        assert_eq!(s.arn, "arn:aws:iam::123456789012:user/ci/svc+ci=x");
    }

    #[test]
    fn truncated_and_malformed_rows_are_reported_not_dropped() {
        let truncated = "bob,arn:aws:iam::123456789012:user/bob,2025-01-01T00:00:00+00:00,true";
        let bad_date = ALICE
            .replace("alice", "carol")
            .replace("2025-02-01T10:00:00+00:00", "yesterday");
        let bad_bool = SVC.replace("svc+ci=x", "dave").replacen(
            ",false,N/A,N/A,N/A,false,",
            ",maybe,N/A,N/A,N/A,false,",
            1,
        );
        let r = parse(&report(&[ALICE, truncated, &bad_date, &bad_bool])).unwrap();
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.bad_rows.len(), 3, "{:?}", r.bad_rows);
        assert_eq!(r.bad_rows[0].user.as_deref(), Some("bob"));
        assert_eq!(r.bad_rows[0].line, 3);
        assert!(
            r.bad_rows[0].problem.contains("truncated"),
            "{}",
            r.bad_rows[0]
        );
        assert!(
            r.bad_rows[1].problem.contains("yesterday"),
            "{}",
            r.bad_rows[1]
        );
        assert!(r.bad_rows[2].problem.contains("maybe"), "{}", r.bad_rows[2]);
        assert!(r.bad_rows[2].to_string().contains("user dave"));
    }

    #[test]
    fn unquoted_commas_in_user_names_are_repaired() {
        let odd = ALICE.replace(
            "alice,arn:aws:iam::123456789012:user/alice",
            "a,b,c,arn:aws:iam::123456789012:user/team/a,b,c",
        );
        let r = parse(&report(&[&odd])).unwrap();
        assert!(r.bad_rows.is_empty(), "{:?}", r.bad_rows);
        assert_eq!(
            r.rows["a,b,c"].arn,
            "arn:aws:iam::123456789012:user/team/a,b,c"
        );
        assert_eq!(r.rows["a,b,c"].keys.len(), 2);
        // Extra fields that the ARN does not explain stay a bad row.
        let junk = format!("{ALICE},x,y");
        let r = parse(&report(&[&junk.replacen("alice", "zed", 1)])).unwrap();
        assert_eq!(r.rows.len() + r.bad_rows.len(), 1);
    }

    #[test]
    fn extra_columns_are_ignored_and_order_does_not_matter() {
        let csv = "extra,mfa_active,user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date\n\
                   x,true,erin,arn:aws:iam::1:user/erin,2025-01-01T00:00:00+00:00,false,N/A,N/A,false,N/A,N/A,false,N/A,N/A\n";
        let r = parse(csv.as_bytes()).unwrap();
        assert!(r.rows["erin"].mfa_active);
        assert!(r.rows["erin"].keys.is_empty());
    }

    #[test]
    fn missing_columns_and_garbage_are_errors() {
        let e = parse(b"user,arn\nalice,arn:x\n").unwrap_err().to_string();
        assert!(e.contains("password_enabled"), "{e}");
        let e = parse(b"<html>not a report</html>").unwrap_err().to_string();
        assert!(e.contains("lacks the column"), "{e}");
        // Invalid UTF-8 inside a row is a bad row, not a panic.
        let mut bytes = report(&[ALICE]);
        bytes.extend_from_slice(b"\n\xff\xfe,\xff\n");
        let r = parse(&bytes).unwrap();
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.bad_rows.len(), 1);
    }

    #[test]
    fn messages_are_one_line_whatever_the_report_holds() {
        // Found by tests/fuzz.rs: a user name or a header with a line break (quoted CSV)
        // broke the message over lines; a huge header was quoted whole.
        let r = parse(&report(&["\"\n\""])).unwrap();
        let msg = r.bad_rows[0].to_string();
        assert_eq!(
            msg,
            "credential report line 2 (user \\n): truncated row: 1 fields, the header has 22"
        );
        let mut header = String::from("\"a\nb\",");
        header.push_str(&"x".repeat(10_000));
        let e = parse(header.as_bytes()).unwrap_err().to_string();
        assert!(!e.contains('\n') && e.contains("a\\nb"), "{e}");
        assert!(e.len() < 1_000, "{} characters", e.len());
    }

    #[test]
    fn empty_report_has_no_rows_and_no_errors() {
        let r = parse(HEADER.as_bytes()).unwrap();
        assert!(r.rows.is_empty() && r.bad_rows.is_empty());
    }

    #[test]
    fn the_root_row_is_read_or_its_absence_said() {
        let RootEntry::Read(root) = parse(&report(&[ROOT, ALICE])).unwrap().root else {
            panic!("root row not read");
        };
        assert_eq!(root.arn, "arn:aws:iam::123456789012:root");
        assert!(root.mfa_active && root.keys.is_empty(), "{root:?}");
        assert_eq!(
            root.password_last_used.map(|t| t.to_rfc3339()),
            Some("2026-01-01T00:00:00+00:00".into()),
            "password_enabled is not_supported on root, its last use is still read"
        );
        // Root with MFA, an active key used, and an inactive key.
        let with_keys = "<root_account>,arn:aws:iam::123456789012:root,2020-01-01T00:00:00+00:00,not_supported,no_information,not_supported,not_supported,true,true,2024-01-01T00:00:00+00:00,2026-02-01T00:00:00+00:00,us-east-1,iam,false,2023-01-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A";
        let RootEntry::Read(root) = parse(&report(&[with_keys])).unwrap().root else {
            panic!("root row not read");
        };
        assert!(root.mfa_active);
        assert_eq!(
            root.password_last_used, None,
            "no_information: no sign-in known"
        );
        assert_eq!(root.keys.len(), 2);
        assert!(root.keys[0].active && root.keys[0].last_used.is_some());
        assert!(!root.keys[1].active && root.keys[1].last_used.is_none());
        // An active root key without a rotation date is still a key.
        let undated = "<root_account>,arn:aws:iam::1:root,N/A,not_supported,N/A,not_supported,not_supported,false,true,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A";
        let RootEntry::Read(root) = parse(&report(&[undated])).unwrap().root else {
            panic!("root row not read");
        };
        assert_eq!(root.keys.len(), 1);
        assert!(root.keys[0].active);
        // No root row, or an unreadable one: said, never read as a root without findings.
        assert_eq!(parse(&report(&[ALICE])).unwrap().root, RootEntry::Missing);
        let bad = "<root_account>,arn:aws:iam::1:root,N/A,not_supported,N/A,not_supported,not_supported,maybe,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A";
        match parse(&report(&[bad])).unwrap().root {
            RootEntry::Unreadable(why) => assert!(why.contains("mfa_active"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
