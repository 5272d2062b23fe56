//! An account server in the Concurrent ML style (J. Reppy, *Concurrent Programming in ML*,
//! ch. 4, client-server protocols): one task owns the balance and loops on a `select` over
//! three request channels: `get` (carries a reply channel for the balance), `put` (an
//! amount), and `stop` (carries a reply channel for the final figures; the server ends).
//!
//! The balance request is an event built with `with_nack`: its guard sends the request and
//! the client then syncs on the reply, possibly in a choice. If the client commits to another
//! branch, the nack fires and the server, which offers the reply *or* the nack, drops the
//! request instead of blocking forever on a reply nobody takes.
//!
//! Clients run as tasks on several domains, each depositing and reading the balance; the
//! final balance must be the sum of every deposit, and every balance a client reads must be at
//! least its own deposits so far and never go down.
//!
//! Run with `cargo run --example account_server`.

use bobine::event::{Channel, Event, select, with_nack};
use bobine::thread::spawn;

/// What the server counted when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub balance: i64,
    pub puts: u64,
    pub gets_served: u64,
    pub gets_abandoned: u64,
}

/// A balance request: where to reply, and the nack of the client's sync.
type GetRequest = (Channel<i64>, Event<()>);

enum Request {
    Get(GetRequest),
    Put(i64),
    Stop(Channel<Stats>),
}

/// A handle to a running account server.
#[derive(Clone)]
pub struct Account {
    get: Channel<GetRequest>,
    put: Channel<i64>,
    stop: Channel<Channel<Stats>>,
}

impl Account {
    /// Starts the server task with `initial` in the account.
    pub fn start(initial: i64) -> Account {
        let account = Account {
            get: Channel::new(),
            put: Channel::new(),
            stop: Channel::new(),
        };
        let a = account.clone();
        spawn(move || {
            let mut stats = Stats {
                balance: initial,
                puts: 0,
                gets_served: 0,
                gets_abandoned: 0,
            };
            loop {
                let request = select(vec![
                    a.get.recv_evt().wrap(Request::Get),
                    a.put.recv_evt().wrap(Request::Put),
                    a.stop.recv_evt().wrap(Request::Stop),
                ]);
                match request {
                    Request::Get((reply, nack)) => {
                        let served = select(vec![
                            reply.send_evt(stats.balance).wrap(|()| true),
                            nack.wrap(|()| false),
                        ]);
                        if served {
                            stats.gets_served += 1;
                        } else {
                            stats.gets_abandoned += 1;
                        }
                    }
                    Request::Put(amount) => {
                        stats.balance += amount;
                        stats.puts += 1;
                    }
                    Request::Stop(reply) => {
                        reply.send(stats);
                        return;
                    }
                }
            }
        });
        account
    }

    /// Deposits `amount`; returns once the server has taken it.
    pub fn put(&self, amount: i64) {
        self.put.send(amount);
    }

    /// The event of reading the balance: the request goes out when a sync starts; if that
    /// sync chooses another branch the server is told (nack) and drops the request.
    pub fn balance_evt(&self) -> Event<i64> {
        let get = self.get.clone();
        with_nack(move |nack| {
            let reply = Channel::new();
            get.send((reply.clone(), nack));
            reply.recv_evt()
        })
    }

    /// Reads the balance.
    pub fn get(&self) -> i64 {
        self.balance_evt().sync()
    }

    /// Stops the server and returns its figures.
    pub fn stop(&self) -> Stats {
        let reply = Channel::new();
        self.stop.send(reply.clone());
        reply.recv()
    }
}

/// What a simulation observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The server's figures at the end.
    pub stats: Stats,
    /// The initial balance plus every amount the clients deposited.
    pub expected_balance: i64,
    /// Balance requests the clients made, and how many of them were answered.
    pub gets_asked: u64,
    pub gets_answered: u64,
    /// The largest balance any client read.
    pub max_read: i64,
    /// Every balance read was at least the initial balance plus the reader's own deposits so
    /// far, and no client saw the balance go down.
    pub reads_consistent: bool,
}

/// The amount client `c` deposits in its round `i` (1 to 97).
fn amount(c: u64, i: u64) -> i64 {
    ((c * 7919 + i * 31) % 97 + 1) as i64
}

/// Starts a server with `initial`, runs `clients` client tasks that each deposit `puts_each`
/// times, reading the balance after each deposit (every fifth read offered against an
/// `always`, so that some are abandoned), then stops the server. Call it inside a runtime.
pub fn simulate(initial: i64, clients: u64, puts_each: u64) -> Report {
    let account = Account::start(initial);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let account = account.clone();
            spawn(move || {
                let (mut own, mut last, mut consistent) = (0, i64::MIN, true);
                let (mut asked, mut answered) = (0, 0);
                for i in 0..puts_each {
                    account.put(amount(c, i));
                    own += amount(c, i);
                    asked += 1;
                    let read = if i % 5 == 4 {
                        select(vec![account.balance_evt().wrap(Some), Event::always(None)])
                    } else {
                        Some(account.get())
                    };
                    if let Some(b) = read {
                        answered += 1;
                        consistent &= b >= initial + own && b >= last;
                        last = b;
                    }
                }
                (asked, answered, last, consistent)
            })
        })
        .collect();
    let (mut gets_asked, mut gets_answered, mut max_read, mut reads_consistent) =
        (0, 0, i64::MIN, true);
    for h in handles {
        let (asked, answered, last, consistent) = h.join().expect("a client panicked");
        gets_asked += asked;
        gets_answered += answered;
        max_read = max_read.max(last);
        reads_consistent &= consistent;
    }
    let expected_balance = initial
        + (0..clients)
            .flat_map(|c| (0..puts_each).map(move |i| amount(c, i)))
            .sum::<i64>();
    Report {
        stats: account.stop(),
        expected_balance,
        gets_asked,
        gets_answered,
        max_read,
        reads_consistent,
    }
}

fn main() {
    let (initial, clients, puts_each) = (100, 8, 250);
    let r = bobine::Builder::new()
        .domains(3)
        .run(|| simulate(initial, clients, puts_each));
    println!("{clients} clients x {puts_each} deposits on 3 domains, initial balance {initial}");
    println!(
        "final balance {} (expected {}), deposits taken {}",
        r.stats.balance, r.expected_balance, r.stats.puts
    );
    println!(
        "every request answered or abandoned exactly once: {}; reads consistent: {}",
        r.stats.gets_served == r.gets_answered
            && r.stats.gets_served + r.stats.gets_abandoned == r.gets_asked,
        r.reads_consistent
    );
}
