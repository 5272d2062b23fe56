//! bobine's HTTP server (the `http` workload) and the connection code it shares with tokio's:
//! [`HttpConn`] parses requests with `httparse` and answers with may_minihttp's exact bytes,
//! dated by a clock thread as may_minihttp does.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::server::ready;

/// Body of every HTTP response.
const HTTP_BODY: &[u8] = b"Hello, world!";

/// Serves HTTP on one connection until the peer closes (or an error); blocking-style, for
/// bobine tasks.
fn http_blocking(mut s: impl Read + Write) {
    let mut conn = HttpConn::new();
    loop {
        let n = match s.read(conn.spare()) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if conn.received(n).is_err() {
            return;
        }
        if !conn.out.is_empty() {
            if s.write_all(&conn.out).is_err() {
                return;
            }
            conn.out.clear();
        }
    }
}

pub(crate) fn bobine_http(addr: SocketAddr) -> io::Result<()> {
    start_date_clock();
    bobine::Builder::new().domains(1).run(move || {
        let listener = bobine::net::TcpListener::bind(addr)?;
        ready();
        loop {
            let (stream, _) = listener.accept()?;
            drop(bobine::thread::spawn(move || http_blocking(stream)));
        }
    })
}

/// One HTTP connection's buffers: requests read but not yet parsed, responses not yet written.
pub(crate) struct HttpConn {
    buf: Vec<u8>,
    /// Bytes of `buf` holding received data.
    filled: usize,
    /// Responses to write.
    pub(crate) out: Vec<u8>,
}

impl HttpConn {
    pub(crate) fn new() -> HttpConn {
        HttpConn {
            buf: vec![0; 4096],
            filled: 0,
            out: Vec::with_capacity(4096),
        }
    }

    /// Where the next read goes (the buffer doubles when full).
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.filled == self.buf.len() {
            self.buf.resize(2 * self.buf.len(), 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Takes `n` bytes just read into [`HttpConn::spare`], answering every complete request
    /// (into `out`). Requests have no body (GET); the rest of the request is ignored.
    pub(crate) fn received(&mut self, n: usize) -> io::Result<()> {
        self.filled += n;
        let mut start = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&self.buf[start..self.filled]) {
                Ok(httparse::Status::Complete(len)) => {
                    start += len;
                    write_response(&mut self.out);
                }
                Ok(httparse::Status::Partial) => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
        self.buf.copy_within(start..self.filled, 0);
        self.filled -= start;
        Ok(())
    }
}

/// Appends the response may_minihttp gives for `Hello, world!`, byte for byte.
fn write_response(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 200 Ok\r\nServer: M\r\nDate: ");
    out.extend_from_slice(&current_date()[..DATE_LEN]);
    out.extend_from_slice(b"\r\nContent-Length: 13\r\n\r\n");
    out.extend_from_slice(HTTP_BODY);
}

/// Length of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
const DATE_LEN: usize = 29;

/// The current HTTP date, in 4 words, updated every 500 ms by the thread of
/// [`start_date_clock`] as may_minihttp does with a coroutine. A reader may see a mix of two
/// dates; that does not matter here.
static DATE: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

fn store_date(date: &[u8; DATE_LEN]) {
    let mut bytes = [0u8; 32];
    bytes[..DATE_LEN].copy_from_slice(date);
    for (word, chunk) in DATE.iter().zip(bytes.chunks_exact(8)) {
        let chunk: [u8; 8] = chunk.try_into().expect("8 bytes");
        word.store(u64::from_ne_bytes(chunk), Ordering::Relaxed);
    }
}

fn current_date() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (word, chunk) in DATE.iter().zip(bytes.chunks_exact_mut(8)) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    bytes
}

/// Sets the date and starts the thread that keeps it current.
pub(crate) fn start_date_clock() {
    let now = || {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        http_date(secs)
    };
    store_date(&now());
    std::thread::Builder::new()
        .name("date".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                store_date(&now());
            }
        })
        .expect("date thread");
}

/// Formats `unix` (seconds since 1970) as an HTTP date.
fn http_date(unix: u64) -> [u8; DATE_LEN] {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from a day count (Howard Hinnant's algorithm, non-negative days only).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let s = format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    s.as_bytes().try_into().expect("an HTTP date is 29 bytes")
}
