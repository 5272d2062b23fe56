//! Running loops on the peer runtimes: tokio (current-thread) and may.

use std::time::Duration;

/// Runs `fut` as a spawned task (not as the `block_on` future, which tokio schedules apart) of
/// a fresh current-thread runtime.
pub fn tokio_run<F>(fut: F) -> Duration
where
    F: Future<Output = Duration> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move { tokio::spawn(fut).await.expect("driver task panicked") })
}

/// Spawns a may coroutine.
pub fn may_spawn<F, T>(f: F) -> may::coroutine::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: may marks spawn unsafe because a coroutine may move between worker threads (so a
    // thread-local it reads could change under it) and because blocking the OS thread stalls
    // the worker. Every closure given here touches no thread-local and blocks only through
    // may's own primitives (mutex, condvar, channel, yield, join).
    unsafe { may::coroutine::spawn(f) }
}

/// Runs `f` in a driver coroutine and returns what it measured.
pub fn may_run(f: impl FnOnce() -> Duration + Send + 'static) -> Duration {
    may_spawn(f).join().expect("driver coroutine panicked")
}
