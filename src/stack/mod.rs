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
//! - **Trimming.** A stack returned to its domain's pool keeps its top [`KEEP`] bytes
//!   resident. If the task went deeper (the page below that boundary holds data), the deep
//!   part is given back to the kernel with `MADV_DONTNEED`, so a pooled stack costs what a
//!   shallow task costs. The look at that page is skipped on a slot's first return after it
//!   was carved or emptied: reading a page never touched maps the zero page with a fault
//!   (about a microsecond on a VM), which a slot used once (a million tasks parked, then
//!   ended) would pay for nothing. So a pool may hold, untrimmed, stacks used once; it holds
//!   at most `2 * CHUNK_SLOTS` of a size, and their next return, or their spill to the
//!   depot, trims them.
//! - **Emptying.** The depot keeps up to [`DEPOT_WARM`] free stacks of a size warm (trimmed
//!   as a pool's are), so that batches of a thousand tasks reuse resident stacks. Batches
//!   spilled once it holds that many are given back to the kernel whole, with no look (one
//!   `MADV_DONTNEED` per run of neighbouring slots; guard pages survive it): after a burst of
//!   many tasks the free stacks cost address space, not memory.
//! - **Valgrind.** Under valgrind each stack is registered with it (`VALGRIND_STACK_REGISTER`)
//!   when its chunk is mapped, and deregistered just before the chunk is unmapped; a leaked
//!   chunk (an abandoned task's) stays registered, as it stays mapped. Under memcheck, guard
//!   regions and free stacks are also marked as no memory and a stack handed out as undefined
//!   memory, and the trimming look marks the page it reads. Natively this costs a load and a
//!   branch when a stack is handed out, returned or looked at (see `valgrind.rs`).
//! - **Chunks outlive stacks.** Chunks belong to the runtime's [`Arena`] and are unmapped when the
//!   runtime is dropped, after every task (and so every slot) is gone. A slot may migrate between
//!   the pools of one runtime's domains (a stolen task returns its stack where it ended).

mod overflow;
mod valgrind;

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
/// Free slots of a size the depot keeps warm (resident tops, as a pool keeps them); slots
/// spilled beyond these are emptied (see the module doc).
const DEPOT_WARM: usize = 16 * CHUNK_SLOTS;
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

/// One mapping of slots, with the valgrind ids of its stacks (none outside valgrind).
struct Chunk {
    map: MmapMut,
    /// What [`valgrind::stack_register`] gave for each slot; deregistered just before the
    /// mapping goes (a leaked chunk, never unmapped, keeps its stacks registered).
    stacks: Vec<usize>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        for &id in &self.stacks {
            valgrind::stack_deregister(id);
        }
        // `map` is unmapped after this, as a field.
    }
}

/// The runtime-wide owner of stack memory.
pub(crate) struct Arena {
    chunks: Mutex<Vec<Chunk>>,
    /// Chunks that hold the stack of an abandoned task: never unmapped (see
    /// [`Arena::leak_around`]).
    leaked: Mutex<Vec<Chunk>>,
    /// Free slots that domains' pools spilled, per stack size, for any pool to take.
    depot: Mutex<Vec<(usize, Vec<Slot>)>>,
    created: AtomicUsize,
    capacity: usize,
    /// Whether the process runs under valgrind: then each stack is registered with it when its
    /// chunk is mapped (see `valgrind.rs`).
    valgrind: bool,
}

impl Arena {
    pub(crate) fn new(capacity: usize) -> Self {
        Arena {
            chunks: Mutex::new(Vec::new()),
            leaked: Mutex::new(Vec::new()),
            depot: Mutex::new(Vec::new()),
            created: AtomicUsize::new(0),
            capacity,
            valgrind: valgrind::probe().valgrind,
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
                top: limit + guard + size,
                probe: Probe::Fresh,
            });
        }
        let mut stacks = Vec::new();
        if self.valgrind {
            // Once per mapping, never per spawn: each usable range becomes a known stack, so
            // that valgrind takes a jump of the stack pointer between two slots for a switch.
            // Guards installed with `madvise` are invisible to it; say that they are not
            // memory (an `mprotect` guard it sees for itself).
            stacks.extend(
                slots
                    .iter()
                    .map(|s| valgrind::stack_register(s.guard_high(), s.top())),
            );
            if valgrind::memcheck() {
                for slot in &slots {
                    valgrind::make_noaccess(slot.guard_low(), guard);
                    // Free until handed out (see `Slot::handed_out`).
                    valgrind::make_noaccess(slot.guard_high(), slot.size());
                }
            }
        }
        self.chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Chunk { map, stacks });
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
        let found = chunks.iter().position(|c| {
            let base = c.map.as_ptr() as usize;
            (base..base + c.map.len()).contains(&addr)
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

    /// Readies `batch`, free slots a pool is about to spill (see [`Arena::spill`]): while the
    /// depot holds fewer than [`DEPOT_WARM`] slots of the size, those never looked at are
    /// trimmed as a pool trims them; past that, the whole batch is emptied. The syscalls and
    /// faults happen outside the depot's lock (the count read under it may be a little stale,
    /// which only moves the line between warm and emptied).
    fn ready_spill(&self, size: usize, batch: &mut [Slot]) {
        let held = {
            let depot = self.depot.lock().unwrap_or_else(|e| e.into_inner());
            depot
                .iter()
                .find(|(s, _)| *s == size)
                .map_or(0, |(_, free)| free.len())
        };
        if held < DEPOT_WARM {
            for slot in batch.iter_mut().filter(|s| s.probe == Probe::Returned) {
                slot.look_and_trim();
            }
        } else {
            empty_slots(batch);
        }
    }

    /// Takes free slots a pool holds beyond its share (readied by [`Arena::ready_spill`]).
    fn spill(&self, size: usize, slots: impl Iterator<Item = Slot>) {
        let mut depot = self.depot.lock().unwrap_or_else(|e| e.into_inner());
        match depot.iter_mut().find(|(s, _)| *s == size) {
            Some((_, free)) => free.extend(slots),
            None => depot.push((size, slots.collect())),
        }
    }
}

/// Gives the memory of free `slots` back to the kernel, one `MADV_DONTNEED` per run of
/// neighbouring slots (sorted by address first). With `MADV_GUARD_INSTALL` guards a run may
/// span the guards between its slots, whose markers the advice keeps; with `mprotect` guards
/// (separate mappings) each slot's usable range is emptied alone. Failure only leaves pages
/// resident.
fn empty_slots(slots: &mut [Slot]) {
    slots.sort_unstable_by_key(|s| s.limit);
    let span = guard_mode() == GuardMode::Madvise;
    let mut i = 0;
    while i < slots.len() {
        let mut j = i + 1;
        while span && j < slots.len() && slots[j].limit == slots[j - 1].top {
            j += 1;
        }
        let low = slots[i].guard_high();
        let high = slots[j - 1].top;
        let start = NonNull::new(low as *mut libc::c_void).expect("a slot is not at 0");
        // SAFETY: `[low, high)` covers the usable ranges of free slots (and, when spanning, the
        // guards between them), page aligned, inside chunks the arena keeps mapped; no task
        // uses a free slot, and its pages read as zero afterwards, which is all a fresh stack
        // needs. Guard markers survive `MADV_DONTNEED`.
        let _ = unsafe { mman::madvise(start, high - low, MmapAdvise::MADV_DONTNEED) };
        for slot in &mut slots[i..j] {
            slot.probe = Probe::Fresh;
        }
        i = j;
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
    top: usize,
    /// What is known of the page [`Slot::trim`] looks at.
    probe: Probe,
}

/// What is known of a slot's probe page (the page just below its kept top).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Carved or emptied since: the page may be unmapped, and a look would fault.
    Fresh,
    /// Returned once since then, unlooked at (see the module doc's "Trimming").
    Returned,
    /// Looked at: it is mapped (the zero page, or what a task left), a look costs no fault.
    Mapped,
}

impl Slot {
    /// Usable bytes.
    pub(crate) fn size(&self) -> usize {
        self.top - self.usable
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

    /// Under memcheck, tells it that a stack about to carry a new task may be written
    /// (its initial frame is written before the task runs) but holds nothing defined.
    /// Outside memcheck: one relaxed load.
    #[inline(always)]
    fn handed_out(&self) {
        if valgrind::memcheck() {
            valgrind::make_undefined(self.guard_high(), self.size());
        }
    }

    /// Under memcheck, tells it that a returned stack is no longer memory anyone may
    /// touch, so that a pointer left into a finished task's frames (a wait-queue node never
    /// unlinked) is reported at its first use. Outside memcheck: one relaxed load.
    #[inline(always)]
    fn freed(&self) {
        if valgrind::memcheck() {
            valgrind::make_noaccess(self.guard_high(), self.size());
        }
    }

    /// Gives the deep part of the stack back to the kernel if the last task used it.
    fn trim(&mut self) {
        if self.probe == Probe::Fresh {
            // First return since carved or emptied: not looked at (see the module doc).
            self.probe = Probe::Returned;
            return;
        }
        self.look_and_trim();
    }

    /// The look of [`Slot::trim`], whatever the slot's state, and the trim if it is needed.
    fn look_and_trim(&mut self) {
        if self.size() <= KEEP + page_size() {
            return;
        }
        let boundary = self.top() - KEEP;
        let page = page_size();
        // Sample the page just below the kept region: a task that went deeper left frames
        // there. A page never touched reads as zeros (the shared zero page), as does a
        // trimmed one.
        let probe = boundary - page;
        let dirty = if valgrind::memcheck() {
            sample_under_memcheck(probe, page)
        } else {
            sample(probe, page)
        };
        self.probe = Probe::Mapped;
        if dirty {
            let low = NonNull::new(self.guard_high() as *mut libc::c_void).expect("not at 0");
            // The slot holds addresses, not its chunk's `MmapMut` (whose advice methods would
            // do), so the advice goes through nix. Failure only leaves the pages resident.
            // SAFETY: the range lies inside this slot's usable stack, page aligned, which no
            // task uses (the slot is being returned); its pages read as zero afterwards, which
            // is all a fresh stack needs.
            let trimmed = unsafe {
                mman::madvise(low, boundary - self.guard_high(), MmapAdvise::MADV_DONTNEED)
            };
            if trimmed.is_ok() {
                // The probe page is unmapped again.
                self.probe = Probe::Fresh;
            }
        }
    }
}

/// Whether the page at `probe` (`page` bytes), inside a free slot, holds anything but zeros: four words, a
/// quarter page apart, are enough to see a task's frames.
#[inline(always)]
fn sample(probe: usize, page: usize) -> bool {
    (0..4).any(|i| {
        let p = (probe + i * (page / 4)) as *const u64;
        // SAFETY: `p` is aligned and inside the usable range of a slot which no task is using
        // (it is being returned or spilled); a volatile read keeps the check honest.
        unsafe { std::ptr::read_volatile(p) != 0 }
    })
}

/// [`sample`] under memcheck, which was told that the free slot is no memory
/// (`Slot::freed`): the look reads it on purpose. Out of line, so that the native path
/// keeps its shape.
#[cold]
#[inline(never)]
fn sample_under_memcheck(probe: usize, page: usize) -> bool {
    valgrind::make_defined(probe, page);
    let dirty = sample(probe, page);
    valgrind::make_noaccess(probe, page);
    dirty
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
    #[inline(always)]
    pub(crate) fn get(&mut self, arena: &Arena, size: usize) -> io::Result<Slot> {
        if let Some(slot) = self.class(size).pop() {
            slot.handed_out();
            return Ok(slot);
        }
        self.get_slow(arena, size)
    }

    /// [`Pool::get`] with an empty free list: from the depot, or from a new chunk.
    #[cold]
    fn get_slow(&mut self, arena: &Arena, size: usize) -> io::Result<Slot> {
        let free = self.class(size);
        let slot = if arena.refill(size, free) {
            free.pop().expect("refill moved at least one slot")
        } else {
            let mut fresh = arena.carve(size)?;
            // Hand out the lowest slot first; the rest wait in the pool.
            fresh.reverse();
            let slot = fresh.pop().expect("carve returns at least one slot");
            free.extend(fresh);
            slot
        };
        slot.handed_out();
        Ok(slot)
    }

    /// Returns a slot whose fiber has finished (or was dropped).
    #[inline]
    pub(crate) fn put(&mut self, arena: &Arena, mut slot: Slot) {
        slot.trim();
        slot.freed();
        let size = slot.size();
        let free = self.class(size);
        free.push(slot);
        if free.len() > 2 * CHUNK_SLOTS {
            arena.ready_spill(size, &mut free[..CHUNK_SLOTS]);
            arena.spill(size, free.drain(..CHUNK_SLOTS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the page holding `addr` is resident (`mincore`).
    fn resident(addr: usize) -> bool {
        let page = page_size();
        let mut vec = 0u8;
        // SAFETY: one page-aligned page of a live mapping, one byte of output.
        let rc =
            unsafe { libc::mincore((addr & !(page - 1)) as *mut libc::c_void, page, &mut vec) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        vec & 1 != 0
    }

    /// Whether `/proc/self/pagemap` marks the page holding `addr` as a guard (bit 58, Linux
    /// 6.14+).
    fn pagemap_guard(addr: usize) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        f.seek(SeekFrom::Start((addr / page_size() * 8) as u64))
            .expect("seek");
        let mut b = [0u8; 8];
        f.read_exact(&mut b).expect("read");
        u64::from_le_bytes(b) & (1 << 58) != 0
    }

    /// Fills the `depth` bytes below the top of `slot` with non-zero words, as a task's frames
    /// would; returns the lowest address written.
    fn touch(slot: &Slot, depth: usize) -> usize {
        let low = slot.top() - depth;
        for addr in (low..slot.top()).step_by(8) {
            // SAFETY: an aligned word inside the usable range of a slot nobody else uses.
            unsafe { std::ptr::write_volatile(addr as *mut u64, 1) };
        }
        low
    }

    #[test]
    fn a_deep_stack_is_trimmed_on_its_second_return_and_its_top_is_kept() {
        let arena = Arena::new(1 << 10);
        let mut pool = Pool::default();
        let size = DEFAULT_STACK;
        let slot = pool.get(&arena, size).unwrap();
        let (top, deep) = (touch(&slot, 64), touch(&slot, 128 * 1024));
        let first = slot.top;
        pool.put(&arena, slot);
        assert!(resident(deep), "the first return does not look");
        let slot = pool.get(&arena, size).unwrap();
        assert_eq!(slot.top, first, "the pool is LIFO");
        touch(&slot, 128 * 1024);
        pool.put(&arena, slot);
        assert!(!resident(deep), "the deep part is given back");
        assert!(resident(top), "the top is kept");
        // SAFETY: a word of a free slot of a live chunk; trimmed pages read as zero.
        assert_eq!(unsafe { std::ptr::read_volatile(deep as *const u64) }, 0);
    }

    #[test]
    fn stacks_spilled_past_the_warm_ones_are_emptied_and_keep_their_guards() {
        let arena = Arena::new(1 << 12);
        let mut pool = Pool::default();
        let size = DEFAULT_STACK;
        // Whole chunks, so that the pool holds no unused slot once they are all taken: enough
        // for the depot's warm share, one batch past it, and the pool's own share.
        let n = DEPOT_WARM + 3 * CHUNK_SLOTS;
        let slots: Vec<Slot> = (0..n).map(|_| pool.get(&arena, size).unwrap()).collect();
        let tops: Vec<usize> = slots.iter().map(|s| touch(s, 64)).collect();
        // The first task went deep: its stack is trimmed when it is spilled warm.
        let deep = touch(&slots[0], 128 * 1024);
        let guards: Vec<usize> = slots.iter().map(Slot::guard_low).collect();
        let madvise = guard_mode() == GuardMode::Madvise;
        if madvise {
            assert!(guards.iter().all(|&g| pagemap_guard(g)), "guards installed");
        }
        for slot in slots {
            pool.put(&arena, slot);
        }
        // Past 2 * CHUNK_SLOTS the pool spilled, CHUNK_SLOTS at a time, the slots it had
        // longest: the first returned. The depot kept the first DEPOT_WARM as they were.
        let (warm, rest) = tops.split_at(DEPOT_WARM);
        let (emptied, pooled) = rest.split_at(CHUNK_SLOTS);
        assert!(
            warm.iter().all(|&t| resident(t)),
            "warm stacks keep their tops"
        );
        assert!(!resident(deep), "a warm stack is trimmed");
        assert!(
            emptied.iter().all(|&t| !resident(t)),
            "stacks past the warm ones are emptied"
        );
        assert!(
            pooled.iter().all(|&t| resident(t)),
            "pooled stacks keep their tops"
        );
        if madvise {
            assert!(
                guards.iter().all(|&g| pagemap_guard(g)),
                "guards survive the emptying"
            );
        }
        for &t in emptied {
            // SAFETY: the top word of a free slot of a live chunk.
            assert_eq!(unsafe { std::ptr::read_volatile(t as *const u64) }, 0);
        }
    }
}
