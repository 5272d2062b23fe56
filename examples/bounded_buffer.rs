//! Ports the textbook OCaml bounded buffer: a queue of fixed capacity guarded by one `Mutex`,
//! with two `Condition`s, `not_full` (producers wait on it) and `not_empty` (consumers wait on
//! it). Two producers and two consumers share it; every value must be taken exactly once, and
//! each producer's values must come out in the order it put them.
//!
//! The OCaml original, line for line:
//!
//! ```ocaml
//! let put b x =
//!   Mutex.lock b.m;
//!   while Queue.length b.q >= b.size do Condition.wait b.not_full b.m done;
//!   Queue.push x b.q;
//!   Condition.signal b.not_empty;
//!   Mutex.unlock b.m
//!
//! let take b =
//!   Mutex.lock b.m;
//!   while Queue.is_empty b.q do Condition.wait b.not_empty b.m done;
//!   let x = Queue.pop b.q in
//!   Condition.signal b.not_full;
//!   Mutex.unlock b.m;
//!   x
//! ```
//!
//! Run with `cargo run --example bounded_buffer`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as StdMutex};

use bobine::ocaml::{condition, mutex, thread};

/// An item: `Some((producer, sequence number))`, or `None` to tell a consumer to stop.
pub type Item = Option<(usize, u64)>;

/// What a run of the buffer observed.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Items put by the producers (sentinels excluded).
    pub produced: u64,
    /// Items taken by the consumers (sentinels excluded).
    pub consumed: u64,
    /// How many times each produced item was taken, by producer then sequence number.
    pub times_taken: Vec<Vec<u32>>,
    /// Whether, in the order items were taken, each producer's items came in sequence.
    pub producers_in_order: bool,
    /// Whether each consumer saw each producer's items in increasing order.
    pub consumers_saw_order: bool,
    /// The largest number of items ever in the buffer.
    pub max_len: usize,
}

/// The shared buffer. `q` is OCaml's mutable `Queue.t`: the `std` mutex around it only
/// satisfies Rust's aliasing rules and is never contended, since every access happens with
/// the OCaml mutex `m` held.
#[derive(Clone)]
struct Buffer {
    q: Arc<StdMutex<VecDeque<Item>>>,
    size: usize,
    m: mutex::T,
    not_full: condition::T,
    not_empty: condition::T,
    /// Every item taken, in the order it was taken (appended under `m`).
    taken: Arc<StdMutex<Vec<(usize, usize, u64)>>>,
    max_len: Arc<StdMutex<usize>>,
}

impl Buffer {
    fn new(size: usize) -> Buffer {
        Buffer {
            q: Arc::new(StdMutex::new(VecDeque::new())),
            size,
            m: mutex::create(),
            not_full: condition::create(),
            not_empty: condition::create(),
            taken: Arc::new(StdMutex::new(Vec::new())),
            max_len: Arc::new(StdMutex::new(0)),
        }
    }

    fn len(&self) -> usize {
        self.q.lock().unwrap().len()
    }

    fn put(&self, x: Item) {
        mutex::lock(&self.m);
        while self.len() >= self.size {
            condition::wait(&self.not_full, &self.m);
        }
        let mut q = self.q.lock().unwrap();
        q.push_back(x);
        let mut max = self.max_len.lock().unwrap();
        *max = (*max).max(q.len());
        drop((q, max));
        condition::signal(&self.not_empty);
        mutex::unlock(&self.m);
    }

    fn take(&self, consumer: usize) -> Item {
        mutex::lock(&self.m);
        while self.len() == 0 {
            condition::wait(&self.not_empty, &self.m);
        }
        let x = self.q.lock().unwrap().pop_front().expect("not empty");
        if let Some((p, i)) = x {
            self.taken.lock().unwrap().push((consumer, p, i));
        }
        condition::signal(&self.not_full);
        mutex::unlock(&self.m);
        x
    }
}

/// Runs `producers` producers putting `items` items each and `consumers` consumers through a
/// buffer of capacity `size`; call it inside a runtime. When the producers are done, the main
/// thread puts one `None` per consumer.
pub fn simulate(producers: usize, consumers: usize, items: u64, size: usize) -> Report {
    let b = Buffer::new(size);
    let ps: Vec<_> = (0..producers)
        .map(|p| {
            thread::create(
                move |b: Buffer| {
                    for i in 0..items {
                        b.put(Some((p, i)));
                        if i % 7 == 0 {
                            thread::yield_();
                        }
                    }
                },
                b.clone(),
            )
        })
        .collect();
    let cs: Vec<_> = (0..consumers)
        .map(|c| thread::create(move |b: Buffer| while b.take(c).is_some() {}, b.clone()))
        .collect();
    ps.iter().for_each(thread::join);
    for _ in 0..consumers {
        b.put(None);
    }
    cs.iter().for_each(thread::join);

    let taken = b.taken.lock().unwrap();
    let mut times_taken = vec![vec![0u32; items as usize]; producers];
    let mut next = vec![0u64; producers];
    let mut producers_in_order = true;
    let mut seen_by = vec![vec![None::<u64>; producers]; consumers];
    let mut consumers_saw_order = true;
    for &(c, p, i) in taken.iter() {
        times_taken[p][i as usize] += 1;
        producers_in_order &= i == next[p];
        next[p] = i + 1;
        consumers_saw_order &= seen_by[c][p].is_none_or(|last| last < i);
        seen_by[c][p] = Some(i);
    }
    let max_len = *b.max_len.lock().unwrap();
    Report {
        produced: producers as u64 * items,
        consumed: taken.len() as u64,
        times_taken,
        producers_in_order,
        consumers_saw_order,
        max_len,
    }
}

fn main() {
    let (producers, consumers, items, size) = (2, 2, 1000, 4);
    let r = bobine::run(|| simulate(producers, consumers, items, size));
    let exactly_once = r
        .times_taken
        .iter()
        .all(|per_producer| per_producer.iter().all(|&n| n == 1));
    println!(
        "bounded buffer of capacity {size}: {producers} producers x {items} items, {consumers} consumers"
    );
    println!(
        "produced {}, consumed {}, each item taken exactly once: {exactly_once}",
        r.produced, r.consumed
    );
    println!(
        "each producer's items taken in order: {}",
        r.producers_in_order && r.consumers_saw_order
    );
    println!("capacity never exceeded: {}", r.max_len <= size);
}
