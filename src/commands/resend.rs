//! `tjfwd resend`: queue again addresses of the reported set (the local
//! mirror of the private denylist) or of the dead-letter set, e.g. after an
//! outage on the API's side or a token change, or once the cause of a
//! rejection is fixed.

use crate::commands::{print, Backend, CommandError};
use crate::config::Config;
use crate::control::ResendFilter;

/// Queues the matching addresses again; prints how many.
pub fn run(config: &Config, filter: &ResendFilter) -> Result<(), CommandError> {
    let mut b = Backend::open(config)?;
    let out = b.resend(filter)?;
    let from = if filter.dead_letter {
        "dead-letter set"
    } else {
        "reported set"
    };
    print(format_args!(
        "{} addresses of the {from} matched: {} queued again, {} were already pending\n",
        out.matched, out.queued, out.already_pending
    ))?;
    if !b.is_daemon() && out.queued > 0 {
        print(
            "no daemon runs: they are sent when `tjfwd run` starts (or now with `tjfwd flush`)\n",
        )?;
    }
    Ok(())
}
