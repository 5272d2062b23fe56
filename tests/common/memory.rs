//! What this process has resident in memory, for tests that check memory stays flat.

/// This process's resident set in bytes: the second field of `/proc/self/statm` (pages) times
/// the page size.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the resident size in /proc/self/statm: {statm}"));
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    assert!(page > 0, "sysconf(_SC_PAGESIZE) failed");
    pages * page as u64
}
