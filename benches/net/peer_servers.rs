//! The peers' servers: tokio (current-thread runtime, a spawned task per connection) for both
//! workloads, may (one worker, a coroutine per connection) for echo, may_minihttp for HTTP.

use std::io;
use std::net::SocketAddr;

use super::common::peers::may_spawn;
use super::echo::echo_blocking;
use super::http::{HttpConn, start_date_clock};
use super::server::ready;

fn tokio_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

pub(crate) fn tokio_echo(addr: SocketAddr) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio_runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        ready();
        let accept = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        accept.await.map_err(io::Error::other)?
    })
}

pub(crate) fn tokio_http(addr: SocketAddr) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    start_date_clock();
    tokio_runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        ready();
        let accept = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let mut conn = HttpConn::new();
                    loop {
                        let n = match stream.read(conn.spare()).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if conn.received(n).is_err() {
                            return;
                        }
                        if !conn.out.is_empty() {
                            if stream.write_all(&conn.out).await.is_err() {
                                return;
                            }
                            conn.out.clear();
                        }
                    }
                });
            }
        });
        accept.await.map_err(io::Error::other)?
    })
}

/// may's configuration, before its scheduler starts: one worker, left on the CPU this process
/// is pinned to (may would pin it to a core of its choosing otherwise).
fn may_config() {
    may::config().set_workers(1).set_worker_pin(false);
}

pub(crate) fn may_echo(addr: SocketAddr) -> io::Result<()> {
    may_config();
    let listener = may::net::TcpListener::bind(addr)?;
    ready();
    may_spawn(move || -> io::Result<()> {
        for stream in listener.incoming() {
            let stream = stream?;
            stream.set_nodelay(true)?;
            drop(may_spawn(move || echo_blocking(stream)));
        }
        Ok(())
    })
    .join()
    .map_err(|_| io::Error::other("accept coroutine panicked"))?
}

/// The may_minihttp service: `Hello, world!`.
#[derive(Clone)]
struct Hello;

impl may_minihttp::HttpService for Hello {
    fn call(
        &mut self,
        _req: may_minihttp::Request,
        rsp: &mut may_minihttp::Response,
    ) -> io::Result<()> {
        rsp.body("Hello, world!");
        Ok(())
    }
}

pub(crate) fn may_http(addr: SocketAddr) -> io::Result<()> {
    may_config();
    let server = may_minihttp::HttpServer(Hello).start(addr)?;
    ready();
    server
        .join()
        .map_err(|_| io::Error::other("may_minihttp server panicked"))
}
