//! Ports the OCaml producer/consumer program of the threads library's classic examples: an
//! unbounded queue guarded by a `Mutex`, consumers waiting on a `Condition` while it is empty,
//! producers signalling it after each push; when every producer is done the main thread sets a
//! `finished` flag and broadcasts, and the consumers drain the queue and stop. Every item
//! produced must be consumed exactly once: the run counts them.
//!
//! Run with `cargo run --example producer_consumer`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;

use bobine::ocaml::{condition, mutex, thread};

/// What a run observed.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Items pushed by all producers.
    pub produced: u64,
    /// Items popped by all consumers.
    pub consumed: u64,
    /// How many times each item (numbered `producer * items + i`) was consumed.
    pub times_consumed: Vec<u32>,
}

/// The OCaml program's shared state. The `std` mutex only satisfies Rust's aliasing rules: it
/// is touched only with the OCaml mutex `m` held, so it is never contended.
#[derive(Clone)]
struct Shared {
    m: mutex::T,
    nonempty: condition::T,
    state: Arc<StdMutex<State>>,
}

struct State {
    queue: VecDeque<u64>,
    finished: bool,
    produced: u64,
}

/// Runs `producers` producers of `items` items each and `consumers` consumers; call it inside
/// a runtime.
pub fn run(producers: u64, consumers: usize, items: u64) -> Report {
    let s = Shared {
        m: mutex::create(),
        nonempty: condition::create(),
        state: Arc::new(StdMutex::new(State {
            queue: VecDeque::new(),
            finished: false,
            produced: 0,
        })),
    };
    let ps: Vec<_> = (0..producers)
        .map(|p| {
            thread::create(
                move |s: Shared| {
                    for i in 0..items {
                        mutex::lock(&s.m);
                        let mut st = s.state.lock().unwrap();
                        st.queue.push_back(p * items + i);
                        st.produced += 1;
                        drop(st);
                        condition::signal(&s.nonempty);
                        mutex::unlock(&s.m);
                        if i % 5 == 0 {
                            thread::yield_();
                        }
                    }
                },
                s.clone(),
            )
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let cs: Vec<_> = (0..consumers)
        .map(|_| {
            let tx = tx.clone();
            thread::create(
                move |s: Shared| {
                    let mut mine = Vec::new();
                    loop {
                        mutex::lock(&s.m);
                        loop {
                            let st = s.state.lock().unwrap();
                            if !st.queue.is_empty() || st.finished {
                                break;
                            }
                            drop(st);
                            condition::wait(&s.nonempty, &s.m);
                        }
                        let next = s.state.lock().unwrap().queue.pop_front();
                        mutex::unlock(&s.m);
                        match next {
                            Some(item) => mine.push(item),
                            None => break, // finished and drained
                        }
                    }
                    tx.send(mine).unwrap();
                },
                s.clone(),
            )
        })
        .collect();
    drop(tx);
    ps.iter().for_each(thread::join);
    mutex::lock(&s.m);
    s.state.lock().unwrap().finished = true;
    condition::broadcast(&s.nonempty);
    mutex::unlock(&s.m);
    cs.iter().for_each(thread::join);

    let mut times_consumed = vec![0u32; (producers * items) as usize];
    let mut consumed = 0;
    for item in rx.iter().flatten() {
        times_consumed[item as usize] += 1;
        consumed += 1;
    }
    let produced = s.state.lock().unwrap().produced;
    Report {
        produced,
        consumed,
        times_consumed,
    }
}

fn main() {
    let (producers, consumers, items) = (3, 3, 1000);
    let r = bobine::run(|| run(producers, consumers, items));
    println!("{producers} producers x {items} items, {consumers} consumers");
    println!(
        "produced {}, consumed {}, every item consumed exactly once: {}",
        r.produced,
        r.consumed,
        r.times_consumed.iter().all(|&n| n == 1)
    );
}
