//! The sync algorithm, steps 2-4 of the module doc's `sync, step by step`: attempt under the
//! channel locks, offer and park until exactly one leaf commits, then fire the other groups'
//! nacks, apply the chosen leaf's wraps and run the other aborts. [`poll`](super::Event::poll)
//! is the same algorithm stopping after the attempt.
//!
//! Flattening (step 1) is in `mod.rs`, what a leaf is in `leaves.rs`, the commit word in
//! `commit.rs`, the channel queues in `channel.rs`. The protocol and why it holds several
//! channel locks at once are in the module doc (`mod.rs`).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use super::channel::{self, ChanInner, Offer};
use super::commit::{AbandonOnUnwind, Outcome, Payload, SyncState};
use super::leaves::{BaseOp, fd_ready};
use super::{Event, Flat, Leaf, flatten};
use crate::sched::park::{Park, Unparker, Wait, Wake, stop};
use crate::util::{SpinGuard, random};

/// The channels the leaves use, deduplicated and in address order (the lock order).
fn channels<T>(leaves: &[Leaf<T>]) -> Vec<Arc<ChanInner>> {
    let mut chans: Vec<Arc<ChanInner>> = leaves
        .iter()
        .filter_map(|l| match &l.op {
            BaseOp::Send { chan, .. } | BaseOp::Recv { chan } => Some(chan.clone()),
            _ => None,
        })
        .collect();
    chans.sort_by_key(|c| Arc::as_ptr(c) as usize);
    chans.dedup_by_key(|c| Arc::as_ptr(c) as usize);
    chans
}

/// Steps 2-4 for `sync` (`block`) and `poll`.
#[track_caller]
pub(super) fn run_sync<T>(ev: Event<T>, block: bool) -> Option<T> {
    let mut flat = Flat {
        block,
        start: None,
        aborts: Vec::new(),
        abort_stack: Vec::new(),
        nacks: Vec::new(),
        group_stack: Vec::new(),
    };
    let mut leaves = flatten(ev, &mut flat);
    let chans = channels(&leaves);
    let index_of = |chan: &Arc<ChanInner>| {
        chans
            .iter()
            .position(|c| Arc::ptr_eq(c, chan))
            .expect("collected above")
    };

    // Step 2: attempt, under every channel lock.
    let mut guards: Vec<_> = chans.iter().map(|c| c.queues.lock()).collect();
    let mut committed: Option<(usize, Payload)> = None;
    loop {
        // Pick uniformly among the leaves ready now (count them, draw, find the drawn one: no
        // allocation); a channel leaf can still lose its partner to another sync between the
        // look and the claim, then look again.
        let count = (0..leaves.len())
            .filter(|&i| leaf_ready(&leaves[i], &mut guards, &chans))
            .count();
        if count == 0 {
            break;
        }
        let draw = if count == 1 { 0 } else { random(count) };
        let Some(i) = (0..leaves.len())
            .filter(|&i| leaf_ready(&leaves[i], &mut guards, &chans))
            .nth(draw)
        else {
            continue;
        };
        let done = match &mut leaves[i].op {
            BaseOp::Send { chan, value } => {
                let v = std::mem::replace(value, Box::new(()));
                match guards[index_of(chan)].give(v) {
                    Ok(()) => Some(Box::new(()) as Payload),
                    Err(v) => {
                        *value = v;
                        None
                    }
                }
            }
            BaseOp::Recv { chan } => guards[index_of(chan)].take(),
            BaseOp::Always(v) => Some(std::mem::replace(v, Box::new(()))),
            _ => Some(Box::new(()) as Payload),
        };
        if let Some(p) = done {
            committed = Some((i, p));
            break;
        }
    }

    let (chosen, payload) = match committed {
        Some(c) => {
            drop(guards);
            c
        }
        None if !block => {
            drop(guards);
            // Nothing ready: every wrap_abort runs (reverse order), every nack fires (Flat's drop).
            run_aborts(&mut flat, &[]);
            drop(leaves);
            return None;
        }
        None => {
            // Step 3: offer every channel leaf, still under the locks.
            let state = Arc::new(SyncState::new(leaves.iter_mut().map(|l| match &mut l.op {
                BaseOp::Send { value, .. } => Some(std::mem::replace(value, Box::new(()))),
                _ => None,
            })));
            for (i, leaf) in leaves.iter().enumerate() {
                match &leaf.op {
                    BaseOp::Send { chan, .. } => {
                        guards[index_of(chan)].register(Offer::shared(state.clone(), i), true)
                    }
                    BaseOp::Recv { chan } => {
                        guards[index_of(chan)].register(Offer::shared(state.clone(), i), false)
                    }
                    _ => {}
                }
            }
            // From here until the commit, an unwind (the runtime dropping this task) abandons
            // the sync and drops its values.
            let abandon = AbandonOnUnwind { state: &state };
            drop(guards);
            let chosen = wait_commit(&state, &leaves);
            std::mem::forget(abandon);
            let payload = match &leaves[chosen].op {
                BaseOp::Recv { .. } => {
                    // SAFETY: `wait_commit` returned a committed leaf: the word has settled.
                    unsafe { state.slot_value(chosen) }.expect("a committed receive has its value")
                }
                _ => Box::new(()) as Payload,
            };
            // Our stale offers may linger in channels (and be dropped under their locks): leave
            // nothing of ours in them. Unsent values are dropped here, by us.
            drop(release_slots(&state, &leaves));
            (chosen, payload)
        }
    };

    // Step 4: end the signal watches (with the leaves) and fire the nacks of the other groups,
    // then the chosen leaf's wraps and the other aborts.
    let Leaf {
        op,
        finish,
        aborts,
        groups,
    } = leaves.swap_remove(chosen);
    drop(op);
    for (g, cell) in flat.nacks.iter().enumerate() {
        if !groups.contains(&g) {
            cell.fire();
        }
    }
    flat.nacks.clear();
    drop(leaves);
    let aborts = AbortsOnDrop {
        flat: &mut flat,
        keep: aborts,
    };
    let value = finish(payload);
    drop(aborts);
    Some(value)
}

/// Whether `leaf` can complete now (channel leaves: a live partner is queued).
fn leaf_ready<T>(
    leaf: &Leaf<T>,
    guards: &mut [SpinGuard<'_, channel::Queues>],
    chans: &[Arc<ChanInner>],
) -> bool {
    let queues = |chan: &Arc<ChanInner>| {
        chans
            .iter()
            .position(|c| Arc::ptr_eq(c, chan))
            .expect("collected")
    };
    match &leaf.op {
        BaseOp::Always(_) => true,
        BaseOp::Never => false,
        BaseOp::At(t) => Instant::now() >= *t,
        BaseOp::After(_) => unreachable!("resolved at flattening"),
        BaseOp::Join(task) => task.is_finished(),
        BaseOp::Nack(cell) => cell.is_fired(),
        BaseOp::Ready { fd, dir } => fd_ready(*fd, *dir),
        BaseOp::Signal { watch, .. } => watch.as_ref().is_some_and(|w| w.fired.is_fired()),
        BaseOp::Send { chan, .. } => guards[queues(chan)].has_receiver(),
        BaseOp::Recv { chan } => guards[queues(chan)].has_sender(),
    }
}

/// Takes what a settled sync still holds (values it did not send, its unparker) so that they
/// are dropped by the syncer, not by whoever drops a stale offer under a channel lock.
fn release_slots<T>(state: &SyncState, leaves: &[Leaf<T>]) -> (Vec<Payload>, Option<Unparker>) {
    let unsent = leaves
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.op, BaseOp::Send { .. }))
        // SAFETY: callers call this once the word has settled (committed or abandoned by us).
        .filter_map(|(i, _)| unsafe { state.slot_value(i) })
        .collect();
    (unsent, state.take_unparker())
}

/// Runs the `wrap_abort` functions not in `keep`, in reverse order of appearance. A panicking
/// one does not stop the others; the first panic is raised again afterwards, unless the thread
/// is unwinding: the syncing task may be (raising would then abort), or another task of its
/// domain is switched out mid-unwind and it cannot be told (see `sched::park::stop`); the panic
/// was reported by the hook all the same. A stop of the task (an abort that blocked) is not
/// caught: it unwinds the task at once.
fn run_aborts(flat: &mut Flat, keep: &[usize]) {
    let mut first_panic = None;
    for (id, abort) in flat.aborts.iter_mut().enumerate().rev() {
        if !keep.contains(&id) {
            if let Some(f) = abort.take() {
                if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    if stop::is_stop(&*p) {
                        // The task is being stopped (an abort blocked): it unwinds now, as
                        // from any wait; the aborts left are skipped.
                        std::panic::resume_unwind(p);
                    }
                    first_panic.get_or_insert(p);
                }
            }
        }
    }
    if let Some(p) = first_panic {
        if !std::thread::panicking() {
            std::panic::resume_unwind(p);
        }
    }
}

/// Runs the aborts after the chosen wrap, even if the wrap panics.
struct AbortsOnDrop<'a> {
    flat: &'a mut Flat,
    keep: Vec<usize>,
}

impl Drop for AbortsOnDrop<'_> {
    fn drop(&mut self) {
        run_aborts(self.flat, &self.keep);
    }
}

/// Step 3's park loop: until a leaf commits. Timer, join, nack, readiness and signal leaves
/// wake us; we commit them ourselves. Returns the committed leaf.
#[track_caller]
fn wait_commit<T>(state: &SyncState, leaves: &[Leaf<T>]) -> usize {
    let at = leaves
        .iter()
        .filter_map(|l| match l.op {
            BaseOp::At(t) => Some(t),
            _ => None,
        })
        .min();
    // Readiness leaves are looked at again every REVALIDATE: a descriptor closed behind
    // bobine's back gives no event, but counts as ready once closed.
    let revalidate = leaves.iter().any(|l| matches!(l.op, BaseOp::Ready { .. }));
    let in_task = !crate::sched::current_ptr().is_null();
    // A plain thread watches its readiness leaves in poll(2); a task through its domain.
    let polled: Vec<(RawFd, libc::c_short)> = if in_task {
        Vec::new()
    } else {
        leaves
            .iter()
            .filter_map(|l| match l.op {
                BaseOp::Ready { fd, dir } => Some((fd, dir.poll_events())),
                _ => None,
            })
            .collect()
    };
    loop {
        let park = Park::new();
        state.set_unparker(park.unparker());
        for leaf in leaves {
            match &leaf.op {
                BaseOp::Join(task) => {
                    task.add_joiner(park.unparker());
                }
                BaseOp::Nack(cell) => {
                    cell.add_waiter(park.unparker());
                }
                BaseOp::Signal { watch: Some(w), .. } => {
                    w.fired.add_waiter(park.unparker());
                }
                BaseOp::Ready { fd, dir } if in_task => {
                    // A descriptor epoll cannot watch (not open, or a regular file) is ready
                    // now, so `settle` commits it.
                    let _ = crate::sched::reactor::source::watch(*fd, *dir, park.unparker());
                }
                _ => {}
            }
        }
        if let Some(k) = settle(state, leaves) {
            return k;
        }
        // A task stopped here unwinds out of the park: the caller's guard abandons the sync
        // (its offers go stale, unless something committed first, which then wins) and the
        // nacks fire as the flattened event is dropped.
        let deadline = if revalidate {
            let slice = Instant::now() + crate::sched::reactor::source::REVALIDATE;
            Some(at.map_or(slice, |t| t.min(slice)))
        } else {
            at
        };
        let why = park.wait_polling(&Wait::hand_over("Event.sync").until(deadline), &polled);
        if why == Wake::Interrupted && stop::is_pending() {
            // Stopped. Committed after all (a partner, or a leaf ready now): that leaf stands
            // and the stop takes effect at the next park point. Else abandon and unwind; a
            // partner that commits first wins the word, and its leaf stands all the same.
            if let Some(k) = settle(state, leaves) {
                return k;
            }
            if state.abandon() {
                stop::unwind_if_stopped();
            }
            if let Outcome::Synched(k) = state.outcome() {
                return k;
            }
        }
    }
}

/// Whether the sync has committed, committing a ready timer, join, nack, readiness or signal
/// leaf ourselves.
fn settle<T>(state: &SyncState, leaves: &[Leaf<T>]) -> Option<usize> {
    match state.outcome() {
        Outcome::Synched(k) => return Some(k),
        Outcome::Abandoned => unreachable!("only the syncer abandons"),
        Outcome::Waiting => {}
    }
    let now = Instant::now();
    for (i, leaf) in leaves.iter().enumerate() {
        let ready = match &leaf.op {
            BaseOp::At(t) => now >= *t,
            BaseOp::Join(task) => task.is_finished(),
            BaseOp::Nack(cell) => cell.is_fired(),
            BaseOp::Ready { fd, dir } => fd_ready(*fd, *dir),
            BaseOp::Signal { watch, .. } => watch.as_ref().is_some_and(|w| w.fired.is_fired()),
            _ => false,
        };
        if ready && state.commit_self(i) {
            return Some(i);
        }
    }
    match state.outcome() {
        Outcome::Synched(k) => Some(k),
        _ => None,
    }
}
