//! The output layer of `Config::redacted_toml` (same keys as the raw layer).

use serde::Serialize;

/// Serializable image of a `Config` (see `redacted_toml`).
#[derive(Serialize)]
pub(super) struct ViewConfig {
    /// `state_dir`.
    pub(super) state_dir: String,
    /// `[threatjammer]`.
    pub(super) threatjammer: ViewThreatJammer,
    /// `[input]`.
    pub(super) input: ViewInput,
    /// `[schedule]`.
    pub(super) schedule: ViewSchedule,
    /// `[filter]`.
    pub(super) filter: ViewFilter,
    /// `[storage]`.
    pub(super) storage: ViewStorage,
    /// `[queue]`.
    pub(super) queue: ViewQueue,
    /// `[admin]`.
    pub(super) admin: ViewAdmin,
}

/// `[threatjammer]` for output.
#[derive(Serialize)]
pub(super) struct ViewThreatJammer {
    /// Endpoint.
    pub(super) api_url: String,
    /// Always `<redacted>` when a token is set; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bearer_token: Option<&'static str>,
    /// Report login events.
    pub(super) track_login: bool,
    /// Report session events.
    pub(super) track_session: bool,
    /// TTL in seconds (TOML integers are i64).
    pub(super) ttl: i64,
    /// Dataset.
    pub(super) category: String,
    /// Tags, as a list.
    pub(super) tags: Vec<String>,
    /// Allow http to non-loopback hosts.
    pub(super) allow_insecure_http: bool,
    /// Omitted when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ca_file: Option<String>,
}

/// `[input]` for output.
#[derive(Serialize)]
pub(super) struct ViewInput {
    /// Omitted when not set (TOML has no null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cowrie_json: Option<String>,
    /// "end" or "beginning".
    pub(super) start_at: &'static str,
    /// humantime string.
    pub(super) poll_interval: String,
    /// Size string that parses back to the same number of bytes.
    pub(super) max_line_bytes: String,
    /// Omitted when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) listen_tcp: Option<String>,
    /// Socket clients at once.
    pub(super) max_connections: i64,
}

/// `[schedule]` for output.
#[derive(Serialize)]
pub(super) struct ViewSchedule {
    /// Addresses per request.
    pub(super) batch_size: i64,
    /// humantime string.
    pub(super) flush_interval: String,
    /// Requests per rolling minute.
    pub(super) max_requests_per_minute: i64,
    /// humantime string.
    pub(super) request_timeout: String,
    /// humantime string.
    pub(super) max_backoff: String,
    /// humantime string.
    pub(super) rereport_after: String,
}

/// `[filter]` for output.
#[derive(Serialize)]
pub(super) struct ViewFilter {
    /// Report non-public addresses too.
    pub(super) report_non_public: bool,
    /// CIDRs.
    pub(super) allowlist: Vec<String>,
}

/// `[storage]` for output.
#[derive(Serialize)]
pub(super) struct ViewStorage {
    /// Size string that parses back to the same number of bytes.
    pub(super) cache_capacity: String,
}

/// `[queue]` for output.
#[derive(Serialize)]
pub(super) struct ViewQueue {
    /// Pending addresses at which the inputs pause.
    pub(super) max_pending: i64,
}

/// `[admin]` for output.
#[derive(Serialize)]
pub(super) struct ViewAdmin {
    /// Omitted when not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) listen: Option<String>,
}
