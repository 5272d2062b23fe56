//! A TCP echo server written in plain blocking style: the echo server of the Miou book
//! (`examples/miou_echo.rs` is its Miou shape) in its std shape.
//!
//! An accept loop takes connections one by one, logs each client's address under a
//! `bobine::sync::Mutex` (a numbered line and the count of open connections), and serves each
//! connection in its own task: read up to 4 KiB, write it back, until end of file or an error.
//! An error ends that connection only. Every `read`, `write` and `accept` parks its task, never
//! the domain, so thousands of connections share a few OS threads.
//!
//! With `--reuseport N` the server runs N accept loops, each with its own listener bound with
//! `SO_REUSEPORT` to the same port (`TcpListener::bind_reuseport`); the kernel spreads incoming
//! connections among the listeners. The runtime then has N domains (unless `--domains` says
//! otherwise): the loops start as N tasks, idle domains take the ones that have not started,
//! and a task never migrates once started, so each loop normally owns a domain and the
//! connections it accepts start there too.
//!
//! ```text
//! cargo run --release --example echo                    # serves 127.0.0.1:7878 forever
//! cargo run --release --example echo -- 0.0.0.0:9000 --reuseport 2 --quiet
//! cargo run --example echo -- --selftest                # serves port 0, runs clients, exits
//! ```
//!
//! Options: `ADDR` (default `127.0.0.1:7878`, or `ECHO_ADDR`), `--reuseport N`, `--domains D`,
//! `--quiet` (no line per client), `--selftest` (or `BOBINE_SELFTEST=1`): start on an
//! ephemeral port, run 100 client tasks of 50 messages each plus one client on a plain OS
//! thread, check every echoed byte, print a summary and exit (0 when everything matched).
//! Try it with `nc 127.0.0.1 7878`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bobine::net::{TcpListener, TcpStream};
use bobine::sync::Mutex;
use bobine::thread;

/// The address served when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// The most bytes one read takes (and one write gives back).
pub const CHUNK: usize = 4096;

/// The listen backlog of `--reuseport` listeners (the kernel caps it at `somaxconn`).
pub const BACKLOG: i32 = 4096;

/// The connection log every accept loop writes to, under one bobine mutex.
#[derive(Debug, Default)]
pub struct Log {
    counts: Mutex<Counts>,
    verbose: bool,
}

/// What a [`Log`] has counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections being served now.
    pub open: u64,
    /// The most connections served at once.
    pub max_open: u64,
    /// Connections that ended with an I/O error rather than end of file.
    pub failed: u64,
    /// Bytes echoed, over the connections that have ended.
    pub bytes: u64,
}

impl Log {
    /// A log that prints a line per client when `verbose`, and only counts otherwise.
    pub fn new(verbose: bool) -> Log {
        Log {
            counts: Mutex::new(Counts::default()),
            verbose,
        }
    }

    /// Records a new client of accept loop `loop_id` (and prints it, holding the lock so the
    /// numbers come out in order).
    pub fn opened(&self, loop_id: usize, peer: SocketAddr) {
        let mut c = self.counts.lock().unwrap();
        c.accepted += 1;
        c.open += 1;
        c.max_open = c.max_open.max(c.open);
        if self.verbose {
            println!(
                "[loop {loop_id}] client #{} from {peer} ({} open)",
                c.accepted, c.open
            );
        }
    }

    /// Records the end of a connection: `Ok(bytes echoed)` or the error that ended it.
    pub fn closed(&self, peer: SocketAddr, result: &io::Result<u64>) {
        let mut c = self.counts.lock().unwrap();
        c.open -= 1;
        match result {
            Ok(n) => c.bytes += n,
            Err(e) => {
                c.failed += 1;
                if self.verbose {
                    println!("client {peer}: {e}");
                }
            }
        }
    }

    /// A snapshot of the counts.
    pub fn counts(&self) -> Counts {
        *self.counts.lock().unwrap()
    }
}

/// Echoes one connection: reads up to [`CHUNK`] bytes and writes them back, until end of
/// file (`Ok(bytes echoed)`) or an error.
pub fn echo(stream: &TcpStream) -> io::Result<u64> {
    let mut s = stream;
    let mut buf = [0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        s.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Accepts connections on `listener` forever, logging each in `log` and echoing it in a task
/// of its own. An `accept` error (other than those bobine retries itself) is reported and the
/// loop goes on after a short pause; a failed spawn drops that one connection.
pub fn serve(listener: &TcpListener, log: &Arc<Log>, loop_id: usize) -> ! {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("echo: accept on loop {loop_id}: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        log.opened(loop_id, peer);
        // Echoes are small writes answering small reads: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let conn_log = log.clone();
        let spawned = thread::Builder::new().spawn(move || {
            let r = echo(&stream);
            conn_log.closed(peer, &r);
        });
        if let Err(e) = spawned {
            eprintln!("echo: no task for {peer}: {e}");
            log.closed(peer, &Err(e));
        }
    }
}

/// Binds the listeners: one with `TcpListener::bind` when `reuseport` is `None`, else
/// `reuseport` listeners (at least one) on the same port with `bind_reuseport`. Port 0 picks
/// one free port for all of them.
pub fn bind(addr: SocketAddr, reuseport: Option<usize>) -> io::Result<Vec<TcpListener>> {
    let Some(n) = reuseport else {
        return Ok(vec![TcpListener::bind(addr)?]);
    };
    let first = TcpListener::bind_reuseport(addr, BACKLOG)?;
    let shared = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..n.max(1) {
        listeners.push(TcpListener::bind_reuseport(shared, BACKLOG)?);
    }
    Ok(listeners)
}

/// Starts an accept loop task per listener; they run until the runtime ends.
pub fn start(listeners: Vec<TcpListener>, log: &Arc<Log>) {
    for (i, l) in listeners.into_iter().enumerate() {
        let log = log.clone();
        thread::spawn(move || serve(&l, &log, i));
    }
}

/// The message number `m` of client `seed`: 1 to 6 000 bytes of reproducible noise, so that
/// every echo can be checked byte for byte (and some messages take two server reads).
pub fn message(seed: u64, m: usize, out: &mut Vec<u8>) {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(m as u64 + 1)
        | 1;
    let mut next = || {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 1 + (next() % 6000) as usize;
    out.clear();
    out.extend((0..len).map(|_| next() as u8));
}

/// A client: connects to `addr`, sends `messages` messages (see [`message`]), reads each echo
/// back and checks it, then half-closes and checks that the server closes too. Returns the
/// bytes echoed. Works in a task (it parks) and on a plain OS thread (it blocks in `poll`).
pub fn client(addr: SocketAddr, seed: u64, messages: usize) -> io::Result<u64> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let (mut sent, mut back) = (Vec::new(), Vec::new());
    let mut total = 0u64;
    for m in 0..messages {
        message(seed, m, &mut sent);
        s.write_all(&sent)?;
        back.resize(sent.len(), 0);
        s.read_exact(&mut back)?;
        if back != sent {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("client {seed}: message {m} came back different"),
            ));
        }
        total += sent.len() as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut extra = [0u8; 1];
    if s.read(&mut extra)? != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("client {seed}: bytes after the last echo"),
        ));
    }
    Ok(total)
}

/// What a self-test did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Accept loops (listeners) served.
    pub loops: usize,
    /// Clients run (the plain-thread one included).
    pub clients: usize,
    /// Bytes the clients checked.
    pub bytes: u64,
    /// The server's log once every connection had ended.
    pub counts: Counts,
    /// Wall time.
    pub elapsed: Duration,
}

/// The self-test, run inside a runtime: starts the server on `127.0.0.1:0` (see [`bind`] for
/// `reuseport`), runs `tasks` client tasks of `messages` messages each and one more client on a
/// plain OS thread, waits for the server to see every connection end, and checks the counts.
///
/// # Errors
///
/// The first client's error, or a mismatch between what the clients and the server counted.
pub fn selftest(reuseport: Option<usize>, tasks: usize, messages: usize) -> io::Result<Report> {
    let started = Instant::now();
    let listeners = bind(SocketAddr::from(([127, 0, 0, 1], 0)), reuseport)?;
    let addr = listeners[0].local_addr()?;
    let loops = listeners.len();
    let log = Arc::new(Log::new(false));
    start(listeners, &log);

    // One client on a plain OS thread: its socket calls block in poll(2), not in a task.
    let os_client = std::thread::spawn(move || client(addr, u64::MAX, messages));
    let handles: Vec<_> = (0..tasks as u64)
        .map(|seed| thread::spawn(move || client(addr, seed, messages)))
        .collect();
    let mut bytes = 0;
    for h in handles {
        bytes += h.join().expect("client task panicked")?;
    }
    // Joining an OS thread would block the domain: let the blocking pool do it.
    bytes += bobine::io::unblock(move || os_client.join()).expect("client thread panicked")?;

    // The server tasks see end of file just after their clients do.
    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let c = log.counts();
        if c.open == 0 && c.accepted == tasks as u64 + 1 || Instant::now() > deadline {
            break c;
        }
        thread::sleep(Duration::from_millis(1));
    };
    if counts.accepted != tasks as u64 + 1 || counts.open != 0 || counts.failed != 0 {
        return Err(io::Error::other(format!(
            "server counts {counts:?} after {} clients",
            tasks + 1
        )));
    }
    if counts.bytes != bytes {
        return Err(io::Error::other(format!(
            "server echoed {} bytes, clients checked {bytes}",
            counts.bytes
        )));
    }
    Ok(Report {
        loops,
        clients: tasks + 1,
        bytes,
        counts,
        elapsed: started.elapsed(),
    })
}

/// The command line.
struct Options {
    /// Where to listen.
    addr: SocketAddr,
    /// `--reuseport N`: N listeners sharing the port.
    reuseport: Option<usize>,
    /// `--domains D`.
    domains: Option<usize>,
    /// A line per client (not with `--quiet`).
    verbose: bool,
    /// Run the self-test instead of serving.
    selftest: bool,
}

/// Prints `problem` and the usage, and exits with status 2.
fn usage(problem: &str) -> ! {
    eprintln!("echo: {problem}");
    eprintln!("usage: echo [ADDR] [--reuseport N] [--domains D] [--quiet] [--selftest]");
    std::process::exit(2);
}

/// The positive number given after `flag`, or the usage.
fn count(v: Option<String>, flag: &str) -> usize {
    match v.as_deref().map(str::parse::<usize>) {
        Some(Ok(n)) if n > 0 => n,
        _ => usage(&format!("{flag} needs a positive number")),
    }
}

/// Reads the environment and the command line.
fn options() -> Options {
    let mut o = Options {
        addr: std::env::var("ECHO_ADDR")
            .unwrap_or_else(|_| DEFAULT_ADDR.into())
            .parse()
            .unwrap_or_else(|_| usage("ECHO_ADDR is not an address")),
        reuseport: None,
        domains: None,
        verbose: true,
        selftest: std::env::var_os("BOBINE_SELFTEST").is_some_and(|v| v != "0"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reuseport" => o.reuseport = Some(count(args.next(), "--reuseport")),
            "--domains" => o.domains = Some(count(args.next(), "--domains")),
            "--quiet" => o.verbose = false,
            "--selftest" => o.selftest = true,
            "-h" | "--help" => usage("an echo server"),
            _ => {
                o.addr = a
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("not an address: {a}")))
            }
        }
    }
    o
}

/// Parses the command line, then serves forever or runs the self-test.
fn main() {
    let o = options();
    let mut runtime = bobine::Builder::new();
    if let Some(d) = o.domains.or(o.reuseport) {
        runtime = runtime.domains(d);
    }
    if o.selftest {
        match runtime.run(|| selftest(o.reuseport, 100, 50)) {
            Ok(r) => println!(
                "echo selftest: ok: {} clients ({} tasks, 1 OS thread) through {} accept \
                 loop(s), {} bytes echoed and checked, at most {} connections open at once, \
                 {:.0?}",
                r.clients,
                r.clients - 1,
                r.loops,
                r.bytes,
                r.counts.max_open,
                r.elapsed
            ),
            Err(e) => {
                eprintln!("echo selftest: FAILED: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    runtime.run(|| {
        let listeners = bind(o.addr, o.reuseport).unwrap_or_else(|e| {
            eprintln!("echo: cannot listen on {}: {e}", o.addr);
            std::process::exit(1);
        });
        let at = listeners[0].local_addr().map_or(o.addr, |a| a);
        println!(
            "echo: listening on {at} ({} accept loop(s))",
            listeners.len()
        );
        let log = Arc::new(Log::new(o.verbose));
        let mut listeners = listeners;
        let last = listeners.pop().expect("at least one listener");
        let n = listeners.len();
        start(listeners, &log);
        serve(&last, &log, n)
    })
}
