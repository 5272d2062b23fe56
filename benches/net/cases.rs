//! What runs: the workloads, the servers, the cases they make (`<workload>/<server>`), and how
//! long and where they run (the configuration read from the environment).

use std::time::Duration;

use super::{ECHO_CONNS, HTTP_CONNS};

/// What the load generator does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Workload {
    Echo,
    Http,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Echo => "echo",
            Workload::Http => "http",
        }
    }

    pub(crate) fn connections(self) -> usize {
        match self {
            Workload::Echo => ECHO_CONNS,
            Workload::Http => HTTP_CONNS,
        }
    }

    /// What one request is called in the tables.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Workload::Echo => "msg",
            Workload::Http => "req",
        }
    }
}

/// Which runtime serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Server {
    Bobine,
    TokioCt,
    /// may for echo, may_minihttp for HTTP.
    May,
}

/// One workload against one server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Case {
    pub(crate) workload: Workload,
    pub(crate) server: Server,
}

impl Case {
    pub(crate) fn server_name(self) -> &'static str {
        match (self.server, self.workload) {
            (Server::Bobine, _) => "bobine",
            (Server::TokioCt, _) => "tokio-ct",
            (Server::May, Workload::Echo) => "may",
            (Server::May, Workload::Http) => "may-minihttp",
        }
    }

    pub(crate) fn name(self) -> String {
        format!("{}/{}", self.workload.name(), self.server_name())
    }
}

const SERVERS: [Server; 3] = [Server::Bobine, Server::TokioCt, Server::May];
pub(crate) const WORKLOADS: [Workload; 2] = [Workload::Echo, Workload::Http];

pub(crate) fn all_cases() -> impl Iterator<Item = Case> {
    WORKLOADS.into_iter().flat_map(|workload| {
        SERVERS
            .into_iter()
            .map(move |server| Case { workload, server })
    })
}

/// How long and where the cases run (from the environment).
pub(crate) struct Config {
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
    pub(crate) rounds: usize,
    /// Give the median of each figure over the rounds, not the least-CPU round.
    pub(crate) median: bool,
    pub(crate) server_cpu: usize,
    pub(crate) client_cpu: usize,
    /// How long the idle case holds its connections idle before it reads the server's memory.
    pub(crate) idle_hold: Duration,
}

pub(crate) fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(x) => Some(x),
        Err(_) => panic!("{name}={v:?} does not parse"),
    }
}

impl Config {
    /// `quick`: a smoke run (the binary was not started by `cargo bench`).
    pub(crate) fn from_env(quick: bool) -> Config {
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
