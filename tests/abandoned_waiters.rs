//! Waiters of abandoned tasks: a use after free found by the stop protocol's review, in a binary
//! of its own because it needs a global allocator that never reuses freed memory and fills it
//! with 0xFF (a read of a freed task then sees garbage every time, instead of whatever the next
//! allocation left there).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Duration;

struct Quarantine;

// SAFETY: forwards to `System`; a freed block is poisoned and leaked, never handed out again.
unsafe impl GlobalAlloc for Quarantine {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the block is ours until now; it is never freed, so never reused.
        unsafe { std::ptr::write_bytes(ptr, 0xFF, layout.size()) };
    }
}

#[global_allocator]
static ALLOC: Quarantine = Quarantine;

const CHILD: &str = "BOBINE_ABANDONED_WAITERS_CHILD";

/// A CML channel receiver blocked in a destructor at shutdown and abandoned there leaves its
/// waiter in the channel's queue with a borrowed (uncounted) unparker; once its task is freed,
/// a later sender pops that waiter and wakes the freed task (`schedule_woken_ref` reads and
/// increments the freed task's reference count): a use after free. Expected: the offer of an
/// abandoned task is never used (the poll finds no receiver) and nothing crashes.
#[test]
fn channel_sender_after_its_receiver_was_abandoned() {
    const NAME: &str = "channel_sender_after_its_receiver_was_abandoned";
    if common::child::is_child_of(CHILD, NAME) {
        let c: bobine::event::Channel<u32> = bobine::event::Channel::new();
        let c2 = c.clone();
        std::thread::spawn(move || {
            bobine::Builder::new().domains(1).run(move || {
                struct RecvOnDrop(bobine::event::Channel<u32>);
                impl Drop for RecvOnDrop {
                    fn drop(&mut self) {
                        let _ = self.0.recv();
                    }
                }
                drop(bobine::thread::spawn(move || {
                    let _r = RecvOnDrop(c2);
                    bobine::thread::sleep(Duration::from_secs(3600));
                }));
                bobine::thread::sleep(Duration::from_millis(20));
            });
        })
        .join()
        .unwrap();
        eprintln!("child: run returned; sending");
        let delivered = c.send_evt(5).poll().is_some();
        eprintln!("child: poll returned; delivered to the abandoned task: {delivered}");
        assert!(!delivered, "the value went to an abandoned task");
        return;
    }
    common::child::run_ok(CHILD, NAME, 30);
}
