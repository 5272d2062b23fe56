//! What bobine prints when something goes wrong: the README's "When things go wrong" shows
//! this program's output.
//!
//! ```text
//! cargo run --example when_things_go_wrong -- dump       # the task dump (also: kill -QUIT <pid>)
//! cargo run --example when_things_go_wrong -- stall      # a std blocking call inside a task
//! cargo run --example when_things_go_wrong -- deadlock   # two tasks taking two locks in turn
//! ```

use std::sync::Arc;
use std::time::Duration;

use bobine::sync::{Mutex, mpsc};
use bobine::thread;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    match what.as_str() {
        "dump" => dump(),
        "stall" => stall(),
        "deadlock" => deadlock(),
        _ => {
            eprintln!("usage: when_things_go_wrong dump|stall|deadlock");
            std::process::exit(2);
        }
    }
}

/// A small server-like runtime: a worker waits for jobs, another for a lock, a third sleeps.
fn dump() {
    bobine::Builder::new().domains(2).run(|| {
        let (jobs, queue) = mpsc::channel::<u32>();
        let worker = thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                let mut done = 0;
                for job in queue.iter() {
                    done += job;
                }
                done
            })
            .unwrap();
        let books = Arc::new(Mutex::new(0u32));
        let held = books.lock().unwrap();
        let b = books.clone();
        let auditor = thread::Builder::new()
            .name("auditor".into())
            .spawn(move || *b.lock().unwrap())
            .unwrap();
        let ticker = thread::Builder::new()
            .name("ticker".into())
            .spawn(|| thread::sleep(Duration::from_secs(1)))
            .unwrap();
        thread::sleep(Duration::from_millis(100));
        println!("{}", bobine::diag::dump());
        drop(held);
        drop(jobs);
        worker.join().unwrap();
        auditor.join().unwrap();
        ticker.cancel();
        let _ = ticker.join();
    });
}

/// A task that calls std's blocking `sleep` (as a blocking library would): its domain stalls.
fn stall() {
    bobine::Builder::new().domains(2).run(|| {
        let legacy = thread::Builder::new()
            .name("legacy-client".into())
            .spawn(|| {
                thread::yield_now();
                std::thread::sleep(Duration::from_millis(50));
            })
            .unwrap();
        legacy.join().unwrap();
    });
}

/// Two tasks taking two locks in opposite orders: `run` panics with the report.
fn deadlock() {
    bobine::Builder::new().domains(2).run(|| {
        let accounts = Arc::new(Mutex::new(100));
        let ledger = Arc::new(Mutex::new(Vec::<i32>::new()));
        let (a, l) = (accounts.clone(), ledger.clone());
        let transfer = thread::Builder::new()
            .name("transfer".into())
            .spawn(move || {
                let mut entries = l.lock().unwrap();
                thread::sleep(Duration::from_millis(20));
                let balance = a.lock().unwrap();
                entries.push(*balance);
            })
            .unwrap();
        let balance = accounts.lock().unwrap();
        thread::sleep(Duration::from_millis(10));
        ledger.lock().unwrap().push(*balance);
        drop(balance);
        let _ = transfer.join();
    });
}
