//! `MeshNetworks` (the `meshNetworks` key of the `istio` ConfigMap): the networks of a
//! multi-network mesh and their gateways, with Istio's `ValidateMeshNetworks` rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::addresses::{validate_ip_address, validate_ip_subnet};
use crate::validate::hosts::{is_k8s_dns1123_label, validate_fqdn};
use crate::validate::ports::validate_port;
use crate::validate::{Path, Report};

/// The networks of the mesh, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshNetworks {
    /// Network name to network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Network>,
}

/// One network: which endpoints belong to it and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// Endpoints of the network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<NetworkEndpoints>,
    /// Gateways into the network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<IstioNetworkGateway>,
}

/// Endpoints of a network: a CIDR or a registry (oneof).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkEndpoints {
    /// Endpoints in this CIDR block.
    #[serde(default, alias = "from_cidr", skip_serializing_if = "Option::is_none")]
    pub from_cidr: Option<String>,
    /// Endpoints of this registry (cluster ID).
    #[serde(
        default,
        alias = "from_registry",
        skip_serializing_if = "Option::is_none"
    )]
    pub from_registry: Option<String>,
}

/// A gateway into a network: a registry service or an address (oneof).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioNetworkGateway {
    /// Fully qualified name of the gateway service.
    #[serde(
        default,
        alias = "registry_service_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub registry_service_name: Option<String>,
    /// IP address (or host name) of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Gateway port.
    #[serde(default)]
    pub port: u32,
    /// Gateway locality.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
}

impl MeshNetworks {
    /// Istio's `ValidateMeshNetworks`.
    pub fn validate_at(&self, path: &Path, report: &mut Report) {
        let nets = path.field("networks");
        for (name, n) in &self.networks {
            let np = nets.key(name);
            for (i, e) in n.endpoints.iter().enumerate() {
                let ep = np.field("endpoints").index(i);
                match (&e.from_cidr, &e.from_registry) {
                    (Some(_), Some(_)) => {
                        report.error(&ep, "only one of fromCidr or fromRegistry may be set")
                    }
                    (Some(c), None) => {
                        if let Err(e) = validate_ip_subnet(c) {
                            report.error(&ep.field("fromCidr"), e);
                        }
                    }
                    (None, Some(r)) => {
                        // weft keeps Kubernetes' lower-case rule for registry names (Istio's
                        // label rule would also accept upper case).
                        if !is_k8s_dns1123_label(r) {
                            report.error(
                                &ep.field("fromRegistry"),
                                format!("invalid registry name: {r}"),
                            );
                        }
                    }
                    (None, None) => {}
                }
            }
            for (i, g) in n.gateways.iter().enumerate() {
                let gp = np.field("gateways").index(i);
                match (&g.registry_service_name, &g.address) {
                    (Some(_), Some(_)) => {
                        report.error(&gp, "only one of registryServiceName or address may be set")
                    }
                    (Some(s), None) => {
                        if let Err(e) = validate_fqdn(s) {
                            report.error(&gp.field("registryServiceName"), e);
                        }
                    }
                    (None, Some(a)) => {
                        if validate_ip_address(a).is_err() && validate_fqdn(a).is_err() {
                            report.error(
                                &gp.field("address"),
                                format!("{a} is not a valid IP or host name"),
                            );
                        }
                    }
                    (None, None) => {}
                }
                if let Err(e) = validate_port(i64::from(g.port)) {
                    report.error(&gp.field("port"), e);
                }
            }
        }
    }
}
