//! A namespace's merge records: each merged-away name and the node it went into, with
//! every record's final target kept up to date as records change (compressed on write),
//! so `GetMergedInto` is one O(log n) lookup instead of a walk along the chain under the
//! engine lock.
//!
//! The records themselves (`from → to` as made) are the replicated state that snapshots,
//! backups and the digest hold; the final targets are derived from them. Adding a name
//! again clears its own record only, so names merged into it end there again (the
//! model in `tests/conformance/ring_model.py`): a change re-targets the records that
//! lead to the changed name, O(those records · log n), and nothing else.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default)]
pub(crate) struct Merges {
    /// The records as made: merged-away name → the node it was merged into.
    into: BTreeMap<Box<str>, Box<str>>,
    /// The reverse of `into`: each name and the records pointing at it.
    from: BTreeMap<Box<str>, BTreeSet<Box<str>>>,
    /// Each merged-away name's final target: `into` followed to a name without a record.
    target: BTreeMap<Box<str>, Box<str>>,
}

impl Merges {
    pub(crate) fn len(&self) -> usize {
        self.into.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.into.is_empty()
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.into.contains_key(name)
    }

    /// The records, `(from, to)` in `from` order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&Box<str>, &Box<str>)> + '_ {
        self.into.iter()
    }

    /// Where `name` ended up, following later merges of its target; `None` if it has no
    /// record. O(log n).
    pub(crate) fn final_target(&self, name: &str) -> Option<&str> {
        self.target.get(name).map(|t| &**t)
    }

    /// Whether `from → to` may be recorded: `from` has no record yet, and `to` does not
    /// lead back to it (a cycle). Always so for merges as they apply (`from` is a live
    /// node); a forged snapshot might try otherwise.
    pub(crate) fn admits(&self, from: &str, to: &str) -> bool {
        // `from` has no record, so every record leading to it ends there.
        !self.contains(from) && from != to && self.final_target(to) != Some(from)
    }

    /// Records `from → to`; the caller checked [`Self::admits`].
    pub(crate) fn insert(&mut self, from: &str, to: &str) {
        debug_assert!(self.admits(from, to));
        self.into.insert(from.into(), to.into());
        self.from.entry(to.into()).or_default().insert(from.into());
        let end: Box<str> = self.final_target(to).unwrap_or(to).into();
        self.retarget(from, &end);
    }

    /// Clears `name`'s record, if any, and answers its old target: the records that led
    /// through `name` now end at it.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Box<str>> {
        let old = self.unlink(name)?;
        self.target.remove(name);
        let leading: Vec<Box<str>> = self
            .from
            .get(name)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        for from in leading {
            self.retarget(&from, name);
        }
        Some(old)
    }

    fn unlink(&mut self, name: &str) -> Option<Box<str>> {
        let to = self.into.remove(name)?;
        if let Some(set) = self.from.get_mut(&*to) {
            set.remove(name);
            if set.is_empty() {
                self.from.remove(&*to);
            }
        }
        Some(to)
    }

    /// Sets the final target of `name` (which has a record) and of every record leading
    /// to it to `end`.
    fn retarget(&mut self, name: &str, end: &str) {
        let mut stack: Vec<Box<str>> = vec![name.into()];
        while let Some(n) = stack.pop() {
            if let Some(set) = self.from.get(&*n) {
                stack.extend(set.iter().cloned());
            }
            self.target.insert(n, end.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Merges;
    use std::collections::BTreeMap;

    /// The chain walk `get_merged_into` did before (and the Python model does).
    fn walk(into: &BTreeMap<String, String>, name: &str) -> Option<String> {
        let mut target = into.get(name)?;
        for _ in 0..into.len() {
            match into.get(target) {
                Some(next) => target = next,
                None => break,
            }
        }
        Some(target.clone())
    }

    #[test]
    fn final_targets_agree_with_walking_the_chains() {
        let mut merges = Merges::default();
        let mut model = BTreeMap::<String, String>::new();
        let mut state = 7u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for step in 0..5000 {
            let (a, b) = (format!("n{}", next(30)), format!("n{}", next(30)));
            if next(3) == 0 {
                assert_eq!(merges.remove(&a).map(String::from), model.remove(&a));
            } else if merges.admits(&a, &b) {
                merges.insert(&a, &b);
                model.insert(a.clone(), b.clone());
            } else {
                let cycle = a == b || walk(&model, &b) == Some(a.clone());
                assert!(model.contains_key(&a) || cycle, "{a} {b}");
            }
            for i in 0..30 {
                let name = format!("n{i}");
                assert_eq!(
                    merges.final_target(&name).map(str::to_owned),
                    walk(&model, &name),
                    "step {step}, {name}"
                );
            }
        }
    }

    #[test]
    fn a_long_chain_answers_its_end_and_re_adding_a_link_cuts_it_there() {
        let mut merges = Merges::default();
        for i in 0..1000 {
            merges.insert(&format!("n{i}"), &format!("n{}", i + 1));
        }
        assert_eq!(merges.final_target("n0"), Some("n1000"));
        merges.remove("n500");
        assert_eq!(merges.final_target("n0"), Some("n500"));
        assert_eq!(merges.final_target("n501"), Some("n1000"));
        assert_eq!(merges.final_target("n500"), None);
    }
}
