//! The admin interface (Envoy's, where it overlaps): readiness, config dump, clusters,
//! listeners, stats, log level, drain and quit. Served on its own runtime thread so that a busy
//! data plane never starves it (and the other way round).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::{Message, Name};
use tokio::sync::watch;
use weft_xds::envoy::admin::v3 as admin;
use weft_xds::envoy::config::listener::v3::filter::ConfigType;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use weft_xds::google::protobuf::{Any, Timestamp};

use crate::Shared;
use crate::config::Snapshot;

/// Serves the admin interface on `listener` until `done` turns true (the proxy has exited).
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut done: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("admin listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = async { let _ = done.wait_for(|d| *d).await; } => return,
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(handle(&shared, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

/// The ports Istio's agent serves next to the proxy, which weft-proxy serves itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentPort {
    /// 15020: merged Prometheus metrics (`/stats/prometheus`) and `/healthz/ready`.
    Stats,
    /// 15021: `/healthz/ready`.
    Health,
}

/// Serves one agent port until `done` turns true: only its few read-only paths.
pub(crate) async fn serve_agent(
    listener: std::net::TcpListener,
    port: AgentPort,
    shared: Arc<Shared>,
    mut done: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("agent listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = async { let _ = done.wait_for(|d| *d).await; } => return,
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let shared = Arc::clone(&shared);
                        async move {
                            let path = req.uri().path();
                            let allowed = match port {
                                AgentPort::Stats => {
                                    matches!(path, "/stats/prometheus" | "/healthz/ready")
                                }
                                AgentPort::Health => path == "/healthz/ready",
                            };
                            let resp = if !allowed {
                                text(StatusCode::NOT_FOUND, "not found\n")
                            } else if path == "/healthz/ready" {
                                let ready = shared.ready.load(Ordering::Acquire)
                                    && !*shared.draining.borrow();
                                if ready {
                                    text(StatusCode::OK, "")
                                } else {
                                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                                }
                            } else {
                                handle(&shared, req)
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mutating = matches!(
        req.uri().path(),
        "/quitquitquit" | "/drain_listeners" | "/logging"
    );
    if mutating && req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "this admin endpoint needs POST\n",
        );
    }
    match req.uri().path() {
        "/ready" => {
            if *shared.draining.borrow() {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
            } else if shared.ready.load(Ordering::Acquire)
                && shared.identity_ready.load(Ordering::Acquire)
            {
                text(StatusCode::OK, "LIVE\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "PRE_INITIALIZING\n")
            }
        }
        "/healthz" => {
            if *shared.exit.borrow() {
                text(StatusCode::SERVICE_UNAVAILABLE, "exiting\n")
            } else {
                text(StatusCode::OK, "OK\n")
            }
        }
        "/config_dump" => match config_dump(&shared.snapshot.load())
            .and_then(|v| crate::xds::extend_config_dump(shared, v))
            .map(|mut v| {
                // Secrets, when there are any (never their keys).
                if !shared.secrets.names().is_empty()
                    && let Some(c) = v.get_mut("configs").and_then(|c| c.as_array_mut())
                {
                    c.push(crate::identity::secrets_config_dump(&shared.secrets));
                }
                crate::tls::redact(&mut v);
                v
            }) {
            Ok(v) => json(&v),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        "/certs" => json(&shared.secrets.describe()),
        "/clusters" => text(StatusCode::OK, clusters(&shared.snapshot.load())),
        "/listeners" => {
            let mut s = String::new();
            for (name, addr) in &shared.listener_addrs {
                let _ = writeln!(s, "{name}::{addr}");
            }
            for (name, addr) in shared.xds.listener_addrs() {
                let _ = writeln!(s, "{name}::{addr}");
            }
            text(StatusCode::OK, s)
        }
        "/stats" => text(StatusCode::OK, shared.stats.render_text()),
        "/stats/prometheus" => match shared.stats.render_prometheus() {
            Ok(s) => {
                let mut r = text(StatusCode::OK, s);
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        "/logging" => {
            let Some(level) = query_param(&req, "level") else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "usage: POST /logging?level=<trace|debug|info|warn|error|off>\n",
                );
            };
            match &shared.log_control {
                None => text(
                    StatusCode::NOT_IMPLEMENTED,
                    "this process does not control its logger\n",
                ),
                Some(c) => match c.set_level(level) {
                    Ok(()) => text(StatusCode::OK, format!("active loggers:\n  all: {level}\n")),
                    Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
                },
            }
        }
        "/drain_listeners" => {
            shared.stop_accepting.send_replace(true);
            shared.draining.send_replace(true);
            text(StatusCode::OK, "OK\n")
        }
        "/quitquitquit" => {
            shared.request_exit();
            text(StatusCode::OK, "OK\n")
        }
        "/unsupported" => {
            let mut s = String::new();
            for u in shared.unsupported.load().iter() {
                let _ = writeln!(s, "{u}");
            }
            text(StatusCode::OK, s)
        }
        "/" | "/help" => text(
            StatusCode::OK,
            "admin commands are:\n  /certs\n  /clusters\n  /config_dump\n  /drain_listeners (POST)\n  /healthz\n  /listeners\n  /logging?level= (POST)\n  /quitquitquit (POST)\n  /ready\n  /stats\n  /stats/prometheus\n  /unsupported\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "unknown admin command; see /help\n"),
    }
}

fn any<T: Message + Name>(m: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: m.encode_to_vec(),
    }
}

/// `/config_dump` in Envoy's shape: a `configs` list of Bootstrap, Clusters, Listeners and
/// Routes dumps, rendered as proto3 JSON with Envoy's field names.
pub fn config_dump(s: &Snapshot) -> Result<serde_json::Value, weft_xds::json::TranscodeError> {
    let since = s
        .compiled_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ts = Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    };
    let empty = Default::default();
    let sr = s.bootstrap.static_resources.as_ref().unwrap_or(&empty);
    let bootstrap = admin::BootstrapConfigDump {
        bootstrap: Some(s.bootstrap.as_ref().clone()),
        last_updated: Some(ts),
    };
    let clusters = admin::ClustersConfigDump {
        static_clusters: sr
            .clusters
            .iter()
            .map(|c| admin::clusters_config_dump::StaticCluster {
                cluster: Some(any(c)),
                last_updated: Some(ts),
            })
            .collect(),
        ..Default::default()
    };
    let listeners = admin::ListenersConfigDump {
        static_listeners: sr
            .listeners
            .iter()
            .map(|l| admin::listeners_config_dump::StaticListener {
                listener: Some(any(l)),
                last_updated: Some(ts),
            })
            .collect(),
        ..Default::default()
    };
    let mut routes = admin::RoutesConfigDump::default();
    for l in &sr.listeners {
        for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
            for f in &fc.filters {
                let Some(ConfigType::TypedConfig(a)) = &f.config_type else {
                    continue;
                };
                if !a.type_url.ends_with("HttpConnectionManager") {
                    continue;
                }
                let Ok(hcm) = HttpConnectionManager::decode(a.value.as_slice()) else {
                    continue;
                };
                if let Some(RouteSpecifier::RouteConfig(rc)) = hcm.route_specifier {
                    routes.static_route_configs.push(
                        admin::routes_config_dump::StaticRouteConfig {
                            route_config: Some(any(&rc)),
                            last_updated: Some(ts),
                        },
                    );
                }
            }
        }
    }
    let dump = admin::ConfigDump {
        configs: vec![
            any(&bootstrap),
            any(&clusters),
            any(&listeners),
            any(&routes),
        ],
    };
    weft_xds::json::to_value(&dump)
}

/// `/clusters` in Envoy's text form.
fn clusters(s: &Snapshot) -> String {
    let mut names: Vec<&String> = s.clusters.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let c = &s.clusters[name];
        for (prio, t) in ["default_priority", "high_priority"]
            .iter()
            .zip(&c.breakers.levels)
        {
            let _ = writeln!(
                out,
                "{name}::{prio}::max_connections::{}",
                t.max_connections
            );
            let _ = writeln!(
                out,
                "{name}::{prio}::max_pending_requests::{}",
                t.max_pending_requests
            );
            let _ = writeln!(out, "{name}::{prio}::max_requests::{}", t.max_requests);
            let _ = writeln!(out, "{name}::{prio}::max_retries::{}", t.max_retries);
        }
        let _ = writeln!(out, "{name}::added_via_api::false");
        for ep in c.endpoints().endpoints.iter() {
            let a = ep.addr;
            let healthy = ep.healthy.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}::{a}::cx_total::{}",
                ep.pool.connections_opened.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::rq_active::{}",
                ep.active_requests.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "{name}::{a}::rq_total::{}",
                ep.total_requests.load(Ordering::Relaxed)
            );
            let _ = writeln!(out, "{name}::{a}::weight::{}", ep.weight);
            let mut flags = String::new();
            if !healthy {
                flags.push_str("/failed_eds_health");
            }
            if ep.is_ejected() {
                flags.push_str("/failed_outlier_check");
            }
            let _ = writeln!(
                out,
                "{name}::{a}::health_flags::{}",
                if flags.is_empty() { "healthy" } else { &flags }
            );
            let _ = writeln!(out, "{name}::{a}::priority::{}", ep.priority);
        }
    }
    out
}
