//! The runtimes the loops need beyond `benches/common`'s: bobine on two domains with its tasks
//! split evenly between them, and tokio's multi-thread runtime.
//!
//! bobine has no public way to put a task on a given domain: a task starts on the domain that
//! spawned it unless an idle domain steals it before it starts (tasks never migrate once
//! started), and `spawn_local` keeps it where it was spawned. [`split_evenly`] spawns half of
//! the tasks with `spawn_local` on domain 0 and the other half from an agent task that domain 1
//! stole; a runtime where the agent was not stolen is thrown away ([`REBUILDS`] counts them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The body of one task placed by [`split_evenly`].
pub type Body = Box<dyn FnOnce() + Send>;

/// Runtimes [`split_evenly`] threw away in this process because the split was uneven.
pub static REBUILDS: AtomicU64 = AtomicU64::new(0);

/// Runs the bodies `make` returns as tasks of a two-domain bobine runtime, half of them started
/// on each domain, and returns the time from their release to the last one's end. Rebuilds the
/// runtime (with fresh bodies) until the split is even.
pub fn split_evenly(make: impl Fn() -> Vec<Body>) -> Duration {
    for _ in 0..100 {
        if let Some(d) = split_once(make()) {
            return d;
        }
        REBUILDS.fetch_add(1, SeqCst);
    }
    panic!("bobine: no even split of the tasks between two domains in 100 runtimes");
}

/// One try of [`split_evenly`]: `None` (the bodies dropped unrun) if the split was uneven.
///
/// Half of the tasks are spawned with `spawn_local` on domain 0. The other half are spawned
/// with `spawn_local` by an agent task running on domain 1: the agent is spawned normally while
/// domain 0's thread is blocked (not a yield), so the idle domain 1 steals it from domain 0's
/// deque; if domain 0 ran it after all, the runtime is thrown away.
fn split_once(mut bodies: Vec<Body>) -> Option<Duration> {
    let n = bodies.len();
    let theirs = bodies.split_off(n / 2);
    bobine::Builder::new().domains(2).run(move || {
        let home = std::thread::current().id();
        let gate = Arc::new(bobine::sync::Semaphore::new(0));
        let go = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let place = {
            let (gate, go, started) = (gate.clone(), go.clone(), started.clone());
            move |body: Body| {
                let (gate, go, started) = (gate.clone(), go.clone(), started.clone());
                bobine::thread::spawn_local(move || {
                    started.fetch_add(1, SeqCst);
                    gate.acquire();
                    if go.load(SeqCst) {
                        body();
                    }
                })
            }
        };
        let place2 = place.clone();
        let agent = bobine::thread::spawn(move || {
            if std::thread::current().id() == home {
                // Not stolen: drop the bodies unrun.
                return None;
            }
            Some(theirs.into_iter().map(place2).collect::<Vec<_>>())
        });
        // Block domain 0 long enough for the idle domain 1 to steal the agent.
        std::thread::sleep(Duration::from_millis(2));
        let mut tasks: Vec<_> = bodies.into_iter().map(place).collect();
        let remote = agent.join().expect("the agent panicked");
        let even = remote.is_some();
        tasks.extend(remote.into_iter().flatten());
        while even && started.load(SeqCst) < n {
            bobine::thread::yield_now();
        }
        go.store(even, SeqCst);
        let start = Instant::now();
        for _ in 0..tasks.len() {
            gate.release();
        }
        for t in tasks {
            t.join().expect("a placed task panicked");
        }
        even.then(|| start.elapsed())
    })
}

/// Runs `fut` as a spawned task of a fresh tokio multi-thread runtime with 2 workers (the
/// two-thread counterpart of `common::peers::tokio_run`).
pub fn tokio_mt_run<F>(fut: F) -> Duration
where
    F: Future<Output = Duration> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move { tokio::spawn(fut).await.expect("driver task panicked") })
}
