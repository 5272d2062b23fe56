//! What a domain does about work it has not got: waking a peer when stealable work appears,
//! taking never-started tasks from a busy peer's deque, and spinning, then sleeping, when there
//! is nothing to run (the protocols are in the parent module's doc: "Cross-thread wake-up",
//! "Spinning before sleeping", "Work stealing").

use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_deque::Steal;

use super::{Local, MARKER, SPIN, SPIN_CREDIT};

impl Local {
    /// Work that another domain could take has appeared here: wake one sleeping domain so it can
    /// take it (it would otherwise sleep until its next timer). Called when our stealable deque
    /// holds one task after a push (work stealing, step 2), so a busy spawner pays one scan of
    /// the domains' flags per batch, and a syscall only when a domain actually sleeps.
    pub(super) fn wake_idle_peer(&self) {
        for d in &self.rt.domains {
            if d.index != self.shared.index && d.wake_if_sleeping() {
                return;
            }
        }
    }

    /// Work stealing, step 5: takes half (at most 32) of the never-started tasks of the peer
    /// whose deque holds the most, into our own deque, and queues the first of them; false if
    /// no peer had any.
    pub(super) fn try_steal(&self) -> bool {
        let me = self.shared.index;
        loop {
            let victim = self
                .rt
                .domains
                .iter()
                .filter(|d| d.index != me)
                .map(|d| (d.stealer.len(), d))
                .filter(|(n, _)| *n > 0)
                .max_by_key(|(n, _)| *n);
            let Some((_, d)) = victim else {
                return false;
            };
            let before = self.stealable.len();
            match d.stealer.steal_batch_and_pop(&self.stealable) {
                Steal::Success(task) => {
                    let ptr = self.register(task);
                    self.run_queue.push(ptr);
                    // One marker per task moved into our deque. Thieves of ours may have
                    // taken some meanwhile (then a marker finds nothing), and a count too low
                    // is harmless too: the loop takes from the deque when the queue is empty.
                    for _ in before..self.stealable.len() {
                        self.run_queue.push(MARKER);
                    }
                    return true;
                }
                // Lost a race with the owner or another thief: look again.
                Steal::Retry => continue,
                Steal::Empty => return false,
            }
        }
    }

    /// Whether a peer's stealable deque holds a task. Each look has a SeqCst fence between
    /// its reads of the deque's ends: the sleeper's half of the Dekker pair of work stealing,
    /// step 2.
    pub(super) fn peer_has_stealable(&self) -> bool {
        let me = self.shared.index;
        self.rt
            .domains
            .iter()
            .any(|d| d.index != me && !d.stealer.is_empty())
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
        if self.peers && (self.try_steal() || self.spin_for_work(next_deadline, done)) {
            return;
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
        if shared.bell.mail_pending()
            // Work appeared on a peer after `try_steal` looked, and its wake-up may have found
            // us not yet asleep (work stealing, step 2): go and take it.
            || (self.peers && self.peer_has_stealable())
            || shared.stop.load(Ordering::SeqCst)
            || done()
        {
            shared.bell.end_sleep();
            return;
        }
        // For the monitor's deadlock watch: a sleep with no deadline, and one more sleep.
        let own = &shared.own;
        own.asleep_forever
            .store(timeout.is_none(), Ordering::Relaxed);
        own.naps
            .store(own.naps.load(Ordering::Relaxed) + 1, Ordering::Release);
        shared.poller.wait(timeout);
        own.asleep_forever.store(false, Ordering::Relaxed);
        shared.bell.end_sleep();
        crate::sched::monitor::domain_woke();
        self.clock.set(Instant::now());
        let credit = self.spin_credit.get();
        self.spin_credit.set(if slept.elapsed() <= SPIN {
            (credit + 1).min(SPIN_CREDIT)
        } else {
            0
        });
    }

    /// The spin before sleeping (see the module doc): true if work arrived meanwhile (an inbox
    /// bit, a stop, or `done`). It does not watch the peers' deques: a task just spawned is
    /// usually about to be run by its spawner's domain, and taking it away at once would turn
    /// the spawner's join into a cross-domain wake-up; the look before sleeping takes what is
    /// still there (work stealing, step 2).
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
