//! Reading criterion's results back after a run, and printing them as a markdown table.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// Where criterion writes its results, found the way criterion finds it (computed once).
pub fn criterion_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(home) = std::env::var_os("CRITERION_HOME") {
            return PathBuf::from(home);
        }
        if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
            return PathBuf::from(target).join("criterion");
        }
        if let Some(target) = cargo_metadata_target_dir() {
            return target.join("criterion");
        }
        PathBuf::from("target/criterion")
    })
}

fn cargo_metadata_target_dir() -> Option<PathBuf> {
    let cargo = std::env::var_os("CARGO")?;
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .ok()?;
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    meta.get("target_directory")?.as_str().map(PathBuf::from)
}

/// The median (ns) criterion recorded for `group/function`, if it was written since `since`
/// (that is, by this run).
pub fn median_ns(group: &str, function: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None; // left over from an earlier run (this one filtered it out)
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

/// The CPU model (`model name` in `/proc/cpuinfo`), to print beside every table: figures
/// from different machines are not comparable.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// The first three fields of `/proc/loadavg` (1, 5 and 15 minutes), if readable.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

pub fn fmt_ns(v: Option<f64>) -> String {
    match v {
        Some(ns) if ns >= 100.0 => format!("{ns:.0}"),
        Some(ns) => format!("{ns:.1}"),
        None => "-".to_owned(),
    }
}

pub fn fmt_ratio(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(n), Some(d)) => format!("{:.2}", n / d),
        _ => "-".to_owned(),
    }
}

/// How a table column is aligned.
#[derive(Clone, Copy)]
pub enum Align {
    Left,
    Right,
}

/// Prints `caption` and a markdown table of `rows` under `columns`; returns false (after saying
/// so) when there are no rows, i.e. no fresh estimates.
pub fn print_table(caption: &str, columns: &[(&str, Align)], rows: &[Vec<String>]) -> bool {
    if rows.is_empty() {
        println!(
            "(no fresh criterion estimates under {}: no ratio table)",
            criterion_dir().display()
        );
        return false;
    }
    let header: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let rule: Vec<&str> = columns
        .iter()
        .map(|c| match c.1 {
            Align::Left => "---",
            Align::Right => "---:",
        })
        .collect();
    println!();
    println!("{caption}");
    println!();
    println!("| {} |", header.join(" | "));
    println!("|{}|", rule.join("|"));
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
    true
}

/// The table of `compare` and `sync`: one row per `(group, operation)`, with the median of each
/// runtime and each peer's median divided by the first runtime's (bobine's). Returns whether it
/// printed the table.
pub fn print_peer_table(groups: &[(&str, &str)], runtimes: &[&str], since: SystemTime) -> bool {
    let (base, peers) = runtimes.split_first().expect("a baseline runtime");
    let mut rows = Vec::new();
    for &(group, operation) in groups {
        let medians: Vec<Option<f64>> = runtimes
            .iter()
            .map(|r| median_ns(group, r, since))
            .collect();
        if medians.iter().all(Option::is_none) {
            continue;
        }
        let mut row = vec![operation.to_owned()];
        row.extend(medians.iter().map(|&m| fmt_ns(m)));
        row.extend(medians[1..].iter().map(|&m| fmt_ratio(m, medians[0])));
        rows.push(row);
    }
    let names: Vec<String> = runtimes
        .iter()
        .map(|r| format!("{r} ns"))
        .chain(peers.iter().map(|p| format!("{p} / {base}")))
        .collect();
    let mut columns = vec![("operation", Align::Left)];
    columns.extend(names.iter().map(|n| (n.as_str(), Align::Right)));
    print_table(
        &format!(
            "Medians per operation (ns); ratio = peer median / {base} median \
             (> 1: {base} is faster)"
        ),
        &columns,
        &rows,
    )
}
