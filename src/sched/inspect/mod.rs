//! Looking at tasks from outside: the task dump's records, how a domain is asked for them, and
//! how another thread reads the task a domain is running.
//!
//! Every task's dump line needs state that only its domain's thread may read (its park site,
//! its `parked` flag, its registry), so a dump is a question put to each domain, which answers
//! between two of its tasks. A domain that does not come back to its scheduler cannot answer:
//! of it, the dump shows only the task it runs, read by the inspection protocol below.
//!
//! ## Dump requests
//!
//! 1. The asker makes a [`DumpRequest`], pushes it on every domain's `dump_requests` (a short
//!    mutex), sets that domain's DUMP attention bit and wakes it if it sleeps: the steps of the
//!    domain's cross-thread wake-up, with DUMP for INBOX, so no request is missed by a domain
//!    going to sleep.
//! 2. The domain, at its next round (or before sleeping), takes its requests, describes every
//!    task it owns ([`Local::task_infos`]), adds its answer to each request and unparks the
//!    asker.
//! 3. The asker waits (a park, so a task asking parks rather than blocking its domain) until
//!    every domain answered or [`ANSWER_WAIT`] has passed. The domain of a task that asks is
//!    described by the asker itself, which runs on it. A late answer goes into a request nobody
//!    reads any more, and is dropped with it.
//!
//! ## The inspection protocol
//!
//! A domain publishes the task it runs (`own.running`, relaxed, set before each resume and
//! cleared after it) and how many resumes it has made (`own.resumes`). Another thread that
//! wants the running task's name or where it resumed from must know that the task's memory
//! stays valid while it reads, but the domain's side may cost no fence: it runs on every
//! switch and every task's end. The fence is paid by the inspector instead, with
//! `membarrier(2)`, which makes every thread of the process run a full barrier:
//!
//! - D1. The domain stores `running = T`, then resumes T.
//! - D2. When T switches back, the domain stores `running = null`.
//! - D3. Before it lets T's memory go (T ended, or is abandoned), the domain reads
//!   `inspected`; while it is T, it waits.
//! - M1. The inspector (one per domain at a time, under `inspect_lock`) reads `running = T`
//!   and `resumes = r`.
//! - M2. It stores `inspected = T`, then calls `membarrier(PRIVATE_EXPEDITED)`.
//! - M3. It reads `running` and `resumes` again: unless they still say (T, r), it gives up
//!   (T switched out meanwhile).
//! - M4. It reads T (its ids, its name, its last site).
//! - M5. It stores `inspected = null`.
//!
//! Why M4 is safe: the barrier that M2 forces on the domain's thread falls somewhere in its
//! program. If it falls before D2 of the resume M1 saw, D3 (after D2) reads `inspected = T` and
//! waits for M5. If it falls after that D2, D2's store is visible once `membarrier` returns, so
//! M3 sees `running` changed (or `resumes` moved on, if T was resumed again) and gives up. So
//! either the inspector gives up or T's memory outlives M4. If `membarrier` is not available
//! the inspector reads nothing from T and the report says so.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, compiler_fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::domain::{DomainShared, Local};
use super::park::{Park, Unparker, Wait, Wake};
use super::runtime::RuntimeShared;

mod dump;

pub use dump::{TaskDump, TaskInfo, TaskState};

/// How long a dump waits for a domain's answer before describing it from outside.
pub(crate) const ANSWER_WAIT: Duration = Duration::from_millis(200);

/// A request for a task dump, answered by each domain (see the module doc).
pub(crate) struct DumpRequest {
    answers: Mutex<Vec<(u64, usize, Vec<TaskInfo>)>>,
    asker: Mutex<Option<Unparker>>,
}

impl DumpRequest {
    fn new() -> DumpRequest {
        DumpRequest {
            answers: Mutex::new(Vec::new()),
            asker: Mutex::new(None),
        }
    }

    fn answered(&self) -> usize {
        self.answers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Asks every domain of `runtimes` for its tasks (steps 1 and 3 of the dump requests).
pub(crate) fn collect(runtimes: &[Arc<RuntimeShared>]) -> TaskDump {
    let request = Arc::new(DumpRequest::new());
    let here = super::current_domain_addr();
    let mut tasks = Vec::new();
    let mut notes = Vec::new();
    let mut asked: Vec<(&Arc<RuntimeShared>, &Arc<DomainShared>)> = Vec::new();
    for rt in runtimes {
        for d in &rt.domains {
            if Arc::as_ptr(d) as usize == here {
                // The asker runs here: it describes its own domain.
                tasks.extend(super::with_local(|l| l.task_infos()));
            } else if !d.closed.load(Ordering::Acquire) {
                d.request_dump(request.clone());
                asked.push((rt, d));
            }
        }
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    while request.answered() < asked.len() && Instant::now() < deadline {
        let park = Park::new();
        *request.asker.lock().unwrap_or_else(|e| e.into_inner()) = Some(park.unparker());
        if request.answered() >= asked.len() {
            break;
        }
        if park.wait_for(&Wait::soft("task dump").until(Some(deadline))) == Wake::Interrupted {
            // A task asked to stop: nothing to withdraw (late answers go into a request nobody
            // reads), so it unwinds from here as from any wait.
            super::park::stop::unwind_if_stopped();
            break;
        }
    }
    let answers = std::mem::take(&mut *request.answers.lock().unwrap_or_else(|e| e.into_inner()));
    for (rt, d) in asked {
        let answer = answers
            .iter()
            .find(|(r, i, _)| *r == rt.id && *i == d.index);
        match answer {
            Some((_, _, infos)) => tasks.extend(infos.iter().cloned()),
            None => {
                let (info, note) = describe_unanswered(rt, d);
                tasks.extend(info);
                notes.push(note);
            }
        }
    }
    tasks.sort_by_key(|t| (t.runtime, t.domain, t.id));
    TaskDump {
        tasks,
        notes,
        runtimes: runtimes
            .iter()
            .map(|rt| (rt.id, rt.domains.len()))
            .collect(),
    }
}

/// What can be said of a domain that did not answer: the task it runs, read from outside.
fn describe_unanswered(rt: &RuntimeShared, d: &DomainShared) -> (Option<TaskInfo>, String) {
    let waited = ANSWER_WAIT.as_millis();
    match inspect_running(d) {
        Some(running) => {
            let who = running.describe();
            let info = TaskInfo {
                id: running.id.unwrap_or(0),
                name: running.name.clone(),
                runtime: rt.id,
                domain: d.index,
                state: TaskState::Running,
                reason: None,
                location: running.last_site,
                waiting: Duration::ZERO,
            };
            let info = running.id.is_some().then_some(info);
            (
                info,
                format!(
                    "domain {} of runtime {} did not come back to its scheduler within {waited} ms \
                     (it runs task {who}{}): its other tasks are not listed",
                    d.index,
                    rt.id,
                    super::monitor::census::in_syscall_text(d.tid.load(Ordering::Acquire)),
                ),
            )
        }
        None => (
            None,
            format!(
                "domain {} of runtime {} did not answer within {waited} ms: its tasks are not \
                 listed",
                d.index, rt.id
            ),
        ),
    }
}

impl Local {
    /// Step 2 of the dump requests: answers every request waiting for this domain.
    #[cold]
    pub(crate) fn answer_dumps(&self) {
        self.shared.clear_dump();
        let requests = std::mem::take(
            &mut *self
                .shared
                .dump_requests
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if requests.is_empty() {
            return;
        }
        // Wake-ups already sent count: a task they woke is ready, not parked.
        self.drain_inbox();
        let infos = self.task_infos();
        for request in requests {
            request
                .answers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.rt.id, self.shared.index, infos.clone()));
            let asker = request
                .asker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(u) = asker {
                u.unpark();
            }
        }
    }

    /// Describes every task this domain owns. On the domain's thread only: between tasks, or
    /// from the running task (which is then `Running`).
    pub(crate) fn task_infos(&self) -> Vec<TaskInfo> {
        let now = Instant::now();
        let running = super::current_ptr();
        let mut out = Vec::new();
        self.for_each_task(|ptr| {
            // SAFETY: the registry owns the task; we are its domain's thread, and the task is
            // either the caller or not running.
            let task = unsafe { ptr.as_ref() };
            let site = task.park_site();
            let state = if std::ptr::eq(ptr.as_ptr(), running) {
                TaskState::Running
            } else if task.parked.get() && task.park.is_armed() {
                TaskState::Parked
            } else {
                TaskState::Ready
            };
            let parked = state == TaskState::Parked;
            out.push(TaskInfo {
                id: task.thread_id,
                name: task.name().map(str::to_owned),
                runtime: self.rt.id,
                domain: self.shared.index,
                state,
                reason: site.filter(|_| parked).map(|s| s.reason),
                location: if parked {
                    site.map(|s| s.location)
                } else {
                    task.last_site()
                },
                waiting: task
                    .parked_at
                    .get()
                    .filter(|_| parked)
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
            });
        });
        // Never-started tasks waiting in the stealable deque belong to no registry yet: they
        // are taken out and put back in the same order, described on the way.
        self.each_stealable(|task| {
            out.push(TaskInfo {
                id: task.thread_id,
                name: task.name().map(str::to_owned),
                runtime: self.rt.id,
                domain: self.shared.index,
                state: TaskState::Ready,
                reason: None,
                location: None,
                waiting: Duration::ZERO,
            })
        });
        out
    }

    /// Step D3 of the inspection protocol: before the memory of `task` may go, waits while an
    /// inspector reads it.
    #[inline]
    pub(crate) fn wait_out_inspection(&self, task: super::domain::TaskPtr) {
        // Keeps the compiler from moving this load above D2's store; the CPU's ordering is
        // the inspector's `membarrier`.
        compiler_fence(Ordering::SeqCst);
        if std::ptr::eq(self.shared.inspected.load(Ordering::Relaxed), task.as_ptr()) {
            self.wait_inspection(task);
        }
    }

    #[cold]
    fn wait_inspection(&self, task: super::domain::TaskPtr) {
        while std::ptr::eq(self.shared.inspected.load(Ordering::Acquire), task.as_ptr()) {
            std::thread::yield_now();
        }
    }
}

/// What an inspector read of a running task (steps M1-M5).
pub(crate) struct Running {
    pub(crate) resumes: u64,
    /// `None` when the task could not be read (no `membarrier`).
    pub(crate) id: Option<u64>,
    pub(crate) name: Option<String>,
    pub(crate) last_site: Option<&'static Location<'static>>,
    /// Whether this inspection was the first to claim the task's stall report.
    pub(crate) first_stall_claim: bool,
}

impl Running {
    /// `'name' (id N)`, `<unnamed> (id N)`, or what can be said without reading the task.
    pub(crate) fn describe(&self) -> String {
        match (self.id, &self.name) {
            (Some(id), Some(n)) => format!("'{n}' (id {id})"),
            (Some(id), None) => format!("<unnamed> (id {id})"),
            (None, _) => "<unknown> (membarrier(2) is not available to read it)".to_owned(),
        }
    }
}

/// The inspection protocol (M1-M5) on domain `d`: the task it runs, if any.
pub(crate) fn inspect_running(d: &DomainShared) -> Option<Running> {
    inspect(d, false)
}

/// [`inspect_running`] that also claims the task's one stall report.
pub(crate) fn inspect_for_stall(d: &DomainShared) -> Option<Running> {
    inspect(d, true)
}

fn inspect(d: &DomainShared, claim_stall: bool) -> Option<Running> {
    let _one_at_a_time = d.inspect_lock.lock().unwrap_or_else(|e| e.into_inner());
    // M1.
    let task = d.own.running.load(Ordering::Acquire);
    let resumes = d.own.resumes.load(Ordering::Acquire);
    if task.is_null() {
        return None;
    }
    let mut running = Running {
        resumes,
        id: None,
        name: None,
        last_site: None,
        first_stall_claim: false,
    };
    // M2.
    d.inspected.store(task, Ordering::SeqCst);
    if !membarrier() {
        d.inspected.store(std::ptr::null_mut(), Ordering::Release);
        return Some(running);
    }
    // M3.
    if d.own.running.load(Ordering::SeqCst) != task
        || d.own.resumes.load(Ordering::SeqCst) != resumes
    {
        d.inspected.store(std::ptr::null_mut(), Ordering::Release);
        return None;
    }
    {
        // SAFETY: steps M1-M3 passed: the domain will not let the task's memory go before M5
        // (see the module doc), and the fields read here are atomics or never written after
        // the task was built (its ids and name).
        let t = unsafe { &*task };
        running.id = Some(t.thread_id);
        running.name = t.name().map(str::to_owned);
        running.last_site = t.last_site();
        running.first_stall_claim = claim_stall && !t.stall_reported.swap(true, Ordering::AcqRel);
    }
    // M5.
    d.inspected.store(std::ptr::null_mut(), Ordering::Release);
    Some(running)
}

/// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, registering the process for it the first
/// time; false if the kernel does not offer it.
fn membarrier() -> bool {
    const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    static WARNED: AtomicBool = AtomicBool::new(false);
    let registered = *REGISTERED.get_or_init(|| {
        // SAFETY: membarrier takes plain integers and touches no memory of ours.
        unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 }
    });
    // SAFETY: as above.
    let ok =
        registered && unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) } == 0;
    if !ok && !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "bobine: membarrier(2) is not available: reports cannot name the task a busy domain \
             runs"
        );
    }
    ok
}

/// SIGQUITs received so far (by [`on_sigquit`]); the monitor prints a dump for each new batch.
static QUITS: AtomicU64 = AtomicU64::new(0);
/// The SIGQUIT handler function installed before ours (0: none), and whether it takes
/// `siginfo`: ours calls it after counting.
static PREVIOUS_QUIT: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS_QUIT_SIGINFO: AtomicBool = AtomicBool::new(false);

/// Makes SIGQUIT print the task dump of every live runtime to stderr, as Go prints its
/// goroutines; the process keeps running. Installed when the first runtime starts, unless
/// `BOBINE_SIGQUIT=0` or SIGQUIT is ignored; a handler function installed before still runs,
/// after ours.
///
/// The handler only counts (async-signal-safe); the monitor, which looks at the runtimes every
/// few milliseconds anyway, prints the dump when the count moves ([`quits`]). So SIGQUIT costs
/// no thread and no descriptor. A task that watches SIGQUIT itself (`event::signal`) has it
/// while it watches; ours comes back after.
pub(crate) fn install_sigquit() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if std::env::var_os("BOBINE_SIGQUIT").is_some_and(|v| v == "0") {
            return;
        }
        // SAFETY: zeroed `sigaction`s are plain data; the query reads into a valid pointer.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a query (null new action) into a valid out-pointer.
        if unsafe { libc::sigaction(libc::SIGQUIT, std::ptr::null(), &mut previous) } != 0
            || previous.sa_sigaction == libc::SIG_IGN
        {
            // The process chose to ignore SIGQUIT: leave it so.
            return;
        }
        if previous.sa_sigaction != libc::SIG_DFL {
            PREVIOUS_QUIT_SIGINFO
                .store(previous.sa_flags & libc::SA_SIGINFO != 0, Ordering::Relaxed);
            PREVIOUS_QUIT.store(previous.sa_sigaction, Ordering::Release);
        }
        // SAFETY: as above.
        let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = on_sigquit as *const () as usize;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        // SAFETY: `on_sigquit` is async-signal-safe (an atomic add, then the previous handler,
        // which was installed for this signal and so is fit for signal context).
        if unsafe { libc::sigaction(libc::SIGQUIT, &ours, std::ptr::null_mut()) } != 0 {
            eprintln!(
                "bobine: cannot install the SIGQUIT handler for the task dump: {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// The SIGQUIT handler: counts, then calls the handler that was there before, if any.
extern "C" fn on_sigquit(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    QUITS.fetch_add(1, Ordering::SeqCst);
    let previous = PREVIOUS_QUIT.load(Ordering::Acquire);
    if previous == 0 {
        return;
    }
    if PREVIOUS_QUIT_SIGINFO.load(Ordering::Relaxed) {
        // SAFETY: `previous` is the `sa_sigaction` of an action installed with SA_SIGINFO for
        // SIGQUIT before ours; it gets what the kernel gave us.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(previous) };
        f(sig, info, context);
    } else {
        // SAFETY: `previous` is the `sa_handler` of an action installed for SIGQUIT before ours.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous) };
        f(sig);
    }
}

/// How many SIGQUITs the process has received since bobine's handler was installed.
pub(crate) fn quits() -> u64 {
    QUITS.load(Ordering::SeqCst)
}

/// The monitor's part of SIGQUIT: prints the dump of every live runtime.
pub(crate) fn print_quit_dump(runtimes: &[Arc<RuntimeShared>]) {
    let dump = collect(runtimes);
    eprintln!(
        "bobine: SIGQUIT: the tasks of every live runtime follow\n{dump}\nbobine: end of the task dump"
    );
}
