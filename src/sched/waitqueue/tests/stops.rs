//! Wait-queue tests of waiters stopped, nudged or raced by deadlines: what a stopped waiter
//! gives back or passes on, how a waiter learns it was nudged, queueing at the front, and hand
//! overs and hand-offs racing deadlines.

use super::*;

/// How a waker chooses the waiter in [`stop_the_waiting_task`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Chosen {
    Not,
    HandedOver,
    Nudged,
}

/// Runs the runtime's main task as a waiter that a plain thread stops while it waits
/// (after popping it first, as `chosen` says), and returns the gate once the task has unwound
/// (or, chosen, returned).
fn stop_the_waiting_task(chosen: Chosen) -> Arc<Gate> {
    within(30, || {
        let gate = Arc::new(Gate::new());
        let (tx, rx) = channel::<Arc<Task>>();
        let g = gate.clone();
        let stopper = std::thread::spawn(move || {
            let task = rx.recv().unwrap();
            g.await_len(1);
            let popped = (chosen != Chosen::Not).then(|| {
                g.pop_as(chosen == Chosen::Nudged)
                    .expect("the task is queued")
            });
            assert!(interrupt(&task));
            popped
        });
        let g = gate.clone();
        let out = catch_unwind(AssertUnwindSafe(|| {
            crate::Builder::new().domains(1).run(move || {
                tx.send(crate::sched::current_task().unwrap()).unwrap();
                g.wait(0, None)
            })
        }));
        match chosen {
            // Handed over (or nudged) before the stop landed: that stands, and the stop would
            // take effect at the next park point (there is none).
            Chosen::HandedOver => {
                assert_eq!(out.ok(), Some(Woken::Notified), "the hand-over was kept")
            }
            Chosen::Nudged => assert_eq!(out.ok(), Some(Woken::Nudged), "the nudge was kept"),
            Chosen::Not => assert!(out.unwrap_err().is::<TaskDropped>(), "the task unwound"),
        }
        if let Some(u) = joined(stopper) {
            assert!(!u.unpark(), "the stop ended the park first");
            // A waker that looks only now finds the task finished: it took the hand-over (a
            // waker must not hand it to the next waiter as if the task had been abandoned).
            assert!(
                u.hand_over(),
                "a chosen waiter that finished took its hand-over"
            );
        }
        gate.assert_links(&[]);
        gate
    })
}

/// A waiter stopped while it waits unlinks itself, withdraws, and unwinds.
#[test]
fn an_unwinding_waiter_withdraws() {
    let gate = stop_the_waiting_task(Chosen::Not);
    let s = gate.state.lock();
    assert_eq!((s.withdrawn, s.passed_on), (1, 0));
}

/// A waiter that a waker chose just as it is stopped keeps what it was handed: neither
/// `withdraw` nor `pass_on` runs, the wait ends `Notified`, and the waker's `hand_over`,
/// made once the task has finished, says so.
#[test]
fn a_waiter_chosen_as_it_is_stopped_keeps_the_hand_over() {
    let gate = stop_the_waiting_task(Chosen::HandedOver);
    let s = gate.state.lock();
    assert_eq!((s.withdrawn, s.passed_on), (0, 0));
}

/// A waiter nudged just as it is stopped is told it was nudged (it may try again, and the
/// stop waits for its next park point): neither `withdraw` nor `pass_on` runs.
#[test]
fn a_waiter_nudged_as_it_is_stopped_is_told_so() {
    let gate = stop_the_waiting_task(Chosen::Nudged);
    let s = gate.state.lock();
    assert_eq!((s.withdrawn, s.passed_on), (0, 0));
}

/// `pop_front_nudge` wakes the oldest waiter with `Nudged`, `pop_front` with `Notified`, in
/// one list, threads and tasks alike.
#[test]
fn a_nudged_waiter_is_told_it_was_nudged() {
    scene(&[P, T, P, P], plain_wait, |gate, _, done| {
        for i in 0..4 {
            let nudge = i % 2 == 1;
            assert!(gate.pop_as(nudge).expect("a waiter is queued").unpark());
            let how = if nudge {
                Woken::Nudged
            } else {
                Woken::Notified
            };
            assert_eq!(done.next(), (i, how));
        }
    });
}

/// A waiter queued at the front (one that lost after a nudge keeps its place) is ahead of
/// those queued before it; the links stay consistent both ways.
#[test]
fn a_waiter_queued_at_the_front_is_woken_first() {
    scene(
        &[P, T, P, P],
        |gate, i| {
            if i >= 2 {
                gate.wait_at_front(i as u8)
            } else {
                gate.wait(i as u8, None)
            }
        },
        |gate, nodes, done| {
            // Queued in order 0, 1, then 2 and 3 each at the front.
            gate.assert_links(nodes);
            assert_eq!(gate.state.lock().list.front_tag(), Some(3));
            for i in [3, 2, 0, 1] {
                wake_oldest(gate, done, i);
            }
        },
    );
}

/// A waiter that unwinds out of its wait after a waker chose it runs `pass_on`, told how it
/// was chosen (a hand-over, or a nudge), so that it can pass the right thing on.
#[test]
fn pass_on_is_told_how_the_unwinding_waiter_was_chosen() {
    for nudge in [false, true] {
        let gate = Gate::new();
        let out = catch_unwind(AssertUnwindSafe(|| {
            let mut guard = gate.state.lock();
            guard.queued += 1;
            gate.wait_in(0, None)
                .after_queued(|| {
                    // A waker chooses us, then we unwind before parking.
                    drop(gate.pop_as(nudge).expect("queued"));
                    panic!("unwinding out of the wait");
                })
                .park(guard)
        }));
        assert!(out.is_err());
        let s = gate.state.lock();
        let how = if nudge {
            Woken::Nudged
        } else {
            Woken::Notified
        };
        assert_eq!((s.withdrawn, s.passed_on, s.passed_how), (0, 1, Some(how)));
        assert_eq!(s.list.len, 0);
    }
}

/// Plays `rounds` rounds of a hand-over racing a deadline, the caller (a thread or a task)
/// waiting: in each, it waits with a deadline 20 µs away, and a waker thread pops it near
/// that deadline. The waker steers its moment towards where the deadline really ends parks
/// (later when it found the waiter gone, earlier when it found it queued), so that many
/// rounds race. Returns how many rounds the waker won and how many its `unpark` came
/// second to the deadline.
fn race_hand_overs_with_deadlines(gate: &Arc<Gate>, rounds: u32) -> (u32, u32) {
    let g = gate.clone();
    let waker = std::thread::spawn(move || {
        let mut popped = Vec::new();
        let mut second = 0;
        // When the waker pops, relative to the waiter's deadline, in microseconds.
        let mut offset: i64 = 0;
        for round in 1..=rounds {
            let deadline = loop {
                let s = g.state.lock();
                if s.quit {
                    return (popped, second);
                }
                if s.round == round {
                    break s.deadline.expect("a round has a deadline");
                }
                drop(s);
                std::thread::yield_now();
            };
            let at = match u64::try_from(offset) {
                Ok(after) => deadline + Duration::from_micros(after),
                Err(_) => deadline - Duration::from_micros(offset.unsigned_abs()),
            };
            while Instant::now() < at {
                std::hint::spin_loop();
            }
            let mut s = g.state.lock();
            assert_eq!(s.queued, s.list.len, "withdraw ran under the lock");
            s.served = round;
            let u = s.list.pop_front();
            if u.is_some() {
                s.queued -= 1;
            }
            drop(s);
            popped.push(u.is_some());
            offset += if u.is_some() { 3 } else { -3 };
            if let Some(u) = u {
                second += u32::from(!u.unpark());
            }
        }
        (popped, second)
    });
    /// Stops the waker if the waiter's side ends early (a failed assertion).
    struct Quit<'a>(&'a Gate);
    impl Drop for Quit<'_> {
        fn drop(&mut self) {
            self.0.state.lock().quit = true;
        }
    }
    let quit = Quit(gate);
    let mut woken = Vec::new();
    'rounds: for round in 1..=rounds {
        while gate.state.lock().served != round - 1 {
            if waker.is_finished() {
                // It failed: its panic goes on below.
                break 'rounds;
            }
            std::thread::yield_now();
        }
        let mut s = gate.state.lock();
        assert_eq!(s.queued, s.list.len, "withdraw ran under the lock");
        s.queued += 1;
        s.round = round;
        let deadline = Instant::now() + Duration::from_micros(20);
        s.deadline = Some(deadline);
        woken.push(gate.park(s, 0, Some(deadline)));
    }
    drop(quit);
    let (popped, second) = joined(waker);
    for (round, (&popped, &woken)) in popped.iter().zip(&woken).enumerate() {
        let expected = if popped {
            Woken::Notified
        } else {
            Woken::TimedOut
        };
        assert_eq!(woken, expected, "round {round}: popped {popped}");
    }
    let won = popped.iter().filter(|&&p| p).count() as u32;
    assert_eq!(gate.state.lock().withdrawn, rounds - won, "withdrawn");
    gate.assert_links(&[]);
    (won, second)
}

/// Over many rounds racing real deadlines, a waiter is `Notified` exactly when popped.
#[test]
fn a_hand_over_racing_a_deadline_goes_to_the_waiter_popped() {
    // Every holder of the lock also checks that the count of queued waiters is the list's
    // length: a waiter that leaves by itself is unlinked and uncounted (`withdraw`) in one
    // critical section.
    within(60, || {
        let gate = Arc::new(Gate::new());
        let g = gate.clone();
        let thread = std::thread::spawn(move || race_hand_overs_with_deadlines(&g, 3000));
        let by_thread = joined(thread);
        let by_task = crate::Builder::new()
            .domains(1)
            .run(|| race_hand_overs_with_deadlines(&Arc::new(Gate::new()), 1500));
        // Seen with `--nocapture`: how much the rounds raced (not asserted: timing).
        eprintln!(
            "(rounds the waker won, its unpark second): thread {by_thread:?}, task {by_task:?}"
        );
    });
}

/// Hand-off waits: each waker moves its value into the oldest waiter's slot under the lock,
/// threads and tasks alike, in arrival order.
#[test]
fn a_hand_off_moves_values_to_the_waiters_in_arrival_order() {
    scene(
        &[P, T, P],
        |gate, i| gate.wait_handoff(i, None),
        |gate, _, done| {
            for i in 0..3 {
                assert!(gate.give(100 + i as u64));
                assert_eq!(done.next(), (i, Woken::Notified));
            }
            assert!(!gate.give(7), "nobody waits");
            let slots = gate.state.lock().slots.clone();
            assert_eq!(slots, [(0, Some(100)), (1, Some(101)), (2, Some(102))]);
        },
    );
}

/// A hand-off waiter whose deadline ends its park just before a waker pops it keeps the value
/// (step 4: unlinked when it gets the lock); one nobody pops withdraws with its slot empty.
#[test]
fn a_hand_off_racing_a_deadline_goes_to_the_waiter_popped() {
    for kind in [P, T] {
        scene(
            &[kind, P],
            |gate, i| gate.wait_handoff(i, None),
            |gate, nodes, done| {
                {
                    let mut guard = gate.state.lock();
                    let timer = unparker_of(&guard.list, nodes[0]);
                    assert!(timer.wake(Wake::TimedOut), "the deadline ends the park");
                    // The waiter sees its park end and waits for the lock we hold.
                    std::thread::sleep(Duration::from_millis(20));
                    let w = guard
                        .list
                        .pop_front_handoff()
                        .expect("the waiter is queued");
                    guard.queued -= 1;
                    // SAFETY: as in `give`.
                    unsafe { *w.slot().cast::<Option<u64>>() = Some(5) };
                    assert!(w.wake(), "chosen all the same");
                }
                assert_eq!(done.next(), (0, Woken::Notified));
                gate.time_out(nodes[1]);
                assert_eq!(done.next(), (1, Woken::TimedOut));
                let s = gate.state.lock();
                assert_eq!(s.slots, [(0, Some(5)), (1, None)]);
                assert_eq!(s.withdrawn, 1);
            },
        );
    }
}
