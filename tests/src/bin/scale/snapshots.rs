//! The nodes' snapshots, read from their logs (`--log-format json`: one JSON object a
//! line, the event's fields under `fields`): `took a snapshot` (built here, with
//! `index`, and `bytes` and `build_ms` where the node logs them) and `installed a
//! snapshot from the leader` (`index`). Other lines (the `listening on` lines of stdout,
//! anything not JSON) are skipped.

use std::path::Path;

/// One snapshot a node built or installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Raft id of the node.
    pub node: u64,
    /// Built here (`true`) or installed from the leader.
    pub built: bool,
    /// The log's timestamp of the line.
    pub at: String,
    pub index: Option<u64>,
    /// Encoded size, when logged.
    pub bytes: Option<u64>,
    /// Time to build it, when logged.
    pub build_ms: Option<u64>,
}

/// Every snapshot line of `log`, in order.
pub fn read(node: u64, log: &Path) -> Result<Vec<Snapshot>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    Ok(parse(node, &text))
}

fn parse(node: u64, text: &str) -> Vec<Snapshot> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| {
            let fields = line.get("fields")?;
            let built = match fields.get("message")?.as_str()? {
                "took a snapshot" => true,
                "installed a snapshot from the leader" => false,
                _ => return None,
            };
            let number = |name: &str| fields.get(name).and_then(serde_json::Value::as_u64);
            Some(Snapshot {
                node,
                built,
                at: line
                    .get("timestamp")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                index: number("index"),
                bytes: number("bytes"),
                build_ms: number("build_ms"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_present_and_skips_other_lines() {
        let text = concat!(
            "listening on 127.0.0.1:1\n",
            r#"{"timestamp":"t1","level":"INFO","fields":{"message":"took a snapshot","index":50000,"compacted_to":45000}}"#,
            "\n",
            r#"{"timestamp":"t2","level":"INFO","fields":{"message":"took a snapshot","index":9,"bytes":1234,"build_ms":56}}"#,
            "\n",
            r#"{"timestamp":"t3","level":"INFO","fields":{"message":"installed a snapshot from the leader","index":7}}"#,
            "\n",
            r#"{"timestamp":"t4","level":"INFO","fields":{"message":"clockwise node serving"}}"#,
            "\n",
        );
        let found = parse(2, text);
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].index, Some(50_000));
        assert_eq!((found[0].bytes, found[0].build_ms), (None, None));
        assert_eq!((found[1].bytes, found[1].build_ms), (Some(1234), Some(56)));
        assert!(!found[2].built);
        assert_eq!(found[2].at, "t3");
    }
}
