//! One test per networking bug found in review, each failing before its fix.

mod common;

use std::collections::HashSet;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use bobine::net::TcpListener;
use common::fds::tcp_pair;

/// Tests that read the process's epoll instances run one at a time (each runtime adds its own).
static SERIAL: Mutex<()> = Mutex::new(());

/// A vectored read over more slices than the kernel takes (1024) returns fewer bytes than the
/// slices hold although more data is waiting: that must not count as "buffer emptied", or the
/// next read waits for an edge that never comes.
#[test]
fn read_vectored_over_more_slices_than_the_kernel_takes_leaves_reads_working() {
    common::watchdog(20, "read_vectored_over_more_slices", || {
        let _one_runtime_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        bobine::run(|| {
            let (mut c, mut s) = tcp_pair();
            s.write_all(&[7u8; 2000]).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            bobine::time::sleep(Duration::from_millis(50));
            let mut store = vec![[0u8; 1]; 2000];
            let mut slices: Vec<IoSliceMut<'_>> =
                store.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let first = c.read_vectored(&mut slices).unwrap();
            assert!(first > 0 && first <= 2000);
            let mut rest = vec![0u8; 2000];
            let mut got = first;
            while got < 2000 {
                got += c
                    .read(&mut rest)
                    .expect("the rest is in the buffer already");
            }
            assert_eq!(got, 2000);
        });
    });
}

/// The same for a vectored write over more than 1024 slices into an empty send buffer: the
/// next write must go through at once.
#[test]
fn write_vectored_over_more_slices_than_the_kernel_takes_leaves_writes_working() {
    common::watchdog(20, "write_vectored_over_more_slices", || {
        let _one_runtime_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        bobine::run(|| {
            let (mut c, mut s) = tcp_pair();
            c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let store = vec![[1u8; 1]; 2000];
            let slices: Vec<IoSlice<'_>> = store.iter().map(|b| IoSlice::new(b)).collect();
            let mut sent = c.write_vectored(&slices).unwrap();
            while sent < 2000 {
                sent += c
                    .write(&vec![1u8; 2000 - sent])
                    .expect("the send buffer has room");
            }
            let mut back = vec![0u8; 2000];
            s.read_exact(&mut back).unwrap();
            assert!(back.iter().all(|&b| b == 1));
        });
    });
}

fn eventfd() -> OwnedFd {
    // SAFETY: eventfd(2) with valid flags; the result is checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The epoll instances of this process.
fn epolls() -> HashSet<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (target.to_str()? == "anon_inode:[eventpoll]")
                .then(|| e.file_name().to_str()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Whether the epoll instance `ep` has a registration for descriptor `fd`.
fn registered(ep: i32, fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{ep}")).unwrap_or_default();
    info.lines().any(|l| {
        l.strip_prefix("tfd:")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<i32>().ok())
            == Some(fd)
    })
}

/// Raw waits on eventfds that reuse one descriptor number (all eventfds share an inode, so
/// `fstat` cannot tell them apart): while a task waits, the new eventfd must be registered
/// with the runtime's epoll. Before the fix, every wait after the first reused the old
/// registration, which the kernel had dropped with the old file, and only the 100 ms recheck
/// woke the waiter.
#[test]
fn raw_waits_on_a_reused_eventfd_number_register_it_again() {
    common::watchdog(30, "raw_waits_on_a_reused_eventfd_number", || {
        let _one_runtime_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = epolls();
        bobine::Builder::new().domains(1).run(move || {
            let ours: Vec<i32> = epolls().difference(&before).copied().collect();
            assert!(!ours.is_empty(), "the runtime's epoll instance is visible");
            for round in 0..4 {
                let e = eventfd();
                let raw = e.as_raw_fd();
                let waiter = bobine::thread::spawn(move || {
                    // SAFETY: the descriptor stays open until this task has been joined.
                    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
                    bobine::io::wait_readable(fd).unwrap();
                });
                // Until the waiter is parked with the eventfd registered (bounded).
                let mut tries = 0;
                while !ours.iter().any(|&ep| registered(ep, raw)) {
                    tries += 1;
                    assert!(
                        tries < 500,
                        "round {round}: eventfd {raw} never registered while a task waits on it"
                    );
                    bobine::time::sleep(Duration::from_millis(10));
                }
                let one = 1u64;
                // SAFETY: writing 8 bytes from a valid u64 to the eventfd.
                let n = unsafe { libc::write(raw, (&one as *const u64).cast(), 8) };
                assert_eq!(n, 8);
                waiter.join().unwrap();
                drop(e);
            }
        });
    });
}

/// Clones share non-blocking mode and timeouts both ways, as std's do.
#[test]
fn clones_share_timeouts_and_nonblocking_mode() {
    common::watchdog(20, "clones_share_timeouts_and_nonblocking_mode", || {
        let _one_runtime_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        bobine::run(|| {
            let (c, _s) = tcp_pair();
            let c2 = c.try_clone().unwrap();
            c.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            assert_eq!(c2.read_timeout().unwrap(), Some(Duration::from_millis(100)));
            c2.set_write_timeout(Some(Duration::from_millis(70)))
                .unwrap();
            assert_eq!(c.write_timeout().unwrap(), Some(Duration::from_millis(70)));
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            let l2 = l.try_clone().unwrap();
            let err = l2.accept().map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        });
    });
}
