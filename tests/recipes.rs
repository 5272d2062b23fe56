//! The recipes of `examples/` that run ordinary blocking crates on tasks: rustls over bobine
//! sockets (`tls.rs`), ureq with a bobine connector (`http_client.rs`) and rusqlite through
//! the blocking pool (`sqlite.rs`). The examples' own functions are compiled in here, so what
//! their `main` prints is what these tests check; each runs in tasks on one and two domains
//! and from plain threads, and shows the domain running other tasks while a call waits.

mod common;

#[path = "../examples/http_client.rs"]
#[allow(dead_code)]
mod http_client;
#[path = "../examples/sqlite.rs"]
#[allow(dead_code)]
mod sqlite;
#[path = "../examples/tls.rs"]
#[allow(dead_code)]
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bobine::net::TcpListener;
use bobine::thread;
use common::tasks::on_domains;
use common::watchdog;

/// Waits for a plain thread from inside a task without blocking the domain: the join runs
/// on the blocking pool.
fn join_std<T: Send + 'static>(h: std::thread::JoinHandle<T>) -> T {
    bobine::io::unblock(move || h.join().expect("a plain thread panicked"))
}

/// TLS: every line of every client is answered and checked, over TLS 1.3 and 1.2, with the
/// server and all clients sharing one domain (which only works if rustls's socket reads park
/// the task: a client waiting for an answer must let the server run), then over two.
#[test]
fn tls_demo_answers_every_line_on_one_and_two_domains() {
    watchdog(120, "tls demo", || {
        for domains in [1, 2] {
            let r = on_domains(domains, || tls::demo(6, 30)).expect("tls demo");
            let lines = 6 * 31;
            assert_eq!(r.lines_checked, lines, "domains = {domains}");
            assert_eq!(r.lines_served, lines, "domains = {domains}");
            assert_eq!((r.tls13, r.tls12), (3, 3), "domains = {domains}");
        }
    });
}

/// TLS: clients on plain threads, outside any runtime, talk to a server task; the server's
/// domain stays free while they do.
#[test]
fn tls_clients_on_plain_threads_reach_a_server_task() {
    watchdog(120, "tls plain clients", || {
        on_domains(1, || {
            let configs = tls::configs().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server_config = configs.server.clone();
            let server = thread::spawn(move || tls::serve(listener, server_config, 4));
            let clients: Vec<_> = (0..4)
                .map(|id| {
                    let config = configs.client.clone();
                    std::thread::spawn(move || tls::client(addr, config, id, 20))
                })
                .collect();
            for c in clients {
                let r = join_std(c).expect("a plain-thread client");
                assert_eq!(r.lines, 21);
                assert_eq!(r.version, rustls::ProtocolVersion::TLSv1_3);
            }
            assert_eq!(server.join().unwrap().unwrap(), 4 * 21);
        });
    });
}

/// TLS: a server on a plain thread (bobine sockets block it there) serves client tasks.
#[test]
fn tls_server_on_a_plain_thread_serves_client_tasks() {
    watchdog(120, "tls plain server", || {
        let configs = tls::configs().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server_config = configs.server.clone();
        let server = std::thread::spawn(move || tls::serve(listener, server_config, 3));
        let lines = on_domains(2, move || {
            let handles: Vec<_> = (0..3)
                .map(|id| {
                    let config = configs.client_tls12.clone();
                    thread::spawn(move || tls::client(addr, config, id, 10))
                })
                .collect();
            let mut lines = 0;
            for h in handles {
                let r = h.join().unwrap().expect("a client task");
                assert_eq!(r.version, rustls::ProtocolVersion::TLSv1_2);
                lines += r.lines;
            }
            lines
        });
        assert_eq!(lines, 3 * 11);
        assert_eq!(server.join().unwrap().unwrap(), 3 * 11);
    });
}

/// TLS: a client that does not trust the server's certificate fails its handshake with an
/// error on both sides (nothing hangs, nothing is exchanged).
#[test]
fn tls_untrusted_certificate_fails_the_handshake_on_both_sides() {
    watchdog(120, "tls untrusted", || {
        on_domains(1, || {
            let server_side = tls::configs().unwrap();
            let other = tls::configs().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                tls::serve_connection(stream, server_side.server)
            });
            let e = tls::client(addr, other.client, 0, 1).expect_err("untrusted certificate");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
            assert!(server.join().unwrap().is_err());
        });
    });
}

/// ureq: every body of every client is right (squares from the demo's server, hellos from
/// `examples/http.rs`), through one shared agent, on one and two domains; a ticker on the
/// caller's domain counts while a slow request waits.
#[test]
fn ureq_demo_gets_every_body_right_on_one_and_two_domains() {
    watchdog(120, "ureq demo", || {
        for domains in [1, 2] {
            let r = on_domains(domains, || http_client::demo(6, 20)).expect("ureq demo");
            assert_eq!(r.requests_checked, 6 * 20, "domains = {domains}");
            assert!(
                r.ticks_during_slow_request > 0,
                "domains = {domains}: {r:?}"
            );
        }
    });
}

/// ureq: the bobine agent works from plain threads (it blocks them) against servers in tasks.
#[test]
fn ureq_agent_works_from_plain_threads() {
    watchdog(120, "ureq plain threads", || {
        on_domains(1, || {
            let squares = http_client::start_squares_server().unwrap();
            let hello = http_client::start_hello_server().unwrap();
            let agent = http_client::agent(Duration::from_secs(30));
            let threads: Vec<_> = (0..3)
                .map(|id| {
                    let agent = agent.clone();
                    std::thread::spawn(move || {
                        http_client::client(&agent, squares, hello, id, 10)
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            for t in threads {
                assert_eq!(join_std(t), Ok(10));
            }
        });
    });
}

/// ureq: a host name is resolved (on the blocking pool) and each address tried in turn.
#[test]
fn ureq_resolves_host_names() {
    watchdog(120, "ureq host names", || {
        on_domains(1, || {
            let squares = http_client::start_squares_server().unwrap();
            let agent = http_client::agent(Duration::from_secs(30));
            let url = format!("http://localhost:{}/square/12", squares.port());
            let body = agent.get(&url).call().unwrap().body_mut().read_to_string();
            assert_eq!(body.unwrap(), "144");
        });
    });
}

/// ureq: what the example's doc says happens without the bobine connector. ureq's own
/// connector uses std sockets, which block the domain: on one domain the server task never
/// runs, so the request times out and a ticker on that domain does not count at all while
/// it waits. The same request through the bobine agent is answered.
#[test]
fn ureq_default_connector_blocks_the_domain_and_the_bobine_one_does_not() {
    watchdog(120, "ureq default connector", || {
        on_domains(1, || {
            let squares = http_client::start_squares_server().unwrap();
            let url = format!("http://{squares}/square/9");
            let ticker = http_client::Ticker::start();
            thread::sleep(Duration::from_millis(5));

            let config = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(300)))
                .proxy(None)
                .build();
            let std_agent = ureq::Agent::new_with_config(config);
            let before = ticker.ticks();
            let r = std_agent.get(&url).call();
            let ticks_blocked = ticker.ticks() - before;
            assert!(matches!(r, Err(ureq::Error::Timeout(_))), "{r:?}");
            assert_eq!(
                ticks_blocked, 0,
                "the domain ran the ticker during a std read"
            );

            let agent = http_client::agent(Duration::from_secs(30));
            let body = agent.get(&url).call().unwrap().body_mut().read_to_string();
            assert_eq!(body.unwrap(), "81");
            ticker.stop();
        });
    });
}

/// SQLite: every row written by concurrent writer tasks is there once, readers count at the
/// same time, on one and two domains; a ticker counts while the long query runs.
#[test]
fn sqlite_demo_keeps_every_row_on_one_and_two_domains() {
    watchdog(120, "sqlite demo", || {
        for domains in [1, 2] {
            let path = sqlite::temp_db_path();
            let p = path.clone();
            let r = on_domains(domains, move || sqlite::demo(&p, 6, 35, 3));
            sqlite::remove_db(&path);
            let r = r.expect("sqlite demo");
            assert_eq!(
                (r.inserted, r.rows),
                (6 * 35, 6 * 35),
                "domains = {domains}"
            );
            assert!(r.sum_ok && r.long_query_ok, "domains = {domains}: {r:?}");
            assert!(r.reads >= 3, "domains = {domains}: {r:?}");
            assert!(r.ticks_during_long_query > 0, "domains = {domains}: {r:?}");
        }
    });
}

/// SQLite: one `Db` shared by writer tasks and writers on plain threads (where `unblock`
/// runs the call in place); every row lands.
#[test]
fn sqlite_db_is_shared_by_tasks_and_plain_threads() {
    watchdog(120, "sqlite shared", || {
        let path = sqlite::temp_db_path();
        let db = sqlite::Db::open(&path).unwrap();
        db.call(|c| c.execute_batch(SCHEMA)).unwrap();
        let plain: Vec<_> = (0..2)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || sqlite::writer(&db, w, 40))
            })
            .collect();
        let db2 = db.clone();
        let in_tasks = on_domains(2, move || {
            let handles: Vec<_> = (2..6)
                .map(|w| {
                    let db = db2.clone();
                    thread::spawn(move || sqlite::writer(&db, w, 40))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .sum::<u64>()
        });
        let on_threads: u64 = plain.into_iter().map(|t| t.join().unwrap().unwrap()).sum();
        let (rows, sum) = sqlite::totals(&db).unwrap();
        drop(db);
        sqlite::remove_db(&path);
        assert_eq!((in_tasks, on_threads, rows), (160, 80, 240));
        let expected: i64 = (0..6)
            .flat_map(|w| (0..40).map(move |i| sqlite::value(w, i)))
            .sum();
        assert_eq!(sum, expected);
    });
}

/// The schema of the demo's table.
const SCHEMA: &str = "CREATE TABLE events (id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, \
                      seq INTEGER NOT NULL, value INTEGER NOT NULL)";

/// SQLite: a call that panics on the pool panics in its task (join gives the error), its
/// open transaction is rolled back, and the next call on the same `Db` works.
#[test]
fn sqlite_panicking_call_rolls_back_and_the_db_goes_on() {
    watchdog(120, "sqlite panic", || {
        let path = sqlite::temp_db_path();
        let p = path.clone();
        let (joined, rows) = on_domains(1, move || {
            let db = sqlite::Db::open(&p).unwrap();
            db.call(|c| c.execute_batch(SCHEMA)).unwrap();
            sqlite::writer(&db, 0, 10).unwrap();
            let db2 = db.clone();
            let h = thread::spawn(move || {
                db2.call(|c| {
                    let tx = c.transaction()?;
                    tx.execute(
                        "INSERT INTO events (writer, seq, value) VALUES (9, 9, 9)",
                        [],
                    )?;
                    panic!("the call panics inside its transaction");
                    #[allow(unreachable_code)]
                    Ok(())
                })
            });
            let joined = h.join();
            (joined.is_err(), sqlite::totals(&db).unwrap().0)
        });
        sqlite::remove_db(&path);
        assert!(joined, "the panic reached the task");
        assert_eq!(rows, 10, "the panicking transaction was rolled back");
    });
}

/// SQLite: while one task's long query runs on the pool, other tasks on the same single
/// domain run and count (they could not if the query held the domain).
#[test]
fn sqlite_long_query_leaves_the_domain_to_other_tasks() {
    watchdog(120, "sqlite long query", || {
        let path = sqlite::temp_db_path();
        let p = path.clone();
        let (during, answer) = on_domains(1, move || {
            let db = sqlite::Db::open(&p).unwrap();
            let counted = Arc::new(AtomicU64::new(0));
            let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
            let counters: Vec<_> = (0..3)
                .map(|_| {
                    let (counted, running) = (counted.clone(), running.clone());
                    thread::spawn(move || {
                        while running.load(Ordering::Relaxed) {
                            counted.fetch_add(1, Ordering::Relaxed);
                            thread::yield_now();
                        }
                    })
                })
                .collect();
            let before = counted.load(Ordering::Relaxed);
            let answer = sqlite::long_query(&db, 300_000).unwrap();
            let during = counted.load(Ordering::Relaxed) - before;
            running.store(false, Ordering::Relaxed);
            for c in counters {
                c.join().unwrap();
            }
            (during, answer)
        });
        sqlite::remove_db(&path);
        assert_eq!(answer, 300_000 * 300_001 / 2);
        assert!(during > 0, "no other task ran during the query");
    });
}
