//! A domain's epoll instance with one eventfd in its set, so other threads can wake it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::syscall;

const WAKE_TOKEN: u64 = u64::MAX;

pub(crate) struct Poller {
    epoll: OwnedFd,
    wake: OwnedFd,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        let epfd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 returned a fresh descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
        let efd = syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?;
        // SAFETY: eventfd returned a fresh descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_TOKEN,
        };
        // SAFETY: both descriptors are open; `ev` is a valid epoll_event.
        syscall!(epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            wake.as_raw_fd(),
            &mut ev
        ))?;
        Ok(Poller { epoll, wake })
    }

    /// Wakes the thread sleeping in [`Poller::wait`] (or makes its next wait return at once).
    /// Callable from any thread.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd. EAGAIN (counter saturated)
        // still leaves the eventfd readable, which is all we need.
        let _ = syscall!(write(
            self.wake.as_raw_fd(),
            &one as *const u64 as *const libc::c_void,
            8
        ));
    }

    /// Sleeps until woken or until `timeout` (`None`: no limit). Returns whether a wake-up
    /// arrived (and consumes it).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        let ms: libc::c_int = match timeout {
            None => -1,
            // Round up so a sleeper never wakes before its deadline and spins.
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        let mut events: [libc::epoll_event; 8] = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: `events` is a valid buffer of 8 entries.
        let n = syscall!(epoll_wait(
            self.epoll.as_raw_fd(),
            events.as_mut_ptr(),
            8,
            ms
        ))
        .unwrap_or(0);
        let mut woken = false;
        for ev in &events[..n as usize] {
            if ev.u64 == WAKE_TOKEN {
                woken = true;
            }
        }
        if woken {
            self.drain_wake();
        }
        woken
    }

    fn drain_wake(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our non-blocking eventfd.
        let _ = syscall!(read(
            self.wake.as_raw_fd(),
            &mut buf as *mut u64 as *mut libc::c_void,
            8
        ));
    }
}
