//! Task-locals: `task_local!` and its [`LocalKey`], `thread_local!` with one value per task.
//!
//! A `thread_local!` value belongs to an OS thread, so the tasks of one domain share it. A
//! `task_local!` value belongs to the task: each task that uses a key gets its own value,
//! made on its first access, and dropped when the task ends. The values hang off the task in
//! the kernel's `sched::locals` (whose module doc has the destruction steps); the key is the
//! address of the `static` the macro defines. Outside any task (a plain OS thread) a key is an
//! ordinary `thread_local!`: one value per thread.

use std::cell::{Cell, RefCell};
use std::fmt;

/// Declares task-local statics: one value per task (per OS thread outside any task), like
/// `thread_local!` declares one value per thread.
///
/// ```
/// use std::cell::Cell;
///
/// bobine::task_local! {
///     /// How many times this task counted.
///     static COUNT: Cell<u32> = Cell::new(0);
///     pub static NAME: String = String::from("none");
/// }
///
/// bobine::run(|| {
///     let a = bobine::thread::spawn(|| {
///         COUNT.set(COUNT.get() + 1);
///         bobine::thread::yield_now();
///         COUNT.get()
///     });
///     let b = bobine::thread::spawn(|| {
///         COUNT.set(COUNT.get() + 10);
///         bobine::thread::yield_now();
///         COUNT.get()
///     });
///     assert_eq!((a.join().unwrap(), b.join().unwrap()), (1, 10));
///     assert_eq!(COUNT.get(), 0); // the main task's own value
///     NAME.with(|n| assert_eq!(n, "none"));
/// });
/// ```
///
/// Each static is a [`LocalKey`]; the initialiser runs lazily, in the task, on its first
/// access there. Attributes (doc comments included) and a visibility may precede each
/// `static`, and one invocation may declare several.
///
/// ## Lifetime of the values
///
/// A task's values are dropped when its body has ended (returned, panicked or been
/// cancelled), on the task's stack and as the task (a destructor may block: the task parks),
/// before the task counts as finished, so before its `join` returns, as std drops a thread's
/// locals before its `join` returns. They are dropped newest first (in the reverse order of
/// their first access), one at a time: a destructor may use a key whose value is still alive
/// (or one never used before, whose value is then made and dropped in turn), while a key whose
/// value is being dropped, or was, gives an [`AccessError`] from
/// [`try_with`](LocalKey::try_with) and a panic from [`with`](LocalKey::with), as std does.
/// A destructor that panics aborts the process, as in std.
///
/// On a plain OS thread a key behaves as `thread_local!` (it is one underneath).
#[macro_export]
macro_rules! task_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident : $t:ty = $init:expr; $($rest:tt)*) => {
        $crate::task_local!($(#[$attr])* $vis static $name: $t = $init);
        $crate::task_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident : $t:ty = $init:expr) => {
        $(#[$attr])*
        $vis static $name: $crate::thread::LocalKey<$t> = {
            fn __bobine_init() -> $t {
                $init
            }
            ::std::thread_local! {
                static __BOBINE_OS: $t = __bobine_init();
            }
            $crate::thread::LocalKey::__new(__bobine_init, &__BOBINE_OS)
        };
    };
}

/// A key to a task-local value, declared with [`task_local!`](crate::task_local): one value
/// per task (per OS thread outside any task). Like `std::thread::LocalKey`.
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
    os: &'static std::thread::LocalKey<T>,
}

/// The error of [`LocalKey::try_with`] when the task's (or thread's) value of the key has been
/// destroyed, or is being destroyed. Bobine's own type, since std's `AccessError` cannot be
/// made outside std; it prints as std's does.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessError;

impl fmt::Debug for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessError")
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("already destroyed")
    }
}

impl std::error::Error for AccessError {}

impl<T: 'static> fmt::Debug for LocalKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKey").finish_non_exhaustive()
    }
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    /// Used by [`task_local!`](crate::task_local) only.
    pub const fn __new(init: fn() -> T, os: &'static std::thread::LocalKey<T>) -> LocalKey<T> {
        LocalKey { init, os }
    }

    /// Calls `f` with the current task's value, made by the key's initialiser on the task's
    /// first access.
    ///
    /// # Panics
    ///
    /// If the value is being destroyed or was destroyed (see
    /// [`task_local!`](crate::task_local)), or if the initialiser panics.
    #[track_caller]
    pub fn with<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        if crate::sched::current_ptr().is_null() {
            return self.os.with(f);
        }
        self.try_with(f)
            .expect("cannot access a Task Local Storage value during or after destruction")
    }

    /// Like [`with`](LocalKey::with), but gives [`AccessError`] instead of panicking when the
    /// value is being destroyed or was destroyed.
    pub fn try_with<F, R>(&'static self, f: F) -> Result<R, AccessError>
    where
        F: FnOnce(&T) -> R,
    {
        self.access(&mut None, |_, v| f(v))
    }

    /// The heart of every access: the task's value (made from `given` if there is one and the
    /// value is new, else by the initialiser), passed to `f` with what is left of `given`.
    fn access<R>(
        &'static self,
        given: &mut Option<T>,
        f: impl FnOnce(Option<T>, &T) -> R,
    ) -> Result<R, AccessError> {
        let p = crate::sched::current_ptr();
        if p.is_null() {
            let init = given.take();
            return self.os.try_with(|v| f(init, v)).map_err(|_| AccessError);
        }
        // SAFETY: the running task is alive while it runs, and this frame is on its stack.
        let task = unsafe { &*p };
        let key = self as *const LocalKey<T> as usize;
        let init = self.init;
        // SAFETY: this is the task itself, running.
        let value = unsafe {
            task.locals
                .get_or_init(key, || given.take().unwrap_or_else(init))
        }
        .map_err(|_| AccessError)?;
        // SAFETY: the value lives until the task's values are destroyed, which starts only
        // after the task's body has returned (so after every `with` closure of the body), is
        // not re-entered, and takes a value out before dropping it, so a destructor's own
        // `with` of that key sees it gone (see `sched::locals`); no `&mut` to it is ever made.
        Ok(f(given.take(), unsafe { &*value }))
    }

    /// Sets the value, like std's `initialize_with`: a value made now comes from `value`
    /// instead of the initialiser (which does not run); an existing one goes to `f`.
    #[track_caller]
    fn initialize_with<R>(&'static self, value: T, f: impl FnOnce(Option<T>, &T) -> R) -> R {
        self.access(&mut Some(value), f)
            .expect("cannot access a Task Local Storage value during or after destruction")
    }
}

impl<T: 'static> LocalKey<Cell<T>> {
    /// Sets the value to `value`; a value not made yet is made from it (the initialiser does
    /// not run).
    #[track_caller]
    pub fn set(&'static self, value: T) {
        if crate::sched::current_ptr().is_null() {
            return self.os.set(value);
        }
        self.initialize_with(Cell::new(value), |value, cell| {
            if let Some(value) = value {
                cell.set(value.into_inner());
            }
        });
    }

    /// A copy of the value.
    #[track_caller]
    pub fn get(&'static self) -> T
    where
        T: Copy,
    {
        self.with(Cell::get)
    }

    /// Takes the value, leaving `Default::default()`.
    #[track_caller]
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(Cell::take)
    }

    /// Replaces the value, returning the old one.
    #[track_caller]
    pub fn replace(&'static self, value: T) -> T {
        self.with(|cell| cell.replace(value))
    }
}

impl<T: 'static> LocalKey<RefCell<T>> {
    /// Calls `f` with a shared borrow of the value.
    ///
    /// # Panics
    ///
    /// If the value is mutably borrowed, or as [`with`](LocalKey::with).
    #[track_caller]
    pub fn with_borrow<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&T) -> R,
    {
        self.with(|cell| f(&cell.borrow()))
    }

    /// Calls `f` with a mutable borrow of the value.
    ///
    /// # Panics
    ///
    /// If the value is borrowed, or as [`with`](LocalKey::with).
    #[track_caller]
    pub fn with_borrow_mut<F, R>(&'static self, f: F) -> R
    where
        F: FnOnce(&mut T) -> R,
    {
        self.with(|cell| f(&mut cell.borrow_mut()))
    }

    /// Sets the value to `value`; a value not made yet is made from it (the initialiser does
    /// not run).
    ///
    /// # Panics
    ///
    /// If the value is borrowed, or as [`with`](LocalKey::with).
    #[track_caller]
    pub fn set(&'static self, value: T) {
        if crate::sched::current_ptr().is_null() {
            return self.os.set(value);
        }
        self.initialize_with(RefCell::new(value), |value, cell| {
            if let Some(value) = value {
                *cell.borrow_mut() = value.into_inner();
            }
        });
    }

    /// Takes the value, leaving `Default::default()`.
    ///
    /// # Panics
    ///
    /// If the value is borrowed, or as [`with`](LocalKey::with).
    #[track_caller]
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(RefCell::take)
    }

    /// Replaces the value, returning the old one.
    ///
    /// # Panics
    ///
    /// If the value is borrowed, or as [`with`](LocalKey::with).
    #[track_caller]
    pub fn replace(&'static self, value: T) -> T {
        self.with(|cell| cell.replace(value))
    }
}
