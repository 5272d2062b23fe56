//! Side-by-side comparison of bobine's CML events (`bobine::event`) with their peers:
//!
//! - `pingpong_one_domain`: two tasks on one scheduler thread pass a counter back and forth over
//!   two rendezvous channels (one each way); the figure is one round trip (two sends, two
//!   receives). bobine `event::Channel<u64>` with `send` / `recv` (`bobine`); the same with every
//!   receive made as `select(vec![c.recv_evt()])` (`bobine-select1`) and as
//!   `choose(vec![c.recv_evt(), idle.recv_evt()]).sync()`, where `idle` is a second channel
//!   nobody sends on (`bobine-choose2`: the general path, an offer on two channels per blocking
//!   receive). Peers: tokio current-thread `tokio::sync::mpsc::channel(1)`, may with one worker
//!   (`may::sync::mpsc::channel()`, unbounded: only the ping-pong makes it a rendezvous), and two
//!   OS threads over std `sync_channel(0)` and crossbeam `bounded(0)`.
//! - `pingpong_two_domains`: the same bobine ping-pong (`send` / `recv`) with the two tasks on
//!   the two domains of `Builder::new().domains(2)`: the main task on domain 0 (the bench
//!   thread) and an echo task that domain 1 takes before it starts (tasks never migrate once
//!   started). Every sample checks the placement by OS thread id and rebuilds the runtime if the
//!   echo task ran on domain 0; the table's notes say where each ran and how many rebuilds it
//!   took. `bobine-busy`: each domain also runs a task that loops on `yield_now`, so neither
//!   domain ever sleeps; `bobine-idle`: no other task, so each hop wakes a domain asleep in
//!   epoll (an eventfd write). Peer: crossbeam `bounded(0)` between two OS threads.
//!   `bobine-busy` keeps both domain threads on the CPU all the time, so on a machine with as
//!   many cores as domains any other runnable thread preempts one of them for whole scheduler
//!   ticks (4 ms here) and the round trips of that sample wait for it: its median is only
//!   meaningful on an otherwise idle machine (the table's notes give the load average).
//! - `select3`: one task syncs on `choose` of the receive events of 3 channels while a partner
//!   task sends on one of them, rotating (message `i` on channel `i % 3`); the figure is one
//!   sync (one message). bobine on one domain; peers: tokio current-thread `tokio::select!` over
//!   3 `mpsc::channel(1)` (buffered: the sender may run up to one message ahead per channel), and
//!   crossbeam `select!` over 3 `bounded(0)` between two OS threads.
//!
//! Every green-thread loop runs inside a task of its runtime, and each criterion sample starts a
//! fresh runtime outside the timing (`iter_custom`). may is configured with
//! `may::config().set_workers(1)` and tokio uses `new_current_thread().enable_all()`.
//!
//! After the groups have run, a markdown table gives each function's median (read back from
//! criterion's `<target>/criterion/events_<operation>/<function>/new/estimates.json`) and its
//! median divided by the group's bobine baseline (`bobine`, or `bobine-busy` for two domains):
//! above 1 means bobine is faster. Only ratios from one run mean anything on a shared machine.
//!
//! Run with `cargo bench --bench events` (criterion arguments follow `--`, e.g.
//! `cargo bench --bench events -- pingpong_two_domains`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant, SystemTime};

use bobine::event::{Channel, choose, select};
use criterion::Criterion;

mod common;

use common::peers::{may_run, may_spawn, tokio_run};
use common::report::{self, Align, fmt_ns, fmt_ratio, load_average, median_ns};
use common::{Loop, runtime};

const BOBINE: &str = "bobine";
const SELECT1: &str = "bobine-select1";
const CHOOSE2: &str = "bobine-choose2";
const BUSY: &str = "bobine-busy";
const IDLE: &str = "bobine-idle";
const TOKIO: &str = "tokio-ct";
const MAY: &str = "may";
const STD: &str = "std";
const CROSSBEAM: &str = "crossbeam";

/// A criterion group and what the ratio table says about it.
struct GroupInfo {
    /// Criterion group name; the `events_` prefix keeps the results apart from the other
    /// benches' (criterion keys results by group and function name only).
    name: &'static str,
    /// What one measured operation is.
    operation: &'static str,
    /// The function every ratio of the group divides by.
    base: &'static str,
    functions: &'static [&'static str],
    /// `(function, target median in ns)` for the bobine rows that have one.
    targets: &'static [(&'static str, f64)],
    /// Extra ratios `(numerator, denominator)` printed under the table.
    extra: &'static [(&'static str, &'static str)],
}

const ONE_DOMAIN: GroupInfo = GroupInfo {
    name: "events_pingpong_one_domain",
    operation: "pingpong_one_domain (round trip)",
    base: BOBINE,
    functions: &[BOBINE, SELECT1, CHOOSE2, TOKIO, MAY, STD, CROSSBEAM],
    targets: &[(BOBINE, 100.0)],
    extra: &[(TOKIO, CHOOSE2), (MAY, CHOOSE2)],
};

const TWO_DOMAINS: GroupInfo = GroupInfo {
    name: "events_pingpong_two_domains",
    operation: "pingpong_two_domains (round trip)",
    base: BUSY,
    functions: &[BUSY, IDLE, CROSSBEAM],
    targets: &[(BUSY, 2000.0)],
    extra: &[(CROSSBEAM, IDLE)],
};

const SELECT3: GroupInfo = GroupInfo {
    name: "events_select3",
    operation: "select3 (one sync)",
    base: BOBINE,
    functions: &[BOBINE, TOKIO, CROSSBEAM],
    targets: &[],
    extra: &[],
};

const GROUPS: [&GroupInfo; 3] = [&ONE_DOMAIN, &TWO_DOMAINS, &SELECT3];

// ---------------------------------------------------------------------------------------------
// bobine, one domain

/// How the bobine ping-pong receives.
#[derive(Clone, Copy)]
enum Recv {
    /// `Channel::recv`.
    Plain,
    /// `select(vec![c.recv_evt()])`.
    Select1,
    /// `choose(vec![c.recv_evt(), idle.recv_evt()]).sync()`.
    Choose2,
}

fn receive(how: Recv, c: &Channel<u64>, idle: &Channel<u64>) -> u64 {
    match how {
        Recv::Plain => c.recv(),
        Recv::Select1 => select(vec![c.recv_evt()]),
        Recv::Choose2 => choose(vec![c.recv_evt(), idle.recv_evt()]).sync(),
    }
}

/// Ping-pong between the main task and an echo task; must run inside a task. Returns the time
/// of `iters` round trips.
fn pingpong_loop(iters: u64, how: Recv, ping: &Channel<u64>, pong: &Channel<u64>) -> Duration {
    let idle = Channel::new();
    let start = Instant::now();
    for i in 0..iters {
        ping.send(i);
        assert_eq!(receive(how, pong, &idle), i);
    }
    start.elapsed()
}

/// The echo side of [`pingpong_loop`].
fn echo_loop(iters: u64, how: Recv, ping: &Channel<u64>, pong: &Channel<u64>) {
    let idle = Channel::new();
    for _ in 0..iters {
        pong.send(receive(how, ping, &idle));
    }
}

fn bobine_pingpong(iters: u64, how: Recv) -> Duration {
    runtime().run(move || {
        let (ping, pong) = (Channel::new(), Channel::new());
        let echo = {
            let (ping, pong) = (ping.clone(), pong.clone());
            bobine::thread::spawn(move || echo_loop(iters, how, &ping, &pong))
        };
        let elapsed = pingpong_loop(iters, how, &ping, &pong);
        echo.join().expect("echo task panicked");
        elapsed
    })
}

fn bobine_plain(iters: u64) -> Duration {
    bobine_pingpong(iters, Recv::Plain)
}

fn bobine_select1(iters: u64) -> Duration {
    bobine_pingpong(iters, Recv::Select1)
}

fn bobine_choose2(iters: u64) -> Duration {
    bobine_pingpong(iters, Recv::Choose2)
}

// ---------------------------------------------------------------------------------------------
// bobine, two domains

/// Where the tasks of the two-domain samples ran, per function.
#[derive(Default)]
struct Placement {
    /// Runtimes measured (the echo task ran on domain 1), criterion's warm-up included.
    measured: u64,
    /// Runtimes thrown away because the echo task started on domain 0.
    rebuilds: u64,
    /// The bench thread (domain 0) and the echo task's thread (domain 1) of the last sample.
    threads: Option<(ThreadId, ThreadId)>,
}

static PLACEMENTS: Mutex<Vec<(&str, Placement)>> = Mutex::new(Vec::new());

fn placement_record(function: &'static str, update: impl FnOnce(&mut Placement)) {
    let mut all = PLACEMENTS.lock().unwrap_or_else(|e| e.into_inner());
    let i = match all.iter().position(|(f, _)| *f == function) {
        Some(i) => i,
        None => {
            all.push((function, Placement::default()));
            all.len() - 1
        }
    };
    update(&mut all[i].1);
}

/// Loops on `yield_now` until `stop`, so that its domain never runs out of work.
fn spin_yielding(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        bobine::thread::yield_now();
    }
}

/// One two-domain sample: `Some(time of iters round trips)`, or `None` if the echo task started
/// on domain 0 (the caller rebuilds the runtime).
fn bobine_two_domains_once(iters: u64, busy: bool, function: &'static str) -> Option<Duration> {
    let bench_thread = std::thread::current().id();
    bobine::Builder::new().domains(2).run(move || {
        let main_thread = std::thread::current().id();
        assert_eq!(main_thread, bench_thread, "the main task runs on domain 0");
        let (ping, pong) = (Channel::<u64>::new(), Channel::<u64>::new());
        // 1: go, 0: this runtime is thrown away.
        let go = Channel::<u64>::new();
        let stop = Arc::new(AtomicBool::new(false));
        let placed: Arc<OnceLock<ThreadId>> = Arc::new(OnceLock::new());
        let echo = {
            let (ping, pong, go, stop, placed) = (
                ping.clone(),
                pong.clone(),
                go.clone(),
                stop.clone(),
                placed.clone(),
            );
            bobine::thread::spawn(move || {
                let me = std::thread::current().id();
                let yielder = busy.then(|| {
                    let stop = stop.clone();
                    bobine::thread::spawn_local(move || spin_yielding(&stop))
                });
                placed.set(me).expect("placed once");
                if go.recv() == 1 {
                    for _ in 0..iters {
                        pong.send(ping.recv());
                    }
                }
                if let Some(y) = yielder {
                    y.join().expect("yielding task panicked");
                }
                // Started tasks never migrate: still on the thread it started on.
                assert_eq!(std::thread::current().id(), me, "the echo task migrated");
                me
            })
        };
        // Block domain 0's thread (not yielding) long enough for the idle domain 1 to wake up
        // and ask for the never-started echo task, then yield so that domain 0 hands it over.
        std::thread::sleep(Duration::from_millis(2));
        let echo_thread = loop {
            if let Some(t) = placed.get() {
                break *t;
            }
            bobine::thread::yield_now();
        };
        let on_domain_1 = echo_thread != main_thread;
        go.send(u64::from(on_domain_1));
        if !on_domain_1 {
            stop.store(true, Ordering::Relaxed);
            echo.join().expect("echo task panicked");
            return None;
        }
        let yielder = busy.then(|| {
            let stop = stop.clone();
            bobine::thread::spawn_local(move || spin_yielding(&stop))
        });
        let start = Instant::now();
        for i in 0..iters {
            ping.send(i);
            assert_eq!(pong.recv(), i);
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        if let Some(y) = yielder {
            y.join().expect("yielding task panicked");
        }
        let echo_end = echo.join().expect("echo task panicked");
        assert_eq!(echo_end, echo_thread);
        assert_eq!(
            std::thread::current().id(),
            main_thread,
            "the main task migrated"
        );
        placement_record(function, |p| {
            p.measured += 1;
            p.threads = Some((main_thread, echo_thread));
        });
        Some(elapsed)
    })
}

fn bobine_two_domains(iters: u64, busy: bool, function: &'static str) -> Duration {
    for _ in 0..100 {
        if let Some(d) = bobine_two_domains_once(iters, busy, function) {
            return d;
        }
        placement_record(function, |p| p.rebuilds += 1);
    }
    panic!("{function}: the echo task never started on domain 1 in 100 runtimes");
}

fn bobine_busy(iters: u64) -> Duration {
    bobine_two_domains(iters, true, BUSY)
}

fn bobine_idle(iters: u64) -> Duration {
    bobine_two_domains(iters, false, IDLE)
}

// ---------------------------------------------------------------------------------------------
// bobine, select3

fn bobine_select3(iters: u64) -> Duration {
    runtime().run(move || {
        let chans: [Channel<u64>; 3] = std::array::from_fn(|_| Channel::new());
        let partner = {
            let chans = chans.clone();
            bobine::thread::spawn(move || {
                for i in 0..iters {
                    chans[(i % 3) as usize].send(i);
                }
            })
        };
        let start = Instant::now();
        for i in 0..iters {
            let evs = chans.iter().map(Channel::recv_evt).collect();
            assert_eq!(choose(evs).sync(), i);
        }
        let elapsed = start.elapsed();
        partner.join().expect("partner task panicked");
        elapsed
    })
}

// ---------------------------------------------------------------------------------------------
// tokio, current-thread runtime

fn tokio_pingpong(iters: u64) -> Duration {
    use tokio::sync::mpsc::channel;
    tokio_run(async move {
        let (ping_tx, mut ping_rx) = channel::<u64>(1);
        let (pong_tx, mut pong_rx) = channel::<u64>(1);
        let echo = tokio::spawn(async move {
            for _ in 0..iters {
                let v = ping_rx.recv().await.unwrap();
                pong_tx.send(v).await.unwrap();
            }
        });
        let start = Instant::now();
        for i in 0..iters {
            ping_tx.send(i).await.unwrap();
            assert_eq!(pong_rx.recv().await.unwrap(), i);
        }
        let elapsed = start.elapsed();
        echo.await.expect("echo task panicked");
        elapsed
    })
}

fn tokio_select3(iters: u64) -> Duration {
    use tokio::sync::mpsc::channel;
    tokio_run(async move {
        let (tx0, mut rx0) = channel::<u64>(1);
        let (tx1, mut rx1) = channel::<u64>(1);
        let (tx2, mut rx2) = channel::<u64>(1);
        let partner = tokio::spawn(async move {
            let txs = [tx0, tx1, tx2];
            for i in 0..iters {
                txs[(i % 3) as usize].send(i).await.unwrap();
            }
        });
        let start = Instant::now();
        let mut sum = 0u64;
        for _ in 0..iters {
            // Channel order is not message order here (each channel buffers one), so check the
            // sum instead of each value.
            sum += tokio::select! {
                Some(v) = rx0.recv() => v,
                Some(v) = rx1.recv() => v,
                Some(v) = rx2.recv() => v,
            };
        }
        let elapsed = start.elapsed();
        partner.await.expect("partner task panicked");
        assert_eq!(sum, iters * iters.saturating_sub(1) / 2);
        elapsed
    })
}

// ---------------------------------------------------------------------------------------------
// may, one worker

/// may's channel is unbounded (it has no `sync_channel`): the ping-pong alone makes each send
/// wait for the previous receive.
fn may_pingpong(iters: u64) -> Duration {
    use may::sync::mpsc::channel;
    may_run(move || {
        let (ping_tx, ping_rx) = channel::<u64>();
        let (pong_tx, pong_rx) = channel::<u64>();
        let echo = may_spawn(move || {
            for _ in 0..iters {
                pong_tx.send(ping_rx.recv().unwrap()).unwrap();
            }
        });
        let start = Instant::now();
        for i in 0..iters {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
        let elapsed = start.elapsed();
        echo.join().expect("echo coroutine panicked");
        elapsed
    })
}

// ---------------------------------------------------------------------------------------------
// OS threads

fn std_pingpong(iters: u64) -> Duration {
    use std::sync::mpsc::sync_channel;
    let (ping_tx, ping_rx) = sync_channel::<u64>(0);
    let (pong_tx, pong_rx) = sync_channel::<u64>(0);
    let echo = std::thread::spawn(move || {
        for _ in 0..iters {
            pong_tx.send(ping_rx.recv().unwrap()).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    let elapsed = start.elapsed();
    echo.join().expect("echo thread panicked");
    elapsed
}

fn crossbeam_pingpong(iters: u64) -> Duration {
    use crossbeam_channel::bounded;
    let (ping_tx, ping_rx) = bounded::<u64>(0);
    let (pong_tx, pong_rx) = bounded::<u64>(0);
    let echo = std::thread::spawn(move || {
        for _ in 0..iters {
            pong_tx.send(ping_rx.recv().unwrap()).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    let elapsed = start.elapsed();
    echo.join().expect("echo thread panicked");
    elapsed
}

fn crossbeam_select3(iters: u64) -> Duration {
    use crossbeam_channel::{bounded, select};
    let (tx0, rx0) = bounded::<u64>(0);
    let (tx1, rx1) = bounded::<u64>(0);
    let (tx2, rx2) = bounded::<u64>(0);
    let partner = std::thread::spawn(move || {
        let txs = [tx0, tx1, tx2];
        for i in 0..iters {
            txs[(i % 3) as usize].send(i).unwrap();
        }
    });
    let start = Instant::now();
    for i in 0..iters {
        let v = select! {
            recv(rx0) -> v => v.unwrap(),
            recv(rx1) -> v => v.unwrap(),
            recv(rx2) -> v => v.unwrap(),
        };
        assert_eq!(v, i);
    }
    let elapsed = start.elapsed();
    partner.join().expect("partner thread panicked");
    elapsed
}

// ---------------------------------------------------------------------------------------------
// criterion groups

/// Runs one criterion group, `(function name, loop)` per runtime.
fn group(c: &mut Criterion, info: &GroupInfo, loops: &[(&str, Loop)]) {
    debug_assert!(loops.iter().map(|l| l.0).eq(info.functions.iter().copied()));
    common::group(c, info.name, loops);
}

fn pingpong_one_domain(c: &mut Criterion) {
    group(
        c,
        &ONE_DOMAIN,
        &[
            (BOBINE, bobine_plain),
            (SELECT1, bobine_select1),
            (CHOOSE2, bobine_choose2),
            (TOKIO, tokio_pingpong),
            (MAY, may_pingpong),
            (STD, std_pingpong),
            (CROSSBEAM, crossbeam_pingpong),
        ],
    );
}

fn pingpong_two_domains(c: &mut Criterion) {
    group(
        c,
        &TWO_DOMAINS,
        &[
            (BUSY, bobine_busy),
            (IDLE, bobine_idle),
            (CROSSBEAM, crossbeam_pingpong),
        ],
    );
}

fn select3(c: &mut Criterion) {
    group(
        c,
        &SELECT3,
        &[
            (BOBINE, bobine_select3),
            (TOKIO, tokio_select3),
            (CROSSBEAM, crossbeam_select3),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// the ratio table

fn print_ratio_table(since: SystemTime, load_before: &str) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for info in GROUPS {
        let median = |f: &str| median_ns(info.name, f, since);
        if info.functions.iter().all(|f| median(f).is_none()) {
            continue;
        }
        let base = median(info.base);
        for &f in info.functions {
            let m = median(f);
            let target = match info.targets.iter().find(|t| t.0 == f) {
                Some(&(_, t)) => match m {
                    Some(m) if m <= t => format!("≤ {t:.0}: met"),
                    Some(_) => format!("≤ {t:.0}: MISSED"),
                    None => format!("≤ {t:.0}"),
                },
                None => String::new(),
            };
            rows.push(vec![
                info.operation.to_owned(),
                f.to_owned(),
                fmt_ns(m),
                fmt_ratio(m, base),
                target,
            ]);
        }
        for &(num, den) in info.extra {
            notes.push(format!(
                "{}: {num} / {den} = {}",
                info.operation,
                fmt_ratio(median(num), median(den))
            ));
        }
    }
    let printed = report::print_table(
        "Medians per operation (ns); ratio = median / the group's bobine baseline median \
         (bobine, or bobine-busy for two domains): > 1 means bobine is faster",
        &[
            ("operation", Align::Left),
            ("function", Align::Left),
            ("median ns", Align::Right),
            ("/ bobine", Align::Right),
            ("target", Align::Left),
        ],
        &rows,
    );
    if !printed {
        return;
    }
    println!();
    for note in notes {
        println!("{note}");
    }
    let placements = PLACEMENTS.lock().unwrap_or_else(|e| e.into_inner());
    for (function, p) in placements.iter() {
        let threads = match p.threads {
            Some((main, echo)) => format!(
                "main task on domain 0 ({main:?}, the bench thread), echo task on domain 1 ({echo:?})"
            ),
            None => "no sample measured".to_owned(),
        };
        println!(
            "pingpong_two_domains/{function}: {threads}; {} runtimes measured (criterion's \
             warm-up included), {} rebuilt because the echo task started on domain 0",
            p.measured, p.rebuilds
        );
    }
    println!(
        "load average before the run: {load_before}; after: {} on {} CPUs (bobine-busy spins \
         both domains: any other runnable thread on the machine preempts one of them for whole \
         scheduler ticks, and the round trip waits for it)",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "may: its mpsc channel is unbounded (no sync_channel(0)); std, crossbeam: two OS \
         threads; tokio select3: mpsc(1) buffers one message per channel."
    );
}

fn main() {
    // Before may's scheduler starts (it reads its configuration once).
    may::config().set_workers(1);
    let since = SystemTime::now();
    let load_before = load_average();
    let mut c = common::criterion();
    pingpong_one_domain(&mut c);
    pingpong_two_domains(&mut c);
    select3(&mut c);
    c.final_summary();
    print_ratio_table(since, &load_before);
}
