//! Promises: starting children ([`call_cc`], [`call`], [`parallel`], the [`Spawn`] builder)
//! and ending them ([`await_`] and its variants, [`cancel`]), with rules 2 to 6 checked here.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Error;
use super::orphans::Orphans;
use super::ownership::Resource;
use super::tree::{Launch, Node, cancel_all, current, current_node_for, with_current_node};
use crate::sched::park::{Park, Wait, Wake, stop};
use crate::sched::runtime::{SpawnOptions, spawn_raw};
use crate::sched::task::Task;

/// A child task's future outcome (Miou's `'a t`), to be awaited or cancelled by its parent
/// only (rule 2). A promise of a [`call_cc`] child may be sent to another thread only when
/// `T` is `Send`; awaiting it there panics with [`Error::NotAChild`] all the same.
pub struct Promise<T> {
    node: Arc<Node>,
    /// The child's value is the promise's (`Send` only when `T` is).
    _value: PhantomData<T>,
}

impl<T> std::fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promise")
            .field("id", &self.node.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> Promise<T> {
    /// The promise's id (Miou's `Promise.uid`): unique in the process.
    pub fn id(&self) -> u64 {
        self.node.id
    }

    /// Whether the child has ended (awaiting it will not wait, or hardly).
    pub fn is_finished(&self) -> bool {
        self.node.ended.load(Ordering::Acquire)
    }

    /// Rule 2: the caller must be this promise's parent.
    #[track_caller]
    fn check_parent(&self, me: &Node) {
        if !me.is_parent_of(&self.node) {
            Error::NotAChild.raise()
        }
    }
}

/// Where a child runs.
#[derive(Clone, Copy)]
enum Target {
    /// The caller's domain (`call_cc`).
    Here,
    /// Another worker domain (`call`): this one.
    Domain(usize),
}

/// Miou's optional arguments as a builder: resources to give the child (`~give`), a
/// collector of orphans to put it in (`~orphans`), and the worker domain of a [`call`]
/// (`~pin`). A name for reports comes on top.
///
/// ```
/// use bobine::miou::{self, ownership, Spawn};
/// miou::run_with(1, || {
///     let r = ownership::own(|| ());
///     let p = Spawn::new().give(&r).pin(1).call({
///         let r = r.clone();
///         move || {
///             ownership::check(&r); // the child owns it now
///             ownership::disown(&r);
///             miou::domain::self_()
///         }
///     });
///     assert_eq!(miou::await_exn(p), 1);
/// });
/// ```
#[derive(Default)]
pub struct Spawn<'a> {
    give: Vec<&'a Resource>,
    pin: Option<usize>,
    name: Option<String>,
}

impl std::fmt::Debug for Spawn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawn")
            .field("give", &self.give.len())
            .field("pin", &self.pin)
            .field("name", &self.name)
            .finish()
    }
}

impl<'a> Spawn<'a> {
    /// A builder with no option set.
    pub fn new() -> Spawn<'a> {
        Spawn::default()
    }

    /// Gives `r` to the child: the child owns it from its spawn on (the caller must own it).
    pub fn give(mut self, r: &'a Resource) -> Spawn<'a> {
        self.give.push(r);
        self
    }

    /// Runs a [`call`] child on worker domain `domain` instead of a random one.
    pub fn pin(mut self, domain: usize) -> Spawn<'a> {
        self.pin = Some(domain);
        self
    }

    /// Names the child (shown in panic and overflow reports).
    pub fn name(mut self, name: impl Into<String>) -> Spawn<'a> {
        self.name = Some(name.into());
        self
    }

    /// Puts the child in the collector `o` instead of returning its promise (Miou's
    /// `~orphans`).
    pub fn orphans<T>(self, o: &'a Orphans<T>) -> SpawnOrphan<'a, T> {
        SpawnOrphan { spawn: self, o }
    }

    /// Starts `f` as a child on the current domain (see [`call_cc`]).
    ///
    /// # Panics
    ///
    /// Outside a Miou task; with [`Error::NotOwner`] if a resource to give is not the
    /// caller's; with `Invalid_argument("Miou.call_cc")` if a domain was pinned.
    #[track_caller]
    pub fn call_cc<T: 'static>(self, f: impl FnOnce() -> T + 'static) -> Promise<T> {
        if self.pin.is_some() {
            panic!(
                "Invalid_argument(\"Miou.call_cc\"): a call_cc child runs on the caller's domain; pin is for call"
            );
        }
        // SAFETY: the child runs on the caller's domain, where `f` was made.
        with_current_node("call_cc", |me| unsafe {
            self.start(me, Target::Here, None, f)
        })
    }

    /// Starts `f` as a child on another worker domain (see [`call`]).
    ///
    /// # Panics
    ///
    /// Outside a Miou task; with [`Error::NoDomainAvailable`] when there is no worker domain
    /// but the caller's; with [`Error::NotOwner`] if a resource to give is not the caller's;
    /// with `Invalid_argument("Miou.call")` if the pinned domain is not a worker other than
    /// the caller's.
    #[track_caller]
    pub fn call<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> Promise<T> {
        with_current_node("call", |me| {
            let domain = self.worker();
            // SAFETY: `f` is Send.
            unsafe { self.start(me, Target::Domain(domain), None, f) }
        })
    }

    /// The domain of a `call` child: the pinned one, checked, or a random worker other than
    /// the caller's.
    #[track_caller]
    fn worker(&self) -> usize {
        let (here, count) = crate::sched::domain_index().expect("a Miou task runs on a domain");
        match self.pin {
            Some(d) if d == 0 || d >= count || d == here => panic!(
                "Invalid_argument(\"Miou.call\"): domain {d} is not a worker domain other than \
                 the caller's (workers: 1..={}, caller: {here})",
                count - 1
            ),
            Some(d) => d,
            None => {
                let workers = other_workers(here, count);
                if workers.is_empty() {
                    Error::NoDomainAvailable.raise()
                }
                workers[crate::util::random(workers.len())]
            }
        }
    }

    /// Spawns the child and records it in the tree.
    ///
    /// # Safety
    ///
    /// With `Target::Domain`, `f` must be safe to send to another thread.
    #[track_caller]
    unsafe fn start<T: 'static, F: FnOnce() -> T + 'static>(
        self,
        me: &Node,
        target: Target,
        collector: Option<Arc<super::orphans::Ended>>,
        f: F,
    ) -> Promise<T> {
        // SAFETY: forwarded from our caller.
        unsafe { start_child(me, &self.give, self.name, target, collector, f) }
    }
}

/// Spawns a child of `me` (given `give`, named `name`) and records it in the tree.
///
/// # Safety
///
/// With `Target::Domain`, `f` must be safe to send to another thread.
#[track_caller]
unsafe fn start_child<T: 'static, F: FnOnce() -> T + 'static>(
    me: &Node,
    give: &[&Resource],
    name: Option<String>,
    target: Target,
    collector: Option<Arc<super::orphans::Ended>>,
    f: F,
) -> Promise<T> {
    let node = me.new_child(collector);
    for r in give {
        r.move_between(me, &node);
    }
    let opts = SpawnOptions {
        name,
        pinned: true,
        domain: match target {
            Target::Here => None,
            Target::Domain(d) => Some(d),
        },
        report_panics: false,
        ..SpawnOptions::default()
    };
    let launch = Launch {
        node: node.clone(),
        f: Some(f),
    };
    // SAFETY: `f` is 'static; it stays on this domain (pinned) or is Send (our caller).
    let task = unsafe { spawn_raw(None, opts, move |task: &Task| launch.run(task)) }
        .unwrap_or_else(|e| panic!("bobine::miou: cannot start a task: {e}"));
    me.adopt(&node, task);
    Promise {
        node,
        _value: PhantomData,
    }
}

/// [`Spawn`] with a collector of orphans: the child goes into the collector.
pub struct SpawnOrphan<'a, T> {
    spawn: Spawn<'a>,
    o: &'a Orphans<T>,
}

impl<T> std::fmt::Debug for SpawnOrphan<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnOrphan")
            .field("spawn", &self.spawn)
            .finish()
    }
}

impl<T: 'static> SpawnOrphan<'_, T> {
    /// Starts `f` as an orphan on the current domain.
    ///
    /// # Panics
    ///
    /// As [`Spawn::call_cc`], and if another task owns the collector.
    #[track_caller]
    pub fn call_cc(self, f: impl FnOnce() -> T + 'static) {
        if self.spawn.pin.is_some() {
            panic!(
                "Invalid_argument(\"Miou.call_cc\"): a call_cc child runs on the caller's domain; pin is for call"
            );
        }
        let (me, ended) = self.o.prepare("call_cc");
        // SAFETY: the child runs on the caller's domain.
        let p = unsafe { self.spawn.start(&me, Target::Here, Some(ended), f) };
        self.o.keep(p);
    }

    /// Starts `f` as an orphan on another worker domain.
    ///
    /// # Panics
    ///
    /// As [`Spawn::call`], and if another task owns the collector.
    #[track_caller]
    pub fn call(self, f: impl FnOnce() -> T + Send + 'static)
    where
        T: Send,
    {
        let (me, ended) = self.o.prepare("call");
        let domain = self.spawn.worker();
        // SAFETY: `f` is Send.
        let p = unsafe {
            self.spawn
                .start(&me, Target::Domain(domain), Some(ended), f)
        };
        self.o.keep(p);
    }
}

/// The worker domains other than `here`, in order.
fn other_workers(here: usize, count: usize) -> Vec<usize> {
    (1..count).filter(|&d| d != here).collect()
}

/// Starts `f` as a child on the current domain and returns its promise (Miou's `call_cc`,
/// renamed `async` in Miou 0.7). The child is queued: the caller keeps running until it
/// blocks or yields (rule 3).
///
/// ```
/// use bobine::miou;
/// let order = miou::run_with(0, || {
///     let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
///     let l = log.clone();
///     let p = miou::call_cc(move || l.borrow_mut().push("Hello"));
///     log.borrow_mut().push("World");
///     miou::await_exn(p);
///     log.take()
/// });
/// assert_eq!(order, ["World", "Hello"]);
/// ```
///
/// # Panics
///
/// Outside a Miou task.
#[track_caller]
pub fn call_cc<T: 'static>(f: impl FnOnce() -> T + 'static) -> Promise<T> {
    // SAFETY: the child runs on the caller's domain, where `f` was made.
    with_current_node("call_cc", |me| unsafe {
        start_child(me, &[], None, Target::Here, None, f)
    })
}

/// Starts `f` as a child on another worker domain, chosen at random among those other than
/// the caller's (never domain 0), and returns its promise (Miou's `call`, rule 4).
///
/// # Panics
///
/// Outside a Miou task; with [`Error::NoDomainAvailable`] when there is no such domain.
#[track_caller]
pub fn call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Promise<T> {
    Spawn::new().call(f)
}

/// Runs `f` on each of `xs` in children spread round-robin over the worker domains other
/// than the caller's, and returns their outcomes in the order of `xs` (Miou's `parallel`).
///
/// ```
/// let squares = bobine::miou::run_with(2, || {
///     bobine::miou::parallel(|x: u64| x * x, vec![1, 2, 3, 4])
/// });
/// let squares: Vec<u64> = squares.into_iter().map(Result::unwrap).collect();
/// assert_eq!(squares, [1, 4, 9, 16]);
/// ```
///
/// # Panics
///
/// Outside a Miou task; with [`Error::NoDomainAvailable`] when there is no such domain.
#[track_caller]
pub fn parallel<A, T>(
    f: impl Fn(A) -> T + Send + Sync + 'static,
    xs: Vec<A>,
) -> Vec<Result<T, Error>>
where
    A: Send + 'static,
    T: Send + 'static,
{
    let me = current("parallel");
    let (here, count) = crate::sched::domain_index().expect("a Miou task runs on a domain");
    let workers = other_workers(here, count);
    if workers.is_empty() {
        Error::NoDomainAvailable.raise()
    }
    let f = Arc::new(f);
    let promises: Vec<Promise<T>> = xs
        .into_iter()
        .enumerate()
        .map(|(i, x)| {
            let f = f.clone();
            let target = Target::Domain(workers[i % workers.len()]);
            // SAFETY: the closure is Send (`f` is Send + Sync, `x` is Send).
            unsafe { Spawn::new().start(&me, target, None, move || f(x)) }
        })
        .collect();
    await_all(promises)
}

/// Waits for the child of `p` to end and gives its outcome (Miou's `await`): its value,
/// `Err(Error::Cancelled)` if it was cancelled (even after it had ended), or
/// `Err(Error::Panic(payload))` if it panicked.
///
/// # Panics
///
/// With [`Error::NotAChild`] unless the caller is `p`'s parent (rule 2).
#[track_caller]
pub fn await_<T: 'static>(p: Promise<T>) -> Result<T, Error> {
    // Not through `with_current_node`: a closure would lose the caller's location, which the
    // wait records for the task dump.
    let me = current_node_for("await_");
    p.check_parent(me);
    take(me, p)
}

/// Waits until the child of `p` has ended, then takes its outcome; the child leaves the tree.
/// A caller cancelled while it waits unwinds, with the child back among its live children, so
/// that the caller's end cancels it.
#[track_caller]
fn take<T: 'static>(me: &Node, p: Promise<T>) -> Result<T, Error> {
    let task = me.release(&p.node);
    if let Some(t) = &task
        && !t.is_finished()
    {
        /// Puts the child back if the wait unwinds.
        struct Back<'a>(&'a Node, &'a Node, Option<&'a Arc<Task>>);
        impl Drop for Back<'_> {
            fn drop(&mut self) {
                if let Some(t) = self.2 {
                    self.0.adopt(self.1, t.clone());
                }
            }
        }
        let mut back = Back(me, &p.node, Some(t));
        t.wait_finished("miou::await_");
        back.2 = None;
    }
    let cancelled = p.node.cancelled.load(Ordering::Acquire);
    me.recycle(p.node);
    let outcome = task.and_then(|t| {
        let outcome = t.take_outcome();
        crate::sched::release(t);
        outcome
    });
    match outcome {
        _ if cancelled => Err(Error::Cancelled),
        Some(Ok(value)) => Ok(*value.downcast::<T>().expect("a child's value of its type")),
        Some(Err(payload)) => Err(Error::from_payload(payload)),
        None => Err(Error::Cancelled),
    }
}

/// [`await_`], re-panicking with the child's panic payload (or with the [`Error`] itself when
/// the child was cancelled or broke a rule): Miou's `await_exn`.
#[track_caller]
pub fn await_exn<T: 'static>(p: Promise<T>) -> T {
    match await_(p) {
        Ok(v) => v,
        Err(Error::Panic(payload)) => std::panic::resume_unwind(payload),
        Err(e) => e.raise(),
    }
}

/// Awaits every promise, in order, and gives their outcomes in the same order.
///
/// # Panics
///
/// With [`Error::NotAChild`] if the caller is not the parent of one of them (checked before
/// waiting for any).
#[track_caller]
pub fn await_all<T: 'static>(ps: Vec<Promise<T>>) -> Vec<Result<T, Error>> {
    let me = current("await_all");
    for p in &ps {
        p.check_parent(&me);
    }
    ps.into_iter().map(|p| take(&me, p)).collect()
}

/// Waits until one of `ps` has ended and gives its outcome; the others are cancelled (and
/// have ended when this returns). Among several already ended, one is picked at random,
/// successes first (rule 6).
///
/// # Panics
///
/// With `Invalid_argument("Miou.await_first")` if `ps` is empty; with [`Error::NotAChild`]
/// unless the caller is the parent of all of them.
#[track_caller]
pub fn await_first<T: 'static>(ps: Vec<Promise<T>>) -> Result<T, Error> {
    if ps.is_empty() {
        panic!("Invalid_argument(\"Miou.await_first\")");
    }
    let me = current("await_first");
    let (winner, rest) = first_to_end(&me, ps, "miou::await_first");
    let losers: Vec<Arc<Task>> = rest
        .iter()
        .filter_map(|p| {
            let task = me.child_task(&p.node)?.arc();
            p.node.cancelled.store(true, Ordering::Release);
            Some(task)
        })
        .collect();
    cancel_all(&losers);
    drop(losers);
    for p in rest {
        if let Some(t) = me.release(&p.node) {
            crate::sched::release(t);
        }
    }
    take(&me, winner)
}

/// Waits until one of `ps` has ended and gives its outcome with the others, still running
/// (rule 6).
///
/// # Panics
///
/// With `Invalid_argument("Miou.await_one")` if `ps` is empty; with [`Error::NotAChild`]
/// unless the caller is the parent of all of them.
#[track_caller]
pub fn await_one<T: 'static>(ps: Vec<Promise<T>>) -> (Result<T, Error>, Vec<Promise<T>>) {
    if ps.is_empty() {
        panic!("Invalid_argument(\"Miou.await_one\")");
    }
    let me = current("await_one");
    let (winner, rest) = first_to_end(&me, ps, "miou::await_one");
    (take(&me, winner), rest)
}

/// Parks until one of `ps` has ended; returns it (picked at random among the ended ones,
/// successes first) and the others.
#[track_caller]
fn first_to_end<T>(
    me: &Node,
    mut ps: Vec<Promise<T>>,
    reason: &'static str,
) -> (Promise<T>, Vec<Promise<T>>) {
    for p in &ps {
        p.check_parent(me);
    }
    loop {
        let ended: Vec<usize> = (0..ps.len()).filter(|&i| ps[i].is_finished()).collect();
        if !ended.is_empty() {
            let ok: Vec<usize> = ended
                .iter()
                .copied()
                .filter(|&i| {
                    ps[i].node.succeeded.load(Ordering::Acquire)
                        && !ps[i].node.cancelled.load(Ordering::Acquire)
                })
                .collect();
            let pool = if ok.is_empty() { &ended } else { &ok };
            let winner = ps.swap_remove(pool[crate::util::random(pool.len())]);
            return (winner, ps);
        }
        let park = Park::new();
        let all_running = ps.iter().all(|p| {
            me.child_task(&p.node)
                .is_some_and(|t| t.add_joiner(park.unparker()))
        });
        if !all_running {
            continue;
        }
        if park.wait_for(&Wait::hand_over(reason)) == Wake::Interrupted
            && !ps.iter().any(Promise::is_finished)
        {
            // Stopped before any ended: the caller unwinds; its end cancels them.
            stop::unwind_if_stopped();
        }
    }
}

/// Cancels the child of `p` and its whole subtree, and returns once they have all ended and
/// their destructors and finalisers have run (rule 5). Awaiting `p` then gives
/// `Err(Error::Cancelled)`. Cancelling twice, or an ended child, is harmless.
///
/// # Panics
///
/// With [`Error::NotAChild`] unless the caller is `p`'s parent.
#[track_caller]
pub fn cancel<T>(p: &Promise<T>) {
    cancel_child(current_node_for("cancel"), p)
}

#[track_caller]
fn cancel_child<T>(me: &Node, p: &Promise<T>) {
    p.check_parent(me);
    if !me.is_live_child(&p.node) {
        return;
    }
    p.node.cancelled.store(true, Ordering::Release);
    if let Some(task) = me.child_task(&p.node) {
        stop::cancel(&task.arc());
        // A caller cancelled here unwinds; the child stays live until then, so the caller's
        // end still waits for it.
        task.wait_finished("miou::cancel");
    }
    if let Some(t) = me.release(&p.node) {
        crate::sched::release(t);
    }
}
