//! The route table: names → manifests (with their traffic split and price
//! consent) and workers → endpoints and prices. Built from the ledger by
//! the refresh task (or by hand in tests), then swapped in whole; a request
//! reads one table from start to end.

use crate::RouterError;
use crate::route::is_name;
use crate::select::WorkerHealth;
use bonus_ids::{ManifestId, PublicKey};
use bonus_ledger::api::{Names, Nodes};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Where a name sends its traffic, and whether its owner can pay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRoute {
    /// The name's owner: who pays.
    pub owner: PublicKey,
    /// The owner cannot pay (balance or budget): answer 402.
    pub unpaid: bool,
    /// Manifests by weight; a name without a split has one entry of weight 1.
    pub splits: Vec<SplitRoute>,
}

impl NameRoute {
    /// All traffic to one manifest.
    pub fn single(
        owner: PublicKey,
        manifest_id: ManifestId,
        price_per_million_fuel_max: u64,
    ) -> Self {
        NameRoute {
            owner,
            unpaid: false,
            splits: vec![SplitRoute {
                manifest_id,
                weight: 1,
                price_per_million_fuel_max,
            }],
        }
    }
}

/// One manifest of a name's traffic split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitRoute {
    /// The manifest.
    pub manifest_id: ManifestId,
    /// Its share of the name's traffic, relative to the other splits.
    pub weight: u32,
    /// The most its owner pays per million fuel: workers priced above it
    /// are never chosen for it.
    pub price_per_million_fuel_max: u64,
}

/// A name in the table, with its in-flight counter (carried across swaps).
#[derive(Debug)]
pub(crate) struct NameEntry {
    pub route: NameRoute,
    pub inflight: Arc<AtomicU64>,
}

/// A worker in the table, with its health (carried across swaps).
#[derive(Clone, Debug)]
pub(crate) struct WorkerEntry {
    pub key: PublicKey,
    /// `key` as the `x-bonus-worker` header every response carries, made
    /// once (formatting a key per request showed in profiles).
    pub key_header: http::HeaderValue,
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub price_per_million_fuel: u64,
    /// False for this router's own operator's workers: the ledger refuses
    /// such attestations.
    pub attest: bool,
    pub health: Arc<WorkerHealth>,
}

/// Every route the router knows at one moment. Immutable once installed:
/// a new ledger height builds a new table.
#[derive(Debug, Default)]
pub struct RouteTable {
    names: HashMap<String, NameEntry>,
    workers: BTreeMap<PublicKey, WorkerEntry>,
    /// The ledger height it was read at; `None` for tables built by hand.
    pub(crate) height: Option<u64>,
}

impl RouteTable {
    /// An empty table: every name is unknown.
    pub fn new() -> Self {
        RouteTable::default()
    }

    /// Routes `name` (a DNS label) by `route`, replacing any previous route.
    /// Refuses invalid names and routes whose weights are all zero.
    pub fn insert_name(&mut self, name: &str, route: NameRoute) -> Result<(), RouterError> {
        if !is_name(name) {
            return Err(RouterError::InvalidName {
                name: name.to_string(),
            });
        }
        if route.splits.iter().all(|split| split.weight == 0) {
            return Err(RouterError::EmptyRoute {
                name: name.to_string(),
            });
        }
        let entry = NameEntry {
            route,
            inflight: Arc::default(),
        };
        self.names.insert(name.to_string(), entry);
        Ok(())
    }

    /// Adds (or replaces) the worker `key` reachable at `base_url`
    /// (`http://host:port`) and charging `price_per_million_fuel`.
    pub fn insert_worker(
        &mut self,
        key: PublicKey,
        base_url: &str,
        price_per_million_fuel: u64,
    ) -> Result<(), RouterError> {
        let base = parse_base(base_url).ok_or_else(|| RouterError::InvalidWorkerUrl {
            worker: key,
            url: base_url.to_string(),
        })?;
        let key_header =
            http::HeaderValue::from_str(&key.to_string()).expect("a key's text is printable ASCII");
        let entry = WorkerEntry {
            key,
            key_header,
            base,
            price_per_million_fuel,
            attest: true,
            health: Arc::default(),
        };
        self.workers.insert(key, entry);
        Ok(())
    }

    /// The route of `name`, if any.
    pub fn name(&self, name: &str) -> Option<&NameRoute> {
        self.names.get(name).map(|entry| &entry.route)
    }

    /// Every routed name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.names.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// How many workers the table knows.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub(crate) fn entry(&self, name: &str) -> Option<&NameEntry> {
        self.names.get(name)
    }

    pub(crate) fn workers(&self) -> impl Iterator<Item = &WorkerEntry> {
        self.workers.values()
    }

    /// Keeps the counters and health of names and workers `old` also has,
    /// so a swap neither forgets load nor sends traffic to workers again
    /// before they are probed.
    pub(crate) fn carry_over(&mut self, old: &RouteTable) {
        for (name, entry) in &mut self.names {
            if let Some(previous) = old.names.get(name) {
                entry.inflight = previous.inflight.clone();
            }
        }
        for (key, entry) in &mut self.workers {
            if let Some(previous) = old.workers.get(key) {
                entry.health = previous.health.clone();
            }
        }
    }
}

/// `http://host[:port][/]` → `http://host[:port]`.
fn parse_base(url: &str) -> Option<String> {
    let url = url.trim_end_matches('/');
    let uri: http::Uri = url.parse().ok()?;
    let plain = uri.scheme_str() == Some("http")
        && uri.authority().is_some_and(|a| !a.host().is_empty())
        && uri
            .path_and_query()
            .is_none_or(|pq| pq.as_str().is_empty() || pq.as_str() == "/");
    plain.then(|| url.to_string())
}

/// Why part of the ledger's view was left out of the table.
pub(crate) type Skipped = Vec<String>;

/// The table the ledger describes. `prices` holds the price consent of
/// every manifest fetched so far; a manifest missing from it is left out.
/// `router` is this router's key: workers of its own operator are routed
/// to but never attested.
pub(crate) fn from_ledger(
    names: &Names,
    nodes: &Nodes,
    prices: &HashMap<ManifestId, u64>,
    router: &PublicKey,
) -> (RouteTable, Skipped) {
    let mut table = RouteTable::new();
    let mut skipped = Skipped::new();
    for view in &names.names {
        match name_route(view, prices) {
            Ok(route) => {
                if let Err(e) = table.insert_name(&view.name, route) {
                    skipped.push(e.to_string());
                }
            }
            Err(reason) => skipped.push(format!("name {:?}: {reason}", view.name)),
        }
    }
    let router_operator = nodes
        .nodes
        .iter()
        .find(|node| node.role == "router" && node.key.parse().ok() == Some(*router))
        .and_then(|node| node.operator.parse::<PublicKey>().ok());
    let own: HashSet<PublicKey> = [Some(*router), router_operator]
        .into_iter()
        .flatten()
        .collect();
    for node in nodes.nodes.iter().filter(|node| node.role == "worker") {
        let (Ok(key), Ok(operator)) = (
            node.key.parse::<PublicKey>(),
            node.operator.parse::<PublicKey>(),
        ) else {
            skipped.push(format!("worker {:?}: invalid key or operator", node.key));
            continue;
        };
        // The endpoint may be followed by the worker's p2p address.
        let base = node.endpoint.split_whitespace().next().unwrap_or_default();
        if let Err(e) = table.insert_worker(key, base, node.price_per_million_fuel) {
            skipped.push(e.to_string());
            continue;
        }
        if let Some(entry) = table.workers.get_mut(&key) {
            entry.attest = !own.contains(&key) && !own.contains(&operator);
        }
    }
    (table, skipped)
}

/// The manifests a ledger view routes to.
pub(crate) fn manifest_ids(names: &Names) -> HashSet<ManifestId> {
    names
        .names
        .iter()
        .flat_map(|view| {
            let current = view.manifest_id.parse().ok();
            let split = view
                .traffic
                .iter()
                .filter_map(|s| s.manifest_id.parse().ok());
            current.into_iter().chain(split)
        })
        .collect()
}

fn name_route(
    view: &bonus_ledger::api::NameView,
    prices: &HashMap<ManifestId, u64>,
) -> Result<NameRoute, String> {
    let owner = view
        .owner
        .parse::<PublicKey>()
        .map_err(|e| format!("owner: {e}"))?;
    let weighted: Vec<(&str, u32)> = if view.traffic.is_empty() {
        vec![(view.manifest_id.as_str(), 1)]
    } else {
        view.traffic
            .iter()
            .map(|split| (split.manifest_id.as_str(), split.weight))
            .collect()
    };
    let mut splits = Vec::with_capacity(weighted.len());
    for (text, weight) in weighted {
        let manifest_id: ManifestId = text.parse().map_err(|e| format!("manifest: {e}"))?;
        let price = prices
            .get(&manifest_id)
            .ok_or_else(|| format!("{manifest_id} is not known to the ledger yet"))?;
        splits.push(SplitRoute {
            manifest_id,
            weight,
            price_per_million_fuel_max: *price,
        });
    }
    Ok(NameRoute {
        owner,
        unpaid: view.unpaid,
        splits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bonus_ids::SecretKey;
    use bonus_ledger::api::{NameView, NodeView, Split};

    fn key(seed: u8) -> PublicKey {
        SecretKey::from_seed([seed; 32]).public()
    }

    fn node(key: PublicKey, role: &str, operator: PublicKey, endpoint: &str) -> NodeView {
        NodeView {
            key: key.to_string(),
            role: role.into(),
            operator: operator.to_string(),
            endpoint: endpoint.into(),
            region: String::new(),
            price_per_million_fuel: 5,
            stake: 1_000,
        }
    }

    fn name(name: &str, manifest_id: ManifestId, traffic: Vec<Split>) -> NameView {
        NameView {
            name: name.into(),
            owner: key(9).to_string(),
            manifest_id: manifest_id.to_string(),
            traffic,
            spend_per_period_max: 100,
            spent_this_period: 0,
            unpaid: false,
        }
    }

    #[test]
    fn ledger_views_become_routes() {
        let (m1, m2, m3) = (
            ManifestId::of(b"1"),
            ManifestId::of(b"2"),
            ManifestId::of(b"3"),
        );
        let split = |m: ManifestId, weight| Split {
            manifest_id: m.to_string(),
            weight,
        };
        let names = Names {
            names: vec![
                name("plain", m1, vec![]),
                name("split", m2, vec![split(m1, 9), split(m2, 1)]),
                name("unknown-manifest", m3, vec![]),
                name("Bad_Name", m1, vec![]),
            ],
        };
        let (router, router_operator) = (key(1), key(2));
        let nodes = Nodes {
            nodes: vec![
                node(router, "router", router_operator, "http://127.0.0.1:1"),
                node(
                    key(3),
                    "worker",
                    key(4),
                    "http://127.0.0.1:2 /ip4/127.0.0.1/tcp/9",
                ),
                node(key(5), "worker", router_operator, "http://127.0.0.1:3"),
                node(key(6), "worker", key(4), "ftp://nope"),
            ],
        };
        let prices = HashMap::from([(m1, 10), (m2, 20)]);
        assert_eq!(manifest_ids(&names), HashSet::from([m1, m2, m3]));
        let (table, skipped) = from_ledger(&names, &nodes, &prices, &router);
        assert_eq!(table.names(), ["plain", "split"]);
        assert_eq!(
            table.name("plain"),
            Some(&NameRoute::single(key(9), m1, 10))
        );
        let weights: Vec<(u32, u64)> = table
            .name("split")
            .expect("routed")
            .splits
            .iter()
            .map(|s| (s.weight, s.price_per_million_fuel_max))
            .collect();
        assert_eq!(weights, [(9, 10), (1, 20)]);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        let workers: Vec<(String, bool)> = table
            .workers()
            .map(|w| (w.base.clone(), w.attest))
            .collect();
        assert_eq!(
            workers.len(),
            2,
            "the router and the ftp worker are not workers: {workers:?}"
        );
        assert!(workers.contains(&("http://127.0.0.1:2".into(), true)));
        assert!(
            workers.contains(&("http://127.0.0.1:3".into(), false)),
            "same operator"
        );
    }

    #[test]
    fn swaps_keep_health_and_counters() {
        let mut old = RouteTable::new();
        old.insert_worker(key(1), "http://127.0.0.1:9/", 1)
            .expect("valid");
        old.insert_name("a", NameRoute::single(key(2), ManifestId::of(b"a"), 1))
            .expect("valid");
        let mut new = RouteTable::new();
        new.insert_worker(key(1), "http://127.0.0.1:9", 1)
            .expect("valid");
        new.insert_name("a", NameRoute::single(key(2), ManifestId::of(b"a"), 1))
            .expect("valid");
        new.carry_over(&old);
        let (old_worker, new_worker) = (
            old.workers().next().expect("one"),
            new.workers().next().expect("one"),
        );
        assert!(Arc::ptr_eq(&old_worker.health, &new_worker.health));
        assert!(Arc::ptr_eq(
            &old.names["a"].inflight,
            &new.names["a"].inflight
        ));
    }

    #[test]
    fn bad_routes_are_refused() {
        let mut table = RouteTable::new();
        let route = NameRoute::single(key(1), ManifestId::of(b"a"), 1);
        assert!(table.insert_name("UPPER", route.clone()).is_err());
        let mut zero = route;
        zero.splits[0].weight = 0;
        assert!(table.insert_name("zero", zero).is_err());
        for url in ["https://h:1", "http://h:1/path", "h:1", ""] {
            assert!(table.insert_worker(key(2), url, 1).is_err(), "{url}");
        }
        assert_eq!(table.worker_count(), 0);
    }
}
