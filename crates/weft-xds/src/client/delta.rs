//! One delta (incremental) stream of the client.

use std::collections::BTreeSet;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tracing::{debug, warn};

use super::{Command, StreamEnd, Subscription, TypeState, Update, Worker};
use crate::cache::resource_name;
use crate::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use crate::google::protobuf::Any;

impl Worker {
    /// The request that moves the server's idea of type `i`'s subscription to ours.
    fn delta_request(&mut self, i: usize, node_sent: &mut bool) -> Option<DeltaDiscoveryRequest> {
        let t = &mut self.types[i];
        let mut req = DeltaDiscoveryRequest {
            type_url: t.type_url.clone(),
            ..Default::default()
        };
        match &t.server_sub {
            None => {
                if t.sub.is_empty() {
                    return None;
                }
                req.resource_names_subscribe = t.sub.wire_names(&t.type_url);
                // Tell the server what we already have, so it sends only what differs.
                req.initial_resource_versions = t
                    .versions
                    .iter()
                    .filter(|(n, _)| t.sub.covers(n))
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect();
            }
            Some(old) => {
                let star = || vec!["*".to_string()];
                match (old, &t.sub) {
                    (a, b) if a == b => return None,
                    (Subscription::Wildcard, Subscription::Names(b)) => {
                        req.resource_names_subscribe = b.iter().cloned().collect();
                        req.resource_names_unsubscribe = star();
                    }
                    (Subscription::Names(_), Subscription::Wildcard) => {
                        req.resource_names_subscribe = star();
                    }
                    (Subscription::Names(a), Subscription::Names(b)) => {
                        req.resource_names_subscribe = b.difference(a).cloned().collect();
                        req.resource_names_unsubscribe = a.difference(b).cloned().collect();
                    }
                    (Subscription::Wildcard, Subscription::Wildcard) => return None,
                }
            }
        }
        t.server_sub = Some(t.sub.clone());
        if !*node_sent {
            *node_sent = true;
            req.node = Some(self.config.node.clone());
        }
        Some(req)
    }

    pub(super) async fn delta_stream(&mut self, channel: Channel) -> StreamEnd {
        let (tx, rx) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
        let mut node_sent = false;
        for i in 0..self.types.len() {
            let t = &mut self.types[i];
            t.nonce.clear();
            t.server_sub = None;
            if let Some(req) = self.delta_request(i, &mut node_sent) {
                let _ = tx.send(req);
            }
        }
        let mut grpc = self.grpc(channel);
        let mut inbound = match grpc
            .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => {
                debug!(error = %e, "xDS delta stream refused");
                return StreamEnd::Broken { healthy: false };
            }
        };
        self.on_connected();
        let mut healthy = false;
        loop {
            tokio::select! {
                biased;
                msg = inbound.message() => match msg {
                    Ok(Some(resp)) => {
                        healthy = true;
                        if let Some(req) = self.delta_response(resp) {
                            let _ = tx.send(req);
                        }
                    }
                    Ok(None) => return StreamEnd::Broken { healthy },
                    Err(e) => {
                        debug!(error = %e, "xDS delta stream broke");
                        return StreamEnd::Broken { healthy };
                    }
                },
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { return StreamEnd::Shutdown };
                    if matches!(cmd, Command::Shutdown) {
                        return StreamEnd::Shutdown;
                    }
                    match self.apply(cmd) {
                        Ok(Some(i)) => {
                            if let Some(req) = self.delta_request(i, &mut node_sent) {
                                let _ = tx.send(req);
                            }
                        }
                        Ok(None) => {}
                        Err(()) => return StreamEnd::Shutdown,
                    }
                }
            }
        }
    }

    /// Applies a delta response in place, hands the result to the callback, and rolls back on
    /// `Err`; returns the ACK or NACK.
    fn delta_response(&mut self, resp: DeltaDiscoveryResponse) -> Option<DeltaDiscoveryRequest> {
        let Some(i) = self.types.iter().position(|t| t.type_url == resp.type_url) else {
            warn!(type_url = %resp.type_url, "xDS delta response for a type not subscribed; ignored");
            return None;
        };
        let t = &mut self.types[i];
        t.nonce = resp.nonce.clone();
        t.stats.responses += 1;

        // Previous values of everything touched, to restore on NACK.
        let mut undo: Vec<(String, Option<Any>, Option<String>)> = Vec::new();
        let mut updated = Vec::new();
        let mut result: Result<(), String> = Ok(());
        for r in resp.resources {
            let Some(body) = r.resource else {
                // A body-less entry refreshes a TTL; weft keeps no TTLs.
                continue;
            };
            let name = if r.name.is_empty() {
                match resource_name(&body) {
                    Ok(n) => n,
                    Err(e) => {
                        result = Err(e.to_string());
                        break;
                    }
                }
            } else {
                r.name
            };
            let old = t.resources.insert(name.clone(), body);
            let old_v = t.versions.insert(name.clone(), r.version);
            undo.push((name.clone(), old, old_v));
            updated.push(name);
        }
        let mut removed = Vec::new();
        if result.is_ok() {
            let gone: BTreeSet<String> = resp.removed_resources.into_iter().collect();
            for name in gone {
                let old = t.resources.remove(&name);
                let old_v = t.versions.remove(&name);
                if old.is_some() || old_v.is_some() {
                    undo.push((name.clone(), old, old_v));
                }
                removed.push(name);
            }
            result = (self.handler)(&Update {
                type_url: &t.type_url,
                version: &resp.system_version_info,
                resources: &t.resources,
                updated: &updated,
                removed: &removed,
            });
        }
        let req = match result {
            Ok(()) => {
                t.version = resp.system_version_info;
                t.accepted_sub = t.server_sub.clone();
                t.stats.acks += 1;
                t.stats.last_error = None;
                DeltaDiscoveryRequest {
                    type_url: t.type_url.clone(),
                    response_nonce: t.nonce.clone(),
                    ..Default::default()
                }
            }
            Err(e) => {
                for (name, old, old_v) in undo.into_iter().rev() {
                    match old {
                        Some(a) => t.resources.insert(name.clone(), a),
                        None => t.resources.remove(&name),
                    };
                    match old_v {
                        Some(v) => t.versions.insert(name, v),
                        None => t.versions.remove(&name),
                    };
                }
                warn!(type_url = %t.type_url, version = %resp.system_version_info, error = %e, "xDS config rejected (NACK)");
                t.stats.nacks += 1;
                let detail = TypeState::error_detail(&e);
                t.stats.last_error = Some(e);
                DeltaDiscoveryRequest {
                    type_url: t.type_url.clone(),
                    response_nonce: t.nonce.clone(),
                    error_detail: Some(detail),
                    ..Default::default()
                }
            }
        };
        self.publish();
        Some(req)
    }
}
