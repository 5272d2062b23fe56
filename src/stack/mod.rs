//! Task stacks: an arena of guarded stacks carved into slots, and a per-domain free pool.
//!
//! This module owns every stack mapping and the overflow signal handler; nothing else maps
//! memory or handles a fault signal (the only other handler, `sched::signals`, counts the
//! deliveries of watched signals and refuses the fault signals). It knows nothing of tasks
//! beyond the overflow report.
//!
//! ```text
//!  one chunk (one mmap, MAP_NORESERVE, MADV_NOHUGEPAGE), slots side by side:
//!  low addresses                                                            high addresses
//!  +--------------+---------------------+--------------+---------------------+------ ...
//!  | guard 64 KiB | usable stack slot 0 | guard 64 KiB | usable stack slot 1 | guard ...
//!  +--------------+---------------------+--------------+---------------------+------ ...
//!  ^limit()       ^guard_high()         ^base() of slot 0: stacks grow down, into their guard
//!  = guard_low()
//! ```
//!
//! - **Guards.** Below every stack lies a guard region of [`GUARD`] bytes (64 KiB), not one
//!   page: a frame larger than the guard, in C code compiled without stack-clash probes, moves
//!   the stack pointer past a one-page guard and stores into the slot below, another task's
//!   live frames, without ever faulting. Rust code probes every page of a frame larger than
//!   one (so would C built with `-fstack-clash-protection`), and for it one page would do;
//!   foreign code without probes is covered up to 64 KiB frames. On Linux 6.13+ the guard is
//!   installed with
//!   `madvise(MADV_GUARD_INSTALL)`: it lives in the page tables, costs no memory and no
//!   mapping whatever its size, so a chunk stays one mapping whatever its slot count, and the
//!   capacity is not bounded by `vm.max_map_count`. Older kernels answer `EINVAL`; we then fall
//!   back to `mprotect(PROT_NONE)`, which splits the mapping (two mappings per slot, one of
//!   them the whole guard region; `PROT_NONE` pages are never touched, so they cost no memory
//!   either), and the capacity becomes what `vm.max_map_count` allows. The probe runs once per
//!   process.
//! - **Pool.** A domain keeps freed slots in a LIFO pool per stack size, so a spawn takes a warm
//!   stack in a few nanoseconds. When the pool is empty it maps a new chunk of up to
//!   [`CHUNK_SLOTS`] slots: mapping is amortised over many spawns and never happens per spawn
//!   once the pool is warm.
//! - **Capacity.** Each runtime counts the slots it has created; past its capacity, carving a
//!   new slot fails and `thread::Builder::spawn` returns `Err`. Nothing aborts.
//! - **Trimming.** A returned stack keeps its top [`KEEP`] bytes resident. If the task went
//!   deeper (the page below that boundary holds data), the deep part is given back to the
//!   kernel with `MADV_DONTNEED`, so a pooled stack costs what a shallow task costs.
//! - **Chunks outlive stacks.** Chunks belong to the runtime's [`Arena`] and are unmapped when the
//!   runtime is dropped, after every task (and so every slot) is gone. A slot may migrate between
//!   the pools of one runtime's domains (a stolen task returns its stack where it ended).

mod overflow;

pub(crate) use overflow::{AltStack, OverflowInfo, install_handler};

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use std::ptr::NonNull;

use corosensei::stack::{Stack, StackPointer};
use memmap2::{Advice, MmapMut, MmapOptions};
use nix::errno::Errno;
use nix::sys::mman::{self, MmapAdvise, ProtFlags};
use nix::unistd::{SysconfVar, sysconf};

/// Slots mapped at once when a pool runs dry.
pub(crate) const CHUNK_SLOTS: usize = 64;
/// Bytes at the top of a returned stack that stay resident.
pub(crate) const KEEP: usize = 16 * 1024;
/// The smallest usable stack we hand out.
pub(crate) const MIN_STACK: usize = 16 * 1024;
/// Default usable stack size of a task.
pub(crate) const DEFAULT_STACK: usize = 256 * 1024;
/// Bytes of guard region below every stack (rounded up to whole pages on a machine whose pages
/// are larger). Large enough that a frame of up to 64 KiB without stack probes cannot step over
/// it into the slot below (see the module doc); it costs address space only.
pub(crate) const GUARD: usize = 64 * 1024;

/// `madvise` advice that turns a range into guard pages held in the page tables (Linux 6.13+).
/// Neither libc nor nix names it yet, so the calls that use it are the raw libc ones.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How guard pages are made on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)`: no extra mapping per stack.
    Madvise,
    /// `mprotect(PROT_NONE)`: each stack splits its chunk's mapping.
    Mprotect,
}

/// The system's page size.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as usize,
        other => panic!("bobine: sysconf(_SC_PAGESIZE) gave {other:?}"),
    })
}

/// Probes once per process whether the kernel supports `MADV_GUARD_INSTALL`.
///
/// `BOBINE_GUARD=mprotect` forces the fallback (to test it on a new kernel).
pub(crate) fn guard_mode() -> GuardMode {
    static MODE: OnceLock<GuardMode> = OnceLock::new();
    *MODE.get_or_init(|| {
        match std::env::var("BOBINE_GUARD").as_deref() {
            Ok("mprotect") => return GuardMode::Mprotect,
            Ok("madvise") | Err(_) => {}
            Ok(other) => {
                panic!("bobine: BOBINE_GUARD must be 'madvise' or 'mprotect', got {other:?}")
            }
        }
        let page = page_size();
        let Ok(map) = MmapOptions::new().len(2 * page).map_anon() else {
            return GuardMode::Mprotect;
        };
        // SAFETY: the range is the first page of a mapping we own and never read.
        let rc =
            unsafe { libc::madvise(map.as_ptr() as *mut libc::c_void, page, MADV_GUARD_INSTALL) };
        if rc == 0 {
            GuardMode::Madvise
        } else {
            GuardMode::Mprotect
        }
    })
}

/// How many stacks a runtime may create by default on this machine.
pub(crate) fn default_capacity() -> usize {
    match guard_mode() {
        // No mapping per stack: the bound is address space. A million default stacks with
        // their guards take 320 GiB of the 128 TiB a process has, and none of it is resident
        // until used.
        GuardMode::Madvise => 1 << 20,
        GuardMode::Mprotect => {
            let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(65530);
            // Two mappings per stack (its guard region, whatever its size, and its usable
            // range); leave room for the program's own mappings.
            max.saturating_sub(4096) / 2
        }
    }
}

pub(crate) fn round_to_page(n: usize) -> usize {
    let page = page_size();
    n.div_ceil(page) * page
}

/// The length of the guard region below each stack: [`GUARD`] in whole pages.
pub(crate) fn guard_len() -> usize {
    round_to_page(GUARD)
}

/// The largest usable stack we hand out: 1 TiB of address space.
pub(crate) const MAX_STACK: usize = 1 << 40;

/// Normalises a requested stack size: at least [`MIN_STACK`], rounded up to whole pages; a size
/// past [`MAX_STACK`] is an error.
pub(crate) fn normalise_size(bytes: usize) -> io::Result<usize> {
    if bytes > MAX_STACK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bobine: a stack size of {bytes} bytes is too large (the limit is 1 TiB)"),
        ));
    }
    Ok(round_to_page(bytes.max(MIN_STACK)))
}

/// The runtime-wide owner of stack memory.
pub(crate) struct Arena {
    chunks: Mutex<Vec<MmapMut>>,
    /// Chunks that hold the stack of an abandoned task: never unmapped (see
    /// [`Arena::leak_around`]).
    leaked: Mutex<Vec<MmapMut>>,
    /// Free slots that domains' pools spilled, per stack size, for any pool to take.
    depot: Mutex<Vec<(usize, Vec<Slot>)>>,
    created: AtomicUsize,
    capacity: usize,
}

impl Arena {
    pub(crate) fn new(capacity: usize) -> Self {
        Arena {
            chunks: Mutex::new(Vec::new()),
            leaked: Mutex::new(Vec::new()),
            depot: Mutex::new(Vec::new()),
            created: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Maps a chunk of up to [`CHUNK_SLOTS`] slots of `size` usable bytes and returns them.
    fn carve(&self, size: usize) -> io::Result<Vec<Slot>> {
        let mut created = self.created.load(Ordering::Relaxed);
        let count = loop {
            let room = self.capacity.saturating_sub(created);
            if room == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "bobine: out of task stacks: this runtime's capacity of {} stacks is in \
                         use (raise it with Builder::max_tasks)",
                        self.capacity
                    ),
                ));
            }
            let count = room.min(CHUNK_SLOTS);
            match self.created.compare_exchange_weak(
                created,
                created + count,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break count,
                Err(now) => created = now,
            }
        };
        let guard = guard_len();
        let Some(len) = size
            .checked_add(guard)
            .and_then(|slot| slot.checked_mul(count))
        else {
            self.created.fetch_sub(count, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bobine: stack chunk size overflows",
            ));
        };
        let map = MmapOptions::new()
            .len(len)
            .no_reserve_swap()
            .map_anon()
            .inspect_err(|_| {
                self.created.fetch_sub(count, Ordering::Relaxed);
            })?;
        // Advisory only (a kernel without transparent huge pages refuses it): ignore failure.
        let _ = map.advise(Advice::NoHugePage);
        let base = map.as_ptr() as usize;
        let mode = guard_mode();
        let mut slots = Vec::with_capacity(count);
        for i in 0..count {
            let limit = base + i * (size + guard);
            let low = NonNull::new(limit as *mut libc::c_void).expect("a mapping is not at 0");
            // SAFETY: `[low, low + guard)` is the guard region of slot i, page aligned, inside
            // the mapping we own; no reference to it exists, and after this call touching it
            // faults, which the overflow handler expects.
            let installed = unsafe {
                match mode {
                    GuardMode::Madvise => {
                        Errno::result(libc::madvise(low.as_ptr(), guard, MADV_GUARD_INSTALL))
                            .map(drop)
                    }
                    GuardMode::Mprotect => mman::mprotect(low, guard, ProtFlags::PROT_NONE),
                }
            };
            if let Err(errno) = installed {
                self.created.fetch_sub(count, Ordering::Relaxed);
                return Err(errno.into());
            }
            slots.push(Slot {
                limit,
                usable: limit + guard,
                size,
                top: limit + guard + size,
            });
        }
        self.chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(map);
        Ok(slots)
    }
}

impl Arena {
    /// Keeps the chunk holding `addr` mapped for the rest of the process: a task abandoned at
    /// shutdown leaves frames there that may still be reachable (a wait-queue node linked into
    /// a lock that outlives the runtime). Address space only: the chunk's untouched pages cost
    /// nothing.
    pub(crate) fn leak_around(&self, addr: usize) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let found = chunks.iter().position(|m| {
            let base = m.as_ptr() as usize;
            (base..base + m.len()).contains(&addr)
        });
        if let Some(i) = found {
            let chunk = chunks.swap_remove(i);
            self.leaked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(chunk);
        }
    }

    /// Moves up to [`CHUNK_SLOTS`] free slots of `size` from the depot into `free`.
    fn refill(&self, size: usize, free: &mut Vec<Slot>) -> bool {
        let mut depot = self.depot.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, slots)) = depot.iter_mut().find(|(s, _)| *s == size) else {
            return false;
        };
        let n = slots.len().min(CHUNK_SLOTS);
        free.extend(slots.drain(slots.len() - n..));
        n > 0
    }

    /// Takes free slots a pool holds beyond its share.
    fn spill(&self, size: usize, slots: impl Iterator<Item = Slot>) {
        let mut depot = self.depot.lock().unwrap_or_else(|e| e.into_inner());
        match depot.iter_mut().find(|(s, _)| *s == size) {
            Some((_, free)) => free.extend(slots),
            None => depot.push((size, slots.collect())),
        }
    }
}

/// One stack: `[limit, limit + guard_len())` is its guard region, `[limit + guard_len(), base)`
/// its usable range.
///
/// A `Slot` does not own its memory (its chunk does); it is a capability to use that range,
/// held by exactly one fiber or pool at a time.
#[derive(Debug)]
pub(crate) struct Slot {
    limit: usize,
    /// `limit + guard_len()`, kept so that the spawn path does not recompute it.
    usable: usize,
    size: usize,
    top: usize,
}

impl Slot {
    /// Usable bytes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }
    /// Lowest address of the guard region.
    pub(crate) fn guard_low(&self) -> usize {
        self.limit
    }
    /// One past the highest address of the guard region: the lowest usable address.
    pub(crate) fn guard_high(&self) -> usize {
        self.usable
    }
    fn top(&self) -> usize {
        self.top
    }

    /// Gives the deep part of the stack back to the kernel if the last task used it.
    fn trim(&self) {
        if self.size <= KEEP + page_size() {
            return;
        }
        let boundary = self.top() - KEEP;
        let page = page_size();
        // Sample the page just below the kept region: a task that went deeper left frames
        // there. A page never touched reads as zeros (the shared zero page), as does a
        // trimmed one.
        let probe = boundary - page;
        let dirty = (0..4).any(|i| {
            let p = (probe + i * (page / 4)) as *const u64;
            // SAFETY: `p` is aligned and inside the usable range of this slot, which no task is
            // using (the slot is being returned); a volatile read keeps the check honest.
            unsafe { std::ptr::read_volatile(p) != 0 }
        });
        if dirty {
            let low = NonNull::new(self.guard_high() as *mut libc::c_void).expect("not at 0");
            // The slot holds addresses, not its chunk's `MmapMut` (whose advice methods would
            // do), so the advice goes through nix. Failure only leaves the pages resident.
            // SAFETY: the range lies inside this slot's usable stack, page aligned, which no
            // task uses (the slot is being returned); its pages read as zero afterwards, which
            // is all a fresh stack needs.
            let _ = unsafe {
                mman::madvise(low, boundary - self.guard_high(), MmapAdvise::MADV_DONTNEED)
            };
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in self
            .leaked
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            std::mem::forget(chunk);
        }
    }
}

// SAFETY: `base()` and `limit()` bound a range of at least MIN_STACK usable bytes that stays
// mapped for as long as the arena lives (every fiber is dropped before its runtime's arena),
// above a guard region of `guard_len()` bytes at `limit()`; both are page aligned, hence
// aligned to STACK_ALIGNMENT.
unsafe impl Stack for Slot {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.top()).expect("stack top is not null")
    }
    fn limit(&self) -> StackPointer {
        StackPointer::new(self.limit).expect("stack limit is not null")
    }
}

/// A LIFO pool of free slots, one list per stack size.
///
/// A pool keeps at most `2 * CHUNK_SLOTS` free slots of a size; past that it spills the least
/// recently used half to the arena's depot, where any domain's pool (and spawns from plain
/// threads) refill before carving new memory. So slots freed on one domain serve spawns on
/// another, and at most two chunks' worth of free stacks sit in any one pool.
#[derive(Default)]
pub(crate) struct Pool {
    classes: Vec<(usize, Vec<Slot>)>,
}

impl Pool {
    /// The free list for stacks of `size` usable bytes.
    #[inline]
    fn class(&mut self, size: usize) -> &mut Vec<Slot> {
        let idx = match self.classes.iter().position(|(s, _)| *s == size) {
            Some(i) => i,
            None => {
                self.classes.push((size, Vec::new()));
                self.classes.len() - 1
            }
        };
        &mut self.classes[idx].1
    }

    /// Takes a free slot of `size` usable bytes (already normalised), carving a chunk if none.
    #[inline]
    pub(crate) fn get(&mut self, arena: &Arena, size: usize) -> io::Result<Slot> {
        if let Some(slot) = self.class(size).pop() {
            return Ok(slot);
        }
        self.get_slow(arena, size)
    }

    /// [`Pool::get`] with an empty free list: from the depot, or from a new chunk.
    #[cold]
    fn get_slow(&mut self, arena: &Arena, size: usize) -> io::Result<Slot> {
        let free = self.class(size);
        if arena.refill(size, free) {
            return Ok(free.pop().expect("refill moved at least one slot"));
        }
        let mut fresh = arena.carve(size)?;
        // Hand out the lowest slot first; the rest wait in the pool.
        fresh.reverse();
        let slot = fresh.pop().expect("carve returns at least one slot");
        free.extend(fresh);
        Ok(slot)
    }

    /// Returns a slot whose fiber has finished (or was dropped).
    #[inline]
    pub(crate) fn put(&mut self, arena: &Arena, slot: Slot) {
        slot.trim();
        let size = slot.size;
        let free = self.class(size);
        free.push(slot);
        if free.len() > 2 * CHUNK_SLOTS {
            arena.spill(size, free.drain(..CHUNK_SLOTS));
        }
    }
}
