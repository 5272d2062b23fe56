//! The idle case (`idle/bobine`): many connections held idle by bobine's echo server, its
//! memory read, then one message on each; and its table.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use super::cases::Config;
use super::common::report::{Align, print_table};
use super::os::{open_fds, raise_nofile, vm_rss_kib};
use super::server::{ServerProcess, free_port};
use super::verdict;
use super::{ECHO_LEN, IDLE_BATCH, IDLE_CASE, IDLE_CONNS, STALL};

/// What the idle case found.
pub(crate) struct IdleResult {
    /// Connections opened, accepted by the server and held idle.
    pub(crate) held: usize,
    /// Connections whose message came back whole and unaltered.
    pub(crate) answered: usize,
    /// The server's resident memory before the first connection, KiB.
    pub(crate) rss_before_kib: u64,
    /// The server's resident memory with every connection held idle, KiB.
    pub(crate) rss_kib: u64,
    /// From the first message sent to the last echo received (or to giving up).
    pub(crate) answer_time: Duration,
    /// What went wrong while answering (connections closed, errors, altered echoes, a stall).
    pub(crate) failures: Vec<String>,
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
pub(crate) fn run_idle(cfg: &Config) -> io::Result<IdleResult> {
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
pub(crate) fn print_idle(r: &IdleResult, cfg: &Config) {
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
