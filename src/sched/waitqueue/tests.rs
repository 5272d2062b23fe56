//! Unit tests of the wait queue: the list's links, FIFO order, queueing at the front, nudges
//! and hand-overs, and `WaitIn::park` with its hooks, with plain threads and a domain's main
//! task as waiters.
//!
//! Waiters are plain OS threads and the main task of a runtime (`Builder::run`); wakers and
//! the test's conductor are plain threads, so that no face is needed to spawn anything.
//! The deterministic tests end a park as its deadline would (`Unparker::wake(TimedOut)`,
//! what a task's timer does) at a moment the test chooses; one test uses real deadlines.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use super::*;
use crate::sched::park::stop::interrupt;
use crate::sched::task::{Task, TaskDropped};
use crate::util::{joined, within};

/// A primitive built for the tests: a wait list and a few counters behind one lock.
struct Gate {
    state: SpinLock<State>,
}

struct State {
    list: WaitList,
    /// Counted in when a waiter queues, out when a waker pops it or it withdraws: the
    /// list's length whenever the lock is free.
    queued: usize,
    /// The stress test's round the waiter has queued for, its deadline, the last round
    /// the waker has played, and whether the waiter's side has stopped.
    round: u32,
    deadline: Option<Instant>,
    served: u32,
    quit: bool,
    /// How many times `withdraw` ran.
    withdrawn: u32,
    /// How many times `pass_on` ran, and what it was told last.
    passed_on: u32,
    passed_how: Option<Woken>,
    /// Hand-off waits: `(waiter, what its slot held)` once each wait ended.
    slots: Vec<(usize, Option<u64>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Thread,
    Task,
}
// Short names for the orders of `scene`: P a plain thread, T the main task.
use Kind::{Task as T, Thread as P};

/// How a [`Gate`]'s wait finds its list.
type ListOf = fn(&mut State) -> &mut WaitList;

/// A [`Gate`]'s wait, with its `pass_on` hook `P`.
type GateWait<'a, P> = WaitIn<'a, State, ListOf, fn(), fn(&mut State), P>;

/// The nodes of `list`, head first.
fn nodes_of(list: &WaitList) -> Vec<*const Waiter> {
    let mut nodes = Vec::new();
    let mut p = list.head;
    while !p.is_null() {
        nodes.push(p);
        // SAFETY: a linked node is alive; the caller holds the list's lock.
        p = unsafe { (*p).next.get() };
    }
    nodes
}

/// A copy of the unparker of `node`, which must be queued in `list` (whose lock the caller
/// holds): what a timer holds for the waiter's deadline.
fn unparker_of(list: &WaitList, node: *const Waiter) -> Unparker {
    assert!(nodes_of(list).contains(&node), "the waiter is queued");
    // SAFETY: the node is linked in `list` and we hold its lock: it is alive and its cells
    // are ours to touch.
    let cell = unsafe { &(*node).unparker };
    let u = cell.take().expect("a queued waiter holds its unparker");
    cell.set(Some(u.clone()));
    u
}

impl Gate {
    fn new() -> Gate {
        Gate {
            state: SpinLock::new(State {
                list: WaitList::new(),
                queued: 0,
                withdrawn: 0,
                passed_on: 0,
                passed_how: None,
                slots: Vec::new(),
                round: 0,
                deadline: None,
                served: 0,
                quit: false,
            }),
        }
    }

    /// Waits with `tag` until popped or `deadline`.
    fn wait(&self, tag: u8, deadline: Option<Instant>) -> Woken {
        let mut guard = self.state.lock();
        guard.queued += 1;
        self.park(guard, tag, deadline)
    }

    /// Waits with `tag`, queued at the front, until popped.
    fn wait_at_front(&self, tag: u8) -> Woken {
        let mut guard = self.state.lock();
        guard.queued += 1;
        self.wait_in(tag, None).front(true).park(guard)
    }

    /// The wait of this gate, with its hooks.
    fn wait_in(&self, tag: u8, deadline: Option<Instant>) -> GateWait<'_, impl FnOnce(Woken) + '_> {
        fn list(s: &mut State) -> &mut WaitList {
            &mut s.list
        }
        fn withdraw(s: &mut State) {
            s.queued -= 1;
            s.withdrawn += 1;
        }
        let wait = Wait::hand_over("waitqueue test").until(deadline);
        WaitIn::new(&self.state, list as ListOf, wait)
            .tag(tag)
            .withdraw(withdraw as fn(&mut State))
            .pass_on(|how| {
                let mut s = self.state.lock();
                s.passed_on += 1;
                s.passed_how = Some(how);
            })
    }

    /// Parks a waiter the caller counted in (`queued`) under `guard`.
    fn park(&self, guard: SpinGuard<'_, State>, tag: u8, deadline: Option<Instant>) -> Woken {
        self.wait_in(tag, deadline).park(guard)
    }

    /// A hand-off wait of waiter `i` (an empty slot for a value) until `deadline`; records what
    /// its slot holds when the wait ends.
    fn wait_handoff(&self, i: usize, deadline: Option<Instant>) -> Woken {
        let mut guard = self.state.lock();
        guard.queued += 1;
        let wait = Wait::hand_over("waitqueue hand-off test").until(deadline);
        let mut slot: Option<u64> = None;
        // SAFETY: the gate's hand-off wakers (`give`) pop with `pop_front_handoff` and wake
        // under the lock; `slot` outlives the wait.
        let woken = unsafe {
            WaitIn::new(&self.state, |s: &mut State| &mut s.list, wait)
                .withdraw(|s: &mut State| {
                    s.queued -= 1;
                    s.withdrawn += 1;
                })
                .park_handoff(guard, (&raw mut slot).cast())
        };
        self.state.lock().slots.push((i, slot));
        woken
    }

    /// A hand-off waker: moves `v` into the oldest waiter's slot and wakes it, under the
    /// lock; false if nobody waits.
    fn give(&self, v: u64) -> bool {
        let mut guard = self.state.lock();
        let Some(w) = guard.list.pop_front_handoff() else {
            return false;
        };
        guard.queued -= 1;
        // SAFETY: `wait_handoff`'s slot is an `Option<u64>`, ours until we wake it.
        unsafe { *w.slot().cast::<Option<u64>>() = Some(v) };
        assert!(w.wake(), "the waiter is not abandoned");
        true
    }

    /// A waker's step 2: unlinks the oldest waiter and returns its unparker.
    fn pop(&self) -> Option<Unparker> {
        self.pop_as(false)
    }

    /// Step 2 as a hand-over or (`nudge`) as a nudge.
    fn pop_as(&self, nudge: bool) -> Option<Unparker> {
        let mut guard = self.state.lock();
        let u = if nudge {
            guard.list.pop_front_nudge()
        } else {
            guard.list.pop_front()
        };
        if u.is_some() {
            guard.queued -= 1;
        }
        u
    }

    /// Waits until `n` waiters are queued.
    fn await_len(&self, n: usize) {
        while self.state.lock().list.len != n {
            std::thread::yield_now();
        }
    }

    fn nodes(&self) -> Vec<*const Waiter> {
        nodes_of(&self.state.lock().list)
    }

    /// Ends the park of the queued waiter `node` as its deadline would, leaving it queued.
    fn time_out(&self, node: *const Waiter) {
        let u = unparker_of(&self.state.lock().list, node);
        assert!(u.wake(Wake::TimedOut), "the waiter was still parked");
    }

    /// The list holds exactly `expected`, in order, every link consistent both ways.
    fn assert_links(&self, expected: &[*const Waiter]) {
        let mut s = self.state.lock();
        let null = std::ptr::null();
        assert_eq!(
            s.list.head,
            expected.first().copied().unwrap_or(null),
            "head"
        );
        assert_eq!(
            s.list.tail,
            expected.last().copied().unwrap_or(null),
            "tail"
        );
        assert_eq!(s.list.len, expected.len(), "length");
        assert_eq!(s.list.is_empty(), expected.is_empty());
        assert_eq!(s.queued, expected.len(), "waiters counted in and out");
        for (i, &node) in expected.iter().enumerate() {
            let prev = if i == 0 { null } else { expected[i - 1] };
            let next = expected.get(i + 1).copied().unwrap_or(null);
            // SAFETY: every expected node belongs to a waiter that is still parked.
            let n = unsafe { &*node };
            assert_eq!(n.prev.get(), prev, "prev of waiter {i}");
            assert_eq!(n.next.get(), next, "next of waiter {i}");
            assert!(n.linked.load(Ordering::Relaxed), "waiter {i} linked");
        }
    }
}

/// Queues one waiter per entry of `order`, in that order (`P` a plain thread, `T` the
/// runtime's main task), waiter `i` calling `wait(gate, i)` and reporting `(i, how its
/// wait ended)`. Once all are queued, `conduct` runs on a plain thread with the gate, the
/// nodes in arrival order and the reports; it must let every waiter go. The list must be
/// empty at the end.
fn scene<W, C>(order: &[Kind], wait: W, conduct: C)
where
    W: Fn(&Gate, usize) -> Woken + Send + Sync + 'static,
    C: FnOnce(&Gate, &[*const Waiter], &Reports) + Send + 'static,
{
    let order = order.to_vec();
    within(30, move || {
        crate::Builder::new().domains(1).run(move || {
            let gate = Arc::new(Gate::new());
            let wait = Arc::new(wait);
            let (done_tx, done_rx) = channel();
            let (turn_tx, turn_rx) = channel();
            let conductor = {
                let (gate, wait, done_tx) = (gate.clone(), wait.clone(), done_tx.clone());
                std::thread::spawn(move || {
                    let mut threads = Vec::new();
                    for (i, &kind) in order.iter().enumerate() {
                        match kind {
                            P => {
                                let (gate, wait) = (gate.clone(), wait.clone());
                                let done_tx = done_tx.clone();
                                threads.push(std::thread::spawn(move || {
                                    let woken = catch_unwind(AssertUnwindSafe(|| wait(&gate, i)));
                                    done_tx.send((i, woken)).unwrap();
                                }));
                            }
                            T => turn_tx.send(i).unwrap(),
                        }
                        gate.await_len(i + 1);
                    }
                    drop(turn_tx);
                    let nodes = gate.nodes();
                    let escape: Vec<Unparker> = {
                        let s = gate.state.lock();
                        nodes.iter().map(|&n| unparker_of(&s.list, n)).collect()
                    };
                    let out = catch_unwind(AssertUnwindSafe(|| {
                        conduct(&gate, &nodes, &Reports(done_rx))
                    }));
                    if out.is_err() {
                        // Let every waiter still parked go (the copies of the others'
                        // unparkers are stale), so that the failure is reported, not hung.
                        for u in &escape {
                            u.unpark();
                        }
                    }
                    for t in threads {
                        joined(t);
                    }
                    if let Err(panic) = out {
                        resume_unwind(panic);
                    }
                    gate.assert_links(&[]);
                })
            };
            if let Ok(i) = turn_rx.recv() {
                let woken = catch_unwind(AssertUnwindSafe(|| wait(&gate, i)));
                done_tx.send((i, woken)).unwrap();
            }
            if let Err(panic) = conductor.join() {
                resume_unwind(panic);
            }
        })
    })
}

/// What the waiters of a [`scene`] report: which one, and how its wait ended (or its
/// panic).
struct Reports(Receiver<(usize, std::thread::Result<Woken>)>);

impl Reports {
    /// The next report; a waiter's panic goes on here.
    fn next(&self) -> (usize, Woken) {
        let (i, woken) = self.0.recv().expect("the waiters report");
        (i, woken.unwrap_or_else(|panic| resume_unwind(panic)))
    }
}

/// A waiter that waits with tag `i` and no deadline.
fn plain_wait(gate: &Gate, i: usize) -> Woken {
    gate.wait(i as u8, None)
}

/// Pops the oldest waiter, wakes it, and checks that waiter `i` was the one woken.
fn wake_oldest(gate: &Gate, done: &Reports, i: usize) {
    assert!(gate.pop().expect("a waiter is queued").unpark());
    assert_eq!(done.next(), (i, Woken::Notified));
}

/// `pop_front` wakes the waiters in arrival order, threads and tasks alike.
#[test]
fn pop_front_wakes_the_oldest_waiter_first() {
    scene(&[P, P, T, P], plain_wait, |gate, _, done| {
        for i in 0..4 {
            wake_oldest(gate, done, i);
        }
    });
}

/// `front_tag` is the tag of the oldest waiter still queued, `None` once none is.
#[test]
fn front_tag_is_the_oldest_waiters_tag() {
    const TAGS: [u8; 4] = [9, 2, 5, 4];
    scene(
        &[T, P, P, P],
        |gate, i| gate.wait(TAGS[i], None),
        |gate, nodes, done| {
            let front = || gate.state.lock().list.front_tag();
            assert_eq!(front(), Some(9));
            gate.time_out(nodes[0]);
            assert_eq!(done.next(), (0, Woken::TimedOut));
            assert_eq!(front(), Some(2));
            gate.time_out(nodes[3]);
            assert_eq!(done.next(), (3, Woken::TimedOut));
            assert_eq!(front(), Some(2));
            wake_oldest(gate, done, 1);
            assert_eq!(front(), Some(5));
            wake_oldest(gate, done, 2);
            assert_eq!(front(), None);
        },
    );
}

/// A waiter that times out unlinks itself from the head, the middle or the tail.
#[test]
fn a_timed_out_waiter_leaves_from_any_position() {
    for order in [[P, T, P], [T, P, P]] {
        for leaver in 0..3 {
            scene(&order, plain_wait, move |gate, nodes, done| {
                gate.time_out(nodes[leaver]);
                assert_eq!(done.next(), (leaver, Woken::TimedOut));
                let rest: Vec<usize> = (0..3).filter(|&i| i != leaver).collect();
                let rest_nodes: Vec<_> = rest.iter().map(|&i| nodes[i]).collect();
                gate.assert_links(&rest_nodes);
                for i in rest {
                    wake_oldest(gate, done, i);
                }
            });
        }
    }
}

/// Waiters that nobody wakes end `TimedOut` at their real deadline, and withdraw.
#[test]
fn an_unwoken_waiter_times_out_and_withdraws() {
    within(30, || {
        crate::Builder::new().domains(1).run(|| {
            let gate = Arc::new(Gate::new());
            let soon = || Some(Instant::now() + Duration::from_millis(20));
            let threads: Vec<_> = (0..2)
                .map(|i| {
                    let gate = gate.clone();
                    std::thread::spawn(move || gate.wait(i, soon()))
                })
                .collect();
            assert_eq!(gate.wait(2, soon()), Woken::TimedOut);
            for t in threads {
                assert_eq!(joined(t), Woken::TimedOut);
            }
            gate.assert_links(&[]);
            assert_eq!(gate.state.lock().withdrawn, 3);
        });
    });
}

/// A waiter popped just before its deadline ends its park is `Notified`, not withdrawn.
#[test]
fn a_popped_waiter_is_notified_even_if_its_deadline_ends_the_park() {
    for kind in [P, T] {
        scene(&[kind], plain_wait, |gate, _, done| {
            let u = gate.pop().expect("the waiter is queued");
            assert!(u.wake(Wake::TimedOut), "the deadline ends the park");
            assert!(!u.unpark(), "the waker's unpark comes second");
            assert_eq!(done.next(), (0, Woken::Notified));
            assert_eq!(gate.state.lock().withdrawn, 0);
        });
    }
}

/// A waiter popped after its deadline ended its park, before it relocks, is `Notified`.
#[test]
fn a_waiter_popped_while_it_leaves_is_notified() {
    for kind in [P, T] {
        scene(&[kind], plain_wait, |gate, nodes, done| {
            let mut guard = gate.state.lock();
            let timer = unparker_of(&guard.list, nodes[0]);
            assert!(timer.wake(Wake::TimedOut), "the deadline ends the park");
            // Let the waiter see itself still linked and wait for the lock to leave.
            std::thread::sleep(Duration::from_millis(20));
            let u = guard.list.pop_front().expect("the waiter is queued");
            guard.queued -= 1;
            drop(guard);
            assert!(!u.unpark(), "the park had ended already");
            assert_eq!(done.next(), (0, Woken::Notified));
            assert_eq!(gate.state.lock().withdrawn, 0);
        });
    }
}

/// `withdraw` runs once per waiter that leaves by itself, never for one a waker popped.
#[test]
fn withdraw_runs_only_when_the_waiter_leaves_by_itself() {
    scene(&[P, T, P, P], plain_wait, |gate, nodes, done| {
        let withdrawn = || gate.state.lock().withdrawn;
        gate.time_out(nodes[1]);
        assert_eq!(done.next(), (1, Woken::TimedOut));
        assert_eq!(withdrawn(), 1);
        wake_oldest(gate, done, 0);
        assert_eq!(withdrawn(), 1);
        gate.time_out(nodes[3]);
        assert_eq!(done.next(), (3, Woken::TimedOut));
        assert_eq!(withdrawn(), 2);
        wake_oldest(gate, done, 2);
        assert_eq!(withdrawn(), 2);
    });
}

/// Once every waiter has left, whichever way, the list has no head, no tail, length 0.
#[test]
fn the_list_is_empty_once_every_waiter_has_left() {
    scene(&[P, P, T, P], plain_wait, |gate, nodes, done| {
        gate.time_out(nodes[3]);
        assert_eq!(done.next(), (3, Woken::TimedOut));
        wake_oldest(gate, done, 0);
        gate.time_out(nodes[1]);
        assert_eq!(done.next(), (1, Woken::TimedOut));
        gate.assert_links(&nodes[2..3]);
        gate.time_out(nodes[2]);
        assert_eq!(done.next(), (2, Woken::TimedOut));
        gate.assert_links(&[]);
    });
}

/// `after_queued` runs once the waiter is queued and the lock free: a waker there finds it.
#[test]
fn a_waker_inside_after_queued_finds_the_waiter() {
    fn wait_waking_itself(gate: &Gate) -> Woken {
        let mut guard = gate.state.lock();
        guard.queued += 1;
        WaitIn::new(
            &gate.state,
            |s: &mut State| &mut s.list,
            Wait::hand_over("waitqueue test"),
        )
        .after_queued(|| {
            let u = gate
                .pop()
                .expect("after_queued runs after the waiter is queued");
            assert!(u.unpark());
        })
        .park(guard)
    }
    within(30, || {
        crate::Builder::new().domains(1).run(|| {
            let gate = Arc::new(Gate::new());
            assert_eq!(wait_waking_itself(&gate), Woken::Notified);
            let g = gate.clone();
            let thread = std::thread::spawn(move || wait_waking_itself(&g));
            assert_eq!(joined(thread), Woken::Notified);
            gate.assert_links(&[]);
        });
    });
}

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
