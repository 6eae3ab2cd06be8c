//! `iam-warden impact`: what would the baseline as configured have denied of the account's
//! recorded traffic? Reads the account (users, classes, exemptions), then CloudTrail records
//! from trail files (`--from DIR`) or `LookupEvents` (`--since`), judges each with
//! `baseline::impact`, and reports ([`ImpactReport`], text or JSON: docs/impact-json.md).
//! Read-only: no writes, nothing journaled.

mod report;

use std::collections::HashMap;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::aws::Clients;
use crate::baseline::checks::{classify, exemption, is_own_identity};
use crate::baseline::impact::{evaluate, Rules, Tally, UserScope};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::inventory::{self, AccountSnapshot};
use crate::sources::trail::{
    replay_dir, replay_lookup, LookupProgress, LOOKUP_REQUESTS_PER_SECOND,
};

pub use report::{ImpactReport, Origin, IMPACT_SCHEMA};

/// CloudTrail's event history (`LookupEvents`) keeps 90 days.
pub const LOOKUP_MAX_DAYS: u64 = 90;

/// How `impact` runs.
#[derive(Debug, Clone)]
pub struct ImpactOptions {
    /// Trail files instead of `LookupEvents`.
    pub from: Option<PathBuf>,
    /// The `LookupEvents` window, back from `now`.
    pub since: Duration,
    pub now: DateTime<Utc>,
    pub suggest_networks: bool,
    pub max_prefix_v4: u8,
    pub max_prefix_v6: u8,
    /// Reading threads for `--from` (0: one per core).
    pub threads: usize,
}

impl Default for ImpactOptions {
    fn default() -> Self {
        ImpactOptions {
            from: None,
            since: Duration::from_secs(7 * 86_400),
            now: Utc::now(),
            suggest_networks: false,
            max_prefix_v4: 24,
            max_prefix_v6: 48,
            threads: 0,
        }
    }
}

/// Checks the options before anything is read.
pub fn check_options(o: &ImpactOptions) -> Result<()> {
    if o.from.is_none() && o.since > Duration::from_secs(LOOKUP_MAX_DAYS * 86_400) {
        return Err(Error::Config(format!(
            "--since {}d is longer than CloudTrail keeps its event history ({LOOKUP_MAX_DAYS} days); use --since {LOOKUP_MAX_DAYS}d or less, or replay older trail files with --from DIR",
            o.since.as_secs().div_ceil(86_400)
        )));
    }
    if o.since.is_zero() {
        return Err(Error::Config(
            "--since is zero; give a window such as 7d".into(),
        ));
    }
    if !(1..=32).contains(&o.max_prefix_v4) || !(1..=128).contains(&o.max_prefix_v6) {
        return Err(Error::Config(format!(
            "--max-prefix-v4 {} / --max-prefix-v6 {}: use 1..=32 for IPv4 and 1..=128 for IPv6 (e.g. 24 and 48)",
            o.max_prefix_v4, o.max_prefix_v6
        )));
    }
    Ok(())
}

/// The account's users as the evaluation sees them.
pub fn user_scopes(snap: &AccountSnapshot, cfg: &Config) -> HashMap<String, UserScope> {
    snap.users
        .iter()
        .map(|u| {
            let (class, _, _) = classify(u, cfg);
            let exempt = exemption(u, cfg, &snap.caller_arn).is_some();
            (u.name.clone(), UserScope { class, exempt })
        })
        .collect()
}

/// Exempt users with a password (a way back in if the baseline locks everyone else out);
/// iam-warden's own identity does not count.
pub fn break_glass_users(snap: &AccountSnapshot, cfg: &Config) -> Vec<String> {
    let mut v: Vec<String> = snap
        .users
        .iter()
        .filter(|u| u.password.is_some() && !is_own_identity(u, &snap.caller_arn))
        .filter(|u| exemption(u, cfg, &snap.caller_arn).is_some())
        .map(|u| u.name.clone())
        .collect();
    v.sort();
    v
}

/// Run the command.
pub async fn impact(cfg: &Config, clients: &Clients, opts: &ImpactOptions) -> Result<ImpactReport> {
    check_options(opts)?;
    let snap = inventory::read_account(clients).await?;
    let users = user_scopes(&snap, cfg);
    let rules = Rules::from_config(cfg, &snap.account_id)?;
    let (tally, origin) = match &opts.from {
        Some(dir) => {
            let threads = match opts.threads {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            };
            let (dir, users, rules) = (dir.clone(), users.clone(), rules.clone());
            let (tallies, files) = tokio::task::spawn_blocking(move || {
                replay_dir(&dir, threads, Tally::default, |t, r| {
                    t.add(&evaluate(r, &users, &rules))
                })
            })
            .await
            .map_err(|e| Error::Other(format!("the trail-file reader failed: {e}")))??;
            if files.files > 0 && files.skipped.len() as u64 == files.files {
                return Err(Error::Other(format!(
                    "none of the {} trail files could be read (first: {}: {}); check that --from holds CloudTrail log files",
                    files.files, files.skipped[0].path, files.skipped[0].error
                )));
            }
            let mut tally = Tally::default();
            for t in tallies {
                tally.merge(t);
            }
            (tally, Origin::Files(files))
        }
        None => {
            let start = opts.now
                - chrono::Duration::from_std(opts.since)
                    .map_err(|e| Error::Config(format!("--since is out of range: {e}")))?;
            let mut tally = Tally::default();
            let mut show = Progress::new();
            let stats = replay_lookup(
                clients.cloudtrail(),
                None,
                start,
                opts.now,
                |r| tally.add(&evaluate(r, &users, &rules)),
                |p| show.update(p),
            )
            .await?;
            show.finish();
            (
                tally,
                Origin::Lookup {
                    start,
                    end: opts.now,
                    stats,
                },
            )
        }
    };
    Ok(ImpactReport::build(&snap, cfg, &users, tally, origin, opts))
}

/// Progress of a `LookupEvents` replay on stderr: a bar on a terminal, otherwise a line
/// every 10 s.
struct Progress {
    terminal: bool,
    last_line: Option<Duration>,
    drew: bool,
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Progress {
    fn new() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
            drew: false,
        }
    }

    fn update(&mut self, p: &LookupProgress) {
        let left = p
            .left
            .map(|l| format!("about {} left", human(l)))
            .unwrap_or_else(|| "time left unknown yet".into());
        let text = format!(
            "{} pages, {} events, {:.0}% of the window, {left} (LookupEvents allows {LOOKUP_REQUESTS_PER_SECOND} requests/s)",
            p.pages,
            p.events,
            p.done * 100.0
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let filled = (p.done * 30.0).round() as usize;
            let _ = write!(
                err,
                "\r[{}{}] {text}",
                "#".repeat(filled.min(30)),
                ".".repeat(30 - filled.min(30))
            );
            let _ = err.flush();
            self.drew = true;
        } else if self
            .last_line
            .is_none_or(|l| p.elapsed >= l + Duration::from_secs(10))
        {
            let _ = writeln!(err, "impact: {text}");
            self.last_line = Some(p.elapsed);
        }
    }

    fn finish(&self) {
        if self.drew {
            let _ = writeln!(std::io::stderr());
        }
    }
}
