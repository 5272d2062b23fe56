//! Row "yield": two tasks on one scheduler thread, each yielding in a loop; the figure is one
//! yield (one switch to the other task).

use std::time::{Duration, Instant};

use crate::common::peers::{may_run, may_spawn, tokio_run};

pub use crate::common::bobine_yield as bobine;

/// tokio current-thread: `tokio::task::yield_now().await`.
pub fn tokio(iters: u64) -> Duration {
    tokio_run(async move {
        let start = Instant::now();
        let other = tokio::spawn(async move {
            for _ in 0..iters {
                tokio::task::yield_now().await;
            }
        });
        for _ in 0..iters {
            tokio::task::yield_now().await;
        }
        other.await.expect("yielding task panicked");
        start.elapsed() / 2
    })
}

/// may, one worker: `may::coroutine::yield_now`. may puts a spawned coroutine on a global
/// queue that its worker reads only once its local queue is empty, and a yield goes back on the
/// local queue: a coroutine that yielded right after the spawn would resume itself (no switch)
/// until it blocks. So the driver first waits for the other coroutine to start; from then on
/// both are on the local queue and each yield switches to the other.
pub fn may(iters: u64) -> Duration {
    may_run(move || {
        let (started_tx, started_rx) = may::sync::mpsc::channel::<()>();
        let other = may_spawn(move || {
            started_tx.send(()).unwrap();
            for _ in 0..iters {
                may::coroutine::yield_now();
            }
        });
        started_rx.recv().unwrap();
        let start = Instant::now();
        for _ in 0..iters {
            may::coroutine::yield_now();
        }
        other.join().expect("yielding coroutine panicked");
        start.elapsed() / 2
    })
}

/// Two OS threads on one CPU (the child pins itself first), each calling
/// `std::thread::yield_now` (`sched_yield`): the kernel's switch, for reference.
pub fn std(iters: u64) -> Duration {
    let start = Instant::now();
    let other = std::thread::spawn(move || {
        for _ in 0..iters {
            std::thread::yield_now();
        }
    });
    for _ in 0..iters {
        std::thread::yield_now();
    }
    other.join().expect("yielding thread panicked");
    start.elapsed() / 2
}
