//! Orphans (rule 7): a collector of background children, owned by the first task that uses
//! it, with [`care`] to hand back the ones that have ended so that their parent awaits them.
//!
//! Each orphan's node knows its collector's [`Ended`] list and pushes its id there when it
//! ends (from its own domain); `care` pops ids and finds the promise by id, so finding a
//! finished orphan costs the same with ten orphans or ten thousand.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::promise::{Promise, Spawn};
use super::tree::{Node, current};
use crate::util::SpinLock;

/// The ids of a collector's orphans that have ended and were not handed back yet.
pub(crate) struct Ended(SpinLock<Vec<u64>>);

impl Ended {
    fn new() -> Ended {
        Ended(SpinLock::new(Vec::new()))
    }

    pub(crate) fn push(&self, id: u64) {
        self.0.lock().push(id);
    }

    fn pop(&self) -> Option<u64> {
        self.0.lock().pop()
    }
}

/// A collector of orphans: children started in the background, to be awaited once they end
/// (Miou's `orphans`). It belongs to the first task that uses it.
///
/// ```
/// use bobine::miou;
/// miou::run_with(0, || {
///     let o = miou::orphans();
///     for i in 0..3 {
///         o.call_cc(move || i);
///     }
///     let mut sum = 0;
///     // Rule 1: every orphan is awaited before the owner returns.
///     while let Some(ready) = miou::care(&o) {
///         match ready {
///             Some(p) => sum += miou::await_exn(p),
///             None => miou::yield_(),
///         }
///     }
///     assert_eq!(sum, 3);
/// });
/// ```
pub struct Orphans<T> {
    owner: AtomicU64,
    live: SpinLock<HashMap<u64, Promise<T>>>,
    ended: Arc<Ended>,
}

/// A new, empty collector of orphans (Miou's `orphans ()`).
pub fn orphans<T>() -> Orphans<T> {
    Orphans {
        owner: AtomicU64::new(0),
        live: SpinLock::new(HashMap::new()),
        ended: Arc::new(Ended::new()),
    }
}

impl<T> std::fmt::Debug for Orphans<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orphans")
            .field("len", &self.live.lock().len())
            .finish()
    }
}

impl<T: 'static> Orphans<T> {
    /// The running task, which must own this collector (or becomes its owner if it has none).
    #[track_caller]
    fn owner(&self, what: &str) -> Arc<Node> {
        let me = current(what);
        match self
            .owner
            .compare_exchange(0, me.id, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => me,
            Err(id) if id == me.id => me,
            Err(_) => panic!("Invalid_argument(\"The given orphans is owned by another promise\")"),
        }
    }

    /// Starts `f` as an orphan on the current domain (Miou's `call_cc ~orphans`).
    ///
    /// # Panics
    ///
    /// If another task owns this collector.
    #[track_caller]
    pub fn call_cc(&self, f: impl FnOnce() -> T + 'static) {
        Spawn::new().orphans(self).call_cc(f)
    }

    /// Starts `f` as an orphan on another domain (Miou's `call ~orphans`).
    ///
    /// # Panics
    ///
    /// If another task owns this collector, or with
    /// [`Error::NoDomainAvailable`](super::Error::NoDomainAvailable).
    #[track_caller]
    pub fn call(&self, f: impl FnOnce() -> T + Send + 'static)
    where
        T: Send,
    {
        Spawn::new().orphans(self).call(f)
    }

    /// The number of orphans not handed back by [`care`] yet, ended or not.
    pub fn len(&self) -> usize {
        self.live.lock().len()
    }

    /// Whether no orphan is left to hand back.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the caller may add an orphan; returns the caller's node and the list
    /// the orphan reports its end to.
    #[track_caller]
    pub(crate) fn prepare(&self, what: &str) -> (Arc<Node>, Arc<Ended>) {
        (self.owner(what), self.ended.clone())
    }

    pub(crate) fn keep(&self, p: Promise<T>) {
        self.live.lock().insert(p.id(), p);
    }
}

/// Hands back an orphan of `o` that has ended, for the caller to await (Miou's `care`):
/// `None` when `o` has no orphan left, `Some(None)` when none has ended yet, `Some(Some(p))`
/// for an ended one.
///
/// # Panics
///
/// If another task owns `o`.
#[track_caller]
pub fn care<T: 'static>(o: &Orphans<T>) -> Option<Option<Promise<T>>> {
    o.owner("care");
    loop {
        let mut live = o.live.lock();
        if live.is_empty() {
            return None;
        }
        // Every id was pushed by an orphan of this collector, once.
        let Some(id) = o.ended.pop() else {
            return Some(None);
        };
        if let Some(p) = live.remove(&id) {
            return Some(Some(p));
        }
    }
}
