//! Fork-join with Miou's `parallel`, two ways:
//!
//! - **counting primes**: the range is cut into many small chunks, `parallel` spreads them
//!   round-robin over the worker domains, and the counts are summed: compute-bound, so it
//!   scales with the cores;
//! - **a merge sort**: the input is cut into one chunk per worker, the chunks are sorted in
//!   parallel, then merged pairwise, each round of merges in parallel again, until one sorted
//!   vector is left. Vectors move between domains without copies, but cutting the input and
//!   merging copy it, and the sort is bound by memory bandwidth, which the cores share.
//!
//! It prints the time of each on one domain (the same code, sequentially) and with `parallel`
//! over the worker domains, and the speed-ups. Domain 0 never gets `parallel` work (Miou's
//! rule 4): it only waits, so on a machine with `c` cores use `c` workers.
//!
//! Run with `cargo run --release --example miou_parallel [millions of items] [workers]`.

use std::time::{Duration, Instant};

use bobine::miou;

/// Deterministic pseudo-random input (xorshift), so runs are comparable.
pub fn input(n: usize, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

/// Merges two sorted vectors.
fn merge(a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Sorts `v` with `parallel`: `chunks` sorted in parallel, then merged pairwise in parallel
/// rounds. Must run in a Miou task with at least one worker domain other than the caller's.
pub fn parallel_sort(v: Vec<u64>, chunks: usize) -> Vec<u64> {
    let chunks = chunks.max(1);
    let size = v.len().div_ceil(chunks).max(1);
    let mut v = v;
    let mut parts = Vec::with_capacity(chunks);
    while v.len() > size {
        let rest = v.split_off(size);
        parts.push(v);
        v = rest;
    }
    parts.push(v);
    let mut runs: Vec<Vec<u64>> = miou::parallel(
        |mut part: Vec<u64>| {
            part.sort_unstable();
            part
        },
        parts,
    )
    .into_iter()
    .map(|r| r.expect("a chunk sorts"))
    .collect();
    while runs.len() > 1 {
        let mut pairs = Vec::with_capacity(runs.len() / 2);
        let odd = if runs.len() % 2 == 1 {
            runs.pop()
        } else {
            None
        };
        while let (Some(b), Some(a)) = (runs.pop(), runs.pop()) {
            pairs.push((a, b));
        }
        runs = miou::parallel(|(a, b)| merge(a, b), pairs)
            .into_iter()
            .map(|r| r.expect("a merge"))
            .collect();
        runs.extend(odd);
    }
    runs.pop().unwrap_or_default()
}

/// Whether `n` is prime (trial division: deliberately compute-bound).
fn is_prime(n: u64) -> bool {
    n > 1 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// The primes below `limit`, counted in `chunks` ranges spread over the workers with
/// `parallel`. Must run in a Miou task with at least one worker domain other than the
/// caller's.
pub fn parallel_primes(limit: u64, chunks: u64) -> u64 {
    let chunks = chunks.max(1);
    let step = limit.div_ceil(chunks);
    let ranges: Vec<(u64, u64)> = (0..chunks)
        .map(|i| (i * step, ((i + 1) * step).min(limit)))
        .collect();
    miou::parallel(
        |(a, b)| (a..b).filter(|&n| is_prime(n)).count() as u64,
        ranges,
    )
    .into_iter()
    .map(|r| r.expect("a range counts"))
    .sum()
}

/// The primes below `limit`, counted on the calling domain.
pub fn primes(limit: u64) -> u64 {
    (0..limit).filter(|&n| is_prime(n)).count() as u64
}

/// Times of the prime count, one domain against `parallel` (medians of `rounds` runs).
pub fn measure_primes(limit: u64, workers: usize, rounds: usize) -> Timing {
    let mut one = Vec::new();
    let mut par = Vec::new();
    for _ in 0..rounds {
        let (t, expected) = miou::run_with(0, move || {
            let start = Instant::now();
            let n = primes(limit);
            (start.elapsed(), n)
        });
        one.push(t);
        let (t, got) = miou::run_with(workers, move || {
            let start = Instant::now();
            let n = parallel_primes(limit, 64);
            (start.elapsed(), n)
        });
        par.push(t);
        assert_eq!(got, expected, "the parallel count agrees");
    }
    one.sort();
    par.sort();
    Timing {
        one_domain: one[rounds / 2],
        parallel: par[rounds / 2],
    }
}

/// Times of one measurement.
pub struct Timing {
    /// The work on one domain.
    pub one_domain: Duration,
    /// The work with `parallel` over the worker domains.
    pub parallel: Duration,
}

/// Sorts `n` items both ways (each the median of `rounds` runs) and checks both agree.
pub fn measure(n: usize, workers: usize, rounds: usize) -> Timing {
    let data = input(n, 0x9e37_79b9_7f4a_7c15);
    let mut one = Vec::new();
    let mut par = Vec::new();
    for _ in 0..rounds {
        let d = data.clone();
        let (t, expected) = miou::run_with(0, move || {
            let start = Instant::now();
            let mut d = d;
            d.sort_unstable();
            (start.elapsed(), d)
        });
        one.push(t);
        let d = data.clone();
        let (t, got) = miou::run_with(workers, move || {
            let start = Instant::now();
            let s = parallel_sort(d, workers);
            (start.elapsed(), s)
        });
        par.push(t);
        assert!(
            got == expected,
            "the parallel sort agrees with sort_unstable"
        );
    }
    one.sort();
    par.sort();
    Timing {
        one_domain: one[rounds / 2],
        parallel: par[rounds / 2],
    }
}

#[allow(dead_code)]
fn main() {
    let mut args = std::env::args().skip(1);
    let millions: usize = args
        .next()
        .map_or(8, |a| a.parse().expect("millions of items"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers: usize = args.next().map_or(cores, |a| a.parse().expect("workers"));
    let report = |what: &str, t: Timing| {
        println!(
            "{what}: one domain {:.1} ms, parallel over {workers} workers {:.1} ms: speed-up \
             {:.2}x (medians of 5; {cores} cores)",
            t.one_domain.as_secs_f64() * 1e3,
            t.parallel.as_secs_f64() * 1e3,
            t.one_domain.as_secs_f64() / t.parallel.as_secs_f64()
        )
    };
    report(
        "counting primes below 3 M in 64 ranges",
        measure_primes(3_000_000, workers, 5),
    );
    report(
        &format!("merge sort of {millions} M u64"),
        measure(millions * 1_000_000, workers, 5),
    );
}
