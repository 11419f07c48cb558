//! Istio's resource names, which `proxy-config` users and Istio's own tests rely on.

/// Cluster that drops every connection.
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Cluster to the original destination of an outbound connection.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// Cluster to the original destination of an inbound connection (via 127.0.0.6).
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// Dynamic forward proxy cluster used by `ALLOW_ANY_DYNAMIC_DNS` for plaintext HTTP.
pub const DYNAMIC_DNS_CLUSTER: &str = "AllowAnyDynamicDNSCluster";
/// Outbound capture listener (port 15001).
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
/// Inbound capture listener (port 15006).
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
/// Default filter chain of outbound listeners.
pub const PASSTHROUGH_FILTER_CHAIN: &str = "PassthroughFilterChain";
/// Outbound capture port.
pub const VIRTUAL_OUTBOUND_PORT: u32 = 15001;
/// Inbound capture port.
pub const VIRTUAL_INBOUND_PORT: u32 = 15006;

/// `outbound|PORT|SUBSET|HOST`.
pub fn outbound_cluster(port: u32, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// `inbound|PORT||`.
pub fn inbound_cluster(port: u32) -> String {
    format!("inbound|{port}||")
}

/// `BIND_PORT` (`0.0.0.0_9080`, `10.0.0.1_3306`).
pub fn listener_name(bind: &str, port: u32) -> String {
    format!("{bind}_{port}")
}

/// Parses `outbound|PORT|SUBSET|HOST` into its parts.
pub fn parse_outbound_cluster(name: &str) -> Option<(u32, &str, &str)> {
    let mut it = name.splitn(4, '|');
    if it.next()? != "outbound" {
        return None;
    }
    let port = it.next()?.parse().ok()?;
    let subset = it.next()?;
    let host = it.next()?;
    Some((port, subset, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        assert_eq!(
            outbound_cluster(9080, "v1", "reviews.default.svc.cluster.local"),
            "outbound|9080|v1|reviews.default.svc.cluster.local"
        );
        assert_eq!(outbound_cluster(80, "", "a.b"), "outbound|80||a.b");
        assert_eq!(inbound_cluster(9080), "inbound|9080||");
        assert_eq!(listener_name("0.0.0.0", 9080), "0.0.0.0_9080");
        assert_eq!(
            parse_outbound_cluster("outbound|9080|v1|reviews.default.svc.cluster.local"),
            Some((9080, "v1", "reviews.default.svc.cluster.local"))
        );
        assert_eq!(parse_outbound_cluster("inbound|80||"), None);
    }
}
