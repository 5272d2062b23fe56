//! OCaml's `Semaphore.Counting` and `Semaphore.Binary`.
//!
//! Thin layers over [`crate::sync::Semaphore`]: OCaml's names, bounds and messages. A release
//! wakes the oldest waiter, which competes for the permit with running threads (as in OCaml,
//! whose semaphores are a mutex and a condition); a waiter that has waited more than 1 ms gets
//! permits handed over in arrival order. Any thread may release.

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

    use crate::ocaml::MAX_INT;
    use crate::sync::Semaphore;

    /// A counting semaphore handle: cheap to clone, shared by every clone.
    #[derive(Clone)]
    pub struct T {
        sem: Arc<Semaphore>,
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
            sem: Arc::new(Semaphore::with_max(n as usize, MAX_INT as usize)),
        }
    }

    /// `release s`: increments the value, and wakes the oldest waiter to take it.
    ///
    /// # Panics
    ///
    /// `Sys_error("Semaphore.Counting.release: overflow")` if the value is OCaml's `max_int` ([`MAX_INT`]).
    #[track_caller]
    pub fn release(s: &T) {
        if s.sem.try_release().is_err() {
            panic!("Sys_error(\"Semaphore.Counting.release: overflow\")");
        }
    }

    /// `acquire s`: takes a permit, parking until one is free.
    #[track_caller]
    pub fn acquire(s: &T) {
        s.sem.acquire()
    }

    /// `try_acquire s`: takes a permit if one is free; never blocks.
    pub fn try_acquire(s: &T) -> bool {
        s.sem.try_acquire()
    }

    /// `get_value s`: the current value.
    pub fn get_value(s: &T) -> i64 {
        s.sem.available() as i64
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

    use crate::sync::Semaphore;

    /// A binary semaphore handle: cheap to clone, shared by every clone.
    #[derive(Clone)]
    pub struct T {
        sem: Arc<Semaphore>,
    }

    impl std::fmt::Debug for T {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Semaphore.Binary")
                .field("value", &(self.sem.available() == 1))
                .finish()
        }
    }

    /// `make b`: a semaphore with value 1 if `b`, else 0.
    pub fn make(b: bool) -> T {
        T {
            sem: Arc::new(Semaphore::with_max(usize::from(b), 1)),
        }
    }

    /// `release s`: sets the value to 1, and wakes the oldest waiter to take it. As in OCaml,
    /// two releases before the woken waiter runs count once: it takes the 1, and the value is
    /// 0 again.
    pub fn release(s: &T) {
        // Already 1: it stays 1 (a binary semaphore never counts past one).
        let _ = s.sem.try_release();
    }

    /// `acquire s`: waits until the value is 1, then sets it to 0.
    #[track_caller]
    pub fn acquire(s: &T) {
        s.sem.acquire()
    }

    /// `try_acquire s`: takes the value if it is 1; never blocks.
    pub fn try_acquire(s: &T) -> bool {
        s.sem.try_acquire()
    }
}
