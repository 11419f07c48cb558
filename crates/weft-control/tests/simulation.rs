//! Istio's simulation expectations (`conformance/istio/simulation`) run against weft's
//! translation and simulator: every case's config is parsed, translated for its proxy, and
//! every call simulated and compared on the fields the case asserts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use weft_control::model::{
    Environment, MeshSettings, NodeMetadata, OutboundMode, Proxy, ProxyKind,
};
use weft_control::simulate::{Call, CallMode, CallProtocol, CallTls, Outcome, simulate};
use weft_control::translate::{self, Resources};

/// Calls (across the four call files) that must pass. Raise it as translation improves; it
/// is the real count reached, so a regression fails the test.
const CALL_PASS_FLOOR: usize = 210;
/// `sidecar_routes.json` cases that must pass.
const ROUTE_CASE_PASS_FLOOR: usize = 18;

const CALL_FILES: &[&str] = &[
    "sidecar.json",
    "gateway.json",
    "serviceentry.json",
    "peerauthentication.json",
];

fn simulation_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("WEFT_CONFORMANCE_DIR") {
        return PathBuf::from(dir).join("simulation");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("../shared/conformance/istio/simulation")
}

fn load(file: &str) -> Vec<Value> {
    load_from(&simulation_dir(), file)
}

fn load_from(dir: &std::path::Path, file: &str) -> Vec<Value> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (set WEFT_CONFORMANCE_DIR)",
            path.display()
        )
    });
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v.as_array().cloned().unwrap_or_default()
}

fn mesh_settings(mesh: &Value) -> MeshSettings {
    // Istio's test harness leaves the config domain empty: short hosts become `name.ns`.
    let mut s = MeshSettings {
        config_domain: String::new(),
        ..MeshSettings::default()
    };
    let Some(text) = mesh.as_str() else {
        return s;
    };
    let overlay: Value = serde_norway::from_str(text).expect("mesh overlay is YAML");
    let mode = overlay
        .pointer("/outboundTrafficPolicy/mode")
        .and_then(Value::as_str);
    if mode == Some("ALLOW_ANY_DYNAMIC_DNS") {
        // weft-config's MeshConfig does not know this mode yet.
        s.outbound_mode = OutboundMode::AllowAnyDynamicDns;
        return s;
    }
    let mc =
        weft_config::document::parse_mesh_config(text, "mesh.yaml").expect("mesh overlay parses");
    let parsed = MeshSettings::from_mesh_config(&mc);
    s.outbound_mode = parsed.outbound_mode;
    s.root_namespace = parsed.root_namespace;
    s
}

fn proxy(p: &Value) -> Proxy {
    let str_of = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let labels: BTreeMap<String, String> = p
        .get("labels")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Proxy {
        kind: if str_of("type") == "router" {
            ProxyKind::Router
        } else {
            ProxyKind::Sidecar
        },
        id: str_of("id"),
        ip_addresses: p
            .get("ips")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        config_namespace: str_of("namespace"),
        dns_domain: str_of("dns_domain"),
        labels,
        metadata: NodeMetadata::from_json(p.get("metadata").unwrap_or(&Value::Null)),
    }
}

fn setup(case: &Value) -> (Environment, Proxy, Vec<String>) {
    let config = case.get("config").and_then(Value::as_str).unwrap_or("");
    let parsed = weft_config::parse_str(config, "case.yaml");
    let diags: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    let mut env = Environment::from_resources(
        &parsed.resources,
        mesh_settings(case.get("mesh").unwrap_or(&Value::Null)),
    );
    // weft-config does not read `networking.k8s.io` Ingress yet; hand those documents to the
    // model's Ingress conversion directly.
    let ingresses: Vec<k8s_openapi::api::networking::v1::Ingress> = config
        .split("\n---\n")
        .filter_map(|doc| serde_norway::from_str::<Value>(doc).ok())
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("Ingress"))
        .map(|v| serde_json::from_value(v).expect("Ingress document"))
        .collect();
    env.add_ingresses(&ingresses);
    let diags = diags
        .into_iter()
        .filter(|d: &String| ingresses.is_empty() || !d.contains("unknown kind \"Ingress\""))
        .collect();
    (env, proxy(&case["proxy"]), diags)
}

fn call(c: &Value) -> Call {
    let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
    Call {
        mode: if s("mode").as_deref() == Some("inbound") {
            CallMode::Inbound
        } else {
            CallMode::Outbound
        },
        address: s("address").unwrap_or_else(|| "1.3.3.7".to_string()),
        port: c.get("port").and_then(Value::as_u64).unwrap_or(0) as u32,
        protocol: match s("protocol").as_deref() {
            Some("http") => CallProtocol::Http,
            Some("http2") => CallProtocol::Http2,
            _ => CallProtocol::Tcp,
        },
        tls: match s("tls").as_deref() {
            Some("tls") => CallTls::Tls,
            Some("mtls") => CallTls::Mtls,
            _ => CallTls::Plaintext,
        },
        alpn: s("alpn"),
        sni: s("sni"),
        host: s("host"),
        path: s("path").unwrap_or_else(|| "/".to_string()),
        mtls_secret_config_name: s("mtls_secret_config_name"),
    }
}

fn field<'a>(o: &'a Outcome, name: &str) -> &'a str {
    match name {
        "listener" => &o.listener,
        "filter_chain" => &o.filter_chain,
        "route_config" => &o.route_config,
        "virtual_host" => &o.virtual_host,
        "route" => &o.route,
        "cluster" => &o.cluster,
        _ => "",
    }
}

/// Compares one call; returns the mismatches.
fn check(res: &Resources, c: &Value) -> Vec<String> {
    let expect = &c["expect"];
    let got = simulate(res, &call(c));
    let (outcome, error) = match &got {
        Ok(o) => (o.clone(), None),
        Err(e) => ((*e.reached).clone(), Some(e.kind.to_string())),
    };
    let mut bad = Vec::new();
    for f in [
        "listener",
        "filter_chain",
        "route_config",
        "virtual_host",
        "route",
        "cluster",
    ] {
        if let Some(want) = expect.get(f).and_then(Value::as_str)
            && field(&outcome, f) != want
        {
            bad.push(format!("{f}: want {want:?}, got {:?}", field(&outcome, f)));
        }
    }
    let want_error = expect.get("error").and_then(Value::as_str);
    if want_error != error.as_deref() {
        bad.push(format!("error: want {want_error:?}, got {error:?}"));
    }
    bad
}

/// Runs every call of the files in `dir`; returns (passing calls, calls, failure lines).
fn run_call_files(dir: &std::path::Path, files: &[&str]) -> (usize, usize, Vec<String>) {
    let mut total_pass = 0;
    let mut total_calls = 0;
    let mut failures = Vec::new();
    for file in files {
        let cases = load_from(dir, file);
        let (mut case_pass, mut call_pass, mut calls) = (0, 0, 0);
        for case in &cases {
            let name = case["name"].as_str().unwrap_or("?");
            let (env, proxy, diags) = setup(case);
            let res = translate::translate(&env, &proxy);
            let mut all = true;
            for c in case["calls"].as_array().into_iter().flatten() {
                calls += 1;
                let bad = check(&res, c);
                if bad.is_empty() {
                    call_pass += 1;
                } else {
                    all = false;
                    let mut line = format!(
                        "{file} :: {name} :: {} :: {}",
                        c["name"].as_str().unwrap_or("?"),
                        bad.join("; ")
                    );
                    if !diags.is_empty() {
                        line.push_str(&format!(" [config diagnostics: {}]", diags.join(" | ")));
                    }
                    failures.push(line);
                }
            }
            if all {
                case_pass += 1;
            }
        }
        println!(
            "{file}: cases {case_pass}/{}, calls {call_pass}/{calls}",
            cases.len()
        );
        total_pass += call_pass;
        total_calls += calls;
    }
    (total_pass, total_calls, failures)
}

#[test]
fn istio_simulation_calls() {
    let (total_pass, total_calls, failures) = run_call_files(&simulation_dir(), CALL_FILES);
    for f in &failures {
        println!("FAIL {f}");
    }
    println!("calls passing: {total_pass}/{total_calls} (floor {CALL_PASS_FLOOR})");
    assert!(
        total_pass >= CALL_PASS_FLOOR && total_pass == total_calls,
        "{total_pass}/{total_calls} calls pass (floor {CALL_PASS_FLOOR}); every call must pass"
    );
}

fn route_clusters(r: &weft_xds::envoy::config::route::v3::Route) -> Vec<String> {
    use weft_xds::envoy::config::route::v3::route::Action;
    use weft_xds::envoy::config::route::v3::route_action::ClusterSpecifier;
    match &r.action {
        Some(Action::Route(a)) => match &a.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => vec![c.clone()],
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                w.clusters.iter().map(|c| c.name.clone()).collect()
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[test]
fn istio_sidecar_routes() {
    let (pass, total, failures) = run_route_cases(&load("sidecar_routes.json"));
    println!("sidecar_routes.json: cases {pass}/{total}");
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(
        pass >= ROUTE_CASE_PASS_FLOOR && pass == total,
        "{pass}/{total} route cases pass (floor {ROUTE_CASE_PASS_FLOOR}); every case must pass"
    );
}

/// Checks route cases; returns (passing, total, failure lines).
fn run_route_cases(cases: &[Value]) -> (usize, usize, Vec<String>) {
    let mut pass = 0;
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let (env, proxy, _) = setup(case);
        let rc_name = case["route_config"].as_str().unwrap_or("");
        let res = translate::translate(&env, &proxy);
        let rc = res
            .route(rc_name)
            .cloned()
            .unwrap_or_else(|| translate::sidecar_route(&env, &proxy, rc_name));
        let mut bad = Vec::new();
        for (domain, want) in case["expect_virtual_hosts"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let mut got: Vec<String> = rc
                .virtual_hosts
                .iter()
                .find(|v| v.domains.iter().any(|d| d == domain))
                .map(|v| v.routes.iter().flat_map(route_clusters).collect())
                .unwrap_or_default();
            got.sort();
            got.dedup();
            let want: Vec<String> = want
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if got != want {
                bad.push(format!("{domain}: want {want:?}, got {got:?}"));
            }
        }
        if bad.is_empty() {
            pass += 1;
        } else {
            failures.push(format!(
                "sidecar_routes.json :: {name} :: {}",
                bad.join("; ")
            ));
        }
    }
    (pass, cases.len(), failures)
}
