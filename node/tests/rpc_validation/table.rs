//! Rows of bad (and boundary) input run against the RPCs of a service: each row puts
//! one value into an otherwise valid input; the RPCs that carry that field refuse it,
//! apply nothing, and name the field. A valid row is served by every RPC, and a field
//! every RPC carries (metadata) is refused by exactly the RPCs that read it.

use std::fmt::Debug;
use std::future::Future;

use tonic::{Code, Status};

use crate::harness::TestNode;

/// What an RPC answered, in the drill's terms: enough to compare with a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Ok(bool),
    /// A node, server, key or request id, if any.
    Name(Option<String>),
    /// A count, load, usage, capacity, limit or replica count.
    Count(i64),
    /// `Restore`: unset when no backup is at or before the one asked for.
    Restored(Option<i64>),
    /// Names, or `"name(load)"` entries.
    Names(Vec<String>),
    /// A sync call's results.
    Results(Vec<bool>),
    Batch(Vec<Item>),
    /// Where a key or request is stored, and until when.
    Located {
        found: bool,
        at: Option<String>,
        expires_at: Option<i64>,
    },
}

/// One result of a batch: a name, a flag, or neither (the drill's None).
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Name(String),
    Ok(bool),
    Empty,
}

/// An RPC's answer, or its refusal.
pub type Outcome = Result<Answer, Status>;

/// A row of answers: an RPC, what it changes in the section's input, what it answers.
pub type Expected<I> = (&'static str, fn(&mut I), Answer);

/// A client of one service that can call any of its RPCs with one shared input.
pub trait Service {
    /// Every field any of the service's requests carries, valid unless a row spoils it.
    type Input: Clone;
    const NAME: &'static str;
    /// Every RPC that takes input, in the order a row calls them (`ConfigureRing`
    /// first, while the row's ring is new).
    const RPCS: &'static [&'static str];
    fn call(&mut self, rpc: &str, input: &Self::Input) -> impl Future<Output = Outcome>;
}

pub enum Expect {
    /// These RPCs refuse it with `INVALID_ARGUMENT` naming `field`. With
    /// `served_elsewhere`, every other RPC carries the field too and serves it.
    Refused {
        field: String,
        rpcs: &'static [&'static str],
        served_elsewhere: bool,
    },
    /// Every RPC serves it.
    Served,
}

pub struct Row<I> {
    what: String,
    set: Box<dyn Fn(&mut I)>,
    expect: Expect,
}

/// `value`'s `Debug`, cut short (a row may hold thousands of entries).
fn short<V: Debug>(value: &V) -> String {
    let text = format!("{value:?}");
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}… ({} chars)", &text[..cut], text.chars().count()),
        None => text,
    }
}

/// One row per value: `set` puts it into the input; `rpcs` (those that carry the field)
/// refuse it naming `field`.
pub fn refused<I: 'static, V: Clone + Debug + 'static>(
    field: &str,
    rpcs: &'static [&'static str],
    set: fn(&mut I, V),
    values: impl IntoIterator<Item = V>,
) -> Vec<Row<I>> {
    refusals(field, rpcs, false, set, values)
}

/// Rows of a field every RPC carries (metadata): exactly `rpcs` refuse it naming
/// `field`; every other RPC serves it.
pub fn refused_only_by<I: 'static, V: Clone + Debug + 'static>(
    field: &str,
    rpcs: &'static [&'static str],
    set: fn(&mut I, V),
    values: impl IntoIterator<Item = V>,
) -> Vec<Row<I>> {
    refusals(field, rpcs, true, set, values)
}

fn refusals<I: 'static, V: Clone + Debug + 'static>(
    field: &str,
    rpcs: &'static [&'static str],
    served_elsewhere: bool,
    set: fn(&mut I, V),
    values: impl IntoIterator<Item = V>,
) -> Vec<Row<I>> {
    values
        .into_iter()
        .map(|value| Row {
            what: format!("{field} = {}", short(&value)),
            expect: Expect::Refused {
                field: field.to_owned(),
                rpcs,
                served_elsewhere,
            },
            set: Box::new(move |input| set(input, value.clone())),
        })
        .collect()
}

/// One row per value that every RPC serves.
pub fn served<I: 'static, V: Clone + Debug + 'static>(
    field: &str,
    set: fn(&mut I, V),
    values: impl IntoIterator<Item = V>,
) -> Vec<Row<I>> {
    values
        .into_iter()
        .map(|value| Row {
            what: format!("{field} = {} (valid)", short(&value)),
            expect: Expect::Served,
            set: Box::new(move |input| set(input, value.clone())),
        })
        .collect()
}

/// A refusal's problem, if any: `code`, and a message that starts with `"<field>:"`.
pub fn refusal<T>(
    rpc: &str,
    result: &Result<T, Status>,
    code: Code,
    field: &str,
) -> Option<String> {
    match result {
        Ok(_) => Some(format!("{rpc}: served; expected {code:?} naming `{field}`")),
        Err(status) if status.code() != code => Some(format!(
            "{rpc}: {:?} {:?}; expected {code:?} naming `{field}`",
            status.code(),
            status.message()
        )),
        Err(status) if !status.message().starts_with(&format!("{field}:")) => Some(format!(
            "{rpc}: message {:?} does not start with `{field}:`",
            status.message()
        )),
        Err(_) => None,
    }
}

/// No problems; all of them are reported at once.
#[track_caller]
pub fn assert_none(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Unwraps a call that must be served, naming it on failure.
#[track_caller]
pub fn served_ok<T>(rpc: &str, result: Result<tonic::Response<T>, Status>) -> T {
    match result {
        Ok(response) => response.into_inner(),
        Err(s) => panic!(
            "{rpc}: {:?} {:?}; expected it to be served",
            s.code(),
            s.message()
        ),
    }
}

/// Calls each row's RPC in order, on `base` with the row's change, and compares its
/// answer; all mismatches are reported at once.
pub async fn answers<S: Service>(
    client: &mut S,
    what: &str,
    base: S::Input,
    rows: &[Expected<S::Input>],
) {
    let mut problems = Vec::new();
    for (n, (rpc, change, want)) in rows.iter().enumerate() {
        let mut input = base.clone();
        change(&mut input);
        match client.call(rpc, &input).await {
            Ok(got) if got == *want => {}
            Ok(got) => problems.push(format!(
                "row {n}, {rpc}: answered {}, want {}",
                short(&got),
                short(want)
            )),
            Err(s) => problems.push(format!(
                "row {n}, {rpc}: {:?} {:?}; want {}",
                s.code(),
                s.message(),
                short(want)
            )),
        }
    }
    assert_none(what, &problems);
}

/// The refusals of one row: problems, if any.
async fn refuse<S: Service>(client: &mut S, row: &Row<S::Input>, input: &S::Input) -> Vec<String> {
    let mut problems = Vec::new();
    if let Expect::Refused { field, rpcs, .. } = &row.expect {
        for rpc in *rpcs {
            assert!(S::RPCS.contains(rpc), "{rpc} is not a {} RPC", S::NAME);
            let result = client.call(rpc, input).await;
            problems.extend(
                refusal(rpc, &result, Code::InvalidArgument, field)
                    .map(|p| format!("{}: {p}", row.what)),
            );
        }
    }
    problems
}

/// Runs every row, row `i` on the input `base(i)` (its own ring) with the row's value
/// put in. First every row's refusals: the node's applied index and state digest must
/// not move (when they do, each row is run again alone to name the culprit). Then, on
/// the rows' own new rings, every RPC that must serve a row's input serves it.
pub async fn run<S: Service>(
    client: &mut S,
    node: &TestNode,
    base: impl Fn(usize) -> S::Input,
    rows: Vec<Row<S::Input>>,
) {
    let inputs: Vec<S::Input> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut input = base(i);
            (row.set)(&mut input);
            input
        })
        .collect();
    let mut problems = Vec::new();
    let before = node.applied().await;
    for (row, input) in rows.iter().zip(&inputs) {
        problems.extend(refuse(client, row, input).await);
    }
    let after = node.applied().await;
    if before != after {
        problems.push(format!(
            "refused calls applied something: {before:?} -> {after:?}"
        ));
        for (row, input) in rows.iter().zip(&inputs) {
            let before = node.applied().await;
            refuse(client, row, input).await;
            let after = node.applied().await;
            if before != after {
                problems.push(format!("{}: refused calls applied something", row.what));
            }
        }
    }
    for (row, input) in rows.iter().zip(&inputs) {
        let refusing = match &row.expect {
            Expect::Refused {
                served_elsewhere: false,
                ..
            } => continue,
            Expect::Refused { rpcs, .. } => *rpcs,
            Expect::Served => &[],
        };
        for rpc in S::RPCS.iter().filter(|rpc| !refusing.contains(rpc)) {
            if let Err(s) = client.call(rpc, input).await {
                problems.push(format!(
                    "{}: {rpc}: {:?} {:?}; expected it to be served",
                    row.what,
                    s.code(),
                    s.message()
                ));
            }
        }
    }
    assert_none(
        &format!("{} rows of {} input", rows.len(), S::NAME),
        &problems,
    );
}
