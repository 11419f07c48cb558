//! The state-of-the-world side of one ADS stream: per type, what the node subscribes to, what
//! was last sent, and the ACK/NACK bookkeeping.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use tracing::{debug, warn};

use super::status::{Connection, Nack};
use super::wire::Wire;
use crate::cache::{Resource, Snapshot, TypeResources, is_wildcard_type};
use crate::envoy::service::discovery::v3::DiscoveryRequest;

type NameSet = BTreeSet<String>;

/// Subscriptions to the same names share one set: thousands of sidecars of one mesh ask for
/// the same thousand clusters' endpoints, and each stream then holds a pointer, not a copy.
fn intern(set: NameSet) -> Arc<NameSet> {
    type Sets = Mutex<HashMap<u64, Vec<Weak<NameSet>>>>;
    static SETS: OnceLock<Sets> = OnceLock::new();
    if set.is_empty() {
        return Arc::new(set);
    }
    let mut h = DefaultHasher::new();
    set.hash(&mut h);
    let key = h.finish();
    let mut sets = SETS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let bucket = sets.entry(key).or_default();
    bucket.retain(|w| w.strong_count() > 0);
    if let Some(found) = bucket.iter().filter_map(Weak::upgrade).find(|a| **a == set) {
        return found;
    }
    let a = Arc::new(set);
    bucket.push(Arc::downgrade(&a));
    if sets.len() > 1024 && sets.len().is_power_of_two() {
        sets.retain(|_, b| {
            b.retain(|w| w.strong_count() > 0);
            !b.is_empty()
        });
    }
    a
}

/// What a node asked for, for one type.
#[derive(Debug, Default)]
pub(crate) struct Subscription {
    /// Subscribed to every resource of the type.
    pub wildcard: bool,
    /// Explicitly named resources (shared with the latest response's record).
    pub names: Arc<BTreeSet<String>>,
    /// Whether the node ever named resources; after that an empty list means "none", not the
    /// legacy wildcard.
    explicit_seen: bool,
    /// Bumped on every change, so a response can tell whether it reflects the current names.
    pub generation: u64,
}

impl Subscription {
    /// Applies a SotW request's full list of names. Returns whether the subscription changed.
    fn set_sotw(&mut self, type_url: &str, names: &[String]) -> bool {
        let star = names.iter().any(|n| n == "*");
        let wildcard =
            star || (names.is_empty() && !self.explicit_seen && is_wildcard_type(type_url));
        // Every ACK restates the names, usually in the same (sorted) order: compare them in
        // one pass before building a set.
        if wildcard == self.wildcard && names.iter().filter(|n| *n != "*").eq(self.names.iter()) {
            return false;
        }
        let set: BTreeSet<String> = names.iter().filter(|n| *n != "*").cloned().collect();
        if !set.is_empty() {
            self.explicit_seen = true;
        }
        let changed = wildcard != self.wildcard || set != *self.names;
        if changed {
            self.wildcard = wildcard;
            self.names = intern(set);
            self.generation += 1;
        }
        changed
    }

    /// Whether resource `name` is in scope.
    fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// What the latest response of a type carried.
#[derive(Debug)]
struct Sent {
    nonce: String,
    version: String,
    /// The type version the view was last compared against (equal to `version` unless a
    /// resource outside the view changed since).
    checked: String,
    /// Subscription generation the response reflected.
    generation: u64,
    /// The type's resources the response was cut from (shared with the cache, so a
    /// connection holds no copy of its config).
    tr: Arc<TypeResources>,
    /// The names the response covered (`None`: the whole type).
    scope: Option<Arc<BTreeSet<String>>>,
}

#[derive(Debug, Default)]
struct TypeState {
    sub: Subscription,
    sent: Option<Sent>,
    /// The version the node said it had on its first request of this stream (reconnect).
    initial_version: Option<String>,
}

/// One SotW stream's protocol state; the async driver feeds it requests and snapshots.
pub(crate) struct SotwStream {
    types: HashMap<String, TypeState>,
    nonce_seq: u64,
}

impl SotwStream {
    pub(crate) fn new() -> Self {
        SotwStream {
            types: HashMap::new(),
            nonce_seq: 0,
        }
    }

    /// Whether the stream has seen `type_url`.
    pub(crate) fn has_type(&self, type_url: &str) -> bool {
        self.types.contains_key(type_url)
    }

    /// Number of type URLs the stream has seen.
    pub(crate) fn type_count(&self) -> usize {
        self.types.len()
    }

    /// Handles one request; returns the response to send, if any.
    pub(crate) fn on_request(
        &mut self,
        req: DiscoveryRequest,
        snapshot: Option<&Snapshot>,
        conn: &Connection,
    ) -> Option<Wire> {
        let type_url = req.type_url.as_str();
        let first = !self.types.contains_key(type_url);
        let st = self.types.entry(type_url.to_string()).or_default();

        if !req.response_nonce.is_empty() {
            match &st.sent {
                Some(sent) if sent.nonce == req.response_nonce => {
                    if let Some(err) = &req.error_detail {
                        warn!(
                            node = %conn.node_id,
                            type_url,
                            rejected_version = %sent.version,
                            kept_version = %req.version_info,
                            nonce = %req.response_nonce,
                            error = %err.message,
                            "xDS NACK"
                        );
                        let nack = Nack {
                            rejected_version: sent.version.clone(),
                            nonce: sent.nonce.clone(),
                            kept_version: req.version_info.clone(),
                            error: err.message.clone(),
                        };
                        conn.update(type_url, |t| t.nack = Some(nack));
                    } else if req.version_info == sent.version {
                        let (v, n) = (sent.version.clone(), sent.nonce.clone());
                        conn.update(type_url, |t| {
                            t.acked_version = Some(v);
                            t.acked_nonce = Some(n);
                            t.nack = None;
                        });
                    } else {
                        // Same nonce, other version, no detail: a rejection by an old client.
                        let nack = Nack {
                            rejected_version: sent.version.clone(),
                            nonce: sent.nonce.clone(),
                            kept_version: req.version_info.clone(),
                            error: "rejected without error_detail".into(),
                        };
                        warn!(node = %conn.node_id, type_url, "xDS NACK without error_detail");
                        conn.update(type_url, |t| t.nack = Some(nack));
                    }
                }
                Some(_) => {
                    // A response crossed this request; its ACK (with the full names) will follow.
                    debug!(node = %conn.node_id, type_url, nonce = %req.response_nonce, "stale nonce ignored");
                    return None;
                }
                // A nonce from a previous stream (the node reconnected): treat as a first request.
                None => {}
            }
        }
        if first && req.response_nonce.is_empty() && !req.version_info.is_empty() {
            st.initial_version = Some(req.version_info.clone());
        }
        if st.sub.set_sotw(type_url, &req.resource_names) {
            let (w, n) = (st.sub.wildcard, st.sub.names.len());
            conn.update(type_url, |t| {
                t.wildcard = w;
                t.subscribed_names = n;
            });
        }
        let snapshot = snapshot?;
        let nonce = &mut self.nonce_seq;
        respond(type_url, st, snapshot, nonce, conn)
    }

    /// Handles a new snapshot; returns the responses for the types whose view changed.
    pub(crate) fn on_snapshot(&mut self, snapshot: &Snapshot, conn: &Connection) -> Vec<Wire> {
        let mut out = Vec::new();
        // Envoy's order: CDS before EDS, LDS before RDS, so warming completes without waiting.
        let mut urls: Vec<&String> = self.types.keys().collect();
        urls.sort_by_key(|u| crate::type_order(u));
        let urls: Vec<String> = urls.into_iter().cloned().collect();
        for type_url in urls {
            if let Some(st) = self.types.get_mut(&type_url)
                && let Some(r) = respond(&type_url, st, snapshot, &mut self.nonce_seq, conn)
            {
                out.push(r);
            }
        }
        out
    }
}

/// The resources of `tr` in `scope` (`None`: all of them).
fn view<'a>(tr: &'a TypeResources, scope: Option<&'a BTreeSet<String>>) -> Vec<&'a Arc<Resource>> {
    match scope {
        None => tr.iter().collect(),
        Some(names) => names.iter().filter_map(|n| tr.get(n)).collect(),
    }
}

/// What a response must carry.
enum Plan {
    /// The node's view is unchanged.
    Nothing,
    /// Every subscribed resource (always so for LDS and CDS, whose responses are the whole
    /// state).
    Full,
    /// Only these changed resources: for the types subscribed by name (RDS, EDS, SDS), a
    /// state-of-the-world response need not repeat the resources that did not change (xDS
    /// protocol, "grouping resources into responses"); the node keeps the others.
    Changed(Vec<Arc<Resource>>),
}

/// Sends the node's view of `type_url` if it differs from what it last received.
fn respond(
    type_url: &str,
    st: &mut TypeState,
    snapshot: &Snapshot,
    nonce_seq: &mut u64,
    conn: &Connection,
) -> Option<Wire> {
    let tr = snapshot.resources(type_url)?;
    if let Some(sent) = &st.sent
        && sent.generation == st.sub.generation
        && sent.checked == tr.version()
    {
        return None;
    }
    let scope = (!st.sub.wildcard).then(|| st.sub.names.clone());
    let reconnected_in_sync =
        st.sent.is_none() && st.initial_version.as_deref() == Some(tr.version());
    if reconnected_in_sync {
        // The node reconnected with exactly this version: record it as in sync, send nothing.
        st.initial_version = None;
        st.sent = Some(Sent {
            nonce: String::new(),
            version: tr.version().to_string(),
            checked: tr.version().to_string(),
            generation: st.sub.generation,
            tr: tr.clone(),
            scope,
        });
        let v = tr.version().to_string();
        conn.update(type_url, |t| {
            t.sent_version = Some(v.clone());
            t.sent_nonce = Some(String::new());
            t.acked_version = Some(v);
            t.acked_nonce = Some(String::new());
        });
        return None;
    }
    let plan = match &st.sent {
        // Nothing sent yet: an explicit subscription to resources that do not exist yet waits.
        None => {
            if !st.sub.wildcard && view(tr, scope.as_deref()).is_empty() {
                Plan::Nothing
            } else {
                Plan::Full
            }
        }
        // Same subscription: the node holds the subscribed part of `sent.tr`. What changed
        // since is computed once per pair of sets, for all the streams that held the same one.
        Some(sent) if sent.generation == st.sub.generation => {
            let diff = tr.diff_from(&sent.tr);
            let covers = |n: &String| st.sub.covers(n);
            if diff.removed.iter().any(covers) {
                // A subscribed resource disappeared: the full state says so.
                Plan::Full
            } else {
                let changed: Vec<Arc<Resource>> = diff
                    .changed
                    .iter()
                    .filter(|n| covers(n))
                    .filter_map(|n| tr.get(n).cloned())
                    .collect();
                if changed.is_empty() {
                    Plan::Nothing
                } else if is_wildcard_type(type_url) {
                    Plan::Full
                } else {
                    Plan::Changed(changed)
                }
            }
        }
        // The subscription changed.
        Some(sent) => {
            let current = view(tr, scope.as_deref());
            // Unchanged, or smaller only because the node unsubscribed some names: it drops
            // those itself, so there is nothing to tell it.
            let in_sent = |name: &str| sent.scope.as_ref().is_none_or(|s| s.contains(name));
            let same = current.iter().all(|r| {
                in_sent(&r.name) && sent.tr.get(&r.name).is_some_and(|x| x.version == r.version)
            }) && view(&sent.tr, sent.scope.as_deref())
                .iter()
                .all(|x| !st.sub.covers(&x.name) || tr.get(&x.name).is_some());
            if same { Plan::Nothing } else { Plan::Full }
        }
    };
    let parts = match plan {
        Plan::Nothing => {
            if let Some(sent) = &mut st.sent {
                // Same content under a new type version (a resource outside the view changed):
                // keep the response's version, but compare against (and hold) the new set only.
                sent.generation = st.sub.generation;
                sent.checked = tr.version().to_string();
                sent.tr = tr.clone();
                sent.scope = scope;
            }
            return None;
        }
        Plan::Full => match scope.as_deref() {
            None => tr.sorted().iter().map(|r| r.sotw_entry()).collect(),
            // Names are sorted already.
            Some(names) => names
                .iter()
                .filter_map(|n| tr.get(n))
                .map(|r| r.sotw_entry())
                .collect(),
        },
        Plan::Changed(mut list) => {
            list.sort_by(|a, b| a.name.cmp(&b.name));
            list.iter().map(|r| r.sotw_entry()).collect()
        }
    };
    *nonce_seq += 1;
    let nonce = nonce_seq.to_string();
    let version = tr.version().to_string();
    let resp = Wire::sotw(&version, type_url, &nonce, parts);
    st.initial_version = None;
    st.sent = Some(Sent {
        nonce: nonce.clone(),
        version: version.clone(),
        checked: version.clone(),
        generation: st.sub.generation,
        tr: tr.clone(),
        scope,
    });
    conn.update(type_url, |t| {
        t.sent_version = Some(version);
        t.sent_nonce = Some(nonce);
        t.responses += 1;
    });
    Some(resp)
}
