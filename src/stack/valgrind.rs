//! Valgrind client requests: telling valgrind (and its memcheck tool) what the stack arena is.
//!
//! Valgrind follows the stack pointer to know which memory is live stack: a fall of the
//! pointer makes the bytes below it addressable but undefined, a rise makes the bytes it
//! leaves inaccessible. A switch between stacks is a jump of the pointer that is neither, and
//! valgrind guesses it only when the jump is larger than `--max-stackframe` (2 MiB). Slots of
//! one chunk lie a few hundred KiB apart, so without help memcheck takes a switch from one
//! task's stack to another's for a huge frame, marks the memory between as freshly allocated
//! or freed, and reports every later read of it. Registering each usable stack range
//! (`VALGRIND_STACK_REGISTER`) lets valgrind recognise a move of the stack pointer into
//! another registered stack as a switch.
//!
//! A client request is a magic instruction sequence that does nothing on a real CPU: four
//! rotations of a register that add up to a whole turn, then an exchange of a register with
//! itself. Valgrind's JIT recognises the sequence and replaces it with a call into the tool,
//! which reads the request (a code and up to five arguments) from an array whose address is in
//! a register, and leaves its answer in another register. Outside valgrind the answer register
//! keeps the default value we put there. The codes come from valgrind's public headers
//! (`valgrind.h` for the core, `memcheck.h` for memcheck's own), whose values are part of
//! valgrind's stable client interface.
//!
//! | request            | code                   | used for                                       |
//! |--------------------|------------------------|------------------------------------------------|
//! | RUNNING_ON_VALGRIND| `0x1001`               | deciding once per arena whether to ask more    |
//! | STACK_REGISTER     | `0x1501`               | each slot's usable range, when its chunk is mapped |
//! | STACK_DEREGISTER   | `0x1502`               | each slot, just before its chunk is unmapped   |
//! | MAKE_MEM_NOACCESS  | `'M' 'C' << 16 \| 0`   | guard regions installed with `madvise`         |
//! | MAKE_MEM_UNDEFINED | `'M' 'C' << 16 \| 1`   | a free stack's pages, before they are reused   |
//! | MAKE_MEM_DEFINED   | `'M' 'C' << 16 \| 2`   | the page the trimming look reads               |
//!
//! Everything here is cheap but not free natively (a dozen instructions per request), so the
//! arena asks only when it maps or unmaps a chunk, and every other request sits behind
//! [`memcheck`], one relaxed load. Stacks are registered under any valgrind tool (helgrind,
//! DRD and callgrind follow the stack pointer too); memcheck's requests are made only under
//! memcheck, which is told apart by its answer to one of them (all ones where every other
//! tool, and the CPU, leaves the default). So a callgrind count of the spawn path sees the
//! instructions a native run executes, plus nothing but the per-mapping registration.

use std::sync::atomic::{AtomicBool, Ordering};

const RUNNING_ON_VALGRIND: usize = 0x1001;
const STACK_REGISTER: usize = 0x1501;
const STACK_DEREGISTER: usize = 0x1502;
/// `VG_USERREQ_TOOL_BASE('M', 'C')`: the first of memcheck's own requests.
const MEMCHECK_BASE: usize = ((b'M' as usize) << 24) | ((b'C' as usize) << 16);
const MAKE_MEM_NOACCESS: usize = MEMCHECK_BASE;
const MAKE_MEM_UNDEFINED: usize = MEMCHECK_BASE + 1;
const MAKE_MEM_DEFINED: usize = MEMCHECK_BASE + 2;
#[cfg(test)]
const GET_VBITS: usize = MEMCHECK_BASE + 8;

/// Whether the process runs under valgrind's memcheck, as last found by [`probe`].
static MEMCHECK: AtomicBool = AtomicBool::new(false);

/// Sends one client request; returns valgrind's answer, or `default` on a real CPU.
#[inline(always)]
fn request(default: usize, code: usize, args: [usize; 5]) -> usize {
    let block: [usize; 6] = [code, args[0], args[1], args[2], args[3], args[4]];
    let mut answer = default;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: on a real CPU the sequence only rotates rdi by 3 + 13 + 61 + 51 = 128 bits (a
    // whole number of turns: rdi ends as it began, declared clobbered anyway) and exchanges rbx
    // with itself; it touches no memory and leaves rdx, the answer, as we set it. Under
    // valgrind the tool reads the six words at rax (`block`, alive across the asm) and writes
    // rdx; the requests used here read or change only valgrind's own records of the ranges
    // they name, never our memory. The asm is not marked `readonly` all the same, so that the
    // compiler keeps our loads and stores of those ranges on the side of the request where we
    // wrote them. The rotations change flags, so `preserves_flags` is not claimed; the stack
    // is not used.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") block.as_ptr(),
            inout("rdx") answer,
            inout("rdi") 0usize => _,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: on a real CPU the sequence rotates x12 by 3 + 13 + 51 + 61 = 128 bits (a whole
    // number of turns, declared clobbered anyway) and ors x10 with itself (no change); x3, the
    // answer, keeps the default. Under valgrind the tool reads the six words at x4 (`block`,
    // alive across the asm) and writes x3; as on x86_64, no request used here writes our
    // memory, and the asm is not `readonly` so that accesses stay on their side of it.
    unsafe {
        core::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            in("x4") block.as_ptr(),
            inout("x3") answer,
            inout("x12") 0usize => _,
            options(nostack, preserves_flags),
        );
    }
    answer
}

/// What [`probe`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Presence {
    /// The process runs under some valgrind tool: register the stacks.
    pub(crate) valgrind: bool,
    /// That tool is memcheck: also make its requests (see [`memcheck`]).
    pub(crate) memcheck: bool,
}

/// Asks whether the process runs under valgrind, and under memcheck, and remembers the latter
/// for [`memcheck`]. Called once per arena (per runtime), never on the spawn path.
pub(crate) fn probe() -> Presence {
    let valgrind = request(0, RUNNING_ON_VALGRIND, [0; 5]) != 0;
    // An empty range changes nothing; memcheck answers its MAKE_MEM requests with all ones,
    // every other tool leaves the default.
    let here = 0u8;
    let memcheck = valgrind
        && request(
            0,
            MAKE_MEM_DEFINED,
            [(&raw const here) as usize, 0, 0, 0, 0],
        ) != 0;
    MEMCHECK.store(memcheck, Ordering::Relaxed);
    Presence { valgrind, memcheck }
}

/// Whether [`probe`] found memcheck: one relaxed load, in front of the requests a hot path
/// would otherwise make.
#[inline]
pub(crate) fn memcheck() -> bool {
    MEMCHECK.load(Ordering::Relaxed)
}

// Every request below is out of line and cold: the callers that sit on a hot path test
// [`memcheck`] first, and the asm (which takes three registers) stays out of their code.

/// Registers `[low, high)` as a stack; returns valgrind's id for it (0 outside valgrind).
/// `high` is the stack's base, the highest value its stack pointer takes.
pub(crate) fn stack_register(low: usize, high: usize) -> usize {
    request(0, STACK_REGISTER, [low, high, 0, 0, 0])
}

/// Forgets the stack registered as `id`.
#[cold]
#[inline(never)]
pub(crate) fn stack_deregister(id: usize) {
    request(0, STACK_DEREGISTER, [id, 0, 0, 0, 0]);
}

/// Tells memcheck that nothing may touch `[addr, addr + len)` (a guard region).
#[cold]
#[inline(never)]
pub(crate) fn make_noaccess(addr: usize, len: usize) {
    request(0, MAKE_MEM_NOACCESS, [addr, len, 0, 0, 0]);
}

/// Tells memcheck that `[addr, addr + len)` may be written but holds no value yet.
#[cold]
#[inline(never)]
pub(crate) fn make_undefined(addr: usize, len: usize) {
    request(0, MAKE_MEM_UNDEFINED, [addr, len, 0, 0, 0]);
}

/// Tells memcheck that `[addr, addr + len)` may be read as it is.
#[cold]
#[inline(never)]
pub(crate) fn make_defined(addr: usize, len: usize) {
    request(0, MAKE_MEM_DEFINED, [addr, len, 0, 0, 0]);
}

/// What memcheck thinks of `[addr, addr + len)` (`len` at most 64): `None` outside memcheck,
/// else whether every byte is addressable. Reads memcheck's validity bits (GET_VBITS), which,
/// unlike its CHECK requests, reports no error for an unaddressable range: it answers 3.
#[cfg(test)]
pub(crate) fn addressable(addr: usize, len: usize) -> Option<bool> {
    let mut bits = [0u8; 64];
    assert!(len <= bits.len());
    match request(0, GET_VBITS, [addr, bits.as_mut_ptr() as usize, len, 0, 0]) {
        0 => None,
        1 => Some(true),
        3 => Some(false),
        other => panic!("memcheck's GET_VBITS answered {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under memcheck a stack handed out by a pool may be used, and its guard and a returned
    /// stack may not; outside valgrind nothing is asked (the answers are the default).
    #[test]
    fn memcheck_sees_guards_and_free_stacks_as_no_memory_and_handed_out_stacks_as_memory() {
        use crate::stack::{Arena, DEFAULT_STACK, Pool};
        let under = std::env::var_os("BOBINE_UNDER_VALGRIND").is_some();
        let arena = Arena::new(1 << 10);
        let mut pool = Pool::default();
        let slot = pool.get(&arena, DEFAULT_STACK).unwrap();
        let (guard, low, top) = (slot.guard_low(), slot.guard_high(), slot.top);
        let expect = |b: bool| under.then_some(b);
        assert_eq!(
            addressable(top - 64, 64),
            expect(true),
            "top of a stack in use"
        );
        assert_eq!(
            addressable(low, 64),
            expect(true),
            "bottom of a stack in use"
        );
        assert_eq!(addressable(guard, 64), expect(false), "its guard");
        pool.put(&arena, slot);
        assert_eq!(addressable(top - 64, 64), expect(false), "a returned stack");
        let again = pool.get(&arena, DEFAULT_STACK).unwrap();
        assert_eq!(again.top, top, "the pool is LIFO");
        assert_eq!(
            addressable(top - 64, 64),
            expect(true),
            "the same stack handed out again"
        );
    }

    /// Outside valgrind every request answers its default and changes nothing; under valgrind
    /// (the memcheck script runs the library's tests too) they answer as valgrind does.
    #[test]
    fn requests_answer_the_default_on_a_real_cpu_and_valgrinds_answer_under_it() {
        let under = std::env::var_os("BOBINE_UNDER_VALGRIND").is_some();
        let found = probe();
        let expected = Presence {
            valgrind: under,
            memcheck: under,
        };
        assert_eq!(
            found, expected,
            "BOBINE_UNDER_VALGRIND is set by scripts/memcheck, which runs memcheck"
        );
        assert_eq!(memcheck(), under);
        let buf = vec![7u8; 4096];
        let (low, high) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
        let id = stack_register(low, high);
        if !under {
            assert_eq!(id, 0);
        }
        stack_deregister(id);
        make_undefined(low, 64);
        make_defined(low, 64);
        assert!(
            buf.iter().all(|&b| b == 7),
            "requests never write our memory"
        );
        assert_eq!(addressable(low, 8), under.then_some(true));
    }
}
