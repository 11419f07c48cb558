//! `telemetry.istio.io` `Telemetry`: tracing, metrics and access-logging settings for
//! workloads, with Istio's validation rules.

pub mod cel;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::meta::{PolicyTargetReference, WorkloadSelector};
use crate::validate::durations::check_min_1ms;
use crate::validate::messages::min_len_msg;
use crate::validate::policy::validate_policy_attachment;
use crate::validate::{Context, Path, Report, Validate};

/// `Telemetry` spec: how telemetry is generated for the selected workloads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Telemetry {
    /// Workloads the policy applies to; all in the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Single resource the policy attaches to (deprecated form of `targetRefs`).
    #[serde(default, alias = "target_ref", skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Resources the policy attaches to.
    #[serde(default, alias = "target_refs", skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Tracing behaviour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracing: Vec<Tracing>,
    /// Metrics behaviour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metrics>,
    /// Access-logging behaviour.
    #[serde(
        default,
        alias = "access_logging",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub access_logging: Vec<AccessLogging>,
}

/// Tracing settings: providers, sampling and custom span tags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// Traffic direction the settings apply to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub r#match: Option<TracingSelector>,
    /// Tracing providers (by MeshConfig extension-provider name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Percentage (0-100) of requests sampled when no upstream decision exists.
    #[serde(
        default,
        alias = "random_sampling_percentage",
        skip_serializing_if = "Option::is_none"
    )]
    pub random_sampling_percentage: Option<f64>,
    /// Turns span reporting off (context is still propagated).
    #[serde(
        default,
        alias = "disable_span_reporting",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_span_reporting: Option<bool>,
    /// Extra tags added to every span, by tag name.
    #[serde(
        default,
        alias = "custom_tags",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Use the request ID to make the sampling decision.
    #[serde(
        default,
        alias = "use_request_id_for_trace_sampling",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_request_id_for_trace_sampling: Option<bool>,
    /// Whether Envoy adds Istio-specific tags to spans.
    #[serde(
        default,
        alias = "enable_istio_tags",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_istio_tags: Option<bool>,
}

/// Traffic-direction selector of a tracing rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingSelector {
    /// Direction relative to the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

/// A custom span tag; exactly one source is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomTag {
    /// A fixed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<Literal>,
    /// The value of a proxy environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// The value of a request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<RequestHeader>,
}

/// A fixed tag value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Literal {
    /// The value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// A tag taken from an environment variable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Environment {
    /// Variable name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Value used when the variable is unset.
    #[serde(
        default,
        alias = "default_value",
        skip_serializing_if = "String::is_empty"
    )]
    pub default_value: String,
}

/// A tag taken from a request header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestHeader {
    /// Header name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Value used when the header is absent.
    #[serde(
        default,
        alias = "default_value",
        skip_serializing_if = "String::is_empty"
    )]
    pub default_value: String,
}

/// A reference to a MeshConfig extension provider by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderRef {
    /// Provider name.
    #[serde(default)]
    pub name: String,
}

/// Metrics settings: providers and overrides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Metrics providers the settings apply to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Ordered overrides of metric generation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<MetricsOverrides>,
    /// How often metrics are reported (for providers that push).
    #[serde(
        default,
        alias = "reporting_interval",
        skip_serializing_if = "Option::is_none"
    )]
    pub reporting_interval: Option<Duration>,
}

/// Traffic direction relative to the workload (telemetry API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkloadMode {
    /// Both directions.
    #[default]
    #[serde(rename = "CLIENT_AND_SERVER")]
    ClientAndServer,
    /// Outbound traffic.
    #[serde(rename = "CLIENT")]
    Client,
    /// Inbound traffic.
    #[serde(rename = "SERVER")]
    Server,
}

/// Selects the metrics an override applies to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSelector {
    /// One of Istio's standard metrics (oneof with `custom_metric`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<IstioMetric>,
    /// A metric by free-form name (oneof with `metric`).
    #[serde(
        default,
        alias = "custom_metric",
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_metric: Option<String>,
    /// Traffic direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

/// Istio's standard metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IstioMetric {
    /// Every standard metric.
    #[default]
    #[serde(rename = "ALL_METRICS")]
    AllMetrics,
    /// `istio_requests_total`.
    #[serde(rename = "REQUEST_COUNT")]
    RequestCount,
    /// `istio_request_duration_milliseconds`.
    #[serde(rename = "REQUEST_DURATION")]
    RequestDuration,
    /// `istio_request_bytes`.
    #[serde(rename = "REQUEST_SIZE")]
    RequestSize,
    /// `istio_response_bytes`.
    #[serde(rename = "RESPONSE_SIZE")]
    ResponseSize,
    /// `istio_tcp_connections_opened_total`.
    #[serde(rename = "TCP_OPENED_CONNECTIONS")]
    TcpOpenedConnections,
    /// `istio_tcp_connections_closed_total`.
    #[serde(rename = "TCP_CLOSED_CONNECTIONS")]
    TcpClosedConnections,
    /// `istio_tcp_sent_bytes_total`.
    #[serde(rename = "TCP_SENT_BYTES")]
    TcpSentBytes,
    /// `istio_tcp_received_bytes_total`.
    #[serde(rename = "TCP_RECEIVED_BYTES")]
    TcpReceivedBytes,
    /// `istio_request_messages_total`.
    #[serde(rename = "GRPC_REQUEST_MESSAGES")]
    GrpcRequestMessages,
    /// `istio_response_messages_total`.
    #[serde(rename = "GRPC_RESPONSE_MESSAGES")]
    GrpcResponseMessages,
}

/// One override of metric generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOverrides {
    /// Metrics the override applies to (all when unset).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub r#match: Option<MetricSelector>,
    /// Turns the matched metrics off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Tag changes, by tag name.
    #[serde(
        default,
        alias = "tag_overrides",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

/// Adds, changes or removes one metric tag.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagOverride {
    /// What to do with the tag (`UPSERT` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<TagOverrideOperation>,
    /// CEL expression for the tag value (with `UPSERT`); `None` when not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Operation of a tag override.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TagOverrideOperation {
    /// Insert or replace the tag.
    #[default]
    #[serde(rename = "UPSERT")]
    Upsert,
    /// Remove the tag.
    #[serde(rename = "REMOVE")]
    Remove,
}

/// Access-logging settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogging {
    /// Traffic direction the settings apply to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub r#match: Option<LogSelector>,
    /// Logging providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Turns logging off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Which requests or connections are logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// Traffic-direction selector of an access-logging rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogSelector {
    /// Direction relative to the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WorkloadMode>,
}

/// A CEL condition selecting what is logged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    /// The CEL expression.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expression: String,
}

fn validate_providers(providers: &[ProviderRef], path: &Path, report: &mut Report) {
    for (i, p) in providers.iter().enumerate() {
        if p.name.is_empty() {
            let np = path.index(i).field("name");
            report.error(
                &np,
                format!(
                    "{} (providers.name may not be empty)",
                    min_len_msg(&np, "", 1)
                ),
            );
        }
    }
}

impl Validate for Telemetry {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate_policy_attachment(
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            "workloadSelector",
            path,
            report,
        );
        let tracing = path.field("tracing");
        if self.tracing.len() > 1 {
            report.warning(&tracing, "multiple tracing is not currently supported");
        }
        for (i, t) in self.tracing.iter().enumerate() {
            t.validate_at(&tracing.index(i), report);
        }
        let metrics = path.field("metrics");
        for (i, m) in self.metrics.iter().enumerate() {
            m.validate_at(&metrics.index(i), report);
        }
        let logging = path.field("accessLogging");
        for (i, l) in self.access_logging.iter().enumerate() {
            let p = logging.index(i);
            validate_providers(&l.providers, &p.field("providers"), report);
            if let Some(f) = &l.filter
                && let Err(e) = cel::parse(&f.expression)
            {
                report.error(
                    &p.field("filter").field("expression"),
                    format!("must be a valid CEL expression, {e}"),
                );
            }
        }
    }
}

impl Tracing {
    fn validate_at(&self, path: &Path, report: &mut Report) {
        if self.providers.len() > 1 {
            report.warning(
                &path.field("providers"),
                "multiple providers is not currently supported",
            );
        }
        validate_providers(&self.providers, &path.field("providers"), report);
        if let Some(p) = self.random_sampling_percentage {
            let pp = path.field("randomSamplingPercentage");
            if p < 0.0 {
                report.error(
                    &pp,
                    format!("Invalid value: {p}: {pp} in body should be greater than or equal to 0 (randomSamplingPercentage must be in range [0.0, 100.0])"),
                );
            } else if p > 100.0 {
                report.error(
                    &pp,
                    format!("Invalid value: {p}: {pp} in body should be less than or equal to 100 (randomSamplingPercentage must be in range [0.0, 100.0])"),
                );
            }
        }
        let tags = path.field("customTags");
        for (name, tag) in &self.custom_tags {
            let tp = tags.key(name);
            if name.is_empty() {
                report.error(&tp, "tag name may not be empty");
            }
            let set = usize::from(tag.literal.is_some())
                + usize::from(tag.environment.is_some())
                + usize::from(tag.header.is_some());
            if set > 1 {
                report.error(
                    &tp,
                    "Invalid value: \"object\": only one of literal, environment or header may be set",
                );
            }
            if let Some(l) = &tag.literal
                && l.value.is_empty()
            {
                report.error(
                    &tp.field("literal").field("value"),
                    "Required value: literal tag value may not be empty",
                );
            }
            if let Some(e) = &tag.environment
                && e.name.is_empty()
            {
                report.error(
                    &tp.field("environment").field("name"),
                    "Required value: environment tag name may not be empty",
                );
            }
            if let Some(h) = &tag.header
                && h.name.is_empty()
            {
                report.error(
                    &tp.field("header").field("name"),
                    "Required value: header tag name may not be empty",
                );
            }
        }
    }
}

impl Metrics {
    fn validate_at(&self, path: &Path, report: &mut Report) {
        validate_providers(&self.providers, &path.field("providers"), report);
        if let Some(d) = self.reporting_interval {
            check_min_1ms(report, &path.field("reportingInterval"), d);
        }
        let overrides = path.field("overrides");
        for (i, o) in self.overrides.iter().enumerate() {
            let op = overrides.index(i);
            if let Some(m) = &o.r#match {
                let mp = op.field("match");
                if m.metric.is_some() && m.custom_metric.is_some() {
                    report.error(
                        &mp,
                        "Invalid value: \"object\": must validate one and only one schema (oneOf): only one of metric or customMetric may be set",
                    );
                }
                if let Some(c) = &m.custom_metric
                    && c.is_empty()
                {
                    let cp = mp.field("customMetric");
                    report.error(
                        &cp,
                        format!("{} (customMetric may not be empty)", min_len_msg(&cp, c, 1)),
                    );
                }
            }
            let tags = op.field("tagOverrides");
            for (name, t) in &o.tag_overrides {
                let tp = tags.key(name);
                if name.is_empty() {
                    report.warning(&tp, "tagOverrides.name may not be empty");
                }
                match t.operation.unwrap_or_default() {
                    TagOverrideOperation::Upsert => {
                        if t.value.as_deref().unwrap_or("").is_empty() {
                            report.error(
                                &tp,
                                "Invalid value: \"object\": value must be set when operation is UPSERT",
                            );
                        }
                    }
                    TagOverrideOperation::Remove => {
                        if t.value.is_some() {
                            report.error(
                                &tp,
                                "Invalid value: \"object\": value must not be set when operation is REMOVE",
                            );
                        }
                    }
                }
            }
        }
    }
}
