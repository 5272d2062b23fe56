//! The parent side: the rounds. In each round every case of every table runs once, the
//! runtimes of one row one after another (their order rotated by one each round), so that the
//! drift of a shared machine hits every runtime alike; the tables give the median over the
//! rounds. Each micro-benchmark and parked-tasks measurement is a child process (see
//! `child.rs`); each server measurement starts its server as a child process too.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Options;
use crate::cases::{Micro, OPS, Op, PARKED, ParkedCase};
use crate::child::CHILD;
use crate::net::cases::Case;
use crate::net::load::Sample;
use crate::net::median_sample;
use crate::net::os::load_average;
use crate::parked::{FIELDS, Parked};
use crate::servers;

/// How long a micro-benchmark child may take before it is given up.
const MICRO_LIMIT: Duration = Duration::from_secs(120);

/// The median of `xs`, `None` if empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// A micro-benchmark case and what its rounds measured.
pub struct MicroResult {
    pub op: &'static Op,
    pub case: &'static Micro,
    /// Nanoseconds per operation, one per round.
    pub ns: Vec<f64>,
    /// bobine two-domain runtimes rebuilt for an uneven split, over every round.
    pub rebuilds: u64,
    pub failures: Vec<String>,
}

impl MicroResult {
    /// The median over the rounds.
    pub fn median(&self) -> Option<f64> {
        median(&self.ns)
    }
}

/// A parked-tasks case at one count and what its rounds measured.
pub struct ParkedResult {
    pub case: &'static ParkedCase,
    pub n: usize,
    pub runs: Vec<Parked>,
    pub failures: Vec<String>,
}

impl ParkedResult {
    /// The median of each field over the rounds (field by field).
    pub fn median(&self) -> Option<Parked> {
        if self.runs.is_empty() {
            return None;
        }
        let fields: Vec<[f64; 8]> = self.runs.iter().map(Parked::fields).collect();
        let mut m = [0.0; 8];
        for (i, v) in m.iter_mut().enumerate() {
            *v = median(&fields.iter().map(|f| f[i]).collect::<Vec<_>>()).expect("runs");
        }
        Some(Parked::from_fields(m))
    }
}

/// A server case and what its rounds measured.
pub struct NetResult {
    pub case: Case,
    pub samples: Vec<Sample>,
    pub failures: Vec<String>,
}

impl NetResult {
    /// The median of each figure over the rounds.
    pub fn median(&self) -> Option<Sample> {
        (!self.samples.is_empty()).then(|| median_sample(&self.samples))
    }
}

/// Everything a run measured.
pub struct Results {
    pub micro: Vec<MicroResult>,
    pub parked: Vec<ParkedResult>,
    pub net: Vec<NetResult>,
    pub load_before: String,
    pub load_after: String,
    pub elapsed: Duration,
}

/// Runs every case `opts` keeps, in rounds.
pub fn run(opts: &Options) -> Results {
    let started = Instant::now();
    let load_before = load_average();
    let mut micro: Vec<MicroResult> = OPS
        .iter()
        .flat_map(|op| op.cases.iter().map(move |case| (op, case)))
        .filter(|(op, case)| opts.keeps(&op.case_name(case)))
        .map(|(op, case)| MicroResult {
            op,
            case,
            ns: Vec::new(),
            rebuilds: 0,
            failures: Vec::new(),
        })
        .collect();
    let mut parked: Vec<ParkedResult> = PARKED
        .iter()
        .flat_map(|case| {
            case.sizes(&opts.sizes)
                .into_iter()
                .map(move |n| ParkedResult {
                    case,
                    n,
                    runs: Vec::new(),
                    failures: Vec::new(),
                })
        })
        .filter(|r| opts.keeps(&r.case.name(r.n)))
        .collect();
    // Grouped by count, in table order within a count.
    parked.sort_by_key(|r| r.n);
    let cfg = servers::config(opts);
    let mut net: Vec<NetResult> = servers::cases()
        .into_iter()
        .filter(|c| opts.keeps(&c.name()))
        .map(|case| NetResult {
            case,
            samples: Vec::new(),
            failures: Vec::new(),
        })
        .collect();

    if micro.is_empty() && parked.is_empty() && net.is_empty() {
        eprintln!("compare: no case matches {:?}", opts.filters);
        std::process::exit(2);
    }
    let rounds = opts.rounds.max(opts.parked_rounds).max(opts.net_rounds);
    for round in 0..rounds {
        let mut done = Vec::new();
        if round < opts.rounds && !micro.is_empty() {
            let t = Instant::now();
            for row in micro.chunk_by_mut(|a, b| std::ptr::eq(a.op, b.op)) {
                let k = row.len();
                for j in 0..k {
                    micro_round(&mut row[(j + round) % k], opts, round);
                }
            }
            done.push(format!("micro {:.0} s", t.elapsed().as_secs_f64()));
        }
        if round < opts.parked_rounds && !parked.is_empty() {
            let t = Instant::now();
            for row in parked.chunk_by_mut(|a, b| a.n == b.n) {
                let k = row.len();
                for j in 0..k {
                    parked_round(&mut row[(j + round) % k], round);
                }
            }
            done.push(format!("parked tasks {:.0} s", t.elapsed().as_secs_f64()));
        }
        if round < opts.net_rounds && !net.is_empty() {
            let t = Instant::now();
            let k = net.len();
            for j in 0..k {
                let r = &mut net[(j + round) % k];
                match servers::measure(r.case, &cfg) {
                    Ok(s) => r.samples.push(s),
                    Err(e) => failed(&mut r.failures, &r.case.name(), round, e.to_string()),
                }
            }
            done.push(format!("servers {:.0} s", t.elapsed().as_secs_f64()));
        }
        println!(
            "round {}/{rounds}: {}; load average {}",
            round + 1,
            done.join(", "),
            load_average()
        );
    }
    Results {
        micro,
        parked,
        net,
        load_before,
        load_after: load_average(),
        elapsed: started.elapsed(),
    }
}

/// Notes a failed measurement, and says so at once.
fn failed(failures: &mut Vec<String>, name: &str, round: usize, e: String) {
    eprintln!("compare: {name}, round {}: {e}", round + 1);
    failures.push(e);
}

/// One round of a micro-benchmark case.
fn micro_round(r: &mut MicroResult, opts: &Options, round: usize) {
    let name = r.op.case_name(r.case);
    let sample_ms = opts.sample.as_millis().to_string();
    match run_child("micro", &name, &sample_ms, MICRO_LIMIT) {
        Ok(values) => {
            let get = |k: &str| values.iter().find(|v| v.0 == k).map(|v| v.1);
            match get("ns") {
                Some(ns) => r.ns.push(ns),
                None => failed(&mut r.failures, &name, round, "no ns".to_owned()),
            }
            r.rebuilds += get("rebuilds").unwrap_or(0.0) as u64;
        }
        Err(e) => failed(&mut r.failures, &name, round, e),
    }
}

/// One round of a parked-tasks case.
fn parked_round(r: &mut ParkedResult, round: usize) {
    let name = r.case.name(r.n);
    let limit = r
        .case
        .limit_per_million
        .mul_f64(r.n as f64 / 1e6)
        .max(Duration::from_secs(60));
    match run_child("parked", &name, &r.n.to_string(), limit) {
        Ok(values) => {
            let mut f = [0.0; 8];
            for (i, k) in FIELDS.iter().enumerate() {
                match values.iter().find(|v| v.0 == *k) {
                    Some(v) => f[i] = v.1,
                    None => return failed(&mut r.failures, &name, round, format!("no {k}")),
                }
            }
            r.runs.push(Parked::from_fields(f));
        }
        Err(e) => failed(&mut r.failures, &name, round, e),
    }
}

/// Runs this binary as a child (`--child <kind> <name> <param>`) and returns the `key=value`
/// pairs of its `RESULT` line; an error says how it failed (exit status and the last line of
/// its standard error). A child still running after `limit` is killed.
fn run_child(
    kind: &str,
    name: &str,
    param: &str,
    limit: Duration,
) -> Result<Vec<(String, f64)>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args([CHILD, kind, name, param])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    // Both pipes are read to their end while the child runs (neither can fill up and block it).
    std::thread::spawn(move || {
        let mut err = String::new();
        let err_reader = std::thread::spawn(move || {
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let err = err_reader.join().unwrap_or_default();
        let status = child.wait();
        let _ = tx.send((status, out, err));
    });
    let (status, out, err) = match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => {
            // Our own child, by its id; the waiting thread has not reaped it (it would have
            // answered).
            // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = rx.recv();
            return Err(format!("no result within {limit:?}: killed"));
        }
    };
    let status = status.map_err(|e| e.to_string())?;
    let last_err = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    if !status.success() {
        return Err(format!("{status}: {last_err}"));
    }
    let line = out
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("no RESULT line ({last_err})"))?;
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').ok_or(format!("bad pair {kv:?}"))?;
            let v = v.parse().map_err(|_| format!("bad value {kv:?}"))?;
            Ok((k.to_owned(), v))
        })
        .collect()
}
