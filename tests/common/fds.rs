//! Connected descriptors for tests: a loopback TCP pair of bobine streams, a raw pipe, raw
//! sockets made ahead of need; what this process has open (a count, and whether a given file
//! is still open); and running out of descriptors (a lowered limit, a filled table).

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// `SO_LINGER` on with a zero timeout: closing the socket then sends a reset.
pub fn set_linger_zero(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid `linger` of the size given, on an open socket.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt(SO_LINGER): {}",
        io::Error::last_os_error()
    );
}

/// A new blocking TCP socket, made before the descriptor table is filled.
pub fn raw_tcp_socket() -> OwnedFd {
    // SAFETY: socket(2) with valid constants.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: socket returned a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `connect(2)` on a socket made earlier (needs no new descriptor).
pub fn connect_raw(fd: &OwnedFd, addr: SocketAddrV4) -> io::Result<()> {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid sockaddr_in of the length given.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens `/dev/null` until the process is out of descriptors; returns the files (freeing them
/// frees the table).
pub fn exhaust_descriptors() -> Vec<std::fs::File> {
    let mut hog = Vec::new();
    for _ in 0..4096 {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EMFILE),
                    "unexpected error: {e}"
                );
                return hog;
            }
        }
    }
    panic!("the descriptor table did not fill up (RLIMIT_NOFILE not lowered?)");
}

/// Lowers this process's soft `RLIMIT_NOFILE` to `limit` (or to the hard limit if that is
/// lower): for child processes that run out of descriptors on purpose.
pub fn lower_nofile(limit: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = limit.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// A new blocking Unix stream socket, made before the descriptor table is filled.
pub fn raw_unix_socket() -> OwnedFd {
    // SAFETY: socket(2) with valid constants.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: socket returned a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `connect(2)` of a Unix socket made earlier to the socket file `path` (needs no new
/// descriptor).
pub fn connect_unix_raw(fd: &OwnedFd, path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: an all-zero sockaddr_un is valid (an empty path).
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < sun.sun_path.len(), "socket path too long");
    for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a valid sockaddr_un of the length given.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
