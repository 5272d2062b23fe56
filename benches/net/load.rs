//! The load generator: one thread driving every connection of a case through one
//! level-triggered epoll, and the figures of its measurement window ([`Sample`]).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::cases::{Case, Config, Workload};
use super::os::{ProcCpu, run_delay, thread_cpu};
use super::server::{ServerProcess, free_port};
use super::{ECHO_LEN, STALL};

/// One client connection.
struct ClientConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` received and not yet consumed.
    len: usize,
}

/// What the load generator sends and how it knows a response is complete.
struct Protocol {
    workload: Workload,
    request: Vec<u8>,
}

impl Protocol {
    fn new(workload: Workload, port: u16) -> Protocol {
        let request = match workload {
            Workload::Echo => (0..ECHO_LEN).map(|i| b'a' + (i % 26) as u8).collect(),
            Workload::Http => {
                format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes()
            }
        };
        Protocol { workload, request }
    }

    /// The length of the complete response at the start of `buf`, `None` if incomplete.
    fn response_len(&self, buf: &[u8]) -> io::Result<Option<usize>> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        match self.workload {
            Workload::Echo => {
                if buf.len() < ECHO_LEN {
                    return Ok(None);
                }
                if buf[..ECHO_LEN] != self.request[..] {
                    return Err(bad("echo: the message came back altered".to_owned()));
                }
                Ok(Some(ECHO_LEN))
            }
            Workload::Http => {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut rsp = httparse::Response::new(&mut headers);
                let head = match rsp.parse(buf) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(e) => return Err(bad(format!("http: bad response: {e}"))),
                };
                if rsp.code != Some(200) {
                    return Err(bad(format!("http: status {:?}", rsp.code)));
                }
                let body = rsp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .ok_or_else(|| bad("http: no Content-Length".to_owned()))?;
                Ok((buf.len() >= head + body).then_some(head + body))
            }
        }
    }
}

impl ClientConn {
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        // At most one small request is outstanding, so the socket buffer always has room.
        (&self.stream).write_all(request)
    }

    /// Reads what is there; for each complete response, sends the next request. Returns the
    /// number of responses completed.
    fn on_readable(&mut self, protocol: &Protocol) -> io::Result<u64> {
        if self.len == self.buf.len() {
            self.buf.resize(2 * self.buf.len(), 0);
        }
        match (&self.stream).read(&mut self.buf[self.len..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed",
                ));
            }
            Ok(n) => self.len += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut done = 0;
        while let Some(n) = protocol.response_len(&self.buf[..self.len])? {
            self.buf.copy_within(n..self.len, 0);
            self.len -= n;
            done += 1;
            self.send(&protocol.request)?;
        }
        Ok(done)
    }
}

/// The counters at one instant of a run.
struct Snapshot {
    at: Instant,
    done: u64,
    server: ProcCpu,
    client: Duration,
    /// The load generator's run-queue wait so far, in seconds.
    client_queued: f64,
}

impl Snapshot {
    fn take(done: u64, server_pid: u32) -> io::Result<Snapshot> {
        Ok(Snapshot {
            at: Instant::now(),
            done,
            server: ProcCpu::read(server_pid)?,
            client: thread_cpu(),
            client_queued: run_delay(std::path::Path::new("/proc/thread-self/schedstat")),
        })
    }
}

/// The figures of one case's measurement window.
#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    /// Requests per second.
    pub(crate) rate: f64,
    /// Server CPU µs per request: total, user, system.
    pub(crate) cpu_us: f64,
    pub(crate) user_us: f64,
    pub(crate) sys_us: f64,
    /// Server CPU time / wall time, in %.
    pub(crate) server_busy: f64,
    /// Load generator CPU time / wall time, in %.
    pub(crate) client_busy: f64,
    /// Server context switches per request.
    pub(crate) switches: f64,
    /// Time the server's threads waited for the CPU / wall time, in % (another process on its
    /// CPU: the run is disturbed).
    pub(crate) server_queued: f64,
    /// The same for the load generator.
    pub(crate) client_queued: f64,
}

impl Sample {
    fn between(a: &Snapshot, b: &Snapshot) -> Sample {
        let wall = (b.at - a.at).as_secs_f64();
        let ops = (b.done - a.done).max(1) as f64;
        let user = b.server.user - a.server.user;
        let sys = b.server.sys - a.server.sys;
        Sample {
            rate: ops / wall,
            cpu_us: (user + sys) * 1e6 / ops,
            user_us: user * 1e6 / ops,
            sys_us: sys * 1e6 / ops,
            server_busy: 100.0 * (user + sys) / wall,
            client_busy: 100.0 * (b.client - a.client).as_secs_f64() / wall,
            switches: b.server.switches.saturating_sub(a.server.switches) as f64 / ops,
            server_queued: 100.0 * (b.server.queued - a.server.queued) / wall,
            client_queued: 100.0 * (b.client_queued - a.client_queued) / wall,
        }
    }
}

/// Drives the server at `port` (process `server_pid`) with `workload` and measures it.
fn drive(workload: Workload, port: u16, server_pid: u32, cfg: &Config) -> io::Result<Sample> {
    let protocol = Protocol::new(workload, port);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let mut conns = Vec::with_capacity(workload.connections());
    for i in 0..workload.connections() {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        epoll.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
        conns.push(ClientConn {
            stream,
            buf: vec![0; 4096],
            len: 0,
        });
    }
    for c in &mut conns {
        c.send(&protocol.request)?;
    }
    let mut events = vec![EpollEvent::empty(); 256];
    let mut done = 0u64;
    let warm_end = Instant::now() + cfg.warmup;
    let mut first: Option<Snapshot> = None;
    let mut last_progress = Instant::now();
    loop {
        let n = match epoll.wait(&mut events, 100u16) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            if last_progress.elapsed() >= STALL {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no response for {STALL:?}"),
                ));
            }
        } else {
            last_progress = Instant::now();
        }
        for ev in &events[..n] {
            done += conns[ev.data() as usize].on_readable(&protocol)?;
        }
        match &first {
            None if Instant::now() >= warm_end => first = Some(Snapshot::take(done, server_pid)?),
            Some(f) if f.at.elapsed() >= cfg.measure => {
                let last = Snapshot::take(done, server_pid)?;
                return Ok(Sample::between(f, &last));
            }
            _ => {}
        }
    }
}

pub(crate) fn run_case(case: Case, cfg: &Config) -> io::Result<Sample> {
    let port = free_port()?;
    let server = ServerProcess::start(&case.name(), port, cfg)?;
    drive(case.workload, port, server.child.id(), cfg)
}
