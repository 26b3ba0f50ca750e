//! Tests of the fake CrowdSec Local API (`tests/support/fake_crowdsec.rs`)
//! itself, through plain HTTP requests: login, token expiry and
//! revocation, alert validation, decisions as a bouncer sees them, and the
//! scripted failures.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::fake_crowdsec::{
    Failure, FakeLapi, LapiConfig, ALERTS_PATH, DECISIONS_PATH, DEFAULT_BOUNCER_KEY,
    DEFAULT_MACHINE, DEFAULT_PASSWORD, LOGIN_PATH,
};

#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {}", self.body))
            .to_owned()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent("fake-selftest/1.0")
        .build()
        .expect("reqwest client")
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("an answer");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("a body");
    Answer { status, body }
}

async fn post_json(fake: &FakeLapi, path: &str, token: Option<&str>, body: &Value) -> Answer {
    let mut req = client()
        .post(format!("{}{path}", fake.url()))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    send(req).await
}

async fn login_as(fake: &FakeLapi, machine: &str, password: &str) -> Answer {
    let body =
        json!({ "machine_id": machine, "password": password, "scenarios": ["tjfwd/cowrie-login"] });
    post_json(fake, LOGIN_PATH, None, &body).await
}

async fn login(fake: &FakeLapi) -> String {
    let a = login_as(fake, DEFAULT_MACHINE, DEFAULT_PASSWORD).await;
    assert_eq!(a.status, 200, "{a:?}");
    a.json()["token"].as_str().expect("a token").to_owned()
}

/// An alert as tjfwd will send it: one ban decision per address, stopped
/// now (its decisions last `duration` from its `stop_at`).
fn alert(addresses: &[&str], duration: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let at = support::fake_server::format_rfc3339(now);
    let decisions: Vec<Value> = addresses
        .iter()
        .map(|ip| {
            json!({
                "origin": "tjfwd", "type": "ban", "scope": "Ip", "value": ip,
                "duration": duration, "scenario": "tjfwd/cowrie-login",
            })
        })
        .collect();
    json!({
        "scenario": "tjfwd/cowrie-login",
        "scenario_hash": "",
        "scenario_version": "",
        "message": format!("tjfwd: {} addresses from cowrie", addresses.len()),
        "events_count": addresses.len(),
        "start_at": at,
        "stop_at": at,
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "events": [],
        "source": { "scope": "Ip", "value": addresses.first().copied().unwrap_or("") },
        "decisions": decisions,
    })
}

async fn decisions_seen(fake: &FakeLapi, query: &str) -> Answer {
    send(
        client()
            .get(format!("{}{DECISIONS_PATH}{query}", fake.url()))
            .header("X-Api-Key", DEFAULT_BOUNCER_KEY),
    )
    .await
}

#[tokio::test]
async fn login_answers_a_token_and_its_expiry() {
    let fake = FakeLapi::start(LapiConfig::default());
    let before = fake.now_ms() / 1000;
    let a = login_as(&fake, DEFAULT_MACHINE, DEFAULT_PASSWORD).await;
    assert_eq!(a.status, 200, "{a:?}");
    let body = a.json();
    assert_eq!(body["code"], 200);
    let token = body["token"].as_str().expect("token");
    assert_eq!(token.split('.').count(), 3, "JWT-like: {token}");
    let expire = body["expire"].as_str().expect("expire");
    let expire = support::fake_server::parse_iso8601(expire).expect("RFC 3339");
    assert!(
        (before + 3599..=before + 3601).contains(&expire),
        "{expire}"
    );
    assert_eq!(fake.logins(), 1);

    // Wrong password, unknown machine: 401 with the middleware's code.
    for (m, p) in [(DEFAULT_MACHINE, "nope"), ("stranger", DEFAULT_PASSWORD)] {
        let a = login_as(&fake, m, p).await;
        assert_eq!(a.status, 401, "{a:?}");
        assert_eq!(a.json()["code"], 401);
    }
    // Malformed bodies: 401 too, as the real middleware answers.
    for body in [
        json!({ "machine_id": DEFAULT_MACHINE }),
        json!({ "machine_id": 1, "password": DEFAULT_PASSWORD }),
        json!({ "machine_id": DEFAULT_MACHINE, "password": DEFAULT_PASSWORD, "scenarios": "x" }),
        json!([]),
    ] {
        let a = post_json(&fake, LOGIN_PATH, None, &body).await;
        assert_eq!(a.status, 401, "{body}: {a:?}");
        assert!(!a.message().is_empty());
    }
    // A User-Agent that is not `name/version`: refused, as the real LAPI does.
    let body = json!({ "machine_id": DEFAULT_MACHINE, "password": DEFAULT_PASSWORD });
    for ua in ["tjfwd", "tjfwd/1.0 (linux/x86)"] {
        let a = send(
            client()
                .post(format!("{}{LOGIN_PATH}", fake.url()))
                .header("User-Agent", ua)
                .body(body.to_string()),
        )
        .await;
        assert_eq!(a.status, 401, "{ua}: {a:?}");
    }
    assert_eq!(fake.logins(), 1);
    // A machine added later, without scenarios.
    fake.set_machine("second", "pw2");
    let a = post_json(
        &fake,
        LOGIN_PATH,
        None,
        &json!({ "machine_id": "second", "password": "pw2" }),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(fake.logins(), 2);
}

#[tokio::test]
async fn alerts_record_decisions_with_their_expiry() {
    let fake = FakeLapi::start(LapiConfig::default());
    let token = login(&fake).await;
    let body = json!([
        alert(&["8.8.8.8", "2a00:1450::1"], "24h"),
        alert(&["8.8.4.4"], "1h30m")
    ]);
    let before = fake.now_ms();
    let a = post_json(&fake, ALERTS_PATH, Some(&token), &body).await;
    let after = fake.now_ms();
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.json(), json!(["1", "2"]));

    let alerts = fake.alerts();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].machine, DEFAULT_MACHINE);
    assert_eq!(alerts[0].source, ("Ip".to_owned(), "8.8.8.8".to_owned()));
    assert_eq!(alerts[0].decision_ids, [1, 2]);
    let d = fake.decisions();
    assert_eq!(d.len(), 3);
    assert_eq!(
        (d[0].kind.as_str(), d[0].scope.as_str(), d[0].value.as_str()),
        ("ban", "Ip", "8.8.8.8")
    );
    assert_eq!(d[0].duration, "24h");
    assert_eq!(d[2].alert_id, 2);
    let day = 86_400_000;
    // From stop_at, written in whole seconds.
    assert!((before - 1000 + day..=after + day).contains(&d[0].until_ms));
    assert!((before - 1000 + 5_400_000..=after + 5_400_000).contains(&d[2].until_ms));
    let recs = fake.requests();
    assert_eq!(
        recs.last().and_then(|r| r.machine.as_deref()),
        Some(DEFAULT_MACHINE)
    );

    // As a bouncer sees them: remaining durations, filters, expiry.
    let seen = decisions_seen(&fake, "").await;
    assert_eq!(seen.status, 200);
    let list = seen.json();
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 3);
    let dur = list[0]["duration"].as_str().expect("duration");
    assert!(dur.starts_with("23h59m") || dur == "24h0m0s", "{dur}");
    let one = decisions_seen(&fake, "?ip=2a00:1450:0::1").await.json();
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one[0]["value"], "2a00:1450::1");
    // A later sighting extends the ban: a new decision, the latest wins.
    fake.advance(Duration::from_secs(3600));
    // (An hour later, the token has expired: log in again.)
    let token = login(&fake).await;
    let a = post_json(
        &fake,
        ALERTS_PATH,
        Some(&token),
        &json!([alert(&["8.8.8.8"], "24h")]),
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}");
    let until = fake.banned_until_ms("8.8.8.8").expect("banned");
    assert_eq!(until, fake.decisions()[3].until_ms);
    // 1h30m after the first push, the 1h30m ban is over.
    fake.advance(Duration::from_secs(1800));
    assert_eq!(fake.banned_until_ms("8.8.4.4"), None);
    assert_eq!(decisions_seen(&fake, "?ip=8.8.4.4").await.body, "null");
    assert_eq!(fake.active_decisions().len(), 3);
    // Bouncers need their key.
    let a = send(client().get(format!("{}{DECISIONS_PATH}", fake.url()))).await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn alerts_need_a_valid_unexpired_token() {
    let fake = FakeLapi::start(LapiConfig {
        token_lifetime: Duration::from_secs(60),
        ..LapiConfig::default()
    });
    let body = json!([alert(&["8.8.8.8"], "24h")]);
    let a = post_json(&fake, ALERTS_PATH, None, &body).await;
    assert_eq!((a.status, a.json()["code"].clone()), (401, json!(401)));
    let a = post_json(&fake, ALERTS_PATH, Some("made.up.token"), &body).await;
    assert_eq!(a.status, 401);

    let token = login(&fake).await;
    fake.advance(Duration::from_secs(59));
    assert_eq!(
        post_json(&fake, ALERTS_PATH, Some(&token), &body)
            .await
            .status,
        201
    );
    fake.advance(Duration::from_secs(1));
    let a = post_json(&fake, ALERTS_PATH, Some(&token), &body).await;
    assert_eq!(a.status, 401, "expired: {a:?}");
    assert!(a.message().to_lowercase().contains("expired"), "{a:?}");
    // A new login works again; a revocation (LAPI restart) ends it.
    let fresh = login(&fake).await;
    assert_ne!(fresh, token);
    assert_eq!(
        post_json(&fake, ALERTS_PATH, Some(&fresh), &body)
            .await
            .status,
        201
    );
    fake.revoke_tokens();
    assert_eq!(
        post_json(&fake, ALERTS_PATH, Some(&fresh), &body)
            .await
            .status,
        401
    );
    assert_eq!(fake.decisions().len(), 2);

    // A short real lifetime works too.
    fake.set_token_lifetime(Duration::from_millis(200));
    let short = login(&fake).await;
    assert_eq!(
        post_json(&fake, ALERTS_PATH, Some(&short), &body)
            .await
            .status,
        201
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        post_json(&fake, ALERTS_PATH, Some(&short), &body)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn alerts_are_validated_per_the_swagger() {
    let fake = FakeLapi::start(LapiConfig::default());
    let token = login(&fake).await;
    let good = alert(&["8.8.8.8"], "24h");
    let without = |field: &str| {
        let mut a = good.clone();
        a.as_object_mut().expect("object").remove(field);
        a
    };
    let with = |path: &[&str], v: Value| {
        let mut a = good.clone();
        let mut at = &mut a;
        for p in &path[..path.len() - 1] {
            at = match p.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*p],
            };
        }
        at[path[path.len() - 1]] = v;
        a
    };
    // (why, body, status, a word of the message): what the real LAPI
    // (crowdsec 1.4.6) answers; a missing field is a 500 there.
    let mut cases: Vec<(String, Value, u16, &str)> = Vec::new();
    for field in [
        "scenario",
        "scenario_hash",
        "scenario_version",
        "message",
        "events_count",
        "start_at",
        "stop_at",
        "capacity",
        "leakspeed",
        "simulated",
        "events",
        "source",
    ] {
        cases.push((format!("no {field}"), json!([without(field)]), 500, field));
    }
    for field in ["origin", "type", "scope", "value", "duration", "scenario"] {
        let mut a = good.clone();
        a["decisions"][0]
            .as_object_mut()
            .expect("object")
            .remove(field);
        cases.push((format!("decision without {field}"), json!([a]), 500, field));
    }
    cases.extend([
        (
            "events_count a string".to_owned(),
            json!([with(&["events_count"], json!("1"))]),
            400,
            "events_count",
        ),
        (
            "simulated a string".to_owned(),
            json!([with(&["simulated"], json!("false"))]),
            400,
            "simulated",
        ),
        (
            "source without value".to_owned(),
            json!([with(&["source"], json!({ "scope": "Ip" }))]),
            500,
            "value",
        ),
        (
            "bad duration".to_owned(),
            json!([with(&["decisions", "0", "duration"], json!("1d"))]),
            500,
            "duration",
        ),
        (
            "zero duration".to_owned(),
            json!([with(&["decisions", "0", "duration"], json!("0s"))]),
            500,
            "duration",
        ),
        (
            "Ip scope, not an IP".to_owned(),
            json!([with(&["decisions", "0", "value"], json!("8.8.8.8:22"))]),
            500,
            "invalid addr/range",
        ),
        (
            "event without meta".to_owned(),
            json!([with(&["events"], json!([{ "timestamp": "t" }]))]),
            500,
            "meta",
        ),
        (
            "an object, not a list".to_owned(),
            good.clone(),
            400,
            "json",
        ),
        (
            "a string, not a list".to_owned(),
            Value::String("{".to_owned()),
            400,
            "",
        ),
    ]);
    for (why, body, status, field) in &cases {
        let a = post_json(&fake, ALERTS_PATH, Some(&token), body).await;
        assert_eq!(a.status, *status, "{why}: {a:?}");
        assert!(a.message().contains(field), "{why}: {a:?}");
    }
    assert!(fake.alerts().is_empty() && fake.decisions().is_empty());
    // Two bad alerts: every missing field listed, by index, as go-openapi
    // writes them.
    let mut no_origin = good.clone();
    no_origin["decisions"][0]
        .as_object_mut()
        .expect("object")
        .remove("origin");
    let two = json!([without("message"), no_origin]);
    let a = post_json(&fake, ALERTS_PATH, Some(&token), &two).await;
    assert_eq!(a.status, 500, "{a:?}");
    let msg = a.message();
    assert!(msg.starts_with("validation failure list:"), "{msg}");
    assert!(
        msg.contains("0.message in body is required")
            && msg.contains("1.decisions.0.origin in body is required"),
        "{msg}"
    );
    // The good one, an alert without decisions, an empty list: accepted.
    let mut no_decisions = good.clone();
    no_decisions
        .as_object_mut()
        .expect("object")
        .remove("decisions");
    let a = post_json(
        &fake,
        ALERTS_PATH,
        Some(&token),
        &json!([good, no_decisions]),
    )
    .await;
    assert_eq!((a.status, a.json()), (201, json!(["1", "2"])));
    let a = post_json(&fake, ALERTS_PATH, Some(&token), &json!([])).await;
    assert_eq!((a.status, a.json()), (201, json!([])));
    assert_eq!(fake.decisions().len(), 1);
}

#[tokio::test]
async fn scripted_failures_paths_and_down() {
    let fake = FakeLapi::start(LapiConfig::default());
    let token = login(&fake).await;
    let body = json!([alert(&["8.8.8.8"], "24h")]);
    fake.push_failures([
        Failure::Status(503),
        Failure::Status(401),
        Failure::Drop,
        Failure::Delay(Duration::from_millis(150)),
    ]);
    // An unauthenticated request does not consume a failure.
    assert_eq!(post_json(&fake, ALERTS_PATH, None, &body).await.status, 401);
    assert_eq!(fake.pending_failures(), 4);
    assert_eq!(
        post_json(&fake, ALERTS_PATH, Some(&token), &body)
            .await
            .status,
        503
    );
    let a = post_json(&fake, ALERTS_PATH, Some(&token), &body).await;
    assert_eq!((a.status, a.json()["code"].clone()), (401, json!(401)));
    let err = client()
        .post(format!("{}{ALERTS_PATH}", fake.url()))
        .header("Authorization", format!("Bearer {token}"))
        .body(body.to_string())
        .send()
        .await
        .expect_err("a dropped connection");
    assert!(!err.is_status(), "{err}");
    let started = std::time::Instant::now();
    assert_eq!(
        post_json(&fake, ALERTS_PATH, Some(&token), &body)
            .await
            .status,
        201
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(fake.decisions().len(), 1);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 503, 401, 0, 201]);

    assert_eq!(post_json(&fake, "/v1/nope", None, &body).await.status, 404);
    let a = send(client().get(format!("{}{ALERTS_PATH}", fake.url()))).await;
    assert_eq!(a.status, 405);
    fake.set_down(true);
    assert_eq!(
        login_as(&fake, DEFAULT_MACHINE, DEFAULT_PASSWORD)
            .await
            .status,
        503
    );
    fake.set_down(false);
    assert_eq!(
        login_as(&fake, DEFAULT_MACHINE, DEFAULT_PASSWORD)
            .await
            .status,
        200
    );
}

#[test]
fn go_durations_parse_like_time_parse_duration() {
    use support::fake_server::{format_go_duration, parse_go_duration};
    assert_eq!(parse_go_duration("24h"), Some(86_400.0));
    assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
    assert_eq!(parse_go_duration("4h0m0.5s"), Some(14_400.5));
    assert_eq!(parse_go_duration("1500ms"), Some(1.5));
    assert_eq!(parse_go_duration("0"), Some(0.0));
    for bad in ["", "24", "1d", "h", "1h-2m", "1.2.3s"] {
        assert_eq!(parse_go_duration(bad), None, "{bad}");
    }
    assert_eq!(format_go_duration(86_398), "23h59m58s");
    assert_eq!(format_go_duration(61), "1m1s");
    assert_eq!(format_go_duration(5), "5s");
}
