//! The points of a request's path through a node, for `scripts/bench.sh --timeline`.
//!
//! Each is a trace-level event under one target, `clockwise::timeline`, with a `point`
//! field naming it: off (the default), one comparison against the enabled level; on
//! (`RUST_LOG=info,clockwise::timeline=trace --log-format json`), one log line whose
//! timestamp places it. The nodes of a machine share its clock, so one request's points
//! line up across processes (`tests/src/bin/timeline`).

/// Logs point `$point` of a request's path (see the module's doc), with optional fields.
#[macro_export]
macro_rules! timeline {
    ($point:literal $(, $($fields:tt)*)?) => {
        ::tracing::trace!(target: "clockwise::timeline", point = $point $(, $($fields)*)?)
    };
}
