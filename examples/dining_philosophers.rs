//! Ports the dining philosophers as OCaml thread programs write them: five philosophers around
//! a table, one `Mutex` per fork, each philosopher a `Thread` that thinks, takes its two forks,
//! eats, and puts them down, a fixed number of times. Two classic ways to never deadlock:
//!
//! - **ordered forks**: every philosopher takes the lower-numbered of its two forks first, so
//!   no cycle of philosophers each holding one fork can form;
//! - **a waiter**: a `Semaphore.Counting` with four seats lets at most four philosophers reach
//!   for forks at once, so one of them always gets both.
//!
//! The run counts every meal and checks that no fork is ever held by two philosophers.
//!
//! Run with `cargo run --example dining_philosophers`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bobine::ocaml::semaphore::counting;
use bobine::ocaml::{mutex, thread};

/// How the philosophers avoid deadlock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Take the lower-numbered fork first.
    OrderedForks,
    /// Left fork then right fork, but only with one of `n - 1` seats from a waiter semaphore.
    Waiter,
}

/// What a dinner observed.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Meals eaten by each philosopher.
    pub meals: Vec<u64>,
    /// Times a philosopher picked up a fork that another philosopher was holding.
    pub shared_forks: u64,
}

/// A fork: the OCaml mutex, and a flag that catches two holders at once.
#[derive(Clone)]
struct Fork {
    m: mutex::T,
    in_use: Arc<AtomicBool>,
}

/// Seats `n` philosophers who each eat `meals` times; call it inside a runtime.
pub fn dine(n: usize, meals: u64, strategy: Strategy) -> Report {
    let forks: Vec<Fork> = (0..n)
        .map(|_| Fork {
            m: mutex::create(),
            in_use: Arc::new(AtomicBool::new(false)),
        })
        .collect();
    let eaten: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let shared = Arc::new(AtomicU64::new(0));
    let seats = counting::make(n as i64 - 1);
    let philosophers: Vec<_> = (0..n)
        .map(|i| {
            let (left, right) = (forks[i].clone(), forks[(i + 1) % n].clone());
            let (first, second) = match strategy {
                Strategy::OrderedForks if (i + 1) % n < i => (right, left),
                _ => (left, right),
            };
            let (eaten, shared, seats) = (eaten.clone(), shared.clone(), seats.clone());
            thread::create(
                move |i: usize| {
                    let pick_up = |f: &Fork| {
                        mutex::lock(&f.m);
                        if f.in_use.swap(true, Ordering::SeqCst) {
                            shared.fetch_add(1, Ordering::SeqCst);
                        }
                    };
                    let put_down = |f: &Fork| {
                        f.in_use.store(false, Ordering::SeqCst);
                        mutex::unlock(&f.m);
                    };
                    for _ in 0..meals {
                        thread::yield_(); // think
                        if strategy == Strategy::Waiter {
                            counting::acquire(&seats);
                        }
                        pick_up(&first);
                        thread::yield_(); // the neighbours reach for their forks meanwhile
                        pick_up(&second);
                        eaten[i].fetch_add(1, Ordering::SeqCst);
                        thread::yield_(); // eat
                        put_down(&second);
                        put_down(&first);
                        if strategy == Strategy::Waiter {
                            counting::release(&seats);
                        }
                    }
                },
                i,
            )
        })
        .collect();
    philosophers.iter().for_each(thread::join);
    Report {
        meals: eaten.iter().map(|m| m.load(Ordering::SeqCst)).collect(),
        shared_forks: shared.load(Ordering::SeqCst),
    }
}

fn main() {
    let (n, meals) = (5, 100);
    for strategy in [Strategy::OrderedForks, Strategy::Waiter] {
        let r = bobine::run(|| dine(n, meals, strategy));
        let total: u64 = r.meals.iter().sum();
        println!(
            "{strategy:?}: {n} philosophers ate {meals} meals each ({total} in all): {}; \
             a fork was never held by two: {}",
            r.meals.iter().all(|&m| m == meals),
            r.shared_forks == 0
        );
    }
}
