//! Istio's resource annotations (`istio.io/api` `annotation` package): which kinds each one
//! applies to, its feature maturity, and whether it is deprecated or internal. Read by the
//! `annotations.K8sAnalyzer` and `maturity.AlphaAnalyzer` analyzers.

/// Feature maturity of an annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureStatus {
    Alpha,
    Beta,
    Stable,
}

/// One Istio annotation.
#[derive(Debug)]
pub struct AnnotationDef {
    /// The annotation key (`sidecar.istio.io/inject`).
    pub name: &'static str,
    pub status: FeatureStatus,
    /// Still honoured but scheduled for removal.
    pub deprecated: bool,
    /// Set by Istio itself rather than by users; not documented for users.
    pub hidden: bool,
    /// Kinds the annotation may be put on (`Any` for every kind).
    pub resources: &'static [&'static str],
}

use FeatureStatus::{Alpha, Beta, Stable};

const fn def(
    name: &'static str,
    status: FeatureStatus,
    deprecated: bool,
    hidden: bool,
    resources: &'static [&'static str],
) -> AnnotationDef {
    AnnotationDef {
        name,
        status,
        deprecated,
        hidden,
        resources,
    }
}

const POD: &[&str] = &["Pod"];
const SERVICE: &[&str] = &["Service"];
const ANY: &[&str] = &["Any"];
const WORKLOAD_ENTRY: &[&str] = &["WorkloadEntry"];
const GATEWAY: &[&str] = &["Gateway"];

/// Every annotation Istio defines.
pub static ANNOTATIONS: &[AnnotationDef] = &[
    def(
        "alpha.istio.io/canonical-serviceaccounts",
        Alpha,
        true,
        true,
        SERVICE,
    ),
    def("alpha.istio.io/identity", Alpha, true, true, POD),
    def(
        "alpha.istio.io/kubernetes-serviceaccounts",
        Alpha,
        true,
        true,
        SERVICE,
    ),
    def(
        "ambient.istio.io/bypass-inbound-capture",
        Alpha,
        false,
        false,
        POD,
    ),
    def("ambient.istio.io/dns-capture", Beta, false, false, POD),
    def("ambient.istio.io/redirection", Beta, false, false, POD),
    def(
        "ambient.istio.io/waypoint-inbound-binding",
        Alpha,
        false,
        false,
        &["GatewayClass"],
    ),
    def("galley.istio.io/analyze-suppress", Alpha, false, false, ANY),
    def(
        "gateway.istio.io/controller-version",
        Alpha,
        false,
        true,
        ANY,
    ),
    def(
        "gateway.istio.io/service-account",
        Alpha,
        false,
        false,
        GATEWAY,
    ),
    def(
        "gateway.istio.io/name-override",
        Alpha,
        false,
        false,
        GATEWAY,
    ),
    def("inject.istio.io/templates", Alpha, false, false, POD),
    def(
        "install.operator.istio.io/chart-owner",
        Alpha,
        false,
        false,
        ANY,
    ),
    def(
        "install.operator.istio.io/owner-generation",
        Alpha,
        false,
        false,
        ANY,
    ),
    def(
        "install.operator.istio.io/version",
        Alpha,
        false,
        false,
        ANY,
    ),
    def(
        "istio.io/autoRegistrationGroup",
        Alpha,
        false,
        true,
        WORKLOAD_ENTRY,
    ),
    def("istio.io/connectedAt", Alpha, false, true, WORKLOAD_ENTRY),
    def(
        "istio.io/disconnectedAt",
        Alpha,
        false,
        true,
        WORKLOAD_ENTRY,
    ),
    def(
        "istio.io/dry-run",
        Alpha,
        false,
        false,
        &["AuthorizationPolicy"],
    ),
    def("istio.io/rev", Alpha, false, true, POD),
    def(
        "istio.io/workloadController",
        Alpha,
        false,
        true,
        WORKLOAD_ENTRY,
    ),
    def(
        "kubernetes.io/ingress.class",
        Stable,
        false,
        false,
        &["Ingress"],
    ),
    def(
        "networking.istio.io/address-type",
        Alpha,
        false,
        false,
        GATEWAY,
    ),
    def("networking.istio.io/exportTo", Alpha, false, false, SERVICE),
    def(
        "networking.istio.io/service-type",
        Alpha,
        false,
        false,
        GATEWAY,
    ),
    def(
        "networking.istio.io/traffic-distribution",
        Beta,
        false,
        false,
        SERVICE,
    ),
    def(
        "prometheus.istio.io/merge-metrics",
        Alpha,
        false,
        false,
        POD,
    ),
    def("proxy.istio.io/config", Beta, false, false, POD),
    def("proxy.istio.io/overrides", Alpha, false, true, POD),
    def(
        "readiness.status.sidecar.istio.io/applicationPorts",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "readiness.status.sidecar.istio.io/failureThreshold",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "readiness.status.sidecar.istio.io/initialDelaySeconds",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "readiness.status.sidecar.istio.io/periodSeconds",
        Alpha,
        false,
        false,
        POD,
    ),
    def("sidecar.istio.io/agentLogLevel", Alpha, false, false, POD),
    def(
        "sidecar.istio.io/bootstrapOverride",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/componentLogLevel",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/controlPlaneAuthPolicy",
        Alpha,
        true,
        false,
        POD,
    ),
    def("sidecar.istio.io/discoveryAddress", Alpha, true, false, POD),
    def("sidecar.istio.io/enableCoreDump", Alpha, false, false, POD),
    def("sidecar.istio.io/extraStatTags", Alpha, false, false, POD),
    def("sidecar.istio.io/inject", Beta, true, false, POD),
    def(
        "sidecar.istio.io/interceptionMode",
        Alpha,
        false,
        false,
        POD,
    ),
    def("sidecar.istio.io/logLevel", Alpha, false, false, POD),
    def("sidecar.istio.io/nativeSidecar", Alpha, false, false, POD),
    def("sidecar.istio.io/proxyCPU", Alpha, false, false, POD),
    def("sidecar.istio.io/proxyCPULimit", Alpha, false, false, POD),
    def("sidecar.istio.io/proxyImage", Alpha, false, false, POD),
    def("sidecar.istio.io/proxyImageType", Alpha, false, false, POD),
    def("sidecar.istio.io/proxyMemory", Alpha, false, false, POD),
    def(
        "sidecar.istio.io/proxyMemoryLimit",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/rewriteAppHTTPProbers",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/statsCompression",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/statsFlushInterval",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/statsHistogramBuckets",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/statsInclusionPrefixes",
        Alpha,
        true,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/statsInclusionRegexps",
        Alpha,
        true,
        false,
        POD,
    ),
    def(
        "sidecar.istio.io/statsInclusionSuffixes",
        Alpha,
        true,
        false,
        POD,
    ),
    def("sidecar.istio.io/status", Alpha, false, false, POD),
    def("sidecar.istio.io/userVolume", Alpha, false, false, POD),
    def("sidecar.istio.io/userVolumeMount", Alpha, false, false, POD),
    def("status.sidecar.istio.io/port", Alpha, false, false, POD),
    def(
        "topology.istio.io/controlPlaneClusters",
        Alpha,
        false,
        false,
        ANY,
    ),
    def(
        "traffic.istio.io/nodeSelector",
        Alpha,
        false,
        false,
        SERVICE,
    ),
    def(
        "traffic.sidecar.istio.io/excludeInboundPorts",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "traffic.sidecar.istio.io/excludeInterfaces",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "traffic.sidecar.istio.io/includeInboundPorts",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "traffic.sidecar.istio.io/includeOutboundPorts",
        Alpha,
        false,
        false,
        POD,
    ),
    def(
        "traffic.sidecar.istio.io/kubevirtInterfaces",
        Alpha,
        false,
        false,
        POD,
    ),
];

/// The definition of annotation `name`, if Istio defines it.
pub fn lookup(name: &str) -> Option<&'static AnnotationDef> {
    ANNOTATIONS.iter().find(|a| a.name == name)
}

/// Whether an annotation key is in Istio's namespace (its prefix ends in `istio.io`), or is the
/// one Kubernetes annotation Istio documents (`kubernetes.io/ingress.class`).
pub fn is_istio_annotation(key: &str) -> bool {
    if key == "kubernetes.io/ingress.class" {
        return true;
    }
    key.split('/')
        .next()
        .is_some_and(|p| p.ends_with("istio.io"))
}

/// Checks the value of annotations whose format Istio's injector validates; `Err` says what is
/// wrong.
pub fn validate_value(name: &str, value: &str) -> Result<(), String> {
    fn uint(value: &str) -> Result<(), String> {
        value
            .trim()
            .parse::<u32>()
            .map(|_| ())
            .map_err(|_| format!("{value:?} is not a valid non-negative integer"))
    }
    fn port(value: &str) -> Result<(), String> {
        match value.trim().parse::<u32>() {
            Ok(p) if p <= 65535 => Ok(()),
            _ => Err(format!("{value:?} is not a valid port (0-65535)")),
        }
    }
    fn port_list(value: &str) -> Result<(), String> {
        if value.trim() == "*" || value.trim().is_empty() {
            return Ok(());
        }
        for p in value.split(',') {
            match p.trim().parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => {}
                _ => return Err(format!("port {:?} is not in the range 1-65535", p.trim())),
            }
        }
        Ok(())
    }
    fn cidr_list(value: &str) -> Result<(), String> {
        if value.trim() == "*" || value.trim().is_empty() {
            return Ok(());
        }
        for c in value.split(',') {
            let c = c.trim();
            if c.parse::<ipnet::IpNet>().is_err() && c.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("{c:?} is not a valid CIDR range"));
            }
        }
        Ok(())
    }
    match name {
        "readiness.status.sidecar.istio.io/initialDelaySeconds"
        | "readiness.status.sidecar.istio.io/periodSeconds"
        | "readiness.status.sidecar.istio.io/failureThreshold" => uint(value),
        "status.sidecar.istio.io/port" => port(value),
        "readiness.status.sidecar.istio.io/applicationPorts"
        | "traffic.sidecar.istio.io/includeInboundPorts"
        | "traffic.sidecar.istio.io/excludeInboundPorts"
        | "traffic.sidecar.istio.io/includeOutboundPorts"
        | "traffic.sidecar.istio.io/excludeOutboundPorts" => port_list(value),
        "traffic.sidecar.istio.io/includeOutboundIPRanges"
        | "traffic.sidecar.istio.io/excludeOutboundIPRanges" => cidr_list(value),
        "sidecar.istio.io/interceptionMode" => match value {
            "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
            _ => Err(format!(
                "{value:?} is not a valid interception mode (REDIRECT, TPROXY or NONE)"
            )),
        },
        "proxy.istio.io/config" => serde_norway::from_str::<serde_json::Value>(value)
            .map(|_| ())
            .map_err(|e| format!("not valid YAML: {e}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_unique() {
        let mut names: Vec<&str> = ANNOTATIONS.iter().map(|a| a.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn values_are_checked() {
        assert!(
            validate_value(
                "readiness.status.sidecar.istio.io/initialDelaySeconds",
                "bar"
            )
            .is_err()
        );
        assert!(validate_value("readiness.status.sidecar.istio.io/periodSeconds", "10").is_ok());
        assert!(validate_value("traffic.sidecar.istio.io/excludeInboundPorts", "15020,80").is_ok());
        assert!(validate_value("traffic.sidecar.istio.io/excludeInboundPorts", "0").is_err());
        assert!(validate_value("traffic.sidecar.istio.io/includeOutboundIPRanges", "*").is_ok());
        assert!(
            validate_value(
                "traffic.sidecar.istio.io/includeOutboundIPRanges",
                "10.0.0.0/8,x"
            )
            .is_err()
        );
        assert!(validate_value("sidecar.istio.io/interceptionMode", "TPROXY").is_ok());
        assert!(is_istio_annotation("sidecar.istio.io/inject"));
        assert!(is_istio_annotation("istio.io/rev"));
        assert!(!is_istio_annotation("helm.sh/hook"));
    }
}
