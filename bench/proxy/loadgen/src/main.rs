//! loadgen: the HTTP/1.1 client of `bench/proxy.sh`.
//!
//! Two modes over N keep-alive connections:
//! - fixed rate (`--rps R`): each connection is a closed loop that sends one request, waits for the
//!   whole response, then waits for its next slot (R / N per second, slots staggered across
//!   connections). A late response skips the slots it missed instead of bursting to catch up, so
//!   the load stays moderate and the latencies are those of an unsaturated path.
//! - saturation (`--rps 0`): each connection sends its next request as soon as the previous
//!   response is read.
//!
//! Latency is measured per request, from just before the request is written to the end of the
//! response body. Requests that start during the warm-up are not counted. The result is one line of
//! JSON on stdout. With `--watch PID` (repeatable), the CPU time (utime + stime from
//! `/proc/PID/stat`) those processes used during the measurement window, and their summed VmRSS at
//! its end, are reported too, so that CPU and request counts cover exactly the same window.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;

const USAGE: &str = "\
usage: loadgen --url http://HOST:PORT/PATH [options]
  --url URL           target (plain HTTP/1.1, keep-alive)
  --connections N     connections, each a closed loop (default 1)
  --rps R             total target requests/s over all connections; 0 = saturation (default 0)
  --duration SECS     measurement window (default 5)
  --warmup SECS       requests before the window are sent but not counted (default 1)
  --host VALUE        Host header (default: from URL); '{i}' is replaced by 0..host-count-1,
                      rotated per request
  --host-count K      number of Host values for '{i}' (default 1)
  --threads T         runtime threads (default 1: a single-threaded client)
  --watch PID         report CPU seconds and RSS of PID over the window (repeatable, or a,b,c)
  --clk-tck HZ        clock ticks per second of /proc/PID/stat (default 100, `getconf CLK_TCK`)";

/// What one run is asked to do, parsed from the command line.
struct Config {
    /// `host:port` to connect to.
    addr: String,
    /// Request path, with query.
    path: String,
    /// Host header values, rotated per request.
    hosts: Vec<HeaderValue>,
    connections: usize,
    /// Total requests per second over all connections; 0 means saturation.
    rps: f64,
    duration: Duration,
    warmup: Duration,
    threads: usize,
    watch: Vec<u32>,
    clk_tck: f64,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut url = None;
    let mut host = None;
    let mut host_count = 1usize;
    let mut cfg = Config {
        addr: String::new(),
        path: String::new(),
        hosts: Vec::new(),
        connections: 1,
        rps: 0.0,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        threads: 1,
        watch: Vec::new(),
        clk_tck: 100.0,
    };
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: {what}, got {value:?}");
        match flag.as_str() {
            "--url" => url = Some(value.clone()),
            "--connections" => {
                cfg.connections = value.parse().map_err(|_| bad("a count >= 1"))?;
                if cfg.connections == 0 {
                    return Err(bad("a count >= 1"));
                }
            }
            "--rps" => {
                cfg.rps = value.parse().map_err(|_| bad("a number"))?;
                if !(cfg.rps >= 0.0 && cfg.rps.is_finite()) {
                    return Err(bad("a number >= 0"));
                }
            }
            "--duration" => cfg.duration = secs(&value).ok_or_else(|| bad("seconds > 0"))?,
            "--warmup" => {
                cfg.warmup = secs(&value)
                    .or((value == "0").then_some(Duration::ZERO))
                    .ok_or_else(|| bad("seconds"))?
            }
            "--host" => host = Some(value.clone()),
            "--host-count" => {
                host_count = value.parse().map_err(|_| bad("a count >= 1"))?;
                if host_count == 0 {
                    return Err(bad("a count >= 1"));
                }
            }
            "--threads" => {
                cfg.threads = value.parse().map_err(|_| bad("a count >= 1"))?;
                if cfg.threads == 0 {
                    return Err(bad("a count >= 1"));
                }
            }
            "--watch" => {
                for pid in value.split(',').filter(|p| !p.is_empty()) {
                    cfg.watch.push(pid.parse().map_err(|_| bad("process ids"))?);
                }
            }
            "--clk-tck" => {
                cfg.clk_tck = value.parse().map_err(|_| bad("a number > 0"))?;
                if cfg.clk_tck <= 0.0 {
                    return Err(bad("a number > 0"));
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url: only http:// URLs are supported, got {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("--url: no host in {url:?}"));
    }
    cfg.addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    cfg.path = path.to_string();
    let host = host.unwrap_or_else(|| authority.to_string());
    let count = if host.contains("{i}") { host_count } else { 1 };
    for i in 0..count {
        let v = host.replace("{i}", &i.to_string());
        cfg.hosts
            .push(HeaderValue::from_str(&v).map_err(|_| format!("--host: invalid value {v:?}"))?);
    }
    Ok(cfg)
}

fn secs(s: &str) -> Option<Duration> {
    let v: f64 = s.trim_end_matches('s').parse().ok()?;
    (v > 0.0 && v.is_finite()).then(|| Duration::from_secs_f64(v))
}

/// What one connection's loop saw during the measurement window.
#[derive(Default)]
struct ConnStats {
    /// Latency of each successful request, in nanoseconds.
    latencies_ns: Vec<u64>,
    errors: u64,
    /// Connections opened after the first (the server closed one, or a request failed).
    reconnects: u64,
    body_bytes: u64,
    last_error: Option<String>,
}

async fn connect(addr: &str) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    // The connection task ends when the server closes or the sender is dropped.
    tokio::spawn(conn);
    Ok(sender)
}

/// One closed-loop connection. `index` staggers its first slot and its Host rotation.
async fn run_connection(cfg: Arc<Config>, index: usize, start: Instant, end: Instant) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut ticker = (cfg.rps > 0.0).then(|| {
        let period = Duration::from_secs_f64(cfg.connections as f64 / cfg.rps);
        let offset = period.mul_f64(index as f64 / cfg.connections as f64);
        let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
        iv
    });
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    let mut opened = 0u64;
    let mut n = index;
    loop {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        if Instant::now() >= end {
            break;
        }
        let s = match sender.as_mut() {
            Some(s) if !s.is_closed() => s,
            _ => match connect(&cfg.addr).await {
                Ok(s) => {
                    opened += 1;
                    if opened > 1 && Instant::now() >= start {
                        stats.reconnects += 1;
                    }
                    sender.insert(s)
                }
                Err(e) => {
                    if Instant::now() >= start {
                        stats.errors += 1;
                    }
                    stats.last_error = Some(e);
                    sender = None;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if s.ready().await.is_err() {
            // Closed between requests (e.g. the server's keep-alive limit): reconnect.
            sender = None;
            continue;
        }
        let host = cfg.hosts[n % cfg.hosts.len()].clone();
        n += cfg.connections;
        let req = match Request::builder()
            .method(Method::GET)
            .uri(cfg.path.as_str())
            .header(HOST, host)
            .body(Empty::<Bytes>::new())
        {
            Ok(r) => r,
            Err(e) => {
                stats.last_error = Some(format!("building request: {e}"));
                stats.errors += 1;
                break;
            }
        };
        let t0 = Instant::now();
        let outcome = async {
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body.len()))
        }
        .await;
        let elapsed = t0.elapsed();
        let counted = t0 >= start;
        match outcome {
            Ok((status, len)) if status.is_success() => {
                if counted {
                    stats.latencies_ns.push(elapsed.as_nanos() as u64);
                    stats.body_bytes += len as u64;
                }
            }
            Ok((status, _)) => {
                if counted {
                    stats.errors += 1;
                }
                stats.last_error = Some(format!("HTTP status {status}"));
            }
            Err(e) => {
                if counted {
                    stats.errors += 1;
                }
                stats.last_error = Some(format!("request: {e}"));
                sender = None;
            }
        }
    }
    stats
}

/// CPU ticks (utime + stime) of a process, all its threads included.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are space separated.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Field 14 (utime) and 15 (stime) of proc(5) are indexes 11 and 12 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn sum_over(pids: &[u32], f: fn(u32) -> Option<u64>) -> Result<u64, String> {
    pids.iter()
        .map(|&p| f(p).ok_or_else(|| format!("cannot read /proc/{p} (process gone?)")))
        .sum()
}

/// CPU seconds and end-of-window RSS of the watched processes.
struct Watched {
    cpu_s: f64,
    rss_kib: u64,
}

async fn watch(cfg: Arc<Config>, start: Instant, end: Instant) -> Result<Watched, String> {
    tokio::time::sleep_until(start.into()).await;
    let before = sum_over(&cfg.watch, cpu_ticks)?;
    tokio::time::sleep_until(end.into()).await;
    let after = sum_over(&cfg.watch, cpu_ticks)?;
    let rss_kib = sum_over(&cfg.watch, rss_kib)?;
    Ok(Watched {
        cpu_s: after.saturating_sub(before) as f64 / cfg.clk_tck,
        rss_kib,
    })
}

/// Nearest-rank percentile of sorted samples, in microseconds.
fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

async fn run(cfg: Config) -> Result<String, String> {
    let cfg = Arc::new(cfg);
    let start = Instant::now() + cfg.warmup;
    let end = start + cfg.duration;
    let watcher = (!cfg.watch.is_empty()).then(|| tokio::spawn(watch(cfg.clone(), start, end)));
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|i| tokio::spawn(run_connection(cfg.clone(), i, start, end)))
        .collect();
    let mut all = ConnStats::default();
    for t in tasks {
        let s = t
            .await
            .map_err(|e| format!("connection task failed: {e}"))?;
        all.latencies_ns.extend(s.latencies_ns);
        all.errors += s.errors;
        all.reconnects += s.reconnects;
        all.body_bytes += s.body_bytes;
        if s.last_error.is_some() {
            all.last_error = s.last_error;
        }
    }
    let watched = match watcher {
        Some(w) => Some(w.await.map_err(|e| format!("watch task failed: {e}"))??),
        None => None,
    };
    let mut lat = all.latencies_ns;
    lat.sort_unstable();
    let window = cfg.duration.as_secs_f64();
    let count = lat.len() as u64;
    let mean_us = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&v| v as f64).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"mode\":\"{}\",\"connections\":{},\"target_rps\":{},\"duration_s\":{},\
         \"count\":{},\"errors\":{},\"reconnects\":{},\"rps\":{:.1},\"body_bytes\":{},\
         \"mean_us\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}",
        if cfg.rps > 0.0 { "fixed" } else { "saturation" },
        cfg.connections,
        cfg.rps,
        window,
        count,
        all.errors,
        all.reconnects,
        count as f64 / window,
        all.body_bytes,
        mean_us,
        percentile_us(&lat, 50.0),
        percentile_us(&lat, 90.0),
        percentile_us(&lat, 99.0),
        lat.last().map_or(0.0, |&v| v as f64 / 1000.0),
    );
    if let Some(w) = watched {
        let _ = write!(
            out,
            ",\"cpu_s\":{:.3},\"vcpu\":{:.4},\"rss_kib\":{}",
            w.cpu_s,
            w.cpu_s / window,
            w.rss_kib
        );
    }
    if let Some(e) = &all.last_error {
        let _ = write!(out, ",\"last_error\":{}", json_string(e));
    }
    out.push('}');
    if count == 0 {
        return Err(format!(
            "no successful request in the window ({}): {out}",
            all.last_error.as_deref().unwrap_or("no error recorded")
        ));
    }
    Ok(out)
}

fn main() {
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = if cfg.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Config, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_url_and_host_rotation() {
        let c =
            args("--url http://127.0.0.1:8080/x?y --host svc-{i}.bench --host-count 3").unwrap();
        assert_eq!(c.addr, "127.0.0.1:8080");
        assert_eq!(c.path, "/x?y");
        assert_eq!(c.hosts.len(), 3);
        assert_eq!(c.hosts[2], "svc-2.bench");
        let c = args("--url http://localhost").unwrap();
        assert_eq!((c.addr.as_str(), c.path.as_str()), ("localhost:80", "/"));
        assert_eq!(c.hosts[0], "localhost");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(args("--url https://x/").is_err());
        assert!(args("--connections 0 --url http://x/").is_err());
        assert!(args("--rps -1 --url http://x/").is_err());
        assert!(args("--url").is_err());
        assert!(args("--bogus 1").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&v, 50.0), 50.0);
        assert_eq!(percentile_us(&v, 90.0), 90.0);
        assert_eq!(percentile_us(&v, 99.0), 99.0);
        assert_eq!(percentile_us(&[7000], 99.0), 7.0);
        assert_eq!(percentile_us(&[], 50.0), 0.0);
    }

    #[test]
    fn reads_own_proc_stat() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).unwrap() > 0);
    }
}
