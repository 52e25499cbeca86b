//! One node's expiring items summed by expiry, so that a read at a later timestamp
//! (`GetLoad`, `GetUsed`, `TopLoaded` up to a day ahead) learns what dies by then in a
//! bounded number of steps, whatever the number of items expiring in that window.
//!
//! The sums are kept at [`LEVELS`] granularities: level `l` sums the items whose expiry
//! shares its value shifted right by `8·l` bits. What expires at or before `t` is the
//! items at exactly `t` plus, at each level, the buckets before `t`'s that share its
//! parent bucket: at most 255 per level, so a prefix sum reads at most 8 · 255 + 1
//! entries. A change of one item costs 8 map updates.

use std::collections::BTreeMap;

const LEVELS: usize = 8;
const DIGIT_BITS: u32 = 8;

/// Items and their summed size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    pub(crate) size: i128,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ExpirySums {
    levels: [BTreeMap<u64, Tally>; LEVELS],
}

/// Expiry order as unsigned order (timestamps may be negative in a forged log).
fn key(expiry: i64) -> u64 {
    (expiry as u64) ^ (1 << 63)
}

impl ExpirySums {
    /// Counts an item of `size` that dies at `expiry`.
    pub(crate) fn add(&mut self, expiry: i64, size: i64) {
        let k = key(expiry);
        for (l, level) in self.levels.iter_mut().enumerate() {
            let tally = level.entry(k >> (DIGIT_BITS * l as u32)).or_default();
            tally.count += 1;
            tally.size += i128::from(size);
        }
    }

    /// Stops counting an item [`Self::add`] counted.
    pub(crate) fn remove(&mut self, expiry: i64, size: i64) {
        let k = key(expiry);
        for (l, level) in self.levels.iter_mut().enumerate() {
            let bucket = k >> (DIGIT_BITS * l as u32);
            let tally = level.get_mut(&bucket).expect("an item counted before");
            tally.count -= 1;
            tally.size -= i128::from(size);
            if tally.count == 0 {
                level.remove(&bucket);
            }
        }
    }

    /// The items that die at or before `t`: O(8 · 255) map entries at most.
    pub(crate) fn dead_by(&self, t: i64) -> Tally {
        let k = key(t);
        let mut sum = self.levels[0].get(&k).copied().unwrap_or_default();
        for (l, level) in self.levels.iter().enumerate() {
            let bucket = k >> (DIGIT_BITS * l as u32);
            let first_sibling = bucket & !((1 << DIGIT_BITS) - 1);
            for tally in level.range(first_sibling..bucket).map(|(_, t)| t) {
                sum.count += tally.count;
                sum.size += tally.size;
            }
        }
        sum
    }

    /// The items that die after `after` and at or before `until`.
    pub(crate) fn dying_between(&self, after: i64, until: i64) -> Tally {
        if until <= after || self.levels[0].is_empty() {
            return Tally::default();
        }
        let (by_until, by_after) = (self.dead_by(until), self.dead_by(after));
        Tally {
            count: by_until.count - by_after.count,
            size: by_until.size - by_after.size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ExpirySums, Tally};

    #[test]
    fn sums_equal_a_scan_of_the_items() {
        let mut state = 3u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut sums = ExpirySums::default();
        let mut items: Vec<(i64, i64)> = Vec::new();
        for step in 0..4000 {
            // Expiries clustered (many equal) and spread (across digit boundaries).
            let expiry = match next(3) {
                0 => 1_000 + next(4) as i64,
                1 => next(1 << 30) as i64,
                _ => (next(1 << 20) as i64) << 20,
            };
            if next(4) == 0 && !items.is_empty() {
                let (e, s) = items.swap_remove(next(items.len() as u64) as usize);
                sums.remove(e, s);
            } else {
                let size = next(50) as i64;
                sums.add(expiry, size);
                items.push((expiry, size));
            }
            let probes = [
                expiry - 1,
                expiry,
                expiry + 1,
                0,
                i64::MAX,
                next(1 << 31) as i64,
            ];
            for t in probes {
                let want =
                    items
                        .iter()
                        .filter(|&&(e, _)| e <= t)
                        .fold(Tally::default(), |a, &(_, s)| Tally {
                            count: a.count + 1,
                            size: a.size + i128::from(s),
                        });
                assert_eq!(sums.dead_by(t), want, "step {step}, t {t}");
            }
        }
    }
}
