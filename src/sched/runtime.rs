//! Runtimes: configuration, start, spawning, and the shutdown protocol.
//!
//! ## Start
//!
//! `run` builds a [`RuntimeShared`] (ids, stack arena, one [`DomainShared`] per domain), starts
//! domains 1..n on new OS threads, turns the calling thread into domain 0, and queues `f` there
//! as the main task (id 0, pinned to domain 0).
//!
//! ## Shutdown (when the main task returns)
//!
//! 1. Domain 0 leaves its loop as soon as the main task has finished, and sets `closing`: from
//!    then on a spawn (say, by a destructor run below) drops its closure at once and returns a
//!    task that is already finished with `TaskDropped`, so no task is created that nobody
//!    would run or unwind.
//! 2. It sets `stop` on every other domain and wakes it.
//! 3. Each domain leaves its loop at its next round (a running task ends its slice first) and
//!    waits at the runtime's barrier: past it, no task runs anywhere. Each domain then adopts
//!    the never-started tasks still in its inbox (work another domain handed over), so that
//!    step 4 drops them in scope order too.
//! 4. For each scope depth d from the deepest down to 0, every domain force-unwinds its started
//!    tasks of depth d, newest first (destructors run on the task's own stack), then waits at the
//!    barrier. Scoped tasks are gone before the tasks whose stacks they borrow.
//! 5. Each domain drops what is left in its run queue, inbox and timers; tasks that never ran
//!    are dropped without running. Every dropped task is finished with `TaskDropped`, so a
//!    `JoinHandle` kept past `run` never hangs.
//! 6. Domain threads exit; `run` joins them, drains every inbox once more (wake-ups sent during
//!    steps 4-5), and drops the runtime, which unmaps the stack arena.
//!
//! The global runtime (used by `spawn` outside any runtime) never shuts down: its domains are
//! background threads that end with the process.

use std::io;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};

use super::domain::{DomainShared, Local, drop_unstarted};
use crate::sched::task::{ExitTask, Face, Task, TaskConfig, payload_text};
use crate::stack::{self, Arena, Pool};
use crate::switch::{Fiber, catch_at_root};

static RUNTIME_SERIAL: AtomicU64 = AtomicU64::new(1);

/// Settings of one runtime.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) domains: usize,
    pub(crate) stack_size: usize,
    pub(crate) max_tasks: usize,
}

impl Config {
    /// Defaults, overridden by the environment (`BOBINE_DOMAINS`, `BOBINE_STACK_SIZE`), then by
    /// explicit builder settings.
    pub(crate) fn resolve(
        domains: Option<usize>,
        stack_size: Option<usize>,
        max_tasks: Option<usize>,
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
    pub(crate) serial: u64,
    pub(crate) config: Config,
    pub(crate) domains: Vec<Arc<DomainShared>>,
    next_id: AtomicU64,
    pub(crate) max_depth: AtomicU32,
    pub(crate) arena: Arena,
    /// Stacks for spawns from threads that are not domains of this runtime.
    foreign_pool: Mutex<Pool>,
    next_domain: AtomicUsize,
    barrier: Barrier,
    /// Set when the main task has finished: spawns from then on give tasks that never run.
    closing: AtomicBool,
}

impl RuntimeShared {
    fn new(config: Config) -> io::Result<Arc<RuntimeShared>> {
        stack::install_handler(super::running_overflow_info);
        install_panic_hook();
        let domains = (0..config.domains)
            .map(|i| DomainShared::new(i).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Arc::new(RuntimeShared {
            serial: RUNTIME_SERIAL.fetch_add(1, Ordering::Relaxed),
            arena: Arena::new(config.max_tasks),
            barrier: Barrier::new(config.domains),
            config,
            domains,
            next_id: AtomicU64::new(0),
            max_depth: AtomicU32::new(0),
            foreign_pool: Mutex::new(Pool::default()),
            next_domain: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        }))
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn thread_id(&self, id: u64) -> u64 {
        self.serial << 40 | id
    }
}

/// Options of one spawn.
pub(crate) struct SpawnOptions {
    pub(crate) name: Option<String>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) face: Face,
    pub(crate) pinned: bool,
    pub(crate) depth: u32,
}

impl SpawnOptions {
    pub(crate) fn new(face: Face) -> Self {
        SpawnOptions {
            name: None,
            stack_size: None,
            face,
            pinned: false,
            depth: 0,
        }
    }
}

/// Spawns a task running `body` on the caller's domain, or on the global runtime when the caller
/// is not a domain thread. `body` stores its own outcome (through the task it is given).
///
/// # Safety
///
/// If `body` is not `'static`, everything it borrows must outlive the task. If `opts.pinned` is
/// false, `body` must be safe to send to another thread (the public API requires `Send`).
pub(crate) unsafe fn spawn_raw<B>(opts: SpawnOptions, body: B) -> io::Result<Arc<Task>>
where
    B: FnOnce(&Task),
{
    if super::on_domain() {
        super::with_local(|local| {
            if local.rt.closing.load(Ordering::Acquire) {
                // The runtime is ending (this is a destructor run by the shutdown): the task
                // would never run. Its closure is dropped now and joiners get `TaskDropped`.
                drop(body);
                return Ok(Task::dropped(task_config(&local.rt, opts)));
            }
            // SAFETY: forwarded from our caller.
            let task = unsafe {
                new_task(
                    &local.rt,
                    &mut local.stacks.borrow_mut(),
                    local.cached_task(),
                    opts,
                    body,
                )
            }?;
            local.adopt(task.clone());
            Ok(task)
        })
    } else if opts.pinned {
        Err(io::Error::other(
            "bobine: spawn_local must be called from a task",
        ))
    } else {
        let rt = global();
        let mut pool = rt.foreign_pool.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: forwarded from our caller.
        let task = unsafe { new_task(rt, &mut pool, None, opts, body) }?;
        drop(pool);
        let i = rt.next_domain.fetch_add(1, Ordering::Relaxed) % rt.domains.len();
        rt.domains[i].push(task.clone());
        Ok(task)
    }
}

/// Ids and the name for a new task.
fn task_config(rt: &RuntimeShared, opts: SpawnOptions) -> TaskConfig {
    let id = rt.next_id();
    TaskConfig {
        id,
        thread_id: rt.thread_id(id),
        name: opts.name.map(String::into_boxed_str),
        face: opts.face,
        pinned: opts.pinned,
        depth: opts.depth,
    }
}

/// Builds a task (stack, ids, fiber) without queueing it.
///
/// # Safety
///
/// As for [`spawn_raw`].
unsafe fn new_task<B>(
    rt: &RuntimeShared,
    pool: &mut Pool,
    recycled: Option<crate::sched::task::CachedTask>,
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
    if opts.depth > 0 {
        rt.max_depth.fetch_max(opts.depth, Ordering::Relaxed);
    }
    let cfg = task_config(rt, opts);
    Ok(Task::new(recycled, cfg, slot, |slot, task_ptr| {
        let root = move |y: &crate::switch::FiberYielder| {
            // SAFETY: the fiber runs only while its task is alive (its domain's registry owns
            // it), and the task never moves (it is in an Arc).
            let task = unsafe { &*task_ptr };
            task.set_yielder(y);
            body(task);
        };
        // SAFETY: forwarded to our caller (what `body` borrows outlives the task).
        unsafe { Fiber::new_unchecked(slot, root) }
    }))
}

/// The standard task root: runs `f`, stores its value or panic, reports an uncaught panic the
/// way the task's face wants.
pub(crate) fn task_root<F, T>(task: &Task, f: F)
where
    F: FnOnce() -> T,
    T: 'static,
{
    match catch_at_root(&task.forcing, f) {
        Ok(v) => task.set_outcome(Ok(Box::new(v))),
        Err(payload) => {
            if task.face == Face::OCaml && !payload.is::<ExitTask>() {
                eprintln!(
                    "Thread {} killed on uncaught exception {}",
                    task.id,
                    payload_text(&*payload)
                );
            }
            task.set_outcome(Err(payload));
        }
    }
}

fn global() -> &'static Arc<RuntimeShared> {
    static GLOBAL: OnceLock<Arc<RuntimeShared>> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let rt = RuntimeShared::new(Config::resolve(None, None, None))
            .unwrap_or_else(|e| panic!("bobine: cannot start the global runtime: {e}"));
        // Id 0 stands for "the main task" in every runtime; the global one has none.
        rt.next_id();
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
/// (when `shuts_down`) takes its part in the shutdown protocol.
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
            let _abort_guard = AbortOnPanic;
            local.run_until(&|| shared.stop.load(Ordering::Acquire));
            if shuts_down {
                shut_down(&local);
            }
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
    let rt = RuntimeShared::new(config)
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
        ..SpawnOptions::new(Face::Std)
    };
    let body = move |task: &Task| {
        let r = catch_at_root(&task.forcing, f);
        // SAFETY: `out` lives in `run`'s frame, which waits for the main task to finish.
        unsafe { *out_ptr = Some(r) };
    };
    // SAFETY: the main task is pinned to this thread, and `run` does not return before it has
    // finished, so what `f` borrows outlives it.
    let main = unsafe { spawn_raw(opts, body) }
        .unwrap_or_else(|e| panic!("bobine: cannot start the main task: {e}"));
    let abort_guard = AbortOnPanic;
    local.run_until(&|| main.is_finished());
    rt.closing.store(true, Ordering::SeqCst);
    for d in &rt.domains[1..] {
        d.request_stop();
    }
    shut_down(&local);
    drop(abort_guard);
    drop(enter);
    drop(local);
    for t in threads {
        let _ = t.join();
    }
    for d in &rt.domains {
        // Step 6: wake-ups that arrived after their domain's last drain.
        for task in d.take_inbox() {
            drop_unstarted(&task);
        }
    }
    drop(rt);
    match out {
        Some(Ok(v)) => v,
        Some(Err(payload)) => resume_unwind(payload),
        None => unreachable!("the main task finished without an outcome"),
    }
}

/// Aborts the process if a scheduler loop unwinds: its state (run queue, registry, the shutdown
/// barrier every domain must reach) would be broken, and the other domains would hang.
/// Task panics never get here: they are caught at each task's root.
struct AbortOnPanic;

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "bobine: fatal: a domain's scheduler panicked (a bug in bobine, or a destructor \
                 that panicked while the runtime dropped a task); aborting"
            );
            std::process::abort();
        }
    }
}

/// Steps 3-5 of the shutdown protocol, on one domain's thread.
fn shut_down(local: &Local) {
    let rt = &local.rt;
    rt.barrier.wait();
    local.adopt_inbox();
    let deepest = rt.max_depth.load(Ordering::Relaxed);
    for depth in (0..=deepest).rev() {
        local.unwind_depth(depth);
        rt.barrier.wait();
    }
    local.drop_queued();
}

/// Installs (once) a panic hook that names the panicking task the way std names threads, and
/// stays silent for OCaml-face tasks (reported when they end). Other panics go to the hook that
/// was installed before.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let handled = super::with_current(|task| {
                if task.face == Face::OCaml {
                    return;
                }
                let name = task.name().unwrap_or("<unnamed>").to_owned();
                let id = task.id;
                let msg = payload_text(info.payload());
                let location = info.location().map(|l| l.to_string()).unwrap_or_default();
                // Capturing walks this stack; resolving symbols and formatting need far more
                // room than a small task stack has, so they run on the scheduler's stack.
                let backtrace = std::backtrace::Backtrace::capture();
                task.on_parent_stack(move || {
                    let mut text = format!("thread '{name}' (task {id}) panicked at {location}:\n{msg}\n");
                    match backtrace.status() {
                        std::backtrace::BacktraceStatus::Captured => {
                            text.push_str(&format!("stack backtrace:\n{backtrace}\n"))
                        }
                        _ => {
                            static NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                            if !NOTED.swap(true, Ordering::Relaxed) {
                                text.push_str(
                                    "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
                                );
                            }
                        }
                    }
                    eprint!("{text}");
                });
            });
            if handled.is_none() {
                previous(info);
            }
        }));
    });
}
