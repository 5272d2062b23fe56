//! A WebSocket echo server built on the blocking `tungstenite` library, unchanged.
//!
//! `tungstenite` knows nothing of bobine: it wants a `Read + Write` stream and calls `read`
//! and `write` until they return. Given a `bobine::net::TcpStream`, those calls park the task
//! instead of blocking the OS thread, so the library's plain blocking API serves thousands of
//! connections on a few domains, one task per connection, with no async runtime and no
//! adapter. The same holds for the client side (`tungstenite::client`), which the self-test
//! uses.
//!
//! ```text
//! cargo run --release --example websocket             # serves ws://127.0.0.1:9001 forever
//! cargo run --example websocket -- --selftest         # serves port 0, runs clients, exits
//! ```
//!
//! Options: `ADDR` (default `127.0.0.1:9001`, or `WS_ADDR`), `--domains D`, `--selftest` (or
//! `BOBINE_SELFTEST=1`): start on an ephemeral port, run 50 tungstenite clients that send
//! text and binary messages (up to 200 KiB, so frames span many reads) and a ping, check every
//! echo and the pong, close, print a summary and exit (0 when everything matched).

// The functions return tungstenite's own `Result`, whose error is large; tungstenite allows
// the same lint for the same reason.
#![allow(clippy::result_large_err)]

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bobine::net::{TcpListener, TcpStream};
use bobine::thread;
use tungstenite::{Error, HandshakeError, Message};

/// The address served when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9001";

/// The error inside a failed handshake. Bobine's streams never return `WouldBlock` to a
/// blocking caller, so a handshake is never interrupted half-way; if it were, that is an I/O
/// error here.
fn handshake_error<R: tungstenite::handshake::HandshakeRole>(e: HandshakeError<R>) -> Error {
    match e {
        HandshakeError::Failure(e) => e,
        HandshakeError::Interrupted(_) => Error::Io(io::ErrorKind::WouldBlock.into()),
    }
}

/// Serves one connection: the WebSocket handshake, then every text or binary message is sent
/// back as it came, until the client closes. Pings are answered and a close is acknowledged
/// by tungstenite itself (the replies go out with the next `read`). Returns the number of
/// messages echoed.
///
/// # Errors
///
/// A failed handshake, a protocol error or an I/O error of this connection.
pub fn serve_connection(stream: TcpStream) -> tungstenite::Result<u64> {
    let mut ws = tungstenite::accept(stream).map_err(handshake_error)?;
    let mut echoed = 0;
    loop {
        match ws.read() {
            Ok(msg) if msg.is_text() || msg.is_binary() => {
                ws.send(msg)?;
                echoed += 1;
            }
            Ok(_) => {}
            Err(Error::ConnectionClosed) => return Ok(echoed),
            Err(e) => return Err(e),
        }
    }
}

/// Accepts connections on `listener` forever and serves each in a task of its own. An
/// `accept` error (other than those bobine retries itself) is reported and the loop goes on
/// after a short pause; a failed spawn drops that one connection.
pub fn serve(listener: &TcpListener) -> ! {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("websocket: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let spawned = thread::Builder::new().spawn(move || match serve_connection(stream) {
            Ok(_) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => {}
            Err(e) => eprintln!("websocket: {peer}: {e}"),
        });
        if let Err(e) = spawned {
            eprintln!("websocket: no task for {peer}: {e}");
        }
    }
}

/// The message number `m` of client `seed`: text and binary in turn, from a few bytes to
/// 200 KiB, with reproducible contents.
pub fn message(seed: u64, m: usize) -> Message {
    let len = match m % 4 {
        0 => 5,
        1 => 300,
        2 => 70_000,
        _ => 1 + (seed as usize * 7919 + m * 104_729) % (200 * 1024),
    };
    if m % 2 == 0 {
        let text: String = (0..len)
            .map(|i| char::from(b'a' + ((seed as usize + m + i) % 26) as u8))
            .collect();
        Message::text(text)
    } else {
        let bin: Vec<u8> = (0..len)
            .map(|i| (seed as usize ^ (m * 31) ^ i) as u8)
            .collect();
        Message::binary(bin)
    }
}

/// A tungstenite client over a bobine `TcpStream`: handshake, `messages` messages (see
/// [`message`]) each checked when it comes back, a ping that must be answered with the same
/// payload, then the close handshake. Returns the bytes echoed.
///
/// # Errors
///
/// The handshake's, the protocol's or the connection's error; `InvalidData` for a wrong echo.
pub fn client(addr: SocketAddr, seed: u64, messages: usize) -> tungstenite::Result<u64> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}/echo");
    let (mut ws, response) = tungstenite::client(url, stream).map_err(handshake_error)?;
    let wrong = |what: String| Error::Io(io::Error::new(io::ErrorKind::InvalidData, what));
    if response.status() != 101 {
        return Err(wrong(format!("handshake answered {}", response.status())));
    }
    let mut bytes = 0;
    for m in 0..messages {
        let sent = message(seed, m);
        ws.send(sent.clone())?;
        let back = ws.read()?;
        if back != sent {
            return Err(wrong(format!(
                "client {seed}: message {m} came back different"
            )));
        }
        bytes += sent.len() as u64;
    }
    let ping = format!("ping from {seed}");
    ws.send(Message::Ping(ping.clone().into_bytes().into()))?;
    match ws.read()? {
        Message::Pong(p) if p[..] == *ping.as_bytes() => {}
        other => return Err(wrong(format!("client {seed}: {other:?} instead of a pong"))),
    }
    ws.close(None)?;
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Ok(other) => return Err(wrong(format!("client {seed}: {other:?} after close"))),
            Err(Error::ConnectionClosed) => return Ok(bytes),
            Err(e) => return Err(e),
        }
    }
}

/// What a self-test did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Clients run.
    pub clients: usize,
    /// Messages echoed and checked.
    pub messages: usize,
    /// Bytes echoed and checked.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// The self-test, run inside a runtime: starts the server on `127.0.0.1:0` and runs `clients`
/// client tasks of `messages` messages each (see [`client`]).
///
/// # Errors
///
/// The first client's error.
pub fn selftest(clients: usize, messages: usize) -> tungstenite::Result<Report> {
    let started = Instant::now();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || serve(&listener));
    let handles: Vec<_> = (0..clients as u64)
        .map(|seed| thread::spawn(move || client(addr, seed, messages)))
        .collect();
    let mut bytes = 0;
    for h in handles {
        bytes += h.join().expect("client task panicked")?;
    }
    Ok(Report {
        clients,
        messages: clients * messages,
        bytes,
        elapsed: started.elapsed(),
    })
}

/// Prints `problem` and the usage, and exits with status 2.
fn usage(problem: &str) -> ! {
    eprintln!("websocket: {problem}");
    eprintln!("usage: websocket [ADDR] [--domains D] [--selftest]");
    std::process::exit(2);
}

/// Parses the command line, then serves forever or runs the self-test.
fn main() {
    let mut addr: SocketAddr = std::env::var("WS_ADDR")
        .unwrap_or_else(|_| DEFAULT_ADDR.into())
        .parse()
        .unwrap_or_else(|_| usage("WS_ADDR is not an address"));
    let mut domains = None;
    let mut selftest_mode = std::env::var_os("BOBINE_SELFTEST").is_some_and(|v| v != "0");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--domains" => match args.next().map(|v| v.parse::<usize>()) {
                Some(Ok(n)) if n > 0 => domains = Some(n),
                _ => usage("--domains needs a positive number"),
            },
            "--selftest" => selftest_mode = true,
            "-h" | "--help" => usage("a WebSocket echo server"),
            _ => {
                addr = a
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("not an address: {a}")))
            }
        }
    }
    let mut runtime = bobine::Builder::new();
    if let Some(d) = domains {
        runtime = runtime.domains(d);
    }
    if selftest_mode {
        match runtime.run(|| selftest(50, 20)) {
            Ok(r) => println!(
                "websocket selftest: ok: {} tungstenite clients, {} messages ({} bytes) echoed \
                 and checked, pings answered, closed cleanly, {:.0?}",
                r.clients, r.messages, r.bytes, r.elapsed
            ),
            Err(e) => {
                eprintln!("websocket selftest: FAILED: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    runtime.run(|| {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
            eprintln!("websocket: cannot listen on {addr}: {e}");
            std::process::exit(1);
        });
        let at = listener.local_addr().map_or(addr, |a| a);
        println!("websocket: echoing on ws://{at}/");
        serve(&listener)
    })
}
