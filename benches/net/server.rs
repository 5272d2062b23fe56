//! The server child process: the parent starts it (this binary re-executed with
//! `NET_BENCH_SERVE=<case>`) and waits for its `ready`; the child pins itself and runs the case's
//! server until killed.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

use super::cases::{Config, Server, Workload, all_cases, env_parse};
use super::echo::bobine_echo;
use super::http::bobine_http;
use super::os::{pin_to, raise_nofile};
use super::peer_servers::{may_echo, may_http, tokio_echo, tokio_http};
use super::{IDLE_BACKLOG, IDLE_CASE};

/// The environment variable that makes this binary a server: the case's name.
pub(crate) const SERVE_ENV: &str = "NET_BENCH_SERVE";
/// The port a server binds (on 127.0.0.1).
const PORT_ENV: &str = "NET_BENCH_PORT";

/// Tells the parent the server listens.
pub(crate) fn ready() {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .expect("stdout");
}

/// The server side: runs the case named by `NET_BENCH_SERVE` until killed.
pub(crate) fn serve(name: &str) -> ! {
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

/// A server child process, killed when dropped.
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
}

impl ServerProcess {
    /// Starts the server of the case named `name` on `port` and waits until it listens.
    pub(crate) fn start(name: &str, port: u16, cfg: &Config) -> io::Result<ServerProcess> {
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
pub(crate) fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}
