//! Model checks of the cross-thread protocols, with [loom](https://docs.rs/loom): every
//! interleaving of a few threads (up to a preemption bound) under the C11 memory model, so that
//! a missing fence or a step in the wrong order shows as a failed assertion or a deadlock.
//!
//! Built only with `--cfg bobine_loom` (the crate's atomics then come from loom: see
//! `crate::util::atomic`), and run with
//!
//! ```text
//! RUSTFLAGS="--cfg bobine_loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom_
//! ```
//!
//! | check | the code it runs | what it proves |
//! |-------|------------------|----------------|
//! | [`park_word`] | the real `ParkWord` (park protocol steps 1-6 around it modelled) | one waker wins a generation; a wake-up is never lost; a task is queued once; a stale unparker wakes nothing |
//! | [`inbox`] | the real `Doorbell` (inbox, eventfd and epoll modelled) | a wake-up sent to a domain about to sleep is never lost |
//! | [`commit`] | the real `CommitWord` (the syncer's unparker, slots and park modelled) | one source commits a sync; a moved value is seen by the syncer; a BUSY window loses no commit |
//! | [`waitqueue`] | a model of the wait queue's steps (real `ParkWord`) | what is handed over is delivered or passed on exactly once, plain and hand-off modes |
//! | [`source`] | a model of an `mpsc` receive offer's steps 2-4 (real `CommitWord`, `ParkWord`) | a receive leaf takes a message once or leaves it in the channel; its re-check at the offer loses no message and no wake-up |
//! | [`readiness`] | a model of the reactor source's steps 1-5 | a readiness edge is never missed |
//! | [`stop`] | a model of `interrupt` / `interrupt_pending` and step 4 (real `ParkWord`) | a stop is delivered exactly once and never lost, also when it races a hand-over |
//! | [`token`] | a model of the wake-up token's steps 1-5 (real `ParkWord`) | an unpark is never lost; `park` returns only with the token, also when a stale wake of an earlier round reaches a later park |
//!
//! Where a model stands in for code that cannot run under loom (it needs a task, a stack
//! switch, an epoll, an intrusive list on a task's stack), it mirrors that code's atomics,
//! orderings and step numbers, and says which code it mirrors: a change to that code's protocol
//! must be made here too.
//!
//! The bound: each check runs with a preemption bound of 3 unless `LOOM_MAX_PREEMPTIONS` says
//! otherwise (2 keeps CI short; see `.ci/run`).

mod commit;
mod inbox;
mod park_word;
mod readiness;
mod source;
mod stop;
mod token;
mod waitqueue;

/// Runs `f` under loom with this crate's default bound (see the module doc).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// A thread's park token, as std's `thread::park`/`unpark` keep it, made of a lock and a
/// condition variable (loom's own `thread::park` misbehaves when an unpark reaches a thread
/// blocked in `join`, which these models do on purpose).
#[derive(Default)]
struct Parker {
    token: loom::sync::Mutex<bool>,
    cv: loom::sync::Condvar,
}

impl Parker {
    fn new() -> loom::sync::Arc<Parker> {
        loom::sync::Arc::new(Parker::default())
    }

    fn unpark(&self) {
        *self.token.lock().unwrap() = true;
        self.cv.notify_one();
    }

    fn park(&self) {
        let mut token = self.token.lock().unwrap();
        while !*token {
            token = self.cv.wait(token).unwrap();
        }
        *token = false;
    }
}

/// A plain thread's park (park protocol, "plain OS thread"): waits until `word`'s generation
/// `g` has ended (a lost wake-up leaves it parked for ever: loom reports the deadlock).
fn wait_thread(
    word: &crate::sched::park::ParkWord,
    g: u64,
    parker: &Parker,
) -> crate::sched::park::Wake {
    loop {
        if let Some(why) = word.outcome(g) {
            return why;
        }
        parker.park();
    }
}
