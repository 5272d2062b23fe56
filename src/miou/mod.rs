//! The Miou face: structured concurrency over domains, after Miou (Romain Calascibetta's
//! scheduler for OCaml 5, `lib/miou.mli`), whose interface is built around a few numbered
//! rules with one named error each. This module owns the task tree (who is whose child, who
//! owns which resource), the rules' checks, promises and orphans; it only goes down into the
//! kernel (spawning bound to a domain, cancellation as a stop, joins) and never touches a
//! task's park word or queues itself.
//!
//! Miou 0.7 renamed `call_cc` to `async`; `async` is a Rust keyword, so bobine keeps the
//! older name, [`call_cc`].
//!
//! ## The rules
//!
//! 1. **Every child is awaited or cancelled by its parent.** A task that returns normally while
//!    a child is still alive (not awaited, not cancelled; orphans included, finished or not)
//!    aborts the whole run: [`run`] panics with [`Error::StillHasChildren`] as payload. A task
//!    that ends by panicking is not checked: its children are cancelled and its parent sees
//!    `Err(Error::Panic(..))`.
//! 2. **Only the direct parent may await or cancel a child**; anyone else panics with
//!    [`Error::NotAChild`], also with a promise smuggled through shared state.
//! 3. [`call_cc`] queues the child on the current domain and does not switch to it: the caller
//!    keeps running until it blocks or yields.
//! 4. [`call`] runs the child on another domain, chosen at random among the worker domains
//!    other than the caller's; domain 0 (where [`run`] started) never receives `call` or
//!    [`parallel`] work. With no such domain, both panic with [`Error::NoDomainAvailable`].
//!    `parallel` spreads its tasks round-robin and returns results in input order.
//! 5. [`cancel`] cancels a child and its whole subtree: each task unwinds from whatever it is
//!    blocked in (or from its next blocking call or yield), so its destructors and finalisers
//!    run. `cancel` returns once the subtree has ended; other tasks run meanwhile. Afterwards
//!    awaiting the child gives `Err(Error::Cancelled)`, even if it had finished. Cancelling
//!    twice is harmless; a child that never started never runs.
//! 6. [`await_first`] returns the first child to end and cancels the others; [`await_one`]
//!    returns the first and hands the others back, still running. Among children that have
//!    already ended, one is picked at random, successes first. An empty list panics with
//!    `Invalid_argument("Miou.await_first")` (resp. `"Miou.await_one"`).
//! 7. [`Orphans`] collect background children: the collector belongs to the first task that
//!    uses it (any other task panics with `Invalid_argument("The given orphans is owned by
//!    another promise")`); [`care`] hands back finished ones to await. Orphans are children:
//!    rule 1 applies.
//! 8. **Resources** ([`ownership`]): a [`Resource`] is a finaliser owned by one task. A task
//!    that returns normally while it owns one aborts the run with [`Error::ResourceLeaked`]; a
//!    task that panics or is cancelled runs the finalisers of what it owns. Ownership moves to
//!    a child with [`Spawn::give`] and back to the parent with [`ownership::transfer`].
//! 9. [`mutex`] and [`condition`] suspend the task, not the domain, and hand off first come,
//!    first served; a cancelled waiter leaves the queue, and a signal delivered to a waiter
//!    cancelled at the same moment passes to the next one.
//! 10. Errors print as Miou prints them: `Miou.Cancelled`, `Miou.Still_has_children`, ...
//! 11. **Signals**: [`sys_signal`] installs a handler that runs later as ordinary code on
//!     domain 0, never in signal context.
//!
//! ## Differences from Miou
//!
//! - Awaiting consumes the promise; a rule broken by dropping a promise unawaited is still
//!   caught when its parent returns (rule 1).
//! - Tasks switch only where they block, yield or end; Miou also switches at its other calls.
//! - A task that computes without blocking is not interrupted by `cancel` until its next
//!   blocking call or yield (tasks are cooperative).
//! - Children's panics are values for their parent (as in Miou): they are not printed.
//!
//! ## Example
//!
//! ```
//! use bobine::miou;
//! let sum = miou::run_with(1, || {
//!     let a = miou::call_cc(|| 1);
//!     let b = miou::call(|| 2);
//!     miou::await_exn(a) + miou::await_exn(b)
//! });
//! assert_eq!(sum, 3);
//! ```

mod error;
mod orphans;
pub mod ownership;
mod promise;
mod signals;
mod tree;
pub mod unix;

pub use crate::ocaml::{condition, mutex};
pub use error::Error;
pub use orphans::{Orphans, care, orphans};
pub use ownership::Resource;
pub use promise::{
    Promise, Spawn, await_, await_all, await_exn, await_first, await_one, call, call_cc, cancel,
    parallel,
};
pub use signals::sys_signal;

/// Runs `f` as the main task of a Miou run with the default number of domains (one per
/// available core, or `BOBINE_DOMAINS`): domain 0, where `f` runs, plus the rest as workers
/// for [`call`] and [`parallel`].
///
/// # Panics
///
/// A panic of `f` propagates. A broken rule that aborts the run (rule 1, rule 8) panics out of
/// `run` with the [`Error`] as payload, once every task has ended.
pub fn run<T>(f: impl FnOnce() -> T) -> T {
    tree::run(crate::Builder::new(), f)
}

/// Runs `f` as the main task of a Miou run with `workers` worker domains besides domain 0
/// (Miou's `~domains`). `run_with(0, f)` runs everything on one domain; [`call`] then panics
/// with [`Error::NoDomainAvailable`].
///
/// ```
/// let on = bobine::miou::run_with(2, || {
///     bobine::miou::await_exn(bobine::miou::call(bobine::miou::domain::self_))
/// });
/// assert!(on == 1 || on == 2);
/// ```
pub fn run_with<T>(workers: usize, f: impl FnOnce() -> T) -> T {
    tree::run(crate::Builder::new().domains(workers + 1), f)
}

/// Lets the other ready tasks of this domain run before the caller goes on (Miou's `yield`).
/// A cancelled task unwinds here.
#[track_caller]
pub fn yield_() {
    crate::thread::yield_now()
}

/// Domains (Miou's `Domain`): where the caller runs, and how many workers there are.
pub mod domain {
    /// The index of the domain the caller runs on: 0 is where [`run`](super::run) started,
    /// workers are `1..=available()`.
    ///
    /// # Panics
    ///
    /// On a thread that is not a domain of a runtime.
    pub fn self_() -> usize {
        crate::sched::domain_index()
            .map(|(i, _)| i)
            .expect("bobine::miou::domain::self_ must be called from a task of miou::run")
    }

    /// The number of worker domains (those that take [`call`](super::call) and
    /// [`parallel`](super::parallel) work): every domain but domain 0.
    ///
    /// # Panics
    ///
    /// On a thread that is not a domain of a runtime.
    pub fn available() -> usize {
        crate::sched::domain_index()
            .map(|(_, n)| n - 1)
            .expect("bobine::miou::domain::available must be called from a task of miou::run")
    }
}
