//! A database without a server on tasks: rusqlite (SQLite, built in) through the blocking pool.
//!
//! SQLite runs inside the calling thread: every statement may read and write the database
//! file, wait for `fsync`, or wait for another connection's lock. None of that can park a task,
//! so each call goes to bobine's blocking pool with `bobine::io::unblock`: the task parks, a
//! pool thread runs the statement, and the domain runs other tasks meanwhile.
//!
//! The pattern ([`Db`]): one `rusqlite::Connection` behind a `std::sync::Mutex`, handed to the
//! pool thread that runs each call, and in front of it a `bobine::sync::Mutex<()>` that tasks
//! take first. Tasks waiting for the connection so park in the queue of the bobine mutex; they
//! do not each hold a pool thread blocked on the std mutex. (More connections, for instance
//! readers of a WAL database, would sit behind a `bobine::sync::Semaphore` the same way.)
//!
//! The demo opens a database file in the temporary directory, runs writer tasks that insert
//! rows in small transactions and reader tasks that count them at the same time, checks the
//! totals, then runs one long query next to a ticker task that counts while the query runs.
//!
//! ```text
//! cargo run --release --example sqlite                 # 8 writers × 200 rows, 4 readers
//! cargo run --release --example sqlite -- --domains 1 --writers 20 --rows 50
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bobine::thread;
use rusqlite::{Connection, params};

/// A SQLite connection shared by tasks; every call runs on the blocking pool.
#[derive(Clone)]
pub struct Db {
    /// The queue of tasks waiting for the connection: they park here.
    turn: Arc<bobine::sync::Mutex<()>>,
    /// The connection, moved to the pool thread for each call (never contended: only the
    /// holder of `turn` takes it).
    conn: Arc<Conn>,
}

/// The connection; whoever drops the last reference closes it on the blocking pool.
struct Conn(std::sync::Mutex<Option<Connection>>);

impl Drop for Conn {
    /// Closing flushes and frees SQLite's caches: work for the pool, not for a domain. (On a
    /// pool thread or a plain thread, `unblock` runs it in place.)
    fn drop(&mut self) {
        let conn = self
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        bobine::io::unblock(move || drop(conn));
    }
}

impl Db {
    /// Opens (or creates) the database at `path`, on the blocking pool.
    ///
    /// # Errors
    ///
    /// SQLite's error.
    pub fn open(path: &Path) -> rusqlite::Result<Db> {
        let path = path.to_owned();
        let conn = bobine::io::unblock(move || Connection::open(path))?;
        Ok(Db {
            turn: Arc::new(bobine::sync::Mutex::new(())),
            conn: Arc::new(Conn(std::sync::Mutex::new(Some(conn)))),
        })
    }

    /// Runs `f` with the connection on the blocking pool, after the calls before it; the
    /// task parks meanwhile. A panic in `f` is resumed here (an open transaction is rolled
    /// back as it drops).
    ///
    /// # Errors
    ///
    /// `f`'s error.
    pub fn call<T, F>(&self, f: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = self.conn.clone();
        bobine::io::unblock(move || {
            let mut conn = conn.0.lock().unwrap_or_else(PoisonError::into_inner);
            f(conn
                .as_mut()
                .expect("the connection is open while it is referenced"))
        })
    }
}

/// The value writer `w` stores in its row `i` (a sum over all rows checks every row).
pub fn value(w: u64, i: u64) -> i64 {
    (w * 1_000_003 + i * 7) as i64
}

/// One writer: inserts `rows` rows in transactions of up to 10. Returns the rows inserted.
///
/// # Errors
///
/// SQLite's error.
pub fn writer(db: &Db, w: u64, rows: u64) -> rusqlite::Result<u64> {
    let mut i = 0;
    while i < rows {
        let batch = (rows - i).min(10);
        let first = i;
        db.call(move |c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (writer, seq, value) VALUES (?1, ?2, ?3)",
                )?;
                for j in first..first + batch {
                    insert.execute(params![w as i64, j as i64, value(w, j)])?;
                }
            }
            tx.commit()
        })?;
        i += batch;
        // Let readers in between transactions.
        thread::yield_now();
    }
    Ok(rows)
}

/// The number of rows and the sum of their values.
///
/// # Errors
///
/// SQLite's error.
pub fn totals(db: &Db) -> rusqlite::Result<(u64, i64)> {
    db.call(|c| {
        c.query_row(
            "SELECT COUNT(*), COALESCE(SUM(value), 0) FROM events",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
    })
}

/// One reader: counts the rows until `writers_done`, checking that the count never goes down.
/// Returns the number of queries made.
///
/// # Errors
///
/// SQLite's error, or `rusqlite::Error::InvalidQuery` if the count went down.
pub fn reader(db: &Db, writers_done: &AtomicBool) -> rusqlite::Result<u64> {
    let (mut queries, mut last) = (0, 0);
    loop {
        let done = writers_done.load(Ordering::Acquire);
        let (rows, _) = totals(db)?;
        queries += 1;
        if rows < last {
            return Err(rusqlite::Error::InvalidQuery);
        }
        last = rows;
        if done {
            return Ok(queries);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// A query that takes a while (SQLite counts to `n` and sums): the sum of `1..=n`.
///
/// # Errors
///
/// SQLite's error.
pub fn long_query(db: &Db, n: i64) -> rusqlite::Result<i64> {
    db.call(move |c| {
        c.query_row(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
             SELECT SUM(x) FROM c",
            [n],
            |r| r.get(0),
        )
    })
}

/// What the demo did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Rows the writers inserted.
    pub inserted: u64,
    /// Rows in the table at the end.
    pub rows: u64,
    /// The sum of the values in the table equals the sum of the values written.
    pub sum_ok: bool,
    /// Queries the readers made while the writers wrote.
    pub reads: u64,
    /// The long query's answer was the sum of `1..=n`.
    pub long_query_ok: bool,
    /// Counts of a ticker task on the caller's domain while the long query ran.
    pub ticks_during_long_query: u64,
}

/// The number of the long query (SQLite counts to it).
pub const LONG_QUERY: i64 = 1_000_000;

/// The demo, run inside a runtime: `writers` writer tasks of `rows` rows and `readers`
/// reader tasks on a new database at `path`, then the long query next to a ticker.
///
/// # Errors
///
/// The first SQLite error.
pub fn demo(path: &Path, writers: u64, rows: u64, readers: u64) -> rusqlite::Result<Report> {
    let db = Db::open(path)?;
    db.call(|c| {
        c.execute_batch(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, \
             seq INTEGER NOT NULL, value INTEGER NOT NULL)",
        )
    })?;
    let done = Arc::new(AtomicBool::new(false));
    let read_handles: Vec<_> = (0..readers)
        .map(|_| {
            let (db, done) = (db.clone(), done.clone());
            thread::spawn(move || reader(&db, &done))
        })
        .collect();
    let write_handles: Vec<_> = (0..writers)
        .map(|w| {
            let db = db.clone();
            thread::spawn(move || writer(&db, w, rows))
        })
        .collect();
    let mut inserted = 0;
    for h in write_handles {
        inserted += h.join().expect("a writer panicked")?;
    }
    done.store(true, Ordering::Release);
    let mut reads = 0;
    for h in read_handles {
        reads += h.join().expect("a reader panicked")?;
    }
    let (count, sum) = totals(&db)?;
    let expected: i64 = (0..writers)
        .flat_map(|w| (0..rows).map(move |i| value(w, i)))
        .sum();

    // The ticker counts every millisecond its domain lets it run; if the query held the
    // domain, it could not count at all while the query ran.
    let ticks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (ticks, stop) = (ticks.clone(), stop.clone());
        thread::spawn_local(move || {
            while !stop.load(Ordering::Relaxed) {
                ticks.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let before = ticks.load(Ordering::Relaxed);
    let long = long_query(&db, LONG_QUERY)?;
    let ticks_during_long_query = ticks.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    ticker.join().expect("the ticker panicked");

    Ok(Report {
        inserted,
        rows: count,
        sum_ok: sum == expected,
        reads,
        long_query_ok: long == LONG_QUERY * (LONG_QUERY + 1) / 2,
        ticks_during_long_query,
    })
}

/// A fresh database path in the temporary directory, unique to this process and call.
pub fn temp_db_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("bobine-sqlite-{}-{n}.db", std::process::id()))
}

/// Removes the database at `path` and its journal, if any.
pub fn remove_db(path: &Path) {
    let _ = bobine::fs::remove_file(path);
    let mut journal = path.as_os_str().to_owned();
    journal.push("-journal");
    let _ = bobine::fs::remove_file(journal);
}

/// Prints `problem` and the usage, and exits with status 2.
fn usage(problem: &str) -> ! {
    eprintln!("sqlite: {problem}");
    eprintln!("usage: sqlite [--domains D] [--writers W] [--rows R] [--readers N]");
    std::process::exit(2);
}

/// The positive number after `flag`, or the usage.
fn number(v: Option<String>, flag: &str) -> u64 {
    match v.as_deref().map(str::parse::<u64>) {
        Some(Ok(n)) if n > 0 => n,
        _ => usage(&format!("{flag} needs a positive number")),
    }
}

/// Parses the command line, runs the demo on a temporary database and prints its counts.
fn main() {
    let (mut domains, mut writers, mut rows, mut readers) = (None, 8, 200, 4);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--domains" => domains = Some(number(args.next(), "--domains") as usize),
            "--writers" => writers = number(args.next(), "--writers"),
            "--rows" => rows = number(args.next(), "--rows"),
            "--readers" => readers = number(args.next(), "--readers"),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let mut runtime = bobine::Builder::new();
    if let Some(d) = domains {
        runtime = runtime.domains(d);
    }
    let path = temp_db_path();
    let result = runtime.run(|| demo(&path, writers, rows, readers));
    remove_db(&path);
    match result {
        Ok(r) if r.rows == r.inserted && r.sum_ok && r.long_query_ok => println!(
            "sqlite: ok: {} rows inserted by {writers} writers, {} in the table, sums match; \
             {} reads meanwhile; the ticker counted {} times during the long query",
            r.inserted, r.rows, r.reads, r.ticks_during_long_query
        ),
        Ok(r) => {
            eprintln!("sqlite: FAILED: {r:?}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("sqlite: FAILED: {e}");
            std::process::exit(1);
        }
    }
}
