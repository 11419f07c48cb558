//! Outlier detection (`Cluster.outlier_detection`): consecutive 5xx, consecutive gateway
//! failures and consecutive local-origin failures eject a host for
//! `base_ejection_time × ejections` (capped by `max_ejection_time`).
//!
//! State is per endpoint and atomic. Ejection happens in line when a counter reaches its
//! threshold (as Envoy's consecutive detectors do); the return to service is checked lazily by
//! whoever looks at the host (load balancer, `/clusters`) once the ejection time is over, and
//! the ejection multiplier decays by one per `interval` spent back in service.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weft_xds::envoy::config::cluster::v3::OutlierDetection;

use crate::config::duration;

/// Milliseconds since the process's first look at the clock (never 0, so that 0 can mean
/// "not ejected").
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// A compiled `outlier_detection`.
#[derive(Clone, Debug)]
pub struct OutlierConfig {
    /// `consecutive_5xx` (default 5).
    pub consecutive_5xx: u32,
    /// `consecutive_gateway_failure` (default 5).
    pub consecutive_gateway_failure: u32,
    /// `consecutive_local_origin_failure` (default 5).
    pub consecutive_local_origin_failure: u32,
    /// `interval` (default 10 s): how often the ejection multiplier decays.
    pub interval: Duration,
    /// `base_ejection_time` (default 30 s).
    pub base_ejection_time: Duration,
    /// `max_ejection_time` (default 300 s, at least `base_ejection_time`).
    pub max_ejection_time: Duration,
    /// `max_ejection_percent` (default 10; at least one host can always be ejected).
    pub max_ejection_percent: u32,
    /// `enforcing_consecutive_5xx` (default 100).
    pub enforcing_consecutive_5xx: u32,
    /// `enforcing_consecutive_gateway_failure` (default 0).
    pub enforcing_consecutive_gateway_failure: u32,
    /// `enforcing_consecutive_local_origin_failure` (default 100).
    pub enforcing_consecutive_local_origin_failure: u32,
    /// `split_external_local_origin_errors`: count connection failures, timeouts and resets
    /// apart from upstream 5xx responses.
    pub split_external_local_origin_errors: bool,
}

impl OutlierConfig {
    /// Reads Envoy's message with its defaults.
    pub fn compile(o: &OutlierDetection) -> Self {
        let u = |v: &Option<weft_xds::google::protobuf::UInt32Value>, d: u32| {
            v.as_ref().map_or(d, |x| x.value)
        };
        let d = |v: &Option<weft_xds::google::protobuf::Duration>, dflt: u64| {
            v.as_ref()
                .map_or(Duration::from_millis(dflt), duration)
                .max(Duration::from_millis(1))
        };
        let base = d(&o.base_ejection_time, 30_000);
        OutlierConfig {
            consecutive_5xx: u(&o.consecutive_5xx, 5),
            consecutive_gateway_failure: u(&o.consecutive_gateway_failure, 5),
            consecutive_local_origin_failure: u(&o.consecutive_local_origin_failure, 5),
            interval: d(&o.interval, 10_000),
            base_ejection_time: base,
            max_ejection_time: d(&o.max_ejection_time, 300_000).max(base),
            max_ejection_percent: u(&o.max_ejection_percent, 10).min(100),
            enforcing_consecutive_5xx: u(&o.enforcing_consecutive_5xx, 100),
            enforcing_consecutive_gateway_failure: u(&o.enforcing_consecutive_gateway_failure, 0),
            enforcing_consecutive_local_origin_failure: u(
                &o.enforcing_consecutive_local_origin_failure,
                100,
            ),
            split_external_local_origin_errors: o.split_external_local_origin_errors,
        }
    }
}

/// What happened to one request to a host, as outlier detection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// The connection could not be made, timed out or was reset (a local-origin error).
    LocalFailure,
    /// The connection was made (a local-origin success).
    LocalSuccess,
}

/// Why a host was ejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `consecutive_5xx`.
    Consecutive5xx,
    /// `consecutive_gateway_failure`.
    ConsecutiveGatewayFailure,
    /// `consecutive_local_origin_failure`.
    ConsecutiveLocalOriginFailure,
}

/// The outlier state of one endpoint.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// [`now_ms`] at which the ejection ends; 0 when the host is in service.
    ejected_until: AtomicU64,
    /// Ejections so far, decayed while in service (the ejection time multiplier).
    ejections: AtomicU32,
    /// [`now_ms`] when the host last returned to service.
    returned_at: AtomicU64,
}

impl OutlierState {
    /// True while ejected. Returns the host to service once its time is over (`true` in the
    /// second field when this call did it).
    pub fn ejected(&self) -> (bool, bool) {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return (false, false);
        }
        let now = now_ms();
        if now < until {
            return (true, false);
        }
        let returned = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if returned {
            self.returned_at.store(now, Ordering::Relaxed);
        }
        (false, returned)
    }

    /// Counts `outcome`; returns the detector that fired and is enforced (`enforcing_*`), if a
    /// threshold was reached.
    pub fn record(&self, cfg: &OutlierConfig, outcome: Outcome) -> Option<Reason> {
        let bump = |c: &AtomicU32, max: u32| c.fetch_add(1, Ordering::Relaxed) + 1 >= max;
        match outcome {
            Outcome::Status(s) if s >= 500 => {
                let gateway = if matches!(s, 502..=504) {
                    bump(&self.consecutive_gateway, cfg.consecutive_gateway_failure)
                } else {
                    self.consecutive_gateway.store(0, Ordering::Relaxed);
                    false
                };
                let five = bump(&self.consecutive_5xx, cfg.consecutive_5xx);
                if five && Self::enforced(cfg, Reason::Consecutive5xx) {
                    Some(Reason::Consecutive5xx)
                } else if gateway && Self::enforced(cfg, Reason::ConsecutiveGatewayFailure) {
                    Some(Reason::ConsecutiveGatewayFailure)
                } else {
                    None
                }
            }
            Outcome::Status(_) => {
                self.consecutive_5xx.store(0, Ordering::Relaxed);
                self.consecutive_gateway.store(0, Ordering::Relaxed);
                None
            }
            Outcome::LocalFailure if cfg.split_external_local_origin_errors => (bump(
                &self.consecutive_local,
                cfg.consecutive_local_origin_failure,
            )
                && Self::enforced(cfg, Reason::ConsecutiveLocalOriginFailure))
            .then_some(Reason::ConsecutiveLocalOriginFailure),
            // Without the split, a local-origin failure counts as a gateway error (503).
            Outcome::LocalFailure => self.record(cfg, Outcome::Status(503)),
            Outcome::LocalSuccess => {
                if cfg.split_external_local_origin_errors {
                    self.consecutive_local.store(0, Ordering::Relaxed);
                }
                None
            }
        }
    }

    /// Ejects the host (counters reset); returns the ejection time.
    pub fn eject(&self, cfg: &OutlierConfig) -> Duration {
        let now = now_ms();
        let returned = self.returned_at.load(Ordering::Relaxed);
        let decay = if returned == 0 {
            0
        } else {
            ((now - returned) / (cfg.interval.as_millis() as u64).max(1)) as u32
        };
        let prev = self.ejections.load(Ordering::Relaxed);
        let n = prev.saturating_sub(decay) + 1;
        self.ejections.store(n, Ordering::Relaxed);
        let time = cfg
            .base_ejection_time
            .saturating_mul(n)
            .min(cfg.max_ejection_time);
        self.ejected_until
            .store(now + time.as_millis() as u64, Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
        self.consecutive_local.store(0, Ordering::Relaxed);
        time
    }

    /// Whether an ejection is enforced for `reason` (the `enforcing_*` percentages).
    pub fn enforced(cfg: &OutlierConfig, reason: Reason) -> bool {
        let pct = match reason {
            Reason::Consecutive5xx => cfg.enforcing_consecutive_5xx,
            Reason::ConsecutiveGatewayFailure => cfg.enforcing_consecutive_gateway_failure,
            Reason::ConsecutiveLocalOriginFailure => cfg.enforcing_consecutive_local_origin_failure,
        };
        pct >= 100 || fastrand::u32(0..100) < pct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OutlierConfig {
        OutlierConfig::compile(&OutlierDetection::default())
    }

    #[test]
    fn consecutive_5xx_fires_at_threshold_and_success_resets() {
        let c = cfg();
        let s = OutlierState::default();
        for _ in 0..4 {
            assert_eq!(s.record(&c, Outcome::Status(500)), None);
        }
        assert_eq!(s.record(&c, Outcome::Status(200)), None);
        for _ in 0..4 {
            assert_eq!(s.record(&c, Outcome::Status(500)), None);
        }
        assert_eq!(
            s.record(&c, Outcome::Status(500)),
            Some(Reason::Consecutive5xx)
        );
    }

    #[test]
    fn gateway_failures_and_local_origin_split() {
        let mut c = cfg();
        c.consecutive_5xx = 100;
        let s = OutlierState::default();
        for _ in 0..5 {
            assert_eq!(
                s.record(&c, Outcome::Status(503)),
                None,
                "gateway not enforced"
            );
        }
        c.enforcing_consecutive_gateway_failure = 100;
        let s = OutlierState::default();
        for _ in 0..4 {
            assert_eq!(s.record(&c, Outcome::Status(503)), None);
        }
        assert_eq!(
            s.record(&c, Outcome::Status(503)),
            Some(Reason::ConsecutiveGatewayFailure)
        );
        c.split_external_local_origin_errors = true;
        let s = OutlierState::default();
        for _ in 0..4 {
            assert_eq!(s.record(&c, Outcome::LocalFailure), None);
        }
        assert_eq!(
            s.record(&c, Outcome::LocalFailure),
            Some(Reason::ConsecutiveLocalOriginFailure)
        );
    }

    #[test]
    fn ejection_time_multiplies() {
        let mut c = cfg();
        c.base_ejection_time = Duration::from_secs(10);
        let s = OutlierState::default();
        assert_eq!(s.eject(&c), Duration::from_secs(10));
        assert!(s.ejected().0);
        assert_eq!(s.eject(&c), Duration::from_secs(20));
    }
}
