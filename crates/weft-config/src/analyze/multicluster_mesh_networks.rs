//! `multicluster.MeshNetworksAnalyzer` (istioctl names it `meshnetworks.MeshNetworksAnalyzer`):
//! a mesh network's `fromRegistry` must name a service registry Istio knows.
//!
//! Follows Istio's `pkg/config/analysis/analyzers/multicluster/meshnetworks.go`. The known
//! registries are Istio's built-in providers (`Mock`, `Kubernetes`, `External`) and the cluster
//! IDs of multicluster Secrets: every key of a Secret labelled `istio/multiCluster: "true"`
//! (the remote secrets `istioctl create-remote-secret` writes). Each endpoint whose
//! `fromRegistry` is none of them is reported as IST0126 on the synthetic resource
//! `MeshNetworks istio-system/meshnetworks`.
//!
//! MeshNetworks reach the analyzer through [`Context::with_mesh_networks`]. istioctl has no flag
//! for them: on a live cluster it reads the `meshNetworks` key of the `istio` ConfigMap, and on
//! files alone it uses Istio's default (no networks), where this analyzer finds nothing.
//! [`parse_mesh_networks`] reads either form, for callers that take the ConfigMap or a
//! MeshNetworks file.
//!
//! Deliberate difference: Istio reads only a Secret's `data`; weft also counts `stringData` keys,
//! which the API server merges into `data` when the Secret is applied (remote secrets are written
//! with `stringData`), so a file analysis sees the cluster IDs the cluster would.

use std::collections::BTreeSet;

use serde_json::Value;

use super::messages::UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY;
use super::{Analyzer, Context, Message};
use crate::mesh::MeshNetworks;
use crate::resource::{Kind, Resource, Spec};

/// Validates MeshNetworks' service registries in multi-cluster meshes.
pub struct MeshNetworksAnalyzer;

/// Registries Istio always knows (`provider.Mock`, `provider.Kubernetes`, `provider.External`).
const BUILTIN_REGISTRIES: &[&str] = &["Mock", "Kubernetes", "External"];

/// The label that marks a Secret as a remote cluster's credentials.
const MULTICLUSTER_SECRET_LABEL: &str = "istio/multiCluster";

/// Where Istio places the MeshNetworks it analyzes (`mesh.MeshNetworksResourceName`).
const MESH_NETWORKS_ORIGIN: &str = "MeshNetworks istio-system/meshnetworks";

/// The keys of a Secret as the cluster stores them (`data` plus `stringData`).
fn secret_keys(r: &Resource) -> Vec<&str> {
    let Spec::Secret(s) = &r.spec else {
        return Vec::new();
    };
    let data = s.data.iter().flat_map(|d| d.keys());
    let string_data = s.string_data.iter().flat_map(|d| d.keys());
    data.chain(string_data).map(String::as_str).collect()
}

/// The registries mesh networks may name: the built-in ones and the multicluster Secrets' keys.
fn known_registries<'a>(ctx: &Context<'a>) -> BTreeSet<&'a str> {
    let mut known: BTreeSet<&'a str> = BUILTIN_REGISTRIES.iter().copied().collect();
    for r in ctx.of_kind(Kind::Secret) {
        if r.metadata
            .labels
            .get(MULTICLUSTER_SECRET_LABEL)
            .is_some_and(|v| v == "true")
        {
            known.extend(secret_keys(r));
        }
    }
    known
}

impl Analyzer for MeshNetworksAnalyzer {
    fn name(&self) -> &'static str {
        "meshnetworks.MeshNetworksAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Check the validity of MeshNetworks in the cluster"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let Some(networks) = ctx.mesh_networks() else {
            return;
        };
        let known = known_registries(ctx);
        for (name, network) in &networks.networks {
            for (j, ep) in network.endpoints.iter().enumerate() {
                let Some(registry) = &ep.from_registry else {
                    continue;
                };
                if known.contains(registry.as_str()) {
                    continue;
                }
                out.push(Message {
                    ty: &UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY,
                    args: vec![registry.into(), name.into()],
                    origin: MESH_NETWORKS_ORIGIN.to_string(),
                    source: None,
                    reference: Some(format!("networks.{name}.endpoints[{j}].fromRegistry")),
                });
            }
        }
    }
}

/// Reads MeshNetworks from YAML: a bare MeshNetworks document (`networks: ...`) or Istio's
/// `istio` ConfigMap, whose `data.meshNetworks` holds it as a string. An empty document is a
/// mesh without networks.
pub fn parse_mesh_networks(text: &str) -> Result<MeshNetworks, String> {
    let v: Value = serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    if v.is_null() {
        return Ok(MeshNetworks::default());
    }
    if let Some(inner) = v.pointer("/data/meshNetworks") {
        let inner = inner
            .as_str()
            .ok_or("data.meshNetworks of the ConfigMap is not a string")?;
        return parse_mesh_networks(inner);
    }
    serde_json::from_value(v).map_err(|e| format!("invalid MeshNetworks: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{Context, analyze, analyze_context};
    use crate::mesh::MeshConfig;

    const NAME: &str = "meshnetworks.MeshNetworksAnalyzer";

    const NETWORKS: &str = r#"
networks:
  network1:
    endpoints:
    - fromRegistry: Kubernetes
    - fromCidr: 10.0.0.0/16
    gateways:
    - address: 192.168.0.1
      port: 15443
  network2:
    endpoints:
    - fromRegistry: cluster-east
    - fromRegistry: cluster-west
    gateways:
    - registryServiceName: istio-ingressgateway.istio-system.svc.cluster.local
      port: 15443
  network3:
    endpoints:
    - fromRegistry: External
"#;

    const REMOTE_SECRETS: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: istio-remote-secret-east
  namespace: istio-system
  labels: {istio/multiCluster: "true"}
data:
  cluster-east: a3ViZWNvbmZpZw==
---
apiVersion: v1
kind: Secret
metadata:
  name: not-a-remote-secret
  namespace: istio-system
  labels: {istio/multiCluster: "false"}
data:
  cluster-west: a3ViZWNvbmZpZw==
"#;

    fn run(yaml: &str, networks: &str) -> Vec<String> {
        let parsed = crate::parse_str(yaml, "secrets.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let mesh = MeshConfig::default();
        let networks = parse_mesh_networks(networks).expect("mesh networks parse");
        let ctx = Context::new(&parsed.resources, &mesh).with_mesh_networks(&networks);
        analyze_context(&ctx, Some(&[NAME]))
            .iter()
            .map(|m| m.to_string())
            .collect()
    }

    #[test]
    fn unknown_registries_are_reported() {
        assert_eq!(
            run(REMOTE_SECRETS, NETWORKS),
            vec![
                "Error [IST0126] (MeshNetworks istio-system/meshnetworks) Unknown service \
                 registry cluster-west in network network2"
            ]
        );
        // Without any remote secret both clusters are unknown.
        assert_eq!(run("", NETWORKS).len(), 2);
    }

    #[test]
    fn string_data_keys_name_clusters_too() {
        let yaml = r#"
apiVersion: v1
kind: Secret
metadata:
  name: istio-remote-secret-west
  namespace: istio-system
  labels: {istio/multiCluster: "true"}
stringData:
  cluster-west: "apiVersion: v1\nkind: Config\n"
"#;
        let msgs = run(&format!("{REMOTE_SECRETS}---{yaml}"), NETWORKS);
        assert!(msgs.is_empty(), "{msgs:?}");
    }

    #[test]
    fn no_mesh_networks_no_messages() {
        // istioctl on files uses empty default MeshNetworks; so does `analyze`.
        let parsed = crate::parse_str(REMOTE_SECRETS, "secrets.yaml");
        assert!(analyze(&parsed.resources, &MeshConfig::default(), Some(&[NAME])).is_empty());
        assert!(run("", "").is_empty());
    }

    #[test]
    fn parses_the_istio_config_map() {
        let cm = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    rootNamespace: istio-system
  meshNetworks: |
    networks:
      net1:
        endpoints:
        - fromRegistry: remote1
"#;
        let n = parse_mesh_networks(cm).expect("config map parses");
        assert_eq!(
            n.networks["net1"].endpoints[0].from_registry.as_deref(),
            Some("remote1")
        );
        assert!(parse_mesh_networks("networks: {a: {bogus: 1}}").is_err());
        assert!(parse_mesh_networks("data: {meshNetworks: 3}").is_err());
    }
}
