//! The CrowdSec Local API client: logs in as a machine, keeps the token in
//! memory, and posts one alert a batch carrying one `ban` decision of scope
//! `Ip` per address. Its answer comes back unread as a [`Reply`] (see
//! `classify.rs` for what it means).
//!
//! The token (`POST /v1/watchers/login` → `{token, expire}`) is renewed a
//! little before `expire`, and at once when the LAPI answers 401 (a LAPI
//! restarted with a new JWT secret, a clock that jumped): the alert is then
//! sent again, once, with the new token. The password and the token travel
//! in values marked sensitive and appear in no message.
//!
//! Nothing the attacker chose goes into an alert: its message and its
//! event's meta are tjfwd's own counts; the decisions carry the addresses.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use url::Url;

use super::config::{go_duration, Section};
use crate::config_kit::Secret;
use crate::store::BatchItem;
use crate::targets::http;

/// Largest response body read (the LAPI answers with small JSON bodies).
const MAX_BODY: usize = 16 * 1024;

/// The login endpoint, relative to `lapi_url`.
pub const LOGIN_PATH: &str = "v1/watchers/login";
/// The alerts endpoint, relative to `lapi_url`.
pub const ALERTS_PATH: &str = "v1/alerts";

/// `origin` of the decisions tjfwd makes.
pub const ORIGIN: &str = "tjfwd";

/// Which request a [`Reply`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The login (the alert was not sent).
    Login,
    /// The alert.
    Alert,
}

/// What came back from one attempt, before interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request it answers.
    pub phase: Phase,
    /// HTTP status, or None when no response arrived.
    pub status: Option<u16>,
    /// The body (at most 16 KiB), or the transport error's description, or
    /// why a login's answer was not understood.
    pub body: String,
    /// The alert was sent with a token obtained by this very attempt (so a
    /// 401 to it is not an expired token).
    pub fresh_token: bool,
    /// The `Retry-After` header, verbatim.
    pub retry_after: Option<String>,
}

/// A login's token and when to renew it.
struct Token {
    header: HeaderValue,
    /// None: renewed only when the LAPI refuses it.
    renew_at: Option<Instant>,
}

/// Client setup errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no CrowdSec machine password is configured: set [targets.crowdsec] password_file or password, or the environment variable {}, or pass the systemd credential {}, or use --dry-run", super::config::PASSWORD_ENV, super::config::CREDENTIAL_NAME)]
    NoPassword,
    #[error("[targets.crowdsec]: {0}")]
    Client(String),
}

/// Logs in and sends alerts to the LAPI.
pub struct Lapi {
    client: reqwest::Client,
    login_url: Url,
    alerts_url: Url,
    machine_id: String,
    password: Secret,
    scenario: String,
    duration: String,
    token: Mutex<Option<Token>>,
}

impl std::fmt::Debug for Lapi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lapi")
            .field("login_url", &self.login_url.as_str())
            .field("machine_id", &self.machine_id)
            .finish_non_exhaustive()
    }
}

/// `base` with `path` appended (a base path of a reverse proxy is kept).
fn join(base: &Url, path: &str) -> Url {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join(path).expect("a relative path joins")
}

impl Lapi {
    /// The client of `section` (which must hold the password).
    pub fn new(section: &Section) -> Result<Lapi, ClientError> {
        let password = section.password.clone().ok_or(ClientError::NoPassword)?;
        let client = http::client(
            "[targets.crowdsec]",
            section.ca_file.as_deref(),
            section.request_timeout,
        )
        .map_err(ClientError::Client)?;
        Ok(Lapi {
            client,
            login_url: join(&section.lapi_url, LOGIN_PATH),
            alerts_url: join(&section.lapi_url, ALERTS_PATH),
            machine_id: section.machine_id.clone(),
            password,
            scenario: section.scenario.clone(),
            duration: go_duration(section.duration),
            token: Mutex::new(None),
        })
    }

    /// Sends one batch as one alert, logging in first when there is no
    /// valid token, and once more on a 401. Never fails: a transport error
    /// is a [`Reply`] too.
    pub async fn send(&self, batch: &[BatchItem]) -> Reply {
        let mut token = self.token.lock().await;
        let mut fresh = false;
        let due = match token.as_ref() {
            None => true,
            Some(t) => t.renew_at.is_some_and(|at| Instant::now() >= at),
        };
        if due {
            *token = None;
            match self.login().await {
                Ok(t) => *token = Some(t),
                Err(reply) => return reply,
            }
            fresh = true;
        }
        let body = alert_body(batch, &self.scenario, &self.duration, SystemTime::now());
        let header = token.as_ref().expect("logged in").header.clone();
        let reply = self.post_alert(&header, body.clone(), fresh).await;
        if reply.status != Some(401) {
            return reply;
        }
        // Refused: the token is no good any more. Log in again and send
        // once more, unless it was just issued (then the next attempt will).
        *token = None;
        if fresh {
            return reply;
        }
        match self.login().await {
            Ok(t) => {
                let header = t.header.clone();
                *token = Some(t);
                self.post_alert(&header, body, true).await
            }
            Err(reply) => reply,
        }
    }

    async fn post_alert(&self, token: &HeaderValue, body: Vec<u8>, fresh: bool) -> Reply {
        let result = self
            .client
            .post(self.alerts_url.clone())
            .header(AUTHORIZATION, token.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let (status, retry_after, body) = match result {
            Err(e) => (None, None, transport_error(&e)),
            Ok(resp) => (
                Some(resp.status().as_u16()),
                retry_after(&resp),
                http::body(resp, MAX_BODY).await,
            ),
        };
        Reply {
            phase: Phase::Alert,
            status,
            body,
            fresh_token: fresh,
            retry_after,
        }
    }

    /// Logs in; the token, or the [`Reply`] saying why not.
    async fn login(&self) -> Result<Token, Reply> {
        let fail = |status, body| Reply {
            phase: Phase::Login,
            status,
            body,
            fresh_token: false,
            retry_after: None,
        };
        let body = serde_json::to_vec(&json!({
            "machine_id": self.machine_id,
            "password": self.password.expose(),
            "scenarios": [self.scenario],
        }))
        .expect("serializing strings");
        let result = self
            .client
            .post(self.login_url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let resp = match result {
            Err(e) => return Err(fail(None, transport_error(&e))),
            Ok(r) => r,
        };
        let status = resp.status().as_u16();
        let wait = retry_after(&resp);
        let text = http::body(resp, MAX_BODY).await;
        if status != 200 {
            return Err(Reply {
                retry_after: wait,
                ..fail(Some(status), text)
            });
        }
        let parsed: Option<(String, Option<String>)> =
            serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                let token = v.get("token")?.as_str()?.to_owned();
                let expire = v.get("expire").and_then(Value::as_str).map(str::to_owned);
                Some((token, expire))
            });
        let Some((token, expire)) = parsed else {
            return Err(fail(
                Some(status),
                "the login's answer holds no token (is lapi_url the Local API?)".into(),
            ));
        };
        let Ok(mut header) = HeaderValue::from_str(&format!("Bearer {token}")) else {
            return Err(fail(
                Some(status),
                "the login's token cannot be sent in an HTTP header".into(),
            ));
        };
        header.set_sensitive(true);
        let renew_at = expire
            .as_deref()
            .and_then(parse_rfc3339)
            .and_then(|at| renew_in(at, SystemTime::now()))
            .map(|d| Instant::now() + d);
        Ok(Token { header, renew_at })
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn transport_error(e: &reqwest::Error) -> String {
    http::transport_error(
        e,
        "check the host in [targets.crowdsec] lapi_url, or set [targets.crowdsec] ca_file for a \
         private CA",
    )
}

/// How long after now a token expiring at `expire` should be renewed: a
/// tenth of its life (at most a minute) before it ends. None when it seems
/// to end within that margin (clocks apart): it is then used until refused.
pub fn renew_in(expire: SystemTime, now: SystemTime) -> Option<Duration> {
    let life = expire.duration_since(now).ok()?;
    let margin = (life / 10).min(Duration::from_secs(60));
    let at = life.checked_sub(margin)?;
    (!at.is_zero() && at > Duration::from_secs(1)).then_some(at)
}

/// An RFC 3339 date with `Z` or a `±HH:MM` offset, as Go writes
/// `time.RFC3339`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if s.ends_with('Z') || s.ends_with('z') {
        return humantime::parse_rfc3339_weak(s).ok();
    }
    let (local, offset) = s.split_at(s.len().checked_sub(6)?);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = offset[1..].split_once(':')?;
    let secs = sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60);
    let at = humantime::parse_rfc3339_weak(&format!("{local}Z")).ok()?;
    let d = Duration::from_secs(secs.unsigned_abs());
    // Local time = UTC + offset, so UTC = local - offset.
    if secs >= 0 {
        at.checked_sub(d)
    } else {
        at.checked_add(d)
    }
}

/// The alerts (one) for `batch`: a `ban` of `duration` on each address, at
/// `now`. Only tjfwd's own counts in the message and the event's meta.
pub fn alert_body(batch: &[BatchItem], scenario: &str, duration: &str, now: SystemTime) -> Vec<u8> {
    let at = humantime::format_rfc3339_seconds(now).to_string();
    let n = batch.len();
    let sightings: u64 = batch.iter().map(|b| b.hits.max(1)).sum();
    let decisions: Vec<Value> = batch
        .iter()
        .map(|b| {
            json!({
                "origin": ORIGIN,
                "type": "ban",
                "scope": "Ip",
                "value": addr_text(b.addr),
                "duration": duration,
                "scenario": scenario,
            })
        })
        .collect();
    serde_json::to_vec(&json!([{
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": "",
        "message": format!(
            "tjfwd: {n} address(es) seen attacking the honeypot ({sightings} sighting(s)), \
             banned for {duration}"
        ),
        "events_count": i32::try_from(sightings).unwrap_or(i32::MAX),
        "start_at": at,
        "stop_at": at,
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "events": [{
            "timestamp": at,
            "meta": [
                {"key": "service", "value": "tjfwd"},
                {"key": "addresses", "value": n.to_string()},
                {"key": "sightings", "value": sightings.to_string()},
            ],
        }],
        "source": {"scope": "tjfwd", "value": "honeypot"},
        "decisions": decisions,
    }]))
    .expect("serializing strings and numbers")
}

/// An address as CrowdSec stores it: an IPv4-mapped IPv6 address as IPv4.
fn addr_text(a: IpAddr) -> String {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        v4 => v4.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(addr: &str, hits: u64) -> BatchItem {
        BatchItem {
            addr: addr.parse().unwrap(),
            seq: 0,
            index: 0,
            hits,
            first_seen_ms: 0,
            last_seen_ms: 0,
        }
    }

    #[test]
    fn the_alert_has_the_required_fields_and_no_attacker_text() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let body = alert_body(
            &[
                item("192.0.2.1", 3),
                item("2001:db8::1", 1),
                item("::ffff:198.51.100.7", 0),
            ],
            "tjfwd/cowrie-login",
            "24h",
            now,
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        let alerts = v.as_array().unwrap();
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        for k in [
            "scenario",
            "scenario_hash",
            "scenario_version",
            "message",
            "start_at",
            "stop_at",
            "leakspeed",
        ] {
            assert!(a[k].is_string(), "{k}: {a}");
        }
        for k in ["events_count", "capacity"] {
            assert!(a[k].is_i64(), "{k}: {a}");
        }
        assert_eq!(a["simulated"], false);
        assert_eq!(a["stop_at"], "2023-11-14T22:13:20Z");
        assert_eq!(a["events_count"], 5);
        assert!(a["source"]["scope"].is_string() && a["source"]["value"].is_string());
        let d = a["decisions"].as_array().unwrap();
        let values: Vec<&str> = d.iter().map(|d| d["value"].as_str().unwrap()).collect();
        assert_eq!(values, ["192.0.2.1", "2001:db8::1", "198.51.100.7"]);
        for d in d {
            assert_eq!(d["type"], "ban");
            assert_eq!(d["scope"], "Ip");
            assert_eq!(d["duration"], "24h");
            assert_eq!(d["origin"], ORIGIN);
            assert_eq!(d["scenario"], "tjfwd/cowrie-login");
        }
    }

    #[test]
    fn dates_and_renewal() {
        let utc = parse_rfc3339("2026-12-07T02:26:02Z").unwrap();
        assert_eq!(parse_rfc3339("2026-12-07T04:26:02+02:00"), Some(utc));
        assert_eq!(parse_rfc3339("2026-12-06T23:26:02-03:00"), Some(utc));
        assert_eq!(parse_rfc3339("soon"), None);
        let now = utc - Duration::from_secs(3600);
        assert_eq!(renew_in(utc, now), Some(Duration::from_secs(3540)));
        assert_eq!(
            renew_in(utc, utc - Duration::from_secs(100)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(renew_in(utc, utc + Duration::from_secs(5)), None);
        assert_eq!(renew_in(utc, utc), None);
    }

    #[test]
    fn endpoints_keep_a_base_path() {
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            join(&u, ALERTS_PATH).as_str(),
            "http://127.0.0.1:8080/v1/alerts"
        );
        let u = Url::parse("https://h/crowdsec").unwrap();
        assert_eq!(
            join(&u, LOGIN_PATH).as_str(),
            "https://h/crowdsec/v1/watchers/login"
        );
        let u = Url::parse("https://h/crowdsec/").unwrap();
        assert_eq!(
            join(&u, ALERTS_PATH).as_str(),
            "https://h/crowdsec/v1/alerts"
        );
    }
}
