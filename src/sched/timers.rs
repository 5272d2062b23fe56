//! A domain's timers: the deadline heap behind every timed park.
//!
//! A deadline is an entry in its domain's binary heap holding an [`Unparker`] for one park. The
//! domain fires due entries when it has nothing to run, and every few scheduling rounds
//! otherwise, so a timer never costs a syscall on the yield path. Entries are not removed when
//! their park ends some other way: the stale [`Unparker`] does nothing when it fires. The task
//! that was woken early reports it (`Timers::went_stale`), and once stale entries are the
//! majority of a large heap the heap is rebuilt without them, so memory stays flat under
//! millions of timed waits that end early.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::park::Unparker;

struct Entry {
    deadline: Instant,
    seq: u64,
    unparker: Unparker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so the max-heap yields the earliest deadline (then the oldest entry) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

/// A domain's timers.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    seq: u64,
    stale: usize,
}

impl Timers {
    pub(crate) fn add(&mut self, deadline: Instant, unparker: Unparker) {
        self.seq += 1;
        self.heap.push(Entry {
            deadline,
            seq: self.seq,
            unparker,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.deadline)
    }

    /// Pops the next entry due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Unparker> {
        if self.heap.peek()?.deadline > now {
            return None;
        }
        let e = self.heap.pop()?;
        if !e.unparker.is_pending() {
            self.stale = self.stale.saturating_sub(1);
        }
        Some(e.unparker)
    }

    /// A timed park ended before its deadline; its entry is now dead weight. Returns the entries
    /// removed by a rebuild, for the caller to drop once it no longer borrows the timers.
    pub(crate) fn went_stale(&mut self) -> Vec<Unparker> {
        self.stale += 1;
        let mut dropped = Vec::new();
        if self.stale > 64 && self.stale * 2 > self.heap.len() {
            let (live, dead): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.heap)
                .into_vec()
                .into_iter()
                .partition(|e| e.unparker.is_pending());
            self.heap = BinaryHeap::from(live);
            dropped = dead.into_iter().map(|e| e.unparker).collect();
            self.stale = 0;
        }
        dropped
    }
}
