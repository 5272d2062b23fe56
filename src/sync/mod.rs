//! Synchronisation: std's `sync` API (`Mutex`, `Condvar`, `RwLock`, `Barrier`, `mpsc`) plus a
//! counting `Semaphore`, whose blocking calls park the task instead of the OS thread.
//!
//! Every primitive here works the same for tasks on any domain and for plain OS threads, in any
//! mix: they all wait through the kernel's one FIFO wait queue (`sched::waitqueue`, each wait
//! described by a `WaitIn` with its hooks) on top of `sched::park`. The signatures are std's,
//! so a program written for `std::sync` compiles and behaves the same after changing only its
//! `use` lines. A task stopped while it waits (its runtime is ending) unwinds from the wait;
//! whatever was handed to it meanwhile (a lock, a permit, a notification) goes to the next
//! waiter, and so does a wake-up it was given to come and compete for a lock.
//!
//! The locks (`Mutex`, `RwLock`, `Semaphore`, and the OCaml face's mutex) are eventually fair:
//! a release leaves the lock free for a running task or thread and wakes the oldest waiter to
//! compete for it, so that no lock sits idle while a parked waiter's domain wakes up (a convoy
//! across domains); a waiter that has waited more than 1 ms switches the lock to handing it to
//! waiters in arrival order. The rule, its bound and the protocol are in `raw.rs`.
//!
//! This module owns the primitives' state (one file each: `raw` and `mutex`, `condvar`,
//! `rwlock`, `semaphore`, `barrier`, `mpsc`, and `poison`); it must not touch the scheduler
//! beyond the wait queue and `Park`/`Unparker`.
//!
//! ```
//! use std::sync::Arc;
//! use bobine::sync::{Condvar, Mutex};
//!
//! bobine::run(|| {
//!     let latch = Arc::new((Mutex::new(0u32), Condvar::new()));
//!     for _ in 0..4 {
//!         let latch = latch.clone();
//!         bobine::thread::spawn(move || {
//!             *latch.0.lock().unwrap() += 1;
//!             latch.1.notify_all();
//!         });
//!     }
//!     let (count, cvar) = &*latch;
//!     let n = cvar.wait_while(count.lock().unwrap(), |n| *n < 4).unwrap();
//!     assert_eq!(*n, 4);
//! });
//! ```

mod barrier;
mod condvar;
pub mod mpsc;
mod mutex;
mod poison;
pub(crate) mod raw;
mod rwlock;
mod semaphore;

#[cfg(test)]
mod tests;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};
