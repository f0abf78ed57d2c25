//! Running a prepared query: the healthy instances of its service here,
//! filtered as Consul's `PreparedQuery.Execute` (health with ignored
//! checks, node and service meta, tags with `!tag` exclusions), shuffled,
//! sorted by `near`, limited; then, when nothing is left, the failover
//! walk over other datacenters ([`failover`]).

use std::future::Future;

use rand::seq::SliceRandom;

use crate::state::catalog::{CheckRec, Health, NodeRec, ServiceRec};
use crate::state::query::QueryRec;
use crate::state::Tables;

/// One answer: the node, the instance, its checks.
pub type Instance = (NodeRec, ServiceRec, Vec<CheckRec>);

/// Consul's `tagFilter`: every plain tag present, no `!tag` present
/// (case-insensitive).
fn tags_ok(want: &[String], have: &[String]) -> bool {
    let has = |t: &str| have.iter().any(|h| h.eq_ignore_ascii_case(t));
    want.iter().all(|w| match w.strip_prefix('!') {
        Some(not) => !has(not),
        None => has(w),
    })
}

/// Consul's `FilterIgnore`: out when a check that is not ignored is
/// critical (or, with OnlyPassing, warning).
fn healthy(checks: &[CheckRec], only_passing: bool, ignore: &[String]) -> bool {
    checks
        .iter()
        .filter(|c| !ignore.contains(&c.check_id))
        .all(|c| match c.status {
            Health::Critical => false,
            Health::Warning => !only_passing,
            _ => true,
        })
}

/// The query's answer from the tables here (`q` already rendered).
/// `near`: the node to sort from (`None`: shuffled); `visible`: what the
/// caller's token may see of a (node, service).
pub fn local(
    t: &Tables,
    q: &QueryRec,
    near: Option<&str>,
    limit: Option<usize>,
    visible: &dyn Fn(&NodeRec, &ServiceRec) -> bool,
) -> Vec<Instance> {
    let s = &q.service;
    let mut out: Vec<Instance> = t
        .catalog
        .instances(&s.service)
        .into_iter()
        .filter(|(n, sv)| visible(n, sv))
        .filter(|(n, _)| s.node_meta.iter().all(|(k, v)| n.meta.get(k) == Some(v)))
        .filter(|(_, sv)| {
            s.service_meta
                .iter()
                .all(|(k, v)| sv.meta.get(k) == Some(v))
        })
        .filter(|(_, sv)| tags_ok(&s.tags, &sv.tags))
        .filter_map(|(n, sv)| {
            let checks: Vec<CheckRec> = t
                .catalog
                .instance_checks(&n.node, &sv.id)
                .into_iter()
                .cloned()
                .collect();
            healthy(&checks, s.only_passing, &s.ignore_check_ids)
                .then(|| (n.clone(), sv.clone(), checks))
        })
        .collect();
    out.shuffle(&mut rand::thread_rng());
    crate::coordinate::near::sort(t, near, &mut out, |(n, _, _)| n.node.as_str());
    if let Some(l) = limit {
        out.truncate(l);
    }
    out
}

/// Where the answer came from.
#[derive(Debug)]
pub struct Walked<T> {
    pub nodes: Vec<T>,
    /// The datacenter that answered (the local one when none did).
    pub datacenter: String,
    /// How many other datacenters were asked.
    pub failovers: u32,
}

/// Consul's failover walk, for a query whose local answer is empty: the
/// `NearestN` nearest datacenters of `known` (other datacenters, nearest
/// first), then `Failover.Datacenters` that are known and not tried yet,
/// each asked in turn by `remote(dc)` until one has instances.
///
/// `known` comes from the WAN router and `remote` executes the query in
/// that datacenter ([`super::remote::walk`]); with no known datacenters
/// nothing is tried and the local answer stands (as Consul does with
/// datacenters it does not know).
pub async fn failover<T, F, Fut>(
    q: &QueryRec,
    local_dc: &str,
    local: Vec<T>,
    known: &[String],
    mut remote: F,
) -> Walked<T>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Vec<T>, String>>,
{
    let mut walked = Walked {
        nodes: local,
        datacenter: local_dc.to_string(),
        failovers: 0,
    };
    if !walked.nodes.is_empty() {
        return walked;
    }
    let f = &q.service.failover;
    let mut dcs: Vec<String> = known
        .iter()
        .filter(|d| *d != local_dc)
        .take(f.nearest_n as usize)
        .cloned()
        .collect();
    for d in &f.datacenters {
        if known.contains(d) && d != local_dc && !dcs.contains(d) {
            dcs.push(d.clone());
        }
    }
    for dc in dcs {
        walked.failovers += 1;
        match remote(dc.clone()).await {
            Ok(nodes) if !nodes.is_empty() => {
                walked.nodes = nodes;
                walked.datacenter = dc;
                break;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(datacenter = %dc, error = %e, "prepared query: failed querying for service in datacenter")
            }
        }
    }
    walked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filter_with_exclusions() {
        let have = vec!["Primary".to_string(), "v1".to_string()];
        assert!(tags_ok(&["primary".into()], &have));
        assert!(tags_ok(&["!secondary".into(), "v1".into()], &have));
        assert!(!tags_ok(&["!v1".into()], &have));
        assert!(!tags_ok(&["v2".into()], &have));
    }

    #[test]
    fn failover_walk_order_and_count() {
        let mut q = QueryRec::default();
        q.service.failover.nearest_n = 1;
        q.service.failover.datacenters = vec!["dc3".into(), "dc2".into(), "dc9".into()];
        let known = vec!["dc2".to_string(), "dc3".to_string(), "dc4".to_string()];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut asked = Vec::new();
        let w = rt.block_on(failover(&q, "dc1", Vec::<u8>::new(), &known, |dc| {
            asked.push(dc.clone());
            async move {
                match dc.as_str() {
                    "dc2" => Err("down".to_string()),
                    _ => Ok(vec![7u8]),
                }
            }
        }));
        // Nearest first (dc2, failing), then the list's dc3; dc9 unknown.
        assert_eq!(asked, ["dc2", "dc3"]);
        assert_eq!(
            (w.datacenter.as_str(), w.failovers, w.nodes),
            ("dc3", 2, vec![7])
        );
        // A local answer: nothing asked.
        let w = rt.block_on(failover(&q, "dc1", vec![1u8], &known, |_| async {
            Ok(vec![])
        }));
        assert_eq!((w.datacenter.as_str(), w.failovers), ("dc1", 0));
        // No known datacenters (today): nothing tried.
        let w = rt.block_on(failover(&q, "dc1", Vec::<u8>::new(), &[], |_| async {
            Ok(vec![1])
        }));
        assert_eq!(
            (w.datacenter.as_str(), w.failovers, w.nodes.len()),
            ("dc1", 0, 0)
        );
    }
}
