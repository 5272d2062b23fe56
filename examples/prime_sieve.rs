//! Ports the classic Concurrent ML prime sieve (J. Reppy, *Concurrent Programming in ML*,
//! §3.2.1): a counter task sends 2, 3, 4 ... on a channel; the sieve task takes the first
//! value `p` of its input, which is prime, sends it on the `primes` channel, and puts a filter
//! task in front of its input that drops the multiples of `p`. The pipeline grows one filter
//! task per prime, every stage a rendezvous channel.
//!
//! ```sml
//! fun counter n = let val ch = channel ()
//!                     fun count i = (send (ch, i); count (i + 1))
//!                 in spawn (fn () => count n); ch end
//! fun filter (p, inCh) = let val outCh = channel ()
//!                            fun loop () = let val i = recv inCh
//!                                          in if (i mod p) <> 0 then send (outCh, i) else (); loop () end
//!                        in spawn loop; outCh end
//! fun sieve () = let val primes = channel ()
//!                    fun head ch = let val p = recv ch in send (primes, p); head (filter (p, ch)) end
//!                in spawn (fn () => head (counter 2)); primes end
//! ```
//!
//! The tasks loop forever; when the main task has the primes it wants it returns, and the
//! runtime drops the tasks still blocked in the pipeline.
//!
//! Run with `cargo run --example prime_sieve`.

use bobine::event::Channel;
use bobine::thread::spawn;

/// 2, 3, 4 ... from `n` on, on a new channel.
fn counter(n: u64) -> Channel<u64> {
    let ch = Channel::new();
    let out = ch.clone();
    spawn(move || {
        for i in n.. {
            out.send_evt(i).sync();
        }
    });
    ch
}

/// The values of `in_ch` that are not multiples of `p`, on a new channel.
fn filter(p: u64, in_ch: Channel<u64>) -> Channel<u64> {
    let out_ch = Channel::new();
    let out = out_ch.clone();
    spawn(move || {
        loop {
            let i = in_ch.recv_evt().sync();
            if i % p != 0 {
                out.send_evt(i).sync();
            }
        }
    });
    out_ch
}

/// The primes in increasing order, on a new channel.
pub fn sieve() -> Channel<u64> {
    let primes = Channel::new();
    let out = primes.clone();
    spawn(move || {
        let mut ch = counter(2);
        loop {
            let p = ch.recv_evt().sync();
            out.send_evt(p).sync();
            ch = filter(p, ch);
        }
    });
    primes
}

/// The first `n` primes, from the sieve (call it inside a runtime).
pub fn first_primes(n: usize) -> Vec<u64> {
    let primes = sieve();
    (0..n).map(|_| primes.recv()).collect()
}

fn main() {
    let primes = bobine::run(|| first_primes(50));
    println!("the first {} primes:", primes.len());
    for row in primes.chunks(10) {
        let row: Vec<String> = row.iter().map(|p| format!("{p:>3}")).collect();
        println!("{}", row.join(" "));
    }
}
