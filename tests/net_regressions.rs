//! One test per networking bug found in review, each failing before its fix.

mod common;

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use bobine::net::{TcpListener, TcpStream};

/// A connected pair of bobine streams.
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// A vectored read over more slices than the kernel takes (1024) returns fewer bytes than the
/// slices hold although more data is waiting: that must not count as "buffer emptied", or the
/// next read waits for an edge that never comes.
#[test]
fn read_vectored_over_more_slices_than_the_kernel_takes_leaves_reads_working() {
    common::watchdog(20, "read_vectored_over_more_slices", || {
        bobine::run(|| {
            let (mut c, mut s) = pair();
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
        bobine::run(|| {
            let (mut c, mut s) = pair();
            c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let store = vec![[1u8; 1]; 2000];
            let slices: Vec<IoSlice<'_>> = store.iter().map(|b| IoSlice::new(b)).collect();
            let mut sent = c.write_vectored(&slices).unwrap();
            let t = Instant::now();
            while sent < 2000 {
                sent += c
                    .write(&vec![1u8; 2000 - sent])
                    .expect("the send buffer has room");
            }
            assert!(t.elapsed() < Duration::from_secs(4));
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

/// Raw waits on eventfds that reuse one descriptor number (all eventfds share an inode, so
/// `fstat` cannot tell them apart): each wait must be woken by its signal through epoll. Before
/// the fix every wait after the first was woken only by the 100 ms recheck, 80 ms after the
/// signal; a loaded machine may delay one round, never all of them.
#[test]
fn raw_waits_on_a_reused_eventfd_number_are_woken_by_epoll() {
    common::watchdog(20, "raw_waits_on_a_reused_eventfd_number", || {
        bobine::run(|| {
            let mut slow = 0;
            for _ in 0..6 {
                let e = eventfd();
                let raw = e.as_raw_fd();
                let waiter = bobine::thread::spawn(move || {
                    // SAFETY: the descriptor stays open until this task has been joined.
                    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
                    bobine::io::wait_readable(fd).unwrap();
                    Instant::now()
                });
                bobine::time::sleep(Duration::from_millis(20));
                let signalled = Instant::now();
                let one = 1u64;
                // SAFETY: writing 8 bytes from a valid u64 to the eventfd.
                let n = unsafe { libc::write(raw, (&one as *const u64).cast(), 8) };
                assert_eq!(n, 8);
                let woke = waiter.join().unwrap();
                if woke.duration_since(signalled) >= Duration::from_millis(60) {
                    slow += 1;
                }
                drop(e);
            }
            assert!(
                slow <= 1,
                "{slow} of 6 waits were woken by the recheck, not by epoll"
            );
        });
    });
}

/// Clones share non-blocking mode and timeouts both ways, as std's do.
#[test]
fn clones_share_timeouts_and_nonblocking_mode() {
    common::watchdog(20, "clones_share_timeouts_and_nonblocking_mode", || {
        bobine::run(|| {
            let (c, _s) = pair();
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
