//! The OCaml thread programs ported in `examples/` (bounded buffer, dining philosophers,
//! producer/consumer), run as tests on one, two and three domains with every item and meal
//! counted. The examples' own logic is compiled in here, so what the examples print is what
//! these tests check.

mod common;

#[path = "../examples/bounded_buffer.rs"]
#[allow(dead_code)]
mod bounded_buffer;
#[path = "../examples/dining_philosophers.rs"]
#[allow(dead_code)]
mod dining_philosophers;
#[path = "../examples/producer_consumer.rs"]
#[allow(dead_code)]
mod producer_consumer;

use common::tasks::on_domains;
use dining_philosophers::Strategy;

/// Bounded buffer (one mutex, `not_full` and `not_empty`), two producers and two consumers:
/// every value is taken exactly once, each producer's values in order, the capacity is never
/// exceeded.
#[test]
fn bounded_buffer_takes_every_value_once_and_in_order() {
    const ITEMS: u64 = 1000;
    common::watchdog(60, "bounded_buffer", || {
        for (domains, size) in [(1, 1), (1, 4), (2, 4), (3, 2)] {
            let r = on_domains(domains, || bounded_buffer::simulate(2, 2, ITEMS, size));
            let what = format!("{domains} domain(s), capacity {size}");
            assert_eq!(r.produced, 2 * ITEMS, "{what}");
            assert_eq!(r.consumed, 2 * ITEMS, "{what}");
            assert_eq!(r.times_taken, vec![vec![1; ITEMS as usize]; 2], "{what}");
            assert!(
                r.producers_in_order,
                "{what}: a producer's values out of order"
            );
            assert!(
                r.consumers_saw_order,
                "{what}: a consumer saw values out of order"
            );
            assert!(
                (1..=size).contains(&r.max_len),
                "{what}: {} items in the buffer",
                r.max_len
            );
        }
    });
}

/// Dining philosophers with ordered fork acquisition: five philosophers each eat 200 times,
/// nobody deadlocks, no fork is ever held by two.
#[test]
fn dining_philosophers_with_ordered_forks_never_deadlock() {
    common::watchdog(60, "dining_philosophers_with_ordered_forks", || {
        for domains in [1, 2, 3] {
            let r = on_domains(domains, || {
                dining_philosophers::dine(5, 200, Strategy::OrderedForks)
            });
            assert_eq!(r.meals, [200; 5], "on {domains} domain(s)");
            assert_eq!(r.shared_forks, 0, "on {domains} domain(s)");
        }
    });
}

/// Dining philosophers with a waiter semaphore of four seats: five philosophers each eat 200
/// times, nobody deadlocks, no fork is ever held by two.
#[test]
fn dining_philosophers_with_a_waiter_never_deadlock() {
    common::watchdog(60, "dining_philosophers_with_a_waiter", || {
        for domains in [1, 2, 3] {
            let r = on_domains(domains, || {
                dining_philosophers::dine(5, 200, Strategy::Waiter)
            });
            assert_eq!(r.meals, [200; 5], "on {domains} domain(s)");
            assert_eq!(r.shared_forks, 0, "on {domains} domain(s)");
        }
    });
}

/// Producer/consumer over an unbounded queue, a mutex and a condition: every item produced is
/// consumed exactly once, with more consumers than producers and the other way round.
#[test]
fn producer_consumer_consumes_every_item_exactly_once() {
    const ITEMS: u64 = 1000;
    common::watchdog(60, "producer_consumer", || {
        for (domains, producers, consumers) in [(1, 3, 3), (2, 1, 4), (2, 4, 1), (3, 3, 2)] {
            let r = on_domains(domains, || {
                producer_consumer::run(producers, consumers, ITEMS)
            });
            let what = format!("{domains} domain(s), {producers} producers, {consumers} consumers");
            assert_eq!(r.produced, producers * ITEMS, "{what}");
            assert_eq!(r.consumed, producers * ITEMS, "{what}");
            assert_eq!(
                r.times_consumed,
                vec![1; (producers * ITEMS) as usize],
                "{what}"
            );
        }
    });
}
