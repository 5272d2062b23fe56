//! Row "many parked tasks": `n` tasks spawned on one scheduler thread, each parked on one
//! shared gate, then released and joined; the loop of `examples/million_parked.rs`, on every
//! runtime.
//!
//! Three phases are timed: spawning the `n` tasks (none has run yet on the green-thread
//! runtimes), their first run up to the park (the driver yields until every task has counted
//! itself, just before it parks; may's driver waits for the last one to arrive instead), and
//! the release (`n` permits) and the joins. The process's
//! `VmRSS` and `VmPTE` are read before the spawns and once every task is parked; each case runs
//! in a child process of its own, so the difference is the parked tasks' alone.
//!
//! The gate is each runtime's semaphore: bobine `sync::Semaphore`, tokio `sync::Semaphore`
//! (`acquire().await`, the permit forgotten, `add_permits(n)`), may `sync::Semphore`; OS threads
//! wait on a `Mutex<usize>` + `Condvar` counting semaphore (`notify_all` on the release).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::common::peers::may_spawn;

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Parked {
    /// Tasks.
    pub n: usize,
    /// Phase times in nanoseconds: spawn, first run to the park, release and join.
    pub spawn_ns: f64,
    pub run_ns: f64,
    pub release_ns: f64,
    /// `VmRSS` and `VmPTE` (KiB) before the spawns and with every task parked.
    pub rss0: f64,
    pub rss1: f64,
    pub pte0: f64,
    pub pte1: f64,
}

/// The field names of [`Parked`]'s result line, in [`Parked::fields`] order.
pub const FIELDS: [&str; 8] = [
    "n",
    "spawn_ns",
    "run_ns",
    "release_ns",
    "rss0",
    "rss1",
    "pte0",
    "pte1",
];

impl Parked {
    /// The values, in [`FIELDS`] order.
    pub fn fields(&self) -> [f64; 8] {
        [
            self.n as f64,
            self.spawn_ns,
            self.run_ns,
            self.release_ns,
            self.rss0,
            self.rss1,
            self.pte0,
            self.pte1,
        ]
    }

    /// The inverse of [`Parked::fields`].
    pub fn from_fields(f: [f64; 8]) -> Parked {
        Parked {
            n: f[0] as usize,
            spawn_ns: f[1],
            run_ns: f[2],
            release_ns: f[3],
            rss0: f[4],
            rss1: f[5],
            pte0: f[6],
            pte1: f[7],
        }
    }

    /// Total time, seconds.
    pub fn total_s(&self) -> f64 {
        (self.spawn_ns + self.run_ns + self.release_ns) * 1e-9
    }

    /// Nanoseconds per task of a phase (or of all, from [`Parked::total_s`]).
    pub fn per_task(&self, ns: f64) -> f64 {
        ns / self.n as f64
    }

    /// Resident memory per parked task, KiB.
    pub fn rss_per_task(&self) -> f64 {
        (self.rss1 - self.rss0) / self.n as f64
    }

    /// Page-table memory per parked task, bytes.
    pub fn pte_per_task(&self) -> f64 {
        (self.pte1 - self.pte0) * 1024.0 / self.n as f64
    }
}

/// `(VmRSS, VmPTE)` of this process, KiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmPTE:"))
}

/// The clock and memory readings of one run, turned into a [`Parked`].
struct Marks {
    n: usize,
    start: Instant,
    mem0: (f64, f64),
    spawned: Option<Instant>,
    parked: Option<Instant>,
    mem1: (f64, f64),
    released: Option<Instant>,
}

impl Marks {
    /// Reads the memory, then starts the clock.
    fn start(n: usize) -> Marks {
        let mem0 = memory();
        Marks {
            n,
            start: Instant::now(),
            mem0,
            spawned: None,
            parked: None,
            mem1: (0.0, 0.0),
            released: None,
        }
    }

    /// Every task spawned.
    fn spawned(&mut self) {
        self.spawned = Some(Instant::now());
    }

    /// Every task parked: the clock, then the memory (outside the phases' times).
    fn parked(&mut self) {
        self.parked = Some(Instant::now());
        self.mem1 = memory();
        self.released = Some(Instant::now());
    }

    /// Every task joined.
    fn done(self) -> Parked {
        let end = Instant::now();
        let (spawned, parked, released) = (
            self.spawned.expect("spawned"),
            self.parked.expect("parked"),
            self.released.expect("released"),
        );
        let ns = |a: Instant, b: Instant| (b - a).as_nanos() as f64;
        Parked {
            n: self.n,
            spawn_ns: ns(self.start, spawned),
            run_ns: ns(spawned, parked),
            release_ns: ns(released, end),
            rss0: self.mem0.0,
            rss1: self.mem1.0,
            pte0: self.mem0.1,
            pte1: self.mem1.1,
        }
    }
}

/// bobine, one domain, default stacks, `max_tasks(n + 16)` as in `examples/million_parked.rs`.
pub fn bobine(n: usize) -> Parked {
    bobine::Builder::new()
        .domains(1)
        .max_tasks(n + 16)
        .run(move || {
            // The gate, and the count of tasks that reached it.
            let shared = Arc::new((bobine::sync::Semaphore::new(0), AtomicUsize::new(0)));
            let mut marks = Marks::start(n);
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let s = shared.clone();
                    bobine::thread::spawn(move || {
                        s.1.fetch_add(1, Relaxed);
                        s.0.acquire();
                    })
                })
                .collect();
            marks.spawned();
            // One domain: a yield runs every task queued before it, up to its park.
            while shared.1.load(Relaxed) < n {
                bobine::thread::yield_now();
            }
            marks.parked();
            for _ in 0..n {
                shared.0.release();
            }
            for t in tasks {
                t.join().expect("a parked task ends");
            }
            marks.done()
        })
}

/// tokio current-thread: `tokio::spawn`ed tasks awaiting a `tokio::sync::Semaphore`.
pub fn tokio(n: usize) -> Parked {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        tokio::spawn(async move {
            let shared = Arc::new((tokio::sync::Semaphore::new(0), AtomicUsize::new(0)));
            let mut marks = Marks::start(n);
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let s = shared.clone();
                    tokio::spawn(async move {
                        s.1.fetch_add(1, Relaxed);
                        s.0.acquire().await.expect("gate open").forget();
                    })
                })
                .collect();
            marks.spawned();
            while shared.1.load(Relaxed) < n {
                tokio::task::yield_now().await;
            }
            marks.parked();
            shared.0.add_permits(n);
            for t in tasks {
                t.await.expect("a parked task ends");
            }
            marks.done()
        })
        .await
        .expect("driver task panicked")
    })
}

/// may, one worker, default stacks: coroutines waiting on a `may::sync::Semphore`. may puts
/// spawned coroutines on a global queue that its worker reads only when its local queue is
/// empty, so a driver yielding in a loop would never let them run: the driver waits instead on
/// a second semaphore, posted by the last task to arrive.
pub fn may(n: usize) -> Parked {
    use may::sync::Semphore;
    may_spawn(move || {
        // The gate, the count of tasks that reached it, and "all arrived".
        let shared = Arc::new((Semphore::new(0), AtomicUsize::new(0), Semphore::new(0)));
        let mut marks = Marks::start(n);
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let s = shared.clone();
                may_spawn(move || {
                    if s.1.fetch_add(1, Relaxed) + 1 == n {
                        s.2.post();
                    }
                    s.0.wait();
                })
            })
            .collect();
        marks.spawned();
        shared.2.wait();
        marks.parked();
        for _ in 0..n {
            shared.0.post();
        }
        for t in tasks {
            t.join().expect("a parked coroutine ends");
        }
        marks.done()
    })
    .join()
    .expect("driver coroutine panicked")
}

/// OS threads (default 2 MiB stacks) waiting on a `Mutex<usize>` + `Condvar` semaphore; they
/// start running as they are spawned, so the "first run" phase is only the wait for the last
/// ones to reach the gate.
pub fn std(n: usize) -> Parked {
    // Permits, the condition variable, and the count of threads that reached the gate.
    let shared = Arc::new((Mutex::new(0usize), Condvar::new(), AtomicUsize::new(0)));
    let mut marks = Marks::start(n);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let s = shared.clone();
            std::thread::spawn(move || {
                s.2.fetch_add(1, Relaxed);
                let mut permits = s.0.lock().unwrap();
                while *permits == 0 {
                    permits = s.1.wait(permits).unwrap();
                }
                *permits -= 1;
            })
        })
        .collect();
    marks.spawned();
    while shared.2.load(Relaxed) < n {
        std::thread::yield_now();
    }
    marks.parked();
    *shared.0.lock().unwrap() += n;
    shared.1.notify_all();
    for t in threads {
        t.join().expect("a parked thread ends");
    }
    marks.done()
}
