//! `#[bobine::main]` and `#[bobine::test]`: the function runs as the main task of a runtime
//! built with the attribute's options, its value comes back as is, a panic fails the test, and
//! an `async fn` is driven by `block_on` in the main task. The refusals (unknown options,
//! parameters) are `compile_fail` examples in the attributes' documentation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The body runs in a task: the main task of its runtime, named "main" (a plain test thread
/// is named after the test).
#[bobine::test]
fn the_body_is_the_main_task() {
    assert_eq!(bobine::thread::current().name(), Some("main"));
    let h = bobine::thread::spawn(|| bobine::thread::current().name().map(str::to_owned));
    assert_eq!(h.join().unwrap(), None);
}

/// Spins until `n` tasks have arrived, for at most two seconds; true if they all did. Tasks
/// that spin without parking can only all arrive if they run on that many domains at once.
fn all_arrive(arrived: &AtomicUsize, n: usize) -> bool {
    arrived.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(2);
    while arrived.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

/// `domains = 2`: two tasks that never park meet, so two domains run them at once.
#[bobine::test(domains = 2)]
fn domains_option_gives_parallel_domains() {
    common::watchdog(30, "domains_option_gives_parallel_domains", || {
        let arrived = Arc::new(AtomicUsize::new(0));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let arrived = arrived.clone();
                bobine::thread::spawn(move || all_arrive(&arrived, 2))
            })
            .collect();
        for h in spinners {
            assert!(
                h.join().unwrap(),
                "the two spinning tasks never ran at once"
            );
        }
    });
}

/// `domains = 1`: the same two spinners cannot meet (the second starts only when the first
/// gives up), which shows the option reaches the runtime rather than the default.
#[bobine::test(domains = 1)]
fn domains_option_one_runs_tasks_in_turn() {
    common::watchdog(30, "domains_option_one_runs_tasks_in_turn", || {
        let arrived = Arc::new(AtomicUsize::new(0));
        let first = {
            let arrived = arrived.clone();
            bobine::thread::spawn(move || all_arrive(&arrived, 2))
        };
        let second = {
            let arrived = arrived.clone();
            bobine::thread::spawn(move || all_arrive(&arrived, 2))
        };
        assert!(
            !first.join().unwrap(),
            "one domain ran two spinning tasks at once"
        );
        assert!(second.join().unwrap());
    });
}

/// `stack_size` with an expression: a task uses 1 MiB of its stack (twice, in a debug build), which the default
/// (256 KiB) could not hold.
#[bobine::test(stack_size = 4 * 1024 * 1024)]
fn stack_size_option_reaches_the_tasks() {
    fn deep() -> u64 {
        let big = std::hint::black_box([7u8; 1 << 20]);
        big.iter().map(|&b| u64::from(b)).sum()
    }
    assert_eq!(deep(), 7 * (1 << 20));
    assert_eq!(bobine::thread::spawn(deep).join().unwrap(), 7 * (1 << 20));
}

/// A `Result` return type is kept: the test passes with `Ok` (an `Err` would fail it).
#[bobine::test]
fn a_result_comes_back() -> Result<(), String> {
    let h = bobine::thread::spawn(|| "ok".to_owned());
    let v = h.join().map_err(|_| "the task panicked".to_owned())?;
    if v == "ok" { Ok(()) } else { Err(v) }
}

/// A panic of the body propagates out of the runtime and fails the test.
#[bobine::test]
#[should_panic(expected = "out of the main task")]
fn a_panic_fails_the_test() {
    panic!("out of the main task");
}

/// An `async fn`: its `.await`s park the main task while other tasks of its one domain run
/// (here, the sender the await waits for).
#[bobine::test(domains = 1)]
async fn an_async_body_awaits_in_the_main_task() {
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let sender = bobine::thread::spawn(move || {
        bobine::thread::sleep(Duration::from_millis(10));
        tx.send(7).unwrap();
    });
    assert_eq!(rx.await.unwrap(), 7);
    sender.join().unwrap();
}

/// The attribute works on a nested `main`-like function too (any function without parameters),
/// and returns its value.
#[test]
fn main_attribute_runs_a_runtime_per_call() {
    #[bobine::main(domains = 1)]
    fn answer() -> u32 {
        assert_eq!(bobine::thread::current().name(), Some("main"));
        bobine::thread::spawn(|| 40).join().unwrap() + 2
    }
    assert_eq!(answer(), 42);
    assert_eq!(answer(), 42);
    // And the caller is still a plain thread.
    assert_ne!(bobine::thread::current().name(), Some("main"));
}
