//! Workload identity for metric labels: this proxy's own (from the bootstrap `node`) and its
//! peers' (from Istio's HTTP metadata exchange headers, `x-envoy-peer-metadata` carrying a
//! base64 protobuf `google.protobuf.Struct` of the peer's node metadata, and
//! `x-envoy-peer-metadata-id` carrying its node id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use prost::Message;
use weft_xds::google::protobuf::{Struct, Value, value::Kind};

/// `x-envoy-peer-metadata`.
pub const PEER_METADATA: HeaderName = HeaderName::from_static("x-envoy-peer-metadata");
/// `x-envoy-peer-metadata-id`.
pub const PEER_METADATA_ID: HeaderName = HeaderName::from_static("x-envoy-peer-metadata-id");

/// The label value Istio uses when it does not know.
pub const UNKNOWN: &str = "unknown";

/// What the standard metrics say about one workload (source or destination).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    /// `WORKLOAD_NAME`.
    pub workload: Arc<str>,
    /// `NAMESPACE`.
    pub namespace: Arc<str>,
    /// `LABELS.app` (or `app.kubernetes.io/name`).
    pub app: Arc<str>,
    /// `LABELS.version` (or `app.kubernetes.io/version`).
    pub version: Arc<str>,
    /// `service.istio.io/canonical-name`, else the app, else the workload.
    pub canonical_service: Arc<str>,
    /// `service.istio.io/canonical-revision`, else the version, else `latest`.
    pub canonical_revision: Arc<str>,
    /// `CLUSTER_ID`.
    pub cluster: Arc<str>,
}

impl Default for Workload {
    fn default() -> Self {
        let u: Arc<str> = Arc::from(UNKNOWN);
        Workload {
            workload: u.clone(),
            namespace: u.clone(),
            app: u.clone(),
            version: u.clone(),
            canonical_service: u.clone(),
            canonical_revision: Arc::from("latest"),
            cluster: u,
        }
    }
}

fn string(v: Option<&Value>) -> Option<&str> {
    match v.and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn label<'a>(labels: Option<&'a Struct>, keys: &[&str]) -> Option<&'a str> {
    let l = labels?;
    keys.iter().find_map(|k| string(l.fields.get(*k)))
}

impl Workload {
    /// Reads Istio's node metadata keys (`NAME`, `NAMESPACE`, `WORKLOAD_NAME`, `LABELS`,
    /// `CLUSTER_ID`); anything missing is `unknown`.
    pub fn from_metadata(md: &Struct) -> Workload {
        let labels = match md.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
            Some(Kind::StructValue(s)) => Some(s),
            _ => None,
        };
        let workload = string(md.fields.get("WORKLOAD_NAME"))
            .or_else(|| string(md.fields.get("NAME")))
            .unwrap_or(UNKNOWN);
        let app = label(labels, &["app", "app.kubernetes.io/name"]);
        let version = label(labels, &["version", "app.kubernetes.io/version"]);
        let canonical_service = label(labels, &["service.istio.io/canonical-name"])
            .or(app)
            .unwrap_or(workload);
        let canonical_revision = label(labels, &["service.istio.io/canonical-revision"])
            .or(version)
            .unwrap_or("latest");
        Workload {
            workload: Arc::from(workload),
            namespace: Arc::from(string(md.fields.get("NAMESPACE")).unwrap_or(UNKNOWN)),
            app: Arc::from(app.unwrap_or(UNKNOWN)),
            version: Arc::from(version.unwrap_or(UNKNOWN)),
            canonical_service: Arc::from(canonical_service),
            canonical_revision: Arc::from(canonical_revision),
            cluster: Arc::from(string(md.fields.get("CLUSTER_ID")).unwrap_or(UNKNOWN)),
        }
    }
}

/// This proxy's identity, and the headers that tell peers about it.
#[derive(Debug)]
pub struct Node {
    /// The node id (`x-envoy-peer-metadata-id`).
    pub id: String,
    /// What the labels say about this workload.
    pub workload: Arc<Workload>,
    /// `x-envoy-peer-metadata` for this node (base64 of the metadata `Struct`).
    pub header: HeaderValue,
    /// `x-envoy-peer-metadata-id` for this node.
    pub header_id: HeaderValue,
    /// `SERVICE_ACCOUNT` and `NAMESPACE`, for span attributes and logs.
    pub service_account: String,
}

impl Node {
    /// Reads the bootstrap's `node`.
    pub fn from_node(node: Option<&weft_xds::envoy::config::core::v3::Node>) -> Node {
        let empty = Struct::default();
        let md = node.and_then(|n| n.metadata.as_ref()).unwrap_or(&empty);
        // The exchanged metadata leaves out what peers never read (large, and sometimes
        // sensitive): only the keys the metric labels come from.
        let mut exchanged = Struct::default();
        for k in [
            "NAME",
            "NAMESPACE",
            "WORKLOAD_NAME",
            "LABELS",
            "CLUSTER_ID",
            "MESH_ID",
            "SERVICE_ACCOUNT",
            "OWNER",
            "PLATFORM_METADATA",
            "APP_CONTAINERS",
            "INSTANCE_IPS",
            "ISTIO_VERSION",
        ] {
            if let Some(v) = md.fields.get(k) {
                exchanged.fields.insert(k.to_owned(), v.clone());
            }
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(exchanged.encode_to_vec());
        let id = node.map(|n| n.id.clone()).unwrap_or_default();
        Node {
            header: HeaderValue::from_str(&encoded)
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            header_id: HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("")),
            id,
            workload: Arc::new(Workload::from_metadata(md)),
            service_account: string(md.fields.get("SERVICE_ACCOUNT"))
                .unwrap_or("default")
                .to_owned(),
        }
    }
}

/// Most distinct peers remembered; beyond it, unseen peers are decoded each time (and still
/// labelled correctly).
const MAX_PEERS: usize = 4096;

/// Decoded peer metadata by header value, so that each peer's header is decoded once and its
/// label values are shared (interned) by every series that names it.
#[derive(Debug, Default)]
pub struct PeerCache {
    peers: Mutex<HashMap<HeaderValue, Arc<Workload>>>,
}

impl PeerCache {
    /// The workload an `x-envoy-peer-metadata` value describes; `None` when it does not
    /// decode (a malformed header is ignored, as Istio does).
    pub fn lookup(&self, header: &HeaderValue) -> Option<Arc<Workload>> {
        {
            let m = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = m.get(header) {
                return Some(Arc::clone(w));
            }
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(header.as_bytes())
            .ok()?;
        let md = Struct::decode(bytes.as_slice()).ok()?;
        let w = Arc::new(Workload::from_metadata(&md));
        let mut m = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() < MAX_PEERS {
            m.insert(header.clone(), Arc::clone(&w));
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(v.into())),
        }
    }

    #[test]
    fn node_header_round_trips_through_the_cache() {
        let mut labels = Struct::default();
        labels.fields.insert("app".into(), s("reviews"));
        labels.fields.insert("version".into(), s("v2"));
        let mut md = Struct::default();
        md.fields.insert("WORKLOAD_NAME".into(), s("reviews-v2"));
        md.fields.insert("NAMESPACE".into(), s("default"));
        md.fields.insert("CLUSTER_ID".into(), s("Kubernetes"));
        md.fields.insert(
            "LABELS".into(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        );
        let node = weft_xds::envoy::config::core::v3::Node {
            id: "sidecar~10.0.0.1~reviews-v2.default~default.svc.cluster.local".into(),
            metadata: Some(md),
            ..Default::default()
        };
        let n = Node::from_node(Some(&node));
        let cache = PeerCache::default();
        let w = cache.lookup(&n.header).expect("decodes");
        assert_eq!(&*w.workload, "reviews-v2");
        assert_eq!(&*w.app, "reviews");
        assert_eq!(&*w.version, "v2");
        assert_eq!(&*w.canonical_service, "reviews");
        assert_eq!(&*w.canonical_revision, "v2");
        assert_eq!(&*w.cluster, "Kubernetes");
        assert!(cache.lookup(&HeaderValue::from_static("%%%")).is_none());
    }
}
