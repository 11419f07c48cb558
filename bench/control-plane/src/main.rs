//! Control-plane benchmark driver for `bench/control-plane.sh`.
//!
//! `cp-bench gen DIR SERVICES`: writes a config directory: SERVICES Kubernetes Services in
//! namespace `bench` (port 8080), two Pods each (versions v1 and v2: the endpoints), and a
//! DestinationRule with subsets for `svc-0`, one file per resource as `weft apply` writes them.
//!
//! `cp-bench run --xds ADDR --admin URL --clients N --rounds R [--cp-pid PID] [--distinct]`:
//! connects N lightweight xDS clients (weft-xds `AdsClient`s, state of the world, subscribing as
//! Envoy does: CDS and LDS, then EDS and RDS for the names they carry) in this one process, waits
//! until all have ACKed their first config, then R times: applies a VirtualService change for
//! `svc-0` (every proxy's route configuration `8080` changes) and an endpoint change (a Pod of
//! `svc-1` moves; every proxy's EDS changes), and measures for each proxy the time from the
//! apply request to the proxy receiving (and, in the same callback, ACKing) the new config.
//! With `--distinct`, client i is the sidecar of pod `svc-(i/2)-(i%2)` (its own IP and labels,
//! so every proxy gets its own translation); without, all clients are sidecars of client-only
//! workloads in namespace `bench` (the same translation, computed once).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weft_control::server::client::AdminClient;
use weft_control::translate::envoy::unpack;
use weft_xds::client::{AdsClient, ClientConfig, Subscription, Update};
use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use weft_xds::envoy::config::core::v3::Node;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::config::listener::v3::filter::ConfigType;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::google::protobuf::{Struct, Value, value::Kind as PbKind};
use weft_xds::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

fn pod_ip(p: usize) -> String {
    format!("10.{}.{}.{}", 100 + p / 65_536, (p / 256) % 256, p % 256)
}

fn moved_ip(p: usize, round: usize) -> String {
    format!("10.{}.{}.{}", 150 + round % 50, (p / 256) % 256, p % 256)
}

fn pod_yaml(svc: usize, r: usize, ip: &str) -> String {
    let v = if r == 0 { "v1" } else { "v2" };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: svc-{svc}-{r}\n  namespace: bench\n  labels: {{app: svc-{svc}, version: {v}}}\nspec:\n  containers: [{{name: app, image: bench}}]\nstatus:\n  podIP: {ip}\n"
    )
}

fn generate(dir: &str, services: usize) -> std::io::Result<()> {
    let d = std::path::Path::new(dir);
    std::fs::create_dir_all(d)?;
    for i in 0..services {
        std::fs::write(
            d.join(format!("service-bench-svc-{i}.yaml")),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: bench\nspec:\n  selector: {{app: svc-{i}}}\n  ports:\n  - {{name: http, port: 8080}}\n"
            ),
        )?;
        for r in 0..2 {
            std::fs::write(
                d.join(format!("pod-bench-svc-{i}-{r}.yaml")),
                pod_yaml(i, r, &pod_ip(2 * i + r)),
            )?;
        }
    }
    std::fs::write(
        d.join("destinationrule-bench-svc-0.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: svc-0\n  namespace: bench\nspec:\n  host: svc-0\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n",
    )?;
    Ok(())
}

fn vs_yaml(round: usize) -> String {
    let w = 90 - (round % 8) * 10;
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: svc-0\n  namespace: bench\nspec:\n  hosts: [svc-0]\n  http:\n  - route:\n    - destination: {{host: svc-0, subset: v1}}\n      weight: {w}\n    - destination: {{host: svc-0, subset: v2}}\n      weight: {}\n",
        100 - w
    )
}

const WATCH_NONE: u8 = 0;
const WATCH_RDS: u8 = 1;
const WATCH_EDS: u8 = 2;

/// What every client callback reads and writes.
struct Shared {
    base: Instant,
    /// Nanoseconds since `base` when the current round's change was sent; 0 when idle.
    t0: AtomicU64,
    watched: AtomicU8,
    /// Per client: nanoseconds since `base` of its first watched update in this round.
    done: Vec<AtomicU64>,
    done_count: AtomicUsize,
    /// Updates of the unwatched types during a round (should be none).
    other: AtomicUsize,
    /// Client 0's config, per type (CDS, EDS, LDS, RDS): resources and encoded bytes.
    sizes: [(AtomicUsize, AtomicUsize); 4],
}

const SIZED: [&str; 4] = [
    CLUSTER,
    CLUSTER_LOAD_ASSIGNMENT,
    LISTENER,
    ROUTE_CONFIGURATION,
];

fn rds_names(l: &Listener) -> Vec<String> {
    let mut out = Vec::new();
    for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &fc.filters {
            if let Some(ConfigType::TypedConfig(any)) = &f.config_type
                && let Some(m) = unpack::<hcm::HttpConnectionManager>(any)
                && let Some(hcm::http_connection_manager::RouteSpecifier::Rds(r)) =
                    m.route_specifier
            {
                out.push(r.route_config_name);
            }
        }
    }
    out
}

fn labels(app: &str, version: &str) -> Struct {
    let s = |v: &str| Value {
        kind: Some(PbKind::StringValue(v.to_string())),
    };
    let labels = Struct {
        fields: [
            ("app".to_string(), s(app)),
            ("version".to_string(), s(version)),
        ]
        .into(),
    };
    Struct {
        fields: [(
            "LABELS".to_string(),
            Value {
                kind: Some(PbKind::StructValue(labels)),
            },
        )]
        .into(),
    }
}

fn start_client(
    xds: &str,
    i: usize,
    distinct: bool,
    delta: bool,
    shared: Arc<Shared>,
) -> AdsClient {
    let (id, md) = if distinct {
        let (svc, r) = (i / 2, i % 2);
        (
            format!(
                "sidecar~{}~svc-{svc}-{r}.bench~bench.svc.cluster.local",
                pod_ip(2 * svc + r)
            ),
            labels(&format!("svc-{svc}"), if r == 0 { "v1" } else { "v2" }),
        )
    } else {
        (
            format!(
                "sidecar~10.200.{}.{}~client-{i}.bench~bench.svc.cluster.local",
                i / 256,
                i % 256
            ),
            labels("client", "v1"),
        )
    };
    let node = Node {
        id,
        metadata: Some(md),
        ..Default::default()
    };
    let mut cfg = ClientConfig::new(format!("http://{xds}"), node)
        .backoff(Duration::from_millis(200), Duration::from_secs(5));
    if delta {
        cfg = cfg.delta();
    }
    let mut client = AdsClient::new(cfg).expect("valid address");
    let subs = client.subscriber();
    client.subscribe(CLUSTER, Subscription::Wildcard);
    client.subscribe(LISTENER, Subscription::Wildcard);
    let _ = client.start(move |u: &Update<'_>| {
        if u.type_url == CLUSTER {
            let eds: Vec<String> = u
                .resources
                .values()
                .filter_map(unpack::<Cluster>)
                .filter(|c| {
                    c.cluster_discovery_type
                        == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
                })
                .map(|c| c.name)
                .collect();
            subs.subscribe(CLUSTER_LOAD_ASSIGNMENT, Subscription::names(eds));
        }
        if u.type_url == LISTENER {
            let names: Vec<String> = u
                .resources
                .values()
                .filter_map(unpack::<Listener>)
                .flat_map(|l| rds_names(&l))
                .collect();
            subs.subscribe(ROUTE_CONFIGURATION, Subscription::names(names));
        }
        if i == 0
            && let Some(k) = SIZED.iter().position(|t| *t == u.type_url)
        {
            let bytes: usize = u.resources.values().map(|a| a.value.len()).sum();
            shared.sizes[k].0.store(u.resources.len(), Ordering::SeqCst);
            shared.sizes[k].1.store(bytes, Ordering::SeqCst);
        }
        let t0 = shared.t0.load(Ordering::SeqCst);
        if t0 != 0 {
            let watched = match shared.watched.load(Ordering::SeqCst) {
                WATCH_RDS => ROUTE_CONFIGURATION,
                WATCH_EDS => CLUSTER_LOAD_ASSIGNMENT,
                _ => "",
            };
            if u.type_url == watched {
                let now = shared.base.elapsed().as_nanos() as u64;
                if shared.done[i]
                    .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    shared.done_count.fetch_add(1, Ordering::SeqCst);
                }
            } else {
                shared.other.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    });
    client
}

fn synced(c: &AdsClient) -> bool {
    let s = c.status();
    [
        CLUSTER,
        LISTENER,
        CLUSTER_LOAD_ASSIGNMENT,
        ROUTE_CONFIGURATION,
    ]
    .iter()
    .all(|t| s.get(t).is_some_and(|x| x.acks >= 1))
}

/// CPU seconds used and RSS of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    cpu_s: f64,
    rss_mb: f64,
    hwm_mb: f64,
}

fn sample(pid: Option<u32>, ticks: f64) -> ProcSample {
    let Some(pid) = pid else {
        return ProcSample::default();
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let cpu = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    ProcSample {
        cpu_s: (cpu(11) + cpu(12)) / ticks,
        rss_mb: kb("VmRSS:") / 1024.0,
        hwm_mb: kb("VmHWM:") / 1024.0,
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Args {
    xds: String,
    admin: String,
    clients: usize,
    rounds: usize,
    cp_pid: Option<u32>,
    distinct: bool,
    delta: bool,
    ticks: f64,
}

fn parse_args(v: &[String]) -> Result<Args, String> {
    let mut a = Args {
        xds: "127.0.0.1:15010".into(),
        admin: "http://127.0.0.1:15014".into(),
        clients: 2000,
        rounds: 5,
        cp_pid: None,
        distinct: false,
        delta: false,
        ticks: 100.0,
    };
    let mut it = v.iter();
    while let Some(k) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--xds" => a.xds = val()?,
            "--admin" => a.admin = val()?,
            "--clients" => a.clients = val()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--rounds" => a.rounds = val()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--cp-pid" => a.cp_pid = Some(val()?.parse().map_err(|e| format!("--cp-pid: {e}"))?),
            "--clk-tck" => a.ticks = val()?.parse().map_err(|e| format!("--clk-tck: {e}"))?,
            "--distinct" => a.distinct = true,
            "--delta" => a.delta = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

struct RoundResult {
    name: &'static str,
    latencies_ms: Vec<f64>,
    missing: usize,
    other: usize,
    cpu_s: f64,
}

async fn round(
    name: &'static str,
    watched: u8,
    shared: &Arc<Shared>,
    admin: &AdminClient,
    body: String,
    args: &Args,
) -> RoundResult {
    for d in &shared.done {
        d.store(0, Ordering::SeqCst);
    }
    shared.done_count.store(0, Ordering::SeqCst);
    shared.other.store(0, Ordering::SeqCst);
    shared.watched.store(watched, Ordering::SeqCst);
    let cpu0 = sample(args.cp_pid, args.ticks).cpu_s;
    let t0 = shared.base.elapsed().as_nanos() as u64;
    shared.t0.store(t0, Ordering::SeqCst);
    match admin.post("/apply", body).await {
        Ok(a) if a.ok() => {}
        Ok(a) => eprintln!("apply refused: {}", a.body),
        Err(e) => eprintln!("apply failed: {e}"),
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.done_count.load(Ordering::SeqCst) < args.clients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Let stragglers of other types show up before counting them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.t0.store(0, Ordering::SeqCst);
    let cpu_s = sample(args.cp_pid, args.ticks).cpu_s - cpu0;
    let mut lat: Vec<f64> = shared
        .done
        .iter()
        .map(|d| d.load(Ordering::SeqCst))
        .filter(|&d| d != 0)
        .map(|d| (d.saturating_sub(t0)) as f64 / 1e6)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    RoundResult {
        name,
        missing: args.clients - lat.len(),
        latencies_ms: lat,
        other: shared.other.load(Ordering::SeqCst),
        cpu_s,
    }
}

async fn run(args: Args) {
    let admin = AdminClient::new(&args.admin).expect("admin URL");
    let shared = Arc::new(Shared {
        base: Instant::now(),
        t0: AtomicU64::new(0),
        watched: AtomicU8::new(WATCH_NONE),
        done: (0..args.clients).map(|_| AtomicU64::new(0)).collect(),
        done_count: AtomicUsize::new(0),
        other: AtomicUsize::new(0),
        sizes: Default::default(),
    });
    let idle = sample(args.cp_pid, args.ticks);
    eprintln!(
        "control plane before clients: RSS {:.0} MB, CPU so far {:.2} s",
        idle.rss_mb, idle.cpu_s
    );
    let start = Instant::now();
    let mut clients: Vec<AdsClient> = Vec::with_capacity(args.clients);
    let batch = 100;
    while clients.len() < args.clients {
        let from = clients.len();
        let to = (from + batch).min(args.clients);
        for i in from..to {
            clients.push(start_client(
                &args.xds,
                i,
                args.distinct,
                args.delta,
                shared.clone(),
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        while !clients[from..to].iter().all(synced) {
            if Instant::now() > deadline {
                eprintln!("clients {from}..{to} did not sync in 300 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let connect_s = start.elapsed().as_secs_f64();
    let after_connect = sample(args.cp_pid, args.ticks);
    eprintln!(
        "{} clients connected and synced in {connect_s:.1} s; control plane RSS {:.0} MB (peak {:.0} MB), CPU {:.1} s",
        args.clients,
        after_connect.rss_mb,
        after_connect.hwm_mb,
        after_connect.cpu_s - idle.cpu_s
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut results: Vec<RoundResult> = Vec::new();
    for r in 0..args.rounds {
        let vs = round(
            "VirtualService",
            WATCH_RDS,
            &shared,
            &admin,
            vs_yaml(r),
            &args,
        )
        .await;
        eprintln!(
            "round {r} VirtualService: p50 {:.0} ms, max {:.0} ms, missing {}, other types {}",
            pct(&vs.latencies_ms, 0.5),
            pct(&vs.latencies_ms, 1.0),
            vs.missing,
            vs.other
        );
        results.push(vs);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ep = round(
            "endpoint",
            WATCH_EDS,
            &shared,
            &admin,
            pod_yaml(1, 0, &moved_ip(2, r)),
            &args,
        )
        .await;
        eprintln!(
            "round {r} endpoint: p50 {:.0} ms, max {:.0} ms, missing {}, other types {}",
            pct(&ep.latencies_ms, 0.5),
            pct(&ep.latencies_ms, 1.0),
            ep.missing,
            ep.other
        );
        results.push(ep);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let end = sample(args.cp_pid, args.ticks);
    println!(
        "| change | proxies | rounds | p50 ms | p99 ms | max ms | not converged | other types pushed | CP CPU s per change |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for name in ["VirtualService", "endpoint"] {
        let rs: Vec<&RoundResult> = results.iter().filter(|r| r.name == name).collect();
        let mut all: Vec<f64> = rs.iter().flat_map(|r| r.latencies_ms.clone()).collect();
        all.sort_by(|a, b| a.total_cmp(b));
        let missing: usize = rs.iter().map(|r| r.missing).sum();
        let other: usize = rs.iter().map(|r| r.other).sum();
        let cpu: f64 = rs.iter().map(|r| r.cpu_s).sum::<f64>() / rs.len().max(1) as f64;
        println!(
            "| {name} | {} | {} | {:.0} | {:.0} | {:.0} | {missing} | {other} | {cpu:.2} |",
            args.clients,
            rs.len(),
            pct(&all, 0.5),
            pct(&all, 0.99),
            pct(&all, 1.0),
        );
    }
    println!();
    println!(
        "Connect and first sync of {} proxies: {connect_s:.1} s. Control plane: RSS {:.0} MB before clients, {:.0} MB with them synced, {:.0} MB at the end (peak {:.0} MB); CPU {:.1} s for the first sync.",
        args.clients,
        idle.rss_mb,
        after_connect.rss_mb,
        end.rss_mb,
        end.hwm_mb,
        after_connect.cpu_s - idle.cpu_s
    );
    let sizes: Vec<String> = ["CDS", "EDS", "LDS", "RDS"]
        .iter()
        .zip(&shared.sizes)
        .map(|(t, (n, b))| {
            format!(
                "{t} {} resources, {:.0} KB",
                n.load(Ordering::SeqCst),
                b.load(Ordering::SeqCst) as f64 / 1024.0
            )
        })
        .collect();
    println!();
    println!("Config of one proxy: {}.", sizes.join("; "));
    for c in clients {
        drop(c);
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("gen") => {
            let (Some(dir), Some(n)) = (argv.get(1), argv.get(2).and_then(|n| n.parse().ok()))
            else {
                eprintln!("usage: cp-bench gen DIR SERVICES");
                std::process::exit(64);
            };
            if let Err(e) = generate(dir, n) {
                eprintln!("cannot write {dir}: {e}");
                std::process::exit(1);
            }
        }
        Some("run") => {
            let args = match parse_args(&argv[1..]) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(64);
                }
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(run(args));
        }
        _ => {
            eprintln!(
                "usage: cp-bench gen DIR SERVICES | cp-bench run [--xds ADDR] [--admin URL] [--clients N] [--rounds R] [--cp-pid PID] [--clk-tck HZ] [--distinct] [--delta]"
            );
            std::process::exit(64);
        }
    }
}
