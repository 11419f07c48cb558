//! The control plane's Prometheus metrics, with istiod's names where istiod has one, so that
//! existing dashboards read them: `pilot_xds_pushes`, `pilot_xds`, `pilot_total_xds_rejects`,
//! `pilot_proxy_convergence_time`; plus weft's config-store gauges.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The xDS type a push or NACK concerns, in istiod's short form (`cds`, `lds`, `rds`, `eds`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// `cds`, `lds`, `rds`, `eds` or `sds`.
    pub r#type: String,
}

/// istiod's short name of an xDS type URL.
pub fn short_type(type_url: &str) -> &'static str {
    match type_url {
        weft_xds::type_url::CLUSTER => "cds",
        weft_xds::type_url::LISTENER => "lds",
        weft_xds::type_url::ROUTE_CONFIGURATION => "rds",
        weft_xds::type_url::CLUSTER_LOAD_ASSIGNMENT => "eds",
        weft_xds::type_url::SECRET => "sds",
        _ => "other",
    }
}

/// Every metric of the control plane, registered once in [`Metrics::new`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Responses queued to proxies, per type (one per proxy whose type changed).
    pub pushes: Family<TypeLabel, Counter>,
    /// Connected xDS streams.
    pub connected: Gauge,
    /// NACKs received, per type.
    pub rejects: Family<TypeLabel, Counter>,
    /// Config files currently refused.
    pub config_errors: Gauge,
    /// Config changes refused since start (a file version with errors, or a bad apply).
    pub config_rejections: Counter,
    /// The config store revision.
    pub revision: Gauge,
    /// Seconds from a config change being seen to a proxy ACKing the config it produced.
    pub convergence: Histogram,
    /// Config changes pushed (after debouncing).
    pub push_triggers: Counter,
    /// WorkloadGroup auto-registration (istiod's `auto_registration_*`).
    pub auto_registration: super::autoregister::AutoRegistrationMetrics,
    /// Streams connected, kept here to compute the gauge without races.
    streams: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let pushes = Family::<TypeLabel, Counter>::default();
        let connected = Gauge::default();
        let rejects = Family::<TypeLabel, Counter>::default();
        let config_errors = Gauge::default();
        let config_rejections = Counter::default();
        let revision = Gauge::default();
        let push_triggers = Counter::default();
        let convergence = Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0,
        ]);
        registry.register(
            "pilot_xds_pushes",
            "Pushes of an xDS type to a proxy",
            pushes.clone(),
        );
        registry.register("pilot_xds", "Connected xDS clients", connected.clone());
        registry.register(
            "pilot_total_xds_rejects",
            "xDS responses NACKed by proxies",
            rejects.clone(),
        );
        registry.register(
            "weft_config_rejected_files",
            "Config files whose latest version was refused",
            config_errors.clone(),
        );
        registry.register(
            "weft_config_rejections",
            "Config versions refused (files with errors, bad applies)",
            config_rejections.clone(),
        );
        registry.register(
            "weft_config_revision",
            "Revision of the config store",
            revision.clone(),
        );
        registry.register(
            "weft_push_triggers",
            "Debounced config changes that triggered a push",
            push_triggers.clone(),
        );
        registry.register(
            "pilot_proxy_convergence_time",
            "Seconds from a config change to a proxy ACKing it",
            convergence.clone(),
        );
        let auto_registration =
            super::autoregister::AutoRegistrationMetrics::register(&mut registry);
        Metrics {
            registry,
            auto_registration,
            pushes,
            connected,
            rejects,
            config_errors,
            config_rejections,
            revision,
            convergence,
            push_triggers,
            streams: AtomicI64::new(0),
        }
    }

    /// Counts a stream opening (`+1`) or closing (`-1`).
    pub fn stream_delta(&self, d: i64) {
        let n = self.streams.fetch_add(d, Ordering::Relaxed) + d;
        self.connected.set(n.max(0));
    }

    /// Counts one push of `type_url`.
    pub fn pushed(&self, type_url: &str) {
        self.pushes
            .get_or_create(&TypeLabel {
                r#type: short_type(type_url).to_string(),
            })
            .inc();
    }

    /// Counts one NACK of `type_url`.
    pub fn rejected(&self, type_url: &str) {
        self.rejects
            .get_or_create(&TypeLabel {
                r#type: short_type(type_url).to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
