//! Servers side by side: bobine's `bobine::net` against tokio (current-thread) and may, measured
//! by the server's CPU time per request as well as by the request rate (see the "Servers"
//! section of `TARGETS.md`).
//!
//! Workloads (`<workload>/<server>` names the cases):
//!
//! - `echo`: 50 connections, each in a closed loop writing a 64-byte message and reading it
//!   back. Servers: `bobine` (one domain, a task per connection, blocking-style `read` /
//!   `write_all`), `tokio-ct` (current-thread runtime, a spawned task per connection,
//!   `tokio::net`), `may` (one worker, a coroutine per connection, `may::net`). Every echo server
//!   sets `TCP_NODELAY` and echoes through a 4 KiB heap buffer.
//! - `http`: HTTP/1.1 plaintext keep-alive, 100 connections, each in a closed loop (as wrk does)
//!   sending `GET / HTTP/1.1` with a `Host` header and reading the whole response. Servers:
//!   `bobine` and `tokio-ct` run the same connection code (one `read`, parse every complete
//!   request with `httparse`, one `write_all` of the responses, [`HttpConn`]) with a task per
//!   connection; `may-minihttp` is `may_minihttp::HttpServer` on one may worker. All three
//!   answer with the same bytes (may_minihttp's: status, `Server`, `Date`, `Content-Length`,
//!   `Hello, world!`), and none sets `TCP_NODELAY` (may_minihttp does not).
//! - `idle` (bobine only, the case `idle/bobine`): the bobine echo server (listening with a
//!   backlog of 4096) gets 19 000 connections, opened in batches of 1000 (each batch waited on
//!   until the server holds it), held idle for a second (`NET_BENCH_IDLE_SECS`); then the
//!   server's resident memory is read from `/proc/<pid>/status`, and one 64-byte message goes
//!   out on every connection; every echo must come back. Both processes raise their soft
//!   descriptor limit to the hard one. It runs once, whatever `NET_BENCH_ROUNDS` says.
//!
//! How it runs: every server is a child process (this bench binary re-executed with
//! `NET_BENCH_SERVE=<case>`) pinned, all its threads, to one CPU (`NET_BENCH_SERVER_CPU`, 0 by
//! default); it binds the port the parent picked and says `ready` on its standard output. The
//! load generator is the same for every server: one thread of the bench process pinned to
//! another CPU (`NET_BENCH_CLIENT_CPU`, 1), driving all the connections through one level-
//! triggered epoll (connections are opened before the clock starts). After a warm-up
//! (`NET_BENCH_WARMUP_SECS`, default 1) it counts completed requests for `NET_BENCH_SECS`
//! (default 3) and reads the server's CPU time over exactly that window from
//! `/proc/<pid>/stat` (user and system, all threads), its context switches from
//! `/proc/<pid>/task/*/status`, and its own CPU time with `getrusage(RUSAGE_THREAD)`; the time
//! each side spent runnable but waiting for its CPU (`schedstat`'s run delay, "queued") says
//! whether other processes disturbed the run: rates mean little unless both are near 0. The
//! kernel here samples the user/system split at the scheduler tick (`CONFIG_TICK_CPU_ACCOUNTING`),
//! so the user-space figure of one 3-second window is good to about ±15%. Each case runs
//! `NET_BENCH_ROUNDS` times (default 2), round-robin with the others, and the tables give the
//! round of each case with the least server CPU per request: other load on the machine only
//! ever adds to that figure (without `CONFIG_IRQ_TIME_ACCOUNTING` the softirq work of other
//! processes' packets is charged to whatever task it interrupts), so the least disturbed round
//! is the best estimate. `NET_BENCH_PICK=median` gives the median of each figure instead. Raise
//! `NET_BENCH_SECS` or `NET_BENCH_ROUNDS` to tighten the figures. On a shared machine whose
//! scheduler groups processes by session (`/proc/sys/kernel/sched_autogroup_enabled`), a session
//! of its own with a raised priority keeps other work off the pinned CPUs:
//! `setsid sh -c 'echo -20 > /proc/self/autogroup; exec cargo bench --bench net'`.
//!
//! Run with `cargo bench --bench net`; arguments after `--` that do not start with `-` keep only
//! the cases whose name contains one of them (`cargo bench --bench net -- echo`, `-- http/may`).
//! Run without `--bench` (as `cargo test --benches` does), every case runs for a fraction of a
//! second, as a smoke test.
//!
//! The tables give, per case: requests (messages) per second, the server's CPU microseconds per
//! request (total, user, system), how busy the server and the load generator were, the server's
//! context switches per request, how long each side waited for its CPU, and each figure divided
//! by bobine's. The targets of `TARGETS.md` follow each table, MET or MISSED.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

mod common;

use common::peers::may_spawn;
use common::report::{Align, print_table};

/// The environment variable that makes this binary a server: the case's name.
const SERVE_ENV: &str = "NET_BENCH_SERVE";
/// The port a server binds (on 127.0.0.1).
const PORT_ENV: &str = "NET_BENCH_PORT";

/// Connections of the echo workload.
const ECHO_CONNS: usize = 50;
/// Size of an echo message.
const ECHO_LEN: usize = 64;
/// Connections of the HTTP workload.
const HTTP_CONNS: usize = 100;
/// How long the load generator waits for a response before it gives up on the server.
const STALL: Duration = Duration::from_secs(10);
/// Run-queue wait (% of wall time) above which a run is flagged as disturbed.
const DISTURBED: f64 = 5.0;
/// Body of every HTTP response.
const HTTP_BODY: &[u8] = b"Hello, world!";
/// The name of the idle-connections case (bobine's echo server only).
const IDLE_CASE: &str = "idle/bobine";
/// Connections the idle case holds open (the descriptor limit here is 20 000 per process).
const IDLE_CONNS: usize = 19_000;
/// The listen backlog of the idle case's server.
const IDLE_BACKLOG: i32 = 4096;
/// Connections the idle case opens before it waits for the server to have accepted them all
/// (well under [`IDLE_BACKLOG`], so the accept queue never overflows).
const IDLE_BATCH: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Cases

/// What the load generator does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Echo,
    Http,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Echo => "echo",
            Workload::Http => "http",
        }
    }

    fn connections(self) -> usize {
        match self {
            Workload::Echo => ECHO_CONNS,
            Workload::Http => HTTP_CONNS,
        }
    }

    /// What one request is called in the tables.
    fn unit(self) -> &'static str {
        match self {
            Workload::Echo => "msg",
            Workload::Http => "req",
        }
    }
}

/// Which runtime serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Bobine,
    TokioCt,
    /// may for echo, may_minihttp for HTTP.
    May,
}

/// One workload against one server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Case {
    workload: Workload,
    server: Server,
}

impl Case {
    fn server_name(self) -> &'static str {
        match (self.server, self.workload) {
            (Server::Bobine, _) => "bobine",
            (Server::TokioCt, _) => "tokio-ct",
            (Server::May, Workload::Echo) => "may",
            (Server::May, Workload::Http) => "may-minihttp",
        }
    }

    fn name(self) -> String {
        format!("{}/{}", self.workload.name(), self.server_name())
    }
}

const SERVERS: [Server; 3] = [Server::Bobine, Server::TokioCt, Server::May];
const WORKLOADS: [Workload; 2] = [Workload::Echo, Workload::Http];

fn all_cases() -> impl Iterator<Item = Case> {
    WORKLOADS.into_iter().flat_map(|workload| {
        SERVERS
            .into_iter()
            .map(move |server| Case { workload, server })
    })
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// How long and where the cases run (from the environment).
struct Config {
    warmup: Duration,
    measure: Duration,
    rounds: usize,
    /// Give the median of each figure over the rounds, not the least-CPU round.
    median: bool,
    server_cpu: usize,
    client_cpu: usize,
    /// How long the idle case holds its connections idle before it reads the server's memory.
    idle_hold: Duration,
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(x) => Some(x),
        Err(_) => panic!("{name}={v:?} does not parse"),
    }
}

impl Config {
    /// `quick`: a smoke run (the binary was not started by `cargo bench`).
    fn from_env(quick: bool) -> Config {
        let (warmup, measure) = if quick { (0.1, 0.2) } else { (1.0, 3.0) };
        let secs = |name, default| Duration::from_secs_f64(env_parse(name).unwrap_or(default));
        Config {
            warmup: secs("NET_BENCH_WARMUP_SECS", warmup),
            measure: secs("NET_BENCH_SECS", measure),
            rounds: env_parse("NET_BENCH_ROUNDS")
                .unwrap_or(if quick { 1 } else { 2 })
                .max(1),
            median: match std::env::var("NET_BENCH_PICK").as_deref() {
                Ok("median") => true,
                Ok("best") | Err(_) => false,
                Ok(other) => panic!("NET_BENCH_PICK={other:?}: best or median"),
            },
            server_cpu: env_parse("NET_BENCH_SERVER_CPU").unwrap_or(0),
            client_cpu: env_parse("NET_BENCH_CLIENT_CPU").unwrap_or(1),
            idle_hold: secs("NET_BENCH_IDLE_SECS", if quick { 0.1 } else { 1.0 }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OS helpers

/// Pins the calling thread (and the threads it creates afterwards) to `cpu`.
fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "CPU out of range",
        ));
    }
    // SAFETY: `cpu` is within the set (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid set of the size given.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises this process's soft limit on open descriptors to its hard limit; returns the new limit.
fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid `rlimit`; a soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
fn vm_rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in status"))
}

/// The number of descriptors process `pid` has open.
fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Clock ticks per second (the unit of `/proc/<pid>/stat`'s times).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The CPU time of the calling thread (user + system).
fn thread_cpu() -> Duration {
    // SAFETY: `rusage` is plain data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(r, 0, "getrusage: {}", io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A server process's CPU time and context switches so far.
#[derive(Clone, Copy)]
struct ProcCpu {
    /// Seconds in user space, all threads.
    user: f64,
    /// Seconds in the kernel, all threads.
    sys: f64,
    /// Voluntary + involuntary context switches of the live threads.
    switches: u64,
    /// Seconds the live threads spent runnable but waiting for the CPU (other processes on it).
    queued: f64,
}

impl ProcCpu {
    fn read(pid: u32) -> io::Result<ProcCpu> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The fields after the command name (which may hold spaces), from field 3 (state) on.
        let rest = stat.rfind(')').map(|i| &stat[i + 1..]).ok_or(bad("stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> io::Result<f64> {
            fields
                .get(n - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .map(|t| t as f64 / clock_ticks())
                .ok_or(bad("stat field"))
        };
        let mut switches = 0;
        let mut queued = 0.0;
        for task in fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?.path();
            queued += run_delay(&task.join("schedstat"));
            // A thread may exit between listing and reading: skip it.
            let Ok(status) = fs::read_to_string(task.join("status")) else {
                continue;
            };
            for line in status.lines() {
                if let Some(v) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    switches += v.trim().parse::<u64>().map_err(|_| bad("status"))?;
                }
            }
        }
        Ok(ProcCpu {
            user: field(14)?,
            sys: field(15)?,
            switches,
            queued,
        })
    }
}

/// The seconds a thread has waited on a run queue, from its `schedstat` file (0 if it is gone).
fn run_delay(schedstat: &std::path::Path) -> f64 {
    fs::read_to_string(schedstat)
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 * 1e-9)
}

/// The load average, from `/proc/loadavg`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Servers (child processes)

/// Tells the parent the server listens.
fn ready() {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .expect("stdout");
}

/// The server side: runs the case named by `NET_BENCH_SERVE` until killed.
fn serve(name: &str) -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets this process's parent-death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let cpu: usize = env_parse("NET_BENCH_SERVER_CPU").unwrap_or(0);
    if let Err(e) = pin_to(cpu) {
        eprintln!("net bench server: cannot pin to CPU {cpu}: {e}");
    }
    let port: u16 = env_parse(PORT_ENV).expect("NET_BENCH_PORT");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if name == IDLE_CASE {
        if let Err(e) = raise_nofile() {
            eprintln!("net bench server: cannot raise the descriptor limit: {e}");
        }
        if let Err(e) = bobine_echo(addr, Some(IDLE_BACKLOG)) {
            eprintln!("net bench server {name}: {e}");
            std::process::exit(1)
        }
        std::process::exit(0)
    }
    let case = all_cases()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("unknown case {name:?}"));
    let r = match (case.workload, case.server) {
        (Workload::Echo, Server::Bobine) => bobine_echo(addr, None),
        (Workload::Echo, Server::TokioCt) => tokio_echo(addr),
        (Workload::Echo, Server::May) => may_echo(addr),
        (Workload::Http, Server::Bobine) => bobine_http(addr),
        (Workload::Http, Server::TokioCt) => tokio_http(addr),
        (Workload::Http, Server::May) => may_http(addr),
    };
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("net bench server {name}: {e}");
            std::process::exit(1)
        }
    }
}

/// Echoes everything it reads until the peer closes (or an error); blocking-style, for bobine
/// tasks and may coroutines.
fn echo_blocking(mut s: impl Read + Write) {
    let mut buf = vec![0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

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

/// bobine's echo server on `addr`: one domain, a task per connection. `backlog`: listen with
/// this backlog (and `SO_REUSEPORT`) instead of std's 128.
fn bobine_echo(addr: SocketAddr, backlog: Option<i32>) -> io::Result<()> {
    bobine::Builder::new().domains(1).run(move || {
        let listener = match backlog {
            None => bobine::net::TcpListener::bind(addr)?,
            Some(b) => bobine::net::TcpListener::bind_reuseport(addr, b)?,
        };
        ready();
        loop {
            let (stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            drop(bobine::thread::spawn(move || echo_blocking(stream)));
        }
    })
}

fn bobine_http(addr: SocketAddr) -> io::Result<()> {
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

fn tokio_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn tokio_echo(addr: SocketAddr) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio_runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        ready();
        let accept = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        accept.await.map_err(io::Error::other)?
    })
}

fn tokio_http(addr: SocketAddr) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    start_date_clock();
    tokio_runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        ready();
        let accept = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let mut conn = HttpConn::new();
                    loop {
                        let n = match stream.read(conn.spare()).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if conn.received(n).is_err() {
                            return;
                        }
                        if !conn.out.is_empty() {
                            if stream.write_all(&conn.out).await.is_err() {
                                return;
                            }
                            conn.out.clear();
                        }
                    }
                });
            }
        });
        accept.await.map_err(io::Error::other)?
    })
}

/// may's configuration, before its scheduler starts: one worker, left on the CPU this process
/// is pinned to (may would pin it to a core of its choosing otherwise).
fn may_config() {
    may::config().set_workers(1).set_worker_pin(false);
}

fn may_echo(addr: SocketAddr) -> io::Result<()> {
    may_config();
    let listener = may::net::TcpListener::bind(addr)?;
    ready();
    may_spawn(move || -> io::Result<()> {
        for stream in listener.incoming() {
            let stream = stream?;
            stream.set_nodelay(true)?;
            drop(may_spawn(move || echo_blocking(stream)));
        }
        Ok(())
    })
    .join()
    .map_err(|_| io::Error::other("accept coroutine panicked"))?
}

/// The may_minihttp service: `Hello, world!`.
#[derive(Clone)]
struct Hello;

impl may_minihttp::HttpService for Hello {
    fn call(
        &mut self,
        _req: may_minihttp::Request,
        rsp: &mut may_minihttp::Response,
    ) -> io::Result<()> {
        rsp.body("Hello, world!");
        Ok(())
    }
}

fn may_http(addr: SocketAddr) -> io::Result<()> {
    may_config();
    let server = may_minihttp::HttpServer(Hello).start(addr)?;
    ready();
    server
        .join()
        .map_err(|_| io::Error::other("may_minihttp server panicked"))
}

// ---------------------------------------------------------------------------------------------
// HTTP serving, shared by bobine and tokio

/// One HTTP connection's buffers: requests read but not yet parsed, responses not yet written.
struct HttpConn {
    buf: Vec<u8>,
    /// Bytes of `buf` holding received data.
    filled: usize,
    /// Responses to write.
    out: Vec<u8>,
}

impl HttpConn {
    fn new() -> HttpConn {
        HttpConn {
            buf: vec![0; 4096],
            filled: 0,
            out: Vec::with_capacity(4096),
        }
    }

    /// Where the next read goes (the buffer doubles when full).
    fn spare(&mut self) -> &mut [u8] {
        if self.filled == self.buf.len() {
            self.buf.resize(2 * self.buf.len(), 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Takes `n` bytes just read into [`HttpConn::spare`], answering every complete request
    /// (into `out`). Requests have no body (GET); the rest of the request is ignored.
    fn received(&mut self, n: usize) -> io::Result<()> {
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
fn start_date_clock() {
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

// ---------------------------------------------------------------------------------------------
// Load generator

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
struct Sample {
    /// Requests per second.
    rate: f64,
    /// Server CPU µs per request: total, user, system.
    cpu_us: f64,
    user_us: f64,
    sys_us: f64,
    /// Server CPU time / wall time, in %.
    server_busy: f64,
    /// Load generator CPU time / wall time, in %.
    client_busy: f64,
    /// Server context switches per request.
    switches: f64,
    /// Time the server's threads waited for the CPU / wall time, in % (another process on its
    /// CPU: the run is disturbed).
    server_queued: f64,
    /// The same for the load generator.
    client_queued: f64,
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

/// A server child process, killed when dropped.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Starts the server of the case named `name` on `port` and waits until it listens.
    fn start(name: &str, port: u16, cfg: &Config) -> io::Result<ServerProcess> {
        let child = Command::new(std::env::current_exe()?)
            .env(SERVE_ENV, name)
            .env(PORT_ENV, port.to_string())
            .env("NET_BENCH_SERVER_CPU", cfg.server_cpu.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut server = ServerProcess { child };
        // Read through the child's own handle, which stays open with it (a server that printed
        // more would not meet a closed pipe).
        let stdout = server.child.stdout.as_mut().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(io::Error::other(format!("server {name} did not start")));
        }
        Ok(server)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Our own child, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound and released; the server binds it right after).
fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn run_case(case: Case, cfg: &Config) -> io::Result<Sample> {
    let port = free_port()?;
    let server = ServerProcess::start(&case.name(), port, cfg)?;
    drive(case.workload, port, server.child.id(), cfg)
}

// ---------------------------------------------------------------------------------------------
// Idle connections

/// What the idle case found.
struct IdleResult {
    /// Connections opened, accepted by the server and held idle.
    held: usize,
    /// Connections whose message came back whole and unaltered.
    answered: usize,
    /// The server's resident memory before the first connection, KiB.
    rss_before_kib: u64,
    /// The server's resident memory with every connection held idle, KiB.
    rss_kib: u64,
    /// From the first message sent to the last echo received (or to giving up).
    answer_time: Duration,
    /// What went wrong while answering (connections closed, errors, altered echoes, a stall).
    failures: Vec<String>,
}

/// Waits until process `pid` has `want` descriptors open (has accepted the connections).
fn wait_accepted(pid: u32, want: usize) -> io::Result<()> {
    let deadline = Instant::now() + STALL;
    loop {
        let have = open_fds(pid)?;
        if have >= want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the server holds {have} descriptors after {STALL:?}, {want} expected"),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The idle case: opens [`IDLE_CONNS`] connections to bobine's echo server, holds them idle,
/// reads the server's memory, then sends one message on each and counts the echoes.
fn run_idle(cfg: &Config) -> io::Result<IdleResult> {
    let limit = raise_nofile()?;
    if limit < IDLE_CONNS as u64 + 64 {
        return Err(io::Error::other(format!(
            "the descriptor limit ({limit}) is too low for {IDLE_CONNS} connections"
        )));
    }
    let port = free_port()?;
    let server = ServerProcess::start(IDLE_CASE, port, cfg)?;
    let pid = server.child.id();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let base_fds = open_fds(pid)?;
    let rss_before_kib = vm_rss_kib(pid)?;
    let mut streams = Vec::with_capacity(IDLE_CONNS);
    while streams.len() < IDLE_CONNS {
        for _ in 0..IDLE_BATCH.min(IDLE_CONNS - streams.len()) {
            streams.push(TcpStream::connect(addr)?);
        }
        wait_accepted(pid, base_fds + streams.len())?;
    }
    let held = streams.len();
    std::thread::sleep(cfg.idle_hold);
    let rss_kib = vm_rss_kib(pid)?;

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, s) in streams.iter().enumerate() {
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        epoll.add(s, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    let msg: Vec<u8> = (0..ECHO_LEN).map(|i| b'a' + (i % 26) as u8).collect();
    // Bytes of each connection's echo received so far.
    let mut got = vec![0usize; held];
    let mut answered = 0;
    let mut lost = 0;
    let mut failures = Vec::new();
    let start = Instant::now();
    for s in &streams {
        // 64 bytes on an idle connection: the socket buffer has room.
        (&*s).write_all(&msg)?;
    }
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut buf = [0u8; ECHO_LEN];
    let mut last_progress = Instant::now();
    while answered + lost < held {
        let n = match epoll.wait(&mut events, 100u16) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 && last_progress.elapsed() >= STALL {
            failures.push(format!(
                "no echo for {STALL:?}: {} connection(s) still waiting",
                held - answered - lost
            ));
            break;
        }
        if n > 0 {
            last_progress = Instant::now();
        }
        for ev in &events[..n] {
            let i = ev.data() as usize;
            let s = &streams[i];
            let failure = match (&*s).read(&mut buf[..ECHO_LEN - got[i]]) {
                Ok(0) => Some(format!(
                    "connection {i}: closed by the server after {} of {ECHO_LEN} bytes",
                    got[i]
                )),
                Ok(k) if buf[..k] != msg[got[i]..got[i] + k] => {
                    Some(format!("connection {i}: the message came back altered"))
                }
                Ok(k) => {
                    got[i] += k;
                    if got[i] == ECHO_LEN {
                        answered += 1;
                        epoll.delete(s)?;
                    }
                    None
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    None
                }
                Err(e) => Some(format!("connection {i}: {e}")),
            };
            if let Some(f) = failure {
                lost += 1;
                epoll.delete(s)?;
                if failures.len() < 10 {
                    failures.push(f);
                }
            }
        }
    }
    let answer_time = start.elapsed();
    if lost > failures.len() {
        failures.push(format!("({lost} connections failed in all)"));
    }
    Ok(IdleResult {
        held,
        answered,
        rss_before_kib,
        rss_kib,
        answer_time,
        failures,
    })
}

/// Prints the idle case's table and its target.
fn print_idle(r: &IdleResult, cfg: &Config) {
    let per_conn = (r.rss_kib.saturating_sub(r.rss_before_kib)) as f64 / r.held.max(1) as f64;
    let caption = format!(
        "idle (bobine echo server, 1 domain, a task per connection): {IDLE_CONNS} connections \
         held idle for {} s, then one {ECHO_LEN}-byte message on each. RSS / connection = (RSS \
         held − RSS before the first connection, {} KiB) / connections held",
        cfg.idle_hold.as_secs_f64(),
        r.rss_before_kib
    );
    let columns = [
        ("server", Align::Left),
        ("connections held", Align::Right),
        ("answered", Align::Right),
        ("server RSS (KiB)", Align::Right),
        ("RSS / connection (KiB)", Align::Right),
        ("time to answer all (ms)", Align::Right),
    ];
    let row = vec![
        "bobine".to_owned(),
        r.held.to_string(),
        r.answered.to_string(),
        r.rss_kib.to_string(),
        format!("{per_conn:.2}"),
        format!("{:.1}", r.answer_time.as_secs_f64() * 1e3),
    ];
    print_table(&caption, &columns, &[row]);
    for f in &r.failures {
        println!("\nFAILURE: {f}");
    }
    println!();
    println!(
        "- 19 000 idle connections all answered: {} of {} → {}",
        r.answered,
        IDLE_CONNS,
        verdict(r.held == IDLE_CONNS && r.answered == IDLE_CONNS)
    );
}

// ---------------------------------------------------------------------------------------------
// Report

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The round with the least server CPU per request.
fn best_sample(samples: &[Sample]) -> Sample {
    *samples
        .iter()
        .min_by(|a, b| a.cpu_us.total_cmp(&b.cpu_us))
        .expect("at least one round")
}

/// The median of each figure over `samples` (figure by figure).
fn median_sample(samples: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Sample {
        rate: m(|s| s.rate),
        cpu_us: m(|s| s.cpu_us),
        user_us: m(|s| s.user_us),
        sys_us: m(|s| s.sys_us),
        server_busy: m(|s| s.server_busy),
        client_busy: m(|s| s.client_busy),
        switches: m(|s| s.switches),
        server_queued: m(|s| s.server_queued),
        client_queued: m(|s| s.client_queued),
    }
}

fn ratio(num: f64, den: f64) -> String {
    if den > 0.0 {
        format!("{:.2}", num / den)
    } else {
        "-".to_owned()
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "MISSED" }
}

/// Prints one workload's table and its targets.
fn print_workload(workload: Workload, results: &[(Case, Sample)], cfg: &Config) {
    let rows: Vec<(Case, Sample)> = results
        .iter()
        .filter(|(c, _)| c.workload == workload)
        .copied()
        .collect();
    if rows.is_empty() {
        return;
    }
    let unit = workload.unit();
    let base = rows
        .iter()
        .find(|(c, _)| c.server == Server::Bobine)
        .map(|r| r.1);
    let mut table = Vec::new();
    for (case, s) in &rows {
        let mut row = vec![
            case.server_name().to_owned(),
            format!("{:.0}", s.rate),
            format!("{:.2}", s.cpu_us),
            format!("{:.2}", s.user_us),
            format!("{:.2}", s.sys_us),
            format!("{:.0}", s.server_busy),
            format!("{:.0}", s.client_busy),
            format!("{:.0} / {:.0}", s.server_queued, s.client_queued),
            format!("{:.2}", s.switches),
        ];
        match base {
            Some(b) if case.server != Server::Bobine => {
                row.push(ratio(s.rate, b.rate));
                row.push(ratio(s.cpu_us, b.cpu_us));
                row.push(ratio(s.user_us, b.user_us));
            }
            _ => row.extend(["-".to_owned(), "-".to_owned(), "-".to_owned()]),
        }
        table.push(row);
    }
    let rate_col = format!("{unit}/s");
    let cpu_col = format!("CPU µs/{unit}");
    let user_col = format!("user µs/{unit}");
    let sys_col = format!("sys µs/{unit}");
    let csw_col = format!("ctx sw/{unit}");
    let columns = [
        ("server", Align::Left),
        (rate_col.as_str(), Align::Right),
        (cpu_col.as_str(), Align::Right),
        (user_col.as_str(), Align::Right),
        (sys_col.as_str(), Align::Right),
        ("server busy %", Align::Right),
        ("client busy %", Align::Right),
        ("queued % (server / client)", Align::Right),
        (csw_col.as_str(), Align::Right),
        ("rate ÷ bobine", Align::Right),
        ("CPU ÷ bobine", Align::Right),
        ("user ÷ bobine", Align::Right),
    ];
    let caption = format!(
        "{} ({} connections{}): {} s measured after {} s warm-up, {} of {} round(s). \
         CPU = server process CPU per {unit}; ratio = peer / bobine (CPU ratios > 1: bobine \
         uses less; rate ratio < 1: bobine is faster)",
        workload.name(),
        workload.connections(),
        match workload {
            Workload::Echo => format!(", {ECHO_LEN}-byte messages"),
            Workload::Http => ", keep-alive GET".to_owned(),
        },
        cfg.measure.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        if cfg.median {
            "median"
        } else {
            "least-CPU round"
        },
        cfg.rounds,
    );
    print_table(&caption, &columns, &table);
    let disturbed: Vec<&str> = rows
        .iter()
        .filter(|(_, s)| s.server_queued.max(s.client_queued) > DISTURBED)
        .map(|(c, _)| c.server_name())
        .collect();
    if !disturbed.is_empty() {
        println!(
            "\nDISTURBED: other processes took the pinned CPUs for more than {DISTURBED}% of the \
             time ({}): rates are not comparable, CPU per {unit} less so.",
            disturbed.join(", ")
        );
    }

    let Some(b) = base else {
        println!("\n(no bobine row: no targets)");
        return;
    };
    println!();
    let peers: &[Server] = match workload {
        Workload::Echo => &[Server::TokioCt],
        Workload::Http => &[Server::TokioCt, Server::May],
    };
    for &peer in peers {
        let Some((case, p)) = rows.iter().find(|(c, _)| c.server == peer) else {
            continue;
        };
        let name = case.server_name();
        println!(
            "- total server CPU per {unit} ≤ {name}'s: {:.2} vs {:.2} µs → {}",
            b.cpu_us,
            p.cpu_us,
            verdict(b.cpu_us <= p.cpu_us)
        );
        println!(
            "- user-space CPU per {unit} ≤ 0.8 × {name}'s: {:.2} vs {:.2} µs → {}",
            b.user_us,
            0.8 * p.user_us,
            verdict(b.user_us <= 0.8 * p.user_us)
        );
        if workload == Workload::Http {
            println!(
                "- {unit}/s ≥ {name}'s: {:.0} vs {:.0} → {}",
                b.rate,
                p.rate,
                verdict(b.rate >= p.rate)
            );
        }
    }
}

fn main() {
    if let Ok(name) = std::env::var(SERVE_ENV) {
        serve(&name);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let cfg = Config::from_env(quick);
    let cases: Vec<Case> = all_cases()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name().contains(f.as_str())))
        .collect();
    let idle = filters.is_empty() || filters.iter().any(|f| IDLE_CASE.contains(f.as_str()));
    if cases.is_empty() && !idle {
        println!("net: no case matches {filters:?}");
        return;
    }
    if let Err(e) = pin_to(cfg.client_cpu) {
        eprintln!(
            "net: cannot pin the load generator to CPU {}: {e}",
            cfg.client_cpu
        );
    }
    let load_before = load_average();
    let mut samples: Vec<(Case, Vec<Sample>)> = cases.iter().map(|&c| (c, Vec::new())).collect();
    for round in 1..=cfg.rounds {
        for (case, runs) in &mut samples {
            let s = run_case(*case, &cfg)
                .unwrap_or_else(|e| panic!("{} (round {round}): {e}", case.name()));
            println!(
                "{:<18} round {round}: {:>8.0} {}/s, server {:.2} µs/{} ({:.2} user, {:.2} sys), \
                 busy: server {:.0}%, client {:.0}%; queued: server {:.0}%, client {:.0}%",
                case.name(),
                s.rate,
                case.workload.unit(),
                s.cpu_us,
                case.workload.unit(),
                s.user_us,
                s.sys_us,
                s.server_busy,
                s.client_busy,
                s.server_queued,
                s.client_queued
            );
            runs.push(s);
        }
    }
    let idle_result = idle.then(|| {
        let r = run_idle(&cfg).unwrap_or_else(|e| panic!("{IDLE_CASE}: {e}"));
        println!(
            "{IDLE_CASE:<18} {} held, {} answered in {:.1} ms, server RSS {} KiB",
            r.held,
            r.answered,
            r.answer_time.as_secs_f64() * 1e3,
            r.rss_kib
        );
        r
    });
    let results: Vec<(Case, Sample)> = samples
        .iter()
        .map(|(c, runs)| {
            let pick = if cfg.median {
                median_sample(runs)
            } else {
                best_sample(runs)
            };
            (*c, pick)
        })
        .collect();
    for workload in WORKLOADS {
        print_workload(workload, &results, &cfg);
    }
    if let Some(r) = &idle_result {
        print_idle(r, &cfg);
    }
    println!();
    println!(
        "Server pinned to CPU {}, load generator to CPU {}; load average {load_before} before, \
         {} after.",
        cfg.server_cpu,
        cfg.client_cpu,
        load_average()
    );
}
