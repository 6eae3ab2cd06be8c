//! `--suggest-networks`: the smallest set of networks covering the observed source
//! addresses, each address widened to at most its `/max_prefix` network.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::tally::AddrTally;

/// A suggested network with its share of the observed traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub network: IpNet,
    pub calls: u64,
    pub users: usize,
    /// Fraction (0..=1) of the observed in-scope calls from addresses.
    pub call_share: f64,
    /// Fraction (0..=1) of the users seen calling from addresses.
    pub user_share: f64,
    /// Already inside `allowed_cidrs`.
    pub already_allowed: bool,
}

/// `addr` widened to its `/prefix` network (the prefix capped at the address width).
pub fn widen(addr: IpAddr, max_v4: u8, max_v6: u8) -> IpNet {
    let p = match addr {
        IpAddr::V4(_) => max_v4.min(32),
        IpAddr::V6(_) => max_v6.min(128),
    };
    // `p` is within the address width, so `new` cannot fail; fall back to the host route.
    IpNet::new(addr, p)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(addr))
}

/// Each address widened to its `/max` network, then adjacent networks merged
/// ([`IpNet::aggregate`]): the union is exactly the union of the widened networks, in as few
/// CIDRs as possible. Sorted by calls, most first.
pub fn suggest(
    addresses: &HashMap<IpAddr, AddrTally>,
    max_v4: u8,
    max_v6: u8,
    allowed: &[IpNet],
) -> Vec<Suggestion> {
    let widened: Vec<IpNet> = addresses
        .keys()
        .map(|a| widen(*a, max_v4, max_v6))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let merged = IpNet::aggregate(&widened);
    let index: HashSet<IpNet> = merged.iter().copied().collect();
    let mut per: HashMap<IpNet, (u64, BTreeSet<&str>)> = HashMap::new();
    let total_calls: u64 = addresses.values().map(|a| a.calls).sum();
    let all_users: BTreeSet<&str> = addresses
        .values()
        .flat_map(|a| a.users.iter().map(String::as_str))
        .collect();
    for (addr, t) in addresses {
        let w = widen(*addr, max_v4, max_v6);
        // The merged network holding `w`: one of its supernets (or itself).
        let holder = (0..=w.prefix_len())
            .rev()
            .filter_map(|p| IpNet::new(w.addr(), p).ok().map(|n| n.trunc()))
            .find(|n| index.contains(n));
        if let Some(h) = holder {
            let e = per.entry(h).or_default();
            e.0 += t.calls;
            e.1.extend(t.users.iter().map(String::as_str));
        }
    }
    let share = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let mut out: Vec<Suggestion> = merged
        .into_iter()
        .map(|n| {
            let (calls, users) = per.get(&n).map(|(c, u)| (*c, u.len())).unwrap_or((0, 0));
            Suggestion {
                network: n,
                calls,
                users,
                call_share: share(calls, total_calls),
                user_share: share(users as u64, all_users.len() as u64),
                already_allowed: allowed.iter().any(|a| a.contains(&n)),
            }
        })
        .collect();
    out.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.network.cmp(&b.network)));
    out
}

/// A ready `allowed_cidrs = [...]` TOML line.
pub fn toml_snippet(s: &[Suggestion]) -> String {
    let mut nets: Vec<IpNet> = s.iter().map(|s| s.network).collect();
    nets.sort();
    let items: Vec<String> = nets.iter().map(|n| format!("\"{n}\"")).collect();
    format!("allowed_cidrs = [{}]", items.join(", "))
}
