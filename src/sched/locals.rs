//! Per-task local values: the storage behind a face's task-locals (`thread::task_local!`).
//!
//! Each task has a [`Locals`]: a list of values keyed by an address (a face uses the address
//! of its `static` key), created lazily by the task on its first access and destroyed when
//! its body has ended, as the task, before it is marked finished (so before any `join`
//! returns). A task that never uses them pays nothing: the list is an empty `Vec` (no
//! allocation) until the first value.
//!
//! Only the task itself touches its list, while it runs (so no lock and no atomics). A value
//! lives in a heap allocation of its own, which the list owns through a raw pointer (a leaked
//! `Box`), so a reference handed out stays valid while other values are added and the list
//! moves (an initialiser or a `with` closure may reach other keys), and no move of an owning
//! `Box` claims uniqueness over a value that is borrowed.
//!
//! ## Destruction
//!
//! 1. The list's state becomes DESTROYING.
//! 2. The newest value still alive is taken out, its entry marked gone, and dropped (on the
//!    task's stack, its waits not cut short by a stop, see `park::stop::last_words`).
//! 3. Step 2 repeats until no value is alive: values a destructor creates (a key not used
//!    before) are destroyed too, newest first.
//! 4. The state becomes DESTROYED and the list is freed.
//!
//! A key whose value is being dropped or was dropped gives [`Gone`] (in its own destructor
//! too), as does any key once the list is DESTROYED. A destructor that panics aborts the
//! process, as a thread-local's destructor does in std.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::ptr::NonNull;

const LIVE: u8 = 0;
const DESTROYING: u8 = 1;
const DESTROYED: u8 = 2;

/// A key's value was destroyed (or is being destroyed), or the task's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

struct Entry {
    key: usize,
    /// From `Box::leak`, owned by the list; `None` once taken out for destruction.
    value: Option<NonNull<dyn Any>>,
}

/// One task's local values (see the module doc).
pub(crate) struct Locals {
    state: Cell<u8>,
    entries: UnsafeCell<Vec<Entry>>,
}

impl Locals {
    pub(crate) const fn new() -> Locals {
        Locals {
            state: Cell::new(LIVE),
            entries: UnsafeCell::new(Vec::new()),
        }
    }

    /// The value of `key`, made by `init` if the task has none yet. The pointer stays valid
    /// until the task's values are destroyed (it must not be used after that).
    ///
    /// # Safety
    ///
    /// Only the task that owns these locals may call it, while it runs.
    pub(crate) unsafe fn get_or_init<T: 'static>(
        &self,
        key: usize,
        init: impl FnOnce() -> T,
    ) -> Result<*const T, Gone> {
        // SAFETY: forwarded (only the owner, so no other borrow of the list is live here).
        if let Some(found) = unsafe { self.find::<T>(key) } {
            return found;
        }
        if self.state.get() == DESTROYED {
            return Err(Gone);
        }
        // No borrow of the list is held while `init` runs: it may use other keys, or this one.
        let boxed: Box<dyn Any> = Box::new(init());
        let owned = NonNull::from(Box::leak(boxed));
        // SAFETY: as above; the borrow ends before anything is dropped.
        let (kept, unused) = unsafe {
            let entries = &mut *self.entries.get();
            match entries.iter_mut().find(|e| e.key == key) {
                // `init` reached this key itself (recursively) and made a value: ours
                // replaces it, as std does for a thread-local.
                Some(e) if e.value.is_some() => (true, e.value.replace(owned)),
                // Destroyed while `init` ran (it was called from a destructor): not kept.
                Some(_) => (false, Some(owned)),
                None => {
                    entries.push(Entry {
                        key,
                        value: Some(owned),
                    });
                    (true, None)
                }
            }
        };
        // SAFETY: a value that is not in the list came from `Box::leak` and is ours alone: the
        // recursive access that made a replaced one has returned, and an unkept one was never
        // handed out.
        drop(unused.map(|p| unsafe { Box::from_raw(p.as_ptr()) }));
        if kept {
            Ok(owned.as_ptr().cast_const().cast::<T>())
        } else {
            Err(Gone)
        }
    }

    /// `Some` if `key` has an entry (its value, or `Gone`).
    ///
    /// # Safety
    ///
    /// As [`Locals::get_or_init`].
    unsafe fn find<T: 'static>(&self, key: usize) -> Option<Result<*const T, Gone>> {
        // SAFETY: forwarded: the only borrow of the list, ended before we return.
        let entries = unsafe { &*self.entries.get() };
        let e = entries.iter().find(|e| e.key == key)?;
        Some(match e.value {
            Some(v) => {
                // SAFETY: the value is alive (it is in the list) and only ever shared.
                let v = unsafe { v.as_ref() };
                let v = v
                    .downcast_ref::<T>()
                    .expect("a task-local key has one type");
                Ok(v as *const T)
            }
            None => Err(Gone),
        })
    }

    /// Destroys the values (see the module doc).
    ///
    /// # Safety
    ///
    /// Only the task that owns these locals may call it, once, after its body has ended.
    pub(crate) unsafe fn destroy(&self) {
        self.state.set(DESTROYING);
        loop {
            // SAFETY: forwarded: the borrow ends before the value is dropped.
            let value = unsafe {
                let entries = &mut *self.entries.get();
                match entries.iter_mut().rev().find(|e| e.value.is_some()) {
                    Some(e) => e.value.take(),
                    None => break,
                }
            };
            // SAFETY: the value came from `Box::leak` and has left the list, and no reference
            // to it is alive: the task's body has ended, and a destructor running now cannot
            // reach it (its key gives `Gone` from here on).
            let value = value.map(|p| unsafe { Box::from_raw(p.as_ptr()) });
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(value)));
            if dropped.is_err() {
                // What std does when a thread-local's destructor panics.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    b"fatal runtime error: a task-local value panicked on drop, aborting\n",
                );
                std::process::abort();
            }
        }
        self.state.set(DESTROYED);
        // SAFETY: forwarded: no value is alive, nothing borrows the list.
        drop(unsafe { std::mem::take(&mut *self.entries.get()) });
    }

    /// Drops everything and starts afresh (a finished task's allocation being recycled; an
    /// abandoned task never gets here).
    pub(crate) fn clear(&mut self) {
        *self.state.get_mut() = LIVE;
        self.free_all();
    }

    /// Whether the task never made a local value (then there is nothing to destroy).
    ///
    /// # Safety
    ///
    /// As for [`Locals::get_or_init`]: only the owner, while it runs.
    pub(crate) unsafe fn is_unused(&self) -> bool {
        // SAFETY: forwarded (only the owner, so no other borrow of the list is live here).
        unsafe { (*self.entries.get()).is_empty() }
    }

    /// Frees every value still in the list (none, once destroyed).
    #[inline]
    fn free_all(&mut self) {
        if !self.entries.get_mut().is_empty() {
            self.free_values();
        }
    }

    #[cold]
    fn free_values(&mut self) {
        for e in std::mem::take(self.entries.get_mut()) {
            if let Some(p) = e.value {
                // SAFETY: `&mut self`: nobody borrows the values; each came from `Box::leak`
                // and is owned by the list.
                drop(unsafe { Box::from_raw(p.as_ptr()) });
            }
        }
    }
}

impl Drop for Locals {
    fn drop(&mut self) {
        self.free_all();
    }
}
