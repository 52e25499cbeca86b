//! A linearizability checker: the Wing–Gong–Lowe search (as in Porcupine and
//! Knossos), with Lowe's cache of (linearized set, state) pairs, over any sequential
//! [`Model`].
//!
//! An operation whose outcome is unknown (a write that timed out) has no completion:
//! it may take effect at any point after its invocation, or never. Checking a large
//! history per key (P-compositionality: a history is linearizable iff every key's
//! sub-history is) keeps the search small; a multi-key batch is checked through its
//! projection on each key, which is necessary, though not sufficient, for the batch's
//! atomicity.
//!
//! `stateright` and `todc-utils` have checkers too; neither takes operations without a
//! completion or reports a minimal failing sub-history, which a chaos run needs.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Debug + Clone;
    type Output: Debug + Clone;

    fn init(&self) -> Self::State;

    /// Starting states that stand for every state a history could start from (for a
    /// report of a sub-history that fails whatever came before it): every state the
    /// calls mention, and one they don't. By default only [`Model::init`].
    fn initial_states(&self, history: &[Operation<Self::Input, Self::Output>]) -> Vec<Self::State> {
        let _ = history;
        vec![self.init()]
    }

    /// Whether a call never changes the state (it may then be left out of a report).
    fn is_read_only(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }

    /// The state after `input` applied to `state`, if the model can answer `output`
    /// there; with `output` unknown (`None`), any answer will do.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One call: invoked at `call`, answered at `ret` (`None`: the outcome is unknown).
#[derive(Debug, Clone)]
pub struct Operation<I, O> {
    /// Who called (for reports).
    pub client: usize,
    pub call: u64,
    /// `Some((time, answer))` once answered.
    pub ret: Option<(u64, O)>,
    pub input: I,
}

/// A history of a model's calls.
pub type ModelHistory<M> = Vec<Operation<<M as Model>::Input, <M as Model>::Output>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    Violation,
    /// The search ran out of its step budget.
    Inconclusive,
}

/// Whether `history` is linearizable with respect to `model`, trying at most `budget`
/// steps.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: u64,
) -> Verdict {
    Search::new(history).run(model, history, model.init(), budget)
}

/// A small sub-history that is still not linearizable, for a report. `history` must
/// be a violation. Each step keeps only what proves the violation on its own:
///
/// 1. Calls made after the violation are dropped: the history is cut at the earliest
///    time `t` where it still fails; a write still running at `t` becomes one of
///    unknown outcome, a read still running is dropped (neither can have been needed
///    by what completed before `t`).
/// 2. Calls long finished are dropped: the history is started at the latest point
///    from which it fails whatever the state was then ([`Model::initial_states`]);
///    the calls kept include every one that may be ordered after a dropped one.
/// 3. Reads ([`Model::is_read_only`]) are dropped one by one while it still fails
///    (a read changes nothing, so dropping one never hides a real violation).
///
/// Answers the calls and whether they fail from any starting state (step 2 applied).
pub fn minimize<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: u64,
) -> (ModelHistory<M>, bool) {
    let fails = |ops: &[Operation<M::Input, M::Output>], from_any: bool| {
        let starts = if from_any {
            model.initial_states(ops)
        } else {
            vec![model.init()]
        };
        starts
            .into_iter()
            .all(|start| Search::new(ops).run(model, ops, start, budget) == Verdict::Violation)
    };
    let mut ops = history.to_vec();

    let mut ends: Vec<u64> = ops.iter().map(|op| op.call).collect();
    ends.sort_unstable();
    ends.dedup();
    if let Some(cut) = first_true(&ends, |&t| fails(&truncate(model, &ops, t), false)) {
        let shorter = truncate(model, &ops, *cut);
        if fails(&shorter, false) {
            ops = shorter;
        }
    }

    let mut from_any = false;
    let mut starts: Vec<u64> = ops
        .iter()
        .filter_map(|op| op.ret.as_ref().map(|(t, _)| *t))
        .collect();
    starts.sort_unstable();
    starts.dedup();
    if let Some(start) = last_true(&starts, |&s| fails(&window(&ops, s), true)) {
        ops = window(&ops, *start);
        from_any = true;
    }

    let mut i = 0;
    while i < ops.len() {
        if model.is_read_only(&ops[i].input) {
            let mut without = ops.clone();
            without.remove(i);
            if fails(&without, from_any) {
                ops = without;
                continue;
            }
        }
        i += 1;
    }
    (ops, from_any)
}

/// The last element of `sorted` for which `holds` is true, assuming it holds on a
/// prefix (binary search).
fn last_true<T>(sorted: &[T], holds: impl Fn(&T) -> bool) -> Option<&T> {
    let (mut low, mut high) = (0, sorted.len());
    while low < high {
        let mid = (low + high) / 2;
        if holds(&sorted[mid]) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low.checked_sub(1).map(|i| &sorted[i])
}

/// The first element of `sorted` for which `holds` is true, assuming it holds on a
/// suffix (binary search).
fn first_true<T>(sorted: &[T], holds: impl Fn(&T) -> bool) -> Option<&T> {
    let (mut low, mut high) = (0, sorted.len());
    while low < high {
        let mid = (low + high) / 2;
        if holds(&sorted[mid]) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    sorted.get(low)
}

/// The calls made up to `t`, as they were known at `t`.
fn truncate<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    t: u64,
) -> Vec<Operation<M::Input, M::Output>> {
    ops.iter()
        .filter(|op| op.call <= t)
        .filter_map(|op| match &op.ret {
            Some((ret, _)) if *ret > t => (!model.is_read_only(&op.input)).then(|| Operation {
                ret: None,
                ..op.clone()
            }),
            _ => Some(op.clone()),
        })
        .collect()
}

/// The calls not finished before `start`, and every call finished late enough that it
/// may be ordered after one of those: all the rest precede them all.
fn window<I: Clone, O: Clone>(ops: &[Operation<I, O>], start: u64) -> Vec<Operation<I, O>> {
    let ret = |op: &Operation<I, O>| op.ret.as_ref().map_or(u64::MAX, |(t, _)| *t);
    let mut from = start;
    loop {
        let earliest_call = ops
            .iter()
            .filter(|op| ret(op) >= from)
            .map(|op| op.call)
            .min()
            .unwrap_or(from);
        if earliest_call >= from {
            return ops.iter().filter(|op| ret(op) >= from).cloned().collect();
        }
        from = earliest_call;
    }
}

/// The history as a doubly linked list of call and return events in time order, from
/// which linearized operations are lifted out and put back (dancing links).
struct Search {
    /// Per event (index 0 is the head): the operation and whether it is its call.
    events: Vec<(usize, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per operation: its call event and its return event (0: none).
    call_event: Vec<usize>,
    return_event: Vec<usize>,
}

const HEAD: usize = 0;

impl Search {
    fn new<I, O>(history: &[Operation<I, O>]) -> Search {
        let mut timed: Vec<(u64, bool, usize)> = Vec::new();
        for (op, operation) in history.iter().enumerate() {
            timed.push((operation.call, true, op));
            if let Some((ret, _)) = &operation.ret {
                timed.push((*ret, false, op));
            }
        }
        // At equal times calls go first: the operations count as concurrent.
        timed.sort_by_key(|&(time, is_call, op)| (time, !is_call, op));
        let mut events = vec![(usize::MAX, false)];
        let mut call_event = vec![0; history.len()];
        let mut return_event = vec![0; history.len()];
        for (time_order, &(_, is_call, op)) in timed.iter().enumerate() {
            let index = time_order + 1;
            events.push((op, is_call));
            if is_call {
                call_event[op] = index;
            } else {
                return_event[op] = index;
            }
        }
        let n = events.len();
        // A circular list through the head.
        let next = (0..n).map(|i| (i + 1) % n).collect();
        let prev = (0..n).map(|i| (i + n - 1) % n).collect();
        Search {
            events,
            next,
            prev,
            call_event,
            return_event,
        }
    }

    fn unlink(&mut self, event: usize) {
        let (p, n) = (self.prev[event], self.next[event]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, event: usize) {
        let (p, n) = (self.prev[event], self.next[event]);
        self.next[p] = event;
        self.prev[n] = event;
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_event[op]);
        if self.return_event[op] != 0 {
            self.unlink(self.return_event[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        if self.return_event[op] != 0 {
            self.relink(self.return_event[op]);
        }
        self.relink(self.call_event[op]);
    }

    fn run<M: Model>(
        mut self,
        model: &M,
        history: &[Operation<M::Input, M::Output>],
        mut state: M::State,
        budget: u64,
    ) -> Verdict {
        let mut pending_returns = history.iter().filter(|op| op.ret.is_some()).count();
        // The linearized set is kept as a Zobrist hash (XOR of a random 128-bit value
        // per operation): O(1) to update and 16 bytes per cache entry where a bitset
        // would take n/8 bytes; two sets collide with probability 2^-128.
        let mut linearized = 0u128;
        let mut seen: HashSet<(u128, M::State)> = HashSet::new();
        let mut stack: Vec<(usize, M::State)> = Vec::new();
        let mut entry = self.next[HEAD];
        let mut steps = 0u64;
        loop {
            // Every answered call is placed; unanswered ones may stay out.
            if pending_returns == 0 {
                return Verdict::Linearizable;
            }
            steps += 1;
            if steps > budget {
                return Verdict::Inconclusive;
            }
            let (op, is_call) = self.events[entry];
            if is_call {
                let output = history[op].ret.as_ref().map(|(_, output)| output);
                if let Some(after) = model.step(&state, &history[op].input, output) {
                    let with_op = linearized ^ zobrist(op);
                    if seen.insert((with_op, after.clone())) {
                        stack.push((op, std::mem::replace(&mut state, after)));
                        linearized = with_op;
                        if history[op].ret.is_some() {
                            pending_returns -= 1;
                        }
                        self.lift(op);
                        entry = self.next[HEAD];
                        continue;
                    }
                }
                entry = self.next[entry];
            } else {
                // An answered call returns before being placed: undo the last choice.
                let Some((op, before)) = stack.pop() else {
                    return Verdict::Violation;
                };
                state = before;
                linearized ^= zobrist(op);
                if history[op].ret.is_some() {
                    pending_returns += 1;
                }
                self.unlift(op);
                entry = self.next[self.call_event[op]];
            }
        }
    }
}

/// Operation `op`'s random 128-bit key (SplitMix64 of its index, twice).
fn zobrist(op: usize) -> u128 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let seed = (op as u64)
        .wrapping_mul(2)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (u128::from(mix(seed)) << 64) | u128::from(mix(seed ^ 0xD1B5_4A32_D192_ED03))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register: write(v) or read() -> v.
    struct Register;

    #[derive(Debug, Clone)]
    enum Call {
        Write(u32),
        Read,
    }

    impl Model for Register {
        type State = u32;
        type Input = Call;
        type Output = u32;

        fn init(&self) -> u32 {
            0
        }

        fn initial_states(&self, history: &[Operation<Call, u32>]) -> Vec<u32> {
            let mut states: Vec<u32> = history
                .iter()
                .flat_map(|op| {
                    let written = match op.input {
                        Call::Write(v) => Some(v),
                        Call::Read => None,
                    };
                    written.into_iter().chain(op.ret.as_ref().map(|(_, v)| *v))
                })
                .chain([0, u32::MAX])
                .collect();
            states.sort_unstable();
            states.dedup();
            states
        }

        fn is_read_only(&self, input: &Call) -> bool {
            matches!(input, Call::Read)
        }

        fn step(&self, state: &u32, input: &Call, output: Option<&u32>) -> Option<u32> {
            match input {
                Call::Write(v) => Some(*v),
                Call::Read => (output.is_none_or(|o| o == state)).then_some(*state),
            }
        }
    }

    fn op(call: u64, ret: Option<u64>, input: Call, output: u32) -> Operation<Call, u32> {
        Operation {
            client: 0,
            call,
            ret: ret.map(|r| (r, output)),
            input,
        }
    }

    const BUDGET: u64 = 1_000_000;

    #[test]
    fn concurrent_writes_may_be_read_in_either_order() {
        let history = [
            op(0, Some(10), Call::Write(1), 0),
            op(1, Some(11), Call::Write(2), 0),
            op(12, Some(13), Call::Read, 1),
        ];
        assert_eq!(check(&Register, &history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let history = [
            op(0, Some(1), Call::Write(1), 0),
            op(2, Some(3), Call::Write(2), 0),
            op(4, Some(5), Call::Read, 1),
        ];
        assert_eq!(check(&Register, &history, BUDGET), Verdict::Violation);
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let late = [
            op(0, None, Call::Write(7), 0),
            op(5, Some(6), Call::Read, 0),
            op(7, Some(8), Call::Read, 7),
        ];
        assert_eq!(check(&Register, &late, BUDGET), Verdict::Linearizable);
        let never = [
            op(0, None, Call::Write(7), 0),
            op(5, Some(6), Call::Read, 0),
        ];
        assert_eq!(check(&Register, &never, BUDGET), Verdict::Linearizable);
        // But once seen it cannot be unseen.
        let flicker = [
            op(0, None, Call::Write(7), 0),
            op(5, Some(6), Call::Read, 7),
            op(7, Some(8), Call::Read, 0),
        ];
        assert_eq!(check(&Register, &flicker, BUDGET), Verdict::Violation);
    }

    #[test]
    fn minimizing_keeps_only_what_the_violation_needs() {
        let mut history = Vec::new();
        for i in 0..20u32 {
            let t = u64::from(i) * 10;
            history.push(op(t, Some(t + 1), Call::Write(i + 100), 0));
            history.push(op(t + 2, Some(t + 3), Call::Read, i + 100));
        }
        // At 100 a read sees the value overwritten at 60; everything after is fine.
        history.push(op(100, Some(101), Call::Read, 105));
        history.sort_by_key(|o| o.call);
        assert_eq!(check(&Register, &history, BUDGET), Verdict::Violation);
        let (smallest, from_any) = minimize(&Register, &history, BUDGET);
        assert!(from_any, "the violation does not depend on the start");
        // What proves it: a later value read back before it (and whatever runs
        // alongside), not the twenty writes and reads that came first.
        assert!(smallest.len() <= 3, "{smallest:?}");
        assert!(smallest
            .iter()
            .any(|o| o.call == 100 && o.ret == Some((101, 105))));
        assert!(
            smallest.iter().all(|o| o.call <= 100),
            "calls after the violation are cut"
        );
        for start in Register.initial_states(&smallest) {
            let verdict = Search::new(&smallest).run(&Register, &smallest, start, BUDGET);
            assert_eq!(verdict, Verdict::Violation, "from {start}");
        }
    }

    #[test]
    fn a_report_stands_on_its_own_and_keeps_the_writes_it_needs() {
        // The last read contradicts the one before it, with no write in between.
        let history = [
            op(0, Some(1), Call::Write(1), 0),
            op(2, Some(3), Call::Read, 1),
            op(4, Some(5), Call::Write(2), 0),
            op(6, Some(7), Call::Read, 2),
            op(8, Some(9), Call::Read, 1),
        ];
        let (smallest, from_any) = minimize(&Register, &history, BUDGET);
        assert!(from_any);
        let calls: Vec<u64> = smallest.iter().map(|o| o.call).collect();
        assert_eq!(calls, [6, 8], "{smallest:?}");
        // A write that overlaps the reads could explain them: it must stay.
        let mut overlapping = history.to_vec();
        overlapping.push(op(5, Some(10), Call::Write(1), 0));
        assert_eq!(
            check(&Register, &overlapping, BUDGET),
            Verdict::Linearizable
        );
        let mut stale = overlapping.clone();
        stale.push(op(11, Some(12), Call::Read, 2));
        let (smallest, _) = minimize(&Register, &stale, BUDGET);
        assert!(smallest.iter().any(|o| o.call == 5), "{smallest:?}");
    }

    #[test]
    fn a_tiny_budget_is_inconclusive_not_a_verdict() {
        let history: Vec<_> = (0..50)
            .map(|i| op(0, Some(100), Call::Write(i), 0))
            .chain([op(101, Some(102), Call::Read, 49)])
            .collect();
        assert_eq!(check(&Register, &history, 3), Verdict::Inconclusive);
        assert_eq!(check(&Register, &history, BUDGET), Verdict::Linearizable);
    }
}
