//! tjfwd: a durable forwarder of the attacker addresses in Cowrie honeypot
//! events to report targets (Threat Jammer today; the target plug-in is in
//! [`targets`]).
//!
//! The data flow, the layers and how a target or an input is added are in
//! `docs/ARCHITECTURE.md`; the storage format is defined in the
//! `migrations` crate. In short:
//!
//! ```text
//! inputs ──> pipeline ─────────────────────────> store (sled) ──> scheduler per target ──> target
//! file,      decode, select, filter, fold,       one entry an      batch, rate limit,       HTTP +
//! socket     enqueue with the input's position   address; per      retry, backoff           classify
//!                                                target FIFO,
//!                                                mirror, health
//! ```
//!
//! Each module:
//!
//! - [`config`]: the TOML configuration, validated into [`config::Config`];
//!   [`config_kit`]: the checks and formats its sections share (below both
//!   `config` and `targets`).
//! - [`targets`]: the report targets, one folder each (client,
//!   classification, configuration section), [`targets::threatjammer`] first.
//! - [`inputs`]: the inputs, as plug-ins: the `cowrie.json` file, the
//!   socketlog TCP socket (served on the listener the daemon was handed);
//!   each hands out chunks of lines and says how their position is
//!   committed.
//! - [`source`]: tails `cowrie.json` from a checkpoint, whole lines only.
//! - [`pipeline`]: a chunk of lines → decode → filter → store, with its
//!   position; one error policy for every input.
//! - [`decode`]: one JSON line → `eventid`, `src_ip`, `timestamp`.
//! - [`filter`]: the select rule, address normalization and filtering.
//! - [`store`]: the sled database: intake, delivery state, input positions
//!   (layout in the `migrations` crate).
//! - [`ratelimit`]: the rolling-window limit and the backoff, as pure functions.
//! - [`tls`]: the TLS trust of the HTTP client (`ca_file`), below the targets.
//! - [`scheduler`]: when to send, and what to do with each answer.
//! - [`daemon`]: `tjfwd run`, wiring it all with a shutdown future (and
//!   a channel of reloaded configurations, [`daemon::reload`]);
//!   [`listeners`]: its sockets, bound before it starts;
//!   [`supervisor`]: starts and watches its threads and tasks.
//! - [`cli`]: the command line; [`commands`]: one file per subcommand, its
//!   flags and code (the operator commands work through the control socket
//!   or the database).
//! - [`stats`]: counters shared by the stages; [`clock`]: time (the wall
//!   clock of stored times, the boot clock that gives them their true age
//!   across clock steps).
//! - [`admin`]: the `[admin] listen` HTTP endpoint (`/metrics`, `/healthz`).
//! - [`feed`]: the `[feed] listen` HTTP endpoint (the denylist for
//!   firewalls), and the pruning of the denylist.
//! - [`logging`]: log format and level of the binary (human, journald, JSON).
//! - [`permissions`]: the state directory's owner and modes, checked at open.
//! - [`output`]: what commands print; a reader that went away is not an error.
//! - [`errors`]: how an error is shown: its message, then its causes, once.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod config_kit;
pub mod control;
pub mod cowrie_cfg;
pub mod daemon;
pub mod decode;
pub mod errors;
pub mod feed;
pub mod filter;
pub mod health;
pub mod inputs;
pub mod listeners;
pub mod logging;
pub mod output;
pub mod permissions;
pub mod pipeline;
pub mod ratelimit;
pub mod scheduler;
pub mod source;
pub mod stats;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod targets;
pub mod tls;

#[cfg(test)]
mod testing;
