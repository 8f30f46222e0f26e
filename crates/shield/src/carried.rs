//! State carried from one snapshot to the next: a map from a name to state that the current
//! snapshot holds, which a new snapshot takes over when the name comes again (a rate limit's
//! counts, a site's origin pools).
//!
//! The map holds weak references, so state no snapshot holds is dropped with the last
//! snapshot. Its entries are swept once the map has doubled since the last sweep, not at every
//! insert: a sweep per insert would make building 100,000 sites quadratic.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// Below this many entries the map is never swept (a sweep would cost more than it frees).
const SWEEP_FLOOR: usize = 64;

/// State by name, held weakly. Not locked: its owner wraps it in its own mutex.
#[derive(Debug)]
pub struct Carried<V> {
    entries: HashMap<String, Weak<V>>,
    swept_len: usize,
}

impl<V> Default for Carried<V> {
    fn default() -> Carried<V> {
        Carried {
            entries: HashMap::new(),
            swept_len: 0,
        }
    }
}

impl<V> Carried<V> {
    /// The state under `name`, while some snapshot still holds it.
    pub fn get(&self, name: &str) -> Option<Arc<V>> {
        self.entries.get(name).and_then(Weak::upgrade)
    }

    /// Records `state` under `name`, replacing what was there.
    pub fn insert(&mut self, name: String, state: &Arc<V>) {
        self.entries.insert(name, Arc::downgrade(state));
        if self.entries.len() > 2 * self.swept_len.max(SWEEP_FLOOR) {
            self.entries.retain(|_, weak| weak.strong_count() > 0);
            self.swept_len = self.entries.len();
        }
    }

    /// The state some snapshot still holds.
    pub fn live(&self) -> impl Iterator<Item = Arc<V>> + '_ {
        self.entries.values().filter_map(Weak::upgrade)
    }

    /// How many entries the map holds, dropped state not yet swept included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_found_while_held_and_gone_once_dropped() {
        let mut carried = Carried::default();
        let state = Arc::new(7);
        carried.insert("a".into(), &state);
        assert_eq!(carried.get("a").as_deref(), Some(&7));
        drop(state);
        assert_eq!(carried.get("a"), None);
        assert_eq!(carried.get("b"), None);
    }

    #[test]
    fn dropped_state_is_swept_once_the_map_doubles_so_it_stays_bounded() {
        let mut carried = Carried::default();
        // Nothing is held: each insert's state is dropped at once, as after a site is removed.
        for i in 0..10_000 {
            carried.insert(format!("site{i}"), &Arc::new(i));
            assert!(
                carried.len() <= 2 * SWEEP_FLOOR + 1,
                "{} at {i}",
                carried.len()
            );
        }
        // Held state survives every sweep.
        let held: Vec<Arc<usize>> = (0..1_000).map(Arc::new).collect();
        for (i, state) in held.iter().enumerate() {
            carried.insert(format!("held{i}"), state);
        }
        for i in 0..10_000 {
            carried.insert(format!("gone{i}"), &Arc::new(i));
        }
        assert!((0..1_000).all(|i| carried.get(&format!("held{i}")).is_some()));
        assert!(carried.len() <= 2 * 1_000 + 1, "{}", carried.len());
    }
}
