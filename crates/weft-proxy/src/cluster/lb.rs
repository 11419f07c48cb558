//! Load balancing over an endpoint set: priority levels with overprovisioned failover,
//! optional locality weighting, and the host pickers (weighted round robin, random, least
//! request with N choices, ring hash, Maglev). Everything the request path touches is an
//! atomic or an immutable table built when the endpoints change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use xxhash_rust::xxh64::xxh64;

use super::{Endpoint, LbPolicy};
use crate::stats::ClusterStats;

/// Load-balancer settings that shape the tables of an endpoint set.
#[derive(Clone, Debug)]
pub struct LbSettings {
    /// The policy.
    pub policy: LbPolicy,
    /// `least_request_lb_config.choice_count` (default 2).
    pub choice_count: u32,
    /// `ring_hash_lb_config.minimum_ring_size` (default 1024).
    pub min_ring_size: u64,
    /// `ring_hash_lb_config.maximum_ring_size` (default 8M).
    pub max_ring_size: u64,
    /// `maglev_lb_config.table_size` (default 65537, a prime).
    pub maglev_table_size: u64,
    /// `common_lb_config.locality_weighted_lb_config`: pick a locality by weight first.
    pub locality_weighted: bool,
    /// `load_assignment.policy.overprovisioning_factor` in percent (default 140).
    pub overprovisioning: u32,
    /// `common_lb_config.healthy_panic_threshold` in percent (default 50; 0 disables): below
    /// it, a priority level's hosts all take traffic, healthy or not.
    pub panic_threshold: u32,
}

impl Default for LbSettings {
    fn default() -> Self {
        LbSettings {
            policy: LbPolicy::RoundRobin,
            choice_count: 2,
            min_ring_size: 1024,
            max_ring_size: 8 * 1024 * 1024,
            maglev_table_size: 65537,
            locality_weighted: false,
            overprovisioning: 140,
            panic_threshold: 50,
        }
    }
}

/// What a request tells the load balancer.
#[derive(Debug, Default)]
pub struct PickCtx<'a> {
    /// The request hash from the route's `hash_policy` (ring hash, Maglev).
    pub hash: Option<u64>,
    /// Hosts to avoid (`retry_host_predicate` `previous_hosts`).
    pub exclude: &'a [SocketAddr],
    /// `host_selection_retry_max_attempts` (default 1) when `exclude` is not empty.
    pub max_attempts: u32,
    /// Where the downstream connection was going (`SO_ORIGINAL_DST`, or the
    /// `x-envoy-original-dst-host` header): the host of an `ORIGINAL_DST` cluster.
    pub original_dst: Option<SocketAddr>,
}

/// The endpoints of one priority level.
#[derive(Debug)]
struct Level {
    /// Indices into the set's endpoints.
    hosts: Vec<u32>,
    /// Smooth weighted round-robin order (indices into the set's endpoints).
    schedule: Vec<u32>,
    /// Running sum of the weights of `hosts`, for weighted random picks.
    cumulative: Vec<u64>,
    cursor: AtomicUsize,
    /// Localities with their weights, when locality weighting is on.
    localities: Vec<Locality>,
    /// Ring or Maglev table, for hash policies.
    table: Option<HashTable>,
    /// Hosts marked unhealthy in the configuration when the set was built.
    static_unhealthy: u64,
}

#[derive(Debug)]
struct Locality {
    weight: u32,
    hosts: Vec<u32>,
    schedule: Vec<u32>,
    cursor: AtomicUsize,
}

#[derive(Debug)]
enum HashTable {
    /// Sorted (hash, endpoint index).
    Ring(Vec<(u64, u32)>),
    /// Endpoint index per slot.
    Maglev(Vec<u32>),
}

/// The endpoints of a cluster at one moment, with the load-balancing tables precomputed.
#[derive(Debug)]
pub struct EndpointSet {
    /// All endpoints, healthy or not, in configuration order.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Priority levels in ascending priority (0 first); empty levels are left out.
    levels: Vec<Level>,
    settings: LbSettings,
}

impl EndpointSet {
    /// Builds the tables for `endpoints` (which carry priority, locality and weight).
    pub(crate) fn new(endpoints: Vec<Arc<Endpoint>>, settings: &LbSettings) -> Self {
        let mut prios: Vec<u32> = endpoints.iter().map(|e| e.priority).collect();
        prios.sort_unstable();
        prios.dedup();
        let levels = prios
            .iter()
            .map(|p| {
                let hosts: Vec<u32> = (0..endpoints.len() as u32)
                    .filter(|i| endpoints[*i as usize].priority == *p)
                    .collect();
                build_level(&endpoints, hosts, settings)
            })
            .collect();
        EndpointSet {
            endpoints,
            levels,
            settings: settings.clone(),
        }
    }

    /// Picks an available endpoint for one request; `None` means "no healthy upstream".
    pub fn pick(&self, stats: &ClusterStats, ctx: &PickCtx<'_>) -> Option<Arc<Endpoint>> {
        let attempts = if ctx.exclude.is_empty() {
            1
        } else {
            ctx.max_attempts + 1
        };
        let mut last = None;
        for attempt in 0..attempts {
            let ep = self.pick_once(stats, ctx.hash, attempt)?;
            if !ctx.exclude.contains(&ep.addr) {
                return Some(ep);
            }
            last = Some(ep);
        }
        last
    }

    fn pick_once(
        &self,
        stats: &ClusterStats,
        hash: Option<u64>,
        attempt: u32,
    ) -> Option<Arc<Endpoint>> {
        let (level, up) = self.choose_level(stats, hash)?;
        let panic = self.in_panic(level, up, stats);
        // In panic every host takes traffic; `available` still runs first, so that ejected
        // hosts whose time is over are returned to service.
        let avail = |i: u32| self.endpoints[i as usize].available(stats) || panic;
        let idx = if !level.localities.is_empty() {
            self.pick_in_locality(level, stats, panic)?
        } else {
            match (self.settings.policy, &level.table, hash) {
                (LbPolicy::RingHash | LbPolicy::Maglev, Some(t), Some(h)) => {
                    t.lookup(h, attempt, avail)?
                }
                (LbPolicy::RoundRobin, ..) => round_robin(&level.schedule, &level.cursor, avail)?,
                (LbPolicy::LeastRequest, ..) => self.least_request(level, stats, panic)?,
                _ => self.random(level, avail)?,
            }
        };
        Some(Arc::clone(&self.endpoints[idx as usize]))
    }

    /// Envoy's priority load: each level takes `overprovisioning × healthy share` of the
    /// traffic (at most 100%) and the rest spills to the next level; when all levels together
    /// are below 100% the loads are scaled up. Only clusters with several levels pay for it.
    fn choose_level(
        &self,
        stats: &ClusterStats,
        hash: Option<u64>,
    ) -> Option<(&Level, Option<u64>)> {
        if self.levels.len() <= 1 {
            return self.levels.first().map(|l| (l, None));
        }
        let ups: Vec<u64> = self
            .levels
            .iter()
            .map(|l| {
                l.hosts
                    .iter()
                    .filter(|i| self.endpoints[**i as usize].available(stats))
                    .count() as u64
            })
            .collect();
        let health: Vec<u64> = self
            .levels
            .iter()
            .zip(&ups)
            .map(|(l, up)| {
                (up * u64::from(self.settings.overprovisioning) / l.hosts.len().max(1) as u64)
                    .min(100)
            })
            .collect();
        let total: u64 = health.iter().sum();
        if total == 0 {
            return self.levels.first().map(|l| (l, Some(ups[0])));
        }
        let draw = hash.map_or_else(|| fastrand::u64(0..100), |h| h % 100);
        let mut acc = 0u64;
        let mut left = 100u64;
        for (i, h) in health.iter().enumerate() {
            let load = if total < 100 {
                h * 100 / total
            } else {
                let l = (*h).min(left);
                left -= l;
                l
            };
            acc += load;
            if draw < acc {
                return Some((&self.levels[i], Some(ups[i])));
            }
        }
        self.levels
            .iter()
            .zip(&health)
            .zip(&ups)
            .rfind(|((_, h), _)| **h > 0)
            .map(|((l, _), up)| (l, Some(*up)))
    }

    /// Envoy's panic mode: a level whose available hosts are below `healthy_panic_threshold`
    /// sends traffic to all of its hosts. A single-level set counts its unavailable hosts from
    /// the configuration and the cluster's active ejections, without a scan.
    fn in_panic(&self, level: &Level, up: Option<u64>, stats: &ClusterStats) -> bool {
        let threshold = u64::from(self.settings.panic_threshold);
        if threshold == 0 {
            return false;
        }
        let total = level.hosts.len() as u64;
        let up = up.unwrap_or_else(|| {
            let ejected = stats
                .outlier_ejections_active
                .load(std::sync::atomic::Ordering::Relaxed);
            total.saturating_sub(level.static_unhealthy + ejected)
        });
        up * 100 < threshold * total
    }

    fn pick_in_locality(&self, level: &Level, stats: &ClusterStats, panic: bool) -> Option<u32> {
        let avail = |i: &u32| self.endpoints[*i as usize].available(stats) || panic;
        let effective: Vec<u64> = level
            .localities
            .iter()
            .map(|l| {
                let up = l.hosts.iter().filter(|i| avail(i)).count() as u64;
                let health = (up * u64::from(self.settings.overprovisioning)
                    / l.hosts.len().max(1) as u64)
                    .min(100);
                u64::from(l.weight) * health
            })
            .collect();
        let total: u64 = effective.iter().sum();
        if total == 0 {
            return None;
        }
        let mut draw = fastrand::u64(0..total);
        for (l, w) in level.localities.iter().zip(&effective) {
            if draw < *w {
                return round_robin(&l.schedule, &l.cursor, |i| avail(&i));
            }
            draw -= w;
        }
        None
    }

    fn random(&self, level: &Level, avail: impl Fn(u32) -> bool) -> Option<u32> {
        let total = *level.cumulative.last()?;
        let draw = fastrand::u64(0..total);
        let first = level.cumulative.partition_point(|c| *c <= draw);
        let n = level.hosts.len();
        (0..n)
            .map(|i| level.hosts[(first + i) % n])
            .find(|i| avail(*i))
    }

    /// N random choices (`choice_count`, weighted by endpoint weight), the one with the fewest
    /// requests in flight relative to its weight wins.
    fn least_request(&self, level: &Level, stats: &ClusterStats, panic: bool) -> Option<u32> {
        let total = *level.cumulative.last()?;
        let mut best: Option<(u32, u64, u64)> = None;
        for _ in 0..self.settings.choice_count.max(1) {
            let draw = fastrand::u64(0..total);
            let i = level.cumulative.partition_point(|c| *c <= draw);
            let Some(&idx) = level.hosts.get(i) else {
                continue;
            };
            let ep = &self.endpoints[idx as usize];
            if !ep.available(stats) && !panic {
                continue;
            }
            let active = ep.active_requests.load(Ordering::Relaxed);
            let w = u64::from(ep.weight);
            // active_a / w_a < active_b / w_b, without division.
            if best.is_none_or(|(_, ba, bw)| active * bw < ba * w) {
                best = Some((idx, active, w));
            }
        }
        best.map(|b| b.0).or_else(|| {
            round_robin(&level.schedule, &level.cursor, |i| {
                self.endpoints[i as usize].available(stats) || panic
            })
        })
    }
}

fn round_robin(schedule: &[u32], cursor: &AtomicUsize, avail: impl Fn(u32) -> bool) -> Option<u32> {
    let len = schedule.len();
    if len == 0 {
        return None;
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed);
    (0..len)
        .map(|i| schedule[(start + i) % len])
        .find(|i| avail(*i))
}

fn build_level(endpoints: &[Arc<Endpoint>], hosts: Vec<u32>, s: &LbSettings) -> Level {
    let weights: Vec<u32> = hosts
        .iter()
        .map(|i| endpoints[*i as usize].weight)
        .collect();
    let schedule = smooth_weighted_schedule(&weights)
        .into_iter()
        .map(|k| hosts[k as usize])
        .collect();
    let mut sum = 0u64;
    let cumulative = weights
        .iter()
        .map(|w| {
            sum += u64::from(*w);
            sum
        })
        .collect();
    let mut localities = Vec::new();
    if s.locality_weighted {
        let mut ids: Vec<(u32, u32)> = hosts
            .iter()
            .map(|i| {
                let e = &endpoints[*i as usize];
                (e.locality, e.locality_weight)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup_by_key(|x| x.0);
        for (id, weight) in ids {
            if weight == 0 {
                continue;
            }
            let lh: Vec<u32> = hosts
                .iter()
                .copied()
                .filter(|i| endpoints[*i as usize].locality == id)
                .collect();
            let lw: Vec<u32> = lh.iter().map(|i| endpoints[*i as usize].weight).collect();
            localities.push(Locality {
                weight,
                schedule: smooth_weighted_schedule(&lw)
                    .into_iter()
                    .map(|k| lh[k as usize])
                    .collect(),
                hosts: lh,
                cursor: AtomicUsize::new(0),
            });
        }
    }
    let table = match s.policy {
        LbPolicy::RingHash => Some(build_ring(endpoints, &hosts, s)),
        LbPolicy::Maglev => Some(build_maglev(endpoints, &hosts, s.maglev_table_size)),
        _ => None,
    };
    let static_unhealthy = hosts
        .iter()
        .filter(|i| {
            !endpoints[**i as usize]
                .healthy
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .count() as u64;
    Level {
        static_unhealthy,
        hosts,
        schedule,
        cumulative,
        cursor: AtomicUsize::new(fastrand::usize(..)),
        localities,
        table,
    }
}

/// The key a host is hashed by on a ring or Maglev table.
fn host_key(e: &Endpoint) -> String {
    e.addr.to_string()
}

/// Ketama-style ring: each host gets points in proportion to its weight, so that the ring holds
/// at least `minimum_ring_size` points (at most `maximum_ring_size`).
fn build_ring(endpoints: &[Arc<Endpoint>], hosts: &[u32], s: &LbSettings) -> HashTable {
    if hosts.is_empty() {
        return HashTable::Ring(Vec::new());
    }
    let total: u64 = hosts
        .iter()
        .map(|i| u64::from(endpoints[*i as usize].weight))
        .sum();
    let min_weight = hosts
        .iter()
        .map(|i| endpoints[*i as usize].weight as f64 / total as f64)
        .fold(f64::MAX, f64::min);
    let scale =
        ((s.min_ring_size as f64 * min_weight).ceil() / min_weight).min(s.max_ring_size as f64);
    let mut ring = Vec::with_capacity(scale as usize + hosts.len());
    let mut current = 0.0;
    let mut target = 0.0;
    for i in hosts {
        let e = &endpoints[*i as usize];
        let key = host_key(e);
        target += scale * e.weight as f64 / total as f64;
        let mut n = 0u64;
        while current < target {
            ring.push((xxh64(format!("{key}_{n}").as_bytes(), 0), *i));
            n += 1;
            current += 1.0;
        }
    }
    ring.sort_unstable();
    HashTable::Ring(ring)
}

/// Weighted Maglev (the permutation fill of Eisenbud et al., with Envoy's weighting: a host of
/// weight w takes a turn every max_weight / w rounds).
fn build_maglev(endpoints: &[Arc<Endpoint>], hosts: &[u32], size: u64) -> HashTable {
    if hosts.is_empty() {
        return HashTable::Maglev(Vec::new());
    }
    let size = size.max(hosts.len() as u64);
    let max_w = hosts
        .iter()
        .map(|i| u64::from(endpoints[*i as usize].weight))
        .max()
        .unwrap_or(1);
    struct Entry {
        idx: u32,
        offset: u64,
        skip: u64,
        weight: u64,
        target: u64,
        next: u64,
    }
    let mut entries: Vec<Entry> = hosts
        .iter()
        .map(|i| {
            let e = &endpoints[*i as usize];
            let key = host_key(e);
            Entry {
                idx: *i,
                offset: xxh64(key.as_bytes(), 0) % size,
                skip: xxh64(key.as_bytes(), 1) % (size - 1).max(1) + 1,
                weight: u64::from(e.weight),
                target: 0,
                next: 0,
            }
        })
        .collect();
    let mut table = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    let mut iteration = 1u64;
    while filled < size {
        for e in entries.iter_mut() {
            if filled >= size {
                break;
            }
            if iteration * e.weight < e.target {
                continue;
            }
            e.target += max_w;
            let mut c = (e.offset + e.skip * e.next) % size;
            while table[c as usize] != u32::MAX {
                e.next += 1;
                c = (e.offset + e.skip * e.next) % size;
            }
            table[c as usize] = e.idx;
            e.next += 1;
            filled += 1;
        }
        iteration += 1;
    }
    HashTable::Maglev(table)
}

impl HashTable {
    /// The host for `hash`; unavailable hosts are passed over (walking the ring or table
    /// forward), and `attempt` > 0 moves on to the next distinct host (host selection retries).
    fn lookup(&self, hash: u64, attempt: u32, avail: impl Fn(u32) -> bool) -> Option<u32> {
        let (len, start): (usize, usize) = match self {
            HashTable::Ring(r) => {
                if r.is_empty() {
                    return None;
                }
                let i = r.partition_point(|(h, _)| *h < hash);
                (r.len(), if i == r.len() { 0 } else { i })
            }
            HashTable::Maglev(t) => {
                if t.is_empty() {
                    return None;
                }
                (t.len(), (hash % t.len() as u64) as usize)
            }
        };
        let at = |k: usize| match self {
            HashTable::Ring(r) => r[k % len].1,
            HashTable::Maglev(t) => t[k % len],
        };
        let mut skipped = 0;
        let mut last = u32::MAX;
        for k in start..start + len {
            let idx = at(k);
            if idx == last || !avail(idx) {
                continue;
            }
            last = idx;
            if skipped == attempt {
                return Some(idx);
            }
            skipped += 1;
        }
        (last != u32::MAX).then_some(last)
    }
}

/// nginx's smooth weighted round robin, unrolled into a schedule of at most 4096 slots (weights
/// are divided by their gcd first, and scaled down when the sum is larger). Entries index
/// `weights`.
pub(crate) fn smooth_weighted_schedule(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights
        .iter()
        .fold(0u64, |g, w| gcd(g, u64::from(*w)))
        .max(1);
    let mut w: Vec<u64> = weights.iter().map(|x| u64::from(*x) / g).collect();
    let sum: u64 = w.iter().sum();
    const MAX: u64 = 4096;
    if sum > MAX {
        for x in &mut w {
            *x = (*x * MAX / sum).max(1);
        }
    }
    let sum: i64 = w.iter().map(|x| *x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_interleaves_by_weight() {
        let s = smooth_weighted_schedule(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), 5);
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_schedule(&[10, 10]), vec![0, 1]);
    }
}
