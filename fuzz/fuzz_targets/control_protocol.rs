//! Fuzzes the control socket's protocol: arbitrary bytes as a request line
//! through the daemon's parser and dispatcher (`control::parse_request`,
//! then `Ops::handle` on a real queue in a scratch state directory), and as
//! a response line through what the client does with it. Never a panic;
//! every response serializes; a parsed request survives a round trip.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tjfwd::config::Config;
use tjfwd::control::{
    parse_request, ExportEntry, FlushOutcome, Ops, Request, ResendOutcome, Response,
};
use tjfwd::store::EnqueueOutcome;
use tjfwd::status::Snapshot;

/// One queue for the whole run, in `$TMPDIR/tjfwd-fuzz-control-PID`.
fn ops() -> &'static Ops {
    static OPS: OnceLock<Ops> = OnceLock::new();
    OPS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tjfwd-fuzz-control-{}", std::process::id()));
        let config = Config::default_for_tests(dir.clone());
        let queue = tjfwd::daemon::open_queue(&config).unwrap();
        Ops {
            queue: Arc::new(queue),
            config,
            daemon: None,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // Daemon side.
    let response = match parse_request(data) {
        Ok(req) => {
            let line = serde_json::to_vec(&req).unwrap();
            assert_eq!(serde_json::from_slice::<Request>(&line).unwrap(), req);
            ops().handle(req)
        }
        Err(refusal) => {
            assert!(!refusal.ok);
            refusal
        }
    };
    serde_json::to_vec(&response).unwrap();

    // Client side: the same bytes as the daemon's answer.
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let v = resp.result.unwrap_or(serde_json::Value::Null);
        let _ = serde_json::from_value::<Snapshot>(v.clone());
        let _ = serde_json::from_value::<EnqueueOutcome>(v.clone());
        let _ = serde_json::from_value::<ResendOutcome>(v.clone());
        let _ = serde_json::from_value::<Vec<ExportEntry>>(v.clone());
        let _ = serde_json::from_value::<FlushOutcome>(v);
    }
});
