//! Row "ping-pong": two tasks pass a counter back and forth over two rendezvous channels (one
//! each way); the figure is one round trip (two sends, two receives).
//!
//! bobine `sync::mpsc::sync_channel(0)`, tokio `mpsc::channel(1)` (its smallest), may
//! `sync::mpsc::channel()` (unbounded: may has no bounded channel, only the ping-pong makes it a
//! rendezvous), std `sync_channel(0)` and crossbeam `bounded(0)` between two OS threads.

use std::time::{Duration, Instant};

use crate::common::peers::{may_run, may_spawn, tokio_run};
use crate::common::runtime;
use crate::runtimes::{Body, split_evenly, tokio_mt_run};

/// bobine, one domain: the main task pings, a spawned task echoes.
pub fn bobine_1(iters: u64) -> Duration {
    use bobine::sync::mpsc::sync_channel;
    runtime().run(move || {
        let (ping_tx, ping_rx) = sync_channel::<u64>(0);
        let (pong_tx, pong_rx) = sync_channel::<u64>(0);
        let echo = bobine::thread::spawn(move || {
            for _ in 0..iters {
                pong_tx.send(ping_rx.recv().unwrap()).unwrap();
            }
        });
        let start = Instant::now();
        for i in 0..iters {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
        let elapsed = start.elapsed();
        echo.join().expect("echo task panicked");
        elapsed
    })
}

/// bobine, two domains: the pinging task on one domain, the echoing task on the other.
pub fn bobine_2(iters: u64) -> Duration {
    use bobine::sync::mpsc::sync_channel;
    split_evenly(|| {
        let (ping_tx, ping_rx) = sync_channel::<u64>(0);
        let (pong_tx, pong_rx) = sync_channel::<u64>(0);
        let ping: Body = Box::new(move || {
            for i in 0..iters {
                ping_tx.send(i).unwrap();
                assert_eq!(pong_rx.recv().unwrap(), i);
            }
        });
        let echo: Body = Box::new(move || {
            for _ in 0..iters {
                pong_tx.send(ping_rx.recv().unwrap()).unwrap();
            }
        });
        vec![ping, echo]
    })
}

/// tokio's loop: the driver task pings, a spawned task echoes.
async fn tokio_loop(iters: u64) -> Duration {
    use tokio::sync::mpsc::channel;
    let (ping_tx, mut ping_rx) = channel::<u64>(1);
    let (pong_tx, mut pong_rx) = channel::<u64>(1);
    let echo = tokio::spawn(async move {
        for _ in 0..iters {
            let v = ping_rx.recv().await.unwrap();
            pong_tx.send(v).await.unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        ping_tx.send(i).await.unwrap();
        assert_eq!(pong_rx.recv().await.unwrap(), i);
    }
    let elapsed = start.elapsed();
    echo.await.expect("echo task panicked");
    elapsed
}

/// tokio current-thread.
pub fn tokio_ct(iters: u64) -> Duration {
    tokio_run(tokio_loop(iters))
}

/// tokio multi-thread, 2 workers (tokio places the two tasks).
pub fn tokio_mt(iters: u64) -> Duration {
    tokio_mt_run(tokio_loop(iters))
}

/// may (1 or 2 workers, as the child configured it; may places the two coroutines).
pub fn may(iters: u64) -> Duration {
    use may::sync::mpsc::channel;
    may_run(move || {
        let (ping_tx, ping_rx) = channel::<u64>();
        let (pong_tx, pong_rx) = channel::<u64>();
        let echo = may_spawn(move || {
            for _ in 0..iters {
                pong_tx.send(ping_rx.recv().unwrap()).unwrap();
            }
        });
        let start = Instant::now();
        for i in 0..iters {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
        let elapsed = start.elapsed();
        echo.join().expect("echo coroutine panicked");
        elapsed
    })
}

/// Two OS threads over std `sync_channel(0)`.
pub fn std(iters: u64) -> Duration {
    use std::sync::mpsc::sync_channel;
    let (ping_tx, ping_rx) = sync_channel::<u64>(0);
    let (pong_tx, pong_rx) = sync_channel::<u64>(0);
    let echo = std::thread::spawn(move || {
        for _ in 0..iters {
            pong_tx.send(ping_rx.recv().unwrap()).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    let elapsed = start.elapsed();
    echo.join().expect("echo thread panicked");
    elapsed
}

/// Two OS threads over crossbeam `bounded(0)`.
pub fn crossbeam(iters: u64) -> Duration {
    use crossbeam_channel::bounded;
    let (ping_tx, ping_rx) = bounded::<u64>(0);
    let (pong_tx, pong_rx) = bounded::<u64>(0);
    let echo = std::thread::spawn(move || {
        for _ in 0..iters {
            pong_tx.send(ping_rx.recv().unwrap()).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    let elapsed = start.elapsed();
    echo.join().expect("echo thread panicked");
    elapsed
}
