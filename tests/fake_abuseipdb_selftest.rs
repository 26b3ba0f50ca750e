//! Tests of the fake AbuseIPDB API (`tests/support/fake_abuseipdb.rs`)
//! itself, through plain HTTP requests, so that the target's tests can
//! trust it: each rule of its contract, accepted and refused.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::fake_abuseipdb::{
    build_csv, fifteen_minutes_body, iso, parse_csv, AbuseConfig, Endpoint, Failure, FakeAbuseIpdb,
    CSV_HEADER, DEFAULT_KEY, MAX_COMMENT_BYTES, MAX_CSV_BYTES, MAX_CSV_LINES,
};

/// 2026-03-10T12:00:00Z, the fake clock's start in most tests.
const T0: i64 = 1_773_144_000;

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ascii"))
    }

    fn remaining(&self) -> Option<u32> {
        self.header("x-ratelimit-remaining")
            .map(|v| v.parse().expect("a number"))
    }

    /// The `source.parameter`s of an `errors` body.
    fn parameters(&self) -> Vec<String> {
        let body = self.json();
        let errors = body["errors"].as_array().expect("an errors list");
        for e in errors {
            assert_eq!(e["status"].as_u64(), Some(u64::from(self.status)), "{e}");
            assert!(e["detail"].is_string(), "{e}");
        }
        errors
            .iter()
            .filter_map(|e| e["source"]["parameter"].as_str().map(str::to_owned))
            .collect()
    }
}

fn fake() -> FakeAbuseIpdb {
    FakeAbuseIpdb::start(AbuseConfig {
        start_at: Some(T0),
        ..AbuseConfig::default()
    })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("a body");
    Answer {
        status,
        headers,
        body,
    }
}

/// `POST /report` with form `params`, the default key and `Accept`.
async fn report(fake: &FakeAbuseIpdb, params: &[(&str, &str)]) -> Answer {
    let resp = client()
        .post(fake.url(Endpoint::Report))
        .header("Key", DEFAULT_KEY)
        .header("Accept", "application/json")
        .form(params)
        .send()
        .await
        .expect("an answer");
    answer(resp).await
}

/// A `multipart/form-data` body with one file part `name`.
fn multipart(name: &str, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "------------------------tjfwdselftest0123";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"report.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn bulk_part(fake: &FakeAbuseIpdb, name: &str, csv: &[u8]) -> Answer {
    let (content_type, body) = multipart(name, csv);
    let resp = client()
        .post(fake.url(Endpoint::Bulk))
        .header("Key", DEFAULT_KEY)
        .header("Accept", "application/json")
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("an answer");
    answer(resp).await
}

async fn bulk(fake: &FakeAbuseIpdb, csv: &str) -> Answer {
    bulk_part(fake, "csv", csv.as_bytes()).await
}

#[tokio::test]
async fn accepts_a_report_and_records_it() {
    let fake = fake();
    assert!(fake.base_url().ends_with("/api/v2"));
    let when = iso(T0 - 3600);
    let a = report(
        &fake,
        &[
            ("ip", "8.8.8.8"),
            ("categories", "18,22"),
            ("comment", "5 login attempts over SSH"),
            ("timestamp", &when),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["data"]["ipAddress"], "8.8.8.8");
    assert!(a.json()["data"]["abuseConfidenceScore"].is_u64());
    assert_eq!(a.header("x-ratelimit-limit"), Some("1000"));
    assert_eq!(a.remaining(), Some(999));
    assert_eq!(a.header("retry-after"), None);

    let reports = fake.reports();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r.ip, "8.8.8.8");
    assert_eq!(r.categories, [18, 22]);
    assert_eq!(r.timestamp, Some(T0 - 3600));
    assert_eq!(r.comment.as_deref(), Some("5 login attempts over SSH"));
    assert!(!r.comment_truncated);
    assert_eq!(r.endpoint, Endpoint::Report);
    let recs = fake.requests();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].key.as_deref(), Some(DEFAULT_KEY));
    assert_eq!(recs[0].param("categories"), Some("18,22"));
    assert_eq!((recs[0].status, recs[0].saved), (200, 1));

    // Query parameters are read too, and an IPv6 address is canonical.
    let resp = client()
        .post(format!(
            "{}?ip=2a00%3A1450%3A4001%3A0%3A0%3A0%3A0%3A1&categories=23",
            fake.url(Endpoint::Report)
        ))
        .header("Key", DEFAULT_KEY)
        .header("Accept", "application/json")
        .send()
        .await
        .expect("an answer");
    let a = answer(resp).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(fake.reported_ips(), ["8.8.8.8", "2a00:1450:4001::1"]);
    assert_eq!(a.remaining(), Some(998));
}

#[tokio::test]
async fn refuses_without_the_key_header_or_accept_json() {
    let fake = fake();
    let c = client();
    for key in [None, Some("wrong-key")] {
        let mut req = c
            .post(fake.url(Endpoint::Report))
            .header("Accept", "application/json")
            .form(&[("ip", "8.8.8.8"), ("categories", "18")]);
        if let Some(k) = key {
            req = req.header("Key", k);
        }
        let a = answer(req.send().await.expect("an answer")).await;
        assert_eq!(a.status, 401, "{a:?}");
        assert!(a.parameters().is_empty());
        assert_eq!(
            a.header("x-ratelimit-remaining"),
            None,
            "no quota before auth"
        );
    }
    // The key as a query parameter is not taken (headers only, on purpose).
    let a = answer(
        c.post(format!("{}?key={DEFAULT_KEY}", fake.url(Endpoint::Report)))
            .header("Accept", "application/json")
            .form(&[("ip", "8.8.8.8"), ("categories", "18")])
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    assert_eq!(a.status, 401);
    let a = answer(
        c.post(fake.url(Endpoint::Report))
            .header("Key", DEFAULT_KEY)
            .form(&[("ip", "8.8.8.8"), ("categories", "18")])
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    assert_eq!(a.status, 406, "{a:?}");
    // A new key: the old one is refused.
    fake.set_key("rotated");
    assert_eq!(
        report(&fake, &[("ip", "8.8.8.8"), ("categories", "18")])
            .await
            .status,
        401
    );
    assert!(fake.reports().is_empty());
    assert_eq!(
        fake.remaining(Endpoint::Report),
        1000,
        "refusals cost no quota"
    );
}

#[tokio::test]
async fn unknown_paths_methods_and_down() {
    let fake = fake();
    let c = client();
    let base = fake.base_url();
    let a = answer(
        c.post(format!("{base}/nope"))
            .header("Key", DEFAULT_KEY)
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = answer(
        c.get(fake.url(Endpoint::Report))
            .header("Key", DEFAULT_KEY)
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    assert_eq!(a.status, 405);
    fake.set_down(true);
    assert_eq!(
        report(&fake, &[("ip", "8.8.8.8"), ("categories", "18")])
            .await
            .status,
        503
    );
    fake.set_down(false);
    assert_eq!(
        report(&fake, &[("ip", "8.8.8.8"), ("categories", "18")])
            .await
            .status,
        200
    );
}

/// Form parameters of a request.
type Params<'a> = &'a [(&'a str, &'a str)];

#[tokio::test]
async fn refuses_bad_parameters_with_422_naming_each() {
    let fake = fake();
    let old = iso(T0 - 61 * 86_400);
    let future = iso(T0 + 3600);
    let cases: &[(Params, &[&str])] = &[
        (&[("categories", "18")], &["ip"]),
        (&[("ip", "8.8.8.8")], &["categories"]),
        (&[], &["ip", "categories"]),
        (&[("ip", "8.8.8.8:22"), ("categories", "18")], &["ip"]),
        (&[("ip", "not an ip"), ("categories", "18")], &["ip"]),
        (&[("ip", "10.1.2.3"), ("categories", "18")], &["ip"]),
        (&[("ip", "192.168.1.1"), ("categories", "18")], &["ip"]),
        (&[("ip", "::1"), ("categories", "18")], &["ip"]),
        (&[("ip", "2001:db8::1"), ("categories", "18")], &["ip"]),
        (&[("ip", "8.8.8.8"), ("categories", "0")], &["categories"]),
        (&[("ip", "8.8.8.8"), ("categories", "24")], &["categories"]),
        (
            &[("ip", "8.8.8.8"), ("categories", "18,x")],
            &["categories"],
        ),
        (&[("ip", "8.8.8.8"), ("categories", ",")], &["categories"]),
        (
            &[
                ("ip", "8.8.8.8"),
                ("categories", "18"),
                ("timestamp", "yesterday"),
            ],
            &["timestamp"],
        ),
        (
            &[
                ("ip", "8.8.8.8"),
                ("categories", "18"),
                ("timestamp", "2026-03-10T10:00:00"),
            ],
            &["timestamp"],
        ),
        (
            &[("ip", "8.8.8.8"), ("categories", "18"), ("timestamp", &old)],
            &["timestamp"],
        ),
        (
            &[
                ("ip", "8.8.8.8"),
                ("categories", "18"),
                ("timestamp", &future),
            ],
            &["timestamp"],
        ),
        (
            &[("ip", "10.0.0.1"), ("categories", "99"), ("timestamp", "x")],
            &["ip", "categories", "timestamp"],
        ),
    ];
    for (params, expected) in cases {
        let a = report(&fake, params).await;
        assert_eq!(a.status, 422, "{params:?}: {a:?}");
        assert_eq!(a.parameters(), *expected, "{params:?}: {a:?}");
    }
    assert!(fake.reports().is_empty());
    // Each of those requests counted against the day's quota.
    assert_eq!(fake.remaining(Endpoint::Report), 1000 - cases.len() as u32);

    // The limits themselves are accepted: 59 days old, other zones, 23.
    let edge = [
        iso(T0 - 59 * 86_400),
        "2026-03-10T13:00:00+01:00".to_owned(),
        "2026-03-10T07:00:00.250-0500".to_owned(),
    ];
    for (i, when) in edge.iter().enumerate() {
        let ip = format!("8.8.4.{}", i + 1);
        let a = report(
            &fake,
            &[
                ("ip", &ip),
                ("categories", "14,18,22,23"),
                ("timestamp", when),
            ],
        )
        .await;
        assert_eq!(a.status, 200, "{when}: {a:?}");
    }
    assert_eq!(fake.reports()[1].timestamp, Some(T0));
    assert_eq!(fake.reports()[2].timestamp, Some(T0));
}

#[tokio::test]
async fn cuts_comments_after_1024_bytes() {
    let fake = fake();
    let long = "é".repeat(MAX_COMMENT_BYTES); // 2048 bytes
    let a = report(
        &fake,
        &[("ip", "8.8.8.8"), ("categories", "18"), ("comment", &long)],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let r = &fake.reports()[0];
    assert!(r.comment_truncated);
    assert_eq!(r.comment.as_deref().map(str::len), Some(MAX_COMMENT_BYTES));
    let exact = "a".repeat(MAX_COMMENT_BYTES);
    report(
        &fake,
        &[("ip", "8.8.4.4"), ("categories", "18"), ("comment", &exact)],
    )
    .await;
    assert!(!fake.reports()[1].comment_truncated);
}

#[tokio::test]
async fn the_same_address_only_once_in_15_minutes() {
    let fake = fake();
    let first = report(&fake, &[("ip", "8.8.8.8"), ("categories", "18")]).await;
    assert_eq!(first.status, 200);
    fake.advance(Duration::from_secs(14 * 60 + 58));
    let again = report(&fake, &[("ip", "8.8.8.8"), ("categories", "22")]).await;
    assert_eq!(again.status, 429, "{again:?}");
    assert_eq!(again.json(), fifteen_minutes_body("8.8.8.8"));
    let detail = again.json()["errors"][0]["detail"]
        .as_str()
        .expect("detail")
        .to_owned();
    assert!(detail.contains("once in 15 minutes"), "{detail}");
    assert_eq!(again.parameters(), ["ip"]);
    assert_eq!(again.header("retry-after"), None);
    assert_eq!(again.remaining(), Some(998), "it is not a quota answer");
    // Compared by value: the same IPv6 address written differently.
    report(&fake, &[("ip", "2a00:1450::1"), ("categories", "18")]).await;
    let v6 = report(&fake, &[("ip", "2a00:1450:0::1"), ("categories", "18")]).await;
    assert_eq!(v6.status, 429);
    // Other addresses go on.
    let other = report(&fake, &[("ip", "8.8.4.4"), ("categories", "18")]).await;
    assert_eq!(other.status, 200);
    // 15 minutes after the first report, it is accepted again.
    fake.advance(Duration::from_secs(2));
    let later = report(&fake, &[("ip", "8.8.8.8"), ("categories", "18")]).await;
    assert_eq!(later.status, 200, "{later:?}");
    assert_eq!(
        fake.reported_ips(),
        ["8.8.8.8", "2a00:1450::1", "8.8.4.4", "8.8.8.8"]
    );
    // The documented simulation address.
    let sim = report(&fake, &[("ip", "127.0.0.2"), ("categories", "18")]).await;
    assert_eq!(sim.status, 429);
    assert_eq!(sim.json(), fifteen_minutes_body("127.0.0.2"));
}

#[tokio::test]
async fn daily_quota_headers_429_and_the_next_utc_day() {
    // 23:59:00 UTC: the quota resets in 60 s.
    let day_end = (T0 / 86_400 + 1) * 86_400;
    let fake = FakeAbuseIpdb::start(AbuseConfig {
        start_at: Some(day_end - 60),
        report_daily_limit: 3,
        ..AbuseConfig::default()
    });
    let mut remaining = Vec::new();
    for i in 0..3 {
        let ip = format!("8.8.8.{}", i + 1);
        let a = report(&fake, &[("ip", &ip), ("categories", "18")]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(a.header("x-ratelimit-reset"), None);
        remaining.push(a.remaining().expect("remaining"));
    }
    assert_eq!(remaining, [2, 1, 0]);
    let over = report(&fake, &[("ip", "8.8.4.4"), ("categories", "18")]).await;
    assert_eq!(over.status, 429, "{over:?}");
    assert_eq!(over.remaining(), Some(0));
    let retry: i64 = over
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!((59..=60).contains(&retry), "{retry}");
    assert_eq!(
        over.header("x-ratelimit-reset"),
        Some(day_end.to_string().as_str())
    );
    let detail = over.json()["errors"][0]["detail"]
        .as_str()
        .expect("detail")
        .to_owned();
    assert!(detail.contains("Daily rate limit of 3"), "{detail}");
    assert!(!detail.contains("15 minutes"));
    assert_eq!(fake.reports().len(), 3);
    // The bulk endpoint has its own quota.
    assert_eq!(fake.remaining(Endpoint::Bulk), 5);
    // A new UTC day: a fresh quota.
    fake.advance(Duration::from_secs(61));
    let a = report(&fake, &[("ip", "8.8.4.4"), ("categories", "18")]).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.remaining(), Some(2));
}

#[tokio::test]
async fn scripted_failures_are_one_shot_and_count_against_the_quota() {
    let fake = fake();
    fake.push_failures([
        Failure::Status(500),
        Failure::TooMany {
            retry_after: Some("7".to_owned()),
        },
        Failure::Drop,
        Failure::Delay(Duration::from_millis(150)),
    ]);
    let p = [("ip", "8.8.8.8"), ("categories", "18")];
    let a = report(&fake, &p).await;
    assert_eq!(a.status, 500);
    assert_eq!(
        a.remaining(),
        None,
        "a scripted answer has no quota headers"
    );
    let a = report(&fake, &p).await;
    assert_eq!((a.status, a.header("retry-after")), (429, Some("7")));
    let err = client()
        .post(fake.url(Endpoint::Report))
        .header("Key", DEFAULT_KEY)
        .header("Accept", "application/json")
        .form(&p)
        .send()
        .await
        .expect_err("a dropped connection");
    assert!(!err.is_status(), "{err}");
    let started = std::time::Instant::now();
    let a = report(&fake, &p).await;
    assert_eq!(a.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(fake.pending_failures(), 0);
    let statuses: Vec<(u16, bool)> = fake
        .requests()
        .iter()
        .map(|r| (r.status, r.dropped))
        .collect();
    assert_eq!(
        statuses,
        [(500, false), (429, false), (0, true), (200, false)]
    );
    assert_eq!(fake.reports().len(), 1);
    assert_eq!(fake.remaining(Endpoint::Report), 996);
}

#[tokio::test]
async fn bulk_saves_good_rows_and_lists_invalid_ones() {
    let fake = fake();
    // Accepted earlier by /report: its bulk row is a duplicate.
    report(&fake, &[("ip", "1.1.1.1"), ("categories", "18")]).await;
    let now = iso(T0 - 60);
    let old = iso(T0 - 61 * 86_400);
    let csv = build_csv(&[
        ["8.8.8.8", "18,22", &now, "12 attempts, SSH, \"root\""],
        ["10.0.0.1", "18", &now, ""],
        ["8.8.4.4", "99", &now, ""],
        ["9.9.9.9", "18", "not a date", ""],
        ["9.9.9.10", "18", &old, ""],
        ["8.8.8.8", "18", &now, "again in the same file"],
        ["1.1.1.1", "18", &now, ""],
        ["2a00:1450::2", "23", &now, "telnet\nmultiline"],
    ]);
    let a = bulk(&fake, &csv).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(a.remaining(), Some(4));
    let data = &a.json()["data"];
    assert_eq!(data["savedReports"], 2);
    assert_eq!(
        data["invalidReports"],
        json!([
            {"error": "Invalid IP", "input": "10.0.0.1", "rowNumber": 3},
            {"error": "Invalid Category", "input": "8.8.4.4", "rowNumber": 4},
            {"error": "Invalid ReportDate", "input": "9.9.9.9", "rowNumber": 5},
            {"error": "ReportDate too old", "input": "9.9.9.10", "rowNumber": 6},
            {"error": "Duplicate IP", "input": "8.8.8.8", "rowNumber": 7},
            {"error": "Duplicate IP", "input": "1.1.1.1", "rowNumber": 8},
        ])
    );
    let bulk_reports: Vec<_> = fake
        .reports()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Bulk)
        .collect();
    assert_eq!(bulk_reports.len(), 2);
    assert_eq!(bulk_reports[0].ip, "8.8.8.8");
    assert_eq!(bulk_reports[0].categories, [18, 22]);
    assert_eq!(bulk_reports[0].timestamp, Some(T0 - 60));
    assert_eq!(
        bulk_reports[0].comment.as_deref(),
        Some("12 attempts, SSH, \"root\"")
    );
    assert_eq!(
        bulk_reports[1].comment.as_deref(),
        Some("telnet\nmultiline")
    );
    assert_eq!(fake.invalid_reports().len(), 6);
    let rec = fake.requests().pop().expect("a record");
    assert_eq!((rec.saved, rec.invalid.len()), (2, 6));
    assert!(rec
        .csv
        .as_deref()
        .is_some_and(|c| c.starts_with(CSV_HEADER)));
    // A bulk-saved address is under the 15-minute rule on /report too.
    let a = report(&fake, &[("ip", "8.8.8.8"), ("categories", "18")]).await;
    assert_eq!(a.status, 429);
}

#[tokio::test]
async fn bulk_refuses_bad_files_with_422() {
    let fake = FakeAbuseIpdb::start(AbuseConfig {
        start_at: Some(T0),
        bulk_daily_limit: 100,
        ..AbuseConfig::default()
    });
    let now = iso(T0);
    let row = format!("8.8.8.8,18,{now},x\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "wrong header",
            format!("IP,Categories,Date,Comment\n{row}").into_bytes(),
        ),
        (
            "no Comment header",
            format!("IP,Categories,ReportDate\n{row}").into_bytes(),
        ),
        ("header only", format!("{CSV_HEADER}\n").into_bytes()),
        ("empty", Vec::new()),
        (
            "unterminated quote",
            format!("{CSV_HEADER}\n8.8.8.8,\"18,{now},x\n").into_bytes(),
        ),
        (
            "not UTF-8",
            [CSV_HEADER.as_bytes(), b"\n\xff\xfe,18,x,y\n"].concat(),
        ),
    ];
    for (why, csv) in cases {
        let a = bulk_part(&fake, "csv", &csv).await;
        assert_eq!(a.status, 422, "{why}: {a:?}");
        assert_eq!(a.parameters(), ["csv"], "{why}");
    }
    // No `csv` part.
    let a = bulk_part(&fake, "file", format!("{CSV_HEADER}\n{row}").as_bytes()).await;
    assert_eq!((a.status, a.parameters()), (422, vec!["csv".to_owned()]));
    // Not multipart at all.
    let a = answer(
        client()
            .post(fake.url(Endpoint::Bulk))
            .header("Key", DEFAULT_KEY)
            .header("Accept", "application/json")
            .form(&[("csv", format!("{CSV_HEADER}\n{row}"))])
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    assert_eq!(a.status, 422);

    // Lines: 10,000 with the header pass, 10,001 do not.
    let mut ten_thousand = format!("{CSV_HEADER}\n");
    for i in 0..MAX_CSV_LINES - 1 {
        ten_thousand.push_str(&format!(
            "44.{}.{}.{},18,{now},\n",
            i / 65_536,
            i / 256 % 256,
            i % 256
        ));
    }
    let a = bulk(&fake, &ten_thousand).await;
    assert_eq!(a.status, 200, "{}", &a.body[..a.body.len().min(300)]);
    assert_eq!(a.json()["data"]["savedReports"], MAX_CSV_LINES - 1);
    let one_more = format!("{ten_thousand}45.0.0.1,18,{now},\n");
    let a = bulk(&fake, &one_more).await;
    assert_eq!((a.status, a.parameters()), (422, vec!["csv".to_owned()]));

    // Size: under 2 MB passes, 2 MB does not (few lines, long comments).
    let sized = |total: usize| {
        let mut csv = format!("{CSV_HEADER}\n");
        let mut i = 0;
        while csv.len() < total {
            let left = total - csv.len();
            let prefix = format!("46.0.{}.{},18,{now},", i / 256, i % 256);
            let pad = left.saturating_sub(prefix.len() + 1).min(20_000);
            csv.push_str(&prefix);
            csv.push_str(&"c".repeat(pad));
            csv.push('\n');
            i += 1;
        }
        csv.truncate(total);
        csv
    };
    let just_under = sized(MAX_CSV_BYTES - 1);
    assert_eq!(just_under.len(), MAX_CSV_BYTES - 1);
    let a = bulk(&fake, &just_under).await;
    assert_eq!(a.status, 200, "{}", &a.body[..a.body.len().min(300)]);
    let a = bulk(&fake, &sized(MAX_CSV_BYTES)).await;
    assert_eq!((a.status, a.parameters()), (422, vec!["csv".to_owned()]));
}

#[tokio::test]
async fn bulk_quota_is_5_a_day_by_default() {
    let fake = fake();
    let csv = build_csv(&[["8.8.8.8", "18", &iso(T0), ""]]);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let a = bulk(&fake, &csv).await;
        seen.push((a.status, a.remaining()));
    }
    assert_eq!(
        seen,
        [
            (200, Some(4)),
            (200, Some(3)),
            (200, Some(2)),
            (200, Some(1)),
            (200, Some(0)),
            (429, Some(0)),
        ]
    );
    let last = fake.requests().pop().expect("a record");
    assert!(last.retry_after.is_some());
    assert_eq!(fake.remaining(Endpoint::Report), 1000);
}

#[test]
fn the_csv_reader_takes_both_quote_escapes_and_crlf() {
    let text = "IP,Categories,ReportDate,Comment\r\n8.8.8.8,\"18,22\",d,\"a \\\"b\\\" \"\"c\"\"\"\r\n9.9.9.9,18,d,";
    let rows = parse_csv(text).expect("well formed");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1], ["8.8.8.8", "18,22", "d", "a \"b\" \"c\""]);
    assert_eq!(rows[2], ["9.9.9.9", "18", "d", ""]);
    assert!(parse_csv("a,\"b\n").is_none());
}

#[test]
fn iso_8601_times_need_a_zone_and_a_real_date() {
    use support::fake_server::parse_iso8601;
    assert_eq!(iso(T0), "2026-03-10T12:00:00Z");
    assert_eq!(parse_iso8601("2026-03-10T12:00:00Z"), Some(T0));
    assert_eq!(parse_iso8601("2026-03-10 14:00:00+02:00"), Some(T0));
    assert_eq!(parse_iso8601("2026-03-10T07:00-05"), Some(T0));
    assert_eq!(parse_iso8601("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    assert_eq!(parse_iso8601("1969-12-31T23:59:59Z"), Some(-1));
    for bad in [
        "2026-03-10T12:00:00",
        "2026-03-10",
        "2025-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-03-10T24:00:00Z",
        "2026-03-10T12:00:00.Z",
        "2026-03-10T12:00:00Zjunk",
        "2026-03-10T12:00:00+2:00",
        "1773144000",
    ] {
        assert_eq!(parse_iso8601(bad), None, "{bad}");
    }
}
