//! What a single leaf of a flattened event is: its base operation ([`BaseOp`]), the nack cell a
//! `with_nack` group shares ([`NackCell`]), and whether a readiness leaf is ready now.
//!
//! It does not choose among leaves or take channel locks: the sync algorithm (`sync.rs`) decides
//! when a leaf is tried and who commits it, following the protocol in the module doc (`mod.rs`).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::channel::ChanInner;
use super::commit::Payload;
use crate::sched::park::Unparker;
use crate::sched::reactor::Dir;
use crate::sched::task::Task;
use crate::util::SpinLock;

/// A base operation, type-erased.
pub(crate) enum BaseOp {
    Send {
        chan: Arc<ChanInner>,
        value: Payload,
    },
    Recv {
        chan: Arc<ChanInner>,
    },
    Always(Payload),
    Never,
    At(Instant),
    After(Duration),
    Join(Arc<Task>),
    Nack(Arc<NackCell>),
    /// Readiness of a descriptor in one direction.
    Ready {
        fd: RawFd,
        dir: Dir,
    },
}

/// The nack of a `with_nack` group: fired once, when the sync commits outside the group or is
/// abandoned. Waiting syncs are woken and commit their nack leaf themselves.
pub(crate) struct NackCell {
    fired: AtomicBool,
    waiters: SpinLock<Vec<Unparker>>,
}

impl NackCell {
    /// A cell not fired yet, with no waiters.
    pub(super) fn new() -> Self {
        NackCell {
            fired: AtomicBool::new(false),
            waiters: SpinLock::new(Vec::new()),
        }
    }

    pub(super) fn fire(&self) {
        if !self.fired.swap(true, Ordering::AcqRel) {
            let waiters = std::mem::take(&mut *self.waiters.lock());
            for w in waiters {
                w.unpark();
            }
        }
    }

    pub(super) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Adds a waiter; false if already fired.
    pub(super) fn add_waiter(&self, u: Unparker) -> bool {
        let mut waiters = self.waiters.lock();
        if self.is_fired() {
            return false;
        }
        waiters.retain(|w| w.is_pending() && !w.same_waiter(&u));
        waiters.push(u);
        true
    }
}

/// Whether a readiness leaf is ready now.
pub(super) fn fd_ready(fd: RawFd, dir: Dir) -> bool {
    crate::sched::reactor::poll::ready_now(fd, dir).unwrap_or(true)
}
