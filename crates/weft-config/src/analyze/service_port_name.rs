//! `service.PortNameAnalyzer`: Istio picks a Service port's protocol from its `appProtocol` or
//! from its name (`<protocol>[-<suffix>]`); ports whose protocol cannot be told are reported.

use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::messages::{
    EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME, PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
};
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Spec};

/// Reports Service ports whose protocol Istio cannot determine.
pub struct PortNameAnalyzer;

/// Whether `name` is one of the protocol names Istio understands.
fn is_known_protocol(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "tcp"
            | "udp"
            | "sctp"
            | "grpc"
            | "grpc-web"
            | "http"
            | "http_proxy"
            | "http2"
            | "https"
            | "tls"
            | "mongo"
            | "redis"
            | "mysql"
            | "hbone"
    )
}

/// Whether Istio can determine the protocol of `port` (its `ConvertProtocol` returns a
/// supported protocol).
pub fn port_protocol_supported(port: &ServicePort) -> bool {
    match port.protocol.as_deref() {
        Some("UDP") | Some("SCTP") => return true,
        _ => {}
    }
    let mut name = port.name.as_deref().unwrap_or("");
    if let Some(app) = port.app_protocol.as_deref() {
        if matches!(
            app,
            "kubernetes.io/h2c" | "kubernetes.io/ws" | "kubernetes.io/wss"
        ) {
            return true;
        }
        name = app;
    }
    if name.to_ascii_lowercase().starts_with("grpc-web") {
        return true;
    }
    let prefix = name.split('-').next().unwrap_or("");
    is_known_protocol(prefix)
}

fn target_port_string(p: &ServicePort) -> String {
    match &p.target_port {
        Some(IntOrString::Int(i)) => i.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => "0".to_string(),
    }
}

impl Analyzer for PortNameAnalyzer {
    fn name(&self) -> &'static str {
        "service.PortNameAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the port names associated with each service"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for r in ctx.of_kind(Kind::Service) {
            if util::is_system_namespace(r.namespace()) || util::is_istio_control_plane(r) {
                continue;
            }
            let Spec::Service(svc) = &r.spec else {
                continue;
            };
            let Some(spec) = &svc.spec else {
                continue;
            };
            let external_name = spec.type_.as_deref() == Some("ExternalName");
            for (i, port) in spec.ports.iter().flatten().enumerate() {
                let name = port.name.as_deref().unwrap_or("");
                if port_protocol_supported(port) && !(name == "tcp" && external_name) {
                    continue;
                }
                let m = if external_name {
                    Message::new(&EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME, r, vec![])
                } else {
                    Message::new(
                        &PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
                        r,
                        vec![
                            name.into(),
                            port.port.into(),
                            target_port_string(port).into(),
                        ],
                    )
                };
                out.push(m.at(format!("spec.ports[{i}]")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, app: Option<&str>, proto: Option<&str>) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            app_protocol: app.map(Into::into),
            protocol: proto.map(Into::into),
            port: 80,
            ..Default::default()
        }
    }

    #[test]
    fn protocols_from_names() {
        assert!(port_protocol_supported(&port("http", None, None)));
        assert!(port_protocol_supported(&port("http-web", None, None)));
        assert!(port_protocol_supported(&port("grpc-web-x", None, None)));
        assert!(port_protocol_supported(&port("foo", Some("http"), None)));
        assert!(port_protocol_supported(&port("foo", None, Some("UDP"))));
        assert!(!port_protocol_supported(&port("foo", None, None)));
        assert!(!port_protocol_supported(&port("", None, Some("TCP"))));
        assert!(!port_protocol_supported(&port("http", Some("bogus"), None)));
    }
}
