//! What a single leaf of a flattened event is: its base operation ([`BaseOp`]), the flag a
//! `with_nack` group shares or a signal leaf raises ([`OneShot`]), a signal leaf's subscription
//! ([`SignalWatch`]), and whether a readiness leaf is ready now.
//!
//! It does not choose among leaves or take channel locks: the sync algorithm (`sync.rs`) decides
//! when a leaf is tried and who commits it, following the protocol in the module doc (`mod.rs`).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::channel::ChanInner;
use super::commit::Slot;
use super::source::SourceRef;
use crate::sched::park::Unparker;
use crate::sched::reactor::Dir;
use crate::sched::signals;
use crate::sched::task::Task;
use crate::util::SpinLock;

/// A base operation, type-erased.
///
/// The tag is a whole word, so that every variant's fields are word-aligned: moving a leaf
/// then copies whole words (with a one-byte tag, the small fields of `Ready` and `Signal` sit
/// at odd offsets and a move mixes narrow stores and wide loads, which the CPU cannot forward:
/// that stalled flattening).
#[repr(u64)]
pub(crate) enum BaseOp {
    /// `value` holds the value to send until a receiver takes it.
    Send {
        chan: Arc<ChanInner>,
        value: Slot,
    },
    /// `value` gets the value received.
    Recv {
        chan: Arc<ChanInner>,
        value: Slot,
    },
    /// A receive from a primitive that is not a CML channel (`source.rs`); `value` gets its
    /// result.
    Source {
        src: SourceRef,
        value: Slot,
    },
    Always(Slot),
    Never,
    At(Instant),
    After(Duration),
    Join(Arc<Task>),
    Nack(Arc<OneShot>),
    /// Readiness of a descriptor in one direction.
    Ready {
        fd: RawFd,
        dir: Dir,
    },
    /// A delivery of the signal `sig` during the sync. `watch` is made when a blocking sync's
    /// flattening reaches the leaf and dropped when the sync ends; a `poll` makes none (no
    /// delivery can arrive during a single attempt), so there the leaf is never ready.
    Signal {
        sig: i32,
        watch: Option<SignalWatch>,
    },
}

/// A flag raised once, and the syncs waiting for it, which are woken and commit their leaf
/// themselves. It serves two leaves: the nack of a `with_nack` group (fired when the sync
/// commits outside the group or is abandoned), and a signal leaf (fired by the signal
/// dispatcher thread at the first delivery after the leaf's watch started).
pub(crate) struct OneShot {
    fired: AtomicBool,
    waiters: SpinLock<Vec<Unparker>>,
}

impl OneShot {
    /// A flag not fired yet, with no waiters.
    pub(super) fn new() -> Self {
        OneShot {
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

/// The subscription of a signal leaf in a blocking sync: a watch of the kernel's signal
/// facility whose callback fires `fired`. Dropping it ends the watch (and, if it was the
/// signal's last, gives the signal its previous disposition back).
pub(crate) struct SignalWatch {
    pub(super) fired: Arc<OneShot>,
    _watch: signals::Watch,
}

impl SignalWatch {
    /// Starts watching `sig`: from now on a delivery fires the flag.
    pub(super) fn new(sig: i32) -> std::io::Result<SignalWatch> {
        let fired = Arc::new(OneShot::new());
        let f = fired.clone();
        let watch = signals::watch(sig, Arc::new(move |_| f.fire()))?;
        Ok(SignalWatch {
            fired,
            _watch: watch,
        })
    }
}

/// Whether a readiness leaf is ready now.
pub(super) fn fd_ready(fd: RawFd, dir: Dir) -> bool {
    crate::sched::reactor::poll::ready_now(fd, dir).unwrap_or(true)
}
