//! Runtime configuration from the builder and the environment (`BOBINE_DOMAINS`,
//! `BOBINE_STACK_SIZE`), checked in child processes so the variables do not leak into other
//! tests.

mod common;

/// Set in the environment of a child run to make the test run its child body.
const CHILD_ENV: &str = "BOBINE_CONFIG_CHILD";

/// How many domain threads this process has. A new thread names itself once it runs, so
/// the count is read until it reaches `expect` (or 5 s pass), then read once more after a pause
/// to catch any extra thread.
fn domain_threads(expect: usize) -> usize {
    let count = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("bobine-domain-"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while count() < expect && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    count()
}

/// `BOBINE_DOMAINS=3` starts three domains: the caller plus two domain threads.
#[test]
fn domains_from_the_environment() {
    if common::child::is_child(CHILD_ENV) {
        let domains = bobine::run(|| domain_threads(2));
        println!("domain threads: {domains}");
        return;
    }
    let out = common::child::run(
        "domains_from_the_environment",
        &[(CHILD_ENV, "1"), ("BOBINE_DOMAINS", "3")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("domain threads: 2"), "{stdout}");
}

/// An explicit `Builder::domains` wins over `BOBINE_DOMAINS`.
#[test]
fn builder_wins_over_the_environment() {
    if common::child::is_child(CHILD_ENV) {
        let domains = bobine::Builder::new().domains(2).run(|| domain_threads(1));
        println!("domain threads: {domains}");
        return;
    }
    let out = common::child::run(
        "builder_wins_over_the_environment",
        &[(CHILD_ENV, "1"), ("BOBINE_DOMAINS", "4")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("domain threads: 1"), "{stdout}");
}

/// `BOBINE_STACK_SIZE=32K` is the default stack of tasks: a task that needs more overflows,
/// and the report names the size.
#[test]
fn stack_size_from_the_environment() {
    if common::child::is_child(CHILD_ENV) {
        bobine::Builder::new().domains(1).run(|| {
            #[inline(never)]
            fn dig(n: u32) -> u64 {
                let buf = std::hint::black_box([n as u8; 1024]);
                if n == 0 {
                    buf[7] as u64
                } else {
                    dig(n - 1) + buf[3] as u64
                }
            }
            let h = bobine::thread::spawn(|| dig(200));
            eprintln!("child: the task's id is {}", h.thread().id().as_u64());
            let _ = h.join();
        });
        return;
    }
    let out = common::child::run(
        "stack_size_from_the_environment",
        &[(CHILD_ENV, "1"), ("BOBINE_STACK_SIZE", "32K")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("child: the task's id is "))
        .expect("the child announces the task's id");
    assert!(
        stderr.contains(&format!(
            "task '<unnamed>' (id {id}) has overflowed its stack of 32 KiB"
        )),
        "{stderr}"
    );
}

/// A malformed `BOBINE_DOMAINS` is refused with a message that names the variable.
#[test]
fn malformed_environment_is_a_clear_error() {
    if common::child::is_child(CHILD_ENV) {
        bobine::run(|| ());
        return;
    }
    for bad in ["zero", "0", "-2", ""] {
        let out = common::child::run(
            "malformed_environment_is_a_clear_error",
            &[(CHILD_ENV, "1"), ("BOBINE_DOMAINS", bad)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "BOBINE_DOMAINS={bad:?} was accepted");
        assert!(
            stderr.contains("BOBINE_DOMAINS must be a positive integer"),
            "{stderr}"
        );
    }
}

/// Requested stack sizes are rounded up to whole pages and to the 16 KiB minimum, so tiny
/// requests still get a usable stack.
#[test]
fn tiny_stack_requests_get_the_minimum() {
    common::watchdog(30, "tiny_stack_requests_get_the_minimum", || {
        bobine::Builder::new().domains(1).stack_size(1).run(|| {
            let h = bobine::thread::Builder::new().stack_size(100).spawn(|| {
                let buf = std::hint::black_box([1u8; 4096]);
                buf.iter().map(|&b| b as u32).sum::<u32>()
            });
            assert_eq!(h.unwrap().join().unwrap(), 4096);
        });
    });
}
