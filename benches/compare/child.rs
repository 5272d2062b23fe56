//! The child side: this bench binary re-executed as `<exe> --child <kind> <case> <parameter>`
//! runs one case once and prints one line, `RESULT key=value ...`, on its standard output.
//!
//! - `micro <case> <sample ms>`: warms the loop up while finding how many operations fill about
//!   a quarter of the sample (each call starts a fresh runtime, outside the timing), then times
//!   one call of about the sample's length. Prints `ns` (per operation), `iters`, and
//!   `rebuilds` (bobine two-domain runtimes thrown away for an uneven split).
//! - `parked <case> <n>`: runs the parked-tasks loop once with `n` tasks; prints the fields of
//!   [`Parked`](crate::parked::Parked).
//!
//! One process per measurement keeps the runtimes apart: may reads its worker count once and
//! keeps its workers for the life of the process, tokio's and bobine's pools and the
//! allocator's caches stay behind, and the memory figures must be the parked tasks' alone.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cases::{Setup, micro_by_name, parked_by_name};
use crate::common::Loop;
use crate::net::os::pin_to;
use crate::parked::FIELDS;
use crate::runtimes::REBUILDS;

/// The first argument that makes this binary a child.
pub const CHILD: &str = "--child";

/// Runs the case `args` (`<kind> <case> <parameter>`) names, prints its result and exits.
pub fn main(args: &[String]) -> ! {
    let [kind, name, param] = args else {
        panic!("child: expected <kind> <case> <parameter>, got {args:?}");
    };
    let param: u64 = param.parse().expect("child: a number");
    let line = match kind.as_str() {
        "micro" => {
            let (_, case) = micro_by_name(name).unwrap_or_else(|| panic!("no case {name:?}"));
            setup(case.setup);
            let (ns, iters) = measure(case.run, Duration::from_millis(param));
            format!(
                "ns={ns} iters={iters} rebuilds={}",
                REBUILDS.load(Ordering::SeqCst)
            )
        }
        "parked" => {
            let (case, n) = parked_by_name(name).unwrap_or_else(|| panic!("no case {name:?}"));
            assert_eq!(n as u64, param, "the count is in the name");
            setup(case.setup);
            let values = (case.run)(n).fields();
            FIELDS
                .iter()
                .zip(values)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
        other => panic!("child: unknown kind {other:?}"),
    };
    println!("RESULT {line}");
    std::process::exit(0)
}

/// Sets the process up for a case, before any runtime starts.
fn setup(s: Setup) {
    match s {
        Setup::Plain => {}
        Setup::May(workers) => {
            may::config().set_workers(workers);
        }
        Setup::OneCpu => pin_to(0).expect("pin to CPU 0"),
    }
}

/// Warms `run` up and calibrates it, then times one call of about `sample`; returns the time
/// per operation (ns) and the operations timed.
fn measure(run: Loop, sample: Duration) -> (f64, u64) {
    let quarter = sample.as_secs_f64() / 4.0;
    let mut iters = 1u64;
    let per_op = loop {
        let d = run(iters).as_secs_f64();
        if d >= quarter || iters >= 1 << 40 {
            break d / iters as f64;
        }
        // Aim a little past the quarter, growing at least 2× and at most 10× a step.
        let grow = if d > 0.0 { quarter / d * 1.2 } else { 10.0 };
        iters = (iters as f64 * grow.clamp(2.0, 10.0)).ceil() as u64;
    };
    let iters = ((sample.as_secs_f64() / per_op) as u64).max(1);
    let d = run(iters);
    (d.as_nanos() as f64 / iters as f64, iters)
}
