//! Cancellation racing a hand-off: a task parked in a blocking call is cancelled at about the
//! moment another side hands it something (a message, the mutex, a notification, a permit).
//! Whichever wins, nothing is lost or duplicated: a hand-off that reached the cancelled task is
//! kept (it records what it got before it unwinds at its next park point), and one that did not
//! goes to the next waiter or stays for the next caller.
//!
//! Each race runs [`ROUNDS`] rounds in each of four configurations: one domain (the giving side
//! is a task beside the cancelled one), two domains (the giving side on domain 1), four domains
//! (the giving side on domain 1, and a third task on domain 2 that may cancel), and a plain OS
//! thread giving to the tasks of a one-domain runtime. The cancelled task and the second
//! waiter run on domain 0 with the main task. In each round the cancel comes, at random, from
//! the main task (at about the moment the giving side gives, or a little before it lets the
//! giving side go, or once the cancelled task has ended), from the giving side just before or
//! just after it gives, or (four domains) from the third task at about the moment of the give.
//! Two of these orders settle the outcome (the last main one: another waiter gets the
//! hand-off; the giving side cancelling after the give: the cancelled task does), so each
//! configuration checks that both outcomes happened; the others race, and the test prints how
//! the rounds ended (`--nocapture`).
//!
//! A debug build runs half the rounds (50 000): with 100 000 the whole file took 42 to 63 s
//! in debug on the 2-core machine it was written on (28 s in release), too close to the
//! minute this file may take in CI.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bobine::event::{self, Channel};
use bobine::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use bobine::sync::{Condvar, Mutex, Semaphore};
use bobine::{TaskCancelled, thread};
use common::panics::payload_text;
use common::rng::Rng;
use common::tasks::{Domains, with_domains};

/// Rounds per race and configuration.
#[cfg(not(debug_assertions))]
const ROUNDS: u64 = 100_000;
/// Rounds per race and configuration in a debug build (see the module doc).
#[cfg(debug_assertions)]
const ROUNDS: u64 = 50_000;

/// Rounds per race and configuration in this run: [`ROUNDS`], or a two-hundredth of them
/// under valgrind (`scripts/memcheck`), where a round costs some fifty times more.
fn rounds() -> u64 {
    common::scaled(ROUNDS, 200)
}

const HOUR: Duration = Duration::from_secs(3600);

/// Where the giving side of a race runs.
#[derive(Clone, Copy, Debug)]
enum Giver {
    /// A task on this domain.
    Task(usize),
    /// A plain OS thread.
    Thread,
}

/// One configuration of a race.
#[derive(Clone, Copy, Debug)]
struct Config {
    name: &'static str,
    domains: usize,
    giver: Giver,
    /// The domain of a third task that may cancel, if any.
    third: Option<usize>,
}

const CONFIGS: [Config; 4] = [
    Config {
        name: "one domain",
        domains: 1,
        giver: Giver::Task(0),
        third: None,
    },
    Config {
        name: "two domains",
        domains: 2,
        giver: Giver::Task(1),
        third: None,
    },
    Config {
        name: "four domains",
        domains: 4,
        giver: Giver::Task(1),
        third: Some(2),
    },
    Config {
        name: "a plain thread",
        domains: 1,
        giver: Giver::Thread,
        third: None,
    },
];

/// Spins until the giving side is about to give in round `n` (at most a few tens of
/// microseconds), then `extra` spins more: a cancel made next lands at about the give.
fn near_the_give(giving: &AtomicU64, n: u64, extra: u64) {
    let mut spins = 0;
    while giving.load(Ordering::Acquire) < n && spins < 50_000 {
        std::hint::spin_loop();
        spins += 1;
    }
    for _ in 0..extra {
        std::hint::spin_loop();
    }
}

/// What the main task tells the giving side.
enum ToGiver {
    /// Get ready for a round (take the mutex), then say so.
    Start,
    /// Give in round `n`; cancel the victim just before (`true`) or just after (`false`) if
    /// its handle is here, and send the handle back at once.
    Go(u64, Option<(thread::JoinHandle<()>, bool)>),
}

/// The giving side's end of the race's channels.
struct Link {
    from_main: Receiver<ToGiver>,
    ready: Sender<()>,
    handle_back: Sender<thread::JoinHandle<()>>,
    done: Sender<()>,
    giving: Arc<AtomicU64>,
}

impl Link {
    /// Waits for the start of a round; false once the main task has hung up.
    fn start(&self) -> bool {
        match self.from_main.recv() {
            Ok(ToGiver::Start) => true,
            Ok(ToGiver::Go(..)) => panic!("a round's go before its start"),
            Err(_) => false,
        }
    }

    /// Says the giving side is ready (after [`Link::start`]).
    fn ready(&self) {
        self.ready.send(()).unwrap();
    }

    /// Waits for the go of a round, then gives (`give(n)`), with the cancel around it if the
    /// giving side was handed the victim; false once the main task has hung up.
    fn give(&self, give: impl FnOnce(u64)) -> bool {
        let (n, cancel) = match self.from_main.recv() {
            Ok(ToGiver::Go(n, cancel)) => (n, cancel),
            Ok(ToGiver::Start) => panic!("a start where a go was expected"),
            Err(_) => return false,
        };
        self.giving.store(n, Ordering::Release);
        let after = match cancel {
            Some((h, true)) => {
                h.cancel();
                self.handle_back.send(h).unwrap();
                None
            }
            other => other,
        };
        give(n);
        if let Some((h, _)) = after {
            h.cancel();
            self.handle_back.send(h).unwrap();
        }
        self.done.send(()).unwrap();
        true
    }
}

/// Who cancels the victim in a round.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// The main task, at about the moment the giving side gives.
    Main,
    /// The main task, then it lets the giving side go after a random short while.
    MainFirst,
    /// The main task, which lets the giving side go once the victim has ended (the victim
    /// certainly does not get the hand-off).
    MainSettled,
    /// The giving side, just before it gives.
    GiverFirst,
    /// The giving side, just after it gives (the victim certainly gets the hand-off).
    GiverAfter,
    /// The third task, at about the moment of the give.
    Third,
}

/// The running giving side.
enum GiverRun {
    Task(thread::JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

/// The third task: cancels the victims it is sent at about the moment of the give.
struct Third {
    to: Sender<(u64, thread::JoinHandle<()>)>,
    back: Receiver<thread::JoinHandle<()>>,
    run: thread::JoinHandle<()>,
}

/// The main task's side of a race in one configuration.
struct Driver {
    cfg: Config,
    to_giver: Sender<ToGiver>,
    ready: Receiver<()>,
    handle_back: Receiver<thread::JoinHandle<()>>,
    done: Receiver<()>,
    giving: Arc<AtomicU64>,
    giver: Option<GiverRun>,
    third: Option<Third>,
    rng: Rng,
    seed: u64,
}

impl Driver {
    /// Starts the giving side, running `body` with its end of the channels, and the third
    /// task if the configuration has one.
    fn new(rt: &Domains, cfg: Config, body: impl FnOnce(Link) + Send + 'static) -> Driver {
        let mut rng = Rng::seeded(cfg.domains as u64);
        let seed = rng.0;
        let (to_giver, from_main) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let (back_tx, handle_back) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let giving = Arc::new(AtomicU64::new(0));
        let link = Link {
            from_main,
            ready: ready_tx,
            handle_back: back_tx,
            done: done_tx,
            giving: giving.clone(),
        };
        let giver = match cfg.giver {
            Giver::Task(d) => GiverRun::Task(rt.spawn_on(d, move || body(link))),
            Giver::Thread => GiverRun::Thread(std::thread::spawn(move || body(link))),
        };
        let third = cfg.third.map(|d| {
            let (to, from) = mpsc::channel::<(u64, thread::JoinHandle<()>)>();
            let (back_tx, back) = mpsc::channel();
            let giving = giving.clone();
            let mut rng = Rng(rng.next() | 1);
            let run = rt.spawn_on(d, move || {
                for (n, h) in from {
                    near_the_give(&giving, n, rng.below(300));
                    h.cancel();
                    back_tx.send(h).unwrap();
                }
            });
            Third { to, back, run }
        });
        Driver {
            cfg,
            to_giver,
            ready,
            handle_back,
            done,
            giving,
            giver: Some(giver),
            third,
            rng,
            seed,
        }
    }

    /// Whether to do something in this round, with probability one half.
    fn coin(&mut self) -> bool {
        self.rng.below(2) == 0
    }

    /// Starts a round whose giving side must get ready first (it takes the mutex).
    fn start(&self) {
        self.to_giver.send(ToGiver::Start).unwrap();
        self.ready.recv().unwrap();
    }

    /// Fires round `n`: the giving side gives, and `victim` is cancelled by whoever the round
    /// picks. Returns the victim's handle once it has been cancelled (the give may not have
    /// happened yet: see [`Driver::done`]).
    fn fire(&mut self, n: u64, victim: thread::JoinHandle<()>) -> thread::JoinHandle<()> {
        let choices = if self.third.is_some() { 6 } else { 5 };
        let order = match self.rng.below(choices) {
            0 => Order::Main,
            1 => Order::MainFirst,
            2 => Order::MainSettled,
            3 => Order::GiverFirst,
            4 => Order::GiverAfter,
            _ => Order::Third,
        };
        let local = matches!(self.cfg.giver, Giver::Task(0));
        match order {
            Order::Main => {
                self.to_giver.send(ToGiver::Go(n, None)).unwrap();
                if local {
                    for _ in 0..self.rng.below(4) {
                        thread::yield_now();
                    }
                } else {
                    let extra = self.rng.below(300);
                    near_the_give(&self.giving, n, extra);
                }
                victim.cancel();
                victim
            }
            Order::MainFirst => {
                victim.cancel();
                if local {
                    for _ in 0..self.rng.below(3) {
                        thread::yield_now();
                    }
                } else {
                    for _ in 0..self.rng.below(2000) {
                        std::hint::spin_loop();
                    }
                }
                self.to_giver.send(ToGiver::Go(n, None)).unwrap();
                victim
            }
            Order::MainSettled => {
                victim.cancel();
                // The victim runs on this domain: each yield lets it go on unwinding.
                while !victim.is_finished() {
                    thread::yield_now();
                }
                self.to_giver.send(ToGiver::Go(n, None)).unwrap();
                victim
            }
            Order::GiverFirst | Order::GiverAfter => {
                let first = matches!(order, Order::GiverFirst);
                self.to_giver
                    .send(ToGiver::Go(n, Some((victim, first))))
                    .unwrap();
                self.handle_back.recv().unwrap()
            }
            Order::Third => {
                let third = self.third.as_ref().expect("a third task");
                self.to_giver.send(ToGiver::Go(n, None)).unwrap();
                third.to.send((n, victim)).unwrap();
                third.back.recv().unwrap()
            }
        }
    }

    /// Waits until the giving side has given in this round.
    fn done(&self) {
        self.done.recv().unwrap();
    }

    /// Hangs up on the giving side and the third task and waits for them to end.
    fn finish(mut self) {
        drop(self.to_giver);
        match self.giver.take().expect("running") {
            GiverRun::Task(h) => h.join().unwrap(),
            GiverRun::Thread(h) => h.join().unwrap(),
        }
        if let Some(third) = self.third.take() {
            drop(third.to);
            third.run.join().unwrap();
        }
    }

    /// Where this race runs, for messages.
    fn context(&self, n: u64) -> String {
        format!("{}, round {n}, seed {:#x}", self.cfg.name, self.seed)
    }
}

/// Joins a victim, which must have been cancelled.
#[track_caller]
fn expect_cancelled(h: thread::JoinHandle<()>, context: &str) {
    match h.join() {
        Ok(()) => panic!("{context}: the cancelled task ended normally"),
        Err(p) => assert!(
            p.is::<TaskCancelled>(),
            "{context}: join gave '{}', not TaskCancelled",
            payload_text(&*p)
        ),
    }
}

/// How the rounds of a race ended in one configuration.
#[derive(Default, Debug)]
struct Tally {
    /// The cancelled task got the hand-off (and unwound at its next park point).
    victim: u64,
    /// The hand-off went to another waiter, or stayed for the next caller.
    other: u64,
}

impl Tally {
    /// Checks that every round is counted and that both outcomes happened.
    #[track_caller]
    fn check(&self, race: &str, cfg: &Config) {
        assert_eq!(
            self.victim + self.other,
            rounds(),
            "{race}, {}: every round counted once",
            cfg.name
        );
        assert!(
            self.victim > 0 && self.other > 0,
            "{race}, {}: the race was not run both ways ({self:?})",
            cfg.name
        );
    }
}

/// Runs `race` in each configuration under the watchdog, and checks its tallies.
fn in_each_config(name: &str, race: impl Fn(&Domains, Config) -> Tally) {
    common::watchdog(240, name, || {
        for cfg in CONFIGS {
            let started = Instant::now();
            let tally = with_domains(cfg.domains, |rt| race(rt, cfg));
            tally.check(name, &cfg);
            eprintln!("{name}, {}: {tally:?} in {:?}", cfg.name, started.elapsed());
        }
    });
}

/// The channel race: a receiver parked in `recv` (looping: it records each value it gets, then
/// receives again) is cancelled as a value is sent. `rendezvous` uses `sync_channel(0)`, else
/// `channel()`. In half the rounds a second receiver waits behind it; otherwise the main task
/// receives what is left.
fn channel_race(rt: &Domains, cfg: Config, rendezvous: bool) -> Tally {
    let (send, rx): (Box<dyn Fn(u64) + Send>, Receiver<u64>) = if rendezvous {
        let (tx, rx) = mpsc::sync_channel(0);
        (Box::new(move |n| tx.send(n).unwrap()), rx)
    } else {
        let (tx, rx) = mpsc::channel();
        (Box::new(move |n| tx.send(n).unwrap()), rx)
    };
    let rx = Rc::new(rx);
    let mut d = Driver::new(rt, cfg, move |link| while link.give(&send) {});
    let mut tally = Tally::default();
    for n in 1..=rounds() {
        let context = d.context(n);
        let got = Rc::new(RefCell::new(Vec::new()));
        let victim = thread::spawn_local({
            let (rx, got) = (rx.clone(), got.clone());
            move || {
                loop {
                    let v = rx.recv().unwrap();
                    got.borrow_mut().push(v);
                }
            }
        });
        thread::yield_now();
        let second = d.coin().then(|| {
            let rx = rx.clone();
            let h = thread::spawn_local(move || rx.recv().unwrap());
            thread::yield_now();
            h
        });
        let victim = d.fire(n, victim);
        expect_cancelled(victim, &context);
        let by_victim = got.borrow().clone();
        match by_victim[..] {
            [v] => {
                assert_eq!(v, n, "{context}: the value the cancelled receiver got");
                tally.victim += 1;
                if let Some(s) = second {
                    s.cancel();
                    assert!(
                        s.join().unwrap_err().is::<TaskCancelled>(),
                        "{context}: the second receiver got a value too"
                    );
                }
            }
            [] => {
                let v = match second {
                    Some(s) => s.join().expect("the second receiver gets the value"),
                    None => rx.recv().unwrap(),
                };
                assert_eq!(v, n, "{context}: the value left for the others");
                tally.other += 1;
            }
            _ => panic!("{context}: the cancelled receiver got {by_victim:?}"),
        }
        d.done();
        assert!(
            matches!(rx.try_recv(), Err(TryRecvError::Empty)),
            "{context}: a value left over (duplicated)"
        );
    }
    d.finish();
    tally
}

/// Cancelling a receiver parked in an unbounded `mpsc` channel's `recv` at about the moment a
/// message is sent ([`ROUNDS`] times in each configuration): every message is received exactly
/// once, by the cancelled receiver (recorded before it unwinds), by a second receiver, or by
/// the next `recv`.
#[test]
fn cancel_racing_mpsc_delivery_loses_no_message() {
    in_each_config("cancel_racing_mpsc_delivery", |rt, cfg| {
        channel_race(rt, cfg, false)
    });
}

/// Cancelling a receiver parked in a rendezvous channel's (`sync_channel(0)`) `recv` at about
/// the moment a sender arrives ([`ROUNDS`] times in each configuration): every message is
/// received exactly once, by the cancelled receiver (recorded before it unwinds), by a second
/// receiver, or by the next `recv`, and every send completes.
#[test]
fn cancel_racing_rendezvous_delivery_loses_no_message() {
    in_each_config("cancel_racing_rendezvous_delivery", |rt, cfg| {
        channel_race(rt, cfg, true)
    });
}

/// The CML race: a task parked in a general sync, `choose [recv idle; recv c]` (looping: it
/// records each value it gets, then syncs again), is cancelled as a value is sent on `c` (a
/// blocking `Channel::send`, which returns once a receiver has the value). In half the rounds
/// a second task waits behind it in the same choice; otherwise the main task receives what is
/// left.
fn cml_race(rt: &Domains, cfg: Config) -> Tally {
    let c: Channel<u64> = Channel::new();
    let idle: Channel<u64> = Channel::new();
    let choice: Rc<dyn Fn() -> u64> = {
        let (c, idle) = (c.clone(), idle.clone());
        Rc::new(move || event::choose(vec![idle.recv_evt(), c.recv_evt()]).sync())
    };
    let mut d = Driver::new(rt, cfg, {
        let c = c.clone();
        move |link| while link.give(|n| c.send(n)) {}
    });
    let mut tally = Tally::default();
    for n in 1..=rounds() {
        let context = d.context(n);
        let got = Rc::new(RefCell::new(Vec::new()));
        let victim = thread::spawn_local({
            let (choice, got) = (choice.clone(), got.clone());
            move || {
                loop {
                    let v = choice();
                    got.borrow_mut().push(v);
                }
            }
        });
        thread::yield_now();
        let second = d.coin().then(|| {
            let choice = choice.clone();
            let h = thread::spawn_local(move || choice());
            thread::yield_now();
            h
        });
        let victim = d.fire(n, victim);
        expect_cancelled(victim, &context);
        let by_victim = got.borrow().clone();
        match by_victim[..] {
            [v] => {
                assert_eq!(v, n, "{context}: the value the cancelled task got");
                tally.victim += 1;
                if let Some(s) = second {
                    s.cancel();
                    assert!(
                        s.join().unwrap_err().is::<TaskCancelled>(),
                        "{context}: the second task got a value too"
                    );
                }
            }
            [] => {
                let v = match second {
                    Some(s) => s.join().expect("the second task gets the value"),
                    None => c.recv(),
                };
                assert_eq!(v, n, "{context}: the value left for the others");
                tally.other += 1;
            }
            _ => panic!("{context}: the cancelled task got {by_victim:?}"),
        }
        d.done();
        assert!(
            c.recv_evt().poll().is_none(),
            "{context}: a value left over (duplicated)"
        );
    }
    d.finish();
    tally
}

/// Cancelling a task parked in a CML choice (`choose [recv idle; recv c]`, the general sync
/// whose state lives in the task's frame) at about the moment a sender arrives ([`ROUNDS`]
/// times in each configuration): every message is received exactly once, by the cancelled
/// task (recorded before it unwinds), by a second task in the same choice, or by the next
/// `recv`, and every send completes.
#[test]
fn cancel_racing_cml_choice_delivery_loses_no_message() {
    in_each_config("cancel_racing_cml_choice_delivery", cml_race);
}

/// Cancelling a task parked in `Mutex::lock` at about the moment the holder unlocks
/// ([`ROUNDS`] times in each configuration): the lock is never lost. The cancelled task, if the lock
/// reached it, holds it until it unwinds at its next park point; in half the rounds a second
/// waiter queued behind it gets the lock (and, holding it, finds it taken); after each round
/// the lock is free and not poisoned, and the count of acquisitions is exact.
#[test]
fn cancel_racing_mutex_hand_off_never_loses_the_lock() {
    in_each_config("cancel_racing_mutex_hand_off", |rt, cfg| {
        let m = Arc::new(Mutex::new(0u64));
        let mut d = Driver::new(rt, cfg, {
            let m = m.clone();
            move |link| {
                while link.start() {
                    let g = m.lock().unwrap();
                    link.ready();
                    link.give(|_| drop(g));
                }
            }
        });
        let mut tally = Tally::default();
        let mut acquisitions = 0;
        for n in 1..=rounds() {
            let context = d.context(n);
            d.start();
            let got = Rc::new(Cell::new(false));
            let victim = thread::spawn_local({
                let (m, got) = (m.clone(), got.clone());
                move || {
                    let mut g = m.lock().unwrap();
                    *g += 1;
                    got.set(true);
                    thread::sleep(HOUR);
                }
            });
            thread::yield_now();
            let second = d.coin().then(|| {
                let m = m.clone();
                let h = thread::spawn_local(move || {
                    let mut g = m.lock().unwrap();
                    // While it holds the lock (the giving side may still be in its unlock),
                    // nobody else can take it.
                    for _ in 0..2 {
                        thread::yield_now();
                        assert!(m.try_lock().is_err(), "the lock is held twice");
                    }
                    *g += 1;
                });
                thread::yield_now();
                h
            });
            let victim = d.fire(n, victim);
            expect_cancelled(victim, &context);
            d.done();
            if got.get() {
                tally.victim += 1;
                acquisitions += 1;
            } else {
                tally.other += 1;
            }
            if let Some(s) = second {
                s.join()
                    .unwrap_or_else(|p| panic!("{context}: second waiter: {}", payload_text(&*p)));
                acquisitions += 1;
            }
            let g = m
                .try_lock()
                .unwrap_or_else(|e| panic!("{context}: the lock is not free: {e:?}"));
            assert_eq!(*g, acquisitions, "{context}: acquisitions counted");
        }
        d.finish();
        tally
    });
}

/// Cancelling a task parked in `Condvar::wait` (or `wait_timeout`, in half the rounds) at
/// about the moment `notify_one` is sent for a token put under the mutex ([`ROUNDS`] times in
/// each configuration): the notification is never lost. A second waiter is always queued behind
/// the cancelled one: if the cancelled task did not take the token, the second must wake and
/// take it; every token put is taken exactly once.
#[test]
fn cancel_racing_notify_one_never_loses_the_notification() {
    in_each_config("cancel_racing_notify_one", |rt, cfg| {
        let pair = Arc::new((Mutex::new(0u64), Condvar::new()));
        let mut d = Driver::new(rt, cfg, {
            let pair = pair.clone();
            move |link| {
                while link.give(|n| {
                    let (m, cv) = &*pair;
                    let mut g = m.lock().unwrap();
                    *g += 1;
                    // Half the time the waiter is woken while the mutex is still held, so it
                    // may be cancelled as it relocks.
                    if n % 2 == 0 {
                        cv.notify_one();
                        drop(g);
                    } else {
                        drop(g);
                        cv.notify_one();
                    }
                }) {}
            }
        });
        let mut tally = Tally::default();
        for n in 1..=rounds() {
            let context = d.context(n);
            let got = Rc::new(Cell::new(false));
            let timed = d.coin();
            let victim = thread::spawn_local({
                let (pair, got) = (pair.clone(), got.clone());
                move || {
                    let (m, cv) = &*pair;
                    let mut g = m.lock().unwrap();
                    while *g == 0 {
                        g = if timed {
                            cv.wait_timeout(g, HOUR).unwrap().0
                        } else {
                            cv.wait(g).unwrap()
                        };
                    }
                    *g -= 1;
                    got.set(true);
                    drop(g);
                    thread::sleep(HOUR);
                }
            });
            thread::yield_now();
            let second = thread::spawn_local({
                let pair = pair.clone();
                move || {
                    let (m, cv) = &*pair;
                    let mut g = cv.wait_while(m.lock().unwrap(), |t| *t == 0).unwrap();
                    *g -= 1;
                }
            });
            thread::yield_now();
            let victim = d.fire(n, victim);
            expect_cancelled(victim, &context);
            d.done();
            if got.get() {
                // The cancelled task took the token: the second waiter needs another.
                tally.victim += 1;
                let (m, cv) = &*pair;
                *m.lock().unwrap() += 1;
                cv.notify_one();
            } else {
                tally.other += 1;
            }
            second
                .join()
                .unwrap_or_else(|p| panic!("{context}: second waiter: {}", payload_text(&*p)));
            let tokens = *pair.0.try_lock().expect("the mutex is free");
            assert_eq!(tokens, 0, "{context}: every token taken once");
        }
        d.finish();
        tally
    });
}

/// Gives its semaphore permit back when dropped (on unwinding too).
struct Permit(Arc<Semaphore>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Cancelling a task parked in `Semaphore::acquire` at about the moment a permit is released
/// ([`ROUNDS`] times in each configuration): permits are conserved. The cancelled task, if the
/// permit reached it, gives it back as it unwinds; in half the rounds a second waiter queued
/// behind it must end up with the one permit, otherwise the permit is left available.
#[test]
fn cancel_racing_semaphore_release_conserves_permits() {
    in_each_config("cancel_racing_semaphore_release", |rt, cfg| {
        let sem = Arc::new(Semaphore::new(0));
        let mut d = Driver::new(rt, cfg, {
            let sem = sem.clone();
            move |link| while link.give(|_| sem.release()) {}
        });
        let mut tally = Tally::default();
        for n in 1..=rounds() {
            let context = d.context(n);
            let got = Rc::new(Cell::new(false));
            let victim = thread::spawn_local({
                let (sem, got) = (sem.clone(), got.clone());
                move || {
                    sem.acquire();
                    let _permit = Permit(sem);
                    got.set(true);
                    thread::sleep(HOUR);
                }
            });
            thread::yield_now();
            let second = d.coin().then(|| {
                let sem = sem.clone();
                let h = thread::spawn_local(move || sem.acquire());
                thread::yield_now();
                h
            });
            let victim = d.fire(n, victim);
            expect_cancelled(victim, &context);
            d.done();
            if got.get() {
                tally.victim += 1;
            } else {
                tally.other += 1;
            }
            match second {
                Some(s) => {
                    s.join().unwrap_or_else(|p| {
                        panic!("{context}: second waiter: {}", payload_text(&*p))
                    });
                    assert_eq!(sem.available(), 0, "{context}: one permit, taken once");
                }
                None => {
                    assert_eq!(sem.available(), 1, "{context}: the permit is left");
                    assert!(sem.try_acquire());
                }
            }
        }
        d.finish();
        tally
    });
}
