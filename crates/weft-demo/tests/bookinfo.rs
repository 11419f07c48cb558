//! bookinfo end to end: all four services in-process on 127.0.0.1, fetched with hyper.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};
use serde_json::json;
use weft_demo::reviews::ReviewsVersion;

const FULL: &str = "\u{2605}";
const EMPTY: &str = "\u{2606}";

fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

fn assert_lacks(haystack: &str, needle: &str) {
    assert!(
        !haystack.contains(needle),
        "did not expect {needle:?} in:\n{haystack}"
    );
}

/// The book, its details and both reviews: what every healthy page shows.
fn assert_book(page: &str) {
    assert_contains(page, "<h1>The Comedy of Errors</h1>");
    assert_contains(page, "William Shakespeare");
    for detail in [
        "<dt>Type:</dt><dd>paperback</dd>",
        "<dt>Pages:</dt><dd>200</dd>",
        "<dt>Publisher:</dt><dd>PublisherA</dd>",
        "<dt>Language:</dt><dd>English</dd>",
        "<dt>ISBN-10:</dt><dd>1234567890</dd>",
        "<dt>ISBN-13:</dt><dd>123-1234567890</dd>",
    ] {
        assert_contains(page, detail);
    }
    assert_contains(page, "<small>Reviewer1</small>");
    assert_contains(page, "<small>Reviewer2</small>");
    assert_contains(page, "An extremely entertaining play by Shakespeare.");
    assert_contains(page, "Absolutely fun and entertaining.");
    assert_contains(page, "Sign in");
    assert_lacks(page, "unavailable");
    assert_lacks(page, "Error fetching");
}

#[tokio::test]
async fn v1_page_shows_the_book_and_reviews_without_stars() {
    let b = Bookinfo::start(ReviewsVersion::V1).await;
    let resp = get(&b.url("/productpage")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers["content-type"], "text/html; charset=utf-8");
    assert_book(&resp.body);
    assert_lacks(&resp.body, FULL);
    assert_lacks(&resp.body, "class=\"stars");
    assert_contains(&resp.body, "Reviews served by: reviews-v1-testhost");
    // v1 never asks ratings.
    assert!(b.ratings_tap.seen().is_empty());
    assert_eq!(b.details_tap.seen().len(), 1);
    assert_eq!(b.reviews_tap.seen().len(), 1);
}

#[tokio::test]
async fn v2_page_shows_black_stars() {
    let b = Bookinfo::start(ReviewsVersion::V2).await;
    let page = get(&b.url("/productpage")).await.body;
    assert_book(&page);
    let five = format!(
        "style=\"color: black\" title=\"5 out of 5 stars\">{}</span>",
        FULL.repeat(5)
    );
    let four = format!(
        "style=\"color: black\" title=\"4 out of 5 stars\">{}{EMPTY}</span>",
        FULL.repeat(4)
    );
    assert_contains(&page, &five);
    assert_contains(&page, &four);
    assert_lacks(&page, "color: red");
    assert_contains(
        &page,
        "Reviews served by: reviews-v2-testhost (cluster: test-cluster)",
    );
    assert_eq!(b.ratings_tap.seen().len(), 1);
}

#[tokio::test]
async fn v3_page_shows_red_stars() {
    let b = Bookinfo::start(ReviewsVersion::V3).await;
    let page = get(&b.url("/productpage")).await.body;
    assert_book(&page);
    assert_contains(
        &page,
        &format!(
            "class=\"stars stars-red\" style=\"color: red\" title=\"5 out of 5 stars\">{}",
            FULL.repeat(5)
        ),
    );
    assert_contains(
        &page,
        &format!("title=\"4 out of 5 stars\">{}{EMPTY}", FULL.repeat(4)),
    );
    assert_lacks(&page, "color: black");
    assert_contains(&page, "Reviews served by: reviews-v3-testhost");
}

#[tokio::test]
async fn backends_are_called_with_their_host_names() {
    let b = Bookinfo::start(ReviewsVersion::V2).await;
    get(&b.url("/productpage")).await;
    let host = |tap: &Tap| tap.seen()[0].headers["host"].to_str().unwrap().to_owned();
    assert_eq!(host(&b.details_tap), "details:9080");
    assert_eq!(host(&b.reviews_tap), "reviews:9080");
    assert_eq!(host(&b.ratings_tap), "ratings:9080");
    assert_eq!(b.details_tap.seen()[0].path, "/details/0");
    assert_eq!(b.reviews_tap.seen()[0].path, "/reviews/0");
    assert_eq!(b.ratings_tap.seen()[0].path, "/ratings/0");
}

#[tokio::test]
async fn login_keeps_the_user_and_sends_end_user_to_reviews_and_ratings() {
    let b = Bookinfo::start(ReviewsVersion::V2).await;
    let referer = b.url("/productpage");
    let login = request(
        Method::POST,
        &b.url("/login"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("referer", &referer),
        ],
        "username=jason&passwd=",
    )
    .await;
    assert_eq!(login.status, StatusCode::FOUND);
    assert_eq!(login.headers["location"], referer.as_str());
    let set_cookie = login.headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.starts_with("session=jason;"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap();

    let page = get_with(&b.url("/productpage"), &[("cookie", cookie)])
        .await
        .body;
    assert_contains(&page, "Signed in as <strong>jason</strong>");
    assert_contains(&page, "sign out");
    assert_lacks(&page, "name=\"username\"");
    assert_contains(&page, &FULL.repeat(5));

    for (name, tap) in [
        ("details", &b.details_tap),
        ("reviews", &b.reviews_tap),
        ("ratings", &b.ratings_tap),
    ] {
        let seen = tap.seen();
        assert_eq!(seen.len(), 1, "{name}");
        assert_eq!(seen[0].headers["end-user"], "jason", "{name}");
        assert_eq!(seen[0].headers["cookie"], cookie, "{name}");
    }

    // Signed out: no end-user any more.
    let logout = get_with(&b.url("/logout"), &[("cookie", cookie)]).await;
    assert_eq!(logout.status, StatusCode::FOUND);
    assert!(
        logout.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let page = get(&b.url("/productpage")).await.body;
    assert_contains(&page, "Sign in");
    assert!(b.reviews_tap.seen()[1].headers.get("end-user").is_none());
    assert!(b.ratings_tap.seen()[1].headers.get("end-user").is_none());
}

#[tokio::test]
async fn login_escapes_the_user_name() {
    let b = Bookinfo::start(ReviewsVersion::V1).await;
    let login = request(
        Method::POST,
        &b.url("/login"),
        &[],
        "username=%3Cb%3Eeve+x%3C%2Fb%3E",
    )
    .await;
    assert_eq!(login.headers["location"], "productpage");
    let cookie = login.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(cookie, "session=%3Cb%3Eeve%20x%3C%2Fb%3E");
    let page = get_with(&b.url("/productpage"), &[("cookie", &cookie)])
        .await
        .body;
    assert_contains(
        &page,
        "Signed in as <strong>&lt;b&gt;eve x&lt;/b&gt;</strong>",
    );
    assert_eq!(b.reviews_tap.seen()[0].headers["end-user"], "<b>eve x</b>");
}

const TRACE_HEADERS: &[(&str, &str)] = &[
    ("x-request-id", "6f1c8e3a-0000-4000-8000-000000000001"),
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("tracestate", "weft=1"),
    ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
    ("x-b3-spanid", "e457b5a2e4d86bd1"),
    ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
    ("x-b3-sampled", "1"),
    ("x-b3-flags", "1"),
    (
        "b3",
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
    ),
    ("x-ot-span-context", "ot-ctx"),
    (
        "x-cloud-trace-context",
        "105445aa7843bc8bf206b12000100000/1;o=1",
    ),
    ("grpc-trace-bin", "AAAAAA"),
    (
        "sw8",
        "1-TRACEID-SEGMENTID-3-PARENT-SERVICE-INSTANCE-ENDPOINT-ADDR",
    ),
    ("x-datadog-trace-id", "123"),
    ("x-datadog-parent-id", "456"),
    ("x-datadog-sampling-priority", "1"),
    ("user-agent", "weft-test/1.0"),
    ("authorization", "Bearer t0ken"),
];

#[tokio::test]
async fn trace_headers_reach_every_backend() {
    let b = Bookinfo::start(ReviewsVersion::V3).await;
    let mut headers = TRACE_HEADERS.to_vec();
    headers.push(("x-not-propagated", "nope"));
    let page = get_with(&b.url("/productpage"), &headers).await;
    assert_eq!(page.status, StatusCode::OK);
    for (name, tap) in [
        ("details", &b.details_tap),
        ("reviews", &b.reviews_tap),
        ("ratings", &b.ratings_tap),
    ] {
        let seen = &tap.seen()[0].headers;
        for (header, value) in TRACE_HEADERS {
            assert_eq!(
                seen.get(*header).map(|v| v.to_str().unwrap()),
                Some(*value),
                "{header} to {name}"
            );
        }
        assert!(seen.get("x-not-propagated").is_none(), "{name}");
    }
    // The JSON API propagates them too.
    get_with(&b.url("/api/v1/products/0/ratings"), TRACE_HEADERS).await;
    let seen = b.ratings_tap.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["x-request-id"], TRACE_HEADERS[0].1);
    assert_eq!(seen[1].headers["b3"], TRACE_HEADERS[8].1);
}

#[tokio::test]
async fn dead_ratings_shows_ratings_unavailable() {
    let details = details_server().await;
    let reviews = reviews_with(ReviewsVersion::V2, dead("ratings:9080").await, |_| {}).await;
    let pp = productpage_with(
        weft_demo::Upstream::at(details.addr(), "details:9080").unwrap(),
        weft_demo::Upstream::at(reviews.addr(), "reviews:9080").unwrap(),
        dead("ratings:9080").await,
        |_| {},
    )
    .await;
    let page = get(&format!("{}/productpage", pp.url())).await.body;
    assert_eq!(
        page.matches("Ratings service is currently unavailable")
            .count(),
        2,
        "{page}"
    );
    assert_lacks(&page, FULL);
    // The rest of the page is still there.
    assert_contains(&page, "<dt>Publisher:</dt><dd>PublisherA</dd>");
    assert_contains(&page, "<small>Reviewer2</small>");

    let api = get(&format!("{}/api/v1/products/0/ratings", pp.url())).await;
    assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        api.json(),
        json!({"error": "Sorry, product ratings are currently unavailable for this book."})
    );
}

#[tokio::test]
async fn slow_ratings_times_out_in_reviews() {
    let slow = Fake::start(
        Duration::from_secs(5),
        StatusCode::OK,
        r#"{"id":0,"ratings":{"Reviewer1":1,"Reviewer2":1}}"#,
    )
    .await;
    let reviews = reviews_with(ReviewsVersion::V3, slow.upstream("ratings:9080"), |c| {
        c.ratings_timeout = Duration::from_millis(300);
    })
    .await;
    let started = Instant::now();
    let answer = get(&format!("{}/reviews/0", reviews.url())).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    for review in json["reviews"].as_array().unwrap() {
        assert_eq!(
            review["rating"],
            json!({"error": "Ratings service is currently unavailable"})
        );
    }
    assert_eq!(slow.hits(), 1);
}

#[tokio::test]
async fn failing_ratings_shows_ratings_unavailable() {
    let failing = Fake::start(
        Duration::ZERO,
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"fault filter abort"}"#,
    )
    .await;
    let reviews = reviews_with(ReviewsVersion::V2, failing.upstream("ratings:9080"), |_| {}).await;
    let json = get(&format!("{}/reviews/0", reviews.url())).await.json();
    assert_eq!(
        json["reviews"][0]["rating"]["error"],
        "Ratings service is currently unavailable"
    );
}

#[tokio::test]
async fn dead_reviews_shows_reviews_unavailable() {
    let details = details_server().await;
    let ratings = ratings_server().await;
    let pp = productpage_with(
        weft_demo::Upstream::at(details.addr(), "details:9080").unwrap(),
        dead("reviews:9080").await,
        weft_demo::Upstream::at(ratings.addr(), "ratings:9080").unwrap(),
        |_| {},
    )
    .await;
    let page = get(&format!("{}/productpage", pp.url())).await.body;
    assert_contains(&page, "Error fetching product reviews!");
    assert_contains(
        &page,
        "Sorry, product reviews are currently unavailable for this book.",
    );
    assert_lacks(&page, "Reviewer1");
    assert_contains(&page, "<dt>Pages:</dt><dd>200</dd>");

    let api = get(&format!("{}/api/v1/products/0/reviews", pp.url())).await;
    assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        api.json(),
        json!({"error": "Sorry, product reviews are currently unavailable for this book."})
    );
}

#[tokio::test]
async fn slow_reviews_is_tried_twice_then_reported_unavailable() {
    let details = details_server().await;
    let slow = Fake::start(
        Duration::from_secs(7),
        StatusCode::OK,
        r#"{"id":"0","reviews":[]}"#,
    )
    .await;
    let pp = productpage_with(
        weft_demo::Upstream::at(details.addr(), "details:9080").unwrap(),
        slow.upstream("reviews:9080"),
        dead("ratings:9080").await,
        |c| c.reviews_timeout = Duration::from_millis(300),
    )
    .await;
    let started = Instant::now();
    let page = get(&format!("{}/productpage", pp.url())).await.body;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_contains(
        &page,
        "Sorry, product reviews are currently unavailable for this book.",
    );
    assert_eq!(slow.hits(), 2, "one try and one retry");
}

#[tokio::test]
async fn reviews_error_status_is_passed_on_by_the_api() {
    let failing = Fake::start(
        Duration::ZERO,
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"x"}"#,
    )
    .await;
    let pp = productpage_with(
        dead("details:9080").await,
        failing.upstream("reviews:9080"),
        dead("ratings:9080").await,
        |_| {},
    )
    .await;
    let api = get(&format!("{}/api/v1/products/0/reviews", pp.url())).await;
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failing.hits(), 2);
    let details = get(&format!("{}/api/v1/products/0", pp.url())).await;
    assert_eq!(details.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        details.json(),
        json!({"error": "Sorry, product details are currently unavailable for this book."})
    );
    let page = get(&format!("{}/productpage", pp.url())).await.body;
    assert_contains(&page, "Error fetching product details!");
    assert_contains(
        &page,
        "Sorry, product details are currently unavailable for this book.",
    );
    assert_contains(&page, "Error fetching product reviews!");
}

#[tokio::test]
async fn productpage_json_api() {
    let b = Bookinfo::start(ReviewsVersion::V2).await;
    let products = get(&b.url("/api/v1/products")).await;
    assert_eq!(products.status, StatusCode::OK);
    assert_eq!(products.headers["content-type"], "application/json");
    let products = products.json();
    assert_eq!(products[0]["id"], 0);
    assert_eq!(products[0]["title"], "The Comedy of Errors");
    assert!(
        products[0]["descriptionHtml"]
            .as_str()
            .unwrap()
            .contains("Shakespeare")
    );

    let details = get(&b.url("/api/v1/products/0")).await;
    assert_eq!(details.status, StatusCode::OK);
    assert_eq!(
        details.json(),
        json!({
            "id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback", "pages": 200,
            "publisher": "PublisherA", "language": "English",
            "ISBN-10": "1234567890", "ISBN-13": "123-1234567890"
        })
    );

    let reviews = get(&b.url("/api/v1/products/0/reviews")).await.json();
    assert_eq!(reviews["podname"], "reviews-v2-testhost");
    assert_eq!(reviews["clustername"], "test-cluster");
    assert_eq!(reviews["reviews"][0]["reviewer"], "Reviewer1");
    assert_eq!(
        reviews["reviews"][0]["rating"],
        json!({"stars": 5, "color": "black"})
    );
    assert_eq!(
        reviews["reviews"][1]["rating"],
        json!({"stars": 4, "color": "black"})
    );

    let ratings = get(&b.url("/api/v1/products/0/ratings")).await;
    assert_eq!(ratings.status, StatusCode::OK);
    assert_eq!(
        ratings.body,
        r#"{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}"#
    );

    assert_eq!(
        get(&b.url("/api/v1/products/x")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(&b.url("/api/v1/products/0/nope")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&b.url("/nope")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&b.url("/login")).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let health = get(&b.url("/health")).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "Product page is healthy")
    );
    let index = get(&b.url("/")).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_contains(&index.body, "href=\"productpage\"");
    assert_contains(&index.body, "details:9080");
}

#[tokio::test]
async fn backend_json_apis() {
    let b = Bookinfo::start(ReviewsVersion::V3).await;
    let details = get(&format!("{}/details/0", b.details.url())).await;
    assert_eq!(details.status, StatusCode::OK);
    assert_eq!(
        details.body,
        r#"{"id":0,"author":"William Shakespeare","year":1595,"type":"paperback","pages":200,"publisher":"PublisherA","language":"English","ISBN-10":"1234567890","ISBN-13":"123-1234567890"}"#
    );
    assert_eq!(
        get(&format!("{}/details/abc", b.details.url()))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let ratings = get(&format!("{}/ratings/0", b.ratings.url())).await;
    assert_eq!(
        ratings.body,
        r#"{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}"#
    );

    let reviews = get(&format!("{}/reviews/0", b.reviews.url())).await;
    assert_eq!(reviews.status, StatusCode::OK);
    assert_eq!(
        reviews.json(),
        json!({
            "id": "0",
            "podname": "reviews-v3-testhost",
            "clustername": "test-cluster",
            "reviews": [
                {
                    "reviewer": "Reviewer1",
                    "text": "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
                    "rating": {"stars": 5, "color": "red"}
                },
                {
                    "reviewer": "Reviewer2",
                    "text": "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
                    "rating": {"stars": 4, "color": "red"}
                }
            ]
        })
    );

    for (server, status) in [
        (&b.details, "Details is healthy"),
        (&b.reviews, "Reviews is healthy"),
        (&b.ratings, "Ratings is healthy"),
    ] {
        let health = get(&format!("{}/health", server.url())).await;
        assert_eq!(health.status, StatusCode::OK);
        assert_eq!(health.json(), json!({ "status": status }));
    }
}

#[tokio::test]
async fn v1_reviews_have_no_rating() {
    let reviews = reviews_with(ReviewsVersion::V1, dead("ratings:9080").await, |_| {}).await;
    let json = get(&format!("{}/reviews/0", reviews.url())).await.json();
    assert_eq!(json["podname"], "reviews-v1-testhost");
    for review in json["reviews"].as_array().unwrap() {
        assert!(review.get("rating").is_none(), "{review}");
    }
}

#[tokio::test]
async fn posted_ratings_are_shown() {
    let b = Bookinfo::start(ReviewsVersion::V2).await;
    let posted = request(
        Method::POST,
        &format!("{}/ratings/0", b.ratings.url()),
        &[("content-type", "application/json")],
        r#"{"Reviewer1":2,"Reviewer2":3}"#,
    )
    .await;
    assert_eq!(posted.status, StatusCode::OK);
    assert_eq!(
        posted.json(),
        json!({"id": 0, "ratings": {"Reviewer1": 2, "Reviewer2": 3}})
    );
    let page = get(&b.url("/productpage")).await.body;
    assert_contains(
        &page,
        &format!(
            "title=\"2 out of 5 stars\">{}{}",
            FULL.repeat(2),
            EMPTY.repeat(3)
        ),
    );
    assert_contains(
        &page,
        &format!(
            "title=\"3 out of 5 stars\">{}{}",
            FULL.repeat(3),
            EMPTY.repeat(2)
        ),
    );
    let bad = request(
        Method::POST,
        &format!("{}/ratings/0", b.ratings.url()),
        &[],
        "not json",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_shut_down_service_is_gone() {
    let details = details_server().await;
    let url = format!("{}/details/0", details.url());
    assert_eq!(get(&url).await.status, StatusCode::OK);
    let addr = details.addr();
    details.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
