//! bobine's echo server (the `echo` workload, and the server of the idle case): one domain, a
//! task per connection, blocking-style `read` / `write_all`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use super::server::ready;

/// Echoes everything it reads until the peer closes (or an error); blocking-style, for bobine
/// tasks and may coroutines.
pub(crate) fn echo_blocking(mut s: impl Read + Write) {
    let mut buf = vec![0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// bobine's echo server on `addr`: one domain, a task per connection. `backlog`: listen with
/// this backlog (and `SO_REUSEPORT`) instead of std's 128.
pub(crate) fn bobine_echo(addr: SocketAddr, backlog: Option<i32>) -> io::Result<()> {
    bobine::Builder::new().domains(1).run(move || {
        let listener = match backlog {
            None => bobine::net::TcpListener::bind(addr)?,
            Some(b) => bobine::net::TcpListener::bind_reuseport(addr, b)?,
        };
        ready();
        loop {
            let (stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            drop(bobine::thread::spawn(move || echo_blocking(stream)));
        }
    })
}
