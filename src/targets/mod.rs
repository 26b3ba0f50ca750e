//! Report targets: the services tjfwd reports attacker addresses to.
//!
//! A target is a plug-in. Everything specific to one service lives in its
//! own folder and reaches the rest of tjfwd through the [`Target`] trait:
//!
//! - how a batch is built and sent ([`Target::send`]), and the pure
//!   classification of the service's answer into an [`Action`]
//!   ([`Target::classify`], with a table test in the target's folder);
//! - its [`Policy`]: batch size, flush interval, rate limit, backoff cap;
//! - what "due again" means for it ([`Policy::rereport_after`]);
//! - its configuration section: its raw and checked structs, defaults and
//!   checks, and the keys `check-config` writes back ([`Configured`], with
//!   `crate::config_kit`'s tools).
//!
//! The [`crate::scheduler::Scheduler`] is generic over the trait: it knows
//! actions (deliver, split, isolate, wait, back off, pause), never HTTP
//! statuses. Health judges the kind of a failure
//! ([`crate::health::FailureKind`]), not a status.
//!
//! Layering: this module uses `crate::config_kit` for its sections and never
//! `crate::config`, which uses it: the file's loader places the targets'
//! tables, and [`start_enabled`] takes the checked sections ([`Sections`],
//! from [`crate::config::Config::target_sections`]), not the whole
//! configuration.
//!
//! A target whose quota is scarce may also choose its batch among all it
//! owes ([`Target::select`], default the oldest first) and say what quota
//! the service announced ([`Target::quota`]): AbuseIPDB does both.
//!
//! Adding a target, say `abuseipdb` (`src/targets/abuseipdb/`), takes:
//!
//! 1. a folder `src/targets/abuseipdb/`: `mod.rs` (the target: a type
//!    implementing [`Target`] and [`Configured`]), `client.rs` (its
//!    requests), `classify.rs` (its answers → [`Action`], with the table
//!    test) and `config.rs` (its `[targets.abuseipdb]` section: the
//!    `Raw` and `Section` structs, defaults, `validate`);
//! 2. its module declaration, `pub mod abuseipdb;`, and one line in
//!    the `registry!` below, `abuseipdb: abuseipdb::AbuseIpdb,`.
//!
//! Nothing else: the registry generates the `[targets]` table of the file
//! (read, checked, written back by `check-config`, with unknown names
//! refused: `table.rs`) and the target's start in [`start_enabled`].
//! Threat Jammer, the first target, is registered like the others; what
//! `crate::config` still knows of it by name is its own history: the
//! deprecated top-level `[threatjammer]` and `[schedule]` tables (an alias
//! of `[targets.threatjammer]`) and cowrie.cfg's `[output_threatjammer]`.
//! It stays first in the registry: the store gives a new database's ids in
//! the order of [`store_specs`], and Threat Jammer's has always been 0.

pub mod abuseipdb;
pub mod crowdsec;
pub mod http;
pub mod threatjammer;

mod live;
pub(crate) mod table;

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::ratelimit::Limit;
use crate::stats::Quota;
use crate::store::{BatchItem, Store, StoreError, TargetId, TargetSpec};
pub use live::Live;
use table::targets_table;
pub use table::Configured;

/// Every target read from a `[targets.<name>]` table, once: `name: Type,`
/// (`Type` a [`Configured`] [`Target`], its path relative to this module;
/// `name` its table and its [`Target::name`]). Adding a target is one line
/// here (and its `pub mod` above).
///
/// An X-macro: `registry!(m)` expands to `m! { name: Type, ... }`, for
/// `targets_table!` below (the `[targets]` table and its targets' start)
/// and for `crate::config` (which has a `[targets]` key only once this list
/// is not empty).
macro_rules! registry {
    ($then:ident) => {
        $then! {
            // name: module::Type,
            threatjammer: threatjammer::ThreatJammer,
            abuseipdb: abuseipdb::AbuseIpdb,
            crowdsec: crowdsec::CrowdSec,
        }
    };
}
pub(crate) use registry;

registry!(targets_table);

/// When and how much a target may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Most addresses in one request.
    pub batch_size: usize,
    /// Longest time an address waits for a batch to fill.
    pub flush_interval: Duration,
    /// The service's rolling-window limit; every attempt counts.
    pub limit: Limit,
    /// Cap on the transient-failure backoff (and on the slow retry after
    /// configuration errors).
    pub max_backoff: Duration,
    /// A new sighting of an address reported less than this long ago does
    /// not queue it again (zero: every later sighting does, which resets
    /// the address's TTL at the service).
    pub rereport_after: Duration,
}

/// What the scheduler does with a target's answer. Target-neutral: each
/// target's `classify` maps its own protocol onto these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The whole batch was accepted: acknowledge it.
    Delivered,
    /// Too many requests: wait (the service's hint, or a whole window when
    /// None), then send again.
    RateLimited { wait: Option<Duration> },
    /// A failure that goes away by itself: retry later with backoff.
    Transient { reason: String },
    /// The request was too large: split the batch.
    TooLarge,
    /// The service refused some addresses. `indices` are the positions it
    /// named (empty when it did not say: bisect to find them).
    Rejected { indices: Vec<usize>, reason: String },
    /// The service took the batch except the addresses at these positions,
    /// each refused for good with its reason (AbuseIPDB's bulk report:
    /// `savedReports`, and `invalidReports`): those go to the dead letters,
    /// the rest is acknowledged. Nothing is sent again: unlike
    /// [`Action::Rejected`], the others were accepted.
    AcceptedExcept { rejected: Vec<(usize, String)> },
    /// Our credentials or configuration are wrong: drop nothing, pause,
    /// retry slowly, tell the operator what to check.
    Config { reason: String },
}

/// A classified answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The service's own code for it (the HTTP status; 0 when no answer
    /// came): shown to the operator and counted in metrics, never acted on.
    pub code: u16,
    /// What to do.
    pub action: Action,
}

/// What a target chose to send next ([`Target::select`]), and what it
/// settles without sending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The next request's addresses (at most the `n` asked for).
    pub batch: Vec<BatchItem>,
    /// Addresses the service would refuse for their age: moved to the
    /// dead letters with the reason (counted in `addresses_too_old`).
    pub stale: Vec<(BatchItem, String)>,
    /// Addresses that did not reach the target's threshold in time:
    /// released from its queue, neither reported nor dead-lettered
    /// (counted in `addresses_below_min_attempts`).
    pub unqualified: Vec<BatchItem>,
    /// Addresses held back for now (below the threshold, still in time).
    pub waiting: u64,
    /// When `batch` is empty while addresses wait: when to look again at
    /// the latest (a held-back address may be released then). The
    /// scheduler waits that long, or the flush interval if shorter; new
    /// sightings do not cut the wait short.
    pub recheck: Option<Duration>,
}

impl Selection {
    /// A selection of `batch`, with nothing settled nor held back.
    pub fn of(batch: Vec<BatchItem>) -> Selection {
        Selection {
            batch,
            ..Selection::default()
        }
    }
}

/// A report target.
///
/// `send` does the I/O and never fails (a transport error is a reply too);
/// `classify` is pure, so the contract is a table test.
pub trait Target: Send + Sync + 'static {
    /// What `send` returns, before interpretation.
    type Reply: std::fmt::Debug + Send;

    /// The target's name, as in its configuration section and its logs.
    fn name(&self) -> &'static str;

    /// Its batch size, flush interval, rate limit and backoff cap.
    fn policy(&self) -> Policy;

    /// The request's fixed fields, for dry-run logs (`type=… ttl=…`).
    fn describe(&self) -> String;

    /// Chooses the next batch among the `n` or more addresses it owes
    /// (`t` in `queue`), at `now_ms` (wall clock). The default is the
    /// store's FIFO order: the oldest `n`. A target whose quota is scarce
    /// may rank what it owes (AbuseIPDB: the most active attackers first,
    /// a /64 counted as one attacker), hold addresses back, or settle some
    /// without sending (see [`Selection`]).
    fn select(
        &self,
        queue: &Store,
        t: TargetId,
        n: usize,
        now_ms: u64,
    ) -> Result<Selection, StoreError> {
        let _ = now_ms;
        Ok(Selection::of(queue.peek_batch(t, n)?))
    }

    /// The quota the service announced in `reply`, if any (AbuseIPDB's
    /// `X-RateLimit-*` headers): the scheduler keeps the last one in
    /// [`crate::stats::TargetStats::quota`], by target name, for `status`.
    fn quota(&self, reply: &Self::Reply, now_ms: u64) -> Option<Quota> {
        let _ = (reply, now_ms);
        None
    }

    /// Sends one batch (at most `policy().batch_size` addresses).
    fn send(&self, batch: &[BatchItem]) -> impl Future<Output = Self::Reply> + Send;

    /// What a reply means. Pure: `now` is only for dates in the reply.
    fn classify(&self, reply: &Self::Reply, now: SystemTime) -> Answer;

    /// Advice when every address is refused even alone: the request, not
    /// the addresses, must be wrong (which settings to check).
    fn rejects_everything_hint(&self) -> &'static str;

    /// Completes once the target's settings were replaced by a reload of
    /// the configuration (SIGHUP, [`Live`]): the scheduler then tries again
    /// at once if a configuration error (a refused token...) paused it.
    /// Never, for a target that is not reloaded.
    fn reloaded(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// The request a batch would make, for `--dry-run` logs: the method,
    /// the URL and the body as it would be sent (never a credential). By
    /// default, [`Target::describe`].
    fn preview(&self, batch: &[BatchItem], now_ms: u64) -> String {
        let _ = (batch, now_ms);
        self.describe()
    }
}

/// A target could not be set up (its configuration, its credentials, its
/// HTTP client): the daemon does not start.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SetupError(Box<dyn std::error::Error + Send + Sync>);

impl SetupError {
    /// Wraps a target's own error (its message is shown as it is).
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SetupError(Box::new(e))
    }
}

/// What the daemon does with each enabled target (start its scheduler).
pub trait Starter {
    fn start<T: Target>(&mut self, target: T);
}

/// The checked sections the targets are built from.
#[derive(Debug, Clone, Copy)]
pub struct Sections<'a> {
    /// `[targets]`: the targets of the `registry!`.
    pub targets: &'a Targets,
}

/// What the store needs of every enabled target (the same ones
/// [`start_enabled`] starts): its name and what "due again" means for it.
pub fn store_specs(sections: Sections<'_>) -> Vec<TargetSpec> {
    sections.targets.store_specs()
}

/// Builds every enabled target (each target of the `registry!` whose
/// section is present) from its section and hands it to `starter`. With
/// `dry_run`, targets are built without what sending needs (credentials,
/// HTTP clients).
pub fn start_enabled(
    sections: Sections<'_>,
    dry_run: bool,
    starter: &mut impl Starter,
) -> Result<(), SetupError> {
    sections.targets.start(dry_run, starter)
}

/// An enabled target as `status` and `/metrics` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enabled {
    /// Its name (its configuration section, its name in the store).
    pub name: &'static str,
    /// Its sending policy.
    pub policy: Policy,
}

/// Every enabled target, in the order [`start_enabled`] starts them (built
/// as for a dry run: no credentials are read).
pub fn enabled(sections: Sections<'_>) -> Result<Vec<Enabled>, SetupError> {
    struct Collect(Vec<Enabled>);
    impl Starter for Collect {
        fn start<T: Target>(&mut self, target: T) {
            self.0.push(Enabled {
                name: target.name(),
                policy: target.policy(),
            });
        }
    }
    let mut c = Collect(Vec::new());
    start_enabled(sections, true, &mut c)?;
    Ok(c.0)
}
