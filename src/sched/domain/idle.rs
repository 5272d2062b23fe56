//! What a domain does about work it has not got: publishing what it could give away, asking
//! peers for theirs, handing it over, and spinning, then sleeping, when there is nothing to run
//! (the protocols are in the parent module's doc: "Cross-thread wake-up", "Spinning before
//! sleeping", "Work requesting").

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::sched::task::Task;

use super::{IDLE_RECHECK, Local, NO_REQUEST, SPIN, SPIN_CREDIT};

impl Local {
    /// Work that another domain could take has appeared here: wake one sleeping domain so it can
    /// ask for it (it would otherwise sleep until its next timer). Called when our count of
    /// never-started tasks goes from 0 to 1, so a busy spawner pays one scan of the domains'
    /// flags per batch, and a syscall only when a domain actually sleeps.
    pub(super) fn wake_idle_peer(&self) {
        for d in &self.rt.domains {
            if d.index != self.shared.index && d.wake_if_sleeping() {
                return;
            }
        }
    }

    /// Publishes how many never-started tasks we could give away.
    ///
    /// Only a change to or from zero takes part in the Dekker pair with an idle peer's
    /// `sleeping` flag (it must be SeqCst, an `xchg` on x86); other changes only guide a
    /// thief's choice of victim and are plain stores. A runtime of one domain has nobody to
    /// tell. So a burst of spawns pays for one fence, not one per spawn.
    #[inline]
    pub(super) fn set_stealable(&self, n: usize) {
        let was = self.stealable.replace(n);
        if self.rt.domains.len() == 1 {
            return;
        }
        if (was == 0) != (n == 0) {
            self.shared.own.stealable.store(n, Ordering::SeqCst);
        } else {
            self.shared.own.stealable.store(n, Ordering::Relaxed);
        }
    }

    /// Moves half of our never-started tasks to the domain that asked for work.
    pub(super) fn donate(&self) {
        self.shared.bell.clear_steal();
        let thief = self
            .shared
            .steal_request
            .swap(NO_REQUEST, Ordering::Relaxed);
        let stealable = self.stealable.get();
        if thief == NO_REQUEST || thief == self.shared.index || stealable == 0 {
            return;
        }
        let give = stealable.div_ceil(2);
        let mut skip = stealable - give;
        let mut taken = 0;
        let moved = self.run_queue.extract(|ptr| {
            // SAFETY: queued tasks are owned by our registry.
            let t = unsafe { ptr.as_ref() };
            if t.is_started() || t.pinned || taken == give {
                return false;
            }
            if skip > 0 {
                skip -= 1;
                return false;
            }
            taken += 1;
            true
        });
        self.set_stealable(stealable - moved.len());
        let mut registry = self.registry.borrow_mut();
        let out: Vec<Arc<Task>> = moved
            .into_iter()
            // SAFETY: still owned by the registry until removed just here.
            .filter_map(|ptr| registry.remove(unsafe { ptr.as_ref() }.slot()))
            .collect();
        drop(registry);
        if let Some(d) = self.rt.domains.get(thief) {
            d.push_many(out);
        }
    }

    pub(super) fn try_steal(&self) {
        let me = self.shared.index;
        let victim = self
            .rt
            .domains
            .iter()
            .filter(|d| d.index != me)
            .map(|d| (d.own.stealable.load(Ordering::Relaxed), d))
            .filter(|(n, _)| *n > 0)
            .max_by_key(|(n, _)| *n);
        if let Some((_, d)) = victim {
            if d.steal_request
                .compare_exchange(NO_REQUEST, me, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                d.bell.request_steal();
            }
        }
    }

    pub(super) fn peer_has_stealable(&self) -> bool {
        let me = self.shared.index;
        self.rt
            .domains
            .iter()
            .any(|d| d.index != me && d.own.stealable.load(Ordering::SeqCst) > 0)
    }

    pub(super) fn idle(&self, done: &dyn Fn() -> bool) {
        if self.deferred.get() > 0 {
            self.resolve_deferred();
            if !self.run_queue.is_empty() {
                return;
            }
        }
        let mut next_deadline = None;
        if !self.timers.borrow().is_empty() {
            self.fire_timers(Instant::now());
            if !self.run_queue.is_empty() {
                return;
            }
            next_deadline = self.timers.borrow().next_deadline();
        }
        if done() {
            return;
        }
        if self.rt.domains.len() > 1 {
            self.try_steal();
            if self.spin_for_work(next_deadline, done) {
                return;
            }
        }
        let shared = &self.shared;
        let slept = Instant::now();
        shared.bell.begin_sleep();
        crate::sched::perturb::os_point();
        let mut timeout =
            next_deadline.map(|d: Instant| d.saturating_duration_since(Instant::now()));
        if self.closing.get() {
            // The shutdown watches for progress while idle (see `shutdown`).
            let tick = crate::sched::shutdown::TICK;
            timeout = Some(timeout.map_or(tick, |t| t.min(tick)));
        }
        if self.rt.domains.len() > 1 && self.peer_has_stealable() {
            // Work appeared on a peer after `try_steal` looked, and its 0 -> 1 wake-up may
            // have found us not yet asleep: ask again shortly instead of sleeping for good.
            self.try_steal();
            timeout = Some(timeout.map_or(IDLE_RECHECK, |t| t.min(IDLE_RECHECK)));
        }
        if shared.bell.inbox_pending() || shared.stop.load(Ordering::SeqCst) || done() {
            shared.bell.end_sleep();
            return;
        }
        shared.poller.wait(timeout);
        shared.bell.end_sleep();
        let credit = self.spin_credit.get();
        self.spin_credit.set(if slept.elapsed() <= SPIN {
            (credit + 1).min(SPIN_CREDIT)
        } else {
            0
        });
    }

    /// The spin before sleeping (see the module doc): true if work arrived meanwhile (an inbox
    /// or steal bit, a stop, or `done`).
    pub(super) fn spin_for_work(
        &self,
        next_deadline: Option<Instant>,
        done: &dyn Fn() -> bool,
    ) -> bool {
        if self.spin_credit.get() == 0 || self.closing.get() {
            return false;
        }
        let most = self
            .rt
            .domains
            .len()
            .div_ceil(2)
            .clamp(2, self.rt.domains.len());
        if self.rt.spinning.fetch_add(1, Ordering::Relaxed) >= most {
            self.rt.spinning.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let start = Instant::now();
        let until = next_deadline.map_or(start + SPIN, |d| d.min(start + SPIN));
        let shared = &self.shared;
        let found = 'spin: loop {
            for _ in 0..64 {
                std::hint::spin_loop();
                if shared.bell.peek() != 0 {
                    break 'spin true;
                }
            }
            if shared.stop.load(Ordering::Relaxed) || done() {
                break true;
            }
            if Instant::now() >= until {
                break false;
            }
            // Let a thread that shares this core run (the waker may be one): on a machine with
            // more runnable threads than cores, a spin that keeps the core is worse than sleep.
            std::thread::yield_now();
        };
        self.rt.spinning.fetch_sub(1, Ordering::Relaxed);
        let credit = self.spin_credit.get();
        self.spin_credit.set(if found {
            credit
        } else {
            credit.saturating_sub(1)
        });
        found
    }
}
