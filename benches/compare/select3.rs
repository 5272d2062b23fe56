//! Row "select over 3 channels": one task waits on the receive of 3 channels at once while a
//! partner sends on one of them, rotating (message `i` on channel `i % 3`); the figure is one
//! wait (one message). The loops of `benches/events.rs`'s `select3` group.

use std::time::{Duration, Instant};

use bobine::event::{Channel, choose};

use crate::common::peers::tokio_run;
use crate::common::runtime;

/// bobine, one domain: `choose` of the 3 channels' `recv_evt`, then `sync`.
pub fn bobine(iters: u64) -> Duration {
    runtime().run(move || {
        let chans: [Channel<u64>; 3] = std::array::from_fn(|_| Channel::new());
        let partner = {
            let chans = chans.clone();
            bobine::thread::spawn(move || {
                for i in 0..iters {
                    chans[(i % 3) as usize].send(i);
                }
            })
        };
        let start = Instant::now();
        for i in 0..iters {
            let evs = chans.iter().map(Channel::recv_evt).collect();
            assert_eq!(choose(evs).sync(), i);
        }
        let elapsed = start.elapsed();
        partner.join().expect("partner task panicked");
        elapsed
    })
}

/// tokio current-thread: `tokio::select!` over 3 `mpsc::channel(1)` (buffered: the partner may
/// run one message ahead per channel).
pub fn tokio(iters: u64) -> Duration {
    use tokio::sync::mpsc::channel;
    tokio_run(async move {
        let (tx0, mut rx0) = channel::<u64>(1);
        let (tx1, mut rx1) = channel::<u64>(1);
        let (tx2, mut rx2) = channel::<u64>(1);
        let partner = tokio::spawn(async move {
            let txs = [tx0, tx1, tx2];
            for i in 0..iters {
                txs[(i % 3) as usize].send(i).await.unwrap();
            }
        });
        let start = Instant::now();
        let mut sum = 0u64;
        for _ in 0..iters {
            // Channel order is not message order here (each channel buffers one), so check the
            // sum instead of each value.
            sum += tokio::select! {
                Some(v) = rx0.recv() => v,
                Some(v) = rx1.recv() => v,
                Some(v) = rx2.recv() => v,
            };
        }
        let elapsed = start.elapsed();
        partner.await.expect("partner task panicked");
        assert_eq!(sum, iters * iters.saturating_sub(1) / 2);
        elapsed
    })
}

/// crossbeam `select!` over 3 `bounded(0)`, the partner on another OS thread (on one CPU or
/// two, as the child pinned itself).
pub fn crossbeam(iters: u64) -> Duration {
    use crossbeam_channel::{bounded, select};
    let (tx0, rx0) = bounded::<u64>(0);
    let (tx1, rx1) = bounded::<u64>(0);
    let (tx2, rx2) = bounded::<u64>(0);
    let partner = std::thread::spawn(move || {
        let txs = [tx0, tx1, tx2];
        for i in 0..iters {
            txs[(i % 3) as usize].send(i).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        let v = select! {
            recv(rx0) -> v => v.unwrap(),
            recv(rx1) -> v => v.unwrap(),
            recv(rx2) -> v => v.unwrap(),
        };
        assert_eq!(v, i);
    }
    let elapsed = start.elapsed();
    partner.join().expect("partner thread panicked");
    elapsed
}
