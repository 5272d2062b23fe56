//! An HTTP/1.1 server with keep-alive and pipelining, in plain blocking style: one task per
//! connection, `httparse` for the request heads, `Hello, World!` for every request.
//!
//! Each connection owns a read buffer. The task parses every complete request already in it
//! (a client may pipeline several in one packet, or split one across many), appends the
//! responses to one output buffer and writes that buffer with one call before it reads again:
//! one write per batch of pipelined requests. Nothing is allocated per request; the `Date`
//! header is formatted once per second per connection.
//!
//! The rules: every method and path gets `200 OK` with the plain-text body (`HEAD` without
//! the body). A request body announced by `Content-Length` is skipped. A connection is kept
//! open after HTTP/1.1 requests unless one says `Connection: close`, and after HTTP/1.0 ones
//! only when they say `Connection: keep-alive`. A head that does not parse, or a request with
//! `Transfer-Encoding` (bodies of unknown length are not supported), gets `400 Bad Request`
//! and the connection is closed once the responses before it are written; a head larger than
//! 64 KiB gets `431`. A closing connection shuts its write side first and drains what the
//! client still sends for a moment, so that the last response is not lost to a reset.
//!
//! ```text
//! cargo run --release --example http                  # serves 127.0.0.1:8080 forever
//! cargo run --release --example http -- 0.0.0.0:8080 --reuseport 2
//! cargo run --example http -- --selftest              # serves port 0, runs clients, exits
//! ```
//!
//! Options: `ADDR` (default `127.0.0.1:8080`, or `HTTP_ADDR`), `--reuseport N` (N accept loops
//! on listeners sharing the port with `SO_REUSEPORT`; the kernel spreads connections),
//! `--domains D`, `--selftest` (or `BOBINE_SELFTEST=1`). Try `curl -v http://127.0.0.1:8080/`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bobine::net::{TcpListener, TcpStream};
use bobine::thread;

/// The address served when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The body of every `200 OK`.
pub const BODY: &[u8] = b"Hello, World!";

/// The first size of a connection's read buffer.
const READ_BUF: usize = 4096;
/// The largest request head accepted (the buffer grows up to this).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines a request may have.
const MAX_HEADERS: usize = 32;
/// The listen backlog (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 4096;

/// Everything before the `Date` value in a `200 OK`.
const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: bobine\r\nContent-Type: text/plain\r\n\
Content-Length: 13\r\nDate: ";
/// The answer to a head that does not parse or a request refused; the connection closes.
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: bobine\r\nContent-Length: 11\r\n\
Connection: close\r\n\r\nBad Request";
/// The answer to a head longer than [`MAX_HEAD`]; the connection closes.
const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: bobine\r\n\
Content-Length: 0\r\nConnection: close\r\n\r\n";

/// What the server needs from one request head.
struct Request {
    /// `HEAD`: the response has no body.
    head: bool,
    /// The connection stays open after the response.
    keep_alive: bool,
    /// HTTP/1.0: the response says `Connection: keep-alive` when it is kept.
    http10: bool,
    /// Body bytes that follow the head.
    body: usize,
}

/// Whether the comma-separated header value `v` contains `token` (case-insensitive).
fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Reads what the server needs from a parsed head; `None` for a request it refuses.
fn inspect(req: &httparse::Request<'_, '_>) -> Option<Request> {
    let http10 = req.version? == 0;
    let mut close = false;
    let mut keep = false;
    let mut body: Option<usize> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            close |= has_token(h.value, b"close");
            keep |= has_token(h.value, b"keep-alive");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n: usize = std::str::from_utf8(v).ok()?.parse().ok()?;
            if body.is_some_and(|b| b != n) {
                return None;
            }
            body = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
    }
    Some(Request {
        head: req.method? == "HEAD",
        keep_alive: !close && (!http10 || keep),
        http10,
        body: body.unwrap_or(0),
    })
}

/// The `Date` header's value, formatted again only when the second changes.
#[derive(Default)]
pub struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl DateCache {
    /// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
    pub fn now(&mut self) -> &[u8; 29] {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.secs || self.text[0] == 0 {
            self.secs = secs;
            self.text = http_date(secs);
        }
        &self.text
    }
}

/// Formats `secs` since the Unix epoch as an IMF-fixdate.
pub fn http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let sod = secs % 86_400;
    // The civil date of `days`, counting in 400-year eras that start on 1 March 0000, so that
    // the leap day is the last day of its year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of the era, 0..146 096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from 1 March
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[5..7].copy_from_slice(&two(day));
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year));
    out[17..19].copy_from_slice(&two(sod / 3600));
    out[20..22].copy_from_slice(&two(sod / 60 % 60));
    out[23..25].copy_from_slice(&two(sod % 60));
    out
}

/// Appends the response to `req` to `out`, dated `date`.
fn respond(out: &mut Vec<u8>, req: &Request, date: &[u8; 29]) {
    out.extend_from_slice(OK_HEAD);
    out.extend_from_slice(date);
    if !req.keep_alive {
        out.extend_from_slice(b"\r\nConnection: close");
    } else if req.http10 {
        out.extend_from_slice(b"\r\nConnection: keep-alive");
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !req.head {
        out.extend_from_slice(BODY);
    }
}

/// Ends a connection politely: no more writes, then what the client still sends is read and
/// dropped until it closes (at most a second), so the kernel does not answer it with a reset
/// that could destroy responses the client has not read yet.
fn linger_close(stream: &TcpStream) {
    let mut s = stream;
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 1024];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match s.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Serves one connection until the client closes it, asks to close it, or sends something
/// refused (see the module doc). Returns the number of requests answered.
///
/// # Errors
///
/// A read or write error of the connection.
pub fn serve_connection(stream: &TcpStream) -> io::Result<u64> {
    let mut s = stream;
    let mut buf = vec![0u8; READ_BUF];
    // The unparsed bytes are buf[start..end].
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = Vec::with_capacity(READ_BUF);
    let mut date = DateCache::default();
    // Body bytes of the last request still to skip.
    let mut skip = 0usize;
    let mut served = 0u64;
    loop {
        let mut close = false;
        // One clock reading per batch of requests.
        let now = *date.now();
        loop {
            let n = skip.min(end - start);
            start += n;
            skip -= n;
            if skip > 0 || start == end {
                break;
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[start..end]) {
                Ok(httparse::Status::Partial) => break,
                Ok(httparse::Status::Complete(len)) => {
                    served += 1;
                    match inspect(&req) {
                        Some(r) => {
                            respond(&mut out, &r, &now);
                            start += len;
                            skip = r.body;
                            if !r.keep_alive {
                                close = true;
                                break;
                            }
                        }
                        None => {
                            out.extend_from_slice(BAD_REQUEST);
                            close = true;
                            break;
                        }
                    }
                }
                Err(_) => {
                    served += 1;
                    out.extend_from_slice(BAD_REQUEST);
                    close = true;
                    break;
                }
            }
        }
        if !close && skip == 0 && start == 0 && end == buf.len() && buf.len() >= MAX_HEAD {
            out.extend_from_slice(TOO_LARGE);
            close = true;
        }
        if !out.is_empty() {
            s.write_all(&out)?;
            out.clear();
        }
        if close {
            linger_close(stream);
            return Ok(served);
        }
        // Make room for the next read.
        if start == end {
            (start, end) = (0, 0);
        } else if end == buf.len() {
            if start > 0 {
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            } else {
                buf.resize((buf.len() * 2).min(MAX_HEAD), 0);
            }
        }
        let n = s.read(&mut buf[end..])?;
        if n == 0 {
            return Ok(served);
        }
        end += n;
    }
}

/// Accepts connections on `listener` forever and serves each in a task of its own. An `accept`
/// error (other than those bobine retries itself) is reported and the loop goes on after a
/// short pause; a failed spawn drops that one connection.
pub fn serve(listener: &TcpListener) -> ! {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("http: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = thread::Builder::new().spawn(move || {
            let _ = serve_connection(&stream);
        }) {
            eprintln!("http: no task for a connection: {e}");
        }
    }
}

/// Binds one listener with `TcpListener::bind`, or `reuseport` listeners sharing one port
/// (port 0 picks a free one for all).
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
pub fn start(listeners: Vec<TcpListener>) {
    for l in listeners {
        thread::spawn(move || serve(&l));
    }
}

/// A response as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (read by `Content-Length`).
    pub body: Vec<u8>,
    /// The response said `Connection: close`.
    pub close: bool,
}

/// A client's side of a connection: reads responses one after the other from a buffer, as
/// the server reads requests.
pub struct ClientConn {
    /// The connection.
    pub stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

/// An `InvalidData` error saying `what`.
fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl ClientConn {
    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// The connection's error.
    pub fn connect(addr: SocketAddr) -> io::Result<ClientConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(ClientConn {
            stream,
            buf: Vec::with_capacity(4096),
            start: 0,
        })
    }

    /// Sends `bytes` (one request, several, or part of one) with one `write_all`.
    ///
    /// # Errors
    ///
    /// The write's error.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        (&self.stream).write_all(bytes)
    }

    /// Reads more bytes into the buffer; `UnexpectedEof` when the server has closed.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = (&self.stream).read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads the next response (of a `HEAD` request when `head`: no body follows).
    ///
    /// # Errors
    ///
    /// An I/O error, end of file, or a response that does not parse.
    pub fn response(&mut self, head: bool) -> io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            let len = match r.parse(&self.buf[self.start..]) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => {
                    self.fill()?;
                    continue;
                }
                Err(e) => return Err(invalid(format!("bad response head: {e}"))),
            };
            let status = r.code.unwrap_or(0);
            let mut body_len = 0;
            let mut close = false;
            for h in r.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    body_len = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or_else(|| invalid("bad Content-Length".into()))?;
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = has_token(h.value, b"close");
                }
            }
            if head {
                body_len = 0;
            }
            let body_at = self.start + len;
            while self.buf.len() < body_at + body_len {
                self.fill()?;
            }
            let body = self.buf[body_at..body_at + body_len].to_vec();
            self.start = body_at + body_len;
            if self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
            }
            return Ok(Response {
                status,
                body,
                close,
            });
        }
    }

    /// Checks that the server has closed the connection: end of file with nothing before it.
    ///
    /// # Errors
    ///
    /// `InvalidData` if more bytes arrive; an I/O error.
    pub fn expect_closed(&mut self) -> io::Result<()> {
        if self.start < self.buf.len() {
            return Err(invalid("bytes after the last response".into()));
        }
        match self.fill() {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(invalid("bytes after the last response".into())),
        }
    }
}

/// A plain `GET` request line and headers.
pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Checks that `r` is the hello response, kept open or closed as `close` says.
///
/// # Errors
///
/// `InvalidData` describing the difference.
pub fn check_hello(r: &Response, close: bool) -> io::Result<()> {
    if r.status != 200 || r.body != BODY || r.close != close {
        return Err(invalid(format!(
            "expected 200 Hello (close: {close}), got {} {:?} (close: {})",
            r.status,
            String::from_utf8_lossy(&r.body),
            r.close
        )));
    }
    Ok(())
}

/// One client's session: `requests` requests on one keep-alive connection in every shape the
/// server must handle (single, two pipelined in one write, one split across two writes with a
/// pause between, `HEAD`, a `POST` with a body, HTTP/1.0 keep-alive), each response checked,
/// then a last request with `Connection: close` after which the server must close. Returns
/// the number of requests answered.
///
/// # Errors
///
/// The first unexpected response or I/O error.
pub fn client_session(addr: SocketAddr, requests: usize) -> io::Result<u64> {
    let mut c = ClientConn::connect(addr)?;
    let mut done = 0u64;
    let mut pipelined = Vec::with_capacity(2 * GET.len());
    pipelined.extend_from_slice(GET);
    pipelined.extend_from_slice(b"GET /two?x=1 HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
    let mut i = 0;
    while i < requests {
        match i % 6 {
            1 => {
                c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?;
                check_hello(&c.response(false)?, false)?;
            }
            2 if i + 1 < requests => {
                c.send(&pipelined)?;
                check_hello(&c.response(false)?, false)?;
                check_hello(&c.response(false)?, false)?;
                i += 1;
                done += 1;
            }
            3 => {
                let (a, b) = GET.split_at(9);
                c.send(a)?;
                thread::sleep(Duration::from_millis(1));
                c.send(b)?;
                check_hello(&c.response(false)?, false)?;
            }
            4 => {
                c.send(b"HEAD /h HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
                let r = c.response(true)?;
                if r.status != 200 || !r.body.is_empty() {
                    return Err(invalid(format!("HEAD gave {r:?}")));
                }
            }
            5 => {
                c.send(b"POST /p HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")?;
                check_hello(&c.response(false)?, false)?;
            }
            _ => {
                c.send(GET)?;
                check_hello(&c.response(false)?, false)?;
            }
        }
        i += 1;
        done += 1;
    }
    c.send(b"GET /bye HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    check_hello(&c.response(false)?, true)?;
    c.expect_closed()?;
    Ok(done + 1)
}

/// Sends a head that does not parse after a good request: the good one must be answered, then
/// `400` with `Connection: close`, then the server must close.
///
/// # Errors
///
/// The first unexpected response or I/O error.
pub fn bad_request_session(addr: SocketAddr) -> io::Result<()> {
    let mut c = ClientConn::connect(addr)?;
    let mut bytes = GET.to_vec();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n");
    c.send(&bytes)?;
    check_hello(&c.response(false)?, false)?;
    let r = c.response(false)?;
    if r.status != 400 || !r.close {
        return Err(invalid(format!("a bad head gave {r:?}")));
    }
    c.expect_closed()
}

/// What a self-test did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Keep-alive clients run.
    pub clients: usize,
    /// Requests answered and checked.
    pub requests: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// The self-test, run inside a runtime: starts the server on `127.0.0.1:0`, runs `clients`
/// client tasks of `requests` requests each (see [`client_session`]) and a bad request
/// (see [`bad_request_session`]).
///
/// # Errors
///
/// The first client's error.
pub fn selftest(reuseport: Option<usize>, clients: usize, requests: usize) -> io::Result<Report> {
    let started = Instant::now();
    let listeners = bind(SocketAddr::from(([127, 0, 0, 1], 0)), reuseport)?;
    let addr = listeners[0].local_addr()?;
    start(listeners);
    let handles: Vec<_> = (0..clients)
        .map(|_| thread::spawn(move || client_session(addr, requests)))
        .collect();
    bad_request_session(addr)?;
    let mut total = 0;
    for h in handles {
        total += h.join().expect("client task panicked")?;
    }
    Ok(Report {
        clients,
        requests: total + 2,
        elapsed: started.elapsed(),
    })
}

/// Prints `problem` and the usage, and exits with status 2.
fn usage(problem: &str) -> ! {
    eprintln!("http: {problem}");
    eprintln!("usage: http [ADDR] [--reuseport N] [--domains D] [--selftest]");
    std::process::exit(2);
}

/// The positive number given after `flag`, or the usage.
fn count(v: Option<String>, flag: &str) -> usize {
    match v.as_deref().map(str::parse::<usize>) {
        Some(Ok(n)) if n > 0 => n,
        _ => usage(&format!("{flag} needs a positive number")),
    }
}

/// Parses the command line, then serves forever or runs the self-test.
fn main() {
    let mut addr: SocketAddr = std::env::var("HTTP_ADDR")
        .unwrap_or_else(|_| DEFAULT_ADDR.into())
        .parse()
        .unwrap_or_else(|_| usage("HTTP_ADDR is not an address"));
    let (mut reuseport, mut domains) = (None, None);
    let mut selftest_mode = std::env::var_os("BOBINE_SELFTEST").is_some_and(|v| v != "0");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reuseport" => reuseport = Some(count(args.next(), "--reuseport")),
            "--domains" => domains = Some(count(args.next(), "--domains")),
            "--selftest" => selftest_mode = true,
            "-h" | "--help" => usage("an HTTP/1.1 hello-world server"),
            _ => {
                addr = a
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("not an address: {a}")))
            }
        }
    }
    let mut runtime = bobine::Builder::new();
    if let Some(d) = domains.or(reuseport) {
        runtime = runtime.domains(d);
    }
    if selftest_mode {
        match runtime.run(|| selftest(reuseport, 50, 200)) {
            Ok(r) => println!(
                "http selftest: ok: {} keep-alive clients, {} requests answered and checked \
                 (pipelined, split, HEAD, POST, HTTP/1.0, close, 400), {:.0?}",
                r.clients, r.requests, r.elapsed
            ),
            Err(e) => {
                eprintln!("http selftest: FAILED: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    runtime.run(|| {
        let mut listeners = bind(addr, reuseport).unwrap_or_else(|e| {
            eprintln!("http: cannot listen on {addr}: {e}");
            std::process::exit(1);
        });
        let at = listeners[0].local_addr().map_or(addr, |a| a);
        println!(
            "http: listening on http://{at}/ ({} accept loop(s))",
            listeners.len()
        );
        let last = listeners.pop().expect("at least one listener");
        start(listeners);
        serve(&last)
    })
}
