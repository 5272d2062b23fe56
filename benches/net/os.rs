//! OS helpers: CPU pinning, the descriptor limit, and the accounting read from `/proc` and
//! `getrusage` (CPU time, context switches, run-queue waits, resident memory).

use std::fs;
use std::io;
use std::time::Duration;

/// Pins the calling thread (and the threads it creates afterwards) to `cpu`.
pub(crate) fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "CPU out of range",
        ));
    }
    // SAFETY: `cpu` is within the set (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid set of the size given.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises this process's soft limit on open descriptors to its hard limit; returns the new limit.
pub(crate) fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid `rlimit`; a soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn vm_rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in status"))
}

/// The number of descriptors process `pid` has open.
pub(crate) fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Clock ticks per second (the unit of `/proc/<pid>/stat`'s times).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The CPU time of the calling thread (user + system).
pub(crate) fn thread_cpu() -> Duration {
    // SAFETY: `rusage` is plain data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(r, 0, "getrusage: {}", io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A server process's CPU time and context switches so far.
#[derive(Clone, Copy)]
pub(crate) struct ProcCpu {
    /// Seconds in user space, all threads.
    pub(crate) user: f64,
    /// Seconds in the kernel, all threads.
    pub(crate) sys: f64,
    /// Voluntary + involuntary context switches of the live threads.
    pub(crate) switches: u64,
    /// Seconds the live threads spent runnable but waiting for the CPU (other processes on it).
    pub(crate) queued: f64,
}

impl ProcCpu {
    pub(crate) fn read(pid: u32) -> io::Result<ProcCpu> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The fields after the command name (which may hold spaces), from field 3 (state) on.
        let rest = stat.rfind(')').map(|i| &stat[i + 1..]).ok_or(bad("stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> io::Result<f64> {
            fields
                .get(n - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .map(|t| t as f64 / clock_ticks())
                .ok_or(bad("stat field"))
        };
        let mut switches = 0;
        let mut queued = 0.0;
        for task in fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?.path();
            queued += run_delay(&task.join("schedstat"));
            // A thread may exit between listing and reading: skip it.
            let Ok(status) = fs::read_to_string(task.join("status")) else {
                continue;
            };
            for line in status.lines() {
                if let Some(v) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    switches += v.trim().parse::<u64>().map_err(|_| bad("status"))?;
                }
            }
        }
        Ok(ProcCpu {
            user: field(14)?,
            sys: field(15)?,
            switches,
            queued,
        })
    }
}

/// The seconds a thread has waited on a run queue, from its `schedstat` file (0 if it is gone).
pub(crate) fn run_delay(schedstat: &std::path::Path) -> f64 {
    fs::read_to_string(schedstat)
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 * 1e-9)
}

/// The load average, from `/proc/loadavg`.
pub(crate) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}
