//! Cross-resource analysis, as `istioctl analyze` does it: Istio's analyzers, message codes,
//! levels and texts.
//!
//! An analyzer implements [`Analyzer`] in its own file and is listed in [`ANALYZERS`]. It reads
//! resources through [`Context`] and reports [`Message`]s built from the catalogue in
//! [`messages`] (generated from Istio's `messages.yaml`; see `tests/messages_catalogue.rs`).

pub mod annotations_catalogue;
pub mod annotations_k8s;
pub mod authn_blocked_cidrs;
pub mod authz_authorization_policies;
pub mod conditions_condition;
pub mod deployment_application_uid;
pub mod deployment_service_association;
pub mod deprecation_field;
pub mod destinationrule_ca_certificates;
pub mod destinationrule_pod_not_selected;
pub mod envoyfilter_patch;
pub mod externalcontrolplane_external_control_plane;
pub mod gateway_certificate;
pub mod gateway_conflicting_gateway;
pub mod gateway_credential;
pub mod gateway_ingress_gateway_port;
pub mod gateway_secret;
pub mod injection_analyzer;
pub mod injection_image;
pub mod injection_image_auto;
pub mod k8sgateway_selector;
pub mod maturity_alpha;
pub mod messages;
pub mod multicluster_mesh_networks;
pub mod schema_validation;
pub mod service_port_name;
pub mod serviceentry_conflicting_protocol;
pub mod serviceentry_protocol_addresses;
pub mod sidecar_selector;
pub mod telemetry_default_selector;
pub mod telemetry_lightstep;
pub mod telemetry_provider;
pub mod telemetry_selector;
pub mod util;
pub mod virtualservice_conflicting_mesh_gateway_hosts;
pub mod virtualservice_destination_host;
pub mod virtualservice_destination_rule;
pub mod virtualservice_gateway;
pub mod virtualservice_jwt_claim_route;
pub mod webhook_analyzer;

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::mesh::{IngressControllerMode, MeshConfig, MeshNetworks};
use crate::resource::{Kind, Resource, Source};

/// How serious a message is, as istioctl ranks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    /// Parses `Info`, `Warning` or `Error` (any case), as `--failure-threshold` takes them.
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Level::Info),
            "warning" | "warn" => Some(Level::Warning),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        })
    }
}

/// One entry of Istio's message catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct MessageType {
    /// Istio's name for the message (`ReferencedResourceNotFound`).
    pub name: &'static str,
    /// The code (`IST0101`).
    pub code: &'static str,
    pub level: Level,
    pub description: &'static str,
    /// Go `fmt` template filled with the message's arguments.
    pub template: &'static str,
    /// Names of the template arguments, in order.
    pub args: &'static [&'static str],
}

/// A value substituted into a message template. Formats like Go's `fmt` verbs do
/// (`%s`/`%v` plain, `%q` quoted, lists as `[a b]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Str(String),
    Int(i64),
    StrList(Vec<String>),
    IntList(Vec<i64>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Str(s.to_string())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Str(s)
    }
}
impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg::Str(s.clone())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<u32> for Arg {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Self {
        Arg::Int(i64::from(v))
    }
}
impl From<usize> for Arg {
    fn from(v: usize) -> Self {
        Arg::Int(v as i64)
    }
}
impl From<Vec<String>> for Arg {
    fn from(v: Vec<String>) -> Self {
        Arg::StrList(v)
    }
}
impl From<Vec<i64>> for Arg {
    fn from(v: Vec<i64>) -> Self {
        Arg::IntList(v)
    }
}

/// Go's `%q` for a string: double-quoted with Go escapes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Arg {
    fn format(&self, verb: char) -> String {
        match (self, verb) {
            (Arg::Str(s), 'q') => go_quote(s),
            (Arg::Str(s), _) => s.clone(),
            (Arg::Int(i), 'q') => format!("'{}'", char::from_u32(*i as u32).unwrap_or('?')),
            (Arg::Int(i), _) => i.to_string(),
            (Arg::StrList(v), 'q') => {
                format!(
                    "[{}]",
                    v.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(" ")
                )
            }
            (Arg::StrList(v), _) => format!("[{}]", v.join(" ")),
            (Arg::IntList(v), _) => {
                format!(
                    "[{}]",
                    v.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
                )
            }
        }
    }
}

/// Fills a Go `fmt` template (`%s`, `%q`, `%v`, `%d`, `%%`) with `args`.
pub fn format_template(template: &str, args: &[Arg]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut args = args.iter();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb) => match args.next() {
                Some(a) => out.push_str(&a.format(verb)),
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            None => out.push('%'),
        }
    }
    out
}

/// One finding of an analyzer about one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub ty: &'static MessageType,
    pub args: Vec<Arg>,
    /// The resource the message is about, as `Kind namespace/name`.
    pub origin: String,
    /// Where the resource came from, when it was read from a file.
    pub source: Option<Source>,
    /// A field path inside the resource the message points at, when known.
    pub reference: Option<String>,
}

impl Message {
    /// A message of type `ty` about `resource`, with template arguments `args`.
    pub fn new(ty: &'static MessageType, resource: &Resource, args: Vec<Arg>) -> Self {
        Message {
            ty,
            args,
            origin: resource.key(),
            source: Some(resource.source.clone()),
            reference: None,
        }
    }

    /// Points the message at a field of the resource (`spec.http[0].route[0].destination.host`).
    pub fn at(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// The rendered text of the message (its template filled with its arguments).
    pub fn text(&self) -> String {
        format_template(self.ty.template, &self.args)
    }

    /// The documentation page for this message code, as istioctl links it.
    pub fn documentation_url(&self) -> String {
        format!(
            "https://istio.io/latest/docs/reference/config/analysis/{}/",
            self.ty.code.to_lowercase()
        )
    }

    /// The message as istioctl's `-o json|yaml` shows it.
    pub fn to_output(&self) -> OutputMessage {
        OutputMessage {
            code: self.ty.code.to_string(),
            documentation_url: self.documentation_url(),
            level: self.ty.level.to_string(),
            message: self.text(),
            origin: self.origin.clone(),
            reference: self.reference.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Message {
    /// `Error [IST0101] (VirtualService default/reviews) Referenced host not found: "x"`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] ({}) {}",
            self.ty.level,
            self.ty.code,
            self.origin,
            self.text()
        )
    }
}

/// A message in istioctl's machine-readable output shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputMessage {
    pub code: String,
    pub documentation_url: String,
    pub level: String,
    pub message: String,
    pub origin: String,
    pub reference: String,
}

/// What analyzers see: every resource, indexed by kind and by name, and the mesh configuration.
/// Lookups by name are hash lookups, so analyzers that cross-reference resources stay linear.
pub struct Context<'a> {
    by_kind: HashMap<Kind, Vec<&'a Resource>>,
    /// kind -> `namespace/name` -> the first resource with that identity.
    by_name: HashMap<Kind, HashMap<(&'a str, &'a str), &'a Resource>>,
    /// kind -> namespace -> the resources of that kind in that namespace, in input order.
    by_namespace: HashMap<Kind, HashMap<&'a str, Vec<&'a Resource>>>,
    /// The mesh configuration (`--meshConfigFile`, or Istio's defaults).
    pub mesh: &'a MeshConfig,
    /// `rootNamespace` from the mesh configuration, or `istio-system`.
    root_ns: String,
    /// The mesh networks (the `meshNetworks` key of the `istio` ConfigMap), when given.
    mesh_networks: Option<&'a MeshNetworks>,
}

impl<'a> Context<'a> {
    /// Indexes `resources` for analysis.
    pub fn new(resources: &'a [Resource], mesh: &'a MeshConfig) -> Self {
        Self::index(resources.iter(), mesh)
    }

    /// Indexes the resources `resources` yields, in that order.
    fn index(resources: impl Iterator<Item = &'a Resource>, mesh: &'a MeshConfig) -> Self {
        let mut by_kind: HashMap<Kind, Vec<&'a Resource>> = HashMap::new();
        let mut by_name: HashMap<Kind, HashMap<(&'a str, &'a str), &'a Resource>> = HashMap::new();
        let mut by_namespace: HashMap<Kind, HashMap<&'a str, Vec<&'a Resource>>> = HashMap::new();
        for r in resources {
            by_kind.entry(r.kind).or_default().push(r);
            by_name
                .entry(r.kind)
                .or_default()
                .entry((r.namespace(), r.name()))
                .or_insert(r);
            by_namespace
                .entry(r.kind)
                .or_default()
                .entry(r.namespace())
                .or_default()
                .push(r);
        }
        let root_ns = util::root_namespace(mesh).to_string();
        Context {
            by_kind,
            by_name,
            by_namespace,
            mesh,
            root_ns,
            mesh_networks: None,
        }
    }

    /// Adds the mesh networks to analyze (istioctl reads them from the `meshNetworks` key of
    /// the cluster's `istio` ConfigMap; without them, as with istioctl on files, the mesh has
    /// no networks).
    pub fn with_mesh_networks(mut self, networks: &'a MeshNetworks) -> Self {
        self.mesh_networks = Some(networks);
        self
    }

    /// The mesh networks given with [`Context::with_mesh_networks`], if any.
    pub fn mesh_networks(&self) -> Option<&'a MeshNetworks> {
        self.mesh_networks
    }

    /// Every resource of `kind`, in input order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &'a Resource> + '_ {
        self.by_kind
            .get(&kind)
            .into_iter()
            .flat_map(|v| v.iter().copied())
    }

    /// Every resource of `kind` in `namespace`, in input order.
    pub fn of_kind_in(
        &self,
        kind: Kind,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Resource> + '_ {
        let found: &[&'a Resource] = self
            .by_namespace
            .get(&kind)
            .and_then(|m| m.get(namespace))
            .map_or(&[], Vec::as_slice);
        found.iter().copied()
    }

    /// The resource of `kind` named `name` in `namespace`, if present.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&'a Resource> {
        let m = self.by_name.get(&kind)?;
        // Keys borrow from the resources; look up by comparing without building a key.
        m.get(&(namespace, name) as &(&str, &str)).copied()
    }

    /// The Namespace resource called `name`, if it is among the inputs.
    pub fn namespace(&self, name: &str) -> Option<&'a Resource> {
        self.get(Kind::Namespace, "", name)
    }

    /// The mesh root namespace (MeshConfig `rootNamespace`, default `istio-system`).
    pub fn root_namespace(&self) -> &str {
        &self.root_ns
    }
}

/// An analyzer: reads resources, reports messages.
pub trait Analyzer: Sync {
    /// Istio's name for the analyzer (`virtualservice.DestinationHostAnalyzer`).
    fn name(&self) -> &'static str;
    /// One line on what it checks (for `--list-analyzers`).
    fn description(&self) -> &'static str;
    /// Runs the analysis, appending findings to `out`.
    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>);
}

/// Every analyzer weft runs, in the order they run.
pub static ANALYZERS: &[&dyn Analyzer] = &[
    // Each analyzer file adds its line here.
    &authz_authorization_policies::AuthorizationPoliciesAnalyzer,
    &authn_blocked_cidrs::BlockedCidrsAnalyzer,
    &annotations_k8s::K8sAnalyzer,
    &conditions_condition::ConditionAnalyzer,
    &deployment_application_uid::ApplicationUidAnalyzer,
    &deployment_service_association::ServiceAssociationAnalyzer,
    &deprecation_field::FieldAnalyzer,
    &externalcontrolplane_external_control_plane::ExternalControlPlaneAnalyzer,
    &injection_analyzer::InjectionAnalyzer,
    &injection_image::ImageAnalyzer,
    &injection_image_auto::ImageAutoAnalyzer,
    &multicluster_mesh_networks::MeshNetworksAnalyzer,
    &maturity_alpha::AlphaAnalyzer,
    &service_port_name::PortNameAnalyzer,
    &webhook_analyzer::WebhookAnalyzer,
    &gateway_ingress_gateway_port::IngressGatewayPortAnalyzer,
    &gateway_certificate::CertificateAnalyzer,
    &gateway_secret::SecretAnalyzer,
    &gateway_conflicting_gateway::ConflictingGatewayAnalyzer,
    &sidecar_selector::SelectorAnalyzer,
    &virtualservice_conflicting_mesh_gateway_hosts::ConflictingMeshGatewayHostsAnalyzer,
    &virtualservice_destination_host::DestinationHostAnalyzer,
    &virtualservice_destination_rule::DestinationRuleAnalyzer,
    &virtualservice_gateway::GatewayAnalyzer,
    &virtualservice_jwt_claim_route::JwtClaimRouteAnalyzer,
    &schema_validation::VIRTUAL_SERVICE,
    &schema_validation::DESTINATION_RULE,
    &schema_validation::GATEWAY,
    &schema_validation::SERVICE_ENTRY,
    &schema_validation::WORKLOAD_ENTRY,
    &schema_validation::WORKLOAD_GROUP,
    &schema_validation::SIDECAR,
    &schema_validation::ENVOY_FILTER,
    &schema_validation::PROXY_CONFIG,
    &schema_validation::PEER_AUTHENTICATION,
    &schema_validation::REQUEST_AUTHENTICATION,
    &schema_validation::AUTHORIZATION_POLICY,
    &schema_validation::TELEMETRY,
    &schema_validation::WASM_PLUGIN,
    &destinationrule_ca_certificates::CaCertificateAnalyzer,
    &destinationrule_pod_not_selected::PodNotSelectedAnalyzer,
    &serviceentry_protocol_addresses::ProtocolAddressesAnalyzer,
    &serviceentry_conflicting_protocol::ConflictingServiceEntryProtocolAnalyzer,
    &envoyfilter_patch::EnvoyPatchAnalyzer,
    &k8sgateway_selector::K8sGatewaySelectorAnalyzer,
    &telemetry_default_selector::TelemetryDefaultSelectorAnalyzer,
    &telemetry_provider::TelemetryProviderAnalyzer,
    &telemetry_selector::TelemetrySelectorAnalyzer,
    &telemetry_lightstep::LightstepAnalyzer,
];

/// Runs `analyzers` (all of [`ANALYZERS`] when `None`) over `resources` and returns the
/// messages sorted as istioctl prints them. The Istio control plane is taken to be in
/// `istio-system`; see [`analyze_in`].
pub fn analyze(resources: &[Resource], mesh: &MeshConfig, only: Option<&[&str]>) -> Vec<Message> {
    analyze_in(resources, mesh, only, util::ISTIO_SYSTEM_NAMESPACE)
}

/// As [`analyze`], with the Istio control plane in `istio_namespace` (`--istioNamespace`).
/// Like istioctl analyzing files, every analyzer also sees the placeholder ingress gateway
/// Pod and Service of [`default_resources`].
pub fn analyze_in(
    resources: &[Resource],
    mesh: &MeshConfig,
    only: Option<&[&str]>,
    istio_namespace: &str,
) -> Vec<Message> {
    let defaults = default_resources(mesh, istio_namespace);
    let ctx = Context::index(resources.iter().chain(&defaults), mesh);
    analyze_context(&ctx, only)
}

/// Runs `analyzers` (all of [`ANALYZERS`] when `None`) over a prepared [`Context`] (for inputs
/// beyond resources and MeshConfig, such as [`Context::with_mesh_networks`]) and returns the
/// messages sorted as istioctl prints them.
pub fn analyze_context(ctx: &Context<'_>, only: Option<&[&str]>) -> Vec<Message> {
    let mut out = Vec::new();
    for a in ANALYZERS {
        if only.is_some_and(|names| !names.contains(&a.name())) {
            continue;
        }
        a.analyze(ctx, &mut out);
    }
    sort_messages(&mut out);
    // istioctl reports each distinct message once (analyzers may find the same problem
    // through several paths, e.g. one webhook overlap per label permutation).
    out.dedup();
    out
}

/// istioctl's stand-ins for the ingress gateway when it analyzes files only
/// (`AddDefaultResources`): a Pod `<ingressService>-dummypod` and a Service `<ingressService>`
/// (ports 80, 443, 31400, 15443) selecting `istio: ingressgateway` in `istio_namespace`, so that
/// Gateways selecting the default ingress do not look orphaned. None when MeshConfig turns the
/// ingress controller off (`ingressControllerMode: OFF`).
pub fn default_resources(mesh: &MeshConfig, istio_namespace: &str) -> Vec<Resource> {
    if mesh.ingress_controller_mode == Some(IngressControllerMode::Off) {
        return Vec::new();
    }
    let service = if mesh.ingress_service.is_empty() {
        "istio-ingressgateway"
    } else {
        mesh.ingress_service.as_str()
    };
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  labels:
    istio: ingressgateway
  name: {service}-dummypod
  namespace: {istio_namespace}
spec:
  containers:
    - name: istio-proxy
---
apiVersion: v1
kind: Service
metadata:
  name: {service}
  namespace: {istio_namespace}
spec:
  ports:
  - name: http2
    nodePort: 31380
    port: 80
    protocol: TCP
    targetPort: 80
  - name: https
    nodePort: 31390
    port: 443
    protocol: TCP
    targetPort: 443
  - name: tcp
    nodePort: 31400
    port: 31400
    protocol: TCP
    targetPort: 31400
  - name: tls
    nodePort: 31447
    port: 15443
    protocol: TCP
    targetPort: 15443
  selector:
    istio: ingressgateway
"#
    );
    crate::document::parse_str(&yaml, "internal-ingress").resources
}

/// istioctl's order: by origin, then code, then text.
pub fn sort_messages(msgs: &mut [Message]) {
    msgs.sort_by(|a, b| {
        a.origin
            .cmp(&b.origin)
            .then_with(|| a.ty.code.cmp(b.ty.code))
            .then_with(|| a.text().cmp(&b.text()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_go_verbs() {
        let t = "Referenced %s not found: %q (%d, %v) 100%%";
        let s = format_template(
            t,
            &[
                "host".into(),
                "a\"b".into(),
                Arg::Int(3),
                Arg::StrList(vec!["x".into(), "y".into()]),
            ],
        );
        assert_eq!(s, "Referenced host not found: \"a\\\"b\" (3, [x y]) 100%");
    }

    #[test]
    fn missing_args_are_visible() {
        assert_eq!(
            format_template("%s and %s", &["a".into()]),
            "a and %!s(MISSING)"
        );
    }
}
