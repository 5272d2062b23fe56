//! Miou's rules (`bobine::miou`'s module doc), one named test each: the task
//! tree, the errors that name the rule broken, orphans, ownership and cancellation of
//! subtrees.

mod common;

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bobine::miou::{self, Error, Spawn, ownership};
use common::panics::panic_text;
use common::watchdog;

/// The payload of a panic out of `f`, as a Miou error.
fn miou_error<T>(f: impl FnOnce() -> T) -> Error {
    let payload = catch_unwind(AssertUnwindSafe(f))
        .err()
        .expect("expected a panic");
    *payload
        .downcast::<Error>()
        .unwrap_or_else(|p| panic!("not a Miou error: {}", common::panics::payload_text(&*p)))
}

/// Sets a flag when dropped: proof that a task's destructors ran.
struct SetOnDrop(Arc<AtomicBool>);
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Rule 3: `call_cc` queues the child and the caller keeps running, so "World" comes first.
#[test]
fn call_cc_does_not_switch_world_before_hello() {
    watchdog(20, "call_cc order", || {
        let out = miou::run_with(0, || {
            let log = Rc::new(RefCell::new(Vec::new()));
            let l = log.clone();
            let p = miou::call_cc(move || l.borrow_mut().push("Hello"));
            log.borrow_mut().push("World");
            miou::await_exn(p);
            log.take()
        });
        assert_eq!(out, ["World", "Hello"]);
    });
}

/// Rule 3: with a yield before printing "World", the child runs first.
#[test]
fn a_yield_lets_the_child_run_hello_before_world() {
    watchdog(20, "yield order", || {
        let out = miou::run_with(0, || {
            let log = Rc::new(RefCell::new(Vec::new()));
            let l = log.clone();
            let p = miou::call_cc(move || l.borrow_mut().push("Hello"));
            miou::yield_();
            log.borrow_mut().push("World");
            miou::await_exn(p);
            log.take()
        });
        assert_eq!(out, ["Hello", "World"]);
    });
}

/// Rule 1: a task that returns with a child it forgot aborts the run with Still_has_children.
#[test]
fn forgetting_a_child_aborts_the_run() {
    watchdog(20, "forgotten child", || {
        let e = miou_error(|| {
            miou::run_with(0, || {
                let _forgotten = miou::call_cc(|| ());
            })
        });
        assert!(matches!(e, Error::StillHasChildren), "{e}");
        assert_eq!(e.to_string(), "Miou.Still_has_children");
    });
}

/// Rule 1: a finished child that was never awaited still counts as alive.
#[test]
fn a_finished_but_unawaited_child_still_counts() {
    watchdog(20, "finished unawaited", || {
        let e = miou_error(|| {
            miou::run_with(0, || {
                let p = miou::call_cc(|| ());
                while !p.is_finished() {
                    miou::yield_();
                }
            })
        });
        assert!(matches!(e, Error::StillHasChildren), "{e}");
    });
}

/// Rule 1: a child that returns the promise of its own un-awaited child aborts the run, even
/// while the main task is blocked in `await_`; every task has ended when `run` panics.
#[test]
fn returning_an_unawaited_grandchild_aborts_the_run() {
    watchdog(20, "grandchild", || {
        let grandchild_dropped = Arc::new(AtomicBool::new(false));
        let flag = grandchild_dropped.clone();
        let e = miou_error(move || {
            miou::run_with(1, move || {
                let p = miou::call(move || {
                    let guard = SetOnDrop(flag);
                    miou::call_cc(move || {
                        let _g = guard;
                        bobine::thread::sleep(Duration::from_secs(3600));
                    })
                });
                let _grandchild = miou::await_(p);
                unreachable!("the run is aborted while the main task awaits");
            })
        });
        assert!(matches!(e, Error::StillHasChildren), "{e}");
        assert!(
            grandchild_dropped.load(Ordering::SeqCst),
            "the grandchild was cancelled and its destructors ran"
        );
    });
}

/// Rule 2: a sibling awaiting a sibling (its promise smuggled through shared state) panics
/// with Not_a_child. Awaiting consumes the promise, so the real parent has lost it: the run
/// then ends with Still_has_children (rule 1), once every task has ended.
#[test]
fn a_sibling_awaiting_a_sibling_is_not_a_child() {
    watchdog(20, "sibling", || {
        let seen = Arc::new(Mutex::new(String::new()));
        let s = seen.clone();
        let e = miou_error(move || {
            miou::run_with(0, move || {
                let slot = Rc::new(RefCell::new(Some(miou::call_cc(|| 7))));
                let sibling = miou::call_cc(move || {
                    let p = slot.borrow_mut().take().unwrap();
                    miou::await_(p)
                });
                let e = miou::await_(sibling).unwrap_err();
                *s.lock().unwrap() = e.to_string();
            })
        });
        assert_eq!(*seen.lock().unwrap(), "Miou.Not_a_child");
        assert!(matches!(e, Error::StillHasChildren), "{e}");
    });
}

/// Rule 2: cancelling from another domain, with a promise smuggled through shared state,
/// panics with Not_a_child; the parent then awaits its child as usual.
#[test]
fn cancelling_from_another_domain_is_not_a_child() {
    watchdog(20, "cancel other domain", || {
        miou::run_with(1, || {
            let p = Arc::new(Mutex::new(Some(miou::call_cc(|| 1u8))));
            let q = p.clone();
            let stranger = miou::call(move || {
                let guard = q.lock().unwrap();
                miou_error(|| miou::cancel(guard.as_ref().unwrap())).to_string()
            });
            assert_eq!(miou::await_exn(stranger), "Miou.Not_a_child");
            let child = p.lock().unwrap().take().unwrap();
            assert_eq!(miou::await_exn(child), 1);
        });
    })
}

/// Rule 5: cancelling a child that has finished makes `await_` give Cancelled.
#[test]
fn cancel_of_a_finished_child_gives_cancelled() {
    watchdog(20, "cancel finished", || {
        miou::run_with(0, || {
            let p = miou::call_cc(|| 5);
            while !p.is_finished() {
                miou::yield_();
            }
            miou::cancel(&p);
            miou::cancel(&p); // twice is harmless
            let e = miou::await_(p).unwrap_err();
            assert!(matches!(e, Error::Cancelled));
            assert_eq!(e.to_string(), "Miou.Cancelled");
        });
    });
}

/// Rule 5: a child cancelled before it started never runs, and what its closure held is
/// dropped.
#[test]
fn a_child_cancelled_before_it_started_never_runs() {
    watchdog(20, "never started", || {
        let ran = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (r, d) = (ran.clone(), dropped.clone());
        miou::run_with(0, move || {
            let guard = SetOnDrop(d);
            let p = miou::call_cc(move || {
                let _g = guard;
                r.store(true, Ordering::SeqCst);
            });
            miou::cancel(&p);
            assert!(matches!(miou::await_(p), Err(Error::Cancelled)));
        });
        assert!(!ran.load(Ordering::SeqCst));
        assert!(dropped.load(Ordering::SeqCst));
    });
}

/// Rule 5: `cancel` returns once the whole subtree has ended and its destructors have run,
/// on several domains, while other tasks keep running.
#[test]
fn cancel_returns_once_the_subtree_is_dead() {
    watchdog(30, "cancel subtree", || {
        miou::run_with(2, || {
            let dropped = Arc::new(AtomicUsize::new(0));
            struct Count(Arc<AtomicUsize>);
            impl Drop for Count {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            let d = dropped.clone();
            let started = Arc::new(AtomicUsize::new(0));
            let s = started.clone();
            let p = miou::call(move || {
                let _c = Count(d.clone());
                let kids: Vec<_> = (0..4)
                    .map(|_| {
                        let (d, s) = (d.clone(), s.clone());
                        miou::call(move || {
                            let _c = Count(d.clone());
                            let gk = miou::call_cc(move || {
                                let _c = Count(d);
                                s.fetch_add(1, Ordering::SeqCst);
                                bobine::thread::sleep(Duration::from_secs(3600));
                            });
                            miou::await_exn(gk)
                        })
                    })
                    .collect();
                miou::await_all(kids);
            });
            while started.load(Ordering::SeqCst) < 4 {
                bobine::thread::sleep(Duration::from_millis(1));
            }
            // Another task keeps running meanwhile.
            let ticker = miou::call_cc(|| {
                for _ in 0..10 {
                    miou::yield_();
                }
                "ticked"
            });
            miou::cancel(&p);
            assert_eq!(dropped.load(Ordering::SeqCst), 1 + 4 + 4);
            assert!(matches!(miou::await_(p), Err(Error::Cancelled)));
            assert_eq!(miou::await_exn(ticker), "ticked");
        });
    });
}

/// Rule 2: only the parent may cancel.
#[test]
fn cancel_by_a_stranger_is_not_a_child() {
    watchdog(20, "cancel stranger", || {
        miou::run_with(0, || {
            let p = Rc::new(miou::call_cc(|| 3));
            let q = p.clone();
            let stranger = miou::call_cc(move || miou_error(|| miou::cancel(&q)).to_string());
            assert_eq!(miou::await_exn(stranger), "Miou.Not_a_child");
            let p = Rc::try_unwrap(p).unwrap();
            assert_eq!(miou::await_exn(p), 3);
        });
    });
}

/// Rule 1: a failing child with a forgotten grandchild is not checked: the grandchild is
/// cancelled, the parent sees the panic, the run goes on.
#[test]
fn a_failing_child_with_a_forgotten_grandchild() {
    watchdog(20, "failing child", || {
        let grandchild_dropped = Arc::new(AtomicBool::new(false));
        let flag = grandchild_dropped.clone();
        let out = miou::run_with(0, move || {
            let p = miou::call_cc(move || {
                let guard = SetOnDrop(flag);
                let _forgotten = miou::call_cc(move || {
                    let _g = guard;
                    bobine::thread::sleep(Duration::from_secs(3600));
                });
                miou::yield_();
                panic!("child fails");
            });
            match miou::await_(p) {
                Err(Error::Panic(payload)) => common::panics::payload_text(&*payload),
                other => panic!("expected a panic, got {other:?}"),
            }
        });
        assert_eq!(out, "child fails");
        assert!(grandchild_dropped.load(Ordering::SeqCst));
    });
}

/// Rule 4: nested `call`s land on worker domains, never on domain 0 nor on the caller's.
#[test]
fn nested_calls_run_on_other_worker_domains() {
    watchdog(30, "nested call", || {
        miou::run_with(3, || {
            assert_eq!(miou::domain::self_(), 0);
            assert_eq!(miou::domain::available(), 3);
            for _ in 0..50 {
                let p = miou::call(|| {
                    let outer = miou::domain::self_();
                    let inner = miou::await_exn(miou::call(miou::domain::self_));
                    (outer, inner)
                });
                let (outer, inner) = miou::await_exn(p);
                assert_ne!(outer, 0);
                assert_ne!(inner, 0);
                assert_ne!(inner, outer);
            }
        });
    });
}

/// Rule 4: with no worker domain other than the caller's, `call` and `parallel` panic with
/// No_domain_available.
#[test]
fn call_without_another_worker_is_no_domain_available() {
    watchdog(20, "no domain", || {
        miou::run_with(0, || {
            let e = miou_error(|| miou::call(|| ()));
            assert_eq!(e.to_string(), "Miou.No_domain_available");
            let e = miou_error(|| miou::parallel(|x: u8| x, vec![1]));
            assert!(matches!(e, Error::NoDomainAvailable));
        });
        miou::run_with(1, || {
            // From the only worker, there is no other.
            let p = miou::call(|| miou_error(|| miou::call(|| ())).to_string());
            assert_eq!(miou::await_exn(p), "Miou.No_domain_available");
        });
    });
}

/// Rule 4: `parallel` keeps input order and spreads round-robin over the workers.
#[test]
fn parallel_keeps_order_and_spreads_round_robin() {
    watchdog(30, "parallel", || {
        miou::run_with(2, || {
            let out = miou::parallel(
                |x: usize| (x * 10, miou::domain::self_()),
                (0..100).collect(),
            );
            for (i, r) in out.into_iter().enumerate() {
                let (v, d) = r.unwrap();
                assert_eq!(v, i * 10);
                assert_eq!(d, 1 + i % 2, "item {i} ran on domain {d}");
            }
            // A failing item is an Err at its place, the others are values.
            let out = miou::parallel(
                |x: u32| if x == 2 { panic!("two") } else { x },
                vec![1, 2, 3],
            );
            assert!(matches!(out[0], Ok(1)));
            assert!(matches!(out[1], Err(Error::Panic(_))));
            assert!(matches!(out[2], Ok(3)));
        });
    });
}

/// Rule 6: when both children have ended, `await_first` picks either: both are seen over
/// many runs.
#[test]
fn await_first_sees_both_winners() {
    watchdog(30, "await_first winners", || {
        miou::run_with(0, || {
            let mut seen = [0u32; 2];
            for _ in 0..200 {
                let ps = vec![miou::call_cc(|| 0usize), miou::call_cc(|| 1usize)];
                // Both are queued before this task parks, so both have ended when it wakes.
                let w = miou::await_first(ps).unwrap();
                seen[w] += 1;
            }
            assert!(seen[0] > 0 && seen[1] > 0, "winners seen: {seen:?}");
        });
    });
}

/// Rule 6: among ended children, `await_first` prefers a success to a failure.
#[test]
fn await_first_prefers_successes() {
    watchdog(30, "await_first success", || {
        miou::run_with(0, || {
            for _ in 0..50 {
                let ps = vec![
                    miou::call_cc(|| -> u8 { panic!("fails") }),
                    miou::call_cc(|| 1u8),
                ];
                assert_eq!(miou::await_first(ps).unwrap(), 1);
            }
        });
    });
}

/// Rule 6: `await_first` cancels the losers: their destructors have run when it returns.
#[test]
fn await_first_cancels_the_others() {
    watchdog(20, "await_first cancels", || {
        miou::run_with(1, || {
            let dropped = Arc::new(AtomicBool::new(false));
            let guard = SetOnDrop(dropped.clone());
            let slow = miou::call(move || {
                let _g = guard;
                bobine::thread::sleep(Duration::from_secs(3600));
                "slow"
            });
            let fast = miou::call_cc(|| "fast");
            assert_eq!(miou::await_first(vec![slow, fast]).unwrap(), "fast");
            assert!(dropped.load(Ordering::SeqCst));
        });
    });
}

/// Rule 6: `await_one` hands back the others, still running, to be awaited later.
#[test]
fn await_one_hands_back_the_rest() {
    watchdog(20, "await_one", || {
        miou::run_with(0, || {
            let gate = Rc::new(bobine::sync::Semaphore::new(0));
            let g = gate.clone();
            let slow = miou::call_cc(move || {
                g.acquire();
                "slow"
            });
            let fast = miou::call_cc(|| "fast");
            let (first, rest) = miou::await_one(vec![slow, fast]);
            assert_eq!(first.unwrap(), "fast");
            assert_eq!(rest.len(), 1);
            assert!(!rest[0].is_finished());
            gate.release();
            let outs = miou::await_all(rest);
            assert_eq!(outs[0].as_ref().unwrap(), &"slow");
        });
    });
}

/// Rule 6: empty lists are invalid arguments, named as Miou names them.
#[test]
fn await_first_and_await_one_reject_empty_lists() {
    watchdog(20, "empty awaits", || {
        miou::run_with(0, || {
            let t = panic_text(|| miou::await_first(Vec::<miou::Promise<()>>::new()));
            assert_eq!(t, "Invalid_argument(\"Miou.await_first\")");
            let t = panic_text(|| miou::await_one(Vec::<miou::Promise<()>>::new()));
            assert_eq!(t, "Invalid_argument(\"Miou.await_one\")");
        });
    });
}

/// Rule 7: orphans are reaped with `care` (`Some(None)` while none has ended, `None` when
/// empty), across domains.
#[test]
fn orphans_are_reaped_with_care() {
    watchdog(30, "orphans care", || {
        miou::run_with(1, || {
            let o = miou::orphans();
            assert!(miou::care(&o).is_none());
            let gate = Arc::new(bobine::sync::Semaphore::new(0));
            let g = gate.clone();
            o.call(move || {
                g.acquire();
                1u32
            });
            for i in 2..=10 {
                o.call_cc(move || i);
            }
            assert_eq!(o.len(), 10);
            let mut sum = 0;
            let mut waits = 0;
            while let Some(ready) = miou::care(&o) {
                match ready {
                    Some(p) => sum += miou::await_exn(p),
                    None => {
                        waits += 1;
                        if waits == 1 {
                            gate.release();
                        }
                        miou::yield_();
                    }
                }
            }
            assert_eq!(sum, 55);
            assert!(o.is_empty());
        });
    });
}

/// Rule 7: a collector belongs to the first task that uses it; any other task panics with
/// Miou's message.
#[test]
fn orphans_belong_to_their_first_user() {
    watchdog(20, "orphans owner", || {
        miou::run_with(0, || {
            let o = Rc::new(miou::orphans::<u8>());
            o.call_cc(|| 1);
            let o2 = o.clone();
            let stranger = miou::call_cc(move || panic_text(|| o2.call_cc(|| 2)));
            assert_eq!(
                miou::await_exn(stranger),
                "Invalid_argument(\"The given orphans is owned by another promise\")"
            );
            loop {
                match miou::care(&o) {
                    Some(Some(p)) => assert_eq!(miou::await_exn(p), 1),
                    Some(None) => miou::yield_(),
                    None => break,
                }
            }
        });
    });
}

/// Rule 1 and 7: an orphan never cared for aborts the run with Still_has_children.
#[test]
fn an_orphan_left_behind_aborts_the_run() {
    watchdog(20, "orphan left", || {
        let e = miou_error(|| {
            miou::run_with(0, || {
                let o = miou::orphans();
                o.call_cc(|| ());
                miou::yield_();
            })
        });
        assert!(matches!(e, Error::StillHasChildren));
    });
}

/// Rule 9: a bounded stream across domains with Miou's mutex and two conditions carries
/// every item once, in order.
#[test]
fn bounded_stream_with_mutex_and_two_conditions() {
    use miou::{condition, mutex};
    const ITEMS: u64 = 20_000;
    const CAP: usize = 8;
    struct Stream {
        m: mutex::T,
        not_full: condition::T,
        not_empty: condition::T,
        buf: Mutex<std::collections::VecDeque<u64>>,
    }
    watchdog(60, "bounded stream", || {
        miou::run_with(2, || {
            let s = Arc::new(Stream {
                m: mutex::create(),
                not_full: condition::create(),
                not_empty: condition::create(),
                buf: Mutex::new(Default::default()),
            });
            let p = s.clone();
            let producer = miou::call(move || {
                for i in 0..ITEMS {
                    mutex::lock(&p.m);
                    while p.buf.lock().unwrap().len() == CAP {
                        condition::wait(&p.not_full, &p.m);
                    }
                    p.buf.lock().unwrap().push_back(i);
                    condition::signal(&p.not_empty);
                    mutex::unlock(&p.m);
                }
            });
            let c = s.clone();
            let consumer = miou::call(move || {
                let mut expected = 0;
                while expected < ITEMS {
                    mutex::lock(&c.m);
                    while c.buf.lock().unwrap().is_empty() {
                        condition::wait(&c.not_empty, &c.m);
                    }
                    let v = c.buf.lock().unwrap().pop_front().unwrap();
                    condition::signal(&c.not_full);
                    mutex::unlock(&c.m);
                    assert_eq!(v, expected);
                    expected += 1;
                }
                expected
            });
            miou::await_exn(producer);
            assert_eq!(miou::await_exn(consumer), ITEMS);
        });
    });
}

/// Rule 8: `check` by a task that does not own the resource panics with Not_owner; so do
/// `disown` and `transfer`.
#[test]
fn ownership_by_another_task_is_not_owner() {
    watchdog(20, "not owner", || {
        miou::run_with(0, || {
            let r = ownership::own(|| ());
            ownership::check(&r);
            let r2 = r.clone();
            let stranger = miou::call_cc(move || {
                [
                    miou_error(|| ownership::check(&r2)).to_string(),
                    miou_error(|| ownership::disown(&r2)).to_string(),
                    miou_error(|| ownership::transfer(&r2)).to_string(),
                ]
            });
            assert_eq!(miou::await_exn(stranger), ["Miou.Not_owner"; 3]);
            ownership::disown(&r);
            assert!(matches!(
                miou_error(|| ownership::check(&r)),
                Error::NotOwner
            ));
            let e = miou_error(|| Spawn::new().give(&r).call_cc(|| ()));
            assert!(matches!(e, Error::NotOwner), "only the owner may give");
        });
    });
}

/// Rule 8: a resource given to a child is the child's; `transfer` hands it back to the parent.
#[test]
fn give_and_transfer_move_ownership() {
    watchdog(20, "give transfer", || {
        miou::run_with(1, || {
            let finalised = Arc::new(AtomicUsize::new(0));
            let f = finalised.clone();
            let r = ownership::own(move || {
                f.fetch_add(1, Ordering::SeqCst);
            });
            let r2 = r.clone();
            let gate = Arc::new(bobine::sync::Semaphore::new(0));
            let g = gate.clone();
            let p = Spawn::new().give(&r).call(move || {
                ownership::check(&r2);
                g.acquire();
                ownership::transfer(&r2);
                miou_error(|| ownership::check(&r2)).to_string()
            });
            assert!(!r.is_owned(), "the child owns it from its spawn on");
            gate.release();
            assert_eq!(miou::await_exn(p), "Miou.Not_owner");
            ownership::check(&r);
            ownership::disown(&r);
            assert_eq!(
                finalised.load(Ordering::SeqCst),
                0,
                "disown does not finalise"
            );
        });
    });
}

/// Rule 8: a task that returns while it owns a resource aborts the run with Resource_leaked,
/// and the finaliser still runs.
#[test]
fn a_leaked_resource_aborts_the_run_and_is_finalised() {
    watchdog(20, "leak", || {
        let finalised = Arc::new(AtomicBool::new(false));
        let f = finalised.clone();
        let e = miou_error(move || {
            miou::run_with(0, move || {
                let p = miou::call_cc(move || {
                    let _r = ownership::own(move || f.store(true, Ordering::SeqCst));
                });
                let _ = miou::await_(p);
                bobine::thread::sleep(Duration::from_secs(3600));
            })
        });
        assert!(matches!(e, Error::ResourceLeaked), "{e}");
        assert_eq!(e.to_string(), "Miou.Resource_leaked");
        assert!(finalised.load(Ordering::SeqCst));
    });
}

/// Rule 8: the finalisers of a task that panics or is cancelled run, newest first.
#[test]
fn finalisers_run_when_the_owner_panics_or_is_cancelled() {
    watchdog(20, "finalisers", || {
        miou::run_with(0, || {
            let log = Arc::new(Mutex::new(Vec::new()));
            let l = log.clone();
            let p = miou::call_cc(move || {
                let l2 = l.clone();
                let _a = ownership::own(move || l.lock().unwrap().push("a"));
                let _b = ownership::own(move || l2.lock().unwrap().push("b"));
                panic!("owner fails");
            });
            assert!(matches!(miou::await_(p), Err(Error::Panic(_))));
            assert_eq!(*log.lock().unwrap(), ["b", "a"]);

            let l = log.clone();
            let p = miou::call_cc(move || {
                let _c = ownership::own(move || l.lock().unwrap().push("c"));
                bobine::thread::sleep(Duration::from_secs(3600));
            });
            miou::yield_();
            miou::cancel(&p);
            assert_eq!(*log.lock().unwrap(), ["b", "a", "c"]);
            assert!(matches!(miou::await_(p), Err(Error::Cancelled)));
        });
    });
}

/// Rule 8: a resource given to a child that is cancelled before it starts is finalised.
#[test]
fn a_resource_given_to_a_child_that_never_ran_is_finalised() {
    watchdog(20, "given never ran", || {
        miou::run_with(0, || {
            let done = Arc::new(AtomicBool::new(false));
            let d = done.clone();
            let r = ownership::own(move || d.store(true, Ordering::SeqCst));
            let p = Spawn::new().give(&r).call_cc(|| ());
            miou::cancel(&p);
            assert!(done.load(Ordering::SeqCst));
            let _ = miou::await_(p);
        });
    });
}

/// Rule 10: every error prints Miou's name.
#[test]
fn errors_print_miou_names() {
    let names = [
        (Error::Cancelled, "Miou.Cancelled"),
        (Error::StillHasChildren, "Miou.Still_has_children"),
        (Error::NotAChild, "Miou.Not_a_child"),
        (Error::NoDomainAvailable, "Miou.No_domain_available"),
        (Error::ResourceLeaked, "Miou.Resource_leaked"),
        (Error::NotOwner, "Miou.Not_owner"),
    ];
    for (e, name) in names {
        assert_eq!(e.to_string(), name);
        assert_eq!(format!("{e:?}"), name);
    }
    assert_eq!(Error::Panic(Box::new("boom")).to_string(), "boom");
}

/// A Miou call outside a Miou run says where it must be called from.
#[test]
fn miou_calls_outside_a_run_say_so() {
    let t = panic_text(|| miou::call_cc(|| ()));
    assert!(t.contains("must be called from a Miou task"), "{t}");
    let t = panic_text(|| miou::call(|| ()));
    assert!(
        t.contains("bobine::miou::call must be called from a Miou task"),
        "{t}"
    );
}

/// A panic of the main task propagates out of `run` with its payload.
#[test]
fn a_panic_of_the_main_task_propagates() {
    watchdog(20, "main panic", || {
        let t = panic_text(|| miou::run_with(0, || panic!("main fails")));
        assert_eq!(t, "main fails");
    });
}

/// Rule 5: a task cancelled while it awaits its own child unwinds, and its end cancels that
/// child: both are gone when `cancel` returns.
#[test]
fn a_cancelled_awaiter_takes_its_child_down() {
    watchdog(20, "cancelled awaiter", || {
        miou::run_with(1, || {
            let dropped = Arc::new(AtomicBool::new(false));
            let d = dropped.clone();
            let started = Arc::new(AtomicBool::new(false));
            let s = started.clone();
            let p = miou::call(move || {
                let c = miou::call_cc(move || {
                    let _g = SetOnDrop(d);
                    s.store(true, Ordering::SeqCst);
                    bobine::thread::sleep(Duration::from_secs(3600));
                });
                miou::await_exn(c)
            });
            while !started.load(Ordering::SeqCst) {
                miou::yield_();
            }
            miou::cancel(&p);
            assert!(dropped.load(Ordering::SeqCst));
        });
    });
}

/// Rule 11: a `sys_signal` handler runs later as ordinary code on domain 0 (never in signal
/// context), so it may take Miou's mutex and broadcast a condition that tasks on other
/// domains wait on; a second `sys_signal` replaces the first; the handler is gone when the run
/// ends.
#[test]
fn sys_signal_handler_runs_on_domain_0_and_may_broadcast() {
    use miou::{condition, mutex};
    const SIG: i32 = libc::SIGUSR1;
    // A stray delivery outside the run must not end the test process.
    // SAFETY: installing SIG_IGN for a signal no other test of this binary uses.
    unsafe { libc::signal(SIG, libc::SIG_IGN) };
    let first_calls = Arc::new(AtomicUsize::new(0));
    let handled_on = Arc::new(Mutex::new(Vec::new()));
    let (fc, on) = (first_calls.clone(), handled_on.clone());
    watchdog(30, "sys_signal", move || {
        miou::run_with(1, move || {
            struct Stop {
                m: mutex::T,
                c: condition::T,
                stopped: AtomicBool,
            }
            let stop = Arc::new(Stop {
                m: mutex::create(),
                c: condition::create(),
                stopped: AtomicBool::new(false),
            });
            miou::sys_signal(SIG, move |_| {
                fc.fetch_add(1, Ordering::SeqCst);
            });
            let s = stop.clone();
            miou::sys_signal(SIG, move |sig| {
                assert_eq!(sig, SIG);
                on.lock().unwrap().push(miou::domain::self_());
                mutex::lock(&s.m);
                s.stopped.store(true, Ordering::SeqCst);
                condition::broadcast(&s.c);
                mutex::unlock(&s.m);
            });
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let s = stop.clone();
                    miou::call(move || {
                        mutex::lock(&s.m);
                        while !s.stopped.load(Ordering::SeqCst) {
                            condition::wait(&s.c, &s.m);
                        }
                        mutex::unlock(&s.m);
                        miou::domain::self_()
                    })
                })
                .collect();
            // SAFETY: sending a signal to this process.
            unsafe { libc::kill(libc::getpid(), SIG) };
            for d in miou::await_all(waiters) {
                assert_eq!(d.unwrap(), 1);
            }
        });
    });
    assert_eq!(
        first_calls.load(Ordering::SeqCst),
        0,
        "replaced before the signal"
    );
    assert!(
        !handled_on.lock().unwrap().is_empty()
            && handled_on.lock().unwrap().iter().all(|&d| d == 0),
        "handled on domain 0: {:?}",
        handled_on.lock().unwrap()
    );
    // Uninstalled with the run: the disposition the test set before (SIG_IGN) is back.
    // SAFETY: reading the current action of a signal, into a zeroed `sigaction`.
    let back = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(SIG, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    };
    assert_eq!(back, libc::SIG_IGN, "uninstalled with the run");
}

/// Rule 8 and the builder's checks: the main task has no parent to transfer to, and `pin`
/// must name a worker domain other than the caller's (and only for `call`).
#[test]
fn transfer_from_main_and_bad_pins_are_invalid_arguments() {
    watchdog(20, "invalid arguments", || {
        miou::run_with(1, || {
            let r = ownership::own(|| ());
            let t = panic_text(|| ownership::transfer(&r));
            assert!(
                t.starts_with("Invalid_argument(\"Miou.Ownership.transfer\")"),
                "{t}"
            );
            ownership::disown(&r);
            for d in [0, 2] {
                let t = panic_text(|| Spawn::new().pin(d).call(|| ()));
                assert!(t.starts_with("Invalid_argument(\"Miou.call\")"), "{t}");
            }
            let t = panic_text(|| Spawn::new().pin(1).call_cc(|| ()));
            assert!(t.starts_with("Invalid_argument(\"Miou.call_cc\")"), "{t}");
            let p = Spawn::new().pin(1).name("pinned").call(|| {
                (
                    miou::domain::self_(),
                    bobine::thread::current().name().map(str::to_owned),
                )
            });
            assert_eq!(miou::await_exn(p), (1, Some("pinned".to_owned())));
        });
    });
}

/// Rule 6 across domains: the winner's value is always there, even when `await_first` sees
/// a child end on another domain just as its outcome is being stored.
#[test]
fn await_first_across_domains_always_gets_the_winners_value() {
    watchdog(60, "await_first across domains", || {
        miou::run_with(2, || {
            for i in 0..2000u32 {
                let ps = vec![miou::call(move || i), miou::call(move || i + 1)];
                let w = miou::await_first(ps).expect("a winner's value");
                assert!(w == i || w == i + 1);
            }
        });
    });
}
