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

mod stops;

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
