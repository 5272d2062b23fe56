//! bobine: blocking-style concurrency at green-thread cost, with no `async` colouring.
//!
//! Each task runs on its own guarded stack; blocking calls park the task and let its domain
//! (one OS thread, one scheduler) run others.
//!
//! ```
//! use bobine::thread;
//!
//! let total = bobine::run(|| {
//!     let handles: Vec<_> = (0..10u64).map(|i| thread::spawn(move || {
//!         thread::sleep(std::time::Duration::from_millis(10));
//!         i * i
//!     })).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(total, 285);
//! ```
//!
//! Faces:
//!
//! - std-like: [`run`], [`Builder`], [`main`](macro@main) and [`test`](macro@test), and
//!   drop-ins for std's modules with std's signatures: [`thread`], [`sync`], [`time`], [`net`],
//!   [`process`], [`fs`]; [`io`] waits on any descriptor or runs a blocking call on the pool;
//! - async interop: [`block_on`] drives a future from a task (parking it), and a
//!   [`thread::JoinHandle`] is a future that async code can await;
//! - CML events ([`event`]), Miou's structured concurrency ([`miou`]) and OCaml threads
//!   ([`ocaml`]);
//! - diagnostics ([`diag`]): the task dump, stall and deadlock reports.
//!
//! See `README.md` for the guarantees and the deliberate differences from std.

#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

#[cfg(not(bobine_supported))]
compile_error!(
    "bobine supports Linux on x86_64 and aarch64 only: its context switch, guard pages and \
     epoll reactor are written for those targets"
);

pub mod io;
mod sched;
mod stack;
mod switch;

mod util;

#[cfg(test)]
mod tests;

#[cfg(all(test, bobine_loom))]
mod loom_checks;

pub mod diag;
pub mod event;
pub mod fs;
mod interop;
pub mod miou;
pub mod net;
pub mod ocaml;
pub mod process;
pub mod sync;
pub mod thread;
pub mod time;

pub use interop::block_on;
pub use sched::park::{Park, Unparker, Wake};
pub use sched::task::{TaskCancelled, TaskDropped};

/// Makes `main` (or any function without parameters) the main task of a new runtime: its body
/// runs inside [`Builder::run`], and its value (a `Result` included) is returned as is.
///
/// Options, each optional: `domains = N` ([`Builder::domains`]) and `stack_size = BYTES`
/// ([`Builder::stack_size`]); a value may be any expression. Without them the defaults and the
/// environment (`BOBINE_DOMAINS`, `BOBINE_STACK_SIZE`) decide, as for [`run`].
///
/// ```
/// #[bobine::main(domains = 2, stack_size = 128 * 1024)]
/// fn main() -> std::io::Result<()> {
///     let h = bobine::thread::spawn(|| 6 * 7);
///     assert_eq!(h.join().unwrap(), 42);
///     Ok(())
/// }
/// ```
///
/// An `async fn` is accepted too, to ease porting from async runtimes: its body becomes a
/// future that the main task drives with [`block_on`], so its `.await`s park the main task and
/// blocking calls still work in it.
///
/// ```
/// #[bobine::main]
/// async fn main() {
///     let h = bobine::thread::spawn(|| "from a task");
///     assert_eq!(bobine::io::unblock(|| 1), 1);
///     assert_eq!(h.join().unwrap(), "from a task");
/// }
/// ```
///
/// Unknown options, parameters, generics, or a `const`/`unsafe`/`extern` function are
/// refused at compile time with a message naming the mistake:
///
/// ```compile_fail
/// #[bobine::main(domainz = 2)] // error: unknown option `domainz`
/// fn main() {}
/// ```
#[doc(inline)]
pub use bobine_macros::main;

/// Makes a test function the main task of a new runtime, like [`main`](macro@main) does for
/// `main`, and marks it `#[test]`. Takes the same options; other attributes (`#[should_panic]`,
/// `#[ignore]`) go after it.
///
/// ```
/// #[bobine::test(domains = 1)]
/// fn counts_in_a_task() {
///     let (tx, rx) = bobine::sync::mpsc::channel();
///     bobine::thread::spawn(move || tx.send(3).unwrap());
///     assert_eq!(rx.recv().unwrap(), 3);
/// }
/// # fn main() {}
/// ```
#[doc(inline)]
pub use bobine_macros::test;

/// Runs `f` as the main task of a new runtime with the default settings and returns its value.
///
/// When `f` returns, `run` returns too, as a process ends with its `main`: tasks still running
/// or blocked are dropped (their stacks unwound, destructors run) and the domains' threads are
/// joined. A panic of `f` propagates out of `run` with its payload.
///
/// ```
/// assert_eq!(bobine::run(|| 1 + 1), 2);
/// ```
pub fn run<T>(f: impl FnOnce() -> T) -> T {
    Builder::new().run(f)
}

/// Configures a runtime: number of domains, default stack size, capacity.
///
/// Explicit settings win over the environment (`BOBINE_DOMAINS`, `BOBINE_STACK_SIZE`, sizes in
/// bytes with an optional `K`/`M`/`G` suffix), which wins over the defaults (one domain per
/// available core, 256 KiB stacks).
///
/// ```
/// let v = bobine::Builder::new().domains(2).stack_size(64 * 1024).run(|| 42);
/// assert_eq!(v, 42);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder {
    domains: Option<usize>,
    stack_size: Option<usize>,
    max_tasks: Option<usize>,
    deadlock_detection: Option<bool>,
}

impl Builder {
    /// A builder with every setting at its default.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Total domains (OS threads), at least 1; domain 0 is the thread that calls `run`.
    ///
    /// # Panics
    ///
    /// `run` panics if `n` is 0.
    pub fn domains(mut self, n: usize) -> Builder {
        self.domains = Some(n);
        self
    }

    /// Default usable stack size of tasks, in bytes (rounded up to pages, at least 16 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// The most task stacks this runtime may create (tasks alive at once, the main task
    /// included). Past it, `thread::Builder::spawn` returns `Err`. The default is what the
    /// kernel allows: about a million with `MADV_GUARD_INSTALL` (Linux 6.13+), else half of
    /// `vm.max_map_count`.
    pub fn max_tasks(mut self, n: usize) -> Builder {
        self.max_tasks = Some(n);
        self
    }

    /// Whether a deadlock of this runtime is reported (default: yes). When every task is
    /// parked and nothing can wake any of them (no timer, descriptor, blocking-pool job or
    /// signal watch is left, and every other thread of the process waits for another thread),
    /// the runtime is ended and `run` panics with a message that begins
    /// `deadlock: all tasks are blocked`, followed by the task dump, within about a second
    /// (see [`diag`] for what the detector can and cannot see). With `false`, such a runtime
    /// waits for ever.
    pub fn deadlock_detection(mut self, on: bool) -> Builder {
        self.deadlock_detection = Some(on);
        self
    }

    /// Runs `f` as the main task of a runtime with these settings (see [`run`]).
    pub fn run<T>(self, f: impl FnOnce() -> T) -> T {
        let config = sched::runtime::Config::resolve(
            self.domains,
            self.stack_size,
            self.max_tasks,
            self.deadlock_detection,
        );
        sched::runtime::run(config, f)
    }
}
