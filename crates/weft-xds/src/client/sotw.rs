//! One state-of-the-world stream of the client.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tracing::{debug, warn};

use super::{Command, StreamEnd, TypeState, Update, Worker};
use crate::cache::{is_wildcard_type, resource_name};
use crate::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use crate::google::protobuf::Any;

impl Worker {
    /// The request that (re)states the subscription of type `i` on this stream.
    fn sotw_request(&mut self, i: usize, node_sent: &mut bool) -> DiscoveryRequest {
        let t = &mut self.types[i];
        let first_on_stream = t.server_sub.is_none();
        // On a new stream, claim our version only if it covers everything we ask for;
        // otherwise the server must send the full state.
        let version =
            if !first_on_stream || t.accepted_sub.as_ref().is_some_and(|a| a.includes(&t.sub)) {
                t.version.clone()
            } else {
                String::new()
            };
        t.server_sub = Some(t.sub.clone());
        let node = if *node_sent {
            None
        } else {
            *node_sent = true;
            Some(self.config.node.clone())
        };
        DiscoveryRequest {
            version_info: version,
            node,
            resource_names: t.sub.wire_names(&t.type_url),
            type_url: t.type_url.clone(),
            response_nonce: t.nonce.clone(),
            ..Default::default()
        }
    }

    pub(super) async fn sotw_stream(&mut self, channel: Channel) -> StreamEnd {
        let (tx, rx) = mpsc::unbounded_channel::<DiscoveryRequest>();
        let mut node_sent = false;
        for i in 0..self.types.len() {
            let t = &mut self.types[i];
            t.nonce.clear();
            t.server_sub = None;
            if t.sub.is_empty() {
                continue;
            }
            let req = self.sotw_request(i, &mut node_sent);
            let _ = tx.send(req);
        }
        let mut grpc = self.grpc(channel);
        let mut inbound = match grpc
            .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => {
                debug!(error = %e, "xDS stream refused");
                return StreamEnd::Broken { healthy: false };
            }
        };
        self.on_connected();
        let mut healthy = false;
        loop {
            tokio::select! {
                // Responses first: ACK what arrived before sending subscription changes.
                biased;
                msg = inbound.message() => match msg {
                    Ok(Some(resp)) => {
                        healthy = true;
                        if let Some(req) = self.sotw_response(resp) {
                            let _ = tx.send(req);
                        }
                    }
                    Ok(None) => {
                        debug!("xDS stream ended by the server");
                        return StreamEnd::Broken { healthy };
                    }
                    Err(e) => {
                        debug!(error = %e, "xDS stream broke");
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
                            let t = &self.types[i];
                            // Nothing to tell a server that never heard of an empty subscription.
                            if t.server_sub.is_none() && t.sub.is_empty() {
                                continue;
                            }
                            let req = self.sotw_request(i, &mut node_sent);
                            let _ = tx.send(req);
                        }
                        Ok(None) => {}
                        Err(()) => return StreamEnd::Shutdown,
                    }
                }
            }
        }
    }

    /// Hands a response to the callback; returns the ACK or NACK.
    fn sotw_response(&mut self, resp: DiscoveryResponse) -> Option<DiscoveryRequest> {
        let Some(i) = self.types.iter().position(|t| t.type_url == resp.type_url) else {
            warn!(type_url = %resp.type_url, "xDS response for a type not subscribed; ignored");
            return None;
        };
        let t = &mut self.types[i];
        t.nonce = resp.nonce.clone();
        t.stats.responses += 1;
        let mut result = Ok(());
        let mut next = BTreeMap::new();
        for any in resp.resources {
            match resource_name(&any) {
                Ok(name) => {
                    next.insert(name, any);
                }
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            }
        }
        // LDS and CDS responses carry the whole state: what is absent is removed. For the
        // types subscribed by name (RDS, EDS, SDS) a response may carry only what changed
        // (xDS protocol, "grouping resources into responses"): the others stay.
        let full_state = is_wildcard_type(&t.type_url);
        let mut undo: Vec<(String, Option<Any>)> = Vec::new();
        if result.is_ok() {
            let (updated, removed): (Vec<String>, Vec<String>) = if full_state {
                (
                    next.iter()
                        .filter(|(n, a)| t.resources.get(*n) != Some(*a))
                        .map(|(n, _)| n.clone())
                        .collect(),
                    t.resources
                        .keys()
                        .filter(|n| !next.contains_key(*n))
                        .cloned()
                        .collect(),
                )
            } else {
                let mut updated = Vec::new();
                for (name, any) in std::mem::take(&mut next) {
                    if t.resources.get(&name) != Some(&any) {
                        updated.push(name.clone());
                        let old = t.resources.insert(name.clone(), any);
                        undo.push((name, old));
                    }
                }
                (updated, Vec::new())
            };
            let resources = if full_state { &next } else { &t.resources };
            result = (self.handler)(&Update {
                type_url: &t.type_url,
                version: &resp.version_info,
                resources,
                updated: &updated,
                removed: &removed,
            });
        }
        if result.is_err() {
            // Rejected: back to the last accepted resources.
            for (name, old) in undo.into_iter().rev() {
                match old {
                    Some(a) => t.resources.insert(name, a),
                    None => t.resources.remove(&name),
                };
            }
        }
        let names = t
            .server_sub
            .as_ref()
            .unwrap_or(&t.sub)
            .wire_names(&t.type_url);
        let req = match result {
            Ok(()) => {
                if full_state {
                    t.resources = next;
                }
                t.version = resp.version_info;
                t.accepted_sub = t.server_sub.clone();
                t.stats.acks += 1;
                t.stats.last_error = None;
                DiscoveryRequest {
                    version_info: t.version.clone(),
                    resource_names: names,
                    type_url: t.type_url.clone(),
                    response_nonce: t.nonce.clone(),
                    ..Default::default()
                }
            }
            Err(e) => {
                warn!(type_url = %t.type_url, version = %resp.version_info, error = %e, "xDS config rejected (NACK)");
                t.stats.nacks += 1;
                let detail = TypeState::error_detail(&e);
                t.stats.last_error = Some(e);
                DiscoveryRequest {
                    version_info: t.version.clone(),
                    resource_names: names,
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
