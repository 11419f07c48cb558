//! Circuit breakers (`circuit_breakers.thresholds`), one set per routing priority, as atomics.
//!
//! Each limit is a counter that a request, retry, pending request or connection increments
//! with a check, and that a guard decrements on drop. Nothing here locks; the one `Notify` is
//! only touched when requests are actually waiting for a connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Routing priority of a request (`RouteAction.priority`), indexing the threshold sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Priority {
    /// `DEFAULT`.
    #[default]
    Default = 0,
    /// `HIGH`.
    High = 1,
}

/// The limits of one priority and the counts they guard.
#[derive(Debug)]
pub struct Thresholds {
    /// `max_connections` (default 1024): upstream connections open at once.
    pub max_connections: u64,
    /// `max_pending_requests` (default 1024): requests waiting for a connection.
    pub max_pending_requests: u64,
    /// `max_requests` (default 1024): requests in flight.
    pub max_requests: u64,
    /// `max_retries` (default 3): retries in flight.
    pub max_retries: u64,
    /// Upstream connections open now.
    pub connections: AtomicU64,
    /// Requests waiting for a connection now.
    pub pending: AtomicU64,
    /// Requests in flight now.
    pub requests: AtomicU64,
    /// Retries in flight now.
    pub retries: AtomicU64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            connections: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }
}

/// The circuit breakers of a cluster: one [`Thresholds`] per priority, and the wake-up for
/// requests waiting on `max_connections`.
#[derive(Debug, Default)]
pub struct Breakers {
    /// Indexed by [`Priority`].
    pub levels: [Thresholds; 2],
    /// Signalled when a connection closes or goes back idle while requests are pending.
    pub(crate) released: Notify,
}

/// Which counter a [`Slot`] holds.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Connection,
    Pending,
    Request,
    Retry,
}

/// One unit of a breaker's count, given back on drop.
#[derive(Debug)]
pub struct Slot {
    breakers: Arc<Breakers>,
    priority: Priority,
    kind: Kind,
}

fn take(counter: &AtomicU64, max: u64) -> bool {
    if counter.fetch_add(1, Ordering::Relaxed) >= max {
        counter.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    true
}

impl Breakers {
    fn level(&self, p: Priority) -> &Thresholds {
        &self.levels[p as usize]
    }

    fn slot(self: &Arc<Self>, p: Priority, kind: Kind) -> Option<Slot> {
        let t = self.level(p);
        let ok = match kind {
            Kind::Connection => take(&t.connections, t.max_connections),
            Kind::Pending => take(&t.pending, t.max_pending_requests),
            Kind::Request => take(&t.requests, t.max_requests),
            Kind::Retry => take(&t.retries, t.max_retries),
        };
        ok.then(|| Slot {
            breakers: Arc::clone(self),
            priority: p,
            kind,
        })
    }

    /// A request slot (`max_requests`), or `None` on overflow.
    pub fn request(self: &Arc<Self>, p: Priority) -> Option<Slot> {
        self.slot(p, Kind::Request)
    }

    /// A retry slot (`max_retries`), or `None` on overflow.
    pub fn retry(self: &Arc<Self>, p: Priority) -> Option<Slot> {
        self.slot(p, Kind::Retry)
    }

    /// A connection slot (`max_connections`), or `None` on overflow.
    pub fn connection(self: &Arc<Self>, p: Priority) -> Option<Slot> {
        self.slot(p, Kind::Connection)
    }

    /// A connection slot taken even over the limit: a host with no connection at all may
    /// always open one, so that one busy host cannot starve the others (Envoy's rule).
    pub fn connection_forced(self: &Arc<Self>, p: Priority) -> Slot {
        self.level(p).connections.fetch_add(1, Ordering::Relaxed);
        Slot {
            breakers: Arc::clone(self),
            priority: p,
            kind: Kind::Connection,
        }
    }

    /// A pending-request slot (`max_pending_requests`), or `None` on overflow.
    pub fn pending(self: &Arc<Self>, p: Priority) -> Option<Slot> {
        self.slot(p, Kind::Pending)
    }

    /// Wakes requests waiting for a connection, if there are any (no lock otherwise).
    pub fn wake_pending(&self) {
        if self
            .levels
            .iter()
            .any(|l| l.pending.load(Ordering::Relaxed) > 0)
        {
            self.released.notify_waiters();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let t = self.breakers.level(self.priority);
        match self.kind {
            Kind::Connection => {
                t.connections.fetch_sub(1, Ordering::Relaxed);
                self.breakers.wake_pending();
            }
            Kind::Pending => {
                t.pending.fetch_sub(1, Ordering::Relaxed);
            }
            Kind::Request => {
                t.requests.fetch_sub(1, Ordering::Relaxed);
            }
            Kind::Retry => {
                t.retries.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_and_release() {
        let mut b = Breakers::default();
        b.levels[0].max_requests = 2;
        let b = Arc::new(b);
        let s1 = b.request(Priority::Default).unwrap();
        let _s2 = b.request(Priority::Default).unwrap();
        assert!(b.request(Priority::Default).is_none());
        assert!(
            b.request(Priority::High).is_some(),
            "priorities are separate"
        );
        drop(s1);
        assert!(b.request(Priority::Default).is_some());
    }
}
