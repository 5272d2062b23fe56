//! What the figures were measured on, printed above every table: the CPU model, its L3, the
//! CPU count (from `lscpu`), the kernel, the Rust compiler and the commit. Figures from different
//! machines, even of one kind, are not comparable; ratios from one run are.

use std::process::Command;

use crate::common::report::cpu_model;

/// The facts of the header.
pub struct Machine {
    pub cpu: String,
    pub l3: String,
    pub cpus: String,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
}

/// The trimmed standard output of `program args`, if it ran and succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Machine {
    /// Reads the facts (what cannot be read is `?`).
    pub fn read() -> Machine {
        let lscpu = output("lscpu", &[]).unwrap_or_default();
        let field = |name: &str| {
            lscpu
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let dir = env!("CARGO_MANIFEST_DIR");
        let commit = output("git", &["-C", dir, "rev-parse", "--short", "HEAD"]).map(|c| {
            // README.md aside: this bench rewrites it.
            let status = [
                "-C",
                dir,
                "status",
                "--porcelain",
                "-uno",
                "--",
                ".",
                ":!README.md",
            ];
            let dirty = output("git", &status).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} with uncommitted changes")
            } else {
                c
            }
        });
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
        Machine {
            cpu: field("Model name").unwrap_or_else(cpu_model),
            l3: field("L3 cache").unwrap_or_else(|| "?".to_owned()),
            cpus: field("CPU(s)").unwrap_or_else(|| {
                std::thread::available_parallelism().map_or("?".to_owned(), |n| n.to_string())
            }),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".to_owned()),
            rustc: output(&rustc, &["--version"]).unwrap_or_else(|| "rustc ?".to_owned()),
            commit: commit.unwrap_or_else(|| "?".to_owned()),
        }
    }

    /// One line: `AMD EPYC (L3 32 MiB (1 instance), 2 CPUs), Linux 6.18, rustc 1.95.0, commit x`.
    pub fn line(&self) -> String {
        format!(
            "{} (L3 {}, {} CPUs), Linux {}, {}, commit {}",
            self.cpu, self.l3, self.cpus, self.kernel, self.rustc, self.commit
        )
    }
}
