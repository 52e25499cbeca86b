//! What a run's history must satisfy: every key's sub-history is linearizable against
//! a model of one stored key, and no acknowledged store is missing at the end.

use clockwise_client::BatchResult;
use clockwise_tests::linearizability::{check, minimize, Model, Operation, Verdict};

use crate::workload::{Answer, Call, Outcome, Record};

/// One call's effect on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCall {
    /// Store with this timestamp (the key's new last access).
    Store(i64),
    Remove,
    Locate,
}

/// What the call answered about that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    /// The node a store placed it on.
    Placed(Option<String>),
    /// Whether a remove found it.
    Removed(bool),
    /// Where it is and its last access.
    Located(Option<(String, i64)>),
    /// An answer of the wrong shape (never matches the model).
    Malformed(String),
}

pub type KeyOperation = Operation<Vec<KeyCall>, Vec<KeyAnswer>>;

/// One key on a ring whose nodes do not change: stored (with its last access) or not,
/// always on `owner`.
pub struct KeyModel {
    pub owner: String,
}

impl Model for KeyModel {
    type State = Option<i64>;
    type Input = Vec<KeyCall>;
    type Output = Vec<KeyAnswer>;

    fn init(&self) -> Option<i64> {
        None
    }

    fn initial_states(&self, history: &[KeyOperation]) -> Vec<Option<i64>> {
        let mut stored: Vec<i64> = history
            .iter()
            .flat_map(|op| {
                let written = op.input.iter().filter_map(|c| match c {
                    KeyCall::Store(ts) => Some(*ts),
                    _ => None,
                });
                let read = op.ret.iter().flat_map(|(_, answers)| {
                    answers.iter().filter_map(|a| match a {
                        KeyAnswer::Located(Some((_, ts))) => Some(*ts),
                        _ => None,
                    })
                });
                written.chain(read).collect::<Vec<_>>()
            })
            .collect();
        // A timestamp none of the calls mention stands for all such.
        stored.push(i64::MIN);
        stored.sort_unstable();
        stored.dedup();
        std::iter::once(None)
            .chain(stored.into_iter().map(Some))
            .collect()
    }

    fn is_read_only(&self, calls: &Vec<KeyCall>) -> bool {
        calls.iter().all(|c| matches!(c, KeyCall::Locate))
    }

    fn step(
        &self,
        state: &Option<i64>,
        calls: &Vec<KeyCall>,
        answers: Option<&Vec<KeyAnswer>>,
    ) -> Option<Option<i64>> {
        let mut state = *state;
        for (i, call) in calls.iter().enumerate() {
            let answer = answers.map(|a| &a[i]);
            let expected = match call {
                KeyCall::Store(ts) => {
                    state = Some(*ts);
                    KeyAnswer::Placed(Some(self.owner.clone()))
                }
                KeyCall::Remove => {
                    let found = state.is_some();
                    state = None;
                    KeyAnswer::Removed(found)
                }
                KeyCall::Locate => KeyAnswer::Located(state.map(|ts| (self.owner.clone(), ts))),
            };
            if answer.is_some_and(|a| *a != expected) {
                return None;
            }
        }
        Some(state)
    }
}

/// The calls of `records` that touch `key`, projected on it. Calls that certainly
/// failed are left out: they had no effect.
pub fn project(records: &[Record], key: &str) -> Vec<KeyOperation> {
    let mut ops = Vec::new();
    for record in records {
        let (calls, answers): (Vec<KeyCall>, Vec<KeyAnswer>) = match (&record.what, &record.outcome)
        {
            (_, Outcome::Failed(_)) => continue,
            (Call::Store { key: k, ts }, outcome) if k == key => {
                let answer = match outcome {
                    Outcome::Ok(Answer::Stored(node)) => KeyAnswer::Placed(node.clone()),
                    other => KeyAnswer::Malformed(format!("{other:?}")),
                };
                (vec![KeyCall::Store(*ts)], vec![answer])
            }
            (Call::Batch { ops, ts }, outcome) if ops.iter().any(|(_, k)| k == key) => ops
                .iter()
                .enumerate()
                .filter(|(_, (_, k))| k == key)
                .map(|(i, (store, _))| {
                    let result = match outcome {
                        Outcome::Ok(Answer::Batch(results)) => results.get(i).cloned(),
                        _ => None,
                    };
                    let answer = match result {
                        Some(Some(BatchResult::Placed(node))) if *store => {
                            KeyAnswer::Placed(Some(node))
                        }
                        Some(None) if *store => KeyAnswer::Placed(None),
                        Some(Some(BatchResult::Removed(found))) if !*store => {
                            KeyAnswer::Removed(found)
                        }
                        other => KeyAnswer::Malformed(format!("{other:?}")),
                    };
                    let call = if *store {
                        KeyCall::Store(*ts)
                    } else {
                        KeyCall::Remove
                    };
                    (call, answer)
                })
                .unzip(),
            (Call::Locate { key: k }, outcome) if k == key => {
                let answer = match outcome {
                    Outcome::Ok(Answer::Located(at)) => KeyAnswer::Located(at.clone()),
                    other => KeyAnswer::Malformed(format!("{other:?}")),
                };
                (vec![KeyCall::Locate], vec![answer])
            }
            _ => continue,
        };
        let ret = match record.outcome {
            Outcome::Ok(_) => Some((record.ret, answers)),
            _ => None,
        };
        ops.push(Operation {
            client: record.client,
            call: record.call,
            ret,
            input: calls,
        });
    }
    ops
}

/// The check of one key.
pub struct KeyReport {
    pub key: String,
    pub operations: usize,
    pub verdict: Verdict,
    /// For a violation: a small sub-history that still is one, and whether it fails
    /// from any starting state (else from the key's absence).
    pub smallest: Vec<KeyOperation>,
    pub from_any_state: bool,
}

pub fn check_key(key: &str, owner: &str, ops: &[KeyOperation], budget: u64) -> KeyReport {
    let model = KeyModel {
        owner: owner.to_owned(),
    };
    let verdict = check(&model, ops, budget);
    let (smallest, from_any_state) = if verdict == Verdict::Violation {
        minimize(&model, ops, budget)
    } else {
        (Vec::new(), false)
    };
    KeyReport {
        key: key.to_owned(),
        operations: ops.len(),
        verdict,
        smallest,
        from_any_state,
    }
}

/// Acknowledged stores whose effect is missing from `last` (the key's state read after
/// the run) although no other write could have come after them.
pub fn lost_writes(ops: &[KeyOperation], last: Option<i64>) -> Vec<i64> {
    let last_write = |op: &KeyOperation| {
        op.input
            .iter()
            .rev()
            .find(|c| !matches!(c, KeyCall::Locate))
            .cloned()
    };
    let mut lost = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let (Some(KeyCall::Store(ts)), Some(_)) = (last_write(op), &op.ret) else {
            continue;
        };
        if last == Some(ts) {
            continue;
        }
        // Another write not finished before this one was called may come after it.
        let overwritable = ops.iter().enumerate().any(|(j, other)| {
            j != i
                && last_write(other).is_some()
                && other.ret.as_ref().map_or(u64::MAX, |(ret, _)| *ret) > op.call
        });
        if !overwritable {
            lost.push(ts);
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        call: u64,
        ret: Option<u64>,
        input: Vec<KeyCall>,
        output: Vec<KeyAnswer>,
    ) -> KeyOperation {
        Operation {
            client: 0,
            call,
            ret: ret.map(|r| (r, output)),
            input,
        }
    }

    fn placed() -> KeyAnswer {
        KeyAnswer::Placed(Some("n1".into()))
    }

    #[test]
    fn a_store_then_a_read_of_it_is_linearizable_and_a_lost_one_is_not() {
        let model = KeyModel { owner: "n1".into() };
        let good = [
            op(0, Some(1), vec![KeyCall::Store(5)], vec![placed()]),
            op(
                2,
                Some(3),
                vec![KeyCall::Locate],
                vec![KeyAnswer::Located(Some(("n1".into(), 5)))],
            ),
        ];
        assert_eq!(check(&model, &good, 10_000), Verdict::Linearizable);
        let lost = [
            op(0, Some(1), vec![KeyCall::Store(5)], vec![placed()]),
            op(
                2,
                Some(3),
                vec![KeyCall::Locate],
                vec![KeyAnswer::Located(None)],
            ),
        ];
        assert_eq!(check(&model, &lost, 10_000), Verdict::Violation);
        assert_eq!(lost_writes(&lost[..1], None), vec![5]);
        assert!(lost_writes(&good[..1], Some(5)).is_empty());
    }

    #[test]
    fn a_store_on_the_wrong_node_or_a_wrong_remove_answer_is_a_violation() {
        let model = KeyModel { owner: "n1".into() };
        let wrong_node = [op(
            0,
            Some(1),
            vec![KeyCall::Store(5)],
            vec![KeyAnswer::Placed(Some("n2".into()))],
        )];
        assert_eq!(check(&model, &wrong_node, 10_000), Verdict::Violation);
        let phantom_remove = [op(
            0,
            Some(1),
            vec![KeyCall::Remove],
            vec![KeyAnswer::Removed(true)],
        )];
        assert_eq!(check(&model, &phantom_remove, 10_000), Verdict::Violation);
    }

    #[test]
    fn a_batch_applies_its_calls_on_one_key_in_order() {
        let model = KeyModel { owner: "n1".into() };
        let batch = [op(
            0,
            Some(1),
            vec![KeyCall::Store(7), KeyCall::Remove, KeyCall::Store(7)],
            vec![placed(), KeyAnswer::Removed(true), placed()],
        )];
        assert_eq!(check(&model, &batch, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn a_store_overwritten_by_a_concurrent_or_unknown_write_is_not_lost() {
        let ops = [
            op(0, Some(10), vec![KeyCall::Store(5)], vec![placed()]),
            op(5, None, vec![KeyCall::Remove], vec![]),
        ];
        assert!(lost_writes(&ops, None).is_empty());
        let earlier = [
            op(
                0,
                Some(1),
                vec![KeyCall::Remove],
                vec![KeyAnswer::Removed(false)],
            ),
            op(2, Some(3), vec![KeyCall::Store(5)], vec![placed()]),
        ];
        assert_eq!(lost_writes(&earlier, None), vec![5]);
    }
}
