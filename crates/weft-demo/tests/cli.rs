//! The `weft-bookinfo` binary: starts a service, says where it listens, answers.

mod common;

use std::process::Stdio;

use common::get;
use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `weft-bookinfo ARGS` and reads the `listening on URL` lines it prints.
async fn spawn(args: &[&str], services: usize) -> (Child, Vec<(String, String)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft-bookinfo"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn weft-bookinfo");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut listening = Vec::new();
    while listening.len() < services {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("announced in time")
            .expect("stdout")
            .expect("a line");
        let rest = line.strip_prefix("weft-bookinfo: ").expect(&line);
        let (name, url) = rest.split_once(" listening on ").expect(&line);
        listening.push((name.to_owned(), url.to_owned()));
    }
    (child, listening)
}

#[tokio::test]
async fn details_binary_serves_details() {
    let (mut child, listening) = spawn(&["details", "--listen", "127.0.0.1:0"], 1).await;
    assert_eq!(listening[0].0, "details");
    let resp = get(&format!("{}/details/0", listening[0].1)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json()["publisher"], "PublisherA");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn all_in_one_serves_the_page() {
    let (mut child, listening) = spawn(
        &["all", "--listen", "127.0.0.1:0", "--reviews-version", "v2"],
        4,
    )
    .await;
    let names: Vec<&str> = listening.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ratings", "details", "reviews", "productpage"]);
    let page = get(&format!("{}/productpage", listening[3].1)).await.body;
    assert!(page.contains("The Comedy of Errors"));
    assert!(page.contains("color: black"));
    assert!(page.contains("Reviews served by: reviews-v2-"));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn reviews_binary_takes_version_and_instance() {
    let (mut child, listening) = spawn(
        &[
            "reviews",
            "--listen",
            "127.0.0.1:0",
            "--version",
            "v3",
            "--instance",
            "reviews-v3-abc",
            "--ratings",
            "http://127.0.0.1:1",
        ],
        1,
    )
    .await;
    let json = get(&format!("{}/reviews/0", listening[0].1)).await.json();
    assert_eq!(json["podname"], "reviews-v3-abc");
    assert_eq!(
        json["reviews"][0]["rating"]["error"],
        "Ratings service is currently unavailable"
    );
    child.kill().await.unwrap();
}
