//! raft-rs logs through `slog`; this drain hands each record to `tracing`, so its
//! elections, step-downs and rejections land in the node's log beside everything else.
//!
//! Levels map one to one (slog's critical is tracing's error); the target is `raft`,
//! so `RUST_LOG=raft=debug` shows raft's debug lines alone. Every event carries the
//! node id (`node`) and raft's key-values, formatted as one `kv` field (tracing's
//! fields are named at compile time; raft's keys are not).

use std::fmt::{self, Write as _};

use slog::{Drain, Level, OwnedKVList, Record, KV};

/// Forwards raft-rs's records to `tracing`, tagged with this node's id.
pub struct TracingDrain {
    node: u64,
}

impl TracingDrain {
    pub fn new(node: u64) -> Self {
        TracingDrain { node }
    }

    /// A root logger for raft-rs over this drain.
    pub fn logger(node: u64) -> slog::Logger {
        slog::Logger::root(TracingDrain::new(node), slog::o!())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        if !enabled(record.level()) {
            // Formatting raft's key-values costs more than the check.
            return Ok(());
        }
        let mut kv = KeyValues(String::new());
        // Record's own pairs first, then the logger's (raft adds `raft_id`).
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let (node, kv, message) = (self.node, kv.0, record.msg());
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "raft", node, kv = %kv, "{message}")
            }
            Level::Warning => tracing::warn!(target: "raft", node, kv = %kv, "{message}"),
            Level::Info => tracing::info!(target: "raft", node, kv = %kv, "{message}"),
            Level::Debug => tracing::debug!(target: "raft", node, kv = %kv, "{message}"),
            Level::Trace => tracing::trace!(target: "raft", node, kv = %kv, "{message}"),
        }
        Ok(())
    }
}

fn enabled(level: Level) -> bool {
    match level {
        Level::Critical | Level::Error => tracing::enabled!(target: "raft", tracing::Level::ERROR),
        Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
        Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
        Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
        Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
    }
}

/// `key=value` pairs, space separated; `raft_id` left out (the `node` field says it).
struct KeyValues(String);

impl slog::Serializer for KeyValues {
    fn emit_arguments(&mut self, key: slog::Key, value: &fmt::Arguments<'_>) -> slog::Result {
        if key == "raft_id" {
            return Ok(());
        }
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={value}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// Everything a test subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured_at(level: tracing::Level, log: impl FnOnce(&slog::Logger)) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // As raft-rs builds its loggers: a child with `raft_id`.
            let logger = TracingDrain::logger(7).new(slog::o!("raft_id" => 7));
            log(&logger);
        });
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn raft_records_reach_tracing_with_level_node_and_key_values() {
        let text = captured_at(tracing::Level::INFO, |logger| {
            slog::info!(logger, "became leader at term {term}", term = 3;);
            slog::warn!(logger, "rejected"; "from" => 2, "index" => 9);
            slog::debug!(logger, "a debug line");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("INFO"), "{text}");
        assert!(lines[0].contains("raft:"), "{text}");
        assert!(lines[0].contains("became leader at term 3"), "{text}");
        assert!(lines[0].contains("node=7"), "{text}");
        assert!(!lines[0].contains("raft_id"), "{text}");
        assert!(lines[1].contains("WARN"), "{text}");
        assert!(lines[1].contains("from=2"), "{text}");
        assert!(lines[1].contains("index=9"), "{text}");
    }

    #[test]
    fn raft_debug_lines_stay_at_debug() {
        let text = captured_at(tracing::Level::DEBUG, |logger| {
            slog::debug!(logger, "sending"; "to" => 3);
        });
        assert!(text.contains("DEBUG"), "{text}");
        assert!(text.contains("sending"), "{text}");
        assert!(text.contains("to=3"), "{text}");
    }
}
