//! `weft-bookinfo`: runs bookinfo's services, one per process
//! (`weft-bookinfo productpage|details|reviews|ratings`), or all four in one (`weft-bookinfo all`).
//!
//! Each prints `weft-bookinfo: SERVICE listening on http://ADDR` on stdout once it listens (so
//! `--listen 127.0.0.1:0` can be used), logs to stderr (`RUST_LOG`), and stops on Ctrl-C or
//! SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use weft_demo::details::{self, DetailsConfig};
use weft_demo::productpage::{self, ProductpageConfig};
use weft_demo::ratings::{self, RatingsConfig};
use weft_demo::reviews::{self, ReviewsConfig, ReviewsVersion};
use weft_demo::{Server, Upstream};

#[derive(Parser)]
#[command(
    name = "weft-bookinfo",
    version,
    about = "Istio's bookinfo services, in Rust"
)]
struct Cli {
    #[command(subcommand)]
    service: Service,
}

#[derive(Subcommand)]
enum Service {
    /// The product page (HTML and JSON API); calls details, reviews and ratings.
    Productpage(ProductpageArgs),
    /// The details service.
    Details(ListenArgs<9081>),
    /// A reviews service (v1, v2 or v3); v2 and v3 call ratings.
    Reviews(ReviewsArgs),
    /// The ratings service.
    Ratings(ListenArgs<9083>),
    /// All four in one process: details, reviews and ratings on free local ports, productpage
    /// on --listen, talking to each other directly (no mesh).
    All(AllArgs),
}

#[derive(Args)]
struct ListenArgs<const PORT: u16> {
    /// The address to listen on.
    #[arg(long, env = "BOOKINFO_LISTEN", default_value_t = SocketAddr::from(([127, 0, 0, 1], PORT)))]
    listen: SocketAddr,
}

#[derive(Args)]
struct ProductpageArgs {
    /// The address to listen on.
    #[arg(long, env = "BOOKINFO_LISTEN", default_value = "127.0.0.1:9080")]
    listen: SocketAddr,
    /// Where to reach details (in the mesh: the sidecar's outbound listener).
    #[arg(
        long,
        env = "BOOKINFO_DETAILS",
        default_value = "http://127.0.0.1:9081"
    )]
    details: String,
    /// The Host header sent to details.
    #[arg(long, env = "BOOKINFO_DETAILS_HOST", default_value = "details:9080")]
    details_host: String,
    /// Where to reach reviews.
    #[arg(
        long,
        env = "BOOKINFO_REVIEWS",
        default_value = "http://127.0.0.1:9082"
    )]
    reviews: String,
    /// The Host header sent to reviews.
    #[arg(long, env = "BOOKINFO_REVIEWS_HOST", default_value = "reviews:9080")]
    reviews_host: String,
    /// Where to reach ratings (for /api/v1/products/{id}/ratings).
    #[arg(
        long,
        env = "BOOKINFO_RATINGS",
        default_value = "http://127.0.0.1:9083"
    )]
    ratings: String,
    /// The Host header sent to ratings.
    #[arg(long, env = "BOOKINFO_RATINGS_HOST", default_value = "ratings:9080")]
    ratings_host: String,
    /// Timeout of a details call (`3s`, `500ms`, `2.5`).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    details_timeout: Duration,
    /// Timeout of each reviews try.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    reviews_timeout: Duration,
    /// How many times reviews is tried.
    #[arg(long, default_value_t = 2)]
    reviews_attempts: u32,
    /// Timeout of a ratings call.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    ratings_timeout: Duration,
}

#[derive(Args)]
struct ReviewsArgs {
    /// The address to listen on.
    #[arg(long, env = "BOOKINFO_LISTEN", default_value = "127.0.0.1:9082")]
    listen: SocketAddr,
    /// v1 (no stars), v2 (black stars) or v3 (red stars).
    #[arg(
        long = "version",
        env = "BOOKINFO_REVIEWS_VERSION",
        default_value = "v1"
    )]
    version: ReviewsVersion,
    /// The instance name shown as "Reviews served by: ..." (default reviews-VERSION-HOSTNAME).
    #[arg(long, env = "BOOKINFO_INSTANCE")]
    instance: Option<String>,
    /// The cluster name answered as `clustername`.
    #[arg(long, env = "CLUSTER_NAME", default_value = "weft")]
    cluster: String,
    /// Where to reach ratings.
    #[arg(
        long,
        env = "BOOKINFO_RATINGS",
        default_value = "http://127.0.0.1:9083"
    )]
    ratings: String,
    /// The Host header sent to ratings.
    #[arg(long, env = "BOOKINFO_RATINGS_HOST", default_value = "ratings:9080")]
    ratings_host: String,
    /// Timeout of a ratings call (default: 10s for v2, 2.5s for v3).
    #[arg(long, value_parser = parse_duration)]
    ratings_timeout: Option<Duration>,
}

#[derive(Args)]
struct AllArgs {
    /// The address productpage listens on.
    #[arg(long, env = "BOOKINFO_LISTEN", default_value = "127.0.0.1:9080")]
    listen: SocketAddr,
    /// The reviews version to run.
    #[arg(long, default_value = "v3")]
    reviews_version: ReviewsVersion,
}

/// `3s`, `2500ms`, `1m`, or a number of seconds (`2.5`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?}"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("bad duration {s:?}: {e}"))
}

fn upstream(url: &str, host: &str) -> anyhow::Result<Upstream> {
    Ok(Upstream::new(url, Some(host))?)
}

fn announce(server: &Server) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "weft-bookinfo: {} listening on {}",
        server.name(),
        server.url()
    );
    let _ = stdout.flush();
}

async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn start(service: Service) -> anyhow::Result<Vec<Server>> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let servers = match service {
        Service::Details(args) => vec![details::run(DetailsConfig::new(args.listen)).await?],
        Service::Ratings(args) => vec![ratings::run(RatingsConfig::new(args.listen)).await?],
        Service::Reviews(args) => {
            let mut config = ReviewsConfig::new(
                args.listen,
                args.version,
                upstream(&args.ratings, &args.ratings_host).context("--ratings")?,
            );
            if let Some(instance) = args.instance {
                config.instance = instance;
            }
            config.cluster = args.cluster;
            if let Some(timeout) = args.ratings_timeout {
                config.ratings_timeout = timeout;
            }
            vec![reviews::run(config).await?]
        }
        Service::Productpage(args) => {
            let mut config = ProductpageConfig::new(
                args.listen,
                upstream(&args.details, &args.details_host).context("--details")?,
                upstream(&args.reviews, &args.reviews_host).context("--reviews")?,
                upstream(&args.ratings, &args.ratings_host).context("--ratings")?,
            );
            config.details_timeout = args.details_timeout;
            config.reviews_timeout = args.reviews_timeout;
            config.reviews_attempts = args.reviews_attempts;
            config.ratings_timeout = args.ratings_timeout;
            vec![productpage::run(config).await?]
        }
        Service::All(args) => {
            let ratings = ratings::run(RatingsConfig::new(loopback)).await?;
            let details = details::run(DetailsConfig::new(loopback)).await?;
            let reviews = reviews::run(ReviewsConfig::new(
                loopback,
                args.reviews_version,
                Upstream::at(ratings.addr(), "ratings:9080")?,
            ))
            .await?;
            let productpage = productpage::run(ProductpageConfig::new(
                args.listen,
                Upstream::at(details.addr(), "details:9080")?,
                Upstream::at(reviews.addr(), "reviews:9080")?,
                Upstream::at(ratings.addr(), "ratings:9080")?,
            ))
            .await?;
            vec![ratings, details, reviews, productpage]
        }
    };
    Ok(servers)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let servers = start(cli.service).await?;
    for server in &servers {
        announce(server);
    }
    stopped().await;
    for server in servers {
        server.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(
            parse_duration("2500ms").unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
