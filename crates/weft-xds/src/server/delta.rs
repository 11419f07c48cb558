//! The delta (incremental) side of one ADS stream: per type, the node's subscriptions and the
//! version of every resource the node has, so that only changes and removals are sent.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tracing::{debug, warn};

use super::status::{Connection, Nack};
use super::wire::Wire;
use crate::cache::{Resource, Snapshot, TypeResources, is_wildcard_type};
use crate::envoy::service::discovery::v3::DeltaDiscoveryRequest;

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Name to version of every resource the node has (as far as we sent or it told us).
    known: HashMap<String, String>,
    /// Explicitly subscribed names we told the node do not exist (sent once each).
    absent_told: HashSet<String>,
    /// Latest response: nonce and `system_version_info`.
    sent: Option<(String, String)>,
    /// The type version the node's state was last reconciled with, and whether the
    /// subscription changed since; together they make an unrelated push O(1).
    checked: Option<String>,
    /// The set `known` was last reconciled with; while the subscription stays the same and no
    /// NACK rolled anything back, the next reconcile only needs what changed since that set
    /// (computed once for all the streams that held it).
    base: Option<Arc<TypeResources>>,
    /// Whether the node started this stream with resources it already had.
    had_initial: bool,
    /// Responses not yet ACKed: nonce and the names each added, changed or removed. A NACK
    /// means the node rolled those back, so `known` must forget them.
    inflight: VecDeque<(String, Vec<String>)>,
}

/// Unanswered responses remembered per type (a well-behaved node has one or two).
const MAX_INFLIGHT: usize = 64;

/// A version no resource has: what `known` says of a name the node rolled back after a NACK, so
/// that the next change resends or removes it (but the rejected config is not resent as is).
const ROLLED_BACK: &str = "\u{0}nacked";

/// One delta stream's protocol state.
pub(crate) struct DeltaStream {
    types: HashMap<String, TypeState>,
    nonce_seq: u64,
}

impl DeltaStream {
    pub(crate) fn new() -> Self {
        DeltaStream {
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
    ///
    /// A request whose nonce is not the latest is not taken as an ACK or NACK, but its
    /// subscription changes still apply: delta subscriptions are changes, and dropping one
    /// would lose it for good.
    pub(crate) fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        snapshot: Option<&Snapshot>,
        conn: &Connection,
    ) -> Option<Wire> {
        let type_url = req.type_url.as_str();
        let first = !self.types.contains_key(type_url);
        let st = self.types.entry(type_url.to_string()).or_default();

        if first {
            st.known = req.initial_resource_versions.clone();
            st.had_initial = !st.known.is_empty();
            if req.resource_names_subscribe.is_empty() && is_wildcard_type(type_url) {
                st.wildcard = true;
            }
        }
        if !req.response_nonce.is_empty() {
            // The node answers responses in order: everything before this nonce is settled.
            if let Some(pos) = st
                .inflight
                .iter()
                .position(|(n, _)| *n == req.response_nonce)
            {
                let (_, touched) = st.inflight.drain(..=pos).next_back().unwrap_or_default();
                if req.error_detail.is_some() {
                    for name in touched {
                        st.known.insert(name, ROLLED_BACK.to_string());
                    }
                    st.base = None;
                }
            }
            match &st.sent {
                Some((nonce, version)) if *nonce == req.response_nonce => {
                    if let Some(err) = &req.error_detail {
                        warn!(
                            node = %conn.node_id,
                            type_url,
                            rejected_version = %version,
                            nonce = %nonce,
                            error = %err.message,
                            "xDS NACK (delta)"
                        );
                        let nack = Nack {
                            rejected_version: version.clone(),
                            nonce: nonce.clone(),
                            kept_version: String::new(),
                            error: err.message.clone(),
                        };
                        conn.update(type_url, |t| t.nack = Some(nack));
                    } else {
                        let (n, v) = (nonce.clone(), version.clone());
                        conn.update(type_url, |t| {
                            t.acked_version = Some(v);
                            t.acked_nonce = Some(n);
                            t.nack = None;
                        });
                    }
                }
                _ => {
                    debug!(node = %conn.node_id, type_url, nonce = %req.response_nonce, "stale nonce: not an ACK");
                }
            }
        }
        let mut changed = false;
        for name in &req.resource_names_subscribe {
            if name == "*" {
                changed |= !st.wildcard;
                st.wildcard = true;
            } else {
                changed |= st.names.insert(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            if name == "*" {
                changed |= st.wildcard;
                st.wildcard = false;
            } else if st.names.remove(name) {
                changed = true;
                // The node drops it; if it subscribes again it must get it again.
                st.known.remove(name);
                st.absent_told.remove(name);
            }
        }
        if changed || first {
            st.checked = None;
            st.base = None;
            let (w, n) = (st.wildcard, st.names.len());
            conn.update(type_url, |t| {
                t.wildcard = w;
                t.subscribed_names = n;
            });
        }
        respond(type_url, st, snapshot?, &mut self.nonce_seq, conn)
    }

    /// Handles a new snapshot; returns the responses for the types that changed for this node.
    pub(crate) fn on_snapshot(&mut self, snapshot: &Snapshot, conn: &Connection) -> Vec<Wire> {
        let mut urls: Vec<String> = self.types.keys().cloned().collect();
        urls.sort_by_key(|u| crate::type_order(u));
        let mut out = Vec::new();
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

fn respond(
    type_url: &str,
    st: &mut TypeState,
    snapshot: &Snapshot,
    nonce_seq: &mut u64,
    conn: &Connection,
) -> Option<Wire> {
    let tr = snapshot.resources(type_url)?;
    if st.checked.as_deref() == Some(tr.version()) {
        return None;
    }
    let mut updated: Vec<Arc<Resource>> = Vec::new();
    let mut removed = Vec::new();
    if let Some(base) = st.base.as_ref() {
        // Only what changed since the set `known` was reconciled with can differ.
        let diff = tr.diff_from(base);
        for name in &diff.changed {
            if !(st.wildcard || st.names.contains(name)) {
                continue;
            }
            if let Some(r) = tr.get(name)
                && st.known.get(name) != Some(&r.version)
            {
                updated.push(r.clone());
            }
        }
        for name in &diff.removed {
            let known = st.known.contains_key(name);
            // Gone: the node drops it, or learns once that what it asked for does not exist.
            if known
                || (!st.wildcard && st.names.contains(name) && st.absent_told.insert(name.clone()))
            {
                removed.push(name.clone());
            }
        }
    } else {
        full_reconcile(st, tr, &mut updated, &mut removed);
    }
    let first_send = st.sent.is_none();
    st.checked = Some(tr.version().to_string());
    st.base = Some(tr.clone());
    if updated.is_empty() && removed.is_empty() {
        if first_send && st.had_initial {
            // Reconnected with exactly what it needs: in sync without a response.
            let v = tr.version().to_string();
            st.sent = Some((String::new(), v.clone()));
            conn.update(type_url, |t| {
                t.sent_version = Some(v.clone());
                t.sent_nonce = Some(String::new());
                t.acked_version = Some(v);
                t.acked_nonce = Some(String::new());
            });
            return None;
        }
        // A first wildcard response, even empty, tells the node the type's state is known.
        if !(first_send && st.wildcard) {
            return None;
        }
    }
    for r in &updated {
        st.known.insert(r.name.clone(), r.version.clone());
        st.absent_told.remove(&r.name);
    }
    removed.sort();
    removed.dedup();
    for name in &removed {
        st.known.remove(name);
    }
    let touched: Vec<String> = updated
        .iter()
        .map(|r| r.name.clone())
        .chain(removed.iter().cloned())
        .collect();
    updated.sort_by(|a, b| a.name.cmp(&b.name));
    *nonce_seq += 1;
    let nonce = nonce_seq.to_string();
    let version = tr.version().to_string();
    st.sent = Some((nonce.clone(), version.clone()));
    st.inflight.push_back((nonce.clone(), touched));
    if st.inflight.len() > MAX_INFLIGHT {
        // A node that never answers: stop tracking its oldest responses.
        st.inflight.pop_front();
    }
    conn.update(type_url, |t| {
        t.sent_version = Some(version.clone());
        t.sent_nonce = Some(nonce.clone());
        t.responses += 1;
    });
    Some(Wire::delta(
        &version,
        type_url,
        &nonce,
        &removed,
        updated.iter().map(|r| r.delta_entry()).collect(),
    ))
}

/// Compares everything the node has and asks for with `tr`.
fn full_reconcile(
    st: &mut TypeState,
    tr: &TypeResources,
    updated: &mut Vec<Arc<Resource>>,
    removed: &mut Vec<String>,
) {
    if st.wildcard {
        for r in tr.iter() {
            if st.known.get(&r.name) != Some(&r.version) {
                updated.push(r.clone());
            }
        }
    } else {
        for name in &st.names {
            match tr.get(name) {
                Some(r) if st.known.get(name) != Some(&r.version) => updated.push(r.clone()),
                Some(_) => {}
                None => {
                    // Tell the node once that what it asked for does not exist, so it need not
                    // wait for it (xDS "knowing when a requested resource does not exist").
                    if !st.known.contains_key(name) && st.absent_told.insert(name.clone()) {
                        removed.push(name.clone());
                    }
                }
            }
        }
    }
    for name in st.known.keys() {
        let in_scope = st.wildcard || st.names.contains(name);
        if !in_scope || tr.get(name).is_none() {
            removed.push(name.clone());
        }
    }
}
