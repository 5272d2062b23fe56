//! The batching rule, counted: each call below is the number of pool jobs the module doc
//! promises. The counter is per OS thread and counts jobs submitted from a task; the tests run
//! on a one-domain runtime, whose only domain is the test's thread.

use std::cell::Cell;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{BATCH, CHUNK, File};

thread_local! {
    static JOBS: Cell<usize> = const { Cell::new(0) };
}

/// Counts one pool job (called by `fs::blocking`); outside any task nothing goes to the pool.
pub(super) fn count_job() {
    if super::in_task() {
        JOBS.with(|c| c.set(c.get() + 1));
    }
}

/// The jobs `f` submits from the current thread.
fn jobs<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = JOBS.with(Cell::get);
    let v = f();
    (v, JOBS.with(Cell::get) - before)
}

/// A fresh directory of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "bobine-fs-unit-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A byte pattern that differs from one offset to the next (and from zeros).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8 | 1).collect()
}

/// Whole-file calls and a directory listing are one job each, whatever the size.
#[test]
fn whole_file_calls_are_one_job_each() {
    let dir = TempDir::new("whole");
    let big = pattern(3 * CHUNK + 123);
    let p = dir.0.join("big");
    crate::Builder::new().domains(1).run(|| {
        let (r, n) = jobs(|| super::write(&p, &big));
        r.unwrap();
        assert_eq!(n, 1, "fs::write");
        let (r, n) = jobs(|| super::read(&p));
        assert_eq!(r.unwrap(), big);
        assert_eq!(n, 1, "fs::read");
        std::fs::write(dir.0.join("text"), "some text").unwrap();
        let (r, n) = jobs(|| super::read_to_string(dir.0.join("text")));
        assert_eq!(r.unwrap(), "some text");
        assert_eq!(n, 1, "fs::read_to_string");
        let (r, n) = jobs(|| super::read_dir(&dir.0).unwrap().count());
        assert_eq!(r, 2);
        assert_eq!(n, 1, "fs::read_dir and its iteration");
        let (r, n) = jobs(|| super::create_dir_all(dir.0.join("a/b/c/d")));
        r.unwrap();
        assert_eq!(n, 1, "fs::create_dir_all");
    });
}

/// `read_to_end`, `read_to_string`, `read_exact`, `write_all` and `write!` on a `File` are
/// one job each up to `BATCH` bytes; `read` and `write` move at most `CHUNK` bytes per job.
#[test]
fn file_batches_are_one_job_each() {
    let dir = TempDir::new("file");
    let big = pattern(2 * CHUNK + 5);
    let p = dir.0.join("f");
    crate::Builder::new().domains(1).run(|| {
        let mut f = File::create_new(&p).unwrap();
        let (r, n) = jobs(|| f.write_all(&big));
        r.unwrap();
        assert_eq!(n, 1, "write_all");
        let (a, b, c) = std::hint::black_box((1, "two", 3.5));
        let (r, n) = jobs(|| write!(f, "{a}-{b}-{c}"));
        r.unwrap();
        assert_eq!(n, 1, "write!");
        f.rewind().unwrap();
        let mut all = Vec::new();
        let (r, n) = jobs(|| f.read_to_end(&mut all));
        assert_eq!(r.unwrap(), big.len() + "1-two-3.5".len());
        assert_eq!(n, 1, "read_to_end");
        assert_eq!(&all[..big.len()], &big[..]);
        assert_eq!(&all[big.len()..], b"1-two-3.5");
        f.seek(SeekFrom::Start(big.len() as u64)).unwrap();
        let mut s = String::from("x");
        let (r, n) = jobs(|| f.read_to_string(&mut s));
        assert_eq!(r.unwrap(), 9);
        assert_eq!(n, 1, "read_to_string");
        assert_eq!(s, "x1-two-3.5");
        f.rewind().unwrap();
        let mut exact = vec![0; big.len()];
        let (r, n) = jobs(|| f.read_exact(&mut exact));
        r.unwrap();
        assert_eq!(n, 1, "read_exact");
        assert_eq!(exact, big);
        f.rewind().unwrap();
        let mut buf = vec![0; big.len()];
        let (r, n) = jobs(|| f.read(&mut buf));
        assert_eq!(r.unwrap(), CHUNK, "one read moves at most CHUNK bytes");
        assert_eq!(n, 1, "read");
        assert_eq!(buf[..CHUNK], big[..CHUNK]);
        let mut at = vec![0; 1000];
        let (r, n) = jobs(|| f.read_exact_at(&mut at, 77));
        r.unwrap();
        assert_eq!(n, 1, "read_exact_at");
        assert_eq!(at, big[77..1077]);
        let (r, n) = jobs(|| f.flush());
        r.unwrap();
        assert_eq!(n, 0, "flush makes no job");
    });
}

/// Past `BATCH` bytes, `write_all` and `read_exact` take one job per `BATCH` bytes, and the
/// bytes come out whole and in order across the job boundary.
#[test]
fn batches_past_the_bound_split_at_it() {
    let dir = TempDir::new("batch");
    let big = pattern(BATCH + 4096);
    let p = dir.0.join("f");
    crate::Builder::new().domains(1).run(|| {
        let mut f = File::create_new(&p).unwrap();
        let (r, n) = jobs(|| f.write_all(&big));
        r.unwrap();
        assert_eq!(n, 2, "write_all of BATCH + 4096 bytes");
        f.rewind().unwrap();
        let mut back = vec![0; big.len()];
        let (r, n) = jobs(|| f.read_exact(&mut back));
        r.unwrap();
        assert_eq!(n, 2, "read_exact of BATCH + 4096 bytes");
        assert!(back == big, "the bytes round-trip across the job boundary");
    });
}

/// On a plain thread nothing goes to the pool (std is called in place).
#[test]
fn a_plain_thread_submits_no_job() {
    let dir = TempDir::new("plain");
    let p = dir.0.join("f");
    let (r, n) = jobs(|| {
        super::write(&p, b"abc")?;
        let mut f = File::open(&p)?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        Ok::<_, std::io::Error>(s)
    });
    assert_eq!(r.unwrap(), "abc");
    assert_eq!(n, 0);
}
