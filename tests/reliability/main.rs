//! The reliability table (README, "Testing"), one named test per row, each counting what it claims:
//! every message or event exactly once, descriptors from `/proc/self/fd`, resident memory from
//! `/proc/self/statm`, and the stderr and exit status of child processes.
//!
//! | row of the table | test | file |
//! |---|---|---|
//! | many-to-many channel stress with `choose`, 4 domains plus plain threads | [`reliability_many_to_many_exactly_once`](messages::reliability_many_to_many_exactly_once) | `messages.rs` |
//! | cancellation racing delivery | [`reliability_cancel_vs_delivery`](messages::reliability_cancel_vs_delivery) | `messages.rs` |
//! | cancelled tasks holding sockets | [`reliability_cancelled_sockets_release_fds`](resources::reliability_cancelled_sockets_release_fds) | `resources.rs` |
//! | memory flat over spawn, cancel, choose and connect/close loops | [`reliability_memory_flat`](resources::reliability_memory_flat) | `resources.rs` |
//! | stack overflow in a task | [`reliability_stack_overflow_reported`](children::reliability_stack_overflow_reported) | `children.rs` |
//! | deadlocked program | [`reliability_deadlock_reported`](children::reliability_deadlock_reported) | `children.rs` |
//! | shutdown with tasks still blocked | [`reliability_shutdown_never_hangs`](children::reliability_shutdown_never_hangs) | `children.rs` |
//! | a panic while a destructor needs to block | [`reliability_panic_in_blocking_destructor`](children::reliability_panic_in_blocking_destructor) | `children.rs` |
//! | descriptor exhaustion under an accept storm | [`reliability_emfile_storm`](net::reliability_emfile_storm) | `net.rs` |
//! | peers that reset, half-close or vanish | [`reliability_peer_resets_contained`](net::reliability_peer_resets_contained) | `net.rs` |
//!
//! ## Two sizes
//!
//! Every size comes from [`size`]: a short one by default (what CI runs), the table's own when
//! `BOBINE_SOAK=1` is set:
//!
//! ```sh
//! cargo test --release --test reliability                 # short: what CI runs
//! BOBINE_SOAK=1 cargo test --release --test reliability   # the table's sizes
//! ```
//!
//! | figure | short | `BOBINE_SOAK=1` |
//! |---|---|---|
//! | messages, many-to-many | 40 000 | 1 000 000 |
//! | cancel/deliver races | 2 000 | 100 000 |
//! | cancellations of tasks holding sockets (half std-face, half Miou) | 1 000 | 10 000 |
//! | memory rounds (spawn, cancel, choose, connect/close) | 24 | 1 000 |
//! | reset/half-close/vanish rounds | 20 | 500 |
//! | `EMFILE` storms × clients each, on a TCP and on a Unix listener | 2 × 32 | 20 × 100 |
//!
//! Wall time of the whole file once built, on the 2-core machine it was written on (AMD EPYC,
//! shared with other engineers' builds, load average 8 to 10): the short size 4.9 to 5.5 s in
//! debug and 3.9 to 5.0 s in release (1.2 s of it is the storms holding the descriptor table
//! full, 300 ms a storm, and 2.3 s the shutdown child's two quiet seconds); `BOBINE_SOAK=1` 42
//! to 49 s in release (the memory run about 23 s of it). Building the binary took 15 s in
//! debug and 23 s in release on that loaded machine.
//!
//! Tests that count process-wide figures (descriptors, resident memory), change process-wide
//! state (the descriptor limit) or must end the process (a stack overflow) run their body in a
//! child process: this binary re-run on that one test with [`CHILD_ENV`] set
//! (`common::child`), so no other test of the binary shares its process. The sizes reach the
//! child through the environment it inherits.

#[path = "../common/mod.rs"]
mod common;

mod children;
mod messages;
mod net;
mod resources;

/// Set (to the test's harness name, [`test_path`]) in the environment of a child process to
/// make that test run its child body.
pub const CHILD_ENV: &str = "BOBINE_RELIABILITY_CHILD";

/// Whether the table's full sizes were asked for: `BOBINE_SOAK=1` in the environment.
pub fn soak() -> bool {
    std::env::var("BOBINE_SOAK").is_ok_and(|v| v == "1")
}

/// The one place sizes are chosen: `short` by default, `full` under `BOBINE_SOAK=1`.
pub fn size(short: u64, full: u64) -> u64 {
    if soak() { full } else { short }
}

/// The watchdog's limit for a test whose short run needs about `short_secs`: generous, and
/// longer for the soak sizes.
pub fn limit(short_secs: u64) -> u64 {
    if soak() { 60 * short_secs } else { short_secs }
}

/// The harness's name of the test `name` of the module `module` (its `module_path!()`): the
/// module's path without the crate's name, then the test's. A child run is asked for by it.
pub fn test_path(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_, m)) => format!("{m}::{name}"),
        None => name.to_owned(),
    }
}

/// Whether this process is the child run of `test` (its [`test_path`]; see [`CHILD_ENV`]).
pub fn in_child(test: &str) -> bool {
    common::child::is_child_of(CHILD_ENV, test)
}
