//! The monitor: one OS thread per process (`bobine-monitor`, Go's sysmon) that watches every
//! live runtime from outside and reports what a cooperative scheduler cannot see from inside:
//!
//! - **stalls**: a domain that has not come back to its scheduler for more than [`STALL`]
//!   (`BOBINE_STALL_MS` overrides it, 0 turns it off) (a task computing without yielding, or a
//!   blocking call of std made inside a task) is reported once per task, with the task's name, where it last resumed, and the system call
//!   its domain's thread is in, if any;
//! - **deadlocks**: a runtime all of whose tasks are parked with nothing left that could wake
//!   any of them is ended, and its `run` panics with `deadlock: all tasks are blocked` and the
//!   task dump;
//! - **SIGQUIT**: when the count of SIGQUITs moves, the dump of every live runtime (see
//!   `inspect::install_sigquit`);
//! - **shutdowns that take long**: a runtime still ending after [`SHUTDOWN_REPORT`]
//!   (`BOBINE_SHUTDOWN_REPORT_MS` overrides it) has the dump of what it waits for printed, and
//!   again every [`SHUTDOWN_REPEAT`].
//!
//! It looks every [`BUSY_TICK`] while some domain is awake, every [`IDLE_TICK`] while all sleep
//! (a domain that wakes then wakes the monitor: [`domain_woke`]), and not at all while no
//! runtime is alive. It never touches a domain's state but
//! through atomics the domain publishes without fences (`DomainShared::own`), the inspection
//! protocol and dump requests of [`super::inspect`].
//!
//! ## When is a runtime deadlocked
//!
//! The watch declares a deadlock when, at two looks at least [`CONFIRM`] apart:
//!
//! 1. every domain of every live runtime (the global runtime included, since its tasks may
//!    hold handles to ours) sleeps in epoll with no deadline (`asleep_forever`: no timer is
//!    armed on it), has no descriptor registered with its epoll, has nothing in its inbox, and
//!    has made no new sleep between the two looks (`naps` unchanged: it did not wake at all);
//! 2. no runtime is ending (a shutdown has its own watch);
//! 3. every helper thread is quiet: the blocking pool has no job queued or running, and no
//!    signal is watched (a signal could wake a task);
//! 4. every other thread of the process is blocked waiting for another thread with no time
//!    limit ([`census`]): a plain thread inside a bobine call with no deadline is such a
//!    thread; so is a thread blocked in a `join`, a std lock or a `recv` with no timeout.
//!
//! Then no thread can move, so no task can be woken. The dump is taken, the runtime is marked
//! deadlocked and its domain 0 woken: `run` stops waiting for its main task, ends the runtime
//! as it does after `main` returns (every task is stopped and unwinds; what cannot finish is
//! reported and abandoned), and panics with the report.
//!
//! What it cannot see, and so never reports: a deadlock while any thread of the process might
//! move (a thread that computes, sleeps, reads a terminal or waits with a timeout, as a test
//! harness's main thread does while several tests run at once); a deadlock among tasks while
//! a descriptor is registered (an idle listening socket, a peer that will never write) or a
//! timer is armed (a task that sleeps in a loop); a deadlock between a task and a plain thread
//! that waits for it in a primitive that is not bobine's with a timeout. A deadlock inside one
//! runtime while another runtime of the process still works is not reported either (a task of
//! the other might hold the key). `Builder::deadlock_detection(false)` turns the report off
//! for one runtime.

pub(crate) mod census;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::domain::DomainShared;
use super::inspect;
use super::runtime::RuntimeShared;

/// How long a domain may stay in one task before it is reported (unless `BOBINE_STALL_MS` says
/// otherwise; `BOBINE_STALL_MS=0` turns the report off).
pub(crate) const STALL: Duration = Duration::from_millis(10);

/// The stall bound in force: `None` when the report is off.
fn stall_bound() -> Option<Duration> {
    static BOUND: OnceLock<Option<Duration>> = OnceLock::new();
    *BOUND.get_or_init(|| match std::env::var("BOBINE_STALL_MS") {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => {
                eprintln!("bobine: BOBINE_STALL_MS must be a number of milliseconds, got {v:?}");
                Some(STALL)
            }
        },
        Err(_) => Some(STALL),
    })
}
/// How often the monitor looks while some domain is awake.
const BUSY_TICK: Duration = Duration::from_millis(5);
/// How often it looks while every domain sleeps (a domain that wakes wakes it).
const IDLE_TICK: Duration = Duration::from_millis(50);
/// How long a runtime must look deadlocked, unchanged, before it is declared so.
const CONFIRM: Duration = Duration::from_millis(200);
/// How long a runtime may take to end before what it waits for is printed (unless
/// `BOBINE_SHUTDOWN_REPORT_MS` says otherwise).
const SHUTDOWN_REPORT: Duration = Duration::from_secs(5);

fn shutdown_report() -> Duration {
    static AFTER: OnceLock<Duration> = OnceLock::new();
    *AFTER.get_or_init(|| {
        std::env::var("BOBINE_SHUTDOWN_REPORT_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map_or(SHUTDOWN_REPORT, Duration::from_millis)
    })
}
/// How often that report is repeated while the runtime still has not ended.
const SHUTDOWN_REPEAT: Duration = Duration::from_secs(30);

/// The live runtimes, for the monitor and for `diag::dump`.
static LIVE: Mutex<Vec<Weak<RuntimeShared>>> = Mutex::new(Vec::new());

/// Threads bobine starts besides domains (pool workers, the signal dispatcher, the monitor),
/// each with the test that says it cannot wake a task now.
static HELPERS: Mutex<Vec<Helper>> = Mutex::new(Vec::new());

/// A helper thread's id, and whether it cannot wake a task now.
type Helper = (i32, fn() -> bool);

/// Wakes the monitor when the first runtime starts, or when a domain wakes while the monitor
/// sleeps long because every domain slept (see [`domain_woke`]).
static POKE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// Set while the monitor sleeps for [`IDLE_TICK`] (every domain was asleep at its last look).
static DEEP: AtomicBool = AtomicBool::new(false);

/// A domain woke from its sleep: if the monitor sleeps long, it is woken, so that a stall that
/// begins now is seen after [`STALL`], not after the rest of a long sleep. Called after the
/// domain cleared `sleeping` (SeqCst); costs a load (the domain has just come back from
/// `epoll_wait`), and a futex wake when the monitor sleeps long.
#[inline]
pub(crate) fn domain_woke() {
    if DEEP.load(Ordering::SeqCst) && DEEP.swap(false, Ordering::SeqCst) {
        poke();
    }
}

fn poke() {
    let (lock, cvar) = &POKE;
    *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
    cvar.notify_one();
}

/// Registers a new runtime with the monitor (starting the monitor the first time).
pub(crate) fn register(rt: &Arc<RuntimeShared>) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(rt));
    start();
    poke();
}

/// Forgets a runtime that is ending for good (`run`, before it drops the runtime): from now on
/// neither the monitor nor a dump looks at it.
pub(crate) fn unregister(rt: &Arc<RuntimeShared>) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(rt)));
}

/// The runtimes alive now, in start order.
pub(crate) fn live_runtimes() -> Vec<Arc<RuntimeShared>> {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|w| w.strong_count() > 0);
    live.iter().filter_map(Weak::upgrade).collect()
}

/// Registers the calling thread as a bobine helper thread, which cannot wake a task while
/// `quiet` says so; forgotten when the guard drops (the thread ends).
pub(crate) fn helper_thread(quiet: fn() -> bool) -> HelperGuard {
    // SAFETY: `gettid` has no preconditions.
    let tid = unsafe { libc::gettid() };
    HELPERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((tid, quiet));
    HelperGuard { tid }
}

/// Keeps a helper thread registered (see [`helper_thread`]).
pub(crate) struct HelperGuard {
    tid: i32,
}

impl Drop for HelperGuard {
    fn drop(&mut self) {
        HELPERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, _)| *t != self.tid);
    }
}

fn start() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("bobine-monitor".into())
            .spawn(|| {
                let _me = helper_thread(|| true);
                Monitor::default().run()
            });
        if let Err(e) = spawned {
            eprintln!(
                "bobine: cannot start the monitor thread ({e}): stalls and deadlocks will not be \
                 reported"
            );
        }
    });
}

/// What one domain was doing at the monitor's last looks.
struct Seen {
    task: usize,
    resumes: u64,
    since: Instant,
    /// The domain thread's CPU time at `since`.
    cpu: Option<Duration>,
    reported: bool,
}

#[derive(Default)]
struct Monitor {
    /// Per (runtime, domain): the task it ran at the last look.
    running: HashMap<(u64, usize), Seen>,
    /// Per ending runtime: since when, and when it was last reported.
    ending: HashMap<u64, (Instant, Option<Instant>)>,
    /// The runtimes looked deadlocked at this moment, with these sleep counts.
    candidate: Option<(Instant, Vec<u64>)>,
    /// SIGQUITs already answered with a dump.
    quits: u64,
}

impl Monitor {
    fn run(mut self) -> ! {
        loop {
            let runtimes = live_runtimes();
            let wait = if runtimes.is_empty() {
                // A SIGQUIT while no runtime lives has nothing to show.
                self = Monitor {
                    quits: inspect::quits(),
                    ..Monitor::default()
                };
                None
            } else {
                let busy = self.look(&runtimes);
                let all_asleep = || {
                    runtimes
                        .iter()
                        .flat_map(|rt| &rt.domains)
                        .all(|d| d.is_sleeping())
                };
                // A Dekker pair with `domain_woke`: a domain that wakes after this store finds
                // DEEP set and pokes us; one that woke before it is seen awake just below.
                let deep = !busy && all_asleep();
                DEEP.store(deep, Ordering::SeqCst);
                let deep = deep && all_asleep();
                if !deep {
                    DEEP.store(false, Ordering::SeqCst);
                }
                Some(if deep { IDLE_TICK } else { BUSY_TICK })
            };
            // Dropped before sleeping, so that `run` may drop its runtime last.
            drop(runtimes);
            let (lock, cvar) = &POKE;
            let mut poked = lock.lock().unwrap_or_else(|e| e.into_inner());
            match wait {
                Some(d) => {
                    if !*poked {
                        poked = cvar
                            .wait_timeout(poked, d)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
                None => {
                    while !*poked {
                        poked = cvar.wait(poked).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
            *poked = false;
        }
    }

    /// One look at every runtime; returns whether some domain runs a task.
    fn look(&mut self, runtimes: &[Arc<RuntimeShared>]) -> bool {
        let quits = inspect::quits();
        if quits != self.quits {
            self.quits = quits;
            inspect::print_quit_dump(runtimes);
        }
        let now = Instant::now();
        let mut busy = false;
        let mut alive = Vec::new();
        for rt in runtimes {
            for d in &rt.domains {
                let key = (rt.id, d.index);
                alive.push(key);
                if self.watch_stall(rt, d, key, now) {
                    busy = true;
                }
            }
            self.watch_shutdown(rt, now);
        }
        self.running.retain(|k, _| alive.contains(k));
        let ids: Vec<u64> = runtimes.iter().map(|rt| rt.id).collect();
        self.ending.retain(|id, _| ids.contains(id));
        if busy {
            self.candidate = None;
        } else {
            self.watch_deadlock(runtimes, now);
        }
        busy
    }

    /// The stall watch for one domain; returns whether it runs a task.
    fn watch_stall(
        &mut self,
        rt: &RuntimeShared,
        d: &DomainShared,
        key: (u64, usize),
        now: Instant,
    ) -> bool {
        let task = d.own.running.load(Ordering::Relaxed) as usize;
        let resumes = d.own.resumes.load(Ordering::Relaxed);
        if task == 0 {
            self.running.remove(&key);
            return false;
        }
        let tid = d.tid.load(Ordering::Acquire);
        let fresh = || Seen {
            task,
            resumes,
            since: now,
            cpu: census::cpu_time(tid),
            reported: false,
        };
        let seen = self.running.entry(key).or_insert_with(fresh);
        if seen.task != task || seen.resumes != resumes {
            *seen = fresh();
        } else if !seen.reported
            && stall_bound().is_some_and(|bound| now.duration_since(seen.since) >= bound)
        {
            let held = now.duration_since(seen.since);
            if waited_for_a_cpu(tid, seen.cpu, held) {
                // The machine was busy, not the task: watch this stretch afresh.
                *seen = fresh();
            } else {
                seen.reported = true;
                report_stall(rt, d, held, resumes);
            }
        }
        true
    }

    /// The shutdown watch for one runtime.
    fn watch_shutdown(&mut self, rt: &Arc<RuntimeShared>, now: Instant) {
        if !rt.closing.load(Ordering::Acquire) {
            self.ending.remove(&rt.id);
            return;
        }
        let (since, last) = self.ending.entry(rt.id).or_insert((now, None));
        let due = match last {
            None => now.duration_since(*since) >= shutdown_report(),
            Some(at) => now.duration_since(*at) >= SHUTDOWN_REPEAT,
        };
        if due {
            let for_secs = now.duration_since(*since).as_secs();
            *last = Some(now);
            let dump = inspect::collect(std::slice::from_ref(rt));
            eprintln!(
                "bobine: runtime {} has been ending for {for_secs} s and still waits for the \
                 tasks below (a task that computes without parking, or blocks its domain in a \
                 system call, cannot be stopped: its domain never gets the chance)\n{dump}",
                rt.id
            );
        }
    }

    /// The deadlock watch (the module doc's rules 1-4).
    fn watch_deadlock(&mut self, runtimes: &[Arc<RuntimeShared>], now: Instant) {
        let Some(naps) = quiescent(runtimes) else {
            self.candidate = None;
            return;
        };
        match &self.candidate {
            Some((since, seen)) if *seen == naps => {
                if now.duration_since(*since) >= CONFIRM {
                    self.candidate = None;
                    declare_deadlock(runtimes);
                }
            }
            _ => self.candidate = Some((now, naps)),
        }
    }
}

/// Rules 1-4 of the module doc, at this moment: the sleep counts of every domain if they hold.
fn quiescent(runtimes: &[Arc<RuntimeShared>]) -> Option<Vec<u64>> {
    if !runtimes
        .iter()
        .any(|rt| rt.config.deadlock_detection && !rt.is_global)
    {
        return None;
    }
    let mut naps = Vec::new();
    let mut known = Vec::new();
    for rt in runtimes {
        if rt.closing.load(Ordering::Acquire) || rt.deadlocked.load(Ordering::Acquire) {
            return None;
        }
        for d in &rt.domains {
            let asleep = d.is_sleeping()
                && d.own.asleep_forever.load(Ordering::Acquire)
                && d.own.running.load(Ordering::Acquire).is_null()
                && !d.has_mail()
                && d.poller().registered() == 0;
            if !asleep {
                return None;
            }
            naps.push(d.own.naps.load(Ordering::Acquire));
            known.push(d.tid.load(Ordering::Acquire));
        }
    }
    {
        let helpers = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
        if !helpers.iter().all(|(_, quiet)| quiet()) {
            return None;
        }
        known.extend(helpers.iter().map(|(tid, _)| *tid));
    }
    let others_wait = census::threads()
        .into_iter()
        .filter(|tid| !known.contains(tid))
        .all(census::blocked_on_other_thread);
    others_wait.then_some(naps)
}

/// Ends every deadlocked runtime that reports deadlocks: its report, then its domain 0 is woken
/// to end it (see `runtime::run`).
fn declare_deadlock(runtimes: &[Arc<RuntimeShared>]) {
    let dump = inspect::collect(runtimes);
    for rt in runtimes {
        if !rt.config.deadlock_detection || rt.is_global {
            continue;
        }
        let report = format!(
            "deadlock: all tasks are blocked\n\
             Every task of runtime {} is parked and nothing can wake any of them: no timer, no \
             descriptor, no blocking-pool job and no signal watch is left, and every other \
             thread of the process waits for another thread. The runtime is ended (its tasks \
             unwind as when `run`'s closure returns). Builder::deadlock_detection(false) turns \
             this report off.\n{dump}",
            rt.id
        );
        *rt.deadlock.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
        rt.deadlocked.store(true, Ordering::Release);
        rt.domains[0].nudge();
    }
}

/// The stall report (once per task).
/// Whether a domain thread that has seemed stuck in one task for `held` was in fact mostly
/// waiting for a CPU (a loaded machine preempts it): it is in no system call, and its CPU time
/// since `cpu_then` is less than half of `held`. A task blocked in a system call (a std
/// blocking call) uses no CPU either, but that is a stall to report, so only the computing case
/// is let off. If the CPU time cannot be read, the report goes ahead.
fn waited_for_a_cpu(tid: i32, cpu_then: Option<Duration>, held: Duration) -> bool {
    let (Some(then), Some(now)) = (cpu_then, census::cpu_time(tid)) else {
        return false;
    };
    now.saturating_sub(then) < held / 2 && census::syscall_of(tid).is_none()
}

fn report_stall(rt: &RuntimeShared, d: &DomainShared, held: Duration, resumes: u64) {
    let Some(running) = inspect::inspect_for_stall(d) else {
        return;
    };
    if running.resumes != resumes || (running.id.is_some() && !running.first_stall_claim) {
        // It moved on, or this task was reported already.
        return;
    }
    let site = match running.last_site {
        Some(l) => format!("it resumed at {l}"),
        None => "it has not parked or yielded since it started".to_owned(),
    };
    eprintln!(
        "bobine: task {} has kept domain {} of runtime {} for {} ms without parking or \
         yielding ({site}){}. The domain's other tasks wait meanwhile. A blocking call of std \
         made inside a task blocks its whole domain: use bobine's own (bobine::sync, \
         bobine::net, bobine::io::unblock for the rest), and yield now and then in long \
         computations. (Reported once per task.)",
        running.describe(),
        d.index,
        rt.id,
        held.as_millis(),
        census::in_syscall_text(d.tid.load(Ordering::Acquire)),
    );
}
