//! The echo server of Miou's book (chapter "Conditions & Mutexes"), ported line by line to
//! bobine's Miou face:
//!
//! - one server per domain, every one listening on the same port (`SO_REUSEPORT`);
//! - each accepted connection runs as an orphan (`Orphans::call_cc` through `Spawn` with
//!   `give`), and `clean_up` awaits the finished ones with `care` before each accept;
//! - peer addresses are logged under a global `miou::mutex` (printing from several domains
//!   without it could interleave);
//! - every socket is a Miou resource: the listening socket is given to the accepting child and
//!   comes back with `transfer`, as does the accepted one; each connection owns its client;
//! - a SIGINT handler installed with `sys_signal` sets a flag and broadcasts a condition; the
//!   accept step is `await_first [accept; wait for the condition]`, so when SIGINT wins the
//!   accepting child is cancelled and its finaliser closes the listening socket it owned; then
//!   the server awaits every orphan (`care` and `yield` until `None`), so the run ends cleanly,
//!   without `Still_has_children`, and with every descriptor closed.
//!
//! Run with `cargo run --release --example miou_echo [port] [workers]`, talk to it with
//! `nc 127.0.0.1 <port>`, and stop it with Ctrl-C.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use bobine::miou::unix::ownership::{self as unix, FileDescr};
use bobine::miou::{self, Orphans, Spawn, condition, mutex, ownership};

/// The book's global mutex for printing.
static PRINT: LazyLock<mutex::T> = LazyLock::new(mutex::create);

/// The stop signal: a flag, and a condition broadcast when it is raised.
struct Stop {
    m: mutex::T,
    c: condition::T,
    stopped: AtomicBool,
}

/// What the servers did, counted over every domain.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Bytes echoed back.
    pub bytes: AtomicU64,
    /// Servers listening (each counts itself once bound).
    pub listening: AtomicU64,
    /// Servers that stopped on the signal.
    pub servers_stopped: AtomicU64,
}

/// Echoes what `client` sends until it closes, then closes it (the connection owns it).
fn echo(client: FileDescr, stats: &Stats) {
    let mut buf = [0u8; 0x1000];
    loop {
        let len = buf.len();
        match unix::read(&client, &mut buf, 0, len) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if unix::write(&client, &buf, 0, n).is_err() {
                    break;
                }
                stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = unix::close(client);
}

/// Awaits every connection that has ended (the book's `clean_up`).
fn clean_up(orphans: &Orphans<()>) {
    while let Some(Some(p)) = miou::care(orphans) {
        let _ = miou::await_(p);
    }
}

/// The outcome of one accept step.
enum Accepted {
    Client(FileDescr, SocketAddr),
    Stopped,
    Failed(std::io::Error),
}

/// Accepts a client, or returns `Stopped` when the stop condition is broadcast first.
fn accept_or_stop(listener: &FileDescr, stop: &Arc<Stop>) -> Accepted {
    let l = listener.clone();
    let accept = Spawn::new()
        .give(unix::resource(listener))
        .call_cc(move || {
            let accepted = unix::accept(&l);
            // Both sockets go back to the server (else `Not_owner` there).
            ownership::transfer(unix::resource(&l));
            match accepted {
                Ok((client, peer)) => {
                    ownership::transfer(unix::resource(&client));
                    Accepted::Client(client, peer)
                }
                Err(e) => Accepted::Failed(e),
            }
        });
    let s = stop.clone();
    let wait = miou::call_cc(move || {
        mutex::protect(&s.m, || {
            while !s.stopped.load(Ordering::SeqCst) {
                condition::wait(&s.c, &s.m);
            }
        });
        Accepted::Stopped
    });
    match miou::await_first(vec![accept, wait]) {
        Ok(accepted) => accepted,
        Err(e) => panic!("the accept step failed: {e}"),
    }
}

/// One server: accepts until the stop condition, then awaits every connection.
fn server(addr: SocketAddr, stop: Arc<Stop>, stats: Arc<Stats>) {
    let listener = unix::tcpv4().expect("a socket");
    unix::bind_and_listen(&listener, addr).expect("bind and listen");
    stats.listening.fetch_add(1, Ordering::SeqCst);
    let orphans = miou::orphans();
    let mut listening = true;
    while listening {
        clean_up(&orphans);
        match accept_or_stop(&listener, &stop) {
            Accepted::Client(client, peer) => {
                mutex::protect(&PRINT, || {
                    println!(
                        "domain {}: new connection from {peer}",
                        miou::domain::self_()
                    )
                });
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let stats = stats.clone();
                let c = client.clone();
                Spawn::new()
                    .give(unix::resource(&client))
                    .orphans(&orphans)
                    .call_cc(move || echo(c, &stats));
            }
            Accepted::Failed(e) => {
                mutex::protect(&PRINT, || eprintln!("accept failed: {e}"));
            }
            // The accepting child was cancelled: its finaliser closed the listening socket.
            Accepted::Stopped => listening = false,
        }
    }
    // Every connection is awaited before the server returns (rule 1).
    while let Some(ready) = miou::care(&orphans) {
        match ready {
            Some(p) => {
                let _ = miou::await_(p);
            }
            None => miou::yield_(),
        }
    }
    stats.servers_stopped.fetch_add(1, Ordering::Relaxed);
}

/// Runs one echo server per domain (domain 0 and `workers` workers) on `addr` until the
/// process receives SIGINT and every connection has ended. `ready` is told the address once
/// the servers listen.
pub fn serve(addr: SocketAddr, workers: usize, ready: impl FnOnce(SocketAddr)) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let out = stats.clone();
    miou::run_with(workers, move || {
        let stop = Arc::new(Stop {
            m: mutex::create(),
            c: condition::create(),
            stopped: AtomicBool::new(false),
        });
        let s = stop.clone();
        miou::sys_signal(libc::SIGINT, move |_| {
            mutex::protect(&s.m, || {
                s.stopped.store(true, Ordering::SeqCst);
                condition::broadcast(&s.c);
            });
        });
        // Port 0 picks a free port: find one that the servers then share.
        let addr = if addr.port() == 0 {
            let probe = unix::tcpv4().expect("a socket");
            unix::bind_and_listen(&probe, addr).expect("bind and listen");
            let bound = probe.local_addr().expect("an address");
            unix::close(probe).expect("close");
            bound
        } else {
            addr
        };
        let mut servers = Vec::new();
        for d in 1..=workers {
            let (stop, stats) = (stop.clone(), stats.clone());
            servers.push(Spawn::new().pin(d).call(move || server(addr, stop, stats)));
        }
        let (stop0, stats0) = (stop.clone(), stats.clone());
        servers.push(miou::call_cc(move || server(addr, stop0, stats0)));
        // Let every server bind before telling the caller.
        while stats.listening.load(Ordering::SeqCst) < workers as u64 + 1 {
            bobine::thread::sleep(std::time::Duration::from_millis(1));
        }
        ready(addr);
        for r in miou::await_all(servers) {
            r.expect("a server ends cleanly");
        }
    });
    out
}

#[allow(dead_code)]
fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(9000, |a| a.parse().expect("a port"));
    let workers: usize = args.next().map_or(1, |a| a.parse().expect("workers"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stats = serve(addr, workers, |a| {
        println!(
            "echo servers on {a}, one per domain ({} domains); Ctrl-C stops them",
            workers + 1
        )
    });
    println!(
        "stopped: {} connections, {} bytes echoed, {} servers",
        stats.connections.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
        stats.servers_stopped.load(Ordering::Relaxed)
    );
}
