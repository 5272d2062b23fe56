//! Runs one hot path of the runtime `n` times, for instruction counts under callgrind (the VM
//! exposes no hardware counters, and instruction counts do not drift with the machine's load).
//!
//! ```text
//! cargo build --release --example hot_paths
//! valgrind --tool=callgrind --callgrind-out-file=cg.20000 target/release/examples/hot_paths condvar 20000
//! valgrind --tool=callgrind --callgrind-out-file=cg.40000 target/release/examples/hot_paths condvar 40000
//! ```
//!
//! The per-operation figure is the difference of the two totals ("Collected") divided by the
//! difference of `n` (20 000 here), which cancels the runtime's start and end. Cases:
//!
//! - `yield`: two tasks yielding to each other; one operation is a pair of yields.
//! - `spawn`: spawn and join an empty task (`n` a multiple of 1000).
//! - `spawn_local`: the same with `thread::spawn_local` (pinned to its domain).
//! - `miou_spawn`: the same on the Miou face, `miou::call_cc` + `miou::await_` in
//!   `miou::run_with(0, ..)` (one domain, like the other cases).
//! - `mutex`: uncontended `Mutex` lock + unlock.
//! - `condvar`: a `Mutex` + `Condvar` round trip between two tasks.
//! - `pingpong`: a CML `Channel` round trip between two tasks.
//! - `select1`: the same with every receive made as `select(vec![c.recv_evt()])`.
//! - `choose2`: the same with every receive made as `choose` of the channel's receive event and
//!   one of a channel nobody sends on (the general path: offers on two channels).
//! - `select3`: one sync of `choose` over the receive events of 3 channels while a partner task
//!   sends on them in turn (`benches/events.rs`'s `select3`); one operation is one sync.
//! - `poll3`: a `poll` of `choose` over the receive events of 3 channels nobody sends on (the
//!   attempt alone: flattening, the locks, the look at each channel, the aborts).
//! - `rendezvous`: a `sync::mpsc::sync_channel(0)` round trip between two tasks (two of them,
//!   one each way: `benches/sync.rs`'s `rendezvous`).
//! - `pingpong_2d`, `rendezvous_2d`: `pingpong` and `rendezvous` with the echo task on a second
//!   domain (a Miou run with one worker, the echo pinned there), and a task yielding in a loop
//!   on each domain so that neither sleeps (as `benches/events.rs`'s `bobine-busy`). The
//!   yielding makes instruction counts meaningless: time these instead.
//! - `pingpong_2d_idle`, `rendezvous_2d_idle`: the same with no yielding task, so each hop wakes
//!   a domain asleep in epoll (as `bobine-idle`); the process's CPU time per round trip (user
//!   and system) is steadier than its elapsed time on a loaded machine.
//! - `contended`: four tasks locking one mutex and yielding inside; one operation is one
//!   critical section (`n` a multiple of 4).
//! - `tcp`: a 64-byte TCP loopback round trip between two tasks (each side parks once).

use std::io::{Read, Write};
use std::sync::Arc;

use bobine::sync::{Condvar, Mutex};
use bobine::thread;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(case), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!(
            "usage: hot_paths <yield|spawn|spawn_local|miou_spawn|mutex|condvar|pingpong|select1|choose2|select3|poll3|rendezvous|pingpong_2d|rendezvous_2d|pingpong_2d_idle|rendezvous_2d_idle|contended|tcp> <n>"
        );
        std::process::exit(2);
    };
    let run: fn(u64) = match case.as_str() {
        "yield" => yields,
        "spawn" => spawns,
        "spawn_local" => local_spawns,
        "miou_spawn" => {
            bobine::miou::run_with(0, move || miou_spawns(n));
            return;
        }
        "pingpong_2d" | "rendezvous_2d" | "pingpong_2d_idle" | "rendezvous_2d_idle" => {
            let rendezvous = case.starts_with("rendezvous");
            let busy = !case.ends_with("_idle");
            bobine::miou::run_with(1, move || two_domains(n, rendezvous, busy));
            return;
        }
        "mutex" => uncontended,
        "condvar" => condvar,
        "pingpong" => pingpong,
        "select1" => select1,
        "choose2" => choose2,
        "select3" => select3,
        "poll3" => poll3,
        "rendezvous" => rendezvous,
        "contended" => contended,
        "tcp" => tcp,
        other => {
            eprintln!("hot_paths: unknown case {other:?}");
            std::process::exit(2);
        }
    };
    bobine::Builder::new().domains(1).run(move || run(n));
}

fn yields(n: u64) {
    let other = thread::spawn(move || (0..n).for_each(|_| thread::yield_now()));
    (0..n).for_each(|_| thread::yield_now());
    other.join().unwrap();
}

fn spawns(n: u64) {
    for _ in 0..n / 1000 {
        let tasks: Vec<_> = (0..1000).map(|_| thread::spawn(|| ())).collect();
        tasks.into_iter().for_each(|t| t.join().unwrap());
    }
}

fn local_spawns(n: u64) {
    for _ in 0..n / 1000 {
        let tasks: Vec<_> = (0..1000).map(|_| thread::spawn_local(|| ())).collect();
        tasks.into_iter().for_each(|t| t.join().unwrap());
    }
}

fn miou_spawns(n: u64) {
    use bobine::miou;
    for _ in 0..n / 1000 {
        let children: Vec<_> = (0..1000).map(|_| miou::call_cc(|| ())).collect();
        children.into_iter().for_each(miou::await_exn);
    }
}

fn uncontended(n: u64) {
    let m = Mutex::new(0u64);
    for _ in 0..n {
        *m.lock().unwrap() += 1;
    }
    assert_eq!(*m.lock().unwrap(), n);
}

fn condvar(n: u64) {
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let theirs = pair.clone();
    let other = thread::spawn(move || {
        let (m, c) = &*theirs;
        for _ in 0..n {
            let mut set = c.wait_while(m.lock().unwrap(), |set| !*set).unwrap();
            *set = false;
            c.notify_one();
        }
    });
    let (m, c) = &*pair;
    for _ in 0..n {
        let mut set = m.lock().unwrap();
        *set = true;
        c.notify_one();
        drop(c.wait_while(set, |set| *set).unwrap());
    }
    other.join().unwrap();
}

fn pingpong(n: u64) {
    let (ping, pong) = (bobine::event::Channel::new(), bobine::event::Channel::new());
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let other = thread::spawn(move || {
        for _ in 0..n {
            pong2.send(ping2.recv());
        }
    });
    for i in 0..n {
        ping.send(i);
        assert_eq!(pong.recv(), i);
    }
    other.join().unwrap();
}

fn select1(n: u64) {
    use bobine::event::{Channel, select};
    let (ping, pong) = (Channel::new(), Channel::new());
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let other = thread::spawn(move || {
        for _ in 0..n {
            pong2.send(select(vec![ping2.recv_evt()]));
        }
    });
    for i in 0..n {
        ping.send(i);
        assert_eq!(select(vec![pong.recv_evt()]), i);
    }
    other.join().unwrap();
}

fn choose2(n: u64) {
    use bobine::event::{Channel, choose};
    let (ping, pong) = (Channel::new(), Channel::new());
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let other = thread::spawn(move || {
        let idle = Channel::new();
        for _ in 0..n {
            pong2.send(choose(vec![ping2.recv_evt(), idle.recv_evt()]).sync());
        }
    });
    let idle = Channel::new();
    for i in 0..n {
        ping.send(i);
        assert_eq!(choose(vec![pong.recv_evt(), idle.recv_evt()]).sync(), i);
    }
    other.join().unwrap();
}

fn select3(n: u64) {
    use bobine::event::{Channel, choose};
    let chans: [Channel<u64>; 3] = std::array::from_fn(|_| Channel::new());
    let theirs = chans.clone();
    let partner = thread::spawn(move || {
        for i in 0..n {
            theirs[(i % 3) as usize].send(i);
        }
    });
    for i in 0..n {
        let evs = chans.iter().map(Channel::recv_evt).collect();
        assert_eq!(choose(evs).sync(), i);
    }
    partner.join().unwrap();
}

fn poll3(n: u64) {
    use bobine::event::{Channel, choose};
    let chans: [Channel<u64>; 3] = std::array::from_fn(|_| Channel::new());
    for _ in 0..n {
        let evs = chans.iter().map(Channel::recv_evt).collect();
        assert_eq!(choose(evs).poll(), None);
    }
}

fn rendezvous(n: u64) {
    use bobine::sync::mpsc::sync_channel;
    let (ping_tx, ping_rx) = sync_channel::<u64>(0);
    let (pong_tx, pong_rx) = sync_channel::<u64>(0);
    let echo = thread::spawn(move || {
        for _ in 0..n {
            pong_tx.send(ping_rx.recv().unwrap()).unwrap();
        }
    });
    for i in 0..n {
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    echo.join().unwrap();
}

/// The echo side of `pingpong_2d` / `rendezvous_2d` on domain 1, the main side here (domain
/// 0), each domain kept busy by a yielding task if `busy`.
fn two_domains(n: u64, rendezvous: bool, busy: bool) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let yielder = move |stop: Arc<AtomicBool>| {
        thread::spawn_local(move || {
            while busy && !stop.load(Ordering::Relaxed) {
                thread::yield_now();
            }
        })
    };
    type Echo = Box<dyn FnOnce() + Send>;
    let (echo, mut round_trip): (Echo, Box<dyn FnMut(u64) -> u64>) = if rendezvous {
        use bobine::sync::mpsc::sync_channel;
        let (ping_tx, ping_rx) = sync_channel::<u64>(0);
        let (pong_tx, pong_rx) = sync_channel::<u64>(0);
        (
            Box::new(move || {
                for _ in 0..n {
                    pong_tx.send(ping_rx.recv().unwrap()).unwrap();
                }
            }),
            Box::new(move |i| {
                ping_tx.send(i).unwrap();
                pong_rx.recv().unwrap()
            }),
        )
    } else {
        let (ping, pong) = (bobine::event::Channel::new(), bobine::event::Channel::new());
        let (ping2, pong2) = (ping.clone(), pong.clone());
        (
            Box::new(move || {
                for _ in 0..n {
                    pong2.send(ping2.recv());
                }
            }),
            Box::new(move |i| {
                ping.send(i);
                pong.recv()
            }),
        )
    };
    let far = {
        let stop = stop.clone();
        bobine::miou::Spawn::new().pin(1).call(move || {
            assert_eq!(bobine::miou::domain::self_(), 1);
            let y = yielder(stop);
            echo();
            y.join().unwrap();
        })
    };
    let y = yielder(stop.clone());
    for i in 0..n {
        assert_eq!(round_trip(i), i);
    }
    stop.store(true, Ordering::Relaxed);
    y.join().unwrap();
    bobine::miou::await_exn(far);
}

fn contended(n: u64) {
    let m = Arc::new(Mutex::new(0u64));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            thread::spawn(move || {
                for _ in 0..n / 4 {
                    let mut g = m.lock().unwrap();
                    thread::yield_now();
                    *g += 1;
                }
            })
        })
        .collect();
    tasks.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(*m.lock().unwrap(), n / 4 * 4);
}

fn tcp(n: u64) {
    let listener = bobine::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..n {
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
    });
    let mut c = bobine::net::TcpStream::connect(addr).unwrap();
    let mut buf = [7u8; 64];
    for _ in 0..n {
        c.write_all(&buf).unwrap();
        c.read_exact(&mut buf).unwrap();
    }
    echo.join().unwrap();
}
