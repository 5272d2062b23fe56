//! Row "servers": the cases of `benches/net` (echo and HTTP keep-alive; bobine, tokio
//! current-thread, may / may_minihttp), run by that bench's own code, included as the `net`
//! module: the server is this binary re-executed (`NET_BENCH_SERVE`), pinned to one CPU, and
//! the load generator a thread of this process pinned to the other. Only the durations are
//! this bench's (`--net-secs`, `--net-warmup`, `--net-rounds`), and the figure kept is the
//! median over the rounds.

use std::io;
use std::time::Duration;

use crate::Options;
use crate::net::cases::{Case, Config, all_cases};
use crate::net::load::{Sample, run_case};
use crate::net::os::pin_to;

/// Every case of the net bench but the idle one (bobine alone, not a comparison).
pub fn cases() -> Vec<Case> {
    all_cases().collect()
}

/// The net bench's configuration (CPUs from its environment variables), with the warm-up and
/// measurement times of `opts`.
pub fn config(opts: &Options) -> Config {
    let mut cfg = Config::from_env(opts.quick);
    cfg.warmup = Duration::from_secs_f64(opts.net_warmup);
    cfg.measure = Duration::from_secs_f64(opts.net_secs);
    cfg.rounds = opts.net_rounds;
    cfg.median = true;
    cfg
}

/// One measurement of `case`. The load generator runs on a thread of its own, pinned to the
/// client CPU, so that the threads that start the other cases' child processes stay unpinned.
pub fn measure(case: Case, cfg: &Config) -> io::Result<Sample> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Err(e) = pin_to(cfg.client_cpu) {
                eprintln!(
                    "compare: cannot pin the load generator to CPU {}: {e}",
                    cfg.client_cpu
                );
            }
            run_case(case, cfg)
        })
        .join()
        .expect("load generator panicked")
    })
}
