//! The sync algorithm, steps 2-5 of the module doc's `sync, step by step`: attempt under the
//! channel locks, offer and park until exactly one leaf commits, take the offers back, then
//! fire the other groups' nacks, apply the chosen leaf's wraps and run the other aborts.
//! [`poll`](super::Event::poll) is the same algorithm stopping after the attempt.
//!
//! Flattening (step 1) is in `mod.rs`, what a leaf is in `leaves.rs`, the commit word in
//! `commit.rs`, the channel queues in `channel.rs`. The protocol and why it holds several
//! channel locks at once are in the module doc (`mod.rs`).
//!
//! Nothing here allocates for a choice of up to [`INLINE_LEAVES`] leaves whose values fit a
//! [`Payload`] inline: the leaves, the channel set and the sync's state (its commit word) all
//! live in this frame (the leaves' value slots in the leaves). Offers point into that frame; see the
//! module doc for why that is sound.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use super::channel::{ChanInner, Offer, Queues};
use super::commit::{INLINE_LEAVES, Outcome, SyncState};
use super::leaves::{BaseOp, fd_ready};
use super::payload::Payload;
use super::source::{SourceRef, SyncOffer};
use super::{Enclosing, Event, Flat, HasOp, Leaf, Leaves, Node};
use crate::sched::park::{Park, Wait, Wake, park_current_borrowed, stop};
use crate::util::random;

/// Marks a leaf that uses no channel in [`Chans::of_leaf`].
const NO_CHAN: usize = usize::MAX;

/// A few `Copy` items inline, more on the heap: the sync's small tables. Unlike a `SmallVec`,
/// whose length lives where its storage does, a local `Table` keeps its length in a register
/// while it is built (that length's round trips through memory showed in the profile).
struct Table<T: Copy, const N: usize> {
    len: usize,
    inline: [T; N],
    heap: Vec<T>,
}

impl<T: Copy, const N: usize> Table<T, N> {
    /// An empty table; `fill` initialises the inline storage (never read before it is set).
    #[inline(always)]
    fn new(fill: T) -> Self {
        Table {
            len: 0,
            inline: [fill; N],
            heap: Vec::new(),
        }
    }

    #[inline(always)]
    fn push(&mut self, v: T) {
        if self.len < N {
            self.inline[self.len] = v;
        } else {
            self.spill(v);
        }
        self.len += 1;
    }

    #[cold]
    fn spill(&mut self, v: T) {
        if self.heap.is_empty() {
            self.heap.extend_from_slice(&self.inline);
        }
        self.heap.push(v);
    }

    #[inline(always)]
    fn as_slice(&self) -> &[T] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    #[inline(always)]
    fn as_mut_slice(&mut self) -> &mut [T] {
        if self.len <= N {
            &mut self.inline[..self.len]
        } else {
            &mut self.heap
        }
    }

    #[inline(always)]
    fn truncate(&mut self, len: usize) {
        if self.len > N && len <= N {
            self.inline[..len].copy_from_slice(&self.heap[..len]);
            self.heap.clear();
        } else if self.len > N {
            self.heap.truncate(len);
        }
        self.len = len.min(self.len);
    }
}

/// The channels the leaves use, deduplicated and in address order (the lock order), and for
/// each leaf the index of its channel there and whether it sends; and the receive sources of
/// other primitives the leaves use (`source.rs`), which are locked one at a time.
struct Chans<'a> {
    /// Pointers into the leaves' `Arc`s, which outlive `'a`.
    chans: Table<*const ChanInner, INLINE_LEAVES>,
    of_leaf: Table<(usize, bool), INLINE_LEAVES>,
    /// Empty (no allocation) unless a leaf receives from a source.
    sources: Vec<&'a SourceRef>,
    _leaves: std::marker::PhantomData<&'a ChanInner>,
}

impl<'a> Chans<'a> {
    #[inline(always)]
    fn new<L: HasOp>(leaves: &'a [L]) -> Chans<'a> {
        let mut chans = Table::new(std::ptr::null());
        let mut of_leaf = Table::new((NO_CHAN, false));
        let mut sources: Vec<&'a SourceRef> = Vec::new();
        for l in leaves {
            of_leaf.push(match l.op() {
                BaseOp::Source { src, .. } => {
                    sources.push(src);
                    (NO_CHAN, false)
                }
                BaseOp::Send { chan, .. } => {
                    chans.push(Arc::as_ptr(chan));
                    (0, true)
                }
                BaseOp::Recv { chan, .. } => {
                    chans.push(Arc::as_ptr(chan));
                    (0, false)
                }
                _ => (NO_CHAN, false),
            });
        }
        // Address order without duplicates: an insertion sort of a handful of channels (in
        // order already, it moves nothing).
        let sorted = chans.as_mut_slice();
        for i in 1..sorted.len() {
            let mut j = i;
            while j > 0 && sorted[j - 1] > sorted[j] {
                sorted.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut n = 0;
        for i in 0..sorted.len() {
            if n == 0 || sorted[n - 1] != sorted[i] {
                sorted[n] = sorted[i];
                n += 1;
            }
        }
        chans.truncate(n);
        let sorted = chans.as_slice();
        for (l, (c, _)) in leaves.iter().zip(of_leaf.as_mut_slice()) {
            if let BaseOp::Send { chan, .. } | BaseOp::Recv { chan, .. } = l.op() {
                *c = sorted
                    .iter()
                    .position(|d| *d == Arc::as_ptr(chan))
                    .expect("collected above");
            }
        }
        Chans {
            chans,
            of_leaf,
            sources,
            _leaves: std::marker::PhantomData,
        }
    }

    /// The channels, in lock order.
    #[inline(always)]
    fn chans(&self) -> impl Iterator<Item = &'a ChanInner> + '_ {
        self.chans.as_slice().iter().map(|&c| {
            // SAFETY: a pointer into an `Arc<ChanInner>` of a leaf, which outlives `'a`.
            unsafe { &*c }
        })
    }

    /// For each leaf, the index of its channel (`NO_CHAN`: none) and whether it sends.
    #[inline(always)]
    fn of_leaf(&self) -> &[(usize, bool)] {
        self.of_leaf.as_slice()
    }

    /// The channel of index `c`.
    #[inline(always)]
    fn chan(&self, c: usize) -> &'a ChanInner {
        // SAFETY: as in `chans`.
        unsafe { &*self.chans.as_slice()[c] }
    }

    /// Takes the offers of `state` out of every channel but `skip` (step 4 of the module doc's
    /// `sync`): under each channel's lock, so that a partner that met one of them (and found it
    /// stale) is done with the state before the caller's frame, which holds it, ends.
    fn withdraw(&self, state: &SyncState, skip: usize) {
        // Sources: under each one's lock, in turn (`source.rs`, step 4); none is skipped.
        for src in &self.sources {
            src.withdraw(state);
        }
        let of_leaf = self.of_leaf();
        for (c, chan) in self.chans().enumerate() {
            if c == skip {
                continue;
            }
            let mut queues = chan.queues.lock();
            for &(d, sender) in of_leaf {
                if d == c {
                    queues.withdraw_sync(state, sender);
                }
            }
        }
    }

    /// Step 4 after a commit of leaf `chosen`: the offers left in every channel. The channel of
    /// a committed channel leaf is skipped when that leaf was our only offer there: the partner
    /// that committed it popped it, and its store of SYNCHED (which we have seen) was its last
    /// touch of the state.
    fn withdraw_after_commit(&self, state: &SyncState, chosen: usize) {
        let of_leaf = self.of_leaf();
        let skip = match of_leaf[chosen].0 {
            NO_CHAN => NO_CHAN,
            c if of_leaf.iter().filter(|(d, _)| *d == c).count() == 1 => c,
            _ => NO_CHAN,
        };
        self.withdraw(state, skip);
    }
}

/// Every channel of a sync locked (step 2), in address order; all released when dropped. One
/// lock word each, no guard objects to keep.
struct Locked<'a, 'c> {
    chans: &'a Chans<'c>,
}

impl<'a, 'c> Locked<'a, 'c> {
    #[inline(always)]
    fn new(chans: &'a Chans<'c>) -> Self {
        for c in chans.chans() {
            c.queues.lock_raw();
        }
        Locked { chans }
    }

    /// The queues of channel `c`, while we hold every lock.
    #[inline(always)]
    fn queues(&mut self, c: usize) -> &mut Queues {
        // SAFETY: we hold the lock of every channel until dropped, and `&mut self` makes this
        // the only live reference to that channel's queues.
        unsafe { self.chans.chan(c).queues.data_mut() }
    }
}

impl Drop for Locked<'_, '_> {
    #[inline(always)]
    fn drop(&mut self) {
        for c in self.chans.chans() {
            // SAFETY: taken in `new`, released once, here; no reference from `queues` can
            // outlive `self`.
            unsafe { c.queues.unlock_raw() };
        }
    }
}

/// While the sync's offers may be queued: if the syncer unwinds (a stop, or the runtime
/// dropping its task), the sync is abandoned, so its offers are stale, and they are taken out
/// of every channel before the frame that holds the state ends. The values still in the slots
/// are dropped with the leaves, by the syncer, outside any lock.
struct Offered<'a, 'c> {
    state: &'a SyncState,
    chans: &'a Chans<'c>,
}

impl Drop for Offered<'_, '_> {
    fn drop(&mut self) {
        if !self.state.abandon() {
            // A partner committed first: wait out its claim.
            self.state.outcome();
        }
        self.chans.withdraw(self.state, NO_CHAN);
    }
}

/// Steps 2-5 for `sync` (`block`) and `poll`.
#[track_caller]
pub(super) fn run_sync<T>(ev: Event<T>, block: bool) -> Option<T> {
    if let Node::Choose(evs) = &ev.node {
        if evs.iter().all(Event::is_plain) {
            let Node::Choose(evs) = ev.node else {
                unreachable!("matched above")
            };
            return sync_in_place(evs, block);
        }
    } else if ev.is_plain() {
        // A lone base event (`c.recv_evt().sync()`), its own leaf likewise.
        let state = SyncState::new();
        let (_, payload) = attempt_and_wait(std::slice::from_ref(&ev), &state, block)?;
        let Node::Base(base) = ev.node else {
            unreachable!("a base event")
        };
        drop(base.op);
        return Some((base.finish)(payload));
    }
    run_sync_flattened(ev, block)
}

/// A choice of plain base events (the common `select(vec![c.recv_evt(), ...])`): flattening
/// would only copy each event into a leaf of its own, with nothing enclosing it. So the events
/// stay where they are, in the choice's vector, and serve as the leaves (their value slots
/// included); the chosen one's finish function makes the value.
#[track_caller]
fn sync_in_place<T>(mut evs: Vec<Event<T>>, block: bool) -> Option<T> {
    // The state and the events (with their value slots) stay in place while offers may point
    // to them.
    let state = SyncState::new();
    let (chosen, payload) = attempt_and_wait(&evs, &state, block)?;
    let Node::Base(base) = evs.swap_remove(chosen).node else {
        unreachable!("a choice of base events")
    };
    drop(base.op);
    // The values the sync did not send are dropped here, by us, before the finish function
    // (user code) runs, as in the flattened path.
    drop(evs);
    Some((base.finish)(payload))
}

/// Steps 1-5 for an event that needs flattening (guards, wraps, nacks, aborts, nested choices,
/// `after` and `signal` leaves).
#[track_caller]
fn run_sync_flattened<T>(ev: Event<T>, block: bool) -> Option<T> {
    let mut flat = Flat {
        block,
        start: None,
        aborts: Vec::new(),
        abort_stack: Vec::new(),
        nacks: Vec::new(),
        group_stack: Vec::new(),
    };
    let mut leaves = Leaves::new();
    ev.flatten_into(&mut flat, &mut leaves);
    // The state and the leaves (with their value slots) stay in this frame, in place, while
    // offers may point to them.
    let state = SyncState::new();
    let (chosen, payload) = match attempt_and_wait(&leaves, &state, block) {
        Some(c) => c,
        None => {
            // Nothing ready: every wrap_abort runs (reverse order), every nack fires (Flat's
            // drop).
            run_aborts(&mut flat, &[]);
            leaves.clear();
            return None;
        }
    };

    // Step 5: end the signal watches (with the leaves) and fire the nacks of the other groups,
    // then the chosen leaf's wraps and the other aborts.
    let Leaf {
        op,
        finish,
        enclosing,
    } = leaves.swap_remove(chosen);
    drop(op);
    let Enclosing { aborts, groups } = enclosing.map(|e| *e).unwrap_or_default();
    if !flat.nacks.is_empty() {
        for (g, cell) in flat.nacks.iter().enumerate() {
            if !groups.contains(&g) {
                cell.fire();
            }
        }
        flat.nacks.clear();
    }
    // In place (no move of the inline leaves); the values the sync did not send are dropped
    // here, by us.
    leaves.clear();
    if flat.aborts.is_empty() {
        return Some(finish(payload));
    }
    let aborts = AbortsOnDrop {
        flat: &mut flat,
        keep: aborts,
    };
    let value = finish(payload);
    drop(aborts);
    Some(value)
}

/// Steps 2 to 4: the attempt, and for a blocking sync with nothing ready the offers and the
/// wait, until one leaf commits; its index and payload. `None`: a `poll` found nothing ready.
#[track_caller]
fn attempt_and_wait<L: HasOp>(
    leaves: &[L],
    state: &SyncState,
    block: bool,
) -> Option<(usize, Payload)> {
    let chans = Chans::new(leaves);
    // Step 2: attempt, under every channel lock.
    let mut locked = Locked::new(&chans);
    let of_leaf = chans.of_leaf();
    loop {
        let queues = &mut locked;
        // Pick uniformly among the leaves ready now (count them, draw, find the drawn one: no
        // allocation); a channel leaf can still lose its partner to another sync between the
        // look and the claim, then look again.
        let mut count = 0;
        let mut first = 0;
        for i in 0..leaves.len() {
            if leaf_ready(leaves[i].op(), of_leaf[i].0, queues) {
                if count == 0 {
                    first = i;
                }
                count += 1;
            }
        }
        let i = match count {
            0 => break,
            1 => first,
            _ => {
                let draw = random(count);
                let Some(i) = (0..leaves.len())
                    .filter(|&i| leaf_ready(leaves[i].op(), of_leaf[i].0, queues))
                    .nth(draw)
                else {
                    continue;
                };
                i
            }
        };
        let done = match leaves[i].op() {
            BaseOp::Send { value, .. } => {
                // SAFETY: no offer of ours is visible yet: the slots are ours.
                let slot = unsafe { value.get() };
                let v = slot.take().expect("a send leaf holds its value");
                match queues.queues(of_leaf[i].0).give(v) {
                    Ok(()) => Some(Payload::unit()),
                    Err(v) => {
                        *slot = Some(v);
                        None
                    }
                }
            }
            BaseOp::Recv { .. } => queues.queues(of_leaf[i].0).take(),
            BaseOp::Source { src, .. } => src.take(),
            // SAFETY: as above.
            BaseOp::Always(value) => Some(
                unsafe { value.get() }
                    .take()
                    .expect("an always leaf holds its value"),
            ),
            _ => Some(Payload::unit()),
        };
        if let Some(p) = done {
            drop(locked);
            return Some((i, p));
        }
    }
    if !block {
        return None;
    }

    // Step 3: offer every channel leaf, still under the locks, then park. From the first offer
    // until the offers are taken back, an unwind abandons the sync (`Offered`).
    let register = |locked: &mut Locked<'_, '_>| {
        for (i, leaf) in leaves.iter().enumerate() {
            if let BaseOp::Send { value, .. } | BaseOp::Recv { value, .. } = leaf.op() {
                let (c, sender) = of_leaf[i];
                locked
                    .queues(c)
                    .register(Offer::sync(state, value, i), sender);
            } else if let BaseOp::Source { src, value } = leaf.op() {
                // May commit the sync at once (`source.rs`, step 2): such syncs wait in
                // `wait_commit`, which sees it.
                src.offer(SyncOffer::new(state, value, i));
            }
        }
    };
    let offered = Offered {
        state,
        chans: &chans,
    };
    let only_channels = leaves.iter().all(|l| {
        matches!(
            l.op(),
            BaseOp::Send { .. } | BaseOp::Recv { .. } | BaseOp::Never
        )
    });
    let chosen = if only_channels {
        // Only a partner can commit us: it takes the unparker as it claims (`commit.rs`) and
        // wakes us before it stores SYNCHED, so the unparker needs no reference count.
        let mut locked = Some(locked);
        // SAFETY: the unparker goes into the state only, set before any offer is visible;
        // exactly one partner takes it out (its claim) and wakes it before storing SYNCHED, its
        // last touch. We leave only once the word has settled: woken by that partner (then
        // `outcome` waits for SYNCHED), or after abandoning the word (then no partner holds
        // it), or with SYNCHED seen.
        let why = unsafe {
            park_current_borrowed(&Wait::hand_over("Event.sync"), |u| {
                // SAFETY: no offer is registered yet.
                state.set_unparker_unpublished(u);
                let mut locked = locked.take().expect("published once");
                register(&mut locked);
            })
        };
        match (why, state.outcome()) {
            (_, Outcome::Synched(k)) => k,
            (Wake::Unparked, o) => unreachable!("woken by a partner, the word says {o:?}"),
            // A stop (or a wake that cannot happen here): the general loop settles it.
            _ => wait_commit(state, leaves),
        }
    } else {
        register(&mut locked);
        drop(locked);
        wait_commit(state, leaves)
    };
    std::mem::forget(offered);
    let payload = match leaves[chosen].op() {
        BaseOp::Recv { value, .. } | BaseOp::Source { value, .. } => {
            // SAFETY: the word has settled (SYNCHED, the partner's window waited out).
            unsafe { value.get() }
                .take()
                .expect("a committed receive has its value")
        }
        _ => Payload::unit(),
    };
    // Step 4 of the module doc: no offer of ours stays in a channel once we return.
    chans.withdraw_after_commit(state, chosen);
    Some((chosen, payload))
}

/// Whether `leaf` can complete now (channel leaves: a live partner is queued in channel `c`).
#[inline(always)]
fn leaf_ready(leaf: &BaseOp, c: usize, locked: &mut Locked<'_, '_>) -> bool {
    match leaf {
        BaseOp::Always(_) => true,
        BaseOp::Never => false,
        BaseOp::At(t) => Instant::now() >= *t,
        BaseOp::After(_) => unreachable!("resolved at flattening"),
        BaseOp::Join(task) => task.is_finished(),
        BaseOp::Nack(cell) => cell.is_fired(),
        BaseOp::Ready { fd, dir } => fd_ready(*fd, *dir),
        BaseOp::Signal { watch, .. } => watch.as_ref().is_some_and(|w| w.fired.is_fired()),
        BaseOp::Send { .. } => locked.queues(c).has_receiver(),
        BaseOp::Recv { .. } => locked.queues(c).has_sender(),
        BaseOp::Source { src, .. } => src.ready(),
    }
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
fn wait_commit<L: HasOp>(state: &SyncState, leaves: &[L]) -> usize {
    let at = leaves
        .iter()
        .filter_map(|l| match *l.op() {
            BaseOp::At(t) => Some(t),
            _ => None,
        })
        .min();
    // Readiness leaves are looked at again every REVALIDATE: a descriptor closed behind
    // bobine's back gives no event, but counts as ready once closed.
    let revalidate = leaves
        .iter()
        .any(|l| matches!(l.op(), BaseOp::Ready { .. }));
    let in_task = !crate::sched::current_ptr().is_null();
    // A plain thread watches its readiness leaves in poll(2); a task through its domain.
    let polled: Vec<(RawFd, libc::c_short)> = if in_task {
        Vec::new()
    } else {
        leaves
            .iter()
            .filter_map(|l| match *l.op() {
                BaseOp::Ready { fd, dir } => Some((fd, dir.poll_events())),
                _ => None,
            })
            .collect()
    };
    loop {
        let park = Park::new();
        // False: something committed, which `settle` sees.
        state.set_unparker(park.unparker());
        for leaf in leaves {
            match leaf.op() {
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
fn settle<L: HasOp>(state: &SyncState, leaves: &[L]) -> Option<usize> {
    match state.outcome() {
        Outcome::Synched(k) => return Some(k),
        Outcome::Abandoned => unreachable!("only the syncer abandons"),
        Outcome::Waiting => {}
    }
    let now = Instant::now();
    for (i, leaf) in leaves.iter().enumerate() {
        let ready = match leaf.op() {
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
