//! Unit tests for rules the conformance data does not cover.

use super::validation::{is_prime_for_test, localities_for_test};
use super::*;
use crate::validate::hosts::validate_wildcard_domain;
use crate::{Severity, parse_str, validate::validate_resource};

/// Errors and warnings of a DestinationRule with this spec (YAML, indented by two spaces).
fn check(spec: &str) -> (Vec<String>, Vec<String>) {
    let doc = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: dr\n  namespace: ns\nspec:\n{spec}"
    );
    let parsed = parse_str(&doc, "dr.yaml");
    let mut errors: Vec<String> = parsed.diagnostics.iter().map(|d| d.to_string()).collect();
    let mut warnings = Vec::new();
    for r in &parsed.resources {
        for d in validate_resource(r) {
            match d.severity {
                Severity::Error => errors.push(d.to_string()),
                Severity::Warning => warnings.push(d.to_string()),
            }
        }
    }
    (errors, warnings)
}

#[track_caller]
fn assert_error(spec: &str, want: &str) {
    let (errors, _) = check(spec);
    assert!(
        errors.iter().any(|e| e.contains(want)),
        "want an error containing {want:?}, got {errors:?}"
    );
}

#[track_caller]
fn assert_valid(spec: &str) {
    let (errors, _) = check(spec);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn full_destination_rule_round_trips() {
    let spec = r#"  host: reviews.prod.svc.cluster.local
  exportTo: [".", "other"]
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, path: /, ttl: 0s, attributes: [{name: SameSite, value: Strict}]}
        maglev: {tableSize: 65537}
      localityLbSetting:
        distribute:
        - from: us-west/zone1/*
          to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
        enabled: true
      warmup: {duration: 60s, minimumPercent: 10, aggression: 1.5}
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}
        maxConnectionDuration: 1h
        idleTimeout: 0s
      http:
        http1MaxPendingRequests: 10
        http2MaxRequests: 1000
        maxRequestsPerConnection: 10
        maxRetries: 3
        idleTimeout: 30s
        h2UpgradePolicy: UPGRADE
        maxConcurrentStreams: 100
        http2KeepAlive: {interval: 10s, timeout: 2s}
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 3
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 2
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 10
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/cert.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/ca.pem
      caCrl: /etc/certs/crl.pem
      subjectAltNames: [reviews]
      sni: reviews.example.com
      insecureSkipVerify: false
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: LEAST_REQUEST}
    retryBudget: {percent: 20, minRetryConcurrency: 3, budgetInterval: 1s}
    proxyProtocol: {version: V2}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN, zoneAwareLbSetting: {enabled: true, minClusterSize: 3}}
  workloadSelector:
    matchLabels: {app: ratings}
"#;
    let (errors, warnings) = check(spec);
    // A selector-scoped rule exported beyond its namespace is refused; everything else is valid.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("cannot have multiple entries in exportTo"),
        "{errors:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");

    let doc = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr}}\nspec:\n{spec}"
    );
    let parsed = parse_str(&doc, "dr.yaml");
    let crate::Spec::DestinationRule(dr) = &parsed.resources[0].spec else {
        panic!("not a DestinationRule");
    };
    let json = serde_json::to_value(dr).expect("serialize");
    let back: DestinationRule = serde_json::from_value(json.clone()).expect("deserialize");
    assert_eq!(&back, dr);
    let tp = &json["trafficPolicy"];
    assert_eq!(tp["connectionPool"]["http"]["h2UpgradePolicy"], "UPGRADE");
    assert_eq!(tp["outlierDetection"]["consecutive5xxErrors"], 7);
    assert_eq!(tp["connectionPool"]["tcp"]["connectTimeout"], "0.030s");
    // Defaults are not printed.
    assert!(tp["tls"].get("sni").is_some());
    assert!(json["subsets"][0].get("trafficPolicy").is_some());
    assert!(tp["retryBudget"].get("percent").is_some());
    assert!(json.get("host").is_some());
    let empty = serde_json::to_value(DestinationRule::default()).expect("serialize");
    assert_eq!(empty, serde_json::json!({}));
}

#[test]
fn snake_case_names_are_accepted_and_unknown_fields_refused() {
    assert_valid(
        "  host: reviews\n  traffic_policy:\n    load_balancer:\n      simple: RANDOM\n    connection_pool:\n      http: {http2_max_requests: 3, max_requests_per_connection: 1}\n    outlier_detection: {consecutive_5xx_errors: 2, base_ejection_time: 1s}\n",
    );
    assert_error(
        "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simpel: RANDOM}\n",
        "spec.trafficPolicy.loadBalancer.simpel: unknown field `simpel`",
    );
    assert_error(
        "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n",
        "Unsupported value: \"FASTEST\"",
    );
    assert_error(
        "  host: reviews\n  trafficPolicy:\n    connectionPool: {tcp: {connectTimeout: 10}}\n",
        "connectTimeout",
    );
}

#[test]
fn hosts_follow_istio_wildcard_rules() {
    assert_error("  host: foo.*.com\n", "spec.host");
    assert_error("  host: 10.0.0.1\n", "all-numeric");
    assert_valid("  host: '*.example.com'\n");
    assert_valid("  host: Reviews.Default.svc.cluster.local\n");
    assert!(validate_wildcard_domain("*-foo.com").is_ok());
}

#[test]
fn subsets_need_dns_label_names_and_valid_labels() {
    assert_error(
        "  host: r\n  subsets:\n  - name: v_1\n",
        "subset name is invalid",
    );
    assert_error(
        "  host: r\n  subsets:\n  - name: v1\n    labels: {'bad key!': v1}\n",
        "invalid label key",
    );
    assert_error(
        "  host: r\n  subsets:\n  - name: v1\n    trafficPolicy: {}\n",
        "traffic policy must have at least one field",
    );
}

#[test]
fn load_balancer_oneofs() {
    assert_error(
        "  host: r\n  trafficPolicy:\n    loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}\n",
        "only one of simple or consistentHash",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    loadBalancer: {consistentHash: {useSourceIp: true, httpHeaderName: x}}\n",
        "oneof hash_key",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {}, maglev: {tableSize: 7}}}\n",
        "oneof hash_algorithm",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 10, ringHash: {minimumRingSize: 10}}}\n",
        "only one of MinimumRingSize or Maglev/Ringhash",
    );
    let maglev = |size: &str| {
        format!(
            "  host: r\n  trafficPolicy:\n    loadBalancer: {{consistentHash: {{useSourceIp: true, maglev: {{tableSize: {size}}}}}}}\n"
        )
    };
    assert_error(&maglev("65536"), "prime");
    assert_error(&maglev("5000011"), "less than 5000011");
    assert_error(&maglev("0"), "tableSize must be set");
    assert_valid(&maglev("65537"));
    assert!(is_prime_for_test(2) && is_prime_for_test(65537) && !is_prime_for_test(9));
}

#[test]
fn warmup_and_retry_budget_bounds() {
    assert_error(
        "  host: r\n  trafficPolicy:\n    loadBalancer: {warmup: {duration: 10s, aggression: -1}}\n",
        "warmup.aggression",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    loadBalancer: {warmup: {duration: 0.5ms}}\n",
        "warmup.duration",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    loadBalancer: {warmupDurationSecs: 0s}\n",
        "warmupDurationSecs",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    retryBudget: {percent: 150}\n",
        "retryBudget.percent",
    );
    assert_valid("  host: r\n  trafficPolicy:\n    retryBudget: {minRetryConcurrency: 5}\n");
}

#[test]
fn connection_pool_and_outlier_rules() {
    assert_error(
        "  host: r\n  trafficPolicy:\n    connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}\n",
        "use client protocol must not be true",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: -1}}\n",
        "max connections must be non-negative",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    connectionPool: {tcp: {tcpKeepalive: {time: 0.5ms}}}\n",
        "tcpKeepalive.time",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    outlierDetection: {consecutiveLocalOriginFailures: 3}\n",
        "split external local origin errors is set to false",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    outlierDetection: {baseEjectionTime: 0s}\n",
        "baseEjectionTime",
    );
}

#[test]
fn locality_settings() {
    let lb = |body: &str| {
        format!(
            "  host: r\n  trafficPolicy:\n    outlierDetection: {{}}\n    loadBalancer:\n      localityLbSetting:\n{body}"
        )
    };
    assert_valid(&lb(
        "        distribute:\n        - from: a/b/*\n          to: {'a/b/*': 60, 'c/*': 40}\n",
    ));
    assert_error(
        &lb("        distribute:\n        - from: a/b\n          to: {'a/b': 0, 'c': 100}\n"),
        "locality weight must be in range [1, 100]",
    );
    assert_error(
        &lb("        failover:\n        - {from: us, to: us}\n"),
        "must specify different regions",
    );
    assert_error(
        &lb("        distribute:\n        - from: a//c\n          to: {x: 100}\n"),
        "must not contain empty region/zone/subzone info",
    );
    assert!(localities_for_test(&["a/b/c", "a/b/d", "a/c", "b"]).is_ok());
    assert!(localities_for_test(&["a/b/c", "a/b/c"]).is_err());
    assert!(localities_for_test(&["a", "a/b"]).is_err());
}

#[test]
fn zone_aware_failover_rules() {
    assert_error(
        "  host: r\n  trafficPolicy:\n    outlierDetection: {}\n    loadBalancer:\n      zoneAwareLbSetting: {failover: [{from: a, to: a}]}\n",
        "different regions",
    );
    let (errors, warnings) = check(
        "  host: r\n  trafficPolicy:\n    loadBalancer:\n      zoneAwareLbSetting: {failover: [{from: a, to: b}]}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("outlier detection policy must be provided")),
        "{warnings:?}"
    );
}

#[test]
fn port_level_settings_need_a_valid_port_and_a_setting() {
    assert_error(
        "  host: r\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 0}\n      tls: {mode: ISTIO_MUTUAL}\n",
        "portLevelSettings[0].port.number",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 80}\n",
        "port traffic policy must have at least one field",
    );
}

#[test]
fn tunnel_settings() {
    assert_valid(
        "  host: r\n  trafficPolicy:\n    tunnel: {protocol: POST, targetHost: 10.0.0.1, targetPort: 8080}\n",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    tunnel: {protocol: GET, targetHost: egress.example.com, targetPort: 443}\n",
        "tunnel protocol must be",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    tunnel: {targetHost: 'bad host', targetPort: 443}\n",
        "tunnel target host must be valid FQDN or IP address",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    tunnel: {targetHost: a.com, targetPort: 70000}\n",
        "tunnel target port is invalid",
    );
    assert_error(
        "  host: r\n  trafficPolicy:\n    tunnel: {targetHost: a.com, targetPort: 443}\n    proxyProtocol: {}\n",
        "tunnel and proxyProtocol must not be set together",
    );
}

#[test]
fn export_to_rules() {
    assert_error(
        "  host: r\n  exportTo: ['*', ns1]\n",
        "cannot have both public (*) and non-public",
    );
    assert_error(
        "  host: r\n  exportTo: [., ns]\n",
        "duplicate entries in exportTo",
    );
    assert_error(
        "  host: r\n  exportTo: ['~']\n",
        "exportTo ~ (none) is not allowed",
    );
    assert_error(
        "  host: r\n  exportTo: [Not_A_Label]\n",
        "invalid exportTo entry",
    );
    assert_valid("  host: r\n  workloadSelector: {matchLabels: {app: a}}\n  exportTo: [.]\n");
}

#[test]
fn workload_selector_rules() {
    assert_error(
        "  host: r\n  workloadSelector: {matchLabels: {app: 'a*'}}\n",
        "wildcard not allowed in label value match",
    );
    let (errors, warnings) = check("  host: r\n  workloadSelector: {}\n");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("workload selector specified without labels")),
        "{warnings:?}"
    );
}

#[test]
fn tls_with_credential_name_excludes_files() {
    assert_error(
        "  host: r\n  trafficPolicy:\n    tls: {mode: SIMPLE, credentialName: c, caCrl: crl}\n",
        "If credentialName is set",
    );
    assert_valid("  host: r\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, sni: a.b}\n");
}
