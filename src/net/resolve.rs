//! Names off the domain: [`lookup_host`], and how every bobine call that takes
//! `impl ToSocketAddrs` turns its argument into addresses without resolving a host name on the
//! domain.
//!
//! std's `ToSocketAddrs` does not say whether `to_socket_addrs()` will call the system
//! resolver (`getaddrinfo(3)`: files, sockets, maybe seconds of DNS) or only copy an address.
//! Only std's impls for strings ever resolve (`str`, `String`, `(&str, u16)`,
//! `(String, u16)`, and references to them); the others (`SocketAddr`, `SocketAddrV4`,
//! `SocketAddrV6`, `(IpAddr, u16)`, `(Ipv4Addr, u16)`, `(Ipv6Addr, u16)`, `&[SocketAddr]`)
//! never do. So [`socket_addrs`] decides in three steps:
//!
//! 1. It compares the argument's type, lifetimes erased, with those string types (bare, or
//!    behind one or two references). Nothing is known about a type but its identity, so the
//!    comparison is exact: a type of the list is viewed as what it is, any other is not.
//! 2. A string is parsed as std parses it first (a `SocketAddr` for `"host:port"`, an `IpAddr`
//!    for the host of a pair): a literal address (`"127.0.0.1:80"`, `"[::1]:80"`) costs no
//!    syscall and no allocation, as in std.
//! 3. A string that does not parse goes to the resolver on the blocking pool
//!    ([`crate::io::unblock`]): the task parks and its domain runs other tasks. std resolves
//!    it there, so the addresses and the errors (`InvalidInput` without a port,
//!    `Uncategorized` for a name that does not resolve) are std's. On a plain thread outside
//!    any task, `unblock` runs the lookup on the calling thread, as std would.
//!
//! Any other type goes through its own `to_socket_addrs()`, inline: for std's types that is a
//! copy. A type of your own whose impl resolves names does so on the thread that calls it,
//! which a task's domain then waits for; resolve such a name with [`lookup_host`] first.
//!
//! Rejected designs: running every `to_socket_addrs()` on the pool (the argument need be
//! neither `Send` nor `'static`, and the signatures are std's); telling types apart by
//! `std::any::type_name` (not guaranteed unique, so a view of the value could be wrong); a
//! trait of bobine's own in the signatures (they would no longer be std's).

use std::any::TypeId;
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::vec;

/// Resolves `host`, a `"host:port"` string as `ToSocketAddrs for str` takes it
/// (`"localhost:80"`, `"example.org:443"`, `"127.0.0.1:80"`, `"[::1]:80"`), without blocking
/// the domain: a literal address is parsed in place; a name goes to the system resolver on the
/// blocking pool while the calling task parks (its domain runs other tasks). On a plain OS
/// thread outside any task, the thread resolves the name itself, as std does.
///
/// This is what [`TcpStream::connect`](super::TcpStream::connect), the `bind` functions and
/// [`UdpSocket::send_to`](super::UdpSocket::send_to) use for a name (see the module doc of
/// `net::resolve` for how they tell a name from an address).
///
/// ```
/// bobine::run(|| {
///     let addrs: Vec<_> = bobine::net::lookup_host("localhost:8080").unwrap().collect();
///     assert!(addrs.iter().all(|a| a.port() == 8080 && a.ip().is_loopback()));
///     let literal: Vec<_> = bobine::net::lookup_host("[::1]:53").unwrap().collect();
///     assert_eq!(literal, ["[::1]:53".parse().unwrap()]);
/// });
/// ```
///
/// # Errors
///
/// std's for the same string: `InvalidInput` without a port (`"localhost"`) or for an invalid
/// port, the resolver's error (kind `Uncategorized`) for a name it cannot resolve.
#[track_caller]
pub fn lookup_host(host: &str) -> io::Result<vec::IntoIter<SocketAddr>> {
    match host.parse::<SocketAddr>() {
        Ok(addr) => Ok(vec![addr].into_iter()),
        Err(_) => off_domain(host.to_owned(), None),
    }
}

/// The addresses of a `ToSocketAddrs` argument (see the module doc for how a host name is kept
/// off the domain).
#[track_caller]
pub(crate) fn socket_addrs<A: ToSocketAddrs>(addr: &A) -> io::Result<Addrs<A::Iter>> {
    Ok(match named(addr) {
        Named::HostPort(s) => match s.parse::<SocketAddr>() {
            Ok(a) => Addrs::One(Some(a)),
            Err(_) => Addrs::Resolved(off_domain(s.to_owned(), None)?),
        },
        Named::Pair(host, port) => match host.parse::<IpAddr>() {
            Ok(ip) => Addrs::One(Some(SocketAddr::new(ip, port))),
            Err(_) => Addrs::Resolved(off_domain(host.to_owned(), Some(port))?),
        },
        Named::Other => Addrs::Own(addr.to_socket_addrs()?),
    })
}

/// The addresses [`socket_addrs`] found.
pub(crate) enum Addrs<I> {
    /// A literal address, parsed in place.
    One(Option<SocketAddr>),
    /// A name, resolved on the blocking pool.
    Resolved(vec::IntoIter<SocketAddr>),
    /// The argument's own iterator (a type that never resolves).
    Own(I),
}

impl<I: Iterator<Item = SocketAddr>> Iterator for Addrs<I> {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        match self {
            Addrs::One(a) => a.take(),
            Addrs::Resolved(it) => it.next(),
            Addrs::Own(it) => it.next(),
        }
    }
}

/// Resolves `name` (`"host:port"`, or a host with `port`) with std's resolver, on the blocking
/// pool when called from a task.
#[track_caller]
fn off_domain(name: String, port: Option<u16>) -> io::Result<vec::IntoIter<SocketAddr>> {
    crate::io::unblock(move || {
        #[cfg(test)]
        hook::run(&name, port);
        match port {
            None => name.as_str().to_socket_addrs(),
            Some(port) => (name.as_str(), port).to_socket_addrs(),
        }
    })
}

/// What a `ToSocketAddrs` argument is, for [`socket_addrs`].
enum Named<'a> {
    /// One of std's string types: `"host:port"`.
    HostPort(&'a str),
    /// One of std's pair types: a host and a port.
    Pair(&'a str, u16),
    /// Any other type.
    Other,
}

/// Sorts `addr` by its type (step 1 of the module doc).
fn named<'a, A>(addr: &'a A) -> Named<'a> {
    // Each line names a type of std's list and the view of it that holds the host; `view`
    // checks the type and reborrows the value for `'a`.
    macro_rules! try_view {
        ($t:ty, |$v:ident| $named:expr) => {
            // SAFETY: `$t` is written with `'a` as its only lifetime, and `addr: &'a A` means
            // every lifetime in `A` outlives `'a`: a value of `A` of the same erased type is a
            // valid `$t` for `'a`.
            if let Some($v) = unsafe { view::<A, $t>(addr) } {
                return $named;
            }
        };
    }
    try_view!(&'a str, |s| Named::HostPort(s));
    try_view!(String, |s| Named::HostPort(s));
    try_view!(&'a String, |s| Named::HostPort(s));
    try_view!(&'a &'a str, |s| Named::HostPort(s));
    try_view!(&'a &'a String, |s| Named::HostPort(s));
    try_view!((&'a str, u16), |p| Named::Pair(p.0, p.1));
    try_view!((String, u16), |p| Named::Pair(&p.0, p.1));
    try_view!(&'a (&'a str, u16), |p| Named::Pair(p.0, p.1));
    try_view!(&'a (String, u16), |p| Named::Pair(&p.0, p.1));
    Named::Other
}

/// `a` as a `B`, if `A` and `B` are the same type once lifetimes are erased.
///
/// # Safety
///
/// Every lifetime in `B` must be outlived by the corresponding one in `A` (for instance, `B`
/// names only the lifetime of the borrow of `a`), so that a valid `A` is a valid `B` for as
/// long as the borrow lasts.
unsafe fn view<A, B>(a: &A) -> Option<&B> {
    if erased_type_id::<A>() != erased_type_id::<B>() {
        return None;
    }
    // SAFETY: `A` and `B` are the same type up to lifetimes (same layout and validity), and
    // the caller guarantees that `B`'s lifetimes are no longer than `A`'s.
    Some(unsafe { &*(a as *const A).cast::<B>() })
}

/// The `TypeId` of `T` with its lifetimes erased (`&'a str` and `&'static str` give the same
/// id), for a `T` that need not be `'static`.
///
/// `TypeId::of` asks for `T: 'static`. It is reached here through a trait object whose
/// lifetime bound is stretched to `'static`: the method only names `T` and reads nothing, and
/// the compiler has erased lifetimes by the time the id is computed, so the id is that of `T`
/// with its lifetimes replaced by `'static`.
fn erased_type_id<T: ?Sized>() -> TypeId {
    trait Id {
        fn id(&self) -> TypeId
        where
            Self: 'static;
    }
    impl<T: ?Sized> Id for PhantomData<T> {
        fn id(&self) -> TypeId
        where
            Self: 'static,
        {
            TypeId::of::<T>()
        }
    }
    let marker = PhantomData::<T>;
    let object: &dyn Id = &marker;
    // SAFETY: only the object's lifetime bound changes (a fat pointer to the same vtable). The
    // bound is used to call `id`, which touches no data of `marker` (a zero-sized value alive
    // for the whole call) and only computes a type's id, where lifetimes do not exist any more.
    let object = unsafe { std::mem::transmute::<&dyn Id, &(dyn Id + 'static)>(object) };
    object.id()
}

/// A test hook: runs a closure on the thread that resolves a given name, before it resolves
/// it, so that a test can make a lookup as slow as it likes. Compiled in unit tests only.
#[cfg(test)]
pub(crate) mod hook {
    use std::sync::Mutex;

    type Hook = Box<dyn FnOnce() + Send>;

    static HOOKS: Mutex<Vec<(String, Hook)>> = Mutex::new(Vec::new());

    /// The key of a name: `"host:port"` as given, or a pair's host and port joined the same way.
    fn key(name: &str, port: Option<u16>) -> String {
        match port {
            None => name.to_owned(),
            Some(p) => format!("{name}:{p}"),
        }
    }

    /// Runs `f` before the next lookup of `name` (`"host:port"`, or `host:port` for a pair).
    pub(crate) fn before_lookup(name: &str, f: impl FnOnce() + Send + 'static) {
        HOOKS.lock().unwrap().push((name.to_owned(), Box::new(f)));
    }

    pub(super) fn run(name: &str, port: Option<u16>) {
        let key = key(name, port);
        let f = {
            let mut hooks = HOOKS.lock().unwrap();
            let i = hooks.iter().position(|(n, _)| *n == key);
            i.map(|i| hooks.remove(i).1)
        };
        if let Some(f) = f {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Whether `addr` is seen as a name (resolved off the domain) rather than resolved by its
    /// own impl.
    fn is_name<A: ToSocketAddrs>(addr: &A) -> bool {
        !matches!(named(addr), Named::Other)
    }

    /// std's string types, bare and behind references, are recognised with their host and
    /// port; every other std type is left to its own impl.
    #[test]
    fn string_types_are_names_and_address_types_are_not() {
        let s = String::from("localhost:1");
        assert!(matches!(
            named(&"localhost:1"),
            Named::HostPort("localhost:1")
        ));
        assert!(matches!(named(&s), Named::HostPort("localhost:1")));
        assert!(matches!(named(&&s), Named::HostPort("localhost:1")));
        assert!(matches!(
            named(&&"localhost:1"),
            Named::HostPort("localhost:1")
        ));
        assert!(matches!(named(&&&s), Named::HostPort("localhost:1")));
        assert!(matches!(named(&("h", 7u16)), Named::Pair("h", 7)));
        assert!(matches!(
            named(&(String::from("h"), 7u16)),
            Named::Pair("h", 7)
        ));
        assert!(matches!(named(&&("h", 7u16)), Named::Pair("h", 7)));
        assert!(matches!(
            named(&&(String::from("h"), 7u16)),
            Named::Pair("h", 7)
        ));
        let sa: SocketAddr = "127.0.0.1:5".parse().unwrap();
        assert!(!is_name(&sa));
        assert!(!is_name(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5)));
        assert!(!is_name(&SocketAddrV6::new(Ipv6Addr::LOCALHOST, 5, 0, 0)));
        assert!(!is_name(&(IpAddr::V4(Ipv4Addr::LOCALHOST), 5u16)));
        assert!(!is_name(&(Ipv4Addr::LOCALHOST, 5u16)));
        assert!(!is_name(&(Ipv6Addr::LOCALHOST, 5u16)));
        assert!(!is_name(&&[sa][..]));
        assert!(!is_name(&&sa));
    }

    /// A literal address, in every form, is parsed in place: no lookup reaches the resolver.
    #[test]
    fn literal_addresses_are_parsed_in_place() {
        let v4: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        let one = |a: io::Result<Addrs<vec::IntoIter<SocketAddr>>>| match a.unwrap() {
            Addrs::One(Some(a)) => a,
            _ => panic!("not parsed in place"),
        };
        assert_eq!(one(socket_addrs(&"127.0.0.1:5")), v4);
        assert_eq!(one(socket_addrs(&String::from("[::1]:5"))), v6);
        assert_eq!(one(socket_addrs(&("::1", 5u16))), v6);
        assert_eq!(one(socket_addrs(&(String::from("127.0.0.1"), 5u16))), v4);
    }

    /// A task resolving a name parks while the lookup runs on the blocking pool: the lookup
    /// (held back by the hook until another task of the same single domain has run) completes,
    /// which it could not if it ran on the domain.
    #[test]
    fn a_lookup_parks_the_task_and_the_domain_runs_others() {
        crate::util::within(30, || {
            crate::Builder::new().domains(1).run(|| {
                let (tx, rx) = std::sync::mpsc::channel::<usize>();
                let name = "localhost:47011";
                hook::before_lookup(name, move || {
                    // Only a task of the domain can send: if the lookup ran on the domain,
                    // nothing would, and the lookup would fail below.
                    let got = rx.recv_timeout(Duration::from_secs(10));
                    assert!(got.is_ok(), "the domain did not run the other task");
                });
                let ticks = Arc::new(AtomicUsize::new(0));
                let t = ticks.clone();
                let other = crate::thread::spawn(move || {
                    for _ in 0..5 {
                        t.fetch_add(1, Ordering::SeqCst);
                        crate::thread::yield_now();
                    }
                    tx.send(t.load(Ordering::SeqCst)).unwrap();
                });
                let addrs: Vec<_> = lookup_host(name).unwrap().collect();
                assert!(!addrs.is_empty());
                assert!(
                    addrs
                        .iter()
                        .all(|a| a.port() == 47011 && a.ip().is_loopback())
                );
                other.join().unwrap();
                assert_eq!(ticks.load(Ordering::SeqCst), 5);
            })
        });
    }

    /// The same holds for a pair resolved on behalf of a socket call: `TcpStream::connect`
    /// with `("localhost", port)` parks while the name is looked up.
    #[test]
    fn connect_to_a_pair_resolves_off_the_domain() {
        crate::util::within(30, || {
            crate::Builder::new().domains(1).run(|| {
                let listener = crate::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let port = listener.local_addr().unwrap().port();
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                hook::before_lookup(&format!("localhost:{port}"), move || {
                    assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
                });
                let other = crate::thread::spawn(move || {
                    let _ = listener.accept().unwrap();
                });
                let sender = crate::thread::spawn(move || tx.send(()).unwrap());
                let s = crate::net::TcpStream::connect(("localhost", port)).unwrap();
                assert_eq!(s.peer_addr().unwrap().port(), port);
                sender.join().unwrap();
                other.join().unwrap();
            })
        });
    }
}
