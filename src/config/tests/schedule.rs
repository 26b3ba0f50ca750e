//! The tests of `[targets.threatjammer]` (`crate::targets::threatjammer::schedule`),
//! through the whole loader.

use crate::config::tests::{parse_ok, refused};

#[test]
fn refuses_batch_size_out_of_range() {
    let msg = refused(
        "[targets.threatjammer]\nbatch_size = 0",
        "[targets.threatjammer] batch_size",
    );
    assert!(msg.contains("between 1 and 1000"), "{msg}");
    let msg = refused(
        "[targets.threatjammer]\nbatch_size = 1001",
        "[targets.threatjammer] batch_size",
    );
    assert!(msg.contains("1001"), "{msg}");
    assert_eq!(
        parse_ok("[targets.threatjammer]\nbatch_size = 1")
            .schedule()
            .batch_size,
        1
    );
    assert_eq!(
        parse_ok("[targets.threatjammer]\nbatch_size = 1000")
            .schedule()
            .batch_size,
        1000
    );
}

#[test]
fn refuses_max_requests_per_minute_zero_and_warns_above_limit() {
    refused(
        "[targets.threatjammer]\nmax_requests_per_minute = 0",
        "[targets.threatjammer] max_requests_per_minute",
    );
    let c = parse_ok("[targets.threatjammer]\nmax_requests_per_minute = 10");
    assert_eq!(c.schedule().max_requests_per_minute, 10);
    assert_eq!(c.warnings.len(), 1);
}
