//! The event programs in `examples/` (the OCaml `Event` reference program, the CML prime
//! sieve, the account server) run as tests on one and several domains. The examples' own logic
//! is compiled in here, so what the examples print is what these tests check.

mod common;

#[path = "../examples/account_server.rs"]
#[allow(dead_code)]
mod account_server;
#[path = "../examples/ocaml_event_reference.rs"]
#[allow(dead_code)]
mod ocaml_event_reference;
#[path = "../examples/prime_sieve.rs"]
#[allow(dead_code)]
mod prime_sieve;

use common::tasks::on_domains;

/// Checks one run of the reference program: both `f` threads printed `before` then `during`,
/// exactly one printed its `after` line with `hello`, and `g` started and ended.
fn check_reference_output(lines: &[String], what: &str) {
    let at = |line: &str| lines.iter().position(|l| l == line);
    let count = |line: &str| lines.iter().filter(|l| *l == line).count();
    for id in [1, 2] {
        let before = format!("-------- before -------{id}");
        let during = format!("-------- during -------{id}");
        assert_eq!(count(&before), 1, "{what}: {lines:?}");
        assert_eq!(count(&during), 1, "{what}: {lines:?}");
        assert!(at(&before) < at(&during), "{what}: {lines:?}");
    }
    let afters: Vec<(usize, &String)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("-------- after -------"))
        .collect();
    assert_eq!(afters.len(), 1, "{what}: exactly one receiver: {lines:?}");
    let (i, after) = afters[0];
    let id = [1, 2]
        .into_iter()
        .find(|id| *after == format!("hello {id} -------- after -------{id}"))
        .unwrap_or_else(|| panic!("{what}: unexpected line {after:?}"));
    assert!(
        at(&format!("-------- during -------{id}")) < Some(i),
        "{what}"
    );
    assert!(at("Start of 3").is_some(), "{what}: {lines:?}");
    assert!(at("Start of 3") < at("End of 3"), "{what}: {lines:?}");
    assert_eq!(lines.len(), 7, "{what}: {lines:?}");
}

/// The OCaml `Event` reference program on one domain: exactly one receiver gets `hello`.
#[test]
fn reference_program_delivers_hello_to_exactly_one_receiver_on_one_domain() {
    common::watchdog(60, "reference_program_on_one_domain", || {
        let lines = on_domains(1, || ocaml_event_reference::program(1.0, false));
        check_reference_output(&lines, "one domain");
    });
}

/// The OCaml `Event` reference program on three domains: exactly one receiver gets `hello`.
#[test]
fn reference_program_delivers_hello_to_exactly_one_receiver_on_three_domains() {
    common::watchdog(60, "reference_program_on_three_domains", || {
        let lines = on_domains(3, || ocaml_event_reference::program(1.0, false));
        check_reference_output(&lines, "three domains");
    });
}

/// The primes below `limit`, by a plain sieve of Eratosthenes.
fn primes_below(limit: usize) -> Vec<u64> {
    let mut composite = vec![false; limit];
    let mut primes = Vec::new();
    for n in 2..limit {
        if !composite[n] {
            primes.push(n as u64);
            (n * n..limit).step_by(n).for_each(|m| composite[m] = true);
        }
    }
    primes
}

/// The CML prime sieve gives the first 100 primes, on one, two and three domains.
#[test]
fn prime_sieve_gives_the_first_hundred_primes() {
    common::watchdog(60, "prime_sieve_gives_the_first_hundred_primes", || {
        let expected: Vec<u64> = primes_below(1000).into_iter().take(100).collect();
        assert_eq!(expected.len(), 100);
        assert_eq!(expected[99], 541);
        for domains in [1, 2, 3] {
            let primes = on_domains(domains, || prime_sieve::first_primes(100));
            assert_eq!(primes, expected, "on {domains} domain(s)");
        }
    });
}

/// The account server's final balance is the sum of all deposits, and its replies are consistent.
#[test]
fn account_server_balance_is_the_sum_of_all_puts() {
    const CLIENTS: u64 = 6;
    const PUTS: u64 = 150;
    common::watchdog(60, "account_server_balance_is_the_sum_of_all_puts", || {
        for domains in [1, 2, 3] {
            let r = on_domains(domains, || account_server::simulate(100, CLIENTS, PUTS));
            let what = format!("on {domains} domain(s): {r:?}");
            assert_eq!(r.stats.balance, r.expected_balance, "{what}");
            assert_eq!(r.stats.puts, CLIENTS * PUTS, "{what}");
            assert_eq!(r.gets_asked, CLIENTS * PUTS, "{what}");
            assert_eq!(r.stats.gets_served, r.gets_answered, "{what}");
            assert_eq!(
                r.stats.gets_served + r.stats.gets_abandoned,
                r.gets_asked,
                "{what}"
            );
            // Every fifth read is offered against `always`: at least the other four answer.
            assert!(r.gets_answered >= CLIENTS * PUTS * 4 / 5, "{what}");
            assert!(r.reads_consistent, "{what}");
            assert!(r.max_read <= r.stats.balance, "{what}");
        }
    });
}
