//! The Envoy v3 bootstrap a weft-proxy (or Envoy) needs to join the mesh as a workload's sidecar
//! or as a gateway: a node that identifies itself as Istio's agent would identify it (node id
//! `sidecar~IP~POD.NS~NS.svc.cluster.local`, node metadata `NAMESPACE`, `LABELS`, ...), an admin
//! listener, and ADS to the control plane through the static `xds-grpc` cluster, as Istio's
//! bootstrap names it.
//!
//! ```
//! use weft_control::bootstrap::WorkloadBootstrap;
//!
//! let b = WorkloadBootstrap::sidecar("reviews-v1", "default", "127.0.0.1")
//!     .xds("127.0.0.1:15010".parse().expect("addr"))
//!     .admin_port(15000);
//! assert_eq!(b.node_id(), "sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local");
//! let yaml = b.to_yaml().expect("encodes");
//! assert!(yaml.contains("xds-grpc"));
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use weft_config::{Kind, Resource, Spec};
use weft_xds::envoy::config::bootstrap::v3::{Admin, Bootstrap, bootstrap};
use weft_xds::envoy::config::cluster::v3::{Cluster, cluster};
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::endpoint::v3 as endpoint;
use weft_xds::google::protobuf::{Struct, Value as PbValue, value::Kind as PbKind};

use crate::model::ProxyKind;
use crate::translate::envoy;

/// The static cluster through which a proxy reaches the control plane (Istio's name).
pub const XDS_CLUSTER: &str = "xds-grpc";

/// The Istio version weft's proxies report in `ISTIO_VERSION` (the API level weft follows).
pub const ISTIO_VERSION: &str = "1.24.0";

/// Why a bootstrap could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The WorkloadEntry file is unusable.
    #[error("{file}: {message}")]
    WorkloadEntry {
        /// The file the WorkloadEntry was read from.
        file: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A field of the request is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is allowed.
        message: String,
    },
    /// The bootstrap could not be encoded (a type missing from the descriptor pool).
    #[error("cannot encode the bootstrap: {0}")]
    Encode(String),
}

/// Everything that goes into one proxy's bootstrap. Build it with [`WorkloadBootstrap::sidecar`],
/// [`WorkloadBootstrap::gateway`] or [`WorkloadBootstrap::from_workload_entry`], then adjust.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadBootstrap {
    /// Sidecar or gateway (`router`).
    pub kind: ProxyKind,
    /// The workload (pod) name: the first half of `POD.NS` in the node id.
    pub name: String,
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's IP, as its endpoints and Sidecar ingress listeners name it.
    pub ip: String,
    /// Workload labels (`LABELS`), which select subsets, Sidecars and gateways.
    pub labels: BTreeMap<String, String>,
    /// Service account (`SERVICE_ACCOUNT`); `default` when unset.
    pub service_account: String,
    /// The control plane's xDS (ADS) address.
    pub xds_addr: SocketAddr,
    /// The proxy's admin listener (`/ready`, `/config_dump`, `/stats`).
    pub admin_addr: SocketAddr,
    /// `CLUSTER_ID` (Istio's default is `Kubernetes`).
    pub cluster_id: String,
    /// `MESH_ID` (the trust domain by default).
    pub mesh_id: String,
    /// The DNS suffix of the cluster (`cluster.local`).
    pub cluster_domain: String,
    /// `INTERCEPTION_MODE`: `NONE` for workloads on loopback ports (no traffic capture),
    /// `REDIRECT` for iptables capture.
    pub interception_mode: String,
    /// Use delta (incremental) xDS instead of state-of-the-world.
    pub delta: bool,
    /// Base and maximum reconnect backoff to the control plane, in milliseconds.
    pub backoff_ms: (u64, u64),
}

impl WorkloadBootstrap {
    fn new(kind: ProxyKind, name: &str, namespace: &str, ip: &str) -> WorkloadBootstrap {
        WorkloadBootstrap {
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
            ip: ip.to_string(),
            labels: BTreeMap::new(),
            service_account: "default".to_string(),
            xds_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 15010)),
            admin_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 15000)),
            cluster_id: "Kubernetes".to_string(),
            mesh_id: "cluster.local".to_string(),
            cluster_domain: "cluster.local".to_string(),
            interception_mode: "NONE".to_string(),
            delta: false,
            backoff_ms: (100, 2_000),
        }
    }

    /// A sidecar for workload `name` in `namespace` at `ip` (no capture: loopback mode).
    pub fn sidecar(name: &str, namespace: &str, ip: &str) -> WorkloadBootstrap {
        WorkloadBootstrap::new(ProxyKind::Sidecar, name, namespace, ip)
    }

    /// A gateway (`router`) named `name` in `namespace` at `ip`.
    pub fn gateway(name: &str, namespace: &str, ip: &str) -> WorkloadBootstrap {
        WorkloadBootstrap::new(ProxyKind::Router, name, namespace, ip)
    }

    /// A sidecar for the workload a WorkloadEntry describes: its name, namespace (`default`
    /// when unset), address, labels and service account. `file` names the source in errors.
    pub fn from_workload_entry(
        r: &Resource,
        file: &str,
    ) -> Result<WorkloadBootstrap, BootstrapError> {
        let err = |message: String| BootstrapError::WorkloadEntry {
            file: file.to_string(),
            message,
        };
        let Spec::WorkloadEntry(we) = &r.spec else {
            return Err(err(format!(
                "{} is a {}, expected a WorkloadEntry",
                r.key(),
                r.kind.name()
            )));
        };
        debug_assert_eq!(r.kind, Kind::WorkloadEntry);
        if we.address.parse::<IpAddr>().is_err() {
            return Err(err(format!(
                "{}: spec.address {:?} must be an IP address for a sidecar (host names and unix sockets have no node IP)",
                r.key(),
                we.address
            )));
        }
        let ns = match r.namespace() {
            "" => "default",
            ns => ns,
        };
        let mut b = WorkloadBootstrap::sidecar(r.name(), ns, &we.address);
        b.labels = we.labels.clone();
        if !we.service_account.is_empty() {
            b.service_account = we.service_account.clone();
        }
        Ok(b)
    }

    /// Sets the control plane's xDS address.
    pub fn xds(mut self, addr: SocketAddr) -> WorkloadBootstrap {
        self.xds_addr = addr;
        self
    }

    /// Sets the admin port (on 127.0.0.1).
    pub fn admin_port(mut self, port: u16) -> WorkloadBootstrap {
        self.admin_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self
    }

    /// Sets the workload labels.
    pub fn labels(mut self, labels: BTreeMap<String, String>) -> WorkloadBootstrap {
        self.labels = labels;
        self
    }

    /// Istio's node id: `sidecar~IP~NAME.NS~NS.svc.cluster.local` (`router~...` for gateways).
    pub fn node_id(&self) -> String {
        let kind = match self.kind {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Router => "router",
        };
        format!(
            "{kind}~{}~{}.{}~{}.svc.{}",
            self.ip, self.name, self.namespace, self.namespace, self.cluster_domain
        )
    }

    /// The workload name Istio's agent reports: the `app` label, else the name.
    fn workload_name(&self) -> String {
        self.labels
            .get("app")
            .or_else(|| self.labels.get("app.kubernetes.io/name"))
            .cloned()
            .unwrap_or_else(|| self.name.clone())
    }

    /// Node metadata as Istio's agent writes it (the keys translation and proxy-status read).
    pub fn node_metadata(&self) -> Struct {
        let s = |v: &str| PbValue {
            kind: Some(PbKind::StringValue(v.to_string())),
        };
        let labels = Struct {
            fields: self.labels.iter().map(|(k, v)| (k.clone(), s(v))).collect(),
        };
        let mut fields = BTreeMap::new();
        fields.insert("ISTIO_VERSION".to_string(), s(ISTIO_VERSION));
        fields.insert("NAME".to_string(), s(&self.name));
        fields.insert("NAMESPACE".to_string(), s(&self.namespace));
        fields.insert(
            "LABELS".to_string(),
            PbValue {
                kind: Some(PbKind::StructValue(labels)),
            },
        );
        fields.insert("SERVICE_ACCOUNT".to_string(), s(&self.service_account));
        fields.insert("WORKLOAD_NAME".to_string(), s(&self.workload_name()));
        fields.insert("INTERCEPTION_MODE".to_string(), s(&self.interception_mode));
        fields.insert("CLUSTER_ID".to_string(), s(&self.cluster_id));
        fields.insert("MESH_ID".to_string(), s(&self.mesh_id));
        fields.insert("INSTANCE_IPS".to_string(), s(&self.ip));
        fields.insert(
            "OWNER".to_string(),
            s(&format!(
                "kubernetes://apis/apps/v1/namespaces/{}/deployments/{}",
                self.namespace,
                self.workload_name()
            )),
        );
        Struct {
            fields: fields.into_iter().collect(),
        }
    }

    /// The bootstrap: node, admin, `dynamic_resources` (LDS and CDS over ADS) and the static
    /// `xds-grpc` cluster pointing at the control plane.
    pub fn build(&self) -> Bootstrap {
        let node = core::Node {
            id: self.node_id(),
            cluster: format!("{}.{}", self.workload_name(), self.namespace),
            metadata: Some(self.node_metadata()),
            ..Default::default()
        };
        let api_type = if self.delta {
            core::api_config_source::ApiType::DeltaGrpc
        } else {
            core::api_config_source::ApiType::Grpc
        };
        let backoff = core::BackoffStrategy {
            base_interval: envoy::duration(std::time::Duration::from_millis(self.backoff_ms.0)),
            max_interval: envoy::duration(std::time::Duration::from_millis(
                self.backoff_ms.1.max(self.backoff_ms.0),
            )),
        };
        let grpc = core::GrpcService {
            target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                core::grpc_service::EnvoyGrpc {
                    cluster_name: XDS_CLUSTER.to_string(),
                    ..Default::default()
                },
            )),
            retry_policy: Some(core::RetryPolicy {
                retry_back_off: Some(backoff),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ads_source = || core::ConfigSource {
            resource_api_version: core::ApiVersion::V3 as i32,
            config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                core::AggregatedConfigSource {},
            )),
            ..Default::default()
        };
        let dynamic = bootstrap::DynamicResources {
            ads_config: Some(core::ApiConfigSource {
                api_type: api_type as i32,
                transport_api_version: core::ApiVersion::V3 as i32,
                grpc_services: vec![grpc],
                ..Default::default()
            }),
            lds_config: Some(ads_source()),
            cds_config: Some(ads_source()),
            ..Default::default()
        };
        let xds_cluster = Cluster {
            name: XDS_CLUSTER.to_string(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Static as i32,
            )),
            connect_timeout: envoy::duration(std::time::Duration::from_secs(1)),
            load_assignment: Some(endpoint::ClusterLoadAssignment {
                cluster_name: XDS_CLUSTER.to_string(),
                endpoints: vec![endpoint::LocalityLbEndpoints {
                    lb_endpoints: vec![endpoint::LbEndpoint {
                        host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                            endpoint::Endpoint {
                                address: Some(socket_address(self.xds_addr)),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        Bootstrap {
            node: Some(node),
            admin: Some(Admin {
                address: Some(socket_address(self.admin_addr)),
                ..Default::default()
            }),
            dynamic_resources: Some(dynamic),
            static_resources: Some(bootstrap::StaticResources {
                clusters: vec![xds_cluster],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The bootstrap as proto3-JSON with Envoy's snake_case names.
    pub fn to_json(&self) -> Result<serde_json::Value, BootstrapError> {
        weft_xds::json::to_value(&self.build()).map_err(|e| BootstrapError::Encode(e.to_string()))
    }

    /// The bootstrap as YAML, for `weft-proxy -c` (or `envoy -c`).
    pub fn to_yaml(&self) -> Result<String, BootstrapError> {
        serde_norway::to_string(&self.to_json()?).map_err(|e| BootstrapError::Encode(e.to_string()))
    }
}

fn socket_address(addr: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// Parses `k=v,k2=v2` (the form of `--labels`), naming the bad pair in the error.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, BootstrapError> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(BootstrapError::Invalid {
                field: "labels",
                message: format!(
                    "{pair:?} is not key=value (expected e.g. app=reviews,version=v1)"
                ),
            });
        };
        if k.trim().is_empty() {
            return Err(BootstrapError::Invalid {
                field: "labels",
                message: format!("{pair:?} has an empty key"),
            });
        }
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::push::proxy_of;

    #[test]
    fn node_id_and_metadata_read_back_as_the_same_proxy() {
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "reviews".to_string());
        labels.insert("version".to_string(), "v2".to_string());
        let b = WorkloadBootstrap::sidecar("reviews-v2", "bookinfo", "127.0.0.3")
            .labels(labels.clone())
            .admin_port(15100);
        let boot = b.build();
        let node = boot.node.clone().expect("node");
        assert_eq!(
            node.id,
            "sidecar~127.0.0.3~reviews-v2.bookinfo~bookinfo.svc.cluster.local"
        );
        assert_eq!(node.cluster, "reviews.bookinfo");
        let p = proxy_of(&node).expect("valid node");
        assert_eq!(p.kind, ProxyKind::Sidecar);
        assert_eq!(p.config_namespace, "bookinfo");
        assert_eq!(p.labels, labels);
        assert_eq!(p.ip_addresses, vec!["127.0.0.3"]);
        assert_eq!(p.metadata.cluster_id, "Kubernetes");
        assert_eq!(p.metadata.istio_version, ISTIO_VERSION);
        assert!(p.interception_none(), "{:?}", p.metadata);
        for key in [
            "SERVICE_ACCOUNT",
            "WORKLOAD_NAME",
            "INTERCEPTION_MODE",
            "MESH_ID",
        ] {
            assert!(p.metadata.raw.contains_key(key), "{key} missing");
        }
        let g = WorkloadBootstrap::gateway("ingressgateway", "istio-system", "127.0.0.1");
        assert!(
            g.node_id()
                .starts_with("router~127.0.0.1~ingressgateway.istio-system~")
        );
    }

    #[test]
    fn yaml_round_trips_through_the_envoy_types() {
        let b = WorkloadBootstrap::sidecar("a", "default", "127.0.0.1")
            .xds("127.0.0.1:4567".parse().expect("addr"));
        let yaml = b.to_yaml().expect("encodes");
        let back: Bootstrap = weft_xds::json::from_yaml(&yaml).expect("decodes");
        assert_eq!(back, b.build());
        assert!(yaml.contains("port_value: 4567"), "{yaml}");
        assert!(yaml.contains("xds-grpc"), "{yaml}");
    }

    #[test]
    fn from_workload_entry_reads_name_address_labels_and_account() {
        let text = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1, namespace: bookinfo}
spec:
  address: 127.0.0.9
  serviceAccount: bookinfo-ratings
  labels: {app: ratings, version: v1}
"#;
        let parsed = weft_config::parse_str(text, "we.yaml");
        let r = parsed.resources.first().expect("one resource");
        let b = WorkloadBootstrap::from_workload_entry(r, "we.yaml").expect("valid");
        assert_eq!(b.ip, "127.0.0.9");
        assert_eq!(b.service_account, "bookinfo-ratings");
        assert_eq!(b.labels.get("version").map(String::as_str), Some("v1"));
        assert_eq!(
            b.node_id(),
            "sidecar~127.0.0.9~ratings-v1.bookinfo~bookinfo.svc.cluster.local"
        );
        let dns = text.replace("127.0.0.9", "ratings.example.com");
        let parsed = weft_config::parse_str(&dns, "we.yaml");
        let r = parsed.resources.first().expect("one resource");
        let e = WorkloadBootstrap::from_workload_entry(r, "we.yaml").expect_err("not an IP");
        assert!(e.to_string().contains("spec.address"), "{e}");
    }

    #[test]
    fn labels_parse_and_name_bad_pairs() {
        let l = parse_labels("app=reviews, version=v1").expect("valid");
        assert_eq!(l.len(), 2);
        let e = parse_labels("app=reviews,oops").expect_err("no =");
        assert!(e.to_string().contains("\"oops\""), "{e}");
    }
}
