//! Connected descriptors for tests: a loopback TCP pair of bobine streams, a raw pipe; and
//! what this process has open (a count, and whether a given file is still open).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use bobine::net::{TcpListener, TcpStream};

/// A connected pair of bobine TCP streams on loopback: (client, server side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// A pipe (read end, write end), close-on-exec, blocking.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// How many descriptors this process has open (the entries of `/proc/self/fd`, less the one
/// the listing itself uses).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// What the open descriptor `fd` names, as `/proc/self/fd` shows it (`socket:[inode]`, a
/// path, ...): a later file that reuses the number does not have the same identity.
pub fn identity(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .unwrap_or_else(|e| panic!("descriptor {fd} is not open: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// Whether some descriptor of this process still names `identity` (see [`identity`]): checks
/// that a file was closed, whatever other threads open meanwhile.
pub fn is_open(identity: &str) -> bool {
    std::fs::read_dir("/proc/self/fd").unwrap().any(|e| {
        e.ok()
            .and_then(|e| std::fs::read_link(e.path()).ok())
            .is_some_and(|l| l.to_string_lossy() == identity)
    })
}
