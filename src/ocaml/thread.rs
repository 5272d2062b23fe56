//! OCaml's `Thread` module.
//!
//! | OCaml                  | here                      |
//! |------------------------|---------------------------|
//! | `Thread.create f x`    | [`create`]`(f, x)`        |
//! | `Thread.self ()`       | [`self_`]`()`             |
//! | `Thread.id t`          | [`id`]`(&t)`              |
//! | `Thread.join t`        | [`join`]`(&t)`            |
//! | `Thread.yield ()`      | [`yield_`]`()`            |
//! | `Thread.delay d`       | [`delay`]`(d)`            |
//! | `Thread.exit ()`       | [`exit`]`()`              |
//!
//! A panic escaping a thread prints `Thread N killed on uncaught exception <message>` on stderr
//! and nothing else happens: other threads go on and `join` returns normally.
//!
//! ```
//! use bobine::ocaml::thread;
//! bobine::run(|| {
//!     let t = thread::create(|n: u64| assert_eq!(n, 7), 7);
//!     assert_eq!(thread::id(&thread::self_()), 0);
//!     assert_eq!(thread::id(&t), 1);
//!     thread::join(&t);
//! });
//! ```

use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::task::{ExitTask, Face};
use crate::thread::Thread;

/// A thread handle: cheap to clone, comparable and hashable (programs key tables on threads).
#[derive(Clone)]
pub struct T {
    thread: Thread,
}

impl PartialEq for T {
    fn eq(&self, other: &Self) -> bool {
        self.thread.id() == other.thread.id()
    }
}
impl Eq for T {}
impl Hash for T {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.thread.id().hash(state)
    }
}
impl std::fmt::Debug for T {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Thread({})", id(self))
    }
}

/// `Thread.create f x`: starts `f x` as a new thread and returns at once; the creator keeps
/// running. The result of `f x` is discarded.
///
/// # Panics
///
/// `Sys_error` when no stack can be had for the thread.
pub fn create<A: Send + 'static>(f: impl FnOnce(A) + Send + 'static, x: A) -> T {
    match crate::thread::Builder::new().spawn_with_face(Face::OCaml, move || f(x)) {
        Ok(handle) => T {
            thread: handle.thread().clone(),
        },
        Err(e) => panic!("Sys_error(\"Thread.create: {e}\")"),
    }
}

/// `Thread.self ()`: the calling thread.
pub fn self_() -> T {
    T {
        thread: crate::thread::current(),
    }
}

/// `Thread.id t`: the main thread of a runtime is 0; created threads get 1, 2, 3 ... in
/// creation order, never reused.
pub fn id(t: &T) -> u64 {
    match t.thread.task() {
        Some(task) => task.id,
        None => t.thread.id().as_u64().get(),
    }
}

/// `Thread.join t`: waits for the end of `t`; returns at once if it has ended (joining twice is
/// fine). `join (self ())` blocks forever, as in OCaml.
pub fn join(t: &T) {
    match t.thread.task() {
        Some(task) => {
            task.wait_finished();
        }
        // A plain OS thread can only be "joined" by itself: that never returns.
        None => loop {
            crate::sched::park::Park::new().wait("Thread.join (self ())");
        },
    }
}

/// `Thread.yield ()`: lets the other threads run.
pub fn yield_() {
    crate::sched::yield_now()
}

/// `Thread.delay d`: sleeps `d` seconds (a negative or NaN `d` returns at once).
pub fn delay(secs: f64) {
    if secs > 0.0 {
        crate::time::sleep(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
}

/// `Thread.exit ()`: ends the current thread silently. It unwinds, so cleanups run.
pub fn exit() -> ! {
    std::panic::resume_unwind(Box::new(ExitTask))
}
