//! The dining philosophers on the Miou face, stopped by a timeout: the dinner (one `call`
//! child per philosopher, spread over the worker domains, forks as `miou::mutex`es) races a
//! timer with `await_first`. The timer wins, so `await_first` cancels the dinner, and with it
//! every philosopher, wherever it is blocked (taking a fork, eating, thinking): each unwinds,
//! puts down the forks it holds and leaves. When `await_first` returns, every philosopher has
//! left the table and every fork is free again.
//!
//! Run with `cargo run --release --example miou_philosophers [philosophers] [milliseconds]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bobine::miou::{self, mutex};

/// What a dinner observed.
#[derive(Debug)]
pub struct Report {
    /// Meals eaten by each philosopher.
    pub meals: Vec<u64>,
    /// Times a philosopher picked up a fork another one was holding (must be 0).
    pub shared_forks: u64,
    /// Philosophers still at the table when the timeout's `await_first` returned (must be 0).
    pub still_seated: usize,
    /// Whether every fork could be taken again afterwards.
    pub forks_free: bool,
}

/// A fork: Miou's mutex, and a flag that catches two holders at once.
struct Fork {
    m: mutex::T,
    held: AtomicBool,
}

/// Holds a fork until dropped, so a philosopher cancelled while eating puts it down.
struct Holding<'a>(&'a Fork);

impl<'a> Holding<'a> {
    fn take(fork: &'a Fork, shared: &'a AtomicU64) -> Holding<'a> {
        mutex::lock(&fork.m);
        if fork.held.swap(true, Ordering::SeqCst) {
            shared.fetch_add(1, Ordering::SeqCst);
        }
        Holding(fork)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.held.store(false, Ordering::SeqCst);
        mutex::unlock(&self.0.m);
    }
}

/// Counts a philosopher at the table until dropped (unwound by the cancellation included).
struct Seated(Arc<AtomicUsize>);

impl Drop for Seated {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How the race ended.
enum End {
    Timeout,
    /// The dinner cannot end by itself; kept to give the race its two sides' types.
    Finished,
}

/// Seats `n` philosophers for `time`, on `workers` worker domains, and reports.
pub fn dinner(n: usize, workers: usize, time: Duration) -> Report {
    assert!(n >= 2, "a dinner needs at least two philosophers");
    miou::run_with(workers, move || {
        let forks: Arc<Vec<Fork>> = Arc::new(
            (0..n)
                .map(|_| Fork {
                    m: mutex::create(),
                    held: AtomicBool::new(false),
                })
                .collect(),
        );
        let meals: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let shared = Arc::new(AtomicU64::new(0));
        let seated = Arc::new(AtomicUsize::new(0));

        let table = {
            let (forks, meals, shared, seated) =
                (forks.clone(), meals.clone(), shared.clone(), seated.clone());
            miou::call_cc(move || {
                let philosophers: Vec<_> = (0..n)
                    .map(|i| {
                        let (forks, meals, shared) = (forks.clone(), meals.clone(), shared.clone());
                        seated.fetch_add(1, Ordering::SeqCst);
                        let seat = Seated(seated.clone());
                        let philosopher = move || {
                            let _seat = seat;
                            // Ordered forks: the lower-numbered one first, so no cycle forms.
                            let (a, b) = (i.min((i + 1) % n), i.max((i + 1) % n));
                            loop {
                                bobine::thread::sleep(Duration::from_micros(50)); // think
                                let _first = Holding::take(&forks[a], &shared);
                                let _second = Holding::take(&forks[b], &shared);
                                meals[i].fetch_add(1, Ordering::Relaxed);
                                bobine::thread::sleep(Duration::from_micros(50)); // eat
                            }
                        };
                        if workers == 0 {
                            miou::call_cc(philosopher)
                        } else {
                            miou::call(philosopher)
                        }
                    })
                    .collect();
                for p in miou::await_all(philosophers) {
                    let _ = p;
                }
                End::Finished
            })
        };
        let timer = miou::call_cc(move || {
            bobine::thread::sleep(time);
            End::Timeout
        });
        let end = miou::await_first(vec![table, timer]);
        assert!(matches!(end, Ok(End::Timeout)), "only the timer ends");
        let still_seated = seated.load(Ordering::SeqCst);
        let forks_free = forks.iter().all(|f| {
            let free = mutex::try_lock(&f.m);
            if free {
                mutex::unlock(&f.m);
            }
            free && !f.held.load(Ordering::SeqCst)
        });
        Report {
            meals: meals.iter().map(|m| m.load(Ordering::SeqCst)).collect(),
            shared_forks: shared.load(Ordering::SeqCst),
            still_seated,
            forks_free,
        }
    })
}

#[allow(dead_code)]
fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(5, |a| a.parse().expect("philosophers"));
    let ms: u64 = args
        .next()
        .map_or(200, |a| a.parse().expect("milliseconds"));
    let r = dinner(n, 1, Duration::from_millis(ms));
    for (i, m) in r.meals.iter().enumerate() {
        println!("philosopher {i} ate {m} times");
    }
    println!(
        "after {ms} ms the timer won: {} philosophers still seated, forks free: {}, forks \
         shared: {}",
        r.still_seated, r.forks_free, r.shared_forks
    );
}
