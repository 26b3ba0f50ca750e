//! Log setup of the `tjfwd` binary: where log lines go and what they look
//! like.
//!
//! Every line goes to stderr, in one of three shapes:
//!
//! - **human** (the default): tracing's compact text, with a timestamp, in
//!   colour when stderr is a terminal;
//! - **human under systemd**: when stderr is the journal (systemd sets
//!   `JOURNAL_STREAM` to the `device:inode` of the stream it connected to
//!   stderr, and we check that it still is), no timestamp and no colour
//!   (journald adds its own time stamp), and each line starts with the
//!   kernel-style priority prefix `<3>` error, `<4>` warning, `<6>` info,
//!   `<7>` debug and trace, which journald strips and turns into the
//!   entry's `PRIORITY` (so `journalctl -p warning` works);
//! - **json** (`--log-format json`): one JSON object a line, with
//!   `timestamp`, `level`, `target` and the event's fields at the top level
//!   (`message`, `reason`, `status`...), for log shippers. Unchanged under
//!   systemd: shippers parse the JSON, not journald's priority.
//!
//! The level: `--log-level` (a level like `debug`, or `RUST_LOG`-style
//! directives like `tjfwd=debug,sled=info`) wins; else `RUST_LOG`; else
//! `-v`/`-vv`/`-q`; else info. A bare level keeps the chatty libraries
//! (sled, hyper, reqwest, rustls) at warnings; directives are taken as
//! written.
//!
//! Attacker-controlled text never reaches a log line unescaped (see
//! `stats::escape_for_log`); the JSON encoder escapes what it is given.

use std::cell::Cell;
use std::fmt;
use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;

use tracing::{span, Event, Level, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable systemd sets when stdout/stderr are connected to
/// the journal: `device:inode` of that stream.
pub const JOURNAL_STREAM_ENV: &str = "JOURNAL_STREAM";

/// Directives added to a bare level: libraries that are chatty below warn.
const QUIET_LIBRARIES: &str = "sled=warn,hyper=warn,hyper_util=warn,reqwest=warn,rustls=warn";

/// The shape of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text for people (journald-friendly under systemd).
    #[default]
    Human,
    /// One JSON object a line, for log shippers.
    Json,
}

/// What the command line says about logging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `--log-format`.
    pub format: LogFormat,
    /// `--log-level`: a level or `RUST_LOG`-style directives; wins over
    /// `RUST_LOG`, `-v` and `-q`.
    pub level: Option<String>,
    /// `-v` count (1 debug, 2+ trace).
    pub verbose: u8,
    /// `-q` count (warnings and errors only).
    pub quiet: u8,
}

/// Checks a `--log-level` value (for clap's `value_parser`): a level or
/// directives `EnvFilter` accepts.
pub fn parse_level(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("empty: give a level (error, warn, info, debug, trace) or \
                    directives like \"tjfwd=debug,sled=info\""
            .into());
    }
    EnvFilter::builder()
        .parse(v)
        .map(|_| v.to_string())
        .map_err(|e| {
            format!("{e}: give a level (error, warn, info, debug, trace) or directives like \"tjfwd=debug,sled=info\"")
        })
}

/// The filter directives for `opts`, given the value of `RUST_LOG`.
pub fn directives(opts: &LogOptions, rust_log: Option<&str>) -> String {
    let with_libraries = |level: &str| format!("{level},{QUIET_LIBRARIES}");
    if let Some(level) = opts.level.as_deref() {
        return if is_bare_level(level) {
            with_libraries(level)
        } else {
            level.to_string()
        };
    }
    if let Some(env) = rust_log.filter(|v| !v.trim().is_empty()) {
        return env.to_string();
    }
    let level = match (opts.quiet, opts.verbose) {
        (q, _) if q > 0 => "warn",
        (_, 0) => "info",
        (_, 1) => "debug",
        _ => "trace",
    };
    with_libraries(level)
}

fn is_bare_level(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "off" | "error" | "warn" | "info" | "debug" | "trace"
    )
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn journal_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is the journal: `JOURNAL_STREAM` is set and names the
/// device and inode of our stderr (a child whose stderr was redirected
/// inherits the variable but not the stream).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os(JOURNAL_STREAM_ENV) else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // fstat(2) of a duplicate of fd 2: same device and inode.
    let Ok(fd) = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .map(|m| m.dev() == dev && m.ino() == ino)
        .unwrap_or(false)
}

/// Installs the global subscriber writing to stderr. Call once, first thing.
pub fn init(opts: &LogOptions) {
    let journal = stderr_is_journal();
    let ansi = !journal && std::io::stderr().is_terminal();
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = EnvFilter::new(directives(opts, rust_log.as_deref()));
    // try_init also routes the `log` records of libraries (sled) to tracing.
    let _ = subscriber(opts.format, journal, ansi, filter, std::io::stderr).try_init();
}

/// The subscriber for a format, writing to `writer` (a function for tests).
pub fn subscriber<W>(
    format: LogFormat,
    journal: bool,
    ansi: bool,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Without log_internal_errors(false), a failed write (stderr closed: a
    // pipe whose reader exited, journald restarted) is reported with
    // eprintln!, which panics on that same stderr: the thread that logged
    // dies (the ingest thread, and a drain would wait for it forever).
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry();
    match (format, journal) {
        (LogFormat::Json, _) => Box::new(
            registry
                .with(TeardownSafe(
                    layer
                        .json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_span_list(false),
                ))
                .with(filter),
        ),
        (LogFormat::Human, true) => Box::new(
            registry
                .with(TeardownSafe(
                    layer.with_ansi(false).event_format(JournalFormat(
                        tracing_subscriber::fmt::format()
                            .without_time()
                            .with_ansi(false),
                    )),
                ))
                .with(filter),
        ),
        (LogFormat::Human, false) => Box::new(
            registry
                .with(TeardownSafe(layer.with_ansi(ansi)))
                .with(filter),
        ),
    }
}

thread_local! {
    /// Set on a thread once its thread-locals are being destroyed (by
    /// [`TornDown`]'s destructor); never destroyed itself (no `Drop`).
    static TORN_DOWN: Cell<bool> = const { Cell::new(false) };
    /// Registered right after the fmt layer's own thread-local buffer, so
    /// that it is destroyed before it (thread-locals are destroyed in the
    /// reverse order of their first use; glibc's `__call_tls_dtors`).
    static SENTINEL: TornDown = const { TornDown };
}

struct TornDown;

impl Drop for TornDown {
    fn drop(&mut self) {
        TORN_DOWN.with(|t| t.set(true));
    }
}

/// The fmt layer, made safe for events logged while a thread's
/// thread-locals are being destroyed.
///
/// The fmt layer formats every event in a thread-local buffer and reaches
/// it with `LocalKey::with`, which panics once that buffer is destroyed; a
/// panic in a thread-local destructor aborts the process
/// (tokio-rs/tracing#3239). sled does log there: when a thread ends,
/// crossbeam-epoch's thread handle runs deferred garbage, and sled's
/// deferred closures log at trace level, so `RUST_LOG=sled=trace` made
/// `run --drain` abort now and then when a runtime worker ended. Events
/// logged after this thread's teardown began are dropped (no other way to
/// write them without that buffer); a panic that still happens is caught
/// rather than allowed to abort.
struct TeardownSafe<L>(L);

impl<S, L> Layer<S> for TeardownSafe<L>
where
    S: Subscriber,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber)
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber)
    }
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0.register_callsite(metadata)
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, ctx)
    }
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx)
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx)
    }
    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(id, follows, ctx)
    }
    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, ctx)
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if TORN_DOWN.with(Cell::get) {
            return;
        }
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| self.0.on_event(event, ctx)));
        // After the first event on this thread, the layer's buffer exists:
        // register the sentinel after it (a no-op from then on).
        let _ = SENTINEL.try_with(|_| ());
    }
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx)
    }
    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx)
    }
    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx)
    }
    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx)
    }
    // downcast_raw is not forwarded: nothing looks for the fmt layer's
    // parts by type, and forwarding it would take unsafe code.
}

/// Prefixes each line of an inner format with journald's `<N>` priority.
struct JournalFormat<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", journal_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn capture(format: LogFormat, journal: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = subscriber(format, journal, false, EnvFilter::new("debug"), move || {
            w.clone()
        });
        tracing::subscriber::with_default(sub, f);
        buf.text()
    }

    fn events() {
        tracing::error!(status = 401, "sending is paused");
        tracing::warn!(reason = "not_json", "skipped a line");
        tracing::info!(pending = 3, "started");
        tracing::debug!("details");
        tracing::trace!("not shown at debug");
    }

    #[test]
    fn journal_lines_have_priorities_and_no_time() {
        let out = capture(LogFormat::Human, true, events);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        for (line, prefix) in lines.iter().zip(["<3>", "<4>", "<6>", "<7>"]) {
            assert!(line.starts_with(prefix), "{line}");
        }
        assert!(
            lines[0].contains("ERROR") && lines[0].contains("status=401"),
            "{out}"
        );
        assert!(lines[2].contains("started pending=3"), "{out}");
        // No timestamp: the level comes right after the prefix.
        assert!(lines[2].starts_with("<6> INFO "), "{out}");
        assert!(!out.contains('\x1b'), "{out}");
    }

    #[test]
    fn human_lines_have_a_time_and_no_prefix() {
        let out = capture(LogFormat::Human, false, events);
        let first = out.lines().next().unwrap();
        assert!(first.starts_with(char::is_numeric), "{first}");
        assert!(!first.starts_with('<'), "{first}");
        assert!(first.contains("ERROR"), "{first}");
    }

    #[test]
    fn json_lines_are_objects_with_flat_fields() {
        for journal in [false, true] {
            let out = capture(LogFormat::Json, journal, events);
            let lines: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            assert_eq!(lines.len(), 4, "{out}");
            assert_eq!(lines[0]["level"], "ERROR");
            assert_eq!(lines[0]["message"], "sending is paused");
            assert_eq!(lines[0]["status"], 401);
            assert_eq!(lines[1]["reason"], "not_json");
            assert_eq!(lines[2]["level"], "INFO");
            assert!(lines[2]["timestamp"].is_string());
            assert!(lines[2]["target"].is_string());
        }
    }

    #[test]
    fn level_precedence() {
        let opts = |level: Option<&str>, verbose, quiet| LogOptions {
            format: LogFormat::Human,
            level: level.map(str::to_string),
            verbose,
            quiet,
        };
        let lib = QUIET_LIBRARIES;
        assert_eq!(directives(&opts(None, 0, 0), None), format!("info,{lib}"));
        assert_eq!(directives(&opts(None, 1, 0), None), format!("debug,{lib}"));
        assert_eq!(directives(&opts(None, 2, 0), None), format!("trace,{lib}"));
        assert_eq!(directives(&opts(None, 0, 1), None), format!("warn,{lib}"));
        // RUST_LOG wins over -v/-q ...
        assert_eq!(directives(&opts(None, 2, 0), Some("error")), "error");
        assert_eq!(
            directives(&opts(None, 0, 0), Some("  ")),
            format!("info,{lib}")
        );
        // ... and --log-level over RUST_LOG.
        assert_eq!(
            directives(&opts(Some("debug"), 0, 1), Some("error")),
            format!("debug,{lib}")
        );
        assert_eq!(
            directives(&opts(Some("tjfwd=trace,sled=info"), 0, 0), Some("error")),
            "tjfwd=trace,sled=info"
        );
    }

    #[test]
    fn log_level_values_are_checked() {
        assert_eq!(parse_level(" debug ").unwrap(), "debug");
        assert!(parse_level("tjfwd=debug,sled=info").is_ok());
        assert!(parse_level("").is_err());
        assert!(parse_level("tjfwd=loud").is_err());
    }

    /// Set in the child process of
    /// `events_logged_while_a_thread_ends_do_not_abort`.
    const TEARDOWN_CHILD: &str = "TJFWD_TEST_LOG_TEARDOWN_CHILD";

    struct LogsOnDrop;

    impl Drop for LogsOnDrop {
        fn drop(&mut self) {
            tracing::info!("logged during teardown");
        }
    }

    thread_local! {
        static LOGS_ON_DROP: LogsOnDrop = const { LogsOnDrop };
    }

    /// What sled does through crossbeam-epoch when a runtime worker ends: an
    /// event logged by a thread-local's destructor, after the fmt layer's
    /// buffer is gone. Without [`TeardownSafe`] the process aborts. Runs in
    /// a child process, since a global subscriber can be set once.
    #[test]
    fn events_logged_while_a_thread_ends_do_not_abort() {
        if std::env::var_os(TEARDOWN_CHILD).is_some() {
            let sub = subscriber(
                LogFormat::Human,
                false,
                false,
                EnvFilter::new("trace"),
                std::io::stderr,
            );
            tracing::subscriber::set_global_default(sub).unwrap();
            std::thread::spawn(|| {
                // First use: destroyed after everything the first event
                // creates on this thread, the fmt layer's buffer included.
                LOGS_ON_DROP.with(|_| ());
                tracing::info!("logged before teardown");
            })
            .join()
            .unwrap();
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "logging::tests::events_logged_while_a_thread_ends_do_not_abort",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(TEARDOWN_CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}\n{stderr}", out.status);
        assert!(stderr.contains("logged before teardown"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    #[test]
    fn priorities() {
        assert_eq!(journal_priority(Level::ERROR), 3);
        assert_eq!(journal_priority(Level::WARN), 4);
        assert_eq!(journal_priority(Level::INFO), 6);
        assert_eq!(journal_priority(Level::DEBUG), 7);
        assert_eq!(journal_priority(Level::TRACE), 7);
    }
}
