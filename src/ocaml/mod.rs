//! The OCaml threads face: OCaml's `Thread`, `Mutex`, `Condition`, `Semaphore` and `Event`,
//! with OCaml's names and error messages, so that OCaml thread programs
//! port line by line.
//!
//! Names follow the OCaml manual's `Thread` module (OCaml 4.14/5.x threads library); `yield`,
//! `self` and `await` are Rust keywords and gain a trailing `_`. OCaml exceptions become panics
//! with the same message text. An OCaml program is ported by wrapping its top level in
//! `bobine::run(|| { ... })`. This module is thin: names and messages only. The behaviour lives
//! below it: `Mutex` and `Condition` over `sync`'s raw mutex and `Condvar`, the semaphores over
//! `sync::Semaphore`, `Event` over `event`, `Thread` over the std-like face (with its own task
//! root, which reports an uncaught exception when the thread ends, as OCaml does) and over
//! `io` for the descriptor and process waits. It owns no waiting structure of its own and must
//! not touch the kernel beyond spawning and its ids.

/// OCaml's `max_int` on 64-bit platforms (2^62 - 1): the largest value of an OCaml `int`, and so
/// of a counting semaphore.
pub const MAX_INT: i64 = (1 << 62) - 1;

pub mod condition;
pub mod event;
pub mod mutex;
pub mod semaphore;
pub mod thread;
