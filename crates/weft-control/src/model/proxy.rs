//! The node a configuration is built for: a sidecar or a gateway (router), identified as Istio
//! identifies it (`sidecar~10.1.2.3~name.ns~ns.svc.cluster.local`).

use std::collections::BTreeMap;

/// The kind of proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// A sidecar next to one workload.
    Sidecar,
    /// An ingress or egress gateway.
    Router,
}

/// Node metadata that translation reads (Istio's `NodeMetadata`, JSON names).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeMetadata {
    /// `ISTIO_VERSION`.
    pub istio_version: String,
    /// `NAMESPACE`: the workload's namespace.
    pub namespace: String,
    /// `CLUSTER_ID`.
    pub cluster_id: String,
    /// `LABELS`: workload labels.
    pub labels: BTreeMap<String, String>,
    /// `INTERCEPTION_MODE`: `REDIRECT` (iptables capture, the default), `TPROXY`, or `NONE`
    /// (no capture: the workload calls its sidecar's listeners on real ports).
    pub interception_mode: String,
    /// Every metadata field as sent, for the ones not modelled.
    pub raw: BTreeMap<String, serde_json::Value>,
}

impl NodeMetadata {
    /// Reads node metadata from its JSON form (an Envoy node's `metadata` struct).
    pub fn from_json(v: &serde_json::Value) -> NodeMetadata {
        let mut md = NodeMetadata::default();
        let Some(obj) = v.as_object() else {
            return md;
        };
        let s = |k: &str| {
            obj.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string()
        };
        md.istio_version = s("ISTIO_VERSION");
        md.namespace = s("NAMESPACE");
        md.cluster_id = s("CLUSTER_ID");
        md.interception_mode = s("INTERCEPTION_MODE");
        if let Some(labels) = obj.get("LABELS").and_then(|l| l.as_object()) {
            md.labels = labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect();
        }
        md.raw = obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        md
    }
}

/// A proxy as the control plane knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Proxy {
    /// Sidecar or router.
    pub kind: ProxyKind,
    /// `name.namespace` (the pod name and namespace).
    pub id: String,
    /// The proxy's IP addresses; the first is the primary.
    pub ip_addresses: Vec<String>,
    /// Config namespace: where Sidecar, PeerAuthentication and `.` visibility are looked up.
    pub config_namespace: String,
    /// DNS domain of the workload (`ns.svc.cluster.local`), for short virtual host names.
    pub dns_domain: String,
    /// Workload labels.
    pub labels: BTreeMap<String, String>,
    /// Node metadata.
    pub metadata: NodeMetadata,
}

/// A node id that is not Istio's `type~ip~id~domain`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeIdError {
    /// Wrong number of `~`-separated parts.
    #[error(
        "node id {0:?} is not of the form type~ip~name.namespace~domain (e.g. sidecar~10.1.2.3~app.default~default.svc.cluster.local)"
    )]
    Malformed(String),
    /// Unknown proxy type.
    #[error("node id {0:?} has an unknown proxy type {1:?}; expected sidecar or router")]
    UnknownType(String, String),
}

impl Proxy {
    /// Parses Istio's node id: `sidecar~10.1.2.3~name.ns~ns.svc.cluster.local`. The config
    /// namespace is the part of the id after the first dot; labels and metadata start empty.
    pub fn from_node_id(node_id: &str) -> Result<Proxy, NodeIdError> {
        let parts: Vec<&str> = node_id.split('~').collect();
        if parts.len() != 4 {
            return Err(NodeIdError::Malformed(node_id.to_string()));
        }
        let kind = match parts[0] {
            "sidecar" => ProxyKind::Sidecar,
            "router" => ProxyKind::Router,
            other => {
                return Err(NodeIdError::UnknownType(
                    node_id.to_string(),
                    other.to_string(),
                ));
            }
        };
        let id = parts[2].to_string();
        let namespace = id
            .split_once('.')
            .map(|(_, ns)| ns)
            .unwrap_or("")
            .to_string();
        Ok(Proxy {
            kind,
            id,
            ip_addresses: parts[1]
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            config_namespace: namespace.clone(),
            dns_domain: parts[3].to_string(),
            labels: BTreeMap::new(),
            metadata: NodeMetadata {
                namespace,
                ..Default::default()
            },
        })
    }

    /// True for gateways.
    pub fn is_router(&self) -> bool {
        self.kind == ProxyKind::Router
    }

    /// True when the proxy captures no traffic (`INTERCEPTION_MODE: NONE`): Istio then builds
    /// no `virtualOutbound`/`virtualInbound`, binds every outbound listener to its port, and
    /// gives each inbound port a listener of its own.
    pub fn interception_none(&self) -> bool {
        self.metadata.interception_mode == "NONE"
    }

    /// True when any proxy IP is IPv6.
    pub fn has_ipv6(&self) -> bool {
        self.ip_addresses.iter().any(|ip| ip.contains(':'))
    }

    /// True when every proxy IP is IPv6.
    pub fn ipv6_only(&self) -> bool {
        !self.ip_addresses.is_empty() && self.ip_addresses.iter().all(|ip| ip.contains(':'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_id() {
        let p =
            Proxy::from_node_id("sidecar~10.1.2.3~reviews-v1.bookinfo~bookinfo.svc.cluster.local")
                .expect("valid id");
        assert_eq!(p.kind, ProxyKind::Sidecar);
        assert_eq!(p.ip_addresses, vec!["10.1.2.3"]);
        assert_eq!(p.id, "reviews-v1.bookinfo");
        assert_eq!(p.config_namespace, "bookinfo");
        assert_eq!(p.dns_domain, "bookinfo.svc.cluster.local");
        let r =
            Proxy::from_node_id("router~1.1.1.1~gw.istio-system~istio-system.svc.cluster.local")
                .expect("valid id");
        assert!(r.is_router());
    }

    #[test]
    fn rejects_bad_ids() {
        assert!(matches!(
            Proxy::from_node_id("sidecar~1.2.3.4"),
            Err(NodeIdError::Malformed(_))
        ));
        assert!(matches!(
            Proxy::from_node_id("waypoint~1.2.3.4~a.b~b.svc"),
            Err(NodeIdError::UnknownType(..))
        ));
    }
}
