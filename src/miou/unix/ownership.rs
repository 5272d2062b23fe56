//! Miou_unix's `Ownership`: the names of [`miou::unix`](super) over sockets that are Miou
//! resources (rule 8, [`miou::ownership`](crate::miou::ownership)), so that no socket
//! outlives the task that answers for it.
//!
//! | call | who may make it | ownership afterwards |
//! |---|---|---|
//! | [`tcpv4`], [`tcpv6`], [`of_file_descr`] | a Miou task | the new socket is the caller's |
//! | [`accept`]`(&l)` | the owner of `l` | the accepted socket is the caller's |
//! | [`bind_and_listen`], [`connect`], [`read`], [`really_read`], [`write`](fn@write) | the owner | unchanged |
//! | [`close`]`(fd)` | the owner | disowned, then closed |
//! | [`resource`]`(&fd)` | anyone | the [`Resource`] to give to a child with [`Spawn::give`](crate::miou::Spawn::give), or hand back with [`transfer`](crate::miou::ownership::transfer) |
//!
//! Every operation first calls [`check`]: a task that does not
//! own the socket panics with [`Error::NotOwner`](crate::miou::Error::NotOwner) before
//! anything is done. Otherwise each call behaves as its namesake in [`miou::unix`](super)
//! (same arguments, same errors, same argument checks).
//!
//! What holds in the end:
//!
//! - A socket's finaliser closes it. An owner that panics or is cancelled runs it as it
//!   ends; an owner that returns while it still owns the socket aborts the run with
//!   [`Error::ResourceLeaked`](crate::miou::Error::ResourceLeaked), and the finaliser closes
//!   the socket too.
//! - A descriptor is closed exactly once. A [`FileDescr`] is a cheap handle (`Clone`, like
//!   an OCaml value) to one slot that holds the socket. Whoever closes first, [`close`], the
//!   finaliser, or the drop of the last handle, takes the socket out of the slot; the others
//!   find it empty. An operation in progress holds the socket itself, so its descriptor
//!   number is released only once that operation is over: it cannot be closed, and reused
//!   for another file, under a task still using it.
//! - Dropping the handles of a socket that is still owned closes it, but the owner still
//!   answers for it: returning without [`close`] (or a
//!   [`disown`]) is still `Resource_leaked`, as in Miou.
//!
//! ## Example
//!
//! The accepting step of the book's echo server: a child is given the listening socket,
//! accepts, and hands both sockets back to its parent.
//!
//! ```
//! use bobine::miou::{self, Spawn, ownership::transfer, unix::ownership as unix};
//! miou::run_with(0, || {
//!     let listener = unix::tcpv4().unwrap();
//!     unix::bind_and_listen(&listener, "127.0.0.1:0".parse().unwrap()).unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let l = listener.clone();
//!     let acceptor = Spawn::new().give(unix::resource(&listener)).call_cc(move || {
//!         let (client, _peer) = unix::accept(&l).unwrap(); // owned by this child
//!         transfer(unix::resource(&l));
//!         transfer(unix::resource(&client));
//!         client
//!     });
//!     let c = unix::tcpv4().unwrap();
//!     unix::connect(&c, addr).unwrap();
//!     let client = miou::await_exn(acceptor);
//!     unix::write(&c, b"ping", 0, 4).unwrap();
//!     let mut buf = [0; 4];
//!     unix::really_read(&client, &mut buf, 0, 4).unwrap();
//!     assert_eq!(&buf, b"ping");
//!     for fd in [c, client, listener] {
//!         unix::close(fd).unwrap(); // each is the main task's again
//!     }
//! });
//! ```

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::miou::Resource;
use crate::miou::ownership::{check, disown, own};
use crate::util::SpinLock;

/// A socket owned by a Miou task (Miou_unix's `Ownership.file_descr`): a [`super::FileDescr`]
/// with a [`Resource`] whose finaliser closes it. Cloning gives another handle to the same
/// socket and resource (to move into a child's closure); the socket is closed by [`close`],
/// by the finaliser, or when the last handle is dropped, whichever comes first (see the
/// module doc).
#[derive(Clone)]
pub struct FileDescr {
    slot: Arc<Slot>,
    resource: Resource,
}

/// The socket shared by the handles and the finaliser, until one of them closes it.
struct Slot {
    /// `None` once closed. An operation clones the `Arc` out (the lock is never held across
    /// the operation), so the socket, and with it the descriptor, lives until the last
    /// operation on it is over.
    fd: SpinLock<Option<Arc<super::FileDescr>>>,
    /// The descriptor's number, for `AsRawFd` and `Debug`.
    raw: RawFd,
}

impl Slot {
    /// The socket, if it is still open.
    fn get(&self) -> io::Result<Arc<super::FileDescr>> {
        self.fd.lock().clone().ok_or_else(closed)
    }

    /// The socket, taken out: the caller closes it (or its last user will).
    fn take(&self) -> Option<Arc<super::FileDescr>> {
        self.fd.lock().take()
    }
}

/// The error of an operation on a socket closed already (by the finaliser).
fn closed() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl FileDescr {
    /// Wraps `fd` as a resource owned by the running task; its finaliser closes it.
    fn owned(fd: super::FileDescr) -> FileDescr {
        let slot = Arc::new(Slot {
            raw: fd.as_raw_fd(),
            fd: SpinLock::new(Some(Arc::new(fd))),
        });
        // Weak: the finaliser does not keep the socket open once every handle is gone.
        let weak = Arc::downgrade(&slot);
        let resource = own(move || {
            if let Some(slot) = weak.upgrade() {
                drop(slot.take());
            }
        });
        FileDescr { slot, resource }
    }

    /// The socket, once the running task is checked to own it.
    #[track_caller]
    fn checked(&self) -> io::Result<Arc<super::FileDescr>> {
        check(&self.resource);
        self.slot.get()
    }

    /// The address the socket is bound to. This reads no data, so it does not require
    /// ownership.
    ///
    /// # Errors
    ///
    /// `EBADF` once the socket is closed; as [`super::FileDescr::local_addr`] otherwise.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.slot.get()?.local_addr()
    }

    /// The address of the peer; it does not require ownership.
    ///
    /// # Errors
    ///
    /// `EBADF` once the socket is closed; as [`super::FileDescr::peer_addr`] otherwise.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.slot.get()?.peer_addr()
    }
}

impl AsRawFd for FileDescr {
    /// The descriptor's number (Miou_unix's `to_file_descr`). Once the socket is closed the
    /// number may name another file: there is no `AsFd`, which would promise it open.
    fn as_raw_fd(&self) -> RawFd {
        self.slot.raw
    }
}

impl std::fmt::Debug for FileDescr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDescr")
            .field("fd", &self.slot.raw)
            .field("open", &self.slot.fd.lock().is_some())
            .field("resource", &self.resource)
            .finish()
    }
}

/// The resource of `fd` (Miou_unix's `Ownership.resource`): give it to a child with
/// [`Spawn::give`](crate::miou::Spawn::give), hand it back with
/// [`transfer`](crate::miou::ownership::transfer).
pub fn resource(fd: &FileDescr) -> &Resource {
    &fd.resource
}

/// Makes an owned socket of a descriptor (see [`super::of_file_descr`]), owned by the
/// running task.
///
/// # Panics
///
/// Outside a Miou task (the descriptor is closed then).
///
/// # Errors
///
/// As [`super::of_file_descr`].
#[track_caller]
pub fn of_file_descr(fd: OwnedFd) -> io::Result<FileDescr> {
    Ok(FileDescr::owned(super::of_file_descr(fd)?))
}

/// A new TCP/IPv4 socket owned by the running task (see [`super::tcpv4`]).
///
/// # Panics
///
/// Outside a Miou task.
///
/// # Errors
///
/// As [`super::tcpv4`].
#[track_caller]
pub fn tcpv4() -> io::Result<FileDescr> {
    let _ = crate::miou::tree::current("unix::ownership::tcpv4");
    Ok(FileDescr::owned(super::tcpv4()?))
}

/// A new TCP/IPv6 socket owned by the running task (see [`super::tcpv6`]).
///
/// # Panics
///
/// Outside a Miou task.
///
/// # Errors
///
/// As [`super::tcpv6`].
#[track_caller]
pub fn tcpv6() -> io::Result<FileDescr> {
    let _ = crate::miou::tree::current("unix::ownership::tcpv6");
    Ok(FileDescr::owned(super::tcpv6()?))
}

/// [`super::bind_and_listen`] on an owned socket.
///
/// # Panics
///
/// With [`Error::NotOwner`](crate::miou::Error::NotOwner) unless the running task owns `fd`.
///
/// # Errors
///
/// As [`super::bind_and_listen`].
#[track_caller]
pub fn bind_and_listen(fd: &FileDescr, addr: SocketAddr) -> io::Result<()> {
    super::bind_and_listen(&*fd.checked()?, addr)
}

/// [`super::bind_and_listen_with_backlog`] on an owned socket.
///
/// # Panics
///
/// With [`Error::NotOwner`](crate::miou::Error::NotOwner) unless the running task owns `fd`.
///
/// # Errors
///
/// As [`super::bind_and_listen`].
#[track_caller]
pub fn bind_and_listen_with_backlog(
    fd: &FileDescr,
    addr: SocketAddr,
    backlog: u32,
) -> io::Result<()> {
    super::bind_and_listen_with_backlog(&*fd.checked()?, addr, backlog)
}

/// [`super::accept`] on an owned listening socket; the accepted socket is owned by the
/// running task.
///
/// # Panics
///
/// With [`Error::NotOwner`](crate::miou::Error::NotOwner) unless the running task owns `fd`.
///
/// # Errors
///
/// As [`super::accept`].
#[track_caller]
pub fn accept(fd: &FileDescr) -> io::Result<(FileDescr, SocketAddr)> {
    let (new, peer) = super::accept(&*fd.checked()?)?;
    Ok((FileDescr::owned(new), peer))
}

/// [`super::connect`] on an owned socket.
///
/// # Panics
///
/// With [`Error::NotOwner`](crate::miou::Error::NotOwner) unless the running task owns `fd`.
///
/// # Errors
///
/// As [`super::connect`].
#[track_caller]
pub fn connect(fd: &FileDescr, addr: SocketAddr) -> io::Result<()> {
    super::connect(&*fd.checked()?, addr)
}

/// [`super::read`] on an owned socket.
///
/// # Panics
///
/// With [`Error::NotOwner`](crate::miou::Error::NotOwner) unless the running task owns `fd`;
/// then as [`super::read`] (`Invalid_argument("Miou_unix.read")`).
///
/// # Errors
///
/// As [`super::read`].
#[track_caller]
pub fn read(fd: &FileDescr, buf: &mut [u8], off: usize, len: usize) -> io::Result<usize> {
    super::read(&*fd.checked()?, buf, off, len)
}

/// [`super::really_read`] on an owned socket.
///
/// # Panics
///
/// With [`Error::NotOwner`](crate::miou::Error::NotOwner) unless the running task owns `fd`;
/// then as [`super::really_read`] (`Invalid_argument("Miou_unix.really_read")`).
///
/// # Errors
///
/// As [`super::really_read`] (`UnexpectedEof` for Miou's `End_of_file`).
#[track_caller]
pub fn really_read(fd: &FileDescr, buf: &mut [u8], off: usize, len: usize) -> io::Result<()> {
    super::really_read(&*fd.checked()?, buf, off, len)
}

/// [`super::write`] on an owned socket.
///
/// # Panics
///
/// With [`Error::NotOwner`](crate::miou::Error::NotOwner) unless the running task owns `fd`;
/// then as [`super::write`] (`Invalid_argument("Miou_unix.write")`).
///
/// # Errors
///
/// As [`super::write`].
#[track_caller]
pub fn write(fd: &FileDescr, buf: &[u8], off: usize, len: usize) -> io::Result<()> {
    super::write(&*fd.checked()?, buf, off, len)
}

/// Disowns `fd`, then closes it (Miou_unix's `Ownership.close`); the other handles of the
/// socket then find it closed, and nobody owns it any more.
///
/// # Panics
///
/// With [`Error::NotOwner`](crate::miou::Error::NotOwner) unless the running task owns `fd`
/// (nothing is closed then).
///
/// # Errors
///
/// As [`super::close`].
#[track_caller]
pub fn close(fd: FileDescr) -> io::Result<()> {
    disown(&fd.resource);
    let Some(socket) = fd.slot.take() else {
        // Unreachable while the check holds: the finaliser disowns before it closes.
        return Err(closed());
    };
    match Arc::try_unwrap(socket) {
        Ok(socket) => super::close(socket),
        // An operation is still using it (through another handle): the last one closes it.
        Err(shared) => {
            drop(shared);
            Ok(())
        }
    }
}
