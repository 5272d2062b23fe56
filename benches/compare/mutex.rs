//! Row "mutex": [`CONTENDERS`] tasks each doing `lock; yield; unlock` in a loop on one mutex;
//! the figure is one critical section. bobine `sync::Mutex` + `thread::yield_now`, tokio
//! `tokio::sync::Mutex` + `task::yield_now().await`, may `sync::Mutex` +
//! `coroutine::yield_now`, std threads `std::sync::Mutex` + `std::thread::yield_now`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::peers::{may_run, may_spawn, tokio_run};
use crate::common::runtime;
use crate::runtimes::{Body, split_evenly, tokio_mt_run};

/// Tasks (or threads) contending for the mutex.
const CONTENDERS: u64 = 4;

/// The share of `total` critical sections that contender `i` of `n` runs (they add up to
/// `total`).
fn share(total: u64, i: u64, n: u64) -> u64 {
    total / n + u64::from(i < total % n)
}

/// One bobine contender's loop.
fn bobine_contend(m: &bobine::sync::Mutex<u64>, sections: u64) {
    for _ in 0..sections {
        let mut g = m.lock().unwrap();
        bobine::thread::yield_now();
        *g += 1;
    }
}

/// bobine, one domain: the contenders spawned from the main task, which joins them.
pub fn bobine_1(iters: u64) -> Duration {
    runtime().run(move || {
        let m = Arc::new(bobine::sync::Mutex::new(0u64));
        let start = Instant::now();
        let workers: Vec<_> = (0..CONTENDERS)
            .map(|i| {
                let m = m.clone();
                bobine::thread::spawn(move || bobine_contend(&m, share(iters, i, CONTENDERS)))
            })
            .collect();
        for w in workers {
            w.join().expect("contending task panicked");
        }
        let elapsed = start.elapsed();
        assert_eq!(*m.lock().unwrap(), iters);
        elapsed
    })
}

/// bobine, two domains: two contenders started on each domain. (The mutex is shared by the
/// runtimes `split_evenly` throws away, whose tasks never touch it.)
pub fn bobine_2(iters: u64) -> Duration {
    let m = Arc::new(bobine::sync::Mutex::new(0u64));
    let elapsed = split_evenly(|| {
        (0..CONTENDERS)
            .map(|i| {
                let m = m.clone();
                Box::new(move || bobine_contend(&m, share(iters, i, CONTENDERS))) as Body
            })
            .collect()
    });
    assert_eq!(*m.lock().unwrap(), iters);
    elapsed
}

/// tokio's loop, in the driver task.
async fn tokio_loop(iters: u64) -> Duration {
    let m = Arc::new(tokio::sync::Mutex::new(0u64));
    let start = Instant::now();
    let workers: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let m = m.clone();
            tokio::spawn(async move {
                for _ in 0..share(iters, i, CONTENDERS) {
                    let mut g = m.lock().await;
                    tokio::task::yield_now().await;
                    *g += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("contending task panicked");
    }
    let elapsed = start.elapsed();
    assert_eq!(*m.lock().await, iters);
    elapsed
}

/// tokio current-thread.
pub fn tokio_ct(iters: u64) -> Duration {
    tokio_run(tokio_loop(iters))
}

/// tokio multi-thread, 2 workers.
pub fn tokio_mt(iters: u64) -> Duration {
    tokio_mt_run(tokio_loop(iters))
}

/// may (1 or 2 workers, as the child configured it).
pub fn may(iters: u64) -> Duration {
    may_run(move || {
        let m = Arc::new(may::sync::Mutex::new(0u64));
        let start = Instant::now();
        let workers: Vec<_> = (0..CONTENDERS)
            .map(|i| {
                let m = m.clone();
                may_spawn(move || {
                    for _ in 0..share(iters, i, CONTENDERS) {
                        let mut g = m.lock().unwrap();
                        may::coroutine::yield_now();
                        *g += 1;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("contending coroutine panicked");
        }
        let elapsed = start.elapsed();
        assert_eq!(*m.lock().unwrap(), iters);
        elapsed
    })
}

/// Four OS threads (on one CPU or two, as the child pinned itself).
pub fn std(iters: u64) -> Duration {
    let m = Arc::new(std::sync::Mutex::new(0u64));
    let start = Instant::now();
    let workers: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..share(iters, i, CONTENDERS) {
                    let mut g = m.lock().unwrap();
                    std::thread::yield_now();
                    *g += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("contending thread panicked");
    }
    let elapsed = start.elapsed();
    assert_eq!(*m.lock().unwrap(), iters);
    elapsed
}
