//! `tcp_proxy`: a downstream connection spliced to a connection to one cluster endpoint.

use std::sync::atomic::Ordering;

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::cluster::PickCtx;
use crate::config::{Snapshot, TcpProxy};

/// Proxies `down` to an endpoint of the configured cluster until both directions are done.
///
/// Half-close is preserved: when one side finishes sending, the other side's write half is shut
/// down and the opposite direction keeps flowing (`copy_bidirectional`).
/// `local` is where the downstream connection was going (its original destination when it was
/// redirected): the host of an `ORIGINAL_DST` cluster.
pub(crate) async fn proxy<S: AsyncRead + AsyncWrite + Unpin>(
    mut down: S,
    local: SocketAddr,
    t: &TcpProxy,
    snapshot: &Snapshot,
) {
    let name = t.pick();
    let Some(cluster) = snapshot.clusters.get(name) else {
        tracing::debug!(stat_prefix = %t.stat_prefix, "tcp_proxy: no cluster {name:?}");
        return;
    };
    let cs = &cluster.stats;
    let ctx = PickCtx {
        original_dst: Some(local),
        ..PickCtx::default()
    };
    let Some(lease) = cluster.pick_with(&ctx) else {
        cs.upstream_cx_none_healthy.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(cluster = %cluster.name, "tcp_proxy: no healthy upstream");
        return;
    };
    cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
    let mut up = match lease
        .endpoint
        .pool
        .connect_stream(cluster.connect_timeout)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            cs.upstream_cx_connect_fail.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(cluster = %cluster.name, "tcp_proxy: {e}");
            return;
        }
    };
    let series = t.telemetry.as_ref().map(|tt| tt.opened(cluster));
    let (sent, received) = match tokio::io::copy_bidirectional(&mut down, &mut up).await {
        Ok((sent, received)) => {
            tracing::debug!(cluster = %cluster.name, sent, received, "tcp_proxy done");
            (sent, received)
        }
        Err(e) => {
            tracing::debug!(cluster = %cluster.name, "tcp_proxy ended: {e}");
            (0, 0)
        }
    };
    if let Some(s) = series {
        // Istio counts from the service's side: received is what the client sent.
        crate::telemetry::tcp_closed(&s, received, sent);
    }
}
