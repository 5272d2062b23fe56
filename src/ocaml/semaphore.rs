//! OCaml's `Semaphore.Counting` and `Semaphore.Binary`.
//!
//! Released permits go to the oldest waiter first. Any thread may release.

/// `Semaphore.Counting`.
///
/// | OCaml                          | here                  | error (panic message)                                       |
/// |--------------------------------|-----------------------|-------------------------------------------------------------|
/// | `Semaphore.Counting.make n`    | [`make`](counting::make)`(n)` | `Invalid_argument("Semaphore.Counting.init: wrong initial value")` if `n < 0` |
/// | `release s`                    | [`release`](counting::release)`(&s)` | `Sys_error("Semaphore.Counting.release: overflow")` at [`MAX_INT`](crate::ocaml::MAX_INT) |
/// | `acquire s` / `try_acquire s`  | [`acquire`](counting::acquire) / [`try_acquire`](counting::try_acquire) | `try_acquire` never blocks |
/// | `get_value s`                  | [`get_value`](counting::get_value)`(&s)` |                                                   |
pub mod counting {
    use std::sync::Arc;

    use crate::sched::waitqueue::{WaitList, Woken, wait_in};
    use crate::util::SpinLock;

    struct State {
        value: i64,
        queue: WaitList,
    }

    /// A counting semaphore handle: cheap to clone, shared by every clone.
    #[derive(Clone)]
    pub struct T {
        state: Arc<SpinLock<State>>,
    }

    impl std::fmt::Debug for T {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Semaphore.Counting")
                .field("value", &get_value(self))
                .finish()
        }
    }

    /// `make n`: a semaphore with value `n`.
    ///
    /// # Panics
    ///
    /// `Invalid_argument("Semaphore.Counting.init: wrong initial value")` if `n < 0`.
    #[track_caller]
    pub fn make(n: i64) -> T {
        if n < 0 {
            panic!("Invalid_argument(\"Semaphore.Counting.init: wrong initial value\")");
        }
        T {
            state: Arc::new(SpinLock::new(State {
                value: n,
                queue: WaitList::new(),
            })),
        }
    }

    /// `release s`: gives a permit to the oldest waiter, or increments the value.
    ///
    /// # Panics
    ///
    /// `Sys_error("Semaphore.Counting.release: overflow")` if the value is OCaml's `max_int` ([`MAX_INT`](crate::ocaml::MAX_INT)).
    #[track_caller]
    pub fn release(s: &T) {
        let mut state = s.state.lock();
        if let Some(next) = state.queue.pop_front() {
            drop(state);
            next.unpark();
            return;
        }
        if state.value >= crate::ocaml::MAX_INT {
            drop(state);
            panic!("Sys_error(\"Semaphore.Counting.release: overflow\")");
        }
        state.value += 1;
    }

    /// `acquire s`: takes a permit, parking until one is free.
    #[track_caller]
    pub fn acquire(s: &T) {
        let mut state = s.state.lock();
        if state.value > 0 && state.queue.is_empty() {
            state.value -= 1;
            return;
        }
        let woken = wait_in(
            &s.state,
            state,
            |st| &mut st.queue,
            0,
            "Semaphore.Counting.acquire",
            None,
            || (),
            || release(s),
        );
        if woken != Woken::Notified {
            crate::sched::interrupted_wait("Semaphore.Counting.acquire");
        }
    }

    /// `try_acquire s`: takes a permit if one is free; never blocks.
    pub fn try_acquire(s: &T) -> bool {
        let mut state = s.state.lock();
        if state.value > 0 && state.queue.is_empty() {
            state.value -= 1;
            true
        } else {
            false
        }
    }

    /// `get_value s`: the current value.
    pub fn get_value(s: &T) -> i64 {
        s.state.lock().value
    }
}

/// `Semaphore.Binary`: a value of 0 or 1; `release` sets it to 1.
///
/// ```
/// use bobine::ocaml::semaphore::binary;
/// let s = binary::make(false);
/// binary::release(&s);
/// binary::release(&s);
/// assert!(binary::try_acquire(&s));
/// assert!(!binary::try_acquire(&s));
/// ```
pub mod binary {
    use std::sync::Arc;

    use crate::sched::waitqueue::{WaitList, Woken, wait_in};
    use crate::util::SpinLock;

    struct State {
        value: bool,
        queue: WaitList,
    }

    /// A binary semaphore handle: cheap to clone, shared by every clone.
    #[derive(Clone)]
    pub struct T {
        state: Arc<SpinLock<State>>,
    }

    impl std::fmt::Debug for T {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Semaphore.Binary")
                .field("value", &self.state.lock().value)
                .finish()
        }
    }

    /// `make b`: a semaphore with value 1 if `b`, else 0.
    pub fn make(b: bool) -> T {
        T {
            state: Arc::new(SpinLock::new(State {
                value: b,
                queue: WaitList::new(),
            })),
        }
    }

    /// `release s`: sets the value to 1, or hands it to the oldest waiter.
    pub fn release(s: &T) {
        let mut state = s.state.lock();
        match state.queue.pop_front() {
            Some(next) => {
                drop(state);
                next.unpark();
            }
            None => state.value = true,
        }
    }

    /// `acquire s`: waits until the value is 1, then sets it to 0.
    #[track_caller]
    pub fn acquire(s: &T) {
        let mut state = s.state.lock();
        if state.value && state.queue.is_empty() {
            state.value = false;
            return;
        }
        let woken = wait_in(
            &s.state,
            state,
            |st| &mut st.queue,
            0,
            "Semaphore.Binary.acquire",
            None,
            || (),
            || release(s),
        );
        if woken != Woken::Notified {
            crate::sched::interrupted_wait("Semaphore.Binary.acquire");
        }
    }

    /// `try_acquire s`: takes the value if it is 1; never blocks.
    pub fn try_acquire(s: &T) -> bool {
        let mut state = s.state.lock();
        if state.value && state.queue.is_empty() {
            state.value = false;
            true
        } else {
            false
        }
    }
}
