//! The impact report and its renderings (JSON schema: docs/impact-json.md).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{break_glass_users, ImpactOptions};
use crate::baseline::impact::networks::{suggest, toml_snippet, Suggestion};
use crate::baseline::impact::{Reason, Skip, Tally, UserScope};
use crate::baseline::policies::BaselinePolicy;
use crate::config::{AppliesTo, Config};
use crate::inventory::AccountSnapshot;
use crate::sources::trail::{FileStats, LookupStats};

pub const IMPACT_SCHEMA: &str = "iam-warden.impact/v1";

/// The text report details this many users (most denied first); JSON lists all.
const TEXT_USERS: usize = 20;

/// Where the records came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Lookup {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        stats: LookupStats,
    },
    Files(FileStats),
}

#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// `lookup-events` or `trail-files`.
    pub kind: &'static str,
    /// The requested window (`lookup-events`), else null.
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// The first and last judged call.
    pub first_call: Option<String>,
    pub last_call: Option<String>,
    /// Days the summary speaks of.
    pub days: u64,
    pub lookup: Option<LookupStats>,
    pub files: Option<FileStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicySettings {
    pub mfa_enabled: bool,
    pub mfa_applies_to: AppliesTo,
    pub allowed_without_mfa: Vec<String>,
    pub source_ip_enabled: bool,
    pub source_ip_applies_to: AppliesTo,
    pub allowed_cidrs: Vec<String>,
    pub allowed_vpc_endpoints: Vec<String>,
    pub allowed_vpcs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub records: u64,
    pub calls: u64,
    pub denied: u64,
    pub users_seen: usize,
    pub users_denied: usize,
    pub locked_out: Vec<String>,
    /// Denied calls per policy (`mfa`, `source-ip`).
    pub by_policy: BTreeMap<BaselinePolicy, u64>,
    /// Denied calls per reason (every reason listed).
    pub by_reason: BTreeMap<Reason, u64>,
    pub sentence: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub name: String,
    pub calls: u64,
    pub denied: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserImpact {
    pub user: String,
    pub class: Option<&'static str>,
    pub exempt: bool,
    pub calls: u64,
    pub denied: u64,
    pub locked_out: bool,
    pub by_policy: BTreeMap<BaselinePolicy, u64>,
    pub by_reason: BTreeMap<Reason, u64>,
    /// The most denied actions (at most 10): `calls` = `denied` = denied calls.
    pub top_actions: Vec<Count>,
    /// Source networks (an address's /24 or /48, a VPC endpoint, a service), most calls
    /// first (at most 10).
    pub networks: Vec<Count>,
    pub first_denied: Option<String>,
    pub last_denied: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakGlass {
    pub ok: bool,
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VpcEndpointUse {
    pub id: String,
    pub calls: u64,
    pub allowed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Suggestions {
    pub max_prefix_v4: u8,
    pub max_prefix_v6: u8,
    pub networks: Vec<Suggestion>,
    /// `allowed_cidrs = [...]`, ready for `[baseline.source_ip_policy]`.
    pub allowed_cidrs_toml: String,
    /// `allowed_vpc_endpoints = [...]` when VPC-endpoint traffic was seen.
    pub allowed_vpc_endpoints_toml: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImpactReport {
    pub schema: &'static str,
    pub account_id: String,
    pub source: Source,
    pub policies: PolicySettings,
    pub summary: Summary,
    /// Users with calls, most denied first.
    pub users: Vec<UserImpact>,
    /// Records not judged, per reason (every reason listed).
    pub skipped: BTreeMap<Skip, u64>,
    pub vpc_endpoints: Vec<VpcEndpointUse>,
    pub break_glass: BreakGlass,
    pub suggestions: Option<Suggestions>,
    pub warnings: Vec<String>,
}

fn top<'a>(it: impl Iterator<Item = (&'a String, u64, u64)>, n: usize) -> Vec<Count> {
    let mut v: Vec<Count> = it
        .map(|(k, c, d)| Count {
            name: k.clone(),
            calls: c,
            denied: d,
        })
        .collect();
    v.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

fn by_policy(by_reason: &BTreeMap<Reason, u64>) -> BTreeMap<BaselinePolicy, u64> {
    let mut m = BTreeMap::from([(BaselinePolicy::Mfa, 0), (BaselinePolicy::SourceIp, 0)]);
    for (r, n) in by_reason {
        *m.entry(r.policy()).or_insert(0) += n;
    }
    m
}

fn days_between(a: Option<&str>, b: Option<&str>) -> u64 {
    let p = |s: Option<&str>| s.and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    match (p(a), p(b)) {
        (Some(a), Some(b)) => ((b - a).num_seconds().max(0) as u64)
            .div_ceil(86_400)
            .max(1),
        _ => 0,
    }
}

impl ImpactReport {
    pub fn build(
        snap: &AccountSnapshot,
        cfg: &Config,
        scopes: &HashMap<String, UserScope>,
        tally: Tally,
        origin: Origin,
        opts: &ImpactOptions,
    ) -> Self {
        let sip = &cfg.baseline.source_ip_policy;
        let mut warnings = Vec::new();
        let (source, lookup_days) = match origin {
            Origin::Lookup { start, end, stats } => {
                if stats.malformed > 0 {
                    warnings.push(format!(
                        "{} LookupEvents events had no readable CloudTrailEvent and were not judged",
                        stats.malformed
                    ));
                }
                let days = ((end - start).num_seconds().max(0) as u64).div_ceil(86_400);
                (
                    Source {
                        kind: "lookup-events",
                        start: Some(start),
                        end: Some(end),
                        first_call: None,
                        last_call: None,
                        days,
                        lookup: Some(stats),
                        files: None,
                    },
                    true,
                )
            }
            Origin::Files(files) => {
                for s in &files.skipped {
                    warnings.push(format!("trail file {} skipped: {}", s.path, s.error));
                }
                (
                    Source {
                        kind: "trail-files",
                        start: None,
                        end: None,
                        first_call: None,
                        last_call: None,
                        days: 0,
                        lookup: None,
                        files: Some(files),
                    },
                    false,
                )
            }
        };
        let mut source = source;
        source.first_call = tally.first.clone();
        source.last_call = tally.last.clone();
        if !lookup_days {
            source.days = days_between(tally.first.as_deref(), tally.last.as_deref());
        }

        let mut by_reason: BTreeMap<Reason, u64> = Reason::ALL.iter().map(|r| (*r, 0)).collect();
        let mut users: Vec<UserImpact> = tally
            .users
            .iter()
            .map(|(name, u)| {
                for (r, n) in &u.by_reason {
                    *by_reason.entry(*r).or_insert(0) += n;
                }
                let scope = scopes.get(name);
                UserImpact {
                    user: name.clone(),
                    class: scope.map(|s| s.class.as_str()),
                    exempt: scope.is_some_and(|s| s.exempt),
                    calls: u.calls,
                    denied: u.denied,
                    locked_out: u.calls > 0 && u.denied == u.calls,
                    by_policy: by_policy(&u.by_reason),
                    by_reason: Reason::ALL
                        .iter()
                        .map(|r| (*r, u.by_reason.get(r).copied().unwrap_or(0)))
                        .collect(),
                    top_actions: top(u.denied_actions.iter().map(|(k, n)| (k, *n, *n)), 10),
                    networks: top(u.networks.iter().map(|(k, n)| (k, n.calls, n.denied)), 10),
                    first_denied: u.first_denied.clone(),
                    last_denied: u.last_denied.clone(),
                }
            })
            .collect();
        users.sort_by(|a, b| b.denied.cmp(&a.denied).then_with(|| a.user.cmp(&b.user)));
        let locked_out: Vec<String> = tally.locked_out().into_iter().map(str::to_owned).collect();
        let sentence = format!(
            "enabling the baseline as configured would have denied {} of {} calls of {} users over {} day{}",
            tally.denied,
            tally.calls,
            tally.users.len(),
            source.days,
            if source.days == 1 { "" } else { "s" }
        );
        let summary = Summary {
            records: tally.records,
            calls: tally.calls,
            denied: tally.denied,
            users_seen: tally.users.len(),
            users_denied: tally.users_denied(),
            locked_out,
            by_policy: by_policy(&by_reason),
            by_reason,
            sentence,
        };

        let mut vpc_endpoints: Vec<VpcEndpointUse> = tally
            .vpc_endpoints
            .iter()
            .map(|(id, n)| VpcEndpointUse {
                id: id.clone(),
                calls: *n,
                allowed: sip.allowed_vpc_endpoints.contains(id),
            })
            .collect();
        vpc_endpoints.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.id.cmp(&b.id)));
        if tally.vpc_unknown > 0 {
            warnings.push(format!(
                "{} calls through VPC endpoints not in allowed_vpc_endpoints are counted as denied, but allowed_vpcs is set and CloudTrail does not name the VPC: some may come from an allowed VPC",
                tally.vpc_unknown
            ));
        }
        if !cfg.baseline.mfa_policy.enabled && !sip.enabled {
            warnings.push("both baseline policies are disabled (mfa_policy.enabled, source_ip_policy.enabled): nothing can be denied; enable the ones you plan to enforce".into());
        }
        let bg = break_glass_users(snap, cfg);
        if bg.is_empty() {
            warnings.push("no exempt user has console access: if the baseline locked everyone out there would be no way back in; exempt a break-glass user with a password and MFA (exemptions.users)".into());
        }
        if tally.calls == 0 {
            warnings.push(format!(
                "no calls of the account's IAM users were found ({} records read); nothing was judged",
                tally.records
            ));
        }
        let suggestions = opts.suggest_networks.then(|| {
            let networks = suggest(
                &tally.addresses,
                opts.max_prefix_v4,
                opts.max_prefix_v6,
                &cfg.allowed_cidrs(),
            );
            let mut vpces: Vec<&String> = tally.vpc_endpoints.keys().collect();
            vpces.sort();
            Suggestions {
                max_prefix_v4: opts.max_prefix_v4,
                max_prefix_v6: opts.max_prefix_v6,
                allowed_cidrs_toml: toml_snippet(&networks),
                networks,
                allowed_vpc_endpoints_toml: (!vpces.is_empty()).then(|| {
                    let items: Vec<String> = vpces.iter().map(|v| format!("\"{v}\"")).collect();
                    format!("allowed_vpc_endpoints = [{}]", items.join(", "))
                }),
            }
        });
        ImpactReport {
            schema: IMPACT_SCHEMA,
            account_id: snap.account_id.clone(),
            source,
            policies: PolicySettings {
                mfa_enabled: cfg.baseline.mfa_policy.enabled,
                mfa_applies_to: cfg.baseline.mfa_policy.applies_to,
                allowed_without_mfa: cfg.baseline.mfa_policy.allowed_without_mfa.clone(),
                source_ip_enabled: sip.enabled,
                source_ip_applies_to: sip.applies_to,
                allowed_cidrs: sip.allowed_cidrs.clone(),
                allowed_vpc_endpoints: sip.allowed_vpc_endpoints.clone(),
                allowed_vpcs: sip.allowed_vpcs.clone(),
            },
            summary,
            users,
            skipped: Skip::ALL
                .iter()
                .map(|s| (*s, tally.skips.get(s).copied().unwrap_or(0)))
                .collect(),
            vpc_endpoints,
            break_glass: BreakGlass {
                ok: !bg.is_empty(),
                users: bg,
            },
            suggestions,
            warnings,
        }
    }

    /// 0: nothing would have been denied; 1: something would have been.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.summary.denied > 0)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let src = &self.source;
        let what = match (src.kind, &src.files) {
            ("trail-files", Some(f)) => format!("{} trail files", f.files),
            _ => "LookupEvents".to_string(),
        };
        let _ = writeln!(
            out,
            "iam-warden impact on account {}: {} records from {what}, calls {} .. {}",
            self.account_id,
            s.records,
            src.first_call.as_deref().unwrap_or("-"),
            src.last_call.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "\n{}", s.sentence);
        let _ = writeln!(
            out,
            "{} users would have had calls denied; locked out completely: {}",
            s.users_denied,
            if s.locked_out.is_empty() {
                "none".to_string()
            } else {
                s.locked_out.join(", ")
            }
        );
        let reasons: Vec<String> = s
            .by_reason
            .iter()
            .map(|(r, n)| format!("{} {n}", r.as_str()))
            .collect();
        let _ = writeln!(out, "denied by reason: {}", reasons.join(", "));
        let affected: Vec<&UserImpact> = self.users.iter().filter(|u| u.denied > 0).collect();
        for u in affected.iter().take(TEXT_USERS) {
            let _ = writeln!(
                out,
                "\n{} ({}{}): {} of {} calls denied{}, {} .. {}",
                u.user,
                u.class.unwrap_or("?"),
                if u.exempt { ", exempt" } else { "" },
                u.denied,
                u.calls,
                if u.locked_out { " (locked out)" } else { "" },
                u.first_denied.as_deref().unwrap_or("-"),
                u.last_denied.as_deref().unwrap_or("-")
            );
            let r: Vec<String> = u
                .by_reason
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| format!("{} {n}", r.as_str()))
                .collect();
            let _ = writeln!(out, "  reasons: {}", r.join(", "));
            let a: Vec<String> = u
                .top_actions
                .iter()
                .map(|c| format!("{} {}", c.name, c.denied))
                .collect();
            let _ = writeln!(out, "  top denied actions: {}", a.join(", "));
            let n: Vec<String> = u
                .networks
                .iter()
                .take(5)
                .map(|c| format!("{} ({} calls, {} denied)", c.name, c.calls, c.denied))
                .collect();
            let _ = writeln!(out, "  networks: {}", n.join(", "));
        }
        if affected.len() > TEXT_USERS {
            let _ = writeln!(
                out,
                "\n... and {} more users with denied calls (--output json lists every user)",
                affected.len() - TEXT_USERS
            );
        }
        let skipped: Vec<String> = self
            .skipped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(out, "\nrecords not judged: {}", skipped.join(", "));
        }
        for v in &self.vpc_endpoints {
            let _ = writeln!(
                out,
                "VPC endpoint {}: {} calls{}",
                v.id,
                v.calls,
                if v.allowed {
                    " (allowed)"
                } else {
                    " (no aws:SourceIp: denied unless listed in allowed_vpc_endpoints)"
                }
            );
        }
        let _ = writeln!(
            out,
            "\nbreak-glass: {}",
            if self.break_glass.ok {
                format!("ok ({})", self.break_glass.users.join(", "))
            } else {
                "MISSING (see the warning)".to_string()
            }
        );
        if let Some(sg) = &self.suggestions {
            let _ = writeln!(
                out,
                "\nsuggested networks (addresses widened to /{} and /{} at most, merged):",
                sg.max_prefix_v4, sg.max_prefix_v6
            );
            for n in &sg.networks {
                let _ = writeln!(
                    out,
                    "  {:<22} {:>5.1}% of calls ({}), {:>5.1}% of users ({}){}",
                    n.network.to_string(),
                    n.call_share * 100.0,
                    n.calls,
                    n.user_share * 100.0,
                    n.users,
                    if n.already_allowed {
                        ", already allowed"
                    } else {
                        ""
                    }
                );
            }
            let _ = writeln!(
                out,
                "\n[baseline.source_ip_policy]\n{}",
                sg.allowed_cidrs_toml
            );
            if let Some(v) = &sg.allowed_vpc_endpoints_toml {
                let _ = writeln!(out, "{v}");
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}
