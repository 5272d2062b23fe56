//! TLS on tasks: rustls's `StreamOwned` over a `bobine::net::TcpStream`, unchanged.
//!
//! rustls is pure computation over `Read + Write`: it never touches a socket itself. Hand it
//! a bobine `TcpStream` and every read or write it makes on the socket parks the task when
//! the socket is not ready, so the domain runs other tasks meanwhile; nothing else is needed.
//! The demo makes a self-signed certificate for `localhost` at run time (rcgen), starts a
//! TLS server task that serves each connection in a task of its own (it answers every line
//! with the line in upper case), and runs client tasks that each exchange a number of lines
//! and one large line with it, half of them over TLS 1.3 and half over TLS 1.2. Both sides
//! check every answer, and `main` prints the counts.
//!
//! The crypto provider (ring) is installed explicitly, so the build needs no cmake or nasm
//! (aws-lc-rs, rustls's default provider, does); ring has no post-quantum key exchange.
//!
//! ```text
//! cargo run --release --example tls                   # 8 clients × 100 lines
//! cargo run --release --example tls -- --domains 1 --clients 20 --lines 50
//! ```

use std::error::Error;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use bobine::net::{TcpListener, TcpStream};
use bobine::thread;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

/// Any error of the demo.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The length of the large line each client sends after its short ones: many TLS records,
/// more than one socket read on the other side.
pub const LARGE_LINE: usize = 100_000;

/// The server's and the clients' configurations around one self-signed certificate.
pub struct Configs {
    /// The server's: the certificate and its key, no client authentication.
    pub server: Arc<ServerConfig>,
    /// A client's that trusts the certificate, TLS 1.3 or 1.2 (rustls's safe defaults).
    pub client: Arc<ClientConfig>,
    /// A client's that trusts the certificate and speaks TLS 1.2 only.
    pub client_tls12: Arc<ClientConfig>,
}

/// Makes a self-signed certificate for `localhost` and the configurations that use it, with
/// the ring provider installed explicitly (no process-wide default is needed).
///
/// # Errors
///
/// rcgen's or rustls's error.
pub fn configs() -> Result<Configs, BoxError> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    // rustls 0.23.48 deprecates the ring provider because it has no post-quantum key
    // exchange (aws-lc-rs has); ring is kept on purpose: it builds with a C compiler alone.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let client_tls12 = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Configs {
        server: Arc::new(server),
        client: Arc::new(client),
        client_tls12: Arc::new(client_tls12),
    })
}

/// Serves one TLS connection: answers every line with the line in upper case until the
/// client sends `close_notify`. Returns the number of lines answered.
///
/// # Errors
///
/// A handshake, TLS or socket error.
pub fn serve_connection(stream: TcpStream, config: Arc<ServerConfig>) -> io::Result<u64> {
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    // The bobine part: the `TcpStream` under rustls parks this task whenever the socket is
    // not ready, so one domain serves many connections and clients at once.
    let mut tls = BufReader::new(StreamOwned::new(conn, stream));
    let mut line = String::new();
    let mut answered = 0;
    loop {
        line.clear();
        if tls.read_line(&mut line)? == 0 {
            // The client's close_notify: end of the stream.
            return Ok(answered);
        }
        let out = tls.get_mut();
        out.write_all(line.to_uppercase().as_bytes())?;
        out.flush()?;
        answered += 1;
    }
}

/// Accepts `connections` connections on `listener`, serves each in a task of its own and
/// returns the total of lines answered.
///
/// # Errors
///
/// The first accept or connection error.
pub fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    connections: usize,
) -> io::Result<u64> {
    let mut handles = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (stream, _) = listener.accept()?;
        let config = config.clone();
        handles.push(thread::spawn(move || serve_connection(stream, config)));
    }
    let mut total = 0;
    for h in handles {
        total += h.join().expect("a connection task panicked")?;
    }
    Ok(total)
}

/// What one client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientReport {
    /// Lines sent and answered correctly (the large one included).
    pub lines: u64,
    /// The TLS version the handshake settled on.
    pub version: rustls::ProtocolVersion,
}

/// One client: connects to `addr`, sends `lines` short lines and one of [`LARGE_LINE`]
/// bytes, checks each answer, then closes with `close_notify`.
///
/// Works in a task (it parks) and on a plain thread (it blocks), as bobine sockets do.
///
/// # Errors
///
/// A handshake, TLS or socket error, or a wrong answer (`InvalidData`).
pub fn client(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    id: usize,
    lines: usize,
) -> io::Result<ClientReport> {
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut tls = BufReader::new(StreamOwned::new(conn, TcpStream::connect(addr)?));
    let mut answer = String::new();
    let large = format!("{}\n", "abcdefghij".repeat(LARGE_LINE / 10));
    for i in 0..=lines {
        let line = if i < lines {
            format!("client {id} says hello number {i}\n")
        } else {
            large.clone()
        };
        let out = tls.get_mut();
        out.write_all(line.as_bytes())?;
        out.flush()?;
        answer.clear();
        tls.read_line(&mut answer)?;
        if answer != line.to_uppercase() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("client {id}, line {i}: wrong answer {:.60?}", answer),
            ));
        }
    }
    let stream = tls.get_mut();
    let version = stream.conn.protocol_version().expect("handshake done");
    stream.conn.send_close_notify();
    stream.flush()?;
    Ok(ClientReport {
        lines: lines as u64 + 1,
        version,
    })
}

/// What the demo did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Clients run.
    pub clients: usize,
    /// Lines the clients sent and found correctly answered.
    pub lines_checked: u64,
    /// Lines the server answered.
    pub lines_served: u64,
    /// Clients whose connection settled on TLS 1.3.
    pub tls13: usize,
    /// Clients whose connection settled on TLS 1.2.
    pub tls12: usize,
}

/// The demo, run inside a runtime: a server task on `127.0.0.1:0` and `clients` client
/// tasks of `lines` lines each, every other one restricted to TLS 1.2.
///
/// # Errors
///
/// The first error of the server or a client.
pub fn demo(clients: usize, lines: usize) -> Result<Report, BoxError> {
    let configs = configs()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server_config = configs.server.clone();
    let server = thread::spawn(move || serve(listener, server_config, clients));
    let handles: Vec<_> = (0..clients)
        .map(|id| {
            let config = if id % 2 == 0 {
                configs.client.clone()
            } else {
                configs.client_tls12.clone()
            };
            thread::spawn(move || client(addr, config, id, lines))
        })
        .collect();
    let mut report = Report {
        clients,
        lines_checked: 0,
        lines_served: 0,
        tls13: 0,
        tls12: 0,
    };
    for h in handles {
        let c = h.join().expect("a client task panicked")?;
        report.lines_checked += c.lines;
        match c.version {
            rustls::ProtocolVersion::TLSv1_3 => report.tls13 += 1,
            rustls::ProtocolVersion::TLSv1_2 => report.tls12 += 1,
            _ => {}
        }
    }
    report.lines_served = server.join().expect("the server task panicked")?;
    Ok(report)
}

/// Prints `problem` and the usage, and exits with status 2.
fn usage(problem: &str) -> ! {
    eprintln!("tls: {problem}");
    eprintln!("usage: tls [--domains D] [--clients N] [--lines L]");
    std::process::exit(2);
}

/// The positive number after `flag`, or the usage.
fn number(v: Option<String>, flag: &str) -> usize {
    match v.as_deref().map(str::parse::<usize>) {
        Some(Ok(n)) if n > 0 => n,
        _ => usage(&format!("{flag} needs a positive number")),
    }
}

/// Parses the command line, runs the demo and prints its counts.
fn main() {
    let (mut domains, mut clients, mut lines) = (None, 8, 100);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--domains" => domains = Some(number(args.next(), "--domains")),
            "--clients" => clients = number(args.next(), "--clients"),
            "--lines" => lines = number(args.next(), "--lines"),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let mut runtime = bobine::Builder::new();
    if let Some(d) = domains {
        runtime = runtime.domains(d);
    }
    match runtime.run(|| demo(clients, lines)) {
        Ok(r) => println!(
            "tls: ok: {} clients ({} TLS 1.3, {} TLS 1.2), {} lines answered by the server, \
             {} checked by the clients",
            r.clients, r.tls13, r.tls12, r.lines_served, r.lines_checked
        ),
        Err(e) => {
            eprintln!("tls: FAILED: {e}");
            std::process::exit(1);
        }
    }
}
