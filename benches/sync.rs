//! Side-by-side comparison of bobine's synchronisation primitives (`bobine::sync` and the OCaml
//! faces `bobine::ocaml::{mutex, condition}`) with their peers, on the same loops:
//!
//! - `uncontended`: lock + unlock of a mutex nobody else touches; the figure is one lock +
//!   unlock. bobine `sync::Mutex` (and, as `bobine-ocaml`, `ocaml::mutex`), `std::sync::Mutex`,
//!   tokio's async `tokio::sync::Mutex` (`lock().await`), `may::sync::Mutex`.
//! - `contended_yield`: 4 tasks each doing `lock; yield; unlock` in a loop on one mutex; the
//!   figure is one critical section. bobine (`thread::yield_now`), tokio (`tokio::sync::Mutex`
//!   and `task::yield_now().await`), may (`may::sync::Mutex` and `coroutine::yield_now`), and 4
//!   std threads (`std::sync::Mutex` and `std::thread::yield_now`) as an extra row.
//! - `contended_yield_2_domains`: the same loop (4 tasks, `lock; yield; unlock`) with two
//!   scheduler threads: bobine on 2 domains with two tasks on each (placed through a Miou
//!   child pinned to domain 1: see `bobine_contended_yield_2_domains`), tokio's multi-thread
//!   runtime with 2 workers (`tokio-mt`), and may with 2 workers
//!   (`may-2w`; may reads its worker count once per process, so its samples run in a child
//!   process of this bench, which times its own loop).
//! - `condvar_handoff`: two tasks pass a turn back and forth through a mutex and a condition
//!   variable (each waits until it is its turn, flips the turn, signals, unlocks); the figure is
//!   one hand-off. bobine `sync::{Mutex, Condvar}`, the OCaml face (`bobine-ocaml`:
//!   `ocaml::mutex` + `ocaml::condition`), std threads (`std::sync::{Mutex, Condvar}`), may
//!   (`may::sync::{Mutex, Condvar}`), and tokio, which has no condition variable: its
//!   `tokio::sync::Mutex` plus one `tokio::sync::Notify` per task, the closest peer.
//! - `rendezvous`: ping-pong between two tasks over two channels (one each way); the figure is
//!   one round trip (two sends, two receives). bobine `sync::mpsc::sync_channel(0)`, std
//!   `std::sync::mpsc::sync_channel(0)` between two threads, tokio `mpsc::channel(1)`, may
//!   `may::sync::mpsc::channel()` (may has no bounded channel: its channel is unbounded, so its
//!   sends never wait for the receiver; only the ping-pong makes it a rendezvous).
//!
//! Every green-thread loop but `contended_yield_2_domains` runs on one scheduler thread: bobine with one domain, tokio with
//! `new_current_thread()`, may with `may::config().set_workers(1)`. The loops run inside tasks of
//! their runtime, and each criterion sample starts a fresh runtime outside the timing
//! (`iter_custom`). The std rows use OS threads (two cores on the development machine), or, for
//! `uncontended`, the bench thread itself.
//!
//! After the groups have run, a markdown table gives each runtime's median (read back from
//! criterion's `<target>/criterion/sync_<operation>/<runtime>/new/estimates.json`) and each
//! peer's median divided by bobine's: above 1 means bobine is faster. Only ratios from one run
//! mean anything on a shared machine.
//!
//! Run with `cargo bench --bench sync` (criterion arguments follow `--`, e.g.
//! `cargo bench --bench sync -- sync_rendezvous`).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::Criterion;

mod common;

use common::peers::{may_run, may_spawn, tokio_run};
use common::{group, report, runtime};

/// Tasks (or threads) contending for the mutex in `contended_yield`.
const CONTENDERS: u64 = 4;

const BOBINE: &str = "bobine";
const OCAML: &str = "bobine-ocaml";
const TOKIO: &str = "tokio-ct";
const MAY: &str = "may";
const STD: &str = "std";
const RUNTIMES: [&str; 5] = [BOBINE, OCAML, TOKIO, MAY, STD];
/// The runtimes of `contended_yield_2_domains`: bobine on 2 domains, tokio's multi-thread
/// runtime with 2 workers, may with 2 workers.
const TOKIO_MT: &str = "tokio-mt";
const MAY_2W: &str = "may-2w";
const RUNTIMES_2: [&str; 3] = [BOBINE, TOKIO_MT, MAY_2W];
const GROUP_2: (&str, &str) = (
    "sync_contended_yield_2_domains",
    "contended_yield, 2 domains / workers",
);
/// Set (to the iteration count) in the child process that runs one sample of may with 2
/// workers: may's worker count is fixed once per process.
const MAY_2W_CHILD: &str = "BOBINE_SYNC_BENCH_MAY_2W_ITERS";

/// Criterion groups and the operation each measures. The `sync_` prefix keeps their results
/// apart from the other benches' (criterion keys results by group and function name only).
const GROUPS: [(&str, &str); 4] = [
    ("sync_uncontended", "uncontended"),
    ("sync_contended_yield", "contended_yield"),
    ("sync_condvar_handoff", "condvar_handoff"),
    ("sync_rendezvous", "rendezvous"),
];

/// The share of `total` iterations that worker `i` of `n` runs (the shares add up to `total`).
fn share(total: u64, i: u64, n: u64) -> u64 {
    total / n + u64::from(i < total % n)
}

// ---------------------------------------------------------------------------------------------
// bobine

fn bobine_uncontended(iters: u64) -> Duration {
    runtime().run(move || {
        let m = bobine::sync::Mutex::new(0u64);
        let m = black_box(&m);
        let start = Instant::now();
        for _ in 0..iters {
            let g = m.lock().unwrap();
            black_box(&*g);
            drop(g);
        }
        start.elapsed()
    })
}

fn ocaml_uncontended(iters: u64) -> Duration {
    use bobine::ocaml::mutex;
    runtime().run(move || {
        let m = mutex::create();
        let m = black_box(&m);
        let start = Instant::now();
        for _ in 0..iters {
            mutex::lock(m);
            mutex::unlock(m);
        }
        start.elapsed()
    })
}

fn bobine_contended_yield(iters: u64) -> Duration {
    runtime().run(move || {
        let m = Arc::new(bobine::sync::Mutex::new(0u64));
        let start = Instant::now();
        let workers: Vec<_> = (0..CONTENDERS)
            .map(|i| {
                let m = m.clone();
                bobine::thread::spawn(move || {
                    for _ in 0..share(iters, i, CONTENDERS) {
                        let mut g = m.lock().unwrap();
                        bobine::thread::yield_now();
                        *g += 1;
                    }
                })
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

/// `contended_yield` on 2 domains: two of the four tasks on each. A task's domain is chosen
/// through the Miou face (`miou::run_with(1, ..)` is a runtime of 2 domains, and a child pinned
/// to domain 1 is the one way to start work there); the contending tasks themselves are plain
/// `thread::spawn_local` tasks, two started by the main task on domain 0 and two by the pinned
/// child on domain 1. They all wait at a barrier, then loop.
fn bobine_contended_yield_2_domains(iters: u64) -> Duration {
    use bobine::miou;
    use bobine::sync::{Barrier, Mutex};
    let bench_thread = std::thread::current().id();
    miou::run_with(1, move || {
        let m = Arc::new(Mutex::new(0u64));
        let gate = Arc::new(Barrier::new(CONTENDERS as usize + 1));
        let contend = move |i: u64, m: Arc<Mutex<u64>>, gate: Arc<Barrier>| {
            bobine::thread::spawn_local(move || {
                gate.wait();
                for _ in 0..share(iters, i, CONTENDERS) {
                    let mut g = m.lock().unwrap();
                    bobine::thread::yield_now();
                    *g += 1;
                }
            })
        };
        let here: Vec<_> = (0..CONTENDERS / 2)
            .map(|i| contend(i, m.clone(), gate.clone()))
            .collect();
        let there = miou::Spawn::new().pin(1).call({
            let (m, gate) = (m.clone(), gate.clone());
            move || {
                assert_ne!(std::thread::current().id(), bench_thread, "on domain 1");
                let hs: Vec<_> = (CONTENDERS / 2..CONTENDERS)
                    .map(|i| contend(i, m.clone(), gate.clone()))
                    .collect();
                for h in hs {
                    h.join().expect("contending task panicked");
                }
            }
        });
        let start = Instant::now();
        gate.wait();
        for h in here {
            h.join().expect("contending task panicked");
        }
        miou::await_exn(there);
        let elapsed = start.elapsed();
        assert_eq!(*m.lock().unwrap(), iters);
        elapsed
    })
}

/// Two tasks pass the turn: `turn == me` means it is `me`'s turn. Task 0 takes the extra
/// hand-off when `iters` is odd (and then finishes last, so nobody waits for ever).
fn bobine_condvar_handoff(iters: u64) -> Duration {
    use bobine::sync::{Condvar, Mutex};
    runtime().run(move || {
        let pair = Arc::new((Mutex::new(0u64), Condvar::new()));
        let start = Instant::now();
        let players: Vec<_> = (0..2)
            .map(|me| {
                let pair = pair.clone();
                bobine::thread::spawn(move || {
                    let (turn, cv) = &*pair;
                    for _ in 0..share(iters, me, 2) {
                        let mut g = turn.lock().unwrap();
                        while *g != me {
                            g = cv.wait(g).unwrap();
                        }
                        *g = 1 - me;
                        cv.notify_one();
                    }
                })
            })
            .collect();
        for p in players {
            p.join().expect("hand-off task panicked");
        }
        start.elapsed()
    })
}

fn ocaml_condvar_handoff(iters: u64) -> Duration {
    use bobine::ocaml::{condition, mutex};
    runtime().run(move || {
        let m = mutex::create();
        let c = condition::create();
        // Read and written only under `m`; an atomic just to share it without `unsafe`.
        let turn = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let players: Vec<_> = [false, true]
            .into_iter()
            .map(|me| {
                let (m, c, turn) = (m.clone(), c.clone(), turn.clone());
                bobine::thread::spawn(move || {
                    for _ in 0..share(iters, u64::from(me), 2) {
                        mutex::lock(&m);
                        while turn.load(Ordering::Relaxed) != me {
                            condition::wait(&c, &m);
                        }
                        turn.store(!me, Ordering::Relaxed);
                        condition::signal(&c);
                        mutex::unlock(&m);
                    }
                })
            })
            .collect();
        for p in players {
            p.join().expect("hand-off task panicked");
        }
        start.elapsed()
    })
}

fn bobine_rendezvous(iters: u64) -> Duration {
    use bobine::sync::mpsc::sync_channel;
    runtime().run(move || {
        let (ping_tx, ping_rx) = sync_channel::<u64>(0);
        let (pong_tx, pong_rx) = sync_channel::<u64>(0);
        let start = Instant::now();
        let echo = bobine::thread::spawn(move || {
            for _ in 0..iters {
                pong_tx.send(ping_rx.recv().unwrap()).unwrap();
            }
        });
        for i in 0..iters {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
        echo.join().expect("echo task panicked");
        start.elapsed()
    })
}

// ---------------------------------------------------------------------------------------------
// tokio, current-thread runtime

fn tokio_uncontended(iters: u64) -> Duration {
    tokio_run(async move {
        let m = tokio::sync::Mutex::new(0u64);
        let m = black_box(&m);
        let start = Instant::now();
        for _ in 0..iters {
            let g = m.lock().await;
            black_box(&*g);
            drop(g);
        }
        start.elapsed()
    })
}

fn tokio_contended_yield(iters: u64) -> Duration {
    tokio_run(async move {
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
    })
}

/// `contended_yield` on tokio's multi-thread runtime with 2 workers.
fn tokio_mt_contended_yield(iters: u64) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        tokio::spawn(async move {
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
        })
        .await
        .expect("driver task panicked")
    })
}

/// tokio has no condition variable: the turn lives in a `tokio::sync::Mutex` and each task
/// waits on its own `Notify` (whose stored permit makes a notification sent between the unlock
/// and the wait not lost).
fn tokio_condvar_handoff(iters: u64) -> Duration {
    use tokio::sync::{Mutex, Notify};
    tokio_run(async move {
        let turn = Arc::new(Mutex::new(0u64));
        let notify = Arc::new([Notify::new(), Notify::new()]);
        let start = Instant::now();
        let players: Vec<_> = (0..2)
            .map(|me| {
                let (turn, notify) = (turn.clone(), notify.clone());
                tokio::spawn(async move {
                    for _ in 0..share(iters, me, 2) {
                        let mut g = turn.lock().await;
                        while *g != me {
                            drop(g);
                            notify[me as usize].notified().await;
                            g = turn.lock().await;
                        }
                        *g = 1 - me;
                        notify[1 - me as usize].notify_one();
                    }
                })
            })
            .collect();
        for p in players {
            p.await.expect("hand-off task panicked");
        }
        start.elapsed()
    })
}

fn tokio_rendezvous(iters: u64) -> Duration {
    use tokio::sync::mpsc::channel;
    tokio_run(async move {
        let (ping_tx, mut ping_rx) = channel::<u64>(1);
        let (pong_tx, mut pong_rx) = channel::<u64>(1);
        let start = Instant::now();
        let echo = tokio::spawn(async move {
            for _ in 0..iters {
                let v = ping_rx.recv().await.unwrap();
                pong_tx.send(v).await.unwrap();
            }
        });
        for i in 0..iters {
            ping_tx.send(i).await.unwrap();
            assert_eq!(pong_rx.recv().await.unwrap(), i);
        }
        echo.await.expect("echo task panicked");
        start.elapsed()
    })
}

// ---------------------------------------------------------------------------------------------
// may, one worker

fn may_uncontended(iters: u64) -> Duration {
    may_run(move || {
        let m = may::sync::Mutex::new(0u64);
        let m = black_box(&m);
        let start = Instant::now();
        for _ in 0..iters {
            let g = m.lock().unwrap();
            black_box(&*g);
            drop(g);
        }
        start.elapsed()
    })
}

fn may_contended_yield(iters: u64) -> Duration {
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

/// `contended_yield` on may with 2 workers: one sample, run in a child process of this bench
/// (see [`MAY_2W_CHILD`]), which prints the time its loop took in nanoseconds.
fn may_2w_contended_yield(iters: u64) -> Duration {
    let exe = std::env::current_exe().expect("the bench's own path");
    let out = std::process::Command::new(exe)
        .env(MAY_2W_CHILD, iters.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("child bench process");
    assert!(
        out.status.success(),
        "may child sample failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let nanos: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("may child sample printed {text:?}"));
    Duration::from_nanos(nanos)
}

fn may_condvar_handoff(iters: u64) -> Duration {
    use may::sync::{Condvar, Mutex};
    may_run(move || {
        let pair = Arc::new((Mutex::new(0u64), Condvar::new()));
        let start = Instant::now();
        let players: Vec<_> = (0..2)
            .map(|me| {
                let pair = pair.clone();
                may_spawn(move || {
                    let (turn, cv) = &*pair;
                    for _ in 0..share(iters, me, 2) {
                        let mut g = turn.lock().unwrap();
                        while *g != me {
                            g = cv.wait(g).unwrap();
                        }
                        *g = 1 - me;
                        cv.notify_one();
                    }
                })
            })
            .collect();
        for p in players {
            p.join().expect("hand-off coroutine panicked");
        }
        start.elapsed()
    })
}

/// may's channel is unbounded (it has no `sync_channel`): the ping-pong alone makes each send
/// wait for the previous receive.
fn may_rendezvous(iters: u64) -> Duration {
    use may::sync::mpsc::channel;
    may_run(move || {
        let (ping_tx, ping_rx) = channel::<u64>();
        let (pong_tx, pong_rx) = channel::<u64>();
        let start = Instant::now();
        let echo = may_spawn(move || {
            for _ in 0..iters {
                pong_tx.send(ping_rx.recv().unwrap()).unwrap();
            }
        });
        for i in 0..iters {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
        echo.join().expect("echo coroutine panicked");
        start.elapsed()
    })
}

// ---------------------------------------------------------------------------------------------
// std threads

fn std_uncontended(iters: u64) -> Duration {
    let m = std::sync::Mutex::new(0u64);
    let m = black_box(&m);
    let start = Instant::now();
    for _ in 0..iters {
        let g = m.lock().unwrap();
        black_box(&*g);
        drop(g);
    }
    start.elapsed()
}

fn std_contended_yield(iters: u64) -> Duration {
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

fn std_condvar_handoff(iters: u64) -> Duration {
    use std::sync::{Condvar, Mutex};
    let pair = Arc::new((Mutex::new(0u64), Condvar::new()));
    let start = Instant::now();
    let players: Vec<_> = (0..2)
        .map(|me| {
            let pair = pair.clone();
            std::thread::spawn(move || {
                let (turn, cv) = &*pair;
                for _ in 0..share(iters, me, 2) {
                    let mut g = turn.lock().unwrap();
                    while *g != me {
                        g = cv.wait(g).unwrap();
                    }
                    *g = 1 - me;
                    cv.notify_one();
                }
            })
        })
        .collect();
    for p in players {
        p.join().expect("hand-off thread panicked");
    }
    start.elapsed()
}

fn std_rendezvous(iters: u64) -> Duration {
    use std::sync::mpsc::sync_channel;
    let (ping_tx, ping_rx) = sync_channel::<u64>(0);
    let (pong_tx, pong_rx) = sync_channel::<u64>(0);
    let start = Instant::now();
    let echo = std::thread::spawn(move || {
        for _ in 0..iters {
            pong_tx.send(ping_rx.recv().unwrap()).unwrap();
        }
    });
    for i in 0..iters {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    echo.join().expect("echo thread panicked");
    start.elapsed()
}

// ---------------------------------------------------------------------------------------------
// criterion groups

fn uncontended(c: &mut Criterion) {
    group(
        c,
        GROUPS[0].0,
        &[
            (BOBINE, bobine_uncontended),
            (OCAML, ocaml_uncontended),
            (TOKIO, tokio_uncontended),
            (MAY, may_uncontended),
            (STD, std_uncontended),
        ],
    );
}

fn contended_yield(c: &mut Criterion) {
    group(
        c,
        GROUPS[1].0,
        &[
            (BOBINE, bobine_contended_yield),
            (TOKIO, tokio_contended_yield),
            (MAY, may_contended_yield),
            (STD, std_contended_yield),
        ],
    );
}

fn contended_yield_2_domains(c: &mut Criterion) {
    group(
        c,
        GROUP_2.0,
        &[
            (BOBINE, bobine_contended_yield_2_domains),
            (TOKIO_MT, tokio_mt_contended_yield),
            (MAY_2W, may_2w_contended_yield),
        ],
    );
}

fn condvar_handoff(c: &mut Criterion) {
    group(
        c,
        GROUPS[2].0,
        &[
            (BOBINE, bobine_condvar_handoff),
            (OCAML, ocaml_condvar_handoff),
            (TOKIO, tokio_condvar_handoff),
            (MAY, may_condvar_handoff),
            (STD, std_condvar_handoff),
        ],
    );
}

fn rendezvous(c: &mut Criterion) {
    group(
        c,
        GROUPS[3].0,
        &[
            (BOBINE, bobine_rendezvous),
            (TOKIO, tokio_rendezvous),
            (MAY, may_rendezvous),
            (STD, std_rendezvous),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// the ratio table

fn print_ratio_table(since: SystemTime) {
    if report::print_peer_table(&GROUPS, &RUNTIMES, since) {
        println!();
        println!(
            "tokio condvar_handoff: tokio::sync::Mutex + one Notify per task (no condition \
             variable); may rendezvous: may's mpsc channel is unbounded (no sync_channel(0))."
        );
    }
    if report::print_peer_table(&[GROUP_2], &RUNTIMES_2, since) {
        println!();
        println!(
            "2 domains: bobine runs two tasks on each domain; tokio multi-thread and may with 2 \
             workers place (and move) their tasks themselves. CPU: {}; load average {}.",
            report::cpu_model(),
            report::load_average(),
        );
    }
}

fn main() {
    if let Ok(iters) = std::env::var(MAY_2W_CHILD) {
        // A child sample of `may-2w` (see `may_2w_contended_yield`).
        may::config().set_workers(2);
        let iters = iters.parse().expect("an iteration count");
        println!("{}", may_contended_yield(iters).as_nanos());
        return;
    }
    // Before may's scheduler starts (it reads its configuration once).
    may::config().set_workers(1);
    let since = SystemTime::now();
    let mut c = common::criterion();
    uncontended(&mut c);
    contended_yield(&mut c);
    contended_yield_2_domains(&mut c);
    condvar_handoff(&mut c);
    rendezvous(&mut c);
    c.final_summary();
    print_ratio_table(since);
}
