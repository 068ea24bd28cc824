//! What one client can hold at once, and for how long: places among the operations in
//! flight (`MAX_IN_FLIGHT`, over HTTP, WebSocket and downloads alike), WebSocket connections
//! per client address and per user (`WS_MAX_CONNECTIONS_PER_CLIENT`), and downloads per user
//! (one). Each holding is a value that gives its place back when dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The cap on operations in flight; `None` when switched off (`MAX_IN_FLIGHT=0`).
#[derive(Debug, Clone)]
pub struct InFlight(Option<Arc<Semaphore>>);

/// A place among the operations in flight, held until dropped.
#[derive(Debug)]
pub struct Place {
    _permit: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self((max > 0).then(|| Arc::new(Semaphore::new(max))))
    }

    /// A place, or `None` when every one is taken: the caller sheds the work at once (a quick
    /// "retry" serves clients better under overload than a queue whose every request times
    /// out).
    pub fn enter(&self) -> Option<Place> {
        match &self.0 {
            None => Some(Place { _permit: None }),
            Some(semaphore) => Arc::clone(semaphore)
                .try_acquire_owned()
                .ok()
                .map(|permit| Place {
                    _permit: Some(permit),
                }),
        }
    }
}

/// Holdings counted by key (a client address, a user), at most `max` per key. The table
/// holds only keys with holdings, so it is as large as what is held, not as what was seen.
#[derive(Debug, Clone)]
pub struct Holdings {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    max: usize,
}

/// One holding of a key; given back when dropped.
#[derive(Debug)]
pub struct Held {
    key: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Holdings {
    pub fn new(max: usize) -> Self {
        Self {
            counts: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    /// The most one key may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A holding of `key`, or `None` when it holds `max` already.
    pub fn take(&self, key: &str) -> Option<Held> {
        // Counts change by one under the lock: a poisoned lock still holds true counts.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.to_owned()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Held {
            key: key.to_owned(),
            counts: Arc::clone(&self.counts),
        })
    }

    /// How many holdings `key` has.
    #[cfg(test)]
    fn held(&self, key: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(key).copied().unwrap_or(0)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_and_gets_its_places_back() {
        let holdings = Holdings::new(2);
        let a = holdings.take("a").expect("first");
        let b = holdings.take("a").expect("second");
        assert!(holdings.take("a").is_none(), "a third is refused");
        assert!(holdings.take("b").is_some(), "other keys are not affected");
        drop(a);
        assert_eq!(holdings.held("a"), 1);
        let _c = holdings.take("a").expect("a place came back");
        drop(b);
        assert_eq!(holdings.counts.lock().map(|c| c.len()).unwrap_or(0), 1);
    }

    #[test]
    fn places_in_flight_are_bounded_unless_switched_off() {
        let in_flight = InFlight::new(1);
        let place = in_flight.enter().expect("one place");
        assert!(in_flight.enter().is_none());
        drop(place);
        assert!(in_flight.enter().is_some());
        let unbounded = InFlight::new(0);
        let _all: Vec<Place> = (0..1000).filter_map(|_| unbounded.enter()).collect();
        assert!(unbounded.enter().is_some());
    }
}
