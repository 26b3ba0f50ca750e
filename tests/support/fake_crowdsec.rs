//! A contract-faithful fake of the CrowdSec Local API (LAPI), for fast
//! failure-path tests (token expiry, 401s, 5xx, dropped connections). The
//! end-to-end tests use the real CrowdSec; this fake answers the way it
//! does, from its `pkg/models/localapi_swagger.yaml` (crowdsecurity/crowdsec:
//! the request and answer shapes, the required fields) and the behaviour of
//! its JWT middleware (401 with `{"code": 401, "message": ...}`). Where the
//! swagger is silent the fake is strict and says so with **assumed**.
//!
//! # Running it
//!
//! [`FakeLapi::start`] binds `127.0.0.1:0` and serves on its own background
//! std thread and current-thread tokio runtime; dropping it (or
//! [`FakeLapi::shutdown`]) closes the port and every connection.
//! [`FakeLapi::url`] is a client's `lapi_url` (`http://127.0.0.1:PORT`).
//!
//! Its clock (token expiry, decision expiry) is the real time shifted by
//! [`FakeLapi::advance`], in milliseconds; a short
//! [`LapiConfig::token_lifetime`] works too.
//!
//! # The contract it enforces
//!
//! Served: `POST /v1/watchers/login`, `POST /v1/alerts` (machines) and
//! `GET /v1/decisions` (bouncers). A request is answered by the first rule
//! that applies; error bodies are the swagger's `ErrorResponse`,
//! `{"message": "..."}`, except the 401s (`{"code": 401, "message": ...}`):
//!
//! 1. while [`FakeLapi::set_down`]`(true)`: `503`;
//! 2. unknown path: `404`; known path, other method: `405`, both with an
//!    empty body (as the real router);
//! 3. authentication: `/v1/alerts` needs `Authorization: Bearer <token>`
//!    with a token this fake issued, not revoked ([`FakeLapi::revoke_tokens`],
//!    as a LAPI restart with a new JWT secret does) and not expired, else
//!    `401` (messages say which: missing, invalid or expired, informative
//!    only); `/v1/decisions` needs `X-Api-Key` = [`LapiConfig::bouncer_key`],
//!    else `403`; login needs nothing here;
//! 4. the next scripted [`Failure`] (FIFO, one per request passing rule 3);
//! 5. login: every refusal is `401` `{"code": 401, "message": ...}`, as the
//!    real JWT middleware answers (checked against crowdsec 1.4.6): a body
//!    that is not a JSON object with string `machine_id` and `password`
//!    (`scenarios`, optional, a list of strings); an unknown machine; a
//!    wrong password; and a `User-Agent` that is not exactly `name/version`
//!    (one `/`: the real LAPI stores the version and refuses the login
//!    otherwise, with "incorrect Username or Password"). Success: `200`
//!    `{"code": 200, "expire": "<RFC 3339, UTC>", "token": "<JWT-like>"}`,
//!    the token valid for [`LapiConfig::token_lifetime`] (default 1 h, the
//!    LAPI's JWT timeout);
//! 6. alerts, in the real LAPI's order and with its statuses:
//!    a body that does not decode into a list of alerts (not JSON, not a
//!    list, a field of the wrong JSON type) is `400` `{"message": "json:
//!    ..."}`; then the swagger's required fields: `scenario`,
//!    `scenario_hash`, `scenario_version`, `message`, `start_at`, `stop_at`,
//!    `leakspeed`, `events_count`, `capacity`, `simulated`, `events` (a
//!    list of `{"timestamp", "meta"}`), `source` (`{"scope", "value"}`);
//!    each decision's `origin`, `type`, `scope`, `value`, `duration`,
//!    `scenario`: a missing one is **`500`** `{"message": "validation
//!    failure list:\n0.events in body is required"}` (the real controller
//!    hands validation errors to its database error handler, whose default
//!    is 500); then, while storing, a `duration` that is not a Go duration
//!    (`"1d"`) or a decision of scope `Ip`/`Range` whose value is not an
//!    address is `500` "unable to create alerts: decision duration ..." /
//!    "... invalid addr/range ...", nothing stored. Stricter than the real
//!    LAPI (**assumed** mistakes, which it stores as already expired): a
//!    duration must be positive. An empty list is `201 []`;
//! 7. otherwise alerts answer `201` with the list of the new alert ids (as
//!    strings, swagger `AddAlertsResponse`); each decision gets an id and
//!    expires at its alert's `stop_at` + its duration (the fake clock when
//!    `stop_at` is not RFC 3339, as the real LAPI does);
//! 8. `GET /v1/decisions` answers `200` with the active decisions (not
//!    expired), filtered by the query's `ip` / `scope` / `value` / `type`,
//!    each `{id, origin, type, scope, value, duration, scenario}` with the
//!    *remaining* duration (e.g. `"23h59m58s"`); `null` when there is none
//!    (as the real LAPI answers).
//!
//! # Recording
//!
//! Every request is recorded ([`RequestRecord`]) before its answer is sent,
//! every accepted alert ([`Alert`]) and decision ([`Decision`]) too.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Map, Value};

use super::fake_server::{
    all_headers, format_go_duration, format_rfc3339, header, parse_go_duration, parse_iso8601,
    poll_async, poll_blocking, Outcome, Server,
};

/// The machine [`LapiConfig::default`] registers.
pub const DEFAULT_MACHINE: &str = "tjfwd-test";
/// Its password.
pub const DEFAULT_PASSWORD: &str = "tjfwd-test-password-0123456789";
/// The bouncer key [`LapiConfig::default`] accepts.
pub const DEFAULT_BOUNCER_KEY: &str = "bouncer-test-key-0123456789";
/// The login endpoint.
pub const LOGIN_PATH: &str = "/v1/watchers/login";
/// The alerts endpoint.
pub const ALERTS_PATH: &str = "/v1/alerts";
/// The bouncers' decisions endpoint.
pub const DECISIONS_PATH: &str = "/v1/decisions";

/// Settings of a [`FakeLapi`]; use struct update syntax over [`Default`].
#[derive(Clone, Debug)]
pub struct LapiConfig {
    /// Registered machines: (machine_id, password).
    pub machines: Vec<(String, String)>,
    /// How long a login's token is valid.
    pub token_lifetime: Duration,
    /// The `X-Api-Key` of `GET /v1/decisions`.
    pub bouncer_key: String,
}

impl Default for LapiConfig {
    fn default() -> Self {
        LapiConfig {
            machines: vec![(DEFAULT_MACHINE.to_owned(), DEFAULT_PASSWORD.to_owned())],
            token_lifetime: Duration::from_secs(3600),
            bouncer_key: DEFAULT_BOUNCER_KEY.to_owned(),
        }
    }
}

/// A scripted, one-shot misbehaviour, consumed (FIFO) by the next request
/// passing rule 3. See [`FakeLapi::push_failure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer this status with `{"message": ...}` (an invalid code: 500).
    /// A scripted 401 has the middleware's `code` too.
    Status(u16),
    /// Close the connection without answering (recorded with status 0).
    Drop,
    /// Wait this long, then answer normally (authentication was checked on
    /// arrival).
    Delay(Duration),
}

/// One request the fake received, whatever its answer.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The fake clock at arrival, unix milliseconds.
    pub at_ms: i64,
    /// The real time at arrival.
    pub instant: Instant,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Status answered; `0` when dropped.
    pub status: u16,
    /// Whether a scripted [`Failure::Drop`] closed the connection.
    pub dropped: bool,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The machine whose valid token authenticated it, if any.
    pub machine: Option<String>,
    /// All request headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The request body (lossy UTF-8).
    pub body: String,
    /// The answer's body.
    pub answer: String,
}

impl RequestRecord {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An accepted alert.
#[derive(Clone, Debug)]
pub struct Alert {
    /// Its id.
    pub id: u64,
    /// The machine that pushed it.
    pub machine: String,
    /// Its `scenario`.
    pub scenario: String,
    /// Its `message`.
    pub message: String,
    /// Its `source.scope` and `source.value`.
    pub source: (String, String),
    /// The ids of its decisions.
    pub decision_ids: Vec<u64>,
    /// The alert as sent.
    pub raw: Value,
}

/// An accepted decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Its id.
    pub id: u64,
    /// The alert that carried it.
    pub alert_id: u64,
    /// `origin`, `type`, `scope`, `value`, `duration`, `scenario` as sent.
    pub origin: String,
    /// `type` (e.g. `"ban"`).
    pub kind: String,
    /// `scope` (e.g. `"Ip"`).
    pub scope: String,
    /// `value` (the address).
    pub value: String,
    /// `duration` as sent (e.g. `"24h"`).
    pub duration: String,
    /// `scenario`.
    pub scenario: String,
    /// Fake clock when it was made, unix ms.
    pub created_ms: i64,
    /// When it expires, unix ms.
    pub until_ms: i64,
}

/// A running fake LAPI. Stops when dropped.
pub struct FakeLapi {
    server: Server,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeLapi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLapi")
            .field("addr", &self.server.addr())
            .finish()
    }
}

impl FakeLapi {
    /// Binds `127.0.0.1:0` and serves.
    pub fn start(cfg: LapiConfig) -> FakeLapi {
        FakeLapi::start_at(Server::any_port(), cfg)
    }

    /// Like [`FakeLapi::start`], on `addr`.
    pub fn start_at(addr: SocketAddr, cfg: LapiConfig) -> FakeLapi {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                machines: cfg.machines.iter().cloned().collect(),
                cfg,
                offset_ms: 0,
                down: false,
                failures: VecDeque::new(),
                tokens: HashMap::new(),
                issued: 0,
                logins: 0,
                next_alert: 1,
                next_decision: 1,
                records: Vec::new(),
                alerts: Vec::new(),
                decisions: Vec::new(),
            }),
        });
        let for_server = Arc::clone(&shared);
        let server = Server::start("fake-lapi", addr, move |parts, body| {
            process(Arc::clone(&for_server), parts, body)
        });
        FakeLapi { server, shared }
    }

    /// Stops the server (as dropping it does).
    pub fn shutdown(mut self) {
        self.server.stop();
    }

    /// `http://127.0.0.1:PORT`, a client's `lapi_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    // ----- clock and controls ------------------------------------------

    /// The fake clock, unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.shared.lock().now_ms()
    }

    /// Moves the fake clock forward (tokens and decisions expire).
    pub fn advance(&self, by: Duration) {
        self.shared.lock().offset_ms += by.as_millis() as i64;
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// Token lifetime of the logins from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.lock().cfg.token_lifetime = lifetime;
    }

    /// Invalidates every token issued so far (a LAPI restart with a new
    /// secret): their next use gets 401.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Registers a machine, or changes its password.
    pub fn set_machine(&self, machine_id: &str, password: &str) {
        self.shared
            .lock()
            .machines
            .insert(machine_id.to_owned(), password.to_owned());
    }

    /// Queues a one-shot failure.
    pub fn push_failure(&self, failure: Failure) {
        self.shared.lock().failures.push_back(failure);
    }

    /// Queues several failures, in order.
    pub fn push_failures(&self, failures: impl IntoIterator<Item = Failure>) {
        self.shared.lock().failures.extend(failures);
    }

    /// Scripted failures not consumed yet.
    pub fn pending_failures(&self) -> usize {
        self.shared.lock().failures.len()
    }

    /// Forgets the scripted failures not consumed yet.
    pub fn clear_failures(&self) {
        self.shared.lock().failures.clear();
    }

    // ----- recording ---------------------------------------------------

    /// Every request so far, in the order their answers were decided.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().records.clone()
    }

    /// Number of requests so far.
    pub fn request_count(&self) -> usize {
        self.shared.lock().records.len()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.lock().records.clear();
    }

    /// Successful logins so far.
    pub fn logins(&self) -> usize {
        self.shared.lock().logins
    }

    /// Every accepted alert, in order.
    pub fn alerts(&self) -> Vec<Alert> {
        self.shared.lock().alerts.clone()
    }

    /// Every accepted decision, in order, expired ones included.
    pub fn decisions(&self) -> Vec<Decision> {
        self.shared.lock().decisions.clone()
    }

    /// Number of accepted decisions so far (cheap, for polling).
    pub fn decision_count(&self) -> usize {
        self.shared.lock().decisions.len()
    }

    /// The decisions not expired at the fake clock.
    pub fn active_decisions(&self) -> Vec<Decision> {
        let state = self.shared.lock();
        let now = state.now_ms();
        state
            .decisions
            .iter()
            .filter(|d| d.until_ms > now)
            .cloned()
            .collect()
    }

    /// The latest expiry (unix ms) of the active decisions on `value`.
    pub fn banned_until_ms(&self, value: &str) -> Option<i64> {
        self.active_decisions()
            .into_iter()
            .filter(|d| same_value(&d.value, value))
            .map(|d| d.until_ms)
            .max()
    }

    /// Blocks until at least `n` decisions were accepted or `timeout` passed.
    pub fn wait_for_decisions(&self, n: usize, timeout: Duration) -> bool {
        poll_blocking(timeout, || self.shared.lock().decisions.len() >= n)
    }

    /// Async [`FakeLapi::wait_for_decisions`].
    pub async fn wait_for_decisions_async(&self, n: usize, timeout: Duration) -> bool {
        poll_async(timeout, || self.shared.lock().decisions.len() >= n).await
    }

    /// Blocks until at least `n` requests were recorded or `timeout` passed.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        poll_blocking(timeout, || self.request_count() >= n)
    }
}

/// Whether two decision values are the same (IP addresses by value).
fn same_value(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

// ===== state ===============================================================

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct State {
    cfg: LapiConfig,
    machines: HashMap<String, String>,
    offset_ms: i64,
    down: bool,
    failures: VecDeque<Failure>,
    /// Token -> (machine, expiry in unix ms).
    tokens: HashMap<String, (String, i64)>,
    issued: u64,
    logins: usize,
    next_alert: u64,
    next_decision: u64,
    records: Vec<RequestRecord>,
    alerts: Vec<Alert>,
    decisions: Vec<Decision>,
}

impl State {
    fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        real + self.offset_ms
    }
}

// ===== request handling ====================================================

fn message(status: u16, msg: &str) -> (u16, Value) {
    if status == 401 {
        (401, json!({ "code": 401, "message": msg }))
    } else {
        (status, json!({ "message": msg }))
    }
}

async fn process(shared: Arc<Shared>, parts: Parts, body: Bytes) -> Outcome {
    let mut rec = RequestRecord {
        at_ms: 0,
        instant: Instant::now(),
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        status: 0,
        dropped: false,
        authorization: header(&parts, "authorization").map(str::to_owned),
        machine: None,
        headers: all_headers(&parts),
        body: String::from_utf8_lossy(&body).into_owned(),
        answer: String::new(),
    };
    let expected = match rec.path.as_str() {
        LOGIN_PATH | ALERTS_PATH => Some(Method::POST),
        DECISIONS_PATH => Some(Method::GET),
        _ => None,
    };
    // Rules 1 to 4, on arrival.
    let admitted: Result<Option<Duration>, Option<(u16, Value)>> = {
        let mut state = shared.lock();
        let now = state.now_ms();
        rec.at_ms = now;
        let auth = match rec.path.as_str() {
            ALERTS_PATH => match rec.authorization.as_deref().and_then(bearer) {
                None => Err(message(401, "auth header is empty or not a bearer token")),
                Some(token) => match state.tokens.get(token) {
                    None => Err(message(401, "token is invalid")),
                    Some((_, until)) if *until <= now => Err(message(401, "Token is expired")),
                    Some((machine, _)) => {
                        rec.machine = Some(machine.clone());
                        Ok(())
                    }
                },
            },
            DECISIONS_PATH => {
                if header(&parts, "x-api-key") == Some(state.cfg.bouncer_key.as_str()) {
                    Ok(())
                } else {
                    Err(message(403, "access forbidden"))
                }
            }
            _ => Ok(()),
        };
        if state.down {
            Err(Some(message(503, "service unavailable")))
        } else if expected.is_none() {
            Err(Some((404, Value::Null)))
        } else if expected.as_ref() != Some(&parts.method) {
            Err(Some((405, Value::Null)))
        } else if let Err(refusal) = auth {
            Err(Some(refusal))
        } else {
            match state.failures.pop_front() {
                None => Ok(None),
                Some(Failure::Delay(d)) => Ok(Some(d)),
                Some(Failure::Drop) => Err(None),
                Some(Failure::Status(code)) => {
                    let code = if (100..=999).contains(&code) {
                        code
                    } else {
                        500
                    };
                    Err(Some(message(code, "scripted failure")))
                }
            }
        }
    };
    // The record is pushed under the lock that decided the answer, so a
    // test that sees an alert also sees its request.
    let (mut state, reply) = match admitted {
        Err(reply) => (shared.lock(), reply),
        Ok(delay) => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let mut state = shared.lock();
            let reply = Some(match rec.path.as_str() {
                LOGIN_PATH => login(&mut state, header(&parts, "user-agent"), &body),
                ALERTS_PATH => {
                    let machine = rec.machine.clone().unwrap_or_default();
                    push_alerts(&mut state, &machine, &body)
                }
                _ => get_decisions(&state, rec.query.as_deref()),
            });
            (state, reply)
        }
    };
    let outcome = match reply {
        None => {
            rec.dropped = true;
            Outcome::Drop
        }
        Some((status, body)) => {
            rec.status = status;
            // The router's 404 and 405 have an empty body.
            rec.answer = if body.is_null() && matches!(status, 404 | 405) {
                String::new()
            } else {
                body.to_string()
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Outcome::Respond(
                (
                    status,
                    [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                    rec.answer.clone(),
                )
                    .into_response(),
            )
        }
    };
    state.records.push(rec);
    outcome
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

fn login(state: &mut State, user_agent: Option<&str>, body: &[u8]) -> (u16, Value) {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => return message(
            401,
            "missing: json: cannot unmarshal array into Go value of type models.WatcherAuthRequest",
        ),
        Err(e) => return message(401, &format!("missing: {e}")),
    };
    let typed = |k: &str| {
        matches!(
            obj.get(k),
            None | Some(Value::Null) | Some(Value::String(_))
        )
    };
    let scenarios_ok = match obj.get("scenarios") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.iter().all(Value::is_string),
        Some(_) => false,
    };
    if !typed("machine_id") || !typed("password") || !scenarios_ok {
        return message(
            401,
            "missing: json: cannot unmarshal into Go struct field of WatcherAuthRequest",
        );
    }
    let (Some(Value::String(machine)), Some(Value::String(password))) =
        (obj.get("machine_id"), obj.get("password"))
    else {
        return message(401, "input format error");
    };
    let Some(known) = state.machines.get(machine) else {
        return message(401, "ent: machine not found");
    };
    if known != password {
        return message(401, "incorrect Username or Password");
    }
    if user_agent.is_none_or(|ua| ua.split('/').count() != 2) {
        return message(401, "incorrect Username or Password");
    }
    state.issued += 1;
    state.logins += 1;
    let hex: String = machine.bytes().map(|b| format!("{b:02x}")).collect();
    let token = format!("eyJhbGciOiJIUzI1NiJ9.{hex}.{:016x}", state.issued);
    let expire_ms = state.now_ms() + state.cfg.token_lifetime.as_millis() as i64;
    state
        .tokens
        .insert(token.clone(), (machine.clone(), expire_ms));
    (
        200,
        json!({ "code": 200, "expire": format_rfc3339(expire_ms.div_euclid(1000)), "token": token }),
    )
}

/// Checks the JSON type of `obj[field]` when present (what Go's decoder
/// refuses: `400`), pushing a line to `decode`; and its presence (what the
/// swagger's validation refuses: `500`), pushing a line to `missing`.
fn require(
    obj: &Map<String, Value>,
    at: &str,
    field: &str,
    kind: &str,
    decode: &mut Vec<String>,
    missing: &mut Vec<String>,
) {
    let ok = match obj.get(field) {
        None | Some(Value::Null) => {
            missing.push(format!("{at}.{field} in body is required"));
            return;
        }
        Some(v) => match kind {
            "string" => v.is_string(),
            "integer" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => unreachable!("kind {kind}"),
        },
    };
    if !ok {
        decode.push(format!(
            "json: cannot unmarshal into Go struct field {at}.{field} of type {kind}"
        ));
    }
}

fn push_alerts(state: &mut State, machine: &str, body: &[u8]) -> (u16, Value) {
    let alerts = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(alerts)) => alerts,
        Ok(_) => {
            return message(
                400,
                "json: cannot unmarshal object into Go value of type models.AddAlertsRequest",
            )
        }
        Err(e) => return message(400, &e.to_string()),
    };
    let mut decode = Vec::new();
    let mut missing = Vec::new();
    let mut store = Vec::new();
    for (i, alert) in alerts.iter().enumerate() {
        let at = i.to_string();
        let Some(obj) = alert.as_object() else {
            decode.push(format!("json: cannot unmarshal alert {i}: not an object"));
            continue;
        };
        for field in [
            "scenario",
            "scenario_hash",
            "scenario_version",
            "message",
            "start_at",
            "stop_at",
            "leakspeed",
        ] {
            require(obj, &at, field, "string", &mut decode, &mut missing);
        }
        require(
            obj,
            &at,
            "events_count",
            "integer",
            &mut decode,
            &mut missing,
        );
        require(obj, &at, "capacity", "integer", &mut decode, &mut missing);
        require(obj, &at, "simulated", "boolean", &mut decode, &mut missing);
        require(obj, &at, "events", "array", &mut decode, &mut missing);
        require(obj, &at, "source", "object", &mut decode, &mut missing);
        if let Some(Value::Array(events)) = obj.get("events") {
            for (j, event) in events.iter().enumerate() {
                let at = format!("{at}.events.{j}");
                match event.as_object() {
                    None => decode.push(format!("json: cannot unmarshal {at}: not an object")),
                    Some(e) => {
                        require(e, &at, "timestamp", "string", &mut decode, &mut missing);
                        require(e, &at, "meta", "array", &mut decode, &mut missing);
                    }
                }
            }
        }
        if let Some(Value::Object(source)) = obj.get("source") {
            let at = format!("{at}.source");
            require(source, &at, "scope", "string", &mut decode, &mut missing);
            require(source, &at, "value", "string", &mut decode, &mut missing);
        }
        match obj.get("decisions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(decisions)) => {
                for (j, decision) in decisions.iter().enumerate() {
                    let at = format!("{at}.decisions.{j}");
                    let Some(d) = decision.as_object() else {
                        decode.push(format!("json: cannot unmarshal {at}: not an object"));
                        continue;
                    };
                    for field in ["origin", "type", "scope", "value", "duration", "scenario"] {
                        require(d, &at, field, "string", &mut decode, &mut missing);
                    }
                    // Checked while storing, after the validation.
                    if let Some(Value::String(duration)) = d.get("duration") {
                        if !parse_go_duration(duration).is_some_and(|s| s > 0.0) {
                            store.push(format!(
                                "unable to create alerts: decision duration '{duration}' : time: invalid duration (must be positive here)"
                            ));
                        }
                    }
                    if let (Some(Value::String(scope)), Some(Value::String(value))) =
                        (d.get("scope"), d.get("value"))
                    {
                        let is_addr = value.parse::<IpAddr>().is_ok()
                            || (scope.eq_ignore_ascii_case("range")
                                && value.parse::<ipnet::IpNet>().is_ok());
                        if (scope.eq_ignore_ascii_case("ip") || scope.eq_ignore_ascii_case("range"))
                            && !is_addr
                        {
                            store.push(format!(
                                "unable to create alerts: invalid addr/range {value} : invalid address: unable to parse duration"
                            ));
                        }
                    }
                }
            }
            Some(_) => decode.push(format!(
                "json: cannot unmarshal into Go struct field Alert.decisions of {at}"
            )),
        }
    }
    if let Some(first) = decode.first() {
        return message(400, first);
    }
    if !missing.is_empty() {
        return message(
            500,
            &format!("validation failure list:\n{}", missing.join("\n")),
        );
    }
    if let Some(first) = store.first() {
        return message(500, first);
    }
    let now = state.now_ms();
    let mut ids = Vec::new();
    for alert in alerts {
        let id = state.next_alert;
        state.next_alert += 1;
        let s = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let mut decision_ids = Vec::new();
        if let Some(Value::Array(decisions)) = alert.get("decisions") {
            for d in decisions {
                let did = state.next_decision;
                state.next_decision += 1;
                let secs = parse_go_duration(&s(d, "duration")).unwrap_or(0.0);
                let stop_ms = parse_iso8601(&s(&alert, "stop_at")).map_or(now, |t| t * 1000);
                state.decisions.push(Decision {
                    id: did,
                    alert_id: id,
                    origin: s(d, "origin"),
                    kind: s(d, "type"),
                    scope: s(d, "scope"),
                    value: s(d, "value"),
                    duration: s(d, "duration"),
                    scenario: s(d, "scenario"),
                    created_ms: now,
                    until_ms: stop_ms + (secs * 1000.0) as i64,
                });
                decision_ids.push(did);
            }
        }
        let source = alert.get("source").cloned().unwrap_or_default();
        state.alerts.push(Alert {
            id,
            machine: machine.to_owned(),
            scenario: s(&alert, "scenario"),
            message: s(&alert, "message"),
            source: (s(&source, "scope"), s(&source, "value")),
            decision_ids,
            raw: alert,
        });
        ids.push(Value::String(id.to_string()));
    }
    (201, Value::Array(ids))
}

fn get_decisions(state: &State, query: Option<&str>) -> (u16, Value) {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let now = state.now_ms();
    let found: Vec<Value> = state
        .decisions
        .iter()
        .filter(|d| d.until_ms > now)
        .filter(|d| {
            get("ip")
                .is_none_or(|ip| d.scope.eq_ignore_ascii_case("ip") && same_value(&d.value, ip))
        })
        .filter(|d| get("scope").is_none_or(|s| d.scope.eq_ignore_ascii_case(s)))
        .filter(|d| get("value").is_none_or(|v| same_value(&d.value, v)))
        .filter(|d| get("type").is_none_or(|t| d.kind == t))
        .map(|d| {
            json!({
                "id": d.id,
                "origin": d.origin,
                "type": d.kind,
                "scope": d.scope,
                "value": d.value,
                "duration": format_go_duration((d.until_ms - now).div_euclid(1000)),
                "scenario": d.scenario,
            })
        })
        .collect();
    if found.is_empty() {
        (200, Value::Null)
    } else {
        (200, Value::Array(found))
    }
}
