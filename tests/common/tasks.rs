//! Running test bodies in tasks: on a runtime of a given size, on a chosen domain of it, in a
//! task and on a plain thread, next to a ticker task that shows the domain keeps running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bobine::thread;

/// Runs `f` as the main task of a runtime with `domains` domains; returns its value.
pub fn on_domains<T>(domains: usize, f: impl FnOnce() -> T) -> T {
    bobine::Builder::new().domains(domains).run(f)
}

/// A job for a domain's agent (see [`with_domains`]).
type Job = Box<dyn FnOnce() + Send>;

/// The domains of a runtime started by [`with_domains`], on which tasks can be started.
pub struct Domains {
    /// The agents of domains 1, 2, ...: each starts the jobs it is sent, on its domain.
    agents: Vec<bobine::sync::mpsc::Sender<Job>>,
}

impl Domains {
    /// How many domains the runtime has.
    pub fn count(&self) -> usize {
        self.agents.len() + 1
    }

    /// Starts `f` as a std-face task that runs on domain `d` and never leaves it
    /// (`thread::spawn_local`, there), and returns its handle. Called from the main task
    /// (domain 0).
    pub fn spawn_on<T: Send + 'static>(
        &self,
        d: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        assert_eq!(
            bobine::miou::domain::self_(),
            0,
            "Domains::spawn_on is called from the main task"
        );
        if d == 0 {
            return thread::spawn_local(f);
        }
        let (tx, rx) = bobine::sync::mpsc::channel();
        self.agents[d - 1]
            .send(Box::new(move || {
                tx.send(thread::spawn_local(f)).unwrap();
            }))
            .unwrap();
        rx.recv().unwrap()
    }
}

/// Runs `f` as the main task (on domain 0) of a runtime with `domains` domains, with a
/// [`Domains`] that starts tasks on a chosen domain. The runtime is a Miou run
/// (`miou::Spawn::pin` is the one way to choose a task's domain): each domain but 0 has an
/// agent, a Miou child pinned there, that starts the tasks asked of it; the tasks themselves
/// are plain std-face tasks.
pub fn with_domains<T>(domains: usize, f: impl FnOnce(&Domains) -> T) -> T {
    use bobine::miou;
    miou::run_with(domains - 1, move || {
        let mut agents = Vec::new();
        let mut promises = Vec::new();
        for d in 1..domains {
            let (tx, rx) = bobine::sync::mpsc::channel::<Job>();
            promises.push(miou::Spawn::new().pin(d).call(move || {
                for job in rx {
                    job();
                }
            }));
            agents.push(tx);
        }
        let rt = Domains { agents };
        let v = f(&rt);
        drop(rt);
        for p in promises {
            miou::await_exn(p);
        }
        v
    })
}

/// Runs `body` in a task, then on a plain OS thread outside any runtime; `body` gets where it
/// runs (`"in a task"`, `"on a plain thread"`) for its messages.
pub fn in_task_and_thread(body: fn(&str)) {
    bobine::run(|| body("in a task"));
    std::thread::spawn(move || body("on a plain thread"))
        .join()
        .unwrap();
}

/// A task that increments `ticks` every 2 ms until `stop`: shows that its domain runs other
/// tasks while one blocks.
pub fn spawn_ticker(ticks: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            ticks.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(2));
        }
    })
}

/// Increments its counter when dropped: proves that a task's destructors (a thread's cleanups)
/// ran, and how many times.
pub struct DropCounter(pub Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits in its destructor for a message that may never come.
pub struct RecvOnDrop(pub bobine::sync::mpsc::Receiver<()>);

impl Drop for RecvOnDrop {
    fn drop(&mut self) {
        let _ = self.0.recv();
    }
}

/// Locks a mutex in its destructor.
pub struct LockOnDrop(pub &'static bobine::sync::Mutex<u32>);

impl Drop for LockOnDrop {
    fn drop(&mut self) {
        let _g = self.0.lock();
    }
}
