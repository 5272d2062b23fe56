//! Runtimes: configuration, start, spawning, and the panic report.
//!
//! ## Start
//!
//! `run` builds a [`RuntimeShared`] (ids, stack arena, one [`DomainShared`] per domain), starts
//! domains 1..n on new OS threads, turns the calling thread into domain 0, and queues `f` there
//! as the main task (id 0, pinned to domain 0). When the main task has finished, every domain
//! takes part in the shutdown (see [`super::shutdown`]); then `run` joins the domain threads and
//! drops the runtime, which unmaps the stack arena (but the stacks of abandoned tasks).
//!
//! The global runtime (used by `spawn` outside any runtime) never shuts down: its domains are
//! background threads that end with the process.
//!
//! ## Spawning
//!
//! A task is built (stack from the domain's pool, allocation from its cache) and queued on the
//! spawning domain; a spawn from a thread that is not a domain of the target runtime takes a
//! stack from the runtime's shared pool and hands the task to one of its domains' inboxes. Each
//! spawn takes a per-runtime id (from a block its domain reserved: on one domain, ids follow
//! creation order, the main task's being 0) and a process-unique thread id, and is counted by
//! its domain (or, from another thread, by the runtime) for the shutdown's
//! `RuntimeShared::all_finished`. Nothing on the spawn path of a task is shared with other
//! domains but the queue the task goes to.

use std::any::Any;
use std::io;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::domain::{DomainShared, Local};
use super::park::stop::catch_at_root;
use super::task::{Task, TaskConfig};
use crate::stack::{self, Arena, Pool};
use crate::switch::Fiber;

/// Settings of one runtime.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) domains: usize,
    pub(crate) stack_size: usize,
    pub(crate) max_tasks: usize,
    /// Whether the monitor ends the runtime with a report when it is deadlocked.
    pub(crate) deadlock_detection: bool,
}

impl Config {
    /// Defaults, overridden by the environment (`BOBINE_DOMAINS`, `BOBINE_STACK_SIZE`), then by
    /// explicit builder settings.
    pub(crate) fn resolve(
        domains: Option<usize>,
        stack_size: Option<usize>,
        max_tasks: Option<usize>,
        deadlock_detection: Option<bool>,
    ) -> Config {
        let domains = domains
            .or_else(|| env_number("BOBINE_DOMAINS"))
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
        assert!(
            domains >= 1,
            "bobine: a runtime needs at least one domain (got domains = 0)"
        );
        let stack_size = stack_size
            .or_else(|| env_number("BOBINE_STACK_SIZE"))
            .unwrap_or(stack::DEFAULT_STACK);
        let max_tasks = max_tasks.unwrap_or_else(stack::default_capacity);
        assert!(
            max_tasks >= 1,
            "bobine: max_tasks must be at least 1 (the main task needs a stack)"
        );
        Config {
            domains,
            stack_size: stack::normalise_size(stack_size).unwrap_or_else(|e| panic!("{e}")),
            max_tasks,
            deadlock_detection: deadlock_detection.unwrap_or(true),
        }
    }
}

/// Reads a positive size from the environment: digits with an optional `K`, `M` or `G` suffix.
fn env_number(var: &str) -> Option<usize> {
    let raw = std::env::var(var).ok()?;
    let s = raw.trim();
    let (digits, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    match digits.parse::<usize>() {
        Ok(n) if n > 0 => Some(
            n.checked_mul(mult)
                .unwrap_or_else(|| panic!("bobine: {var} is too large: {raw:?}")),
        ),
        _ => panic!(
            "bobine: {var} must be a positive integer (optionally with K, M or G), got {raw:?}"
        ),
    }
}

/// What the domains of one runtime share.
pub(crate) struct RuntimeShared {
    pub(crate) config: Config,
    /// A number unique in the process, in start order (for dumps and reports).
    pub(crate) id: u64,
    /// The global runtime (of `spawn` outside any runtime): it never ends.
    pub(crate) is_global: bool,
    /// Set by the monitor when it found the runtime deadlocked: `run` ends it and panics with
    /// `deadlock` (see `monitor`).
    pub(crate) deadlocked: AtomicBool,
    pub(crate) deadlock: Mutex<Option<String>>,
    pub(crate) domains: Vec<Arc<DomainShared>>,
    /// The first per-runtime task id not yet reserved (domains reserve them in blocks).
    next_id: AtomicU64,
    /// Tasks spawned from threads that are not this runtime's domains (each domain counts its
    /// own spawns: `DomainShared::own`).
    foreign_spawned: AtomicU64,
    pub(crate) arena: Arena,
    /// Stacks for spawns from threads that are not domains of this runtime.
    foreign_pool: Mutex<Pool>,
    next_domain: AtomicUsize,
    /// Domains spinning before they sleep (see `domain`'s module doc).
    pub(crate) spinning: AtomicUsize,
    /// Set when the main task has finished: the shutdown has begun (see `shutdown`).
    pub(crate) closing: AtomicBool,
    /// How far the shutdown has gone in giving up on waits (see `shutdown`).
    pub(crate) stage: AtomicU32,
    /// Bumped during the shutdown whenever a task ends or a parked task is woken: the
    /// shutdown's measure of progress.
    pub(crate) progress: AtomicU64,
}

impl RuntimeShared {
    fn new(config: Config, is_global: bool) -> io::Result<Arc<RuntimeShared>> {
        static NEXT_RUNTIME: AtomicU64 = AtomicU64::new(1);
        stack::install_handler(super::running_overflow_info);
        install_panic_hook();
        super::inspect::install_sigquit();
        let domains = (0..config.domains)
            .map(|i| DomainShared::new(i).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let rt = Arc::new(RuntimeShared {
            arena: Arena::new(config.max_tasks),
            config,
            id: NEXT_RUNTIME.fetch_add(1, Ordering::Relaxed),
            is_global,
            deadlocked: AtomicBool::new(false),
            deadlock: Mutex::new(None),
            domains,
            next_id: AtomicU64::new(0),
            foreign_spawned: AtomicU64::new(0),
            foreign_pool: Mutex::new(Pool::default()),
            next_domain: AtomicUsize::new(0),
            spinning: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            stage: AtomicU32::new(0),
            progress: AtomicU64::new(0),
        });
        super::monitor::register(&rt);
        Ok(rt)
    }

    /// Reserves `n` consecutive per-runtime task ids and returns the first.
    pub(crate) fn reserve_task_ids(&self, n: u64) -> u64 {
        self.next_id.fetch_add(n, Ordering::Relaxed)
    }

    /// Whether every task spawned so far has ended (or been abandoned).
    ///
    /// Every finished count is read before any spawned count. Each count is monotonic; a spawn
    /// is counted (release) before its task is queued, so before it can end, and its end is
    /// counted (release) after; so a finished count that includes a task's end, read with
    /// acquire, makes the later read of its spawner's count include its spawn. Hence, with F
    /// the sum of the finished counts (each read at or before a moment T) and S the sum of the
    /// spawned counts (each read at or after T): F <= ended(T) <= spawned(T) <= S. F == S
    /// means that at T every spawned task had ended, and none can be spawned after that (the
    /// shutdown only spawns from tasks, and scopes shared with other threads keep their owner
    /// alive).
    pub(crate) fn all_finished(&self) -> bool {
        let finished: u64 = self
            .domains
            .iter()
            .map(|d| d.own.finished.load(Ordering::Acquire))
            .sum();
        let spawned: u64 = self
            .domains
            .iter()
            .map(|d| d.own.spawned.load(Ordering::Acquire))
            .sum::<u64>()
            + self.foreign_spawned.load(Ordering::Acquire);
        finished == spawned
    }

    /// Something happened during the shutdown (a task ended, a parked task was woken).
    pub(crate) fn progressed(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the shutdown gives soft waits (I/O, sleep) up (stage 1 and later).
    pub(crate) fn soft_waits_given_up(&self) -> bool {
        self.stage.load(Ordering::Acquire) >= 1
    }
}

/// Options of one spawn.
pub(crate) struct SpawnOptions {
    pub(crate) name: Option<String>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) pinned: bool,
    /// Run the task on this domain of the runtime (an index below its domain count), and only
    /// there: idle domains never take it. `None`: the spawning domain, which may give it away
    /// before it starts unless `pinned`.
    pub(crate) domain: Option<usize>,
    /// Whether the panic hook reports the task's panics as std does for threads.
    pub(crate) report_panics: bool,
    /// Take the per-runtime id straight from the runtime's sequence (one shared counter), so
    /// that such ids follow creation order across domains (the main task's, and OCaml's
    /// `Thread.id`), instead of from the spawning domain's block.
    pub(crate) ordered_id: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            name: None,
            stack_size: None,
            pinned: false,
            domain: None,
            report_panics: true,
            ordered_id: false,
        }
    }
}

/// The runtime a spawn from here goes to: this domain's, or the global one from a thread that
/// is not a domain.
pub(crate) fn current_runtime() -> Arc<RuntimeShared> {
    if super::on_domain() {
        super::with_local(|l| l.rt.clone())
    } else {
        global().clone()
    }
}

/// Spawns a task running `body` on runtime `rt` (`None`: the caller's domain's runtime, or the
/// global runtime when the caller is not a domain thread). `body` stores its own outcome
/// (through the task it is given). A task spawned while its runtime is ending is stopped at
/// once: its closure is dropped, as the task, when it first runs.
///
/// # Safety
///
/// If `body` is not `'static`, everything it borrows must outlive the task. If `opts.pinned` is
/// false, `body` must be safe to send to another thread (the public API requires `Send`).
pub(crate) unsafe fn spawn_raw<B>(
    rt: Option<&Arc<RuntimeShared>>,
    mut opts: SpawnOptions,
    body: B,
) -> io::Result<Arc<Task>>
where
    B: FnOnce(&Task),
{
    let local_rt = super::on_domain()
        && super::with_local(|local| rt.is_none_or(|rt| Arc::ptr_eq(&local.rt, rt)));
    if let Some(i) = opts.domain {
        let count = match rt {
            Some(rt) => rt.domains.len(),
            None if local_rt => super::with_local(|l| l.rt.domains.len()),
            None => global().domains.len(),
        };
        if i >= count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bobine: no domain {i} in a runtime of {count} domains"),
            ));
        }
        // A task bound to a domain is never taken by another one.
        opts.pinned = true;
    }
    let ordered = opts.ordered_id;
    let here = local_rt
        && opts
            .domain
            .is_none_or(|i| super::with_local(|l| i == l.shared.index));
    if here {
        super::with_local(|local| {
            // SAFETY: forwarded from our caller.
            let task = unsafe {
                new_task(
                    &local.rt,
                    &mut local.stacks.borrow_mut(),
                    local.cached_task(),
                    local.next_thread_id(),
                    || local.task_id(ordered),
                    opts,
                    body,
                )
            }?;
            local.count_spawned();
            local.adopt(task.clone());
            Ok(task)
        })
    } else if let (true, Some(i)) = (local_rt, opts.domain) {
        // Bound to another domain of this runtime: built here, from this domain's stacks,
        // and handed over through that domain's inbox.
        super::with_local(|local| {
            // SAFETY: forwarded from our caller (a task bound to a domain has a `Send` body).
            let task = unsafe {
                new_task(
                    &local.rt,
                    &mut local.stacks.borrow_mut(),
                    None,
                    local.next_thread_id(),
                    || local.task_id(ordered),
                    opts,
                    body,
                )
            }?;
            local.count_spawned();
            if local.closing.get() {
                task.cancelled.store(true, Ordering::Release);
            }
            local.rt.domains[i].push(task.clone());
            Ok(task)
        })
    } else if opts.pinned && opts.domain.is_none() {
        Err(io::Error::other(
            "bobine: spawn_local must be called from a task",
        ))
    } else {
        let rt = rt.unwrap_or_else(|| global());
        let thread_id = super::task::reserve_thread_ids(1);
        let target = opts.domain;
        let mut pool = rt.foreign_pool.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: forwarded from our caller.
        let task = unsafe {
            new_task(
                rt,
                &mut pool,
                None,
                thread_id,
                || rt.reserve_task_ids(1),
                opts,
                body,
            )
        }?;
        drop(pool);
        // Counted before the task is queued (see `RuntimeShared::all_finished`).
        rt.foreign_spawned.fetch_add(1, Ordering::Release);
        if rt.closing.load(Ordering::Acquire) {
            task.cancelled.store(true, Ordering::Release);
        }
        let i = target
            .unwrap_or_else(|| rt.next_domain.fetch_add(1, Ordering::Relaxed) % rt.domains.len());
        rt.domains[i].push(task.clone());
        Ok(task)
    }
}

/// Builds a task (stack, ids, fiber) without queueing it. The per-runtime id is taken (from
/// `task_id`) once the stack is there, so that a spawn that fails leaves no gap.
///
/// # Safety
///
/// As for [`spawn_raw`].
unsafe fn new_task<B>(
    rt: &RuntimeShared,
    pool: &mut Pool,
    recycled: Option<super::task::CachedTask>,
    thread_id: u64,
    task_id: impl FnOnce() -> u64,
    opts: SpawnOptions,
    body: B,
) -> io::Result<Arc<Task>>
where
    B: FnOnce(&Task),
{
    let size = match opts.stack_size {
        Some(bytes) => stack::normalise_size(bytes)?,
        None => rt.config.stack_size,
    };
    let slot = pool.get(&rt.arena, size)?;
    let cfg = TaskConfig {
        id: task_id(),
        thread_id,
        name: opts.name.map(String::into_boxed_str),
        report_panics: opts.report_panics,
        pinned: opts.pinned,
    };
    Ok(Task::new(recycled, cfg, slot, |slot, task_ptr| {
        let root = move |y: &crate::switch::FiberYielder| {
            // SAFETY: the fiber runs only while its task is alive (its domain's registry owns
            // it), and the task never moves (it is in an Arc).
            let task = unsafe { &*task_ptr };
            task.set_yielder(y);
            if task.is_cancelled() {
                // Stopped before it ran: the closure is dropped here, as the task, so that a
                // destructor that blocks parks this task and its domain runs the others.
                task.draining.set(true);
                let dropped = catch_at_root(task, move || drop(body));
                task.draining.set(false);
                if let Err(payload) = dropped {
                    task.set_outcome(Err(payload));
                }
            } else {
                body(task);
            }
            // The task's local values go last, as the task, before it is marked finished (so
            // before a join returns); their waits are not cut short by a stop. Most tasks have
            // none, and skip it: nothing of theirs runs after this point that could look.
            // SAFETY: this is the task itself, running, and its body has ended.
            if !unsafe { task.locals.is_unused() } {
                // SAFETY: as above.
                super::park::stop::last_words(|| unsafe { task.locals.destroy() });
            }
        };
        // SAFETY: forwarded to our caller (what `body` borrows outlives the task).
        unsafe { Fiber::new_unchecked(slot, root) }
    }))
}

fn global() -> &'static Arc<RuntimeShared> {
    static GLOBAL: OnceLock<Arc<RuntimeShared>> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let rt = RuntimeShared::new(Config::resolve(None, None, None, None), true)
            .unwrap_or_else(|e| panic!("bobine: cannot start the global runtime: {e}"));
        // Id 0 stands for "the main task" in every runtime; the global one has none.
        rt.reserve_task_ids(1);
        for i in 0..rt.domains.len() {
            // Detached: the global runtime's domains end with the process.
            drop(start_domain_thread(
                &rt,
                i,
                format!("bobine-global-{i}"),
                false,
            ));
        }
        rt
    })
}

/// Starts the OS thread of domain `i`: it runs tasks until its domain is asked to stop, then
/// (when `shuts_down`) takes its part in the shutdown.
fn start_domain_thread(
    rt: &Arc<RuntimeShared>,
    i: usize,
    name: String,
    shuts_down: bool,
) -> std::thread::JoinHandle<()> {
    let rt = rt.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let local = Local::new(rt, i);
            let _enter = local.enter();
            let _alt = stack::AltStack::ensure();
            let shared = local.shared.clone();
            abort_on_panic(|| {
                local.run_until(&|| shared.stop.load(Ordering::Acquire));
                if shuts_down {
                    super::shutdown::take_part(&local);
                }
            });
        })
        .unwrap_or_else(|e| panic!("bobine: cannot start the thread of domain {i}: {e}"))
}

/// Runs `f` as the main task of a new runtime and returns its value (see the module doc).
pub(crate) fn run<T>(config: Config, f: impl FnOnce() -> T) -> T {
    assert!(
        !super::on_domain(),
        "bobine: run() called from a thread that already runs a bobine domain (inside a task); \
         spawn a task instead, or call run() from a plain thread"
    );
    let rt = RuntimeShared::new(config, false)
        .unwrap_or_else(|e| panic!("bobine: cannot start a runtime: {e}"));
    let mut threads = Vec::with_capacity(rt.domains.len() - 1);
    for i in 1..rt.domains.len() {
        threads.push(start_domain_thread(
            &rt,
            i,
            format!("bobine-domain-{i}"),
            true,
        ));
    }

    let local = Local::new(rt.clone(), 0);
    let enter = local.enter();
    let _alt = stack::AltStack::ensure();
    let mut out: Option<std::thread::Result<T>> = None;
    let out_ptr: *mut Option<std::thread::Result<T>> = &mut out;
    let opts = SpawnOptions {
        name: Some("main".into()),
        pinned: true,
        ordered_id: true,
        ..SpawnOptions::default()
    };
    let body = move |task: &Task| {
        let r = catch_at_root(task, f);
        // SAFETY: `out` lives in `run`'s frame, which waits for the main task to finish.
        unsafe { *out_ptr = Some(r) };
    };
    // SAFETY: the main task is pinned to this thread, and `run` does not return before it has
    // finished, so what `f` borrows outlives it.
    let main = unsafe { spawn_raw(None, opts, body) }
        .unwrap_or_else(|e| panic!("bobine: cannot start the main task: {e}"));
    abort_on_panic(|| {
        // A deadlock (see `monitor`) ends the runtime as the main task's end would.
        local.run_until(&|| main.is_finished() || rt.deadlocked.load(Ordering::Acquire));
        drop(main);
        super::shutdown::begin(&rt);
        super::shutdown::take_part(&local);
    });
    drop(enter);
    drop(local);
    for t in threads {
        let _ = t.join();
    }
    for d in &rt.domains {
        // Wake-up references that arrived after their domain closed.
        drop(d.take_inbox());
    }
    let deadlock = rt.deadlock.lock().unwrap_or_else(|e| e.into_inner()).take();
    super::monitor::unregister(&rt);
    // The monitor or a dump may hold the runtime for a moment: let go of it here, not on
    // their thread, so that what it holds (epolls, stacks) is gone when `run` returns.
    let waited = std::time::Instant::now();
    while Arc::strong_count(&rt) > 1 && waited.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    drop(rt);
    if let Some(report) = deadlock {
        // The main task's outcome (its stop, most likely) is dropped with `out`.
        drop(out);
        panic!("{report}");
    }
    match out {
        Some(Ok(v)) => v,
        Some(Err(payload)) => resume_unwind(payload),
        None => unreachable!("the main task finished without an outcome"),
    }
}

/// Runs a scheduler loop, aborting the process if it panics: its state (run queue, registry,
/// the shutdown every domain takes part in) would be broken, and the other domains would hang.
/// Task panics never get here: they are caught at each task's root. (A drop guard that looks at
/// `std::thread::panicking()` would not do: a task abandoned in the middle of an unwind leaves
/// the thread's panic count raised.)
fn abort_on_panic(scheduler: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(scheduler)).is_err() {
        eprintln!("bobine: fatal: a domain's scheduler panicked (a bug in bobine); aborting");
        std::process::abort();
    }
}

/// The hook that was installed before ours, and whether it is std's default one.
struct Previous {
    hook: Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>,
    is_default: bool,
}

/// The address of our hook's closure, to recognise it among installed hooks.
static OUR_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs a panic hook that reports a task's panic the way std reports a thread's, naming the
/// task, and chains to the hook that was installed before it: a user's hook sees every panic,
/// task panics included (and then replaces our report, as a custom hook replaces std's);
/// std's default hook sees the panics of plain threads. Called at every runtime start: a hook
/// the user installed since the last one is chained then.
fn install_panic_hook() {
    if std::thread::panicking() {
        // std refuses to touch hooks from a panicking thread (a runtime started by a
        // destructor during a panic, or on a thread an abandoned task left unwinding): the
        // hook installed before, if any, stays.
        return;
    }
    static INSTALL: Mutex<()> = Mutex::new(());
    let _serial = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let current = std::panic::take_hook();
    if std::ptr::addr_eq(&*current, OUR_HOOK.load(Ordering::Relaxed) as *const ()) {
        std::panic::set_hook(current);
        return;
    }
    // `take_hook` put std's default hook in place: take it too, to tell whether `current` is it
    // (a boxed fn item: equal pointers, metadata included, mean the same hook).
    let default = std::panic::take_hook();
    #[allow(ambiguous_wide_pointer_comparisons)]
    let is_default = std::ptr::eq(&*current, &*default);
    drop(default);
    let previous = Previous {
        hook: current,
        is_default,
    };
    let hook: Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send> = Box::new(move |info| {
        let in_task = super::with_current(|task| {
            if !previous.is_default {
                // A blocking call in the user's hook parks the task, as anywhere (std marks
                // the thread as in a panic hook meanwhile: see the README).
                (previous.hook)(info);
            } else if task.report_panics {
                report_task_panic(task, info);
            }
        });
        if in_task.is_none() {
            (previous.hook)(info);
        }
    });
    OUR_HOOK.store(&*hook as *const _ as *const () as usize, Ordering::Relaxed);
    std::panic::set_hook(hook);
}

/// std's panic report, for a task: `thread '<name>' (task <id>) panicked at <location>:`, the
/// message, and a backtrace or the note on `RUST_BACKTRACE`. The id is the task's `ThreadId`.
fn report_task_panic(task: &Task, info: &std::panic::PanicHookInfo<'_>) {
    let name = task.name().unwrap_or("<unnamed>").to_owned();
    let id = task.thread_id;
    let msg = payload_text(info.payload());
    let location = info.location().map(|l| l.to_string()).unwrap_or_default();
    // Capturing walks this stack; resolving symbols and formatting need far more room than a
    // small task stack has, so they run on the scheduler's stack.
    let backtrace = std::backtrace::Backtrace::capture();
    task.on_parent_stack(move || {
        let mut text = format!("thread '{name}' (task {id}) panicked at {location}:\n{msg}\n");
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                text.push_str(&format!("stack backtrace:\n{backtrace}\n"))
            }
            _ => {
                static NOTED: AtomicBool = AtomicBool::new(false);
                if !NOTED.swap(true, Ordering::Relaxed) {
                    text.push_str(
                        "note: run with `RUST_BACKTRACE=1` environment variable to display a \
                         backtrace\n",
                    );
                }
            }
        }
        eprint!("{text}");
    });
}

/// How a face names the panic payloads it defines (see [`describe_payloads`]).
pub(crate) type PayloadText = fn(&(dyn Any + Send)) -> Option<String>;

static PAYLOAD_TEXTS: Mutex<Vec<PayloadText>> = Mutex::new(Vec::new());

/// Lets a face name its own panic payloads in reports (the Miou face's errors print as
/// `Miou.Not_a_child`, rather than as `Box<dyn Any>`). Registering twice is harmless.
pub(crate) fn describe_payloads(text: PayloadText) {
    let mut texts = PAYLOAD_TEXTS.lock().unwrap_or_else(|e| e.into_inner());
    if !texts.iter().any(|t| std::ptr::fn_addr_eq(*t, text)) {
        texts.push(text);
    }
}

/// The text of a panic payload, as printed in messages.
pub(crate) fn payload_text(payload: &(dyn Any + Send)) -> String {
    let texts = PAYLOAD_TEXTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(text) = texts.iter().find_map(|t| t(payload)) {
        return text;
    }
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(d) = payload.downcast_ref::<super::task::TaskDropped>() {
        d.to_string()
    } else if let Some(c) = payload.downcast_ref::<super::task::TaskCancelled>() {
        c.to_string()
    } else {
        "Box<dyn Any>".to_owned()
    }
}
