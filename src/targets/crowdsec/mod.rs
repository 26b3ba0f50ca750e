//! The CrowdSec Local API (LAPI), `[targets.crowdsec]`: tjfwd logs in as a
//! machine registered with `cscli machines add` and posts, for each batch,
//! one alert carrying a `ban` decision of scope `Ip` per address (at most
//! 1000). CrowdSec's bouncers (the firewall bouncer...) then enforce them.
//!
//! - `client.rs`: the login, the token kept and renewed, the alert.
//! - `classify.rs`: the pure answer → [`Action`](crate::targets::Action)
//!   table.
//! - `config.rs`: its section (the LAPI, the machine and its password, the
//!   decisions' duration and scenario, the sending policy).
//!
//! What "due again" means: a decision lasts `duration`, so the store keeps
//! a reported address that long (`ttl`); a sighting at least
//! `rereport_after` after the last report queues it again, and the new
//! decision extends the ban (bouncers apply the longest).

pub mod classify;
pub mod client;
pub mod config;

use std::time::{Duration, SystemTime};

pub use client::{Lapi, Reply};

use crate::config_kit::{ConfigError, Ctx};
use crate::ratelimit::Limit;
use crate::store::{BatchItem, Policy as StorePolicy};
use crate::targets::{Answer, Configured, Policy, SetupError, Target};

/// Its name, in the configuration and in the store.
pub const NAME: &str = "crowdsec";

/// Requests a minute: the LAPI sets none; this only keeps a loop of
/// failures from hammering it.
const REQUESTS_PER_MINUTE: u32 = 120;

/// The CrowdSec target.
#[derive(Debug)]
pub struct CrowdSec {
    /// The client; None in a dry run (no password needed: nothing is sent).
    client: Option<Lapi>,
    policy: Policy,
    /// `duration=… scenario=…`, for dry-run logs.
    describe: String,
    /// The alerts' URL, scenario and duration, for dry-run logs.
    preview: (url::Url, String, String),
}

impl Configured for CrowdSec {
    type Raw = config::Raw;
    type Section = config::Section;

    fn validate(
        ctx: &mut Ctx,
        table: &str,
        raw: config::Raw,
    ) -> Result<config::Section, ConfigError> {
        config::validate(ctx, table, raw)
    }

    fn build(section: &config::Section, dry_run: bool) -> Result<CrowdSec, SetupError> {
        let client = if dry_run {
            None
        } else {
            Some(Lapi::new(section).map_err(SetupError::new)?)
        };
        Ok(CrowdSec {
            client,
            policy: Policy {
                batch_size: section.batch_size,
                flush_interval: section.flush_interval,
                limit: Limit {
                    max: REQUESTS_PER_MINUTE,
                    window_ms: 60_000,
                },
                max_backoff: section.max_backoff,
                rereport_after: section.rereport_after,
            },
            describe: format!(
                "lapi={} machine={} type=ban scope=Ip duration={} scenario={}",
                section.lapi_url,
                section.machine_id,
                config::go_duration(section.duration),
                section.scenario
            ),
            preview: (
                section.lapi_url.clone(),
                section.scenario.clone(),
                config::go_duration(section.duration),
            ),
        })
    }

    fn store_policy(section: &config::Section) -> StorePolicy {
        StorePolicy {
            ttl_ms: duration_ms(section.duration),
            rereport_after_ms: duration_ms(section.rereport_after),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Target for CrowdSec {
    type Reply = Reply;

    fn name(&self) -> &'static str {
        NAME
    }

    fn policy(&self) -> Policy {
        self.policy.clone()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn preview(&self, batch: &[BatchItem], now_ms: u64) -> String {
        let (url, scenario, duration) = &self.preview;
        let now = std::time::UNIX_EPOCH + Duration::from_millis(now_ms);
        format!(
            "POST {}/v1/alerts {}",
            url.as_str().trim_end_matches('/'),
            String::from_utf8_lossy(&client::alert_body(batch, scenario, duration, now))
        )
    }

    async fn send(&self, batch: &[BatchItem]) -> Reply {
        match &self.client {
            Some(c) => c.send(batch).await,
            None => Reply {
                phase: client::Phase::Alert,
                status: None,
                body: "dry run: nothing is sent".into(),
                fresh_token: false,
                retry_after: None,
            },
        }
    }

    fn classify(&self, reply: &Reply, now: SystemTime) -> Answer {
        classify::classify(reply, now)
    }

    fn rejects_everything_hint(&self) -> &'static str {
        "check [targets.crowdsec] duration and scenario, and the LAPI's log"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_kit::SecretSources;

    fn section(text: &str) -> config::Section {
        let mut ctx = Ctx {
            file: "tjfwd.toml".into(),
            base_dir: None,
            warnings: Vec::new(),
            // Checked as for a dry run: no password is needed to check.
            secrets: SecretSources {
                dry_run: true,
                ..SecretSources::default()
            },
        };
        config::validate(
            &mut ctx,
            "[targets.crowdsec]",
            toml::from_str(text).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_dry_run_needs_no_password_and_describes_the_decisions() {
        let s = section("machine_id = \"honeypot-1\"\nduration = \"12h\"\nscenario = \"me/ssh\"");
        let err = CrowdSec::build(&s, false).unwrap_err().to_string();
        assert!(err.contains("password_file"), "{err}");
        let t = CrowdSec::build(&s, true).unwrap();
        let d = t.describe();
        assert!(d.contains("duration=12h"), "{d}");
        assert!(d.contains("scenario=me/ssh"), "{d}");
        assert!(d.contains("type=ban scope=Ip"), "{d}");
        assert_eq!(t.policy().batch_size, 1000);
        let p = CrowdSec::store_policy(&s);
        assert_eq!(p.ttl_ms, 12 * 3600 * 1000);
        assert_eq!(p.rereport_after_ms, 3600 * 1000);
    }

    #[test]
    fn a_real_start_with_a_password_builds_its_client() {
        let s = section("machine_id = \"m\"\npassword = \"pw\"");
        let t = CrowdSec::build(&s, false).unwrap();
        assert!(t.client.is_some());
        // The password is in no Debug output.
        assert!(!format!("{t:?}").contains("pw\""), "{t:?}");
    }
}
