//! Signals (rule 11): Miou's `sys_signal`, on the kernel's signal facility
//! (`sched::signals`). The OS handler only records the signal; the Miou handler runs later,
//! as an ordinary task on domain 0 of the run that installed it.

use std::sync::Arc;

use super::tree::current;
use crate::sched::runtime::{SpawnOptions, current_runtime, spawn_raw};
use crate::sched::signals;
use crate::sched::task::Task;
use crate::thread::JoinHandle;

/// Installs `handler` for the signal `sig` for the rest of the run (Miou's `sys_signal sig
/// (Signal_handle handler)`), replacing the handler this run installed for `sig` before, if
/// any.
///
/// When the process receives `sig`, `handler(sig)` runs soon after as a new task on domain 0,
/// never in signal context: it may lock a [`mutex`](super::mutex), `broadcast` a
/// [`condition`](super::condition), send on a channel or print. Several deliveries close
/// together may give one call (as OCaml merges a signal received twice before its handler
/// runs). The handler task is not a Miou child of anyone: Miou's own calls (`call_cc`,
/// `await_`, ...) panic there. While the handler is installed, the signal's previous
/// disposition (say, SIGINT ending the process) does not run; it is back when the run ends.
///
/// ```no_run
/// use bobine::miou;
/// miou::run(|| {
///     let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
///     let s = stop.clone();
///     miou::sys_signal(libc::SIGINT, move |_| s.store(true, std::sync::atomic::Ordering::SeqCst));
///     while !stop.load(std::sync::atomic::Ordering::SeqCst) {
///         bobine::thread::sleep(std::time::Duration::from_millis(10));
///     }
/// });
/// ```
///
/// # Panics
///
/// Outside a Miou task; if `sig` cannot be watched (SIGKILL, SIGSTOP, the fault signals, a
/// number out of range: the message names it), or if the handler cannot be installed.
#[track_caller]
pub fn sys_signal(sig: i32, handler: impl Fn(i32) + Send + Sync + 'static) {
    let me = current("sys_signal");
    let rt = current_runtime();
    let handler = Arc::new(handler);
    let on_signal = move |sig: i32| {
        let handler = handler.clone();
        let opts = SpawnOptions {
            name: Some(format!("miou signal {sig} handler")),
            domain: Some(0),
            ..SpawnOptions::default()
        };
        let body = move |task: &Task| {
            let outcome = crate::sched::park::stop::catch_at_root(task, || handler(sig));
            task.set_outcome(outcome.map(|()| Box::new(()) as Box<dyn std::any::Any>));
        };
        // SAFETY: `body` is 'static and Send (the handler is Send + Sync).
        match unsafe { spawn_raw(Some(&rt), opts, body) } {
            Ok(task) => drop(JoinHandle::<()>::new(task)),
            Err(e) => {
                eprintln!("bobine::miou: signal {sig} received, but its handler cannot start: {e}")
            }
        }
    };
    let watch = signals::watch(sig, Arc::new(on_signal))
        .unwrap_or_else(|e| panic!("bobine::miou::sys_signal: {e}"));
    me.run().install_signal(sig, watch);
}
