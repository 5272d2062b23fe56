//! `thread::park`, `park_timeout` and `Thread::unpark`: std's wake-up token, per task.
//!
//! Every [`Thread`] (a task, or a plain OS thread seen from bobine) has one token, kept by
//! the kernel's `park::token` (its module doc has the protocol as numbered steps):
//! [`Thread::unpark`] makes it available (never more than one), [`park`] takes it, waiting
//! until it is available, [`park_timeout`] also gives up after its timeout.
//!
//! In a task, waiting parks the task (its domain runs the others meanwhile); a cancelled task
//! unwinds from it as from any wait. On a plain OS thread the thread blocks, in
//! `std::thread::park` underneath. The token is bobine's own on both, not std's: bobine's
//! internal waits on a plain thread also sleep in `std::thread::park`, and would otherwise
//! take or fake the token. So `bobine::thread::park` pairs with `bobine::thread::Thread::unpark`,
//! not with `std::thread::Thread::unpark`.
//!
//! On a plain thread whose thread-locals are being destroyed, [`current`](super::current)
//! gives a fresh handle, with a fresh token, each time: unparking it reaches nobody.
//!
//! Unlike std, which allows spurious wake-ups, `park` returns only with the token, and
//! `park_timeout` only with the token or after its timeout.

use std::time::{Duration, Instant};

use super::{Inner, Thread};
use crate::sched::park::Wait;

/// The reason a task parked in [`park`] shows in the task dump ([`crate::diag`]).
const REASON: &str = "thread::park";

/// Blocks until the current task's (or thread's) token is available, then takes it, like
/// `std::thread::park`. Returns at once if it already was available.
///
/// In a task, the task parks and its domain runs other tasks. A task cancelled while it waits
/// unwinds from here. Bobine's `park` has no spurious wake-ups.
///
/// ```
/// use bobine::thread;
/// let parked = thread::spawn(|| {
///     thread::park();
///     "unparked"
/// });
/// parked.thread().unpark();
/// assert_eq!(parked.join().unwrap(), "unparked");
/// ```
#[track_caller]
pub fn park() {
    with_token(&Wait::hand_over(REASON));
}

/// Like [`park`], but gives up once `dur` has passed, like `std::thread::park_timeout`. It
/// does not tell which happened (a token, or the timeout); a zero `dur` only takes a token
/// that is already there.
///
/// ```
/// use std::time::Duration;
/// bobine::thread::current().unpark();
/// bobine::thread::park_timeout(Duration::from_secs(60)); // takes the token at once
/// bobine::thread::park_timeout(Duration::from_millis(1)); // waits about 1 ms
/// ```
#[track_caller]
pub fn park_timeout(dur: Duration) {
    // A deadline too far to represent is no deadline.
    let deadline = Instant::now().checked_add(dur);
    with_token(&Wait::hand_over(REASON).until(deadline));
}

#[track_caller]
fn with_token(wait: &Wait) {
    let p = crate::sched::current_ptr();
    if !p.is_null() {
        // SAFETY: the running task is alive while it runs, and this frame is on its stack.
        let task = unsafe { &*p };
        task.token.park(wait);
        return;
    }
    match &super::current().inner {
        Inner::Os(os) => {
            os.token.park(wait);
        }
        Inner::Task(_) => unreachable!("no task runs here"),
    }
}

impl Thread {
    /// Makes this task's (or thread's) token available, waking it if it waits in [`park`],
    /// like `std::thread::Thread::unpark`. From any task or thread, before or while the target
    /// parks; calling it again before the token is taken does nothing more (one token at most).
    /// It never ends another kind of wait of the target (a lock, a join, a sleep).
    pub fn unpark(&self) {
        match &self.inner {
            Inner::Task(t) => t.token.unpark(),
            Inner::Os(o) => o.token.unpark(),
        }
    }
}

/// How many tasks of the current runtime can run at the same time, like
/// `std::thread::available_parallelism`.
///
/// Inside a runtime (in a task, or on one of its domain threads) it is the runtime's number of
/// domains: tasks run on the domains' OS threads, so that is the parallelism they actually
/// get, whatever the machine has. Outside any runtime (a plain thread) it is std's answer.
///
/// ```
/// let n = bobine::Builder::new()
///     .domains(2)
///     .run(|| bobine::thread::available_parallelism().unwrap());
/// assert_eq!(n.get(), 2);
/// ```
pub fn available_parallelism() -> std::io::Result<std::num::NonZeroUsize> {
    match crate::sched::domain_index().and_then(|(_, n)| std::num::NonZeroUsize::new(n)) {
        Some(n) => Ok(n),
        None => std::thread::available_parallelism(),
    }
}
