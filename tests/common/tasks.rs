//! Running test bodies in tasks: on a runtime of a given size, in a task and on a plain thread,
//! next to a ticker task that shows the domain keeps running.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bobine::thread;

/// Runs `f` as the main task of a runtime with `domains` domains; returns its value.
pub fn on_domains<T>(domains: usize, f: impl FnOnce() -> T) -> T {
    bobine::Builder::new().domains(domains).run(f)
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
