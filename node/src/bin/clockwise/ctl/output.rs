//! What a ctl call answered, printed as text for people or JSON (`--json`) for scripts.

use clockwise_client::{BatchResult, Error, Location, Member, NodeStatus};
use serde_json::{json, Value};

/// What a call answered, printed as text or JSON.
pub(super) enum Answer {
    Bool(bool),
    Int(i64),
    Count(Option<i64>),
    Name(Option<String>),
    Names(Vec<String>),
    Bools(Vec<bool>),
    Batch(Vec<Option<BatchResult>>),
    Location(Option<Location>),
    Done,
    Members(Vec<Member>),
    Statuses(Vec<(String, Result<NodeStatus, Error>)>),
    Leader(u64),
}

fn batch_json(result: &Option<BatchResult>) -> Value {
    match result {
        Some(BatchResult::Placed(name)) => json!({ "placed": name }),
        Some(BatchResult::Removed(ok)) => json!({ "removed": ok }),
        None => Value::Null,
    }
}

fn member_json(m: &Member) -> Value {
    json!({ "id": m.id, "address": m.address, "peer_address": m.peer_address, "learner": m.learner })
}

impl Answer {
    pub(super) fn to_json(&self) -> Value {
        match self {
            Answer::Bool(b) => json!(b),
            Answer::Int(n) => json!(n),
            Answer::Count(count) => json!(count),
            Answer::Name(name) => json!(name),
            Answer::Names(names) => json!(names),
            Answer::Bools(results) => json!(results),
            Answer::Batch(results) => Value::Array(results.iter().map(batch_json).collect()),
            Answer::Location(None) => Value::Null,
            Answer::Location(Some(l)) => json!({
                "owner": l.owner,
                "last_access": l.last_access,
                "size": l.size,
                "expires_at": l.expires_at,
            }),
            Answer::Done => json!({ "ok": true }),
            Answer::Members(members) => Value::Array(members.iter().map(member_json).collect()),
            Answer::Statuses(statuses) => Value::Array(
                statuses
                    .iter()
                    .map(|(endpoint, status)| match status {
                        Ok(s) => json!({
                            "endpoint": endpoint,
                            "id": s.id,
                            "role": s.role.to_string(),
                            "leader_id": s.leader_id,
                            "term": s.term,
                            "commit_index": s.commit_index,
                            "applied_index": s.applied_index,
                            "snapshot_index": s.snapshot_index,
                            "first_log_index": s.first_log_index,
                            "state_digest": s.state_digest,
                            "members": s.members.iter().map(member_json).collect::<Vec<_>>(),
                        }),
                        Err(e) => json!({ "endpoint": endpoint, "error": e.to_string() }),
                    })
                    .collect(),
            ),
            Answer::Leader(id) => json!({ "leader_id": id }),
        }
    }

    pub(super) fn to_text(&self) -> String {
        let lines =
            |items: Vec<String>| -> String { items.into_iter().map(|line| line + "\n").collect() };
        let none = "(none)\n".to_owned();
        match self {
            Answer::Bool(b) => format!("{b}\n"),
            Answer::Int(n) => format!("{n}\n"),
            Answer::Count(Some(n)) => format!("{n}\n"),
            Answer::Count(None) => none.clone(),
            Answer::Name(Some(name)) => format!("{name}\n"),
            Answer::Name(None) => none,
            Answer::Names(names) if names.is_empty() => none,
            Answer::Names(names) => lines(names.clone()),
            Answer::Bools(results) => lines(
                results
                    .iter()
                    .enumerate()
                    .map(|(i, ok)| format!("{i}  {ok}"))
                    .collect(),
            ),
            Answer::Batch(results) => lines(
                results
                    .iter()
                    .enumerate()
                    .map(|(i, result)| match result {
                        Some(BatchResult::Placed(name)) => format!("{i}  {name}"),
                        Some(BatchResult::Removed(ok)) => format!("{i}  {ok}"),
                        None => format!("{i}  (none)"),
                    })
                    .collect(),
            ),
            Answer::Location(None) => "(not stored)\n".into(),
            Answer::Location(Some(l)) => format!(
                "owner        {}\nlast_access  {}\nsize         {}\nexpires_at   {}\n",
                l.owner,
                l.last_access,
                l.size,
                l.expires_at.map_or("never".into(), |t| t.to_string())
            ),
            Answer::Done => "ok\n".into(),
            Answer::Members(members) => members_table(members),
            Answer::Statuses(statuses) => statuses_table(statuses),
            Answer::Leader(id) => format!("leader {id}\n"),
        }
    }
}

fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned() + "\n"
        })
        .collect()
}

fn members_table(members: &[Member]) -> String {
    let mut rows = vec![vec![
        "ID".into(),
        "ADDRESS".into(),
        "PEER ADDRESS".into(),
        "VOTER".into(),
    ]];
    rows.extend(members.iter().map(|m| {
        vec![
            m.id.to_string(),
            m.address.clone(),
            m.peer_address.clone(),
            if m.learner { "no (learner)" } else { "yes" }.into(),
        ]
    }));
    table(rows)
}

fn statuses_table(statuses: &[(String, Result<NodeStatus, Error>)]) -> String {
    let mut rows = vec![[
        "ENDPOINT", "ID", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "SNAPSHOT", "DIGEST",
    ]
    .map(String::from)
    .to_vec()];
    for (endpoint, status) in statuses {
        rows.push(match status {
            Ok(s) => vec![
                endpoint.clone(),
                s.id.to_string(),
                s.role.to_string(),
                s.leader_id.to_string(),
                s.term.to_string(),
                s.commit_index.to_string(),
                s.applied_index.to_string(),
                s.snapshot_index.to_string(),
                s.state_digest.chars().take(12).collect(),
            ],
            Err(e) => {
                let mut row = vec![endpoint.clone(), "-".into(), format!("unreachable: {e}")];
                row.resize(9, String::new());
                row
            }
        });
    }
    table(rows)
}
