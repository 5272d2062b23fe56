//! An async-only library used from ordinary bobine tasks.
//!
//! Many crates today exist only as `async` code that needs a tokio runtime (most database
//! drivers and HTTP clients). This program keeps one tokio runtime on a side thread to drive
//! such code: here an async TCP service and its async client, both written with `tokio::net`.
//! Ordinary bobine tasks call into it with [`bobine::block_on`]: the task hands the async work
//! to the tokio runtime (`Handle::spawn`) and waits for its result as for any other future,
//! which parks the task, not its domain. A heartbeat task on the same single domain keeps
//! beating while the clients wait. The other way round, async code awaits a bobine task: its
//! `JoinHandle` is a future.
//!
//! Run with `cargo run --release --example async_bridge`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What [`demo`] saw.
pub struct Report {
    /// Each client's reply, in client order.
    pub replies: Vec<String>,
    /// Beats of the heartbeat task while the clients waited.
    pub beats: u64,
    /// What a tokio task made of a bobine task's value, which it awaited.
    pub awaited: u64,
}

/// The async-only service: answers each line with the line upper-cased, after a short pause
/// (think of a database round trip).
async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let reply = format!("{}\n", line.to_uppercase());
                if write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The async-only client: one request, one reply.
async fn ask(addr: std::net::SocketAddr, question: String) -> std::io::Result<String> {
    let socket = tokio::net::TcpStream::connect(addr).await?;
    let (read, mut write) = socket.into_split();
    write.write_all(format!("{question}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await?;
    Ok(reply.trim_end().to_owned())
}

/// Starts the tokio runtime and its service, runs `clients` bobine tasks that each ask one
/// question through it, and stops everything. Call it from a task.
pub fn demo(clients: usize) -> Report {
    // The side runtime: its own threads run the async code, its reactor and its timers.
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let async_world = tokio_rt.handle().clone();

    // Binding is async too: spawned there, awaited here. `block_on` parks this task.
    let listener = bobine::block_on(
        async_world.spawn(async { tokio::net::TcpListener::bind("127.0.0.1:0").await }),
    )
    .expect("the bind task ran")
    .expect("a loopback port");
    let addr = listener.local_addr().expect("the port");
    async_world.spawn(serve(listener));

    // A plain bobine task on the same domain, to show the domain is never blocked.
    let beats = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (beats, stop) = (beats.clone(), stop.clone());
        bobine::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                beats.fetch_add(1, Ordering::Relaxed);
                bobine::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    // Ordinary blocking-style tasks, each calling the async client.
    let askers: Vec<_> = (0..clients)
        .map(|i| {
            let async_world = async_world.clone();
            bobine::thread::spawn(move || {
                let reply = bobine::block_on(async_world.spawn(ask(addr, format!("hello {i}"))));
                reply.expect("the client task ran").expect("a reply")
            })
        })
        .collect();
    let replies = askers.into_iter().map(|h| h.join().unwrap()).collect();

    // The other way: async code (a tokio task) awaits a bobine task's `JoinHandle`.
    let factorial = bobine::thread::spawn(|| (1..=10u64).product::<u64>());
    let awaited = bobine::block_on(
        async_world.spawn(async move { factorial.await.expect("the bobine task panicked") * 2 }),
    )
    .expect("the tokio task ran");

    stop.store(true, Ordering::Relaxed);
    heartbeat.join().unwrap();
    // Dropping a tokio runtime waits for its threads: not something to do on a domain.
    // `shutdown_background` returns at once and lets them go.
    tokio_rt.shutdown_background();
    Report {
        replies,
        beats: beats.load(Ordering::Relaxed),
        awaited,
    }
}

#[bobine::main(domains = 1)]
fn main() {
    let report = demo(8);
    for reply in &report.replies {
        println!("{reply}");
    }
    println!(
        "{} replies; the heartbeat task beat {} times on the same domain meanwhile",
        report.replies.len(),
        report.beats
    );
    println!(
        "a tokio task awaited a bobine task: 10! * 2 = {}",
        report.awaited
    );
}
