//! A blocking HTTP client on tasks: ureq 3 with a connector that opens bobine sockets.
//!
//! ureq is written for threads: by default it connects with `std::net::TcpStream`, whose
//! `connect` and `read` block the OS thread. Called from a task, that would block the whole
//! domain: every other task on it (here, the very server being asked) stops until the socket
//! times out, so on one domain a request to an in-process server hangs until ureq's timeout,
//! or forever without one (`tests/recipes.rs` shows it). ureq lets an agent be built from a
//! [`Connector`] and a [`Resolver`]; [`agent`] passes [`BobineConnector`], whose transport
//! reads and writes a `bobine::net::TcpStream` (the task parks, the domain runs others), and
//! [`BobineResolver`], which looks host names up on the blocking pool. The rest of ureq
//! (request building, response parsing, the connection pool) is used as it is.
//!
//! The demo starts two servers in the same runtime: a small one below that answers
//! `/square/N` with N² and `/slow/MS` after sleeping MS milliseconds, and the hello-world
//! server of `examples/http.rs`. Client tasks share one agent and make requests to both,
//! checking every body; one slow request is timed against a ticker task to show that the
//! domain keeps running while a request waits.
//!
//! ```text
//! cargo run --release --example http_client            # 8 clients × 50 requests
//! cargo run --release --example http_client -- --domains 1 --clients 20 --requests 20
//! ```

#[path = "http.rs"]
#[allow(dead_code)]
mod http;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bobine::net::{TcpListener, TcpStream};
use bobine::thread;
use ureq::Agent;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// A ureq [`Connector`] that connects with `bobine::net::TcpStream`.
///
/// It does not register its sockets with the agent's shutdown (`Agent::shutdown` does not
/// interrupt a request made through it); a request's timeouts apply as usual.
#[derive(Debug, Default)]
pub struct BobineConnector;

impl Connector for BobineConnector {
    type Out = BobineTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<BobineTransport>, ureq::Error> {
        let timeout = details.timeout;
        let mut last = None;
        // Each resolved address in turn, as ureq's own TCP connector does.
        for addr in details.addrs.iter() {
            let connected = match timeout.not_zero() {
                Some(t) => TcpStream::connect_timeout(addr, *t),
                None => TcpStream::connect(addr),
            };
            match connected {
                Ok(stream) => {
                    if details.config.no_delay() {
                        stream.set_nodelay(true)?;
                    }
                    let config = details.config;
                    let buffers =
                        LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size());
                    return Ok(Some(BobineTransport {
                        stream,
                        buffers,
                        read_timeout: None,
                        write_timeout: None,
                    }));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if is_timeout(&e) => ureq::Error::Timeout(ureq::Timeout::Connect),
            Some(e) => ureq::Error::Io(e),
            None => ureq::Error::HostNotFound,
        })
    }
}

/// Whether `e` is a socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO` give `WouldBlock`, as std).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// A ureq [`Transport`] over a bobine `TcpStream`: an HTTP/1.1 connection.
pub struct BobineTransport {
    stream: TcpStream,
    buffers: LazyBuffers,
    /// The read and write timeouts last set on the socket (set again only on a change).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl fmt::Debug for BobineTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BobineTransport")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

/// Sets the socket timeout `set` to what `timeout` leaves, if it changed since `last`.
fn apply_timeout(
    stream: &TcpStream,
    timeout: NextTimeout,
    last: &mut Option<Duration>,
    set: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
) -> Result<(), ureq::Error> {
    if timeout.after.is_zero() {
        return Err(ureq::Error::Timeout(timeout.reason));
    }
    let want = timeout.not_zero().map(|t| *t);
    if want != *last {
        set(stream, want)?;
        *last = want;
    }
    Ok(())
}

/// ureq's error for a failed read or write: a timeout names the deadline that passed.
fn io_failure(e: io::Error, timeout: NextTimeout) -> ureq::Error {
    if is_timeout(&e) {
        ureq::Error::Timeout(timeout.reason)
    } else {
        ureq::Error::Io(e)
    }
}

impl Transport for BobineTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        let set = TcpStream::set_write_timeout;
        apply_timeout(&self.stream, timeout, &mut self.write_timeout, set)?;
        // Parks the task while the socket buffer is full.
        (&self.stream)
            .write_all(&self.buffers.output()[..amount])
            .map_err(|e| io_failure(e, timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        let set = TcpStream::set_read_timeout;
        apply_timeout(&self.stream, timeout, &mut self.read_timeout, set)?;
        // Parks the task until the server has answered.
        let n = loop {
            match (&self.stream).read(self.buffers.input_append_buf()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r.map_err(|e| io_failure(e, timeout))?,
            }
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // A pooled connection is reusable if reading it now would wait: the server has
        // neither closed it nor sent anything unasked. Non-blocking mode makes the peek
        // return `WouldBlock` at once instead of parking.
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let open = matches!(
            self.stream.peek(&mut [0u8]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        open && self.stream.set_nonblocking(false).is_ok()
    }
}

/// A ureq [`Resolver`]: an IP address is used as it is; a host name is looked up by the
/// system resolver (`getaddrinfo`, which may block for seconds) on the blocking pool, while
/// the task parks. The lookup does not heed ureq's timeout: `getaddrinfo` cannot be
/// interrupted (ureq's own resolver leaves a thread behind to give up on it).
#[derive(Debug, Default)]
pub struct BobineResolver;

impl Resolver for BobineResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let authority = uri
            .authority()
            .ok_or_else(|| ureq::Error::BadUri(format!("no host in {uri}")))?;
        let https = uri.scheme_str() == Some("https");
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let found: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            // A name is looked up off the domain (on the blocking pool) by bobine.
            Err(_) => bobine::net::lookup_host(&format!("{host}:{port}"))?.collect(),
        };
        let mut addrs = self.empty();
        for a in found.into_iter().take(16) {
            addrs.push(a);
        }
        if addrs.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(addrs)
    }
}

/// A ureq agent whose sockets are bobine sockets, with a global timeout per request.
/// Usable from tasks (they park) and plain threads (they block), and shared by both.
///
/// Proxies named by the environment (`HTTP_PROXY`, ...) are ignored: the demo only talks to
/// loopback. (Going through a proxy would take ureq's `ConnectProxyConnector` chained after
/// [`BobineConnector`]; not tried here.)
pub fn agent(timeout: Duration) -> Agent {
    let config = Agent::config_builder()
        .timeout_global(Some(timeout))
        .proxy(None)
        .build();
    Agent::with_parts(config, BobineConnector, BobineResolver)
}

/// Answers one request path of the squares server: `(status, body)`.
fn answer(path: &str) -> (u16, String) {
    if let Some(n) = path
        .strip_prefix("/square/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        return (200, n.saturating_mul(n).to_string());
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        thread::sleep(Duration::from_millis(ms.min(10_000)));
        return (200, format!("slept {ms} ms"));
    }
    (404, "not found".to_owned())
}

/// Serves one keep-alive connection of the squares server until the client closes it.
fn serve_squares(stream: TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let (status, body) = answer(req.path.unwrap_or("/"));
                let reply = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    if status == 200 { "OK" } else { "Not Found" },
                    body.len()
                );
                (&stream).write_all(reply.as_bytes())?;
                buf.drain(..len);
                continue;
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        let n = (&stream).read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Starts the squares server on `127.0.0.1:0`: an accept loop task that serves each
/// connection in a task of its own, until the runtime ends. Returns its address.
///
/// # Errors
///
/// The bind's error.
pub fn start_squares_server() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        while let Ok((stream, _)) = listener.accept() {
            thread::spawn(move || serve_squares(stream));
        }
    });
    Ok(addr)
}

/// Starts the hello-world server of `examples/http.rs` on `127.0.0.1:0`; returns its address.
///
/// # Errors
///
/// The bind's error.
pub fn start_hello_server() -> io::Result<SocketAddr> {
    let listeners = http::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)?;
    let addr = listeners[0].local_addr()?;
    http::start(listeners);
    Ok(addr)
}

/// One client: `requests` GETs through `agent`, alternately a square (from the squares
/// server at `squares`) and a hello (from the server at `hello`), each body checked.
/// Returns the number of correct answers.
///
/// # Errors
///
/// ureq's error, or `InvalidData` for a wrong body.
pub fn client(
    agent: &Agent,
    squares: SocketAddr,
    hello: SocketAddr,
    id: u64,
    requests: u64,
) -> Result<u64, ureq::Error> {
    for i in 0..requests {
        let (url, expected) = if i % 2 == 0 {
            let n = id * 1000 + i;
            (format!("http://{squares}/square/{n}"), (n * n).to_string())
        } else {
            let body = String::from_utf8_lossy(http::BODY).into_owned();
            (format!("http://{hello}/?client={id}&i={i}"), body)
        };
        let body = agent.get(&url).call()?.body_mut().read_to_string()?;
        if body != expected {
            return Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{url}: got {body:?}, expected {expected:?}"),
            )));
        }
    }
    Ok(requests)
}

/// A task that counts while it runs: it sleeps 1 ms between counts, so it only counts when
/// its domain is free to run it.
pub struct Ticker {
    ticks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<()>,
}

impl Ticker {
    /// Starts the ticker on the current domain.
    pub fn start() -> Ticker {
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (ticks.clone(), stop.clone());
        let handle = thread::spawn_local(move || {
            while !s.load(Ordering::Relaxed) {
                t.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        });
        Ticker {
            ticks,
            stop,
            handle,
        }
    }

    /// The count so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Stops the ticker and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the ticker panicked");
    }
}

/// What the demo did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Client tasks run.
    pub clients: u64,
    /// Requests whose body was right.
    pub requests_checked: u64,
    /// Counts of a ticker task on the caller's domain while one `/slow/100` request waited.
    pub ticks_during_slow_request: u64,
}

/// The demo, run inside a runtime: both servers, then `clients` client tasks of `requests`
/// requests each over one shared agent, then one slow request next to a ticker.
///
/// # Errors
///
/// The first client's error.
pub fn demo(clients: u64, requests: u64) -> Result<Report, ureq::Error> {
    let squares = start_squares_server()?;
    let hello = start_hello_server()?;
    let agent = agent(Duration::from_secs(30));
    let handles: Vec<_> = (0..clients)
        .map(|id| {
            let agent = agent.clone();
            thread::spawn(move || client(&agent, squares, hello, id, requests))
        })
        .collect();
    let mut requests_checked = 0;
    for h in handles {
        requests_checked += h.join().expect("a client task panicked")?;
    }

    let ticker = Ticker::start();
    let before = ticker.ticks();
    let body = agent
        .get(&format!("http://{squares}/slow/100"))
        .call()?
        .body_mut()
        .read_to_string()?;
    let ticks_during_slow_request = ticker.ticks() - before;
    ticker.stop();
    if body != "slept 100 ms" {
        return Err(ureq::Error::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/slow/100: got {body:?}"),
        )));
    }
    Ok(Report {
        clients,
        requests_checked,
        ticks_during_slow_request,
    })
}

/// Prints `problem` and the usage, and exits with status 2.
fn usage(problem: &str) -> ! {
    eprintln!("http_client: {problem}");
    eprintln!("usage: http_client [--domains D] [--clients N] [--requests R]");
    std::process::exit(2);
}

/// The positive number after `flag`, or the usage.
fn number(v: Option<String>, flag: &str) -> u64 {
    match v.as_deref().map(str::parse::<u64>) {
        Some(Ok(n)) if n > 0 => n,
        _ => usage(&format!("{flag} needs a positive number")),
    }
}

/// Parses the command line, runs the demo and prints its counts.
fn main() {
    let (mut domains, mut clients, mut requests) = (None, 8, 50);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--domains" => domains = Some(number(args.next(), "--domains") as usize),
            "--clients" => clients = number(args.next(), "--clients"),
            "--requests" => requests = number(args.next(), "--requests"),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let mut runtime = bobine::Builder::new();
    if let Some(d) = domains {
        runtime = runtime.domains(d);
    }
    match runtime.run(|| demo(clients, requests)) {
        Ok(r) => println!(
            "http_client: ok: {} clients, {} responses checked; the ticker counted {} times \
             during a 100 ms request",
            r.clients, r.requests_checked, r.ticks_during_slow_request
        ),
        Err(e) => {
            eprintln!("http_client: FAILED: {e}");
            std::process::exit(1);
        }
    }
}
