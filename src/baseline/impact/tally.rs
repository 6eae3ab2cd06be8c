//! Adding the verdicts up: per user, per source address, per VPC endpoint, per skip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::eval::{Call, Outcome, Reason, Skip, Via};

/// The calls of one user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserTally {
    pub calls: u64,
    pub denied: u64,
    /// Denied calls by reason (a call denied by both policies counts under each).
    pub by_reason: BTreeMap<Reason, u64>,
    /// Denied calls by action.
    pub denied_actions: HashMap<String, u64>,
    /// Calls by source network (an address's /24 or /48, a VPC endpoint id, or the
    /// service acting for the user).
    pub networks: HashMap<String, NetTally>,
    /// First and last denied call (CloudTrail's `eventTime`, RFC 3339 UTC).
    pub first_denied: Option<String>,
    pub last_denied: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetTally {
    pub calls: u64,
    pub denied: u64,
}

/// The calls from one source address by users in the source-IP policy's scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddrTally {
    pub calls: u64,
    pub users: BTreeSet<String>,
}

/// Everything seen, mergeable (one per reading thread).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub records: u64,
    pub calls: u64,
    pub denied: u64,
    pub skips: BTreeMap<Skip, u64>,
    pub users: HashMap<String, UserTally>,
    /// Source addresses of in-scope calls not made through AWS services or VPC endpoints.
    pub addresses: HashMap<IpAddr, AddrTally>,
    /// In-scope calls through each VPC endpoint.
    pub vpc_endpoints: HashMap<String, u64>,
    /// Calls denied through a VPC endpoint while `allowed_vpcs` is set (see `Call`).
    pub vpc_unknown: u64,
    /// The window of the judged calls.
    pub first: Option<String>,
    pub last: Option<String>,
}

fn min_max(first: &mut Option<String>, last: &mut Option<String>, t: &str) {
    if t.is_empty() {
        return;
    }
    if first.as_deref().is_none_or(|f| t < f) {
        *first = Some(t.to_string());
    }
    if last.as_deref().is_none_or(|l| t > l) {
        *last = Some(t.to_string());
    }
}

fn merge_min_max(
    first: &mut Option<String>,
    last: &mut Option<String>,
    of: Option<&String>,
    ol: Option<&String>,
) {
    if let Some(f) = of {
        min_max(first, last, f);
    }
    if let Some(l) = ol {
        min_max(first, last, l);
    }
}

/// The network a source is counted under in the per-user breakdown.
pub fn network_label(via: &Via) -> String {
    match via {
        Via::Address(IpAddr::V4(a)) => IpNet::new(IpAddr::V4(*a), 24)
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| a.to_string()),
        Via::Address(IpAddr::V6(a)) => IpNet::new(IpAddr::V6(*a), 48)
            .map(|n| n.trunc().to_string())
            .unwrap_or_else(|_| a.to_string()),
        Via::VpcEndpoint(e) => e.clone(),
        Via::AwsService(s) => format!("via {s}"),
    }
}

impl Tally {
    /// Count one evaluated record.
    pub fn add(&mut self, outcome: &Outcome<'_>) {
        self.records += 1;
        match outcome {
            Outcome::Skip(s) => *self.skips.entry(*s).or_insert(0) += 1,
            Outcome::Call(c) => self.add_call(c),
        }
    }

    fn add_call(&mut self, c: &Call<'_>) {
        self.calls += 1;
        min_max(&mut self.first, &mut self.last, c.time);
        let denied = c.denied();
        let u = match self.users.get_mut(c.user) {
            Some(u) => u,
            None => self.users.entry(c.user.to_string()).or_default(),
        };
        u.calls += 1;
        let net = u.networks.entry(network_label(&c.via)).or_default();
        net.calls += 1;
        if denied {
            self.denied += 1;
            u.denied += 1;
            net.denied += 1;
            for r in [c.mfa_denied, c.source_ip_denied].into_iter().flatten() {
                *u.by_reason.entry(r).or_insert(0) += 1;
            }
            match u.denied_actions.get_mut(&c.action) {
                Some(n) => *n += 1,
                None => {
                    u.denied_actions.insert(c.action.clone(), 1);
                }
            }
            min_max(&mut u.first_denied, &mut u.last_denied, c.time);
        }
        if c.vpc_unknown {
            self.vpc_unknown += 1;
        }
        if c.source_ip_scope {
            match &c.via {
                Via::Address(ip) => {
                    let a = self.addresses.entry(*ip).or_default();
                    a.calls += 1;
                    if !a.users.contains(c.user) {
                        a.users.insert(c.user.to_string());
                    }
                }
                Via::VpcEndpoint(e) => *self.vpc_endpoints.entry(e.clone()).or_insert(0) += 1,
                Via::AwsService(_) => {}
            }
        }
    }

    /// Add another thread's tally.
    pub fn merge(&mut self, o: Tally) {
        self.records += o.records;
        self.calls += o.calls;
        self.denied += o.denied;
        self.vpc_unknown += o.vpc_unknown;
        merge_min_max(
            &mut self.first,
            &mut self.last,
            o.first.as_ref(),
            o.last.as_ref(),
        );
        for (s, n) in o.skips {
            *self.skips.entry(s).or_insert(0) += n;
        }
        for (e, n) in o.vpc_endpoints {
            *self.vpc_endpoints.entry(e).or_insert(0) += n;
        }
        for (ip, a) in o.addresses {
            let mine = self.addresses.entry(ip).or_default();
            mine.calls += a.calls;
            mine.users.extend(a.users);
        }
        for (name, t) in o.users {
            let u = self.users.entry(name).or_default();
            u.calls += t.calls;
            u.denied += t.denied;
            for (r, n) in t.by_reason {
                *u.by_reason.entry(r).or_insert(0) += n;
            }
            for (a, n) in t.denied_actions {
                *u.denied_actions.entry(a).or_insert(0) += n;
            }
            for (k, n) in t.networks {
                let m = u.networks.entry(k).or_default();
                m.calls += n.calls;
                m.denied += n.denied;
            }
            merge_min_max(
                &mut u.first_denied,
                &mut u.last_denied,
                t.first_denied.as_ref(),
                t.last_denied.as_ref(),
            );
        }
    }

    /// Users with calls of which every one would have been denied.
    pub fn locked_out(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .users
            .iter()
            .filter(|(_, u)| u.calls > 0 && u.denied == u.calls)
            .map(|(n, _)| n.as_str())
            .collect();
        v.sort_unstable();
        v
    }

    /// Users with at least one denied call.
    pub fn users_denied(&self) -> usize {
        self.users.values().filter(|u| u.denied > 0).count()
    }
}
