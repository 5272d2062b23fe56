//! Resources (Miou's `Ownership`, rule 8): a finaliser owned by exactly one task at a time.
//!
//! | call                          | who may make it   | effect                                                |
//! |-------------------------------|-------------------|-------------------------------------------------------|
//! | [`own`]`(finally)`            | any Miou task     | a new resource, owned by the caller                   |
//! | [`check`]`(&r)`               | anyone            | panics with [`Error::NotOwner`] unless the caller owns `r` |
//! | [`disown`]`(&r)`              | the owner         | nobody owns `r` any more; its finaliser never runs     |
//! | [`transfer`]`(&r)`            | the owner         | the owner's parent owns `r`                            |
//! | [`Spawn::give`](super::Spawn::give)`(&r)` | the owner | the new child owns `r` from its spawn on          |
//!
//! A task that returns normally while it owns a resource aborts the run with
//! [`Error::ResourceLeaked`] (after running the finaliser, so nothing stays open); a task that
//! panics or is cancelled runs the finalisers of everything it owns, newest first, as it ends.
//! A finaliser runs at most once, as the task that owns the resource at that moment.
//!
//! ```
//! use bobine::miou::{self, ownership};
//! miou::run_with(0, || {
//!     let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
//!     let flag = closed.clone();
//!     let p = miou::call_cc(move || {
//!         let _r = ownership::own(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
//!         panic!("the finaliser runs as the task unwinds");
//!     });
//!     assert!(miou::await_(p).is_err());
//!     assert!(closed.load(std::sync::atomic::Ordering::SeqCst));
//! });
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Error;
use super::tree::{Node, current};
use crate::util::SpinLock;

/// A finaliser owned by one task (Miou's `Ownership.t`). Cloning gives another handle to the
/// same resource (a way to name it in `check`, `disown`, `transfer` and `give`); dropping a
/// handle does nothing to the resource.
#[derive(Clone)]
pub struct Resource {
    inner: Arc<ResourceInner>,
}

/// The shared part of a resource.
pub(crate) struct ResourceInner {
    /// The id of the owning node; 0 once disowned or finalised.
    owner: AtomicU64,
    finally: SpinLock<Option<Box<dyn FnOnce() + Send>>>,
}

impl ResourceInner {
    /// Runs the finaliser (once): a panic in it is reported, not propagated.
    pub(crate) fn finalise(&self) {
        self.owner.store(0, Ordering::Release);
        let f = self.finally.lock().take();
        if let Some(f) = f
            && let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        {
            eprintln!(
                "bobine::miou: a resource's finaliser panicked: {}",
                crate::sched::runtime::payload_text(&*p)
            );
        }
    }
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("owner", &self.inner.owner.load(Ordering::Relaxed))
            .finish()
    }
}

impl Resource {
    /// Whether the running Miou task owns this resource (no panic either way).
    pub fn is_owned(&self) -> bool {
        super::tree::try_with_current_node(|me| self.inner.owner.load(Ordering::Acquire) == me.id)
            .unwrap_or(false)
    }

    /// Moves this resource from `from` (which must own it) to `to`.
    #[track_caller]
    pub(crate) fn move_between(&self, from: &Node, to: &Node) {
        let Some(r) = from.unown(&self.inner) else {
            Error::NotOwner.raise()
        };
        r.owner.store(to.id, Ordering::Release);
        to.own(r);
    }
}

/// Makes a resource owned by the running task, with `finally` as its finaliser (run if the
/// task panics or is cancelled while it owns it).
///
/// # Panics
///
/// Outside a Miou task.
pub fn own(finally: impl FnOnce() + Send + 'static) -> Resource {
    let me = current("ownership::own");
    let inner = Arc::new(ResourceInner {
        owner: AtomicU64::new(me.id),
        finally: SpinLock::new(Some(Box::new(finally))),
    });
    me.own(inner.clone());
    Resource { inner }
}

/// Releases `r`: nobody answers for it any more, and its finaliser will not run.
///
/// # Panics
///
/// With [`Error::NotOwner`] unless the running task owns `r`.
#[track_caller]
pub fn disown(r: &Resource) {
    let me = current("ownership::disown");
    let Some(inner) = me.unown(&r.inner) else {
        Error::NotOwner.raise()
    };
    inner.owner.store(0, Ordering::Release);
    drop(inner.finally.lock().take());
}

/// Hands `r` to the running task's parent, which then answers for it.
///
/// # Panics
///
/// With [`Error::NotOwner`] unless the running task owns `r`; with
/// `Invalid_argument("Miou.Ownership.transfer")` in the main task, which has no parent.
#[track_caller]
pub fn transfer(r: &Resource) {
    let me = current("ownership::transfer");
    check_owner(&me, r);
    let Some(parent) = me.parent() else {
        panic!("Invalid_argument(\"Miou.Ownership.transfer\"): the main task has no parent");
    };
    r.move_between(&me, parent);
}

/// Panics with [`Error::NotOwner`] unless the running task owns `r`.
#[track_caller]
pub fn check(r: &Resource) {
    let me = current("ownership::check");
    check_owner(&me, r);
}

#[track_caller]
fn check_owner(me: &Node, r: &Resource) {
    if r.inner.owner.load(Ordering::Acquire) != me.id {
        Error::NotOwner.raise()
    }
}
