//! The admin API: HTTP + JSON on `--admin-addr` (istiod's monitoring port, 15014, by default).
//! The CLI talks only to it.
//!
//! | method and path | what |
//! | --- | --- |
//! | `POST /apply` | YAML body: validate, write each resource to `<kind>-<ns>-<name>.yaml`, bump the revision |
//! | `GET /resources?kind=&namespace=&name=` | the resources in effect, as documents |
//! | `DELETE /resources/{kind}/{namespace}/{name}` (or `/{kind}/{name}` cluster-scoped) | remove one |
//! | `GET /proxies` | per proxy and type: SYNCED / STALE / NOT SENT, versions, NACK errors |
//! | `GET /proxies/{id}/config` | the proxy's resources as Envoy's `/config_dump` JSON |
//! | `GET /status` | revision, rejected files with their errors |
//! | `GET /metrics` | Prometheus text |
//! | `GET /ready` | 200 once serving |

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_config::Kind;
use weft_xds::envoy::admin::v3 as admin;
use weft_xds::server::{NodeStatus, SyncState};
use weft_xds::type_url;

use super::Shared;
use super::metrics::short_type;
use super::store::{ResourceId, StoreError, resource_to_value};

/// The admin API's routes over the control plane's shared state.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/apply", post(apply))
        .route("/resources", get(list_resources))
        .route("/resources/{kind}/{name}", delete(delete_cluster_scoped))
        .route(
            "/resources/{kind}/{namespace}/{name}",
            delete(delete_resource),
        )
        .route("/proxies", get(proxies))
        .route("/proxies/{id}/config", get(proxy_config))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/ready", get(|| async { "ready\n" }))
        .with_state(shared)
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Invalid(errors) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": format!("{} error(s); nothing was applied", errors.len()),
                "errors": errors,
            })),
        )
            .into_response(),
        StoreError::NotFound(what) => error(StatusCode::NOT_FOUND, format!("{what} not found")),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

async fn apply(State(s): State<Arc<Shared>>, body: String) -> Response {
    let shared = s.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut store = shared.lock_store();
        let r = store.apply(&body, "apply");
        (r, store.revision())
    })
    .await;
    match result {
        Ok((Ok(ids), revision)) => {
            s.changed(Instant::now());
            let applied: Vec<String> = ids.iter().map(ToString::to_string).collect();
            Json(json!({ "revision": revision, "applied": applied })).into_response()
        }
        Ok((Err(e), _)) => {
            if matches!(e, StoreError::Invalid(_)) {
                s.metrics.config_rejections.inc();
            }
            store_error(e)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Query of `GET /resources`.
#[derive(Debug, Default, Deserialize)]
struct ResourceQuery {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

/// Resolves a kind as users type it: `VirtualService`, `virtualservice(s)`, `vs`, ...
pub fn resolve_kind(s: &str) -> Option<Kind> {
    let l = s.to_ascii_lowercase();
    let short = match l.as_str() {
        "vs" => Some(Kind::VirtualService),
        "dr" => Some(Kind::DestinationRule),
        "gw" => Some(Kind::Gateway),
        "se" => Some(Kind::ServiceEntry),
        "we" => Some(Kind::WorkloadEntry),
        "wg" => Some(Kind::WorkloadGroup),
        "pa" => Some(Kind::PeerAuthentication),
        "ra" => Some(Kind::RequestAuthentication),
        "ap" => Some(Kind::AuthorizationPolicy),
        "svc" => Some(Kind::Service),
        "po" => Some(Kind::Pod),
        "ns" => Some(Kind::Namespace),
        "sa" => Some(Kind::ServiceAccount),
        "cm" => Some(Kind::ConfigMap),
        _ => None,
    };
    if short.is_some() {
        return short;
    }
    Kind::all().find(|k| {
        let n = k.name().to_ascii_lowercase();
        l == n
            || l == format!("{n}s")
            || (n.ends_with('y') && l == format!("{}ies", &n[..n.len() - 1]))
    })
}

async fn list_resources(State(s): State<Arc<Shared>>, Query(q): Query<ResourceQuery>) -> Response {
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => match resolve_kind(k) {
            Some(k) => Some(k),
            None => return error(StatusCode::BAD_REQUEST, format!("unknown kind {k:?}")),
        },
        None => None,
    };
    let (revision, all) = {
        let store = s.lock_store();
        (store.revision(), store.resources())
    };
    let items: Vec<Value> = all
        .iter()
        .filter(|r| kind.is_none_or(|k| r.resource.kind == k))
        .filter(|r| {
            q.namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .is_none_or(|n| r.resource.namespace() == n)
        })
        .filter(|r| {
            q.name
                .as_deref()
                .filter(|n| !n.is_empty())
                .is_none_or(|n| r.resource.name() == n)
        })
        .map(|r| resource_to_value(&r.resource))
        .collect();
    Json(json!({ "revision": revision, "items": items })).into_response()
}

async fn delete_cluster_scoped(
    State(s): State<Arc<Shared>>,
    Path((kind, name)): Path<(String, String)>,
) -> Response {
    delete_one(s, kind, String::new(), name).await
}

async fn delete_resource(
    State(s): State<Arc<Shared>>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Response {
    delete_one(s, kind, namespace, name).await
}

async fn delete_one(s: Arc<Shared>, kind: String, namespace: String, name: String) -> Response {
    let Some(kind) = resolve_kind(&kind) else {
        return error(StatusCode::BAD_REQUEST, format!("unknown kind {kind:?}"));
    };
    let id = ResourceId {
        kind,
        namespace: if kind.namespaced() {
            namespace
        } else {
            String::new()
        },
        name,
    };
    let shared = s.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut store = shared.lock_store();
        let r = store.delete(&[id]);
        (r, store.revision())
    })
    .await;
    match result {
        Ok((Ok(ids), revision)) => {
            s.changed(Instant::now());
            let deleted: Vec<String> = ids.iter().map(ToString::to_string).collect();
            Json(json!({ "revision": revision, "deleted": deleted })).into_response()
        }
        Ok((Err(e), _)) => store_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// One proxy's sync state for one type, as `GET /proxies` reports it.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct TypeSync {
    /// `SYNCED`, `STALE` or `NOT SENT`.
    pub state: String,
    /// Version of the latest response sent.
    pub sent_version: Option<String>,
    /// Version the proxy ACKed last.
    pub acked_version: Option<String>,
    /// The proxy's error message for its latest NACK.
    pub nack: Option<String>,
}

/// One proxy, as `GET /proxies` reports it.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct ProxyInfo {
    /// The node id.
    pub id: String,
    /// `node.cluster` (istioctl's CLUSTER column shows the cluster id from metadata, else this).
    pub cluster: String,
    /// The control plane instance serving it.
    pub istiod: String,
    /// The proxy's version (`ISTIO_VERSION` metadata).
    pub version: String,
    /// Whether the stream is delta xDS.
    pub delta: bool,
    /// Sync state by istiod's short type name (`cds`, `lds`, `eds`, `rds`).
    pub types: std::collections::BTreeMap<String, TypeSync>,
    /// `namespace/name` of the WorkloadEntry the proxy auto-registered (`AUTO_REGISTER_GROUP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_entry: Option<String>,
    /// Why the proxy's auto-registration failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_error: Option<String>,
}

fn proxy_info(n: &NodeStatus, istiod: &str) -> ProxyInfo {
    let md = n
        .metadata
        .as_ref()
        .map(super::push::struct_to_json)
        .unwrap_or(Value::Null);
    let str_md = |k: &str| md.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let cluster_id = str_md("CLUSTER_ID");
    let mut types = std::collections::BTreeMap::new();
    for t in [
        type_url::CLUSTER,
        type_url::LISTENER,
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        type_url::ROUTE_CONFIGURATION,
    ] {
        let ts = n.types.get(t).cloned().unwrap_or_default();
        let state = match ts.state() {
            SyncState::Synced => "SYNCED",
            SyncState::Stale => "STALE",
            SyncState::NotSent => "NOT SENT",
        };
        types.insert(
            short_type(t).to_string(),
            TypeSync {
                state: state.to_string(),
                sent_version: ts.sent_version.clone(),
                acked_version: ts.acked_version.clone(),
                nack: ts.nack.as_ref().map(|x| x.error.clone()),
            },
        );
    }
    ProxyInfo {
        id: n.node_id.clone(),
        cluster: if cluster_id.is_empty() {
            "Kubernetes".to_string()
        } else {
            cluster_id
        },
        istiod: istiod.to_string(),
        version: str_md("ISTIO_VERSION"),
        delta: n.delta,
        types,
        workload_entry: None,
        registration_error: None,
    }
}

async fn proxies(State(s): State<Arc<Shared>>) -> Response {
    let list: Vec<ProxyInfo> = s
        .ads
        .status()
        .nodes()
        .iter()
        .map(|n| {
            let mut p = proxy_info(n, &s.instance);
            if let Some(r) = s.autoreg.registration(&n.node_id) {
                p.workload_entry = r.workload_entry;
                p.registration_error = r.error;
            }
            p
        })
        .collect();
    Json(list).into_response()
}

/// The `/config_dump` of a cache snapshot: dynamic clusters, listeners, routes and endpoints.
pub fn config_dump(snap: &weft_xds::cache::Snapshot) -> admin::ConfigDump {
    fn sorted(
        snap: &weft_xds::cache::Snapshot,
        t: &str,
    ) -> (String, Vec<Arc<weft_xds::cache::Resource>>) {
        let Some(tr) = snap.resources(t) else {
            return (String::new(), Vec::new());
        };
        let mut v: Vec<_> = tr.iter().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        (tr.version().to_string(), v)
    }
    let (cv, clusters) = sorted(snap, type_url::CLUSTER);
    let cds = admin::ClustersConfigDump {
        version_info: cv,
        dynamic_active_clusters: clusters
            .iter()
            .map(|r| admin::clusters_config_dump::DynamicCluster {
                version_info: r.version.clone(),
                cluster: Some(r.body.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let (lv, listeners) = sorted(snap, type_url::LISTENER);
    let lds = admin::ListenersConfigDump {
        version_info: lv,
        dynamic_listeners: listeners
            .iter()
            .map(|r| admin::listeners_config_dump::DynamicListener {
                name: r.name.clone(),
                active_state: Some(admin::listeners_config_dump::DynamicListenerState {
                    version_info: r.version.clone(),
                    listener: Some(r.body.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let (_, routes) = sorted(snap, type_url::ROUTE_CONFIGURATION);
    let rds = admin::RoutesConfigDump {
        dynamic_route_configs: routes
            .iter()
            .map(|r| admin::routes_config_dump::DynamicRouteConfig {
                version_info: r.version.clone(),
                route_config: Some(r.body.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let (_, endpoints) = sorted(snap, type_url::CLUSTER_LOAD_ASSIGNMENT);
    let eds = admin::EndpointsConfigDump {
        dynamic_endpoint_configs: endpoints
            .iter()
            .map(|r| admin::endpoints_config_dump::DynamicEndpointConfig {
                version_info: r.version.clone(),
                endpoint_config: Some(r.body.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    admin::ConfigDump {
        configs: vec![
            crate::translate::envoy::any(&cds),
            crate::translate::envoy::any(&lds),
            crate::translate::envoy::any(&rds),
            crate::translate::envoy::any(&eds),
        ],
    }
}

async fn proxy_config(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let key = match s.ads.status().node(&id) {
        Some(n) => n.snapshot_key,
        None => {
            return error(
                StatusCode::NOT_FOUND,
                format!("proxy {id} is not connected"),
            );
        }
    };
    let Some(snap) = s.ads.cache().snapshot(&key) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no config computed for proxy {id}"),
        );
    };
    let dump = config_dump(&snap);
    match weft_xds::json::to_value(&dump) {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let (revision, rejected, resources, dir) = {
        let store = s.lock_store();
        (
            store.revision(),
            store.rejected(),
            store.resources().len(),
            store.dir().display().to_string(),
        )
    };
    Json(json!({
        "revision": revision,
        "config_dir": dir,
        "resources": resources,
        "rejected": rejected,
        "proxies": s.ads.status().nodes().len(),
        "pushed_revision": s.pushed_revision(),
    }))
    .into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    {
        let store = s.lock_store();
        s.metrics.config_errors.set(store.rejected().len() as i64);
        s.metrics.revision.set(store.revision() as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}
