//! What `weft up` runs: workloads (a service, labels, ports and the command of the app) and
//! gateways, read from `weft.yaml` beside the Istio YAML, or built in (`--demo bookinfo`).
//!
//! ```yaml
//! namespace: default                 # default namespace of the workloads
//! workloads:
//!   - name: reviews-v1               # unique; the proxy is reviews-v1.<namespace>
//!     service: reviews               # host reviews.<namespace>.svc.cluster.local
//!     labels: {app: reviews, version: v1}
//!     serviceAccount: bookinfo-reviews
//!     ports: [{name: http, number: 9080, protocol: HTTP}]
//!     command: [weft-bookinfo, reviews, --listen, "{app}", --ratings, "http://{svc.ratings}:9080"]
//!     env: {LOG_LEVEL: info}
//! gateways:
//!   - name: istio-ingressgateway
//!     namespace: istio-system
//!     labels: {istio: ingressgateway}
//! ```
//!
//! Placeholders in `command` and `env`: `{app}` (the `HOST:PORT` the app listens on for its
//! first port: `127.0.0.1:PORT` in loopback mode, `0.0.0.0:SERVICE_PORT` in namespaces mode),
//! `{app_port}`, `{app_port.NAME}` (by port name), `{svc.NAME}` (where to call service NAME of
//! the same namespace: the sidecar's outbound address in loopback mode, the service name in
//! namespaces mode), `{outbound}` (the sidecar's outbound address), `{ip}` (the workload's
//! address, where its sidecar accepts inbound calls), `{name}`, `{namespace}`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The workload file of a directory given to `weft up`.
pub const WORKLOADS_FILE: &str = "weft.yaml";

/// The contents of `weft.yaml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSpec {
    /// Namespace of workloads that name none.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The workloads, each with its sidecar.
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    /// The gateways (proxies without an app).
    #[serde(default)]
    pub gateways: Vec<GatewaySpec>,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// One workload: an app with a sidecar, registered as an endpoint of `service`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Unique name (the proxy's pod name).
    pub name: String,
    /// Namespace (default: the file's `namespace`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The service this workload is an endpoint of (short name).
    pub service: String,
    /// Workload labels (DestinationRule subsets, Sidecar and policy selectors).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Service account (default: `default`).
    #[serde(default)]
    pub service_account: Option<String>,
    /// The ports the service and the app serve.
    pub ports: Vec<PortSpec>,
    /// The app's command line; the first word is looked up beside `weft`, then on `PATH`.
    pub command: Vec<String>,
    /// Extra environment of the app.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A service port.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    /// Port name (`http`, `grpc-api`, ...).
    pub name: String,
    /// The service port callers use.
    pub number: u16,
    /// Istio protocol (`HTTP`, `HTTP2`, `GRPC`, `TCP`); default from the name, else `HTTP`.
    #[serde(default)]
    pub protocol: Option<String>,
}

impl PortSpec {
    /// The protocol, as Istio would infer it from the port name when none is given.
    pub fn protocol(&self) -> String {
        if let Some(p) = &self.protocol {
            return p.to_ascii_uppercase();
        }
        let prefix = self.name.split('-').next().unwrap_or("");
        match prefix.to_ascii_lowercase().as_str() {
            "grpc" => "GRPC",
            "http2" => "HTTP2",
            "tcp" => "TCP",
            "https" => "HTTPS",
            "tls" => "TLS",
            _ => "HTTP",
        }
        .to_string()
    }
}

/// A gateway proxy (`router`), selected by Gateway resources through its labels.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    /// Name (the proxy's pod name).
    pub name: String,
    /// Namespace (default `istio-system`).
    #[serde(default = "istio_system")]
    pub namespace: String,
    /// Labels matched by Gateway `selector`s.
    pub labels: BTreeMap<String, String>,
}

fn istio_system() -> String {
    "istio-system".to_string()
}

/// Why a workload file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Cannot read the file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid YAML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Where and what.
        message: String,
    },
    /// A field has a value that cannot be used.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field path (`workloads[2].ports`).
        field: String,
        /// What is allowed.
        message: String,
    },
}

impl MeshSpec {
    /// Parses and checks `weft.yaml` text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<MeshSpec, SpecError> {
        let de = serde_norway::Deserializer::from_str(text);
        let spec: MeshSpec =
            serde_path_to_error::deserialize(de).map_err(|e| SpecError::Parse {
                path: path.to_string(),
                message: format!("{}: {}", e.path(), e.inner()),
            })?;
        spec.check(path)?;
        Ok(spec)
    }

    /// Reads `weft.yaml`.
    pub fn read(path: &Path) -> Result<MeshSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        MeshSpec::parse(&text, &path.display().to_string())
    }

    fn check(&self, path: &str) -> Result<(), SpecError> {
        let invalid = |field: String, message: &str| SpecError::Invalid {
            path: path.to_string(),
            field,
            message: message.to_string(),
        };
        let dns = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        let dns_msg = "must be a DNS label: lowercase letters, digits and '-', at most 63";
        let mut names = std::collections::BTreeSet::new();
        for (i, w) in self.workloads.iter().enumerate() {
            let at = |f: &str| format!("workloads[{i}].{f}");
            if !dns(&w.name) {
                return Err(invalid(at("name"), dns_msg));
            }
            if !names.insert(w.name.clone()) {
                return Err(invalid(
                    at("name"),
                    "must be unique among workloads and gateways",
                ));
            }
            if !dns(&w.service) {
                return Err(invalid(at("service"), dns_msg));
            }
            if w.ports.is_empty() {
                return Err(invalid(at("ports"), "at least one port is needed"));
            }
            for (j, p) in w.ports.iter().enumerate() {
                if p.number == 0 {
                    return Err(invalid(at(&format!("ports[{j}].number")), "1 to 65535"));
                }
                if p.name.is_empty() {
                    return Err(invalid(
                        at(&format!("ports[{j}].name")),
                        "must not be empty",
                    ));
                }
            }
            if w.command.is_empty() {
                return Err(invalid(
                    at("command"),
                    "the app's command line is needed (e.g. [my-app, --listen, \"{app}\"])",
                ));
            }
        }
        for (i, g) in self.gateways.iter().enumerate() {
            if !dns(&g.name) {
                return Err(invalid(format!("gateways[{i}].name"), dns_msg));
            }
            if !names.insert(g.name.clone()) {
                return Err(invalid(
                    format!("gateways[{i}].name"),
                    "must be unique among workloads and gateways",
                ));
            }
            if g.labels.is_empty() {
                return Err(invalid(
                    format!("gateways[{i}].labels"),
                    "a gateway needs labels for Gateway selectors (e.g. istio: ingressgateway)",
                ));
            }
        }
        Ok(())
    }

    /// The namespace of a workload.
    pub fn namespace_of<'a>(&'a self, w: &'a WorkloadSpec) -> &'a str {
        w.namespace.as_deref().unwrap_or(&self.namespace)
    }
}

/// The bookinfo demo: productpage, details, reviews v1/v2/v3 and ratings (`weft-bookinfo`),
/// and Istio's default ingress gateway.
pub const BOOKINFO: &str = r#"
namespace: default
workloads:
  - name: details-v1
    service: details
    labels: {app: details, version: v1}
    serviceAccount: bookinfo-details
    ports: [{name: http, number: 9080, protocol: HTTP}]
    command: [weft-bookinfo, details, --listen, "{app}"]
  - name: ratings-v1
    service: ratings
    labels: {app: ratings, version: v1}
    serviceAccount: bookinfo-ratings
    ports: [{name: http, number: 9080, protocol: HTTP}]
    command: [weft-bookinfo, ratings, --listen, "{app}"]
  - name: reviews-v1
    service: reviews
    labels: {app: reviews, version: v1}
    serviceAccount: bookinfo-reviews
    ports: [{name: http, number: 9080, protocol: HTTP}]
    command: [weft-bookinfo, reviews, --listen, "{app}", --version, v1, --ratings, "http://{svc.ratings}:9080"]
  - name: reviews-v2
    service: reviews
    labels: {app: reviews, version: v2}
    serviceAccount: bookinfo-reviews
    ports: [{name: http, number: 9080, protocol: HTTP}]
    command: [weft-bookinfo, reviews, --listen, "{app}", --version, v2, --ratings, "http://{svc.ratings}:9080"]
  - name: reviews-v3
    service: reviews
    labels: {app: reviews, version: v3}
    serviceAccount: bookinfo-reviews
    ports: [{name: http, number: 9080, protocol: HTTP}]
    command: [weft-bookinfo, reviews, --listen, "{app}", --version, v3, --ratings, "http://{svc.ratings}:9080"]
  - name: productpage-v1
    service: productpage
    labels: {app: productpage, version: v1}
    serviceAccount: bookinfo-productpage
    ports: [{name: http, number: 9080, protocol: HTTP}]
    command: [weft-bookinfo, productpage, --listen, "{app}",
              --details, "http://{svc.details}:9080", --reviews, "http://{svc.reviews}:9080",
              --ratings, "http://{svc.ratings}:9080"]
gateways:
  - name: istio-ingressgateway
    namespace: istio-system
    labels: {istio: ingressgateway, app: istio-ingressgateway}
"#;

/// The bookinfo files applied at start: the gateway with its VirtualService, and the
/// DestinationRule with the v1/v2/v3 subsets that the other VirtualServices use.
pub const BOOKINFO_FILES: &[&str] = &["bookinfo-gateway.yaml", "destination-rule-all.yaml"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookinfo_parses() {
        let s = MeshSpec::parse(BOOKINFO, "bookinfo").expect("valid");
        assert_eq!(s.workloads.len(), 6);
        assert_eq!(s.gateways.len(), 1);
        assert_eq!(s.workloads[0].ports[0].protocol(), "HTTP");
    }

    #[test]
    fn errors_name_the_field() {
        let e = MeshSpec::parse(
            "workloads:\n- name: a\n  service: s\n  ports: []\n  command: [x]\n",
            "weft.yaml",
        )
        .expect_err("no ports");
        assert_eq!(
            e.to_string(),
            "weft.yaml: workloads[0].ports: at least one port is needed"
        );
        let e = MeshSpec::parse("workloads:\n- name: a\n  sevice: s\n", "weft.yaml")
            .expect_err("unknown field");
        assert!(e.to_string().contains("workloads[0]"), "{e}");
        assert!(e.to_string().contains("sevice"), "{e}");
        let e = MeshSpec::parse(
            "workloads:\n- {name: A, service: s, ports: [{name: http, number: 1}], command: [x]}\n",
            "weft.yaml",
        )
        .expect_err("bad name");
        assert!(
            e.to_string()
                .contains("workloads[0].name: must be a DNS label")
        );
    }

    #[test]
    fn protocol_from_name() {
        let p = |name: &str| PortSpec {
            name: name.into(),
            number: 1,
            protocol: None,
        };
        assert_eq!(p("grpc-api").protocol(), "GRPC");
        assert_eq!(p("tcp").protocol(), "TCP");
        assert_eq!(p("web").protocol(), "HTTP");
    }
}
