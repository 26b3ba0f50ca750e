//! Tests of the fake Threat Jammer Report API (`tests/support/fake_api.rs`)
//! itself, through plain HTTP requests, so that the other integration tests
//! can trust it.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fake_api::{
    is_public, non_public_reason, Failure, FakeApi, FakeConfig, DATASETS, DEFAULT_TOKEN, ENDPOINTS,
    REPORT_PATH,
};

/// What a request got back.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The `loc`s of a FastAPI-style `{"detail": [...]}` body.
    fn locs(&self) -> Vec<Value> {
        match self.json()["detail"].as_array() {
            Some(items) => items.iter().map(|d| d["loc"].clone()).collect(),
            None => panic!("detail is not a list: {}", self.body),
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

fn report(addresses: &[&str]) -> Value {
    json!({ "addresses": addresses, "ttl": 86400, "type": "ABUSE", "tags": ["COWRIE"] })
}

async fn send_raw(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: String,
) -> Result<Answer, reqwest::Error> {
    let mut req = client
        .post(url)
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .header("User-Agent", "tjfwd-selftest/0")
        .body(body);
    if let Some(token) = token {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii Retry-After").to_owned());
    let body = resp.text().await?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

async fn post_to(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<Answer, reqwest::Error> {
    send_raw(client, url, token, body.to_string()).await
}

/// A request with the default token to the report endpoint; must get an answer.
async fn post(fake: &FakeApi, client: &reqwest::Client, body: &Value) -> Answer {
    post_to(client, &fake.url(), Some(DEFAULT_TOKEN), body)
        .await
        .expect("an HTTP answer")
}

#[tokio::test]
async fn accepts_a_good_report_and_records_it() {
    let fake = FakeApi::start(FakeConfig::default());
    assert_eq!(
        fake.url(),
        format!("http://127.0.0.1:{}/v1/ip", fake.port())
    );
    let c = client();

    let a = post(&fake, &c, &report(&["1.2.3.4", "2a00:1450:4001::1"])).await;
    assert_eq!(a.status, 202, "{a:?}");
    assert!(a.body.is_empty(), "202 must have an empty body: {a:?}");

    let recs = fake.requests();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, REPORT_PATH);
    assert_eq!(r.status, 202);
    assert!(r.authorized && !r.dropped);
    assert_eq!(r.addresses, ["1.2.3.4", "2a00:1450:4001::1"]);
    assert_eq!(r.ttl, Some(86400));
    assert_eq!(r.dataset.as_deref(), Some("ABUSE"));
    assert_eq!(r.tags, ["COWRIE"]);
    assert_eq!(r.header("user-agent"), Some("tjfwd-selftest/0"));
    assert_eq!(r.header("Accept"), Some("application/json"));
    assert!(r.is_accepted_report());

    let b = post(&fake, &c, &report(&["1.2.3.4", "8.8.8.8"])).await;
    assert_eq!(b.status, 202);
    assert_eq!(
        fake.accepted_addresses(),
        ["1.2.3.4", "2a00:1450:4001::1", "1.2.3.4", "8.8.8.8"]
    );
    assert_eq!(fake.accepted_batches().len(), 2);
    assert_eq!(fake.accepted_unique().len(), 3);
    assert!(fake.wait_for_accepted_async(3, Duration::ZERO).await);
    assert!(
        !fake
            .wait_for_accepted_async(4, Duration::from_millis(50))
            .await
    );
    let expected = Some(format!("Bearer {DEFAULT_TOKEN}"));
    assert_eq!(
        fake.last_authorization_headers(),
        [expected.clone(), expected.clone()]
    );
    assert_eq!(fake.last_authorization_header(), expected);
}

#[tokio::test]
async fn related_endpoints_follow_the_same_rules_and_record_the_path() {
    let fake = FakeApi::start(FakeConfig {
        max_requests_per_window: 100,
        ..FakeConfig::default()
    });
    let c = client();
    for path in ENDPOINTS {
        let url = fake.endpoint_url(path);
        let ok = post_to(&c, &url, Some(DEFAULT_TOKEN), &report(&["9.9.9.9"]))
            .await
            .unwrap();
        assert_eq!(ok.status, 202, "{path}");
        let bad = post_to(&c, &url, Some(DEFAULT_TOKEN), &report(&["10.1.1.1"]))
            .await
            .unwrap();
        assert_eq!(bad.status, 422, "{path}");
        let unauth = post_to(&c, &url, Some("nope"), &report(&["9.9.9.9"]))
            .await
            .unwrap();
        assert_eq!(unauth.status, 401, "{path}");
    }
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 12);
    for (i, path) in ENDPOINTS.iter().enumerate() {
        assert!(paths[i * 3..i * 3 + 3].iter().all(|p| p == path));
    }
    // The accepted helpers are about the report endpoint only.
    assert_eq!(fake.accepted_addresses(), ["9.9.9.9"]);
    assert_eq!(fake.accepted_batches_on("/v1/unban/ip"), [["9.9.9.9"]]);

    let unknown = post_to(
        &c,
        &fake.endpoint_url("/v2/ip"),
        Some(DEFAULT_TOKEN),
        &report(&["9.9.9.9"]),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status, 404);
    let get = c.get(fake.url()).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
}

#[tokio::test]
async fn wrong_or_missing_token_is_401() {
    let fake = FakeApi::start(FakeConfig::default());
    let c = client();
    let body = report(&["1.2.3.4"]);

    let wrong = post_to(&c, &fake.url(), Some("wrong-token"), &body)
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    assert!(wrong.json()["detail"].is_string(), "{wrong:?}");

    let missing = post_to(&c, &fake.url(), None, &body).await.unwrap();
    assert_eq!(missing.status, 401);

    let not_bearer = c
        .post(fake.url())
        .header("Authorization", DEFAULT_TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(not_bearer.status().as_u16(), 401);

    let recs = fake.requests();
    assert_eq!(recs.len(), 3);
    assert!(recs.iter().all(|r| !r.authorized && r.status == 401));
    assert_eq!(
        fake.last_authorization_headers(),
        [
            Some("Bearer wrong-token".to_owned()),
            None,
            Some(DEFAULT_TOKEN.to_owned())
        ]
    );
    assert!(fake.accepted_addresses().is_empty());
    assert_eq!(fake.max_requests_in_window(Duration::from_secs(60)), 0);
}

#[tokio::test]
async fn set_token_switches_the_accepted_token() {
    let fake = FakeApi::start(FakeConfig {
        token: "first".into(),
        ..FakeConfig::default()
    });
    let c = client();
    let body = report(&["1.2.3.4"]);
    let r = post_to(&c, &fake.url(), Some("first"), &body)
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    fake.set_token("second");
    assert_eq!(fake.token(), "second");
    let r = post_to(&c, &fake.url(), Some("first"), &body)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = post_to(&c, &fake.url(), Some("second"), &body)
        .await
        .unwrap();
    assert_eq!(r.status, 202);
}

#[tokio::test]
async fn over_max_addresses_is_413() {
    let fake = FakeApi::start(FakeConfig::default());
    let c = client();
    let addrs: Vec<String> = (0..1001)
        .map(|i| format!("45.{}.{}.1", i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();

    let too_many = post(&fake, &c, &report(&refs)).await;
    assert_eq!(too_many.status, 413, "{too_many:?}");
    let exactly = post(&fake, &c, &report(&refs[..1000])).await;
    assert_eq!(exactly.status, 202, "{exactly:?}");
    assert_eq!(fake.accepted_unique().len(), 1000);

    let small = FakeApi::start(FakeConfig {
        max_addresses: 2,
        ..FakeConfig::default()
    });
    let r = post(&small, &c, &report(&["1.1.1.1", "1.0.0.1", "9.9.9.9"])).await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn bad_addresses_are_422_without_indices_by_default() {
    let fake = FakeApi::start(FakeConfig::default());
    let c = client();
    for bad in ["10.0.0.1", "1.2.3.4:22", "::ffff:1.2.3.4", "not an ip", ""] {
        let a = post(&fake, &c, &report(&["8.8.8.8", bad])).await;
        assert_eq!(a.status, 422, "{bad}: {a:?}");
        assert_eq!(
            a.json(),
            json!({ "detail": "Invalid address list" }),
            "{bad}"
        );
    }
    assert!(
        fake.accepted_addresses().is_empty(),
        "one bad address fails all"
    );
}

#[tokio::test]
async fn bad_addresses_are_422_with_indices_when_configured() {
    let fake = FakeApi::start(FakeConfig {
        detail_indices: true,
        ..FakeConfig::default()
    });
    let c = client();
    let a = post(
        &fake,
        &c,
        &report(&["8.8.8.8", "10.0.0.1", "1.1.1.1", "1.2.3.4:22", "fe80::1"]),
    )
    .await;
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(
        a.locs(),
        [
            json!(["body", "addresses", 1]),
            json!(["body", "addresses", 3]),
            json!(["body", "addresses", 4]),
        ]
    );
    assert_eq!(a.json()["detail"][1]["input"], "1.2.3.4:22");

    // Switchable at run time.
    fake.set_detail_indices(false);
    let b = post(&fake, &c, &report(&["10.0.0.1"])).await;
    assert_eq!(b.json(), json!({ "detail": "Invalid address list" }));
}

#[tokio::test]
async fn rejected_addresses_are_422_until_unrejected() {
    let fake = FakeApi::start(FakeConfig {
        detail_indices: true,
        ..FakeConfig::default()
    });
    let c = client();
    fake.reject_address("8.8.8.8");
    fake.reject_address("2001:4860::8888");
    let a = post(&fake, &c, &report(&["1.1.1.1", "8.8.8.8"])).await;
    assert_eq!(a.status, 422);
    assert_eq!(a.locs(), [json!(["body", "addresses", 1])]);
    // Compared by value, not spelling.
    let b = post(&fake, &c, &report(&["2001:4860:0:0::8888"])).await;
    assert_eq!(b.status, 422);

    fake.unreject_address("8.8.8.8");
    let c2 = post(&fake, &c, &report(&["1.1.1.1", "8.8.8.8"])).await;
    assert_eq!(c2.status, 202);
    fake.clear_rejected();
    let d = post(&fake, &c, &report(&["2001:4860::8888"])).await;
    assert_eq!(d.status, 202);
}

#[tokio::test]
async fn field_violations_are_422_naming_the_field() {
    let fake = FakeApi::start(FakeConfig {
        max_requests_per_window: 1000,
        ..FakeConfig::default()
    });
    let c = client();
    let base = report(&["1.2.3.4"]);
    let with = |field: &str, value: Value| {
        let mut b = base.clone();
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let cases: Vec<(Value, Value)> = vec![
        (with("tags", json!(["cowrie"])), json!(["body", "tags", 0])),
        (
            with("tags", json!(["COWRIE", "SSH-22"])),
            json!(["body", "tags", 1]),
        ),
        (with("tags", json!([""])), json!(["body", "tags", 0])),
        (with("tags", json!("COWRIE")), json!(["body", "tags"])),
        (with("type", json!("NOPE")), json!(["body", "type"])),
        (with("type", json!("abuse")), json!(["body", "type"])),
        (with("ttl", json!(0)), json!(["body", "ttl"])),
        (with("ttl", json!(-5)), json!(["body", "ttl"])),
        (with("ttl", json!(1.5)), json!(["body", "ttl"])),
        (with("ttl", json!("86400")), json!(["body", "ttl"])),
        (with("addresses", json!([])), json!(["body", "addresses"])),
        (
            with("addresses", json!("1.2.3.4")),
            json!(["body", "addresses"]),
        ),
        (
            with("addresses", json!(["1.2.3.4", 5])),
            json!(["body", "addresses", 1]),
        ),
        (without("ttl"), json!(["body", "ttl"])),
        (without("type"), json!(["body", "type"])),
        (without("tags"), json!(["body", "tags"])),
        (without("addresses"), json!(["body", "addresses"])),
    ];
    for (body, loc) in cases {
        let a = post(&fake, &c, &body).await;
        assert_eq!(a.status, 422, "{body}: {a:?}");
        assert_eq!(a.locs(), [loc], "{body}");
    }

    // Several problems are all reported.
    let multi = post(
        &fake,
        &c,
        &json!({ "addresses": ["1.2.3.4"], "ttl": 0, "type": "X", "tags": ["a"] }),
    )
    .await;
    assert_eq!(multi.locs().len(), 3, "{multi:?}");

    // Not JSON at all, or not an object.
    for raw in ["{not json", "[1, 2]", ""] {
        let a = send_raw(&c, &fake.url(), Some(DEFAULT_TOKEN), raw.to_owned())
            .await
            .unwrap();
        assert_eq!(a.status, 422, "{raw:?}");
        assert_eq!(a.locs(), [json!(["body"])], "{raw:?}");
    }
    // Wrong content type.
    let text = c
        .post(fake.url())
        .bearer_auth(DEFAULT_TOKEN)
        .header("Content-Type", "text/plain")
        .body(base.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 422);

    // Every dataset name, an empty tag list, extra fields, and a charset
    // parameter are fine.
    for dataset in DATASETS {
        let ok = post(&fake, &c, &with("type", json!(dataset))).await;
        assert_eq!(ok.status, 202, "{dataset}");
    }
    let ok = post(&fake, &c, &with("tags", json!([]))).await;
    assert_eq!(ok.status, 202);
    let ok = post(&fake, &c, &with("extra", json!({"x": 1}))).await;
    assert_eq!(ok.status, 202);
    let ok = c
        .post(fake.url())
        .bearer_auth(DEFAULT_TOKEN)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(base.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 202);
}

#[tokio::test]
async fn rate_limit_is_429_with_retry_after_and_frees_up() {
    let window = Duration::from_millis(500);
    let fake = FakeApi::start(FakeConfig {
        window,
        ..FakeConfig::default()
    });
    let c = client();
    let start = Instant::now();
    for i in 0..6 {
        let a = post(&fake, &c, &report(&["1.2.3.4"])).await;
        assert_eq!(a.status, 202, "request {i}");
    }
    let seventh = post(&fake, &c, &report(&["1.2.3.4"])).await;
    assert!(
        start.elapsed() < window,
        "test too slow to be meaningful: {:?}",
        start.elapsed()
    );
    assert_eq!(seventh.status, 429, "{seventh:?}");
    assert_eq!(seventh.retry_after.as_deref(), Some("1"));
    assert_eq!(fake.requests()[6].retry_after.as_deref(), Some("1"));

    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let again = post(&fake, &c, &report(&["1.2.3.4"])).await;
    assert_eq!(again.status, 202, "the window must free up again");

    // Another token has its own window.
    let other = FakeApi::start(FakeConfig {
        max_requests_per_window: 1,
        ..FakeConfig::default()
    });
    assert_eq!(post(&other, &c, &report(&["1.2.3.4"])).await.status, 202);
    assert_eq!(post(&other, &c, &report(&["1.2.3.4"])).await.status, 429);
    other.set_token("fresh");
    let fresh = post_to(&c, &other.url(), Some("fresh"), &report(&["1.2.3.4"]))
        .await
        .unwrap();
    assert_eq!(fresh.status, 202);
}

#[tokio::test]
async fn rejected_requests_count_against_the_rate_limit() {
    let window = Duration::from_millis(1000);
    let fake = FakeApi::start(FakeConfig {
        max_requests_per_window: 1,
        window,
        ..FakeConfig::default()
    });
    let c = client();
    let body = report(&["1.2.3.4"]);
    assert_eq!(post(&fake, &c, &body).await.status, 202); // t = 0
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = post(&fake, &c, &body).await; // t = 0.5 s
    assert_eq!(second.status, 429);
    // Over the limit, the next admission is when this 429'd request leaves
    // the window too: a full window from now.
    assert_eq!(second.retry_after.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    // t = 1.1 s: the 202 left the window, the 429 at 0.5 s did not.
    assert_eq!(post(&fake, &c, &body).await.status, 429);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // t = 2.2 s: everything left the window.
    assert_eq!(post(&fake, &c, &body).await.status, 202);

    // Unauthorized requests do not count.
    let fake = FakeApi::start(FakeConfig {
        max_requests_per_window: 1,
        ..FakeConfig::default()
    });
    for _ in 0..3 {
        let a = post_to(&c, &fake.url(), Some("bad"), &body).await.unwrap();
        assert_eq!(a.status, 401);
    }
    assert_eq!(post(&fake, &c, &body).await.status, 202);

    // Scripted failures and invalid bodies do.
    let fake = FakeApi::start(FakeConfig {
        max_requests_per_window: 2,
        ..FakeConfig::default()
    });
    fake.push_failure(Failure::Status(503));
    assert_eq!(post(&fake, &c, &body).await.status, 503);
    assert_eq!(post(&fake, &c, &report(&["10.0.0.1"])).await.status, 422);
    let third = post(&fake, &c, &body).await;
    assert_eq!(third.status, 429);
    assert_eq!(third.retry_after.as_deref(), Some("60"));
}

#[tokio::test]
async fn scripted_failures_are_consumed_in_order() {
    let fake = FakeApi::start(FakeConfig {
        max_requests_per_window: 100,
        ..FakeConfig::default()
    });
    let c = client();
    let body = report(&["1.2.3.4"]);
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    fake.push_failures([
        Failure::Status(503),
        Failure::TooMany {
            retry_after: Some("2".into()),
        },
        Failure::TooMany {
            retry_after: Some(date.into()),
        },
        Failure::TooMany { retry_after: None },
        Failure::Status(401),
    ]);
    assert_eq!(fake.pending_failures(), 5);

    // An unauthorized request does not consume a failure.
    let unauth = post_to(&c, &fake.url(), Some("bad"), &body).await.unwrap();
    assert_eq!(unauth.status, 401);
    assert_eq!(fake.pending_failures(), 5);

    let a = post(&fake, &c, &body).await;
    assert_eq!(a.status, 503);
    assert!(a.json()["detail"].is_string());
    let b = post(&fake, &c, &body).await;
    assert_eq!((b.status, b.retry_after.as_deref()), (429, Some("2")));
    let d = post(&fake, &c, &body).await;
    assert_eq!((d.status, d.retry_after.as_deref()), (429, Some(date)));
    let e = post(&fake, &c, &body).await;
    assert_eq!((e.status, e.retry_after.as_deref()), (429, None));
    let f = post(&fake, &c, &body).await;
    assert_eq!(f.status, 401);
    assert_eq!(fake.pending_failures(), 0);
    let g = post(&fake, &c, &body).await;
    assert_eq!(g.status, 202);

    // Failures are not acceptances, but are recorded with the body.
    assert_eq!(fake.accepted_addresses(), ["1.2.3.4"]);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 503, 429, 429, 429, 401, 202]);
    assert!(fake.requests()[1..6].iter().all(|r| r.authorized));
    assert_eq!(fake.requests()[1].addresses, ["1.2.3.4"]);

    fake.push_failure(Failure::Status(500));
    fake.clear_failures();
    assert_eq!(post(&fake, &c, &body).await.status, 202);

    // A scripted 202 is not an acceptance.
    fake.push_failure(Failure::Status(202));
    assert_eq!(post(&fake, &c, &report(&["4.4.4.4"])).await.status, 202);
    assert_eq!(fake.accepted_addresses(), ["1.2.3.4", "1.2.3.4"]);
    assert!(!fake.requests().last().unwrap().accepted);
}

#[test]
fn fake_api_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FakeApi>();
    assert_send_sync::<support::fake_api::RequestRecord>();
}

#[tokio::test]
async fn scripted_drop_is_a_connection_error() {
    let fake = FakeApi::start(FakeConfig::default());
    let c = client();
    let body = report(&["1.2.3.4"]);
    // Warm a pooled connection first, so the drop hits a reused one too.
    assert_eq!(post(&fake, &c, &body).await.status, 202);

    fake.push_failure(Failure::Drop);
    let err = post_to(&c, &fake.url(), Some(DEFAULT_TOKEN), &body)
        .await
        .expect_err("a dropped connection must be a client error");
    assert!(!err.is_status(), "{err:?}");

    // The next request (a new connection) is served normally.
    assert_eq!(post(&fake, &c, &body).await.status, 202);
    let recs = fake.requests();
    assert_eq!(recs.len(), 3);
    assert!(recs[1].dropped);
    assert_eq!(recs[1].status, 0);
    assert_eq!(recs[1].addresses, ["1.2.3.4"]);
    assert_eq!(fake.accepted_batches().len(), 2);
}

#[tokio::test]
async fn scripted_delay_then_normal_answer() {
    let fake = FakeApi::start(FakeConfig::default());
    let c = client();
    fake.push_failure(Failure::Delay(Duration::from_millis(300)));
    let t = Instant::now();
    let a = post(&fake, &c, &report(&["1.2.3.4"])).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(a.status, 202);

    // A client that gives up early: the fake still processes the request.
    fake.push_failure(Failure::Delay(Duration::from_millis(400)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = post_to(
        &impatient,
        &fake.url(),
        Some(DEFAULT_TOKEN),
        &report(&["5.6.7.8"]),
    )
    .await
    .expect_err("client timeout");
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        fake.wait_for_accepted_async(2, Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn down_answers_503_to_everything() {
    let fake = FakeApi::start(FakeConfig::default());
    let c = client();
    let body = report(&["1.2.3.4"]);
    fake.push_failure(Failure::Status(500));
    fake.set_down(true);
    assert_eq!(post(&fake, &c, &body).await.status, 503);
    let unauth = post_to(&c, &fake.url(), Some("bad"), &body).await.unwrap();
    assert_eq!(unauth.status, 503);
    assert_eq!(fake.pending_failures(), 1, "down does not consume failures");
    fake.set_down(false);
    assert_eq!(post(&fake, &c, &body).await.status, 500);
    assert_eq!(post(&fake, &c, &body).await.status, 202);
}

#[tokio::test]
async fn max_requests_in_window_counts_authorized_requests() {
    let fake = FakeApi::start(FakeConfig {
        max_requests_per_window: 100,
        ..FakeConfig::default()
    });
    let c = client();
    let body = report(&["1.2.3.4"]);
    assert_eq!(fake.max_requests_in_window(Duration::from_secs(60)), 0);
    for _ in 0..2 {
        post(&fake, &c, &body).await;
    }
    post(&fake, &c, &report(&["10.0.0.1"])).await; // 422, still counts
    post_to(&c, &fake.url(), Some("bad"), &body).await.unwrap(); // 401, does not
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..2 {
        post(&fake, &c, &body).await;
    }
    assert_eq!(fake.request_count(), 6);
    assert_eq!(fake.max_requests_in_window(Duration::from_millis(300)), 3);
    assert_eq!(fake.max_requests_in_window(Duration::from_secs(60)), 5);
    assert_eq!(fake.max_requests_in_window(Duration::ZERO), 0);

    fake.clear_requests();
    assert_eq!(fake.request_count(), 0);
    assert_eq!(fake.max_requests_in_window(Duration::from_secs(60)), 0);
}

#[test]
fn non_public_oracle() {
    let public = [
        "1.2.3.4",
        "8.8.8.8",
        "45.33.32.156",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.3.1",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "2a00:1450:4001::1",
        "2001:4860:4860::8888",
        "2606:4700::1111",
        "3ffe::1",
    ];
    let non_public = [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.255",
        "127.0.0.1",
        "169.254.1.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "64:ff9b::102:304",
        "100::1",
        "2001::1",
        "2001:2::1",
        "2001:db8::1",
        "2002:102:304::1",
        "3fff::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "4000::1",
    ];
    for s in public {
        let ip: IpAddr = s.parse().unwrap();
        assert!(is_public(&ip), "{s} should be public");
    }
    for s in non_public {
        let ip: IpAddr = s.parse().unwrap();
        assert!(non_public_reason(&ip).is_some(), "{s} should be non-public");
    }
}

/// Sends one raw HTTP/1.1 request with std only; returns everything read.
fn raw_exchange(fake: &FakeApi, body: &str) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(fake.addr())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST /v1/ip HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        fake.addr(),
        body.len()
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn works_from_a_sync_test_without_a_runtime() {
    let fake = FakeApi::start(FakeConfig::default());
    let body = report(&["1.2.3.4", "5.6.7.8"]).to_string();
    let out = raw_exchange(&fake, &body).expect("raw exchange");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    assert!(fake.wait_for_accepted(2, Duration::from_secs(1)));
    assert!(!fake.wait_for_accepted(3, Duration::from_millis(50)));
    assert!(fake.wait_for_requests(1, Duration::ZERO));

    // A dropped connection yields no response byte at all.
    fake.push_failure(Failure::Drop);
    match raw_exchange(&fake, &body) {
        Ok(bytes) => assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn shutdown_and_drop_close_the_port() {
    let fake = FakeApi::start(FakeConfig::default());
    let addr = fake.addr();
    // An idle open connection must not keep the server alive.
    let idle = TcpStream::connect(addr).unwrap();
    fake.shutdown();
    assert!(TcpStream::connect(addr).is_err(), "port still open");
    drop(idle);

    let fake = FakeApi::start(FakeConfig::default());
    let addr = fake.addr();
    drop(fake);
    assert!(TcpStream::connect(addr).is_err(), "port still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_all_recorded() {
    let fake = FakeApi::start(FakeConfig {
        max_requests_per_window: 1000,
        ..FakeConfig::default()
    });
    let c = client();
    let url = fake.url();
    let mut tasks = Vec::new();
    for i in 0..50u8 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let addr = format!("77.{i}.0.1");
            post_to(&c, &url, Some(DEFAULT_TOKEN), &report(&[addr.as_str()]))
                .await
                .map(|a| a.status)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 202);
    }
    assert_eq!(fake.accepted_unique().len(), 50);
    assert_eq!(fake.max_requests_in_window(Duration::from_secs(60)), 50);
}
