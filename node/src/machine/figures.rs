//! Each ring's size and churn as of the last apply, published beside the engine (as
//! the digest is) so a metrics scrape reads them without the engine lock: a scrape is
//! O(rings), never O(keys), and never waits behind a batch apply.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use clockwise_engine::{Engine, Op, RingFigures};

/// Which facade a namespace belongs to (a HashRing and a ChatRouter may share a name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RingKind {
    HashRing,
    ChatRouter,
}

impl RingKind {
    /// The `kind` label of the ring metrics.
    pub fn label(self) -> &'static str {
        match self {
            RingKind::HashRing => "hashring",
            RingKind::ChatRouter => "chatrouter",
        }
    }

    pub fn of(op: &Op) -> RingKind {
        match op {
            Op::HashRing(_) => RingKind::HashRing,
            Op::ChatRouter(_) => RingKind::ChatRouter,
        }
    }
}

/// Figures by ring name, one map per kind.
type ByKind = BTreeMap<RingKind, BTreeMap<String, RingFigures>>;

/// Every ring's figures by kind and name, as of the last apply or restore.
#[derive(Debug, Default)]
pub struct PublishedRings(Mutex<ByKind>);

impl PublishedRings {
    /// A copy of every ring's figures, in (kind, name) order.
    pub fn get(&self) -> Vec<(RingKind, String, RingFigures)> {
        let rings = self.lock();
        let mut all = Vec::with_capacity(rings.values().map(BTreeMap::len).sum());
        for (kind, named) in rings.iter() {
            all.extend(named.iter().map(|(name, f)| (*kind, name.clone(), *f)));
        }
        all
    }

    /// Publishes the figures of the ring a command just changed.
    pub(super) fn update(&self, engine: &Engine, kind: RingKind, ring: &str) {
        let figures = match kind {
            RingKind::HashRing => engine.hash_ring(ring).map(|r| r.figures()),
            RingKind::ChatRouter => engine.chat_router(ring).map(|r| r.figures()),
        };
        let Some(figures) = figures else {
            return;
        };
        let mut rings = self.lock();
        let named = rings.entry(kind).or_default();
        // The common case (a ring seen before) allocates nothing.
        match named.get_mut(ring) {
            Some(published) => *published = figures,
            None => {
                named.insert(ring.to_owned(), figures);
            }
        }
    }

    /// Publishes every ring of `engine` (after a restore), forgetting the others.
    pub(super) fn replace_all(&self, engine: &Engine) {
        let named = |figures: &mut dyn Iterator<Item = (&str, RingFigures)>| {
            figures.map(|(name, f)| (name.to_owned(), f)).collect()
        };
        let rings = BTreeMap::from([
            (RingKind::HashRing, named(&mut engine.hash_ring_figures())),
            (
                RingKind::ChatRouter,
                named(&mut engine.chat_router_figures()),
            ),
        ]);
        *self.lock() = rings;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByKind> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
