//! What runs: the operations of the micro-benchmark table ([`OPS`]), each with its case per
//! runtime, and the cases of the parked-tasks table ([`PARKED`]). A case's name,
//! `<operation>/<runtime>`, is what the child process is told to run and what the command-line
//! filters match.

use std::time::Duration;

use crate::common::Loop;
use crate::parked::{self, Parked};
use crate::{mutex, pingpong, select3, spawn, yields};

/// A column of the tables: who runs the case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Peer {
    Bobine,
    Tokio,
    May,
    Std,
    Crossbeam,
}

impl Peer {
    /// Every column, in table order.
    pub const ALL: [Peer; 5] = [
        Peer::Bobine,
        Peer::Tokio,
        Peer::May,
        Peer::Std,
        Peer::Crossbeam,
    ];

    /// The column's heading.
    pub fn heading(self) -> &'static str {
        match self {
            Peer::Bobine => "bobine",
            Peer::Tokio => "tokio",
            Peer::May => "may",
            Peer::Std => "std threads",
            Peer::Crossbeam => "crossbeam-channel",
        }
    }
}

/// How the child process is set up before it runs a case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Setup {
    /// Nothing to do.
    Plain,
    /// may with this many workers (`may::config().set_workers`, before may starts).
    May(usize),
    /// Every thread of the process on one CPU (`sched_setaffinity` to CPU 0 before any thread
    /// is created): OS threads on the CPU budget of one scheduler thread.
    OneCpu,
}

/// One runtime's loop for an operation.
pub struct Micro {
    pub peer: Peer,
    /// The runtime as named in the case name and the detailed table.
    pub label: &'static str,
    pub setup: Setup,
    /// Runs `iters` operations (in a fresh runtime) and returns the time they took.
    pub run: Loop,
}

/// One operation of the micro-benchmark table, on a number of scheduler threads.
pub struct Op {
    /// The first half of its cases' names.
    pub key: &'static str,
    /// The row's label in the tables.
    pub label: &'static str,
    /// Scheduler threads (bobine domains, tokio workers, may workers, CPUs for OS threads).
    pub threads: usize,
    pub cases: &'static [Micro],
}

impl Op {
    /// The name of `case`, one of this operation's.
    pub fn case_name(&self, case: &Micro) -> String {
        format!("{}/{}", self.key, case.label)
    }
}

/// A case of the micro table: `(peer, label, setup, loop)`.
const fn micro(peer: Peer, label: &'static str, setup: Setup, run: Loop) -> Micro {
    Micro {
        peer,
        label,
        setup,
        run,
    }
}

use Peer::{Bobine, Crossbeam, May, Std, Tokio};
use Setup::{OneCpu, Plain};

/// The rows of the micro-benchmark table, in table order.
pub static OPS: [Op; 8] = [
    Op {
        key: "yield",
        label: "yield, 2 tasks (one switch)",
        threads: 1,
        cases: &[
            micro(Bobine, "bobine", Plain, yields::bobine),
            micro(Tokio, "tokio-ct", Plain, yields::tokio),
            micro(May, "may", Setup::May(1), yields::may),
            micro(Std, "std-1cpu", OneCpu, yields::std),
        ],
    },
    Op {
        key: "spawn_join-1",
        label: "spawn + join an empty task (batches of 1000; std: 100)",
        threads: 1,
        cases: &[
            micro(Bobine, "bobine", Plain, spawn::bobine_1),
            micro(Tokio, "tokio-ct", Plain, spawn::tokio_ct),
            micro(May, "may", Setup::May(1), spawn::may),
            micro(Std, "std-1cpu", OneCpu, spawn::std),
        ],
    },
    Op {
        key: "spawn_join-2",
        label: "the same on 2 scheduler threads",
        threads: 2,
        cases: &[
            micro(Bobine, "bobine", Plain, spawn::bobine_2),
            micro(Tokio, "tokio-mt", Plain, spawn::tokio_mt),
            micro(May, "may", Setup::May(2), spawn::may),
            micro(Std, "std", Plain, spawn::std),
        ],
    },
    Op {
        key: "pingpong-1",
        label: "rendezvous ping-pong round trip",
        threads: 1,
        cases: &[
            micro(Bobine, "bobine", Plain, pingpong::bobine_1),
            micro(Tokio, "tokio-ct", Plain, pingpong::tokio_ct),
            micro(May, "may", Setup::May(1), pingpong::may),
            micro(Std, "std-1cpu", OneCpu, pingpong::std),
            micro(Crossbeam, "crossbeam-1cpu", OneCpu, pingpong::crossbeam),
        ],
    },
    Op {
        key: "pingpong-2",
        label: "the same across 2 scheduler threads",
        threads: 2,
        cases: &[
            micro(Bobine, "bobine", Plain, pingpong::bobine_2),
            micro(Tokio, "tokio-mt", Plain, pingpong::tokio_mt),
            micro(May, "may", Setup::May(2), pingpong::may),
            micro(Std, "std", Plain, pingpong::std),
            micro(Crossbeam, "crossbeam", Plain, pingpong::crossbeam),
        ],
    },
    Op {
        key: "mutex-1",
        label: "4 tasks: lock, yield, unlock (one critical section)",
        threads: 1,
        cases: &[
            micro(Bobine, "bobine", Plain, mutex::bobine_1),
            micro(Tokio, "tokio-ct", Plain, mutex::tokio_ct),
            micro(May, "may", Setup::May(1), mutex::may),
            micro(Std, "std-1cpu", OneCpu, mutex::std),
        ],
    },
    Op {
        key: "mutex-2",
        label: "the same on 2 scheduler threads",
        threads: 2,
        cases: &[
            micro(Bobine, "bobine", Plain, mutex::bobine_2),
            micro(Tokio, "tokio-mt", Plain, mutex::tokio_mt),
            micro(May, "may", Setup::May(2), mutex::may),
            micro(Std, "std", Plain, mutex::std),
        ],
    },
    Op {
        key: "select3",
        label: "select over 3 channels (one message)",
        threads: 1,
        cases: &[
            micro(Bobine, "bobine", Plain, select3::bobine),
            micro(Tokio, "tokio-ct", Plain, select3::tokio),
            micro(Crossbeam, "crossbeam-1cpu", OneCpu, select3::crossbeam),
        ],
    },
];

/// The micro case named `name`, with its operation.
pub fn micro_by_name(name: &str) -> Option<(&'static Op, &'static Micro)> {
    OPS.iter()
        .flat_map(|op| op.cases.iter().map(move |c| (op, c)))
        .find(|(op, c)| op.case_name(c) == name)
}

/// The most coroutines may survives here: it maps each stack with a guard page (two mappings
/// per coroutine) and aborts when `vm.max_map_count` (65 530) runs out, near 32 700.
pub const MAY_MAX: usize = 30_000;
/// The most OS threads measured (a reference, not a contender).
pub const STD_MAX: usize = 10_000;

/// One runtime's loop for the parked-tasks table.
pub struct ParkedCase {
    pub peer: Peer,
    pub label: &'static str,
    pub setup: Setup,
    /// The largest count it runs; asked for more, it runs this count instead.
    pub max: Option<usize>,
    pub run: fn(usize) -> Parked,
    /// How long a child may take per million tasks before it is given up (killed).
    pub limit_per_million: Duration,
}

impl ParkedCase {
    /// The case's name for `n` tasks.
    pub fn name(&self, n: usize) -> String {
        format!("parked-{n}/{}", self.label)
    }

    /// The counts it runs when `asked` are asked for: those up to its maximum, plus the
    /// maximum itself if a larger count was asked.
    pub fn sizes(&self, asked: &[usize]) -> Vec<usize> {
        let Some(max) = self.max else {
            return asked.to_vec();
        };
        let mut sizes: Vec<usize> = asked.iter().copied().filter(|&n| n <= max).collect();
        if asked.iter().any(|&n| n > max) && !sizes.contains(&max) {
            sizes.push(max);
        }
        sizes
    }
}

/// The cases of the parked-tasks table, in table order.
pub static PARKED: [ParkedCase; 4] = [
    ParkedCase {
        peer: Bobine,
        label: "bobine",
        setup: Plain,
        max: None,
        run: parked::bobine,
        limit_per_million: Duration::from_secs(120),
    },
    ParkedCase {
        peer: Tokio,
        label: "tokio-ct",
        setup: Plain,
        max: None,
        run: parked::tokio,
        limit_per_million: Duration::from_secs(120),
    },
    ParkedCase {
        peer: May,
        label: "may",
        setup: Setup::May(1),
        max: Some(MAY_MAX),
        run: parked::may,
        limit_per_million: Duration::from_secs(600),
    },
    ParkedCase {
        peer: Std,
        label: "std",
        setup: Plain,
        max: Some(STD_MAX),
        run: parked::std,
        limit_per_million: Duration::from_secs(6000),
    },
];

/// The parked case named `name` and its count.
pub fn parked_by_name(name: &str) -> Option<(&'static ParkedCase, usize)> {
    let (head, label) = name.split_once('/')?;
    let n = head.strip_prefix("parked-")?.parse().ok()?;
    PARKED.iter().find(|c| c.label == label).map(|c| (c, n))
}
