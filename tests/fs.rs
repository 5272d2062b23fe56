//! `bobine::fs`: every call agrees with `std::fs` on the same files (values and error kinds),
//! in a task and on a plain thread; whole large files round-trip; a file call that blocks
//! leaves its domain running other tasks; many tasks on two domains do file I/O at once with
//! every byte checked; a cancelled task's job still completes.

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bobine::fs;
use bobine::thread;
use common::tasks::{in_task_and_thread, spawn_ticker};

/// A fresh directory of one test's own under the system's temporary directory, removed (with
/// what is in it) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bobine-fs-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes that differ from one offset to the next, and from one `seed` to another.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What two `Metadata` of the same file must agree on.
fn same_metadata(a: &std::fs::Metadata, b: &std::fs::Metadata, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: len");
    assert_eq!(a.file_type(), b.file_type(), "{what}: file type");
    assert_eq!(a.permissions(), b.permissions(), "{what}: permissions");
    assert_eq!(a.ino(), b.ino(), "{what}: inode");
    assert_eq!(a.nlink(), b.nlink(), "{what}: links");
    assert_eq!(
        a.modified().unwrap(),
        b.modified().unwrap(),
        "{what}: mtime"
    );
}

/// A directory's entries as std lists them: (name, file type), sorted.
fn std_listing(dir: &Path) -> Vec<(String, std::fs::FileType)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), e.file_type().unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Every free function gives what std gives on the same files, in a task and on a plain
/// thread.
#[test]
fn free_functions_agree_with_std() {
    common::watchdog(30, "free_functions_agree_with_std", || {
        in_task_and_thread(|at| {
            let d = TempDir::new("free");
            let data = pattern(1, 10_000);
            // write / read / read_to_string
            fs::write(d.join("a"), &data).unwrap();
            assert_eq!(std::fs::read(d.join("a")).unwrap(), data, "{at}: write");
            assert_eq!(fs::read(d.join("a")).unwrap(), data, "{at}: read");
            std::fs::write(d.join("t"), "héllo\n").unwrap();
            assert_eq!(
                fs::read_to_string(d.join("t")).unwrap(),
                std::fs::read_to_string(d.join("t")).unwrap(),
                "{at}: read_to_string"
            );
            // metadata / symlink_metadata / read_link / canonicalize
            std::os::unix::fs::symlink("a", d.join("link")).unwrap();
            for p in ["a", "t", "link"] {
                let m = fs::metadata(d.join(p)).unwrap();
                same_metadata(&m, &std::fs::metadata(d.join(p)).unwrap(), at);
                let m = fs::symlink_metadata(d.join(p)).unwrap();
                same_metadata(&m, &std::fs::symlink_metadata(d.join(p)).unwrap(), at);
            }
            assert!(fs::symlink_metadata(d.join("link")).unwrap().is_symlink());
            assert_eq!(fs::read_link(d.join("link")).unwrap(), Path::new("a"));
            assert_eq!(
                fs::canonicalize(d.join("link")).unwrap(),
                std::fs::canonicalize(d.join("a")).unwrap(),
                "{at}: canonicalize"
            );
            // create_dir / create_dir_all / read_dir
            fs::create_dir(d.join("sub")).unwrap();
            fs::create_dir_all(d.join("deep/er/est")).unwrap();
            assert!(std::fs::metadata(d.join("deep/er/est")).unwrap().is_dir());
            let mut ours: Vec<_> = fs::read_dir(&d.0)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    assert_eq!(e.path(), d.join(e.file_name()), "{at}: entry path");
                    let std_meta = std::fs::symlink_metadata(e.path()).unwrap();
                    same_metadata(&e.metadata().unwrap(), &std_meta, at);
                    assert_eq!(e.ino(), std_meta.ino(), "{at}: entry inode");
                    (e.file_name().into_string().unwrap(), e.file_type().unwrap())
                })
                .collect();
            ours.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(ours, std_listing(&d.0), "{at}: read_dir");
            assert_eq!(
                ours.len(),
                5,
                "{at}: a, t, link, sub, deep and nothing else"
            );
            // copy / hard_link / rename
            assert_eq!(
                fs::copy(d.join("a"), d.join("b")).unwrap(),
                data.len() as u64
            );
            assert_eq!(std::fs::read(d.join("b")).unwrap(), data, "{at}: copy");
            fs::hard_link(d.join("a"), d.join("h")).unwrap();
            assert_eq!(std::fs::metadata(d.join("a")).unwrap().nlink(), 2);
            fs::rename(d.join("b"), d.join("c")).unwrap();
            assert!(!std::fs::exists(d.join("b")).unwrap());
            assert_eq!(std::fs::read(d.join("c")).unwrap(), data, "{at}: rename");
            // set_permissions / exists
            fs::set_permissions(d.join("c"), std::fs::Permissions::from_mode(0o600)).unwrap();
            let mode = std::fs::metadata(d.join("c")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{at}: set_permissions");
            for p in ["a", "c", "sub", "link", "nothing"] {
                assert_eq!(
                    fs::exists(d.join(p)).unwrap(),
                    std::fs::exists(d.join(p)).unwrap(),
                    "{at}: exists {p}"
                );
            }
            // remove_file / remove_dir / remove_dir_all
            fs::remove_file(d.join("c")).unwrap();
            fs::remove_dir(d.join("sub")).unwrap();
            fs::remove_dir_all(d.join("deep")).unwrap();
            for p in ["c", "sub", "deep"] {
                assert!(!std::fs::exists(d.join(p)).unwrap(), "{at}: {p} removed");
            }
        });
    });
}

/// `File`: write, seek, read, set_len, sync, metadata, try_clone, permissions, positional
/// I/O and the options builder give what std gives, in a task and on a plain thread.
#[test]
fn file_calls_agree_with_std() {
    common::watchdog(30, "file_calls_agree_with_std", || {
        in_task_and_thread(|at| {
            let d = TempDir::new("file");
            let data = pattern(2, 5000);
            let mut f = fs::File::create(d.join("f")).unwrap();
            f.write_all(&data).unwrap();
            assert_eq!(f.write(b"tail").unwrap(), 4);
            let (n, x) = (12, "x");
            write!(f, "[{n}:{x}]").unwrap();
            f.flush().unwrap();
            f.sync_all().unwrap();
            f.sync_data().unwrap();
            let mut expect = data.clone();
            expect.extend_from_slice(b"tail[12:x]");
            assert_eq!(std::fs::read(d.join("f")).unwrap(), expect, "{at}: writes");
            same_metadata(
                &f.metadata().unwrap(),
                &std::fs::metadata(d.join("f")).unwrap(),
                at,
            );
            // Read back, seeking the ways std can.
            let mut f = fs::File::options()
                .read(true)
                .write(true)
                .open(d.join("f"))
                .unwrap();
            let mut s = std::fs::File::open(d.join("f")).unwrap();
            for pos in [
                SeekFrom::Start(100),
                SeekFrom::Current(-50),
                SeekFrom::End(-7),
                SeekFrom::Start(0),
            ] {
                assert_eq!(f.seek(pos).unwrap(), s.seek(pos).unwrap(), "{at}: {pos:?}");
                let (mut a, mut b) = ([0; 64], [0; 64]);
                let n = f.read(&mut a).unwrap();
                assert_eq!(n, s.read(&mut b).unwrap(), "{at}: read at {pos:?}");
                assert_eq!(a[..n], b[..n], "{at}: bytes at {pos:?}");
            }
            assert_eq!(f.stream_position().unwrap(), 64);
            assert_eq!(f.seek(SeekFrom::Current(-100)).unwrap_err().kind(), {
                s.seek(SeekFrom::Current(-100)).unwrap_err().kind()
            });
            // Shrink and extend; the position stays.
            f.set_len(10).unwrap();
            assert_eq!(f.metadata().unwrap().len(), 10);
            f.set_len(20).unwrap();
            f.rewind().unwrap();
            let mut all = Vec::new();
            assert_eq!(f.read_to_end(&mut all).unwrap(), 20);
            assert_eq!(all[..10], expect[..10], "{at}: kept by set_len");
            assert_eq!(all[10..], [0; 10], "{at}: zeros past the old end");
            // try_clone shares the position.
            let mut g = f.try_clone().unwrap();
            g.seek(SeekFrom::Start(3)).unwrap();
            assert_eq!(f.stream_position().unwrap(), 3, "{at}: shared position");
            // Positional I/O leaves it alone.
            f.write_all_at(b"XYZ", 15).unwrap();
            let mut three = [0; 3];
            f.read_exact_at(&mut three, 15).unwrap();
            assert_eq!(&three, b"XYZ");
            assert_eq!(f.write_at(b"Q", 0).unwrap(), 1);
            assert_eq!(f.read_at(&mut three, 0).unwrap(), 3);
            assert_eq!(three, [b'Q', expect[1], expect[2]]);
            assert_eq!(f.stream_position().unwrap(), 3, "{at}: positional calls");
            // Permissions and times.
            f.set_permissions(std::fs::Permissions::from_mode(0o640))
                .unwrap();
            let mode = std::fs::metadata(d.join("f")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640, "{at}: File::set_permissions");
            let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
            f.set_modified(t).unwrap();
            assert_eq!(
                std::fs::metadata(d.join("f")).unwrap().modified().unwrap(),
                t
            );
            let t2 = t + Duration::from_secs(60);
            f.set_times(fs::FileTimes::new().set_accessed(t2).set_modified(t2))
                .unwrap();
            assert_eq!(f.metadata().unwrap().modified().unwrap(), t2);
            // Options: append, create_new, mode, and std's options converted.
            let mut ap = fs::OpenOptions::new()
                .append(true)
                .open(d.join("f"))
                .unwrap();
            ap.write_all(b"!").unwrap();
            assert_eq!(std::fs::metadata(d.join("f")).unwrap().len(), 21);
            let n = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o604)
                .open(d.join("n"))
                .unwrap();
            assert_eq!(
                n.metadata().unwrap().permissions().mode() & 0o777,
                0o604 & !umask()
            );
            let mut so = std::fs::OpenOptions::new();
            so.read(true);
            let mut from_std = fs::OpenOptions::from(so).open(d.join("n")).unwrap();
            let mut s = String::new();
            from_std.read_to_string(&mut s).unwrap();
            assert!(
                s.is_empty(),
                "{at}: std's options converted open for reading"
            );
            let e = fs::OpenOptions::new().open(d.join("f")).unwrap_err();
            assert_eq!(
                e.kind(),
                std::fs::OpenOptions::new()
                    .open(d.join("f"))
                    .unwrap_err()
                    .kind(),
                "{at}: no access mode"
            );
        });
    });
}

/// The process's umask, from `/proc/self/status` (setting it to read it would race with the
/// other tests creating files).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

/// `Read`, `Write` and `Seek` work through `&File`; tasks reading one shared file through
/// `&File` split its records between them, each record read whole exactly once.
#[test]
fn shared_file_reads_through_references() {
    common::watchdog(30, "shared_file_reads_through_references", || {
        let d = TempDir::new("shared");
        const RECORDS: usize = 400;
        const SIZE: usize = 64;
        let mut all = Vec::new();
        for i in 0..RECORDS {
            let mut rec = pattern(i as u64, SIZE);
            rec[..8].copy_from_slice(&(i as u64).to_le_bytes());
            all.extend_from_slice(&rec);
        }
        std::fs::write(d.join("records"), &all).unwrap();
        let path = d.join("records");
        bobine::Builder::new().domains(2).run(move || {
            let f = Arc::new(fs::File::open(&path).unwrap());
            let mut r = &*f;
            let mut first = [0; SIZE];
            r.read_exact(&mut first).unwrap();
            assert_eq!(first[..], all[..SIZE]);
            r.rewind().unwrap();
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let f = f.clone();
                    let all = all.clone();
                    thread::spawn(move || {
                        let mut seen = Vec::new();
                        let mut rec = [0; SIZE];
                        loop {
                            match (&*f).read_exact(&mut rec) {
                                Ok(()) => {}
                                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return seen,
                                Err(e) => panic!("read_exact: {e}"),
                            }
                            let i = u64::from_le_bytes(rec[..8].try_into().unwrap()) as usize;
                            assert_eq!(rec[..], all[i * SIZE..(i + 1) * SIZE], "record {i}");
                            seen.push(i);
                        }
                    })
                })
                .collect();
            let mut seen: Vec<usize> = readers
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..RECORDS).collect::<Vec<_>>(), "each record once");
        });
    });
}

/// Errors carry std's `ErrorKind` for the same call on the same files.
#[test]
fn errors_have_std_kinds() {
    common::watchdog(30, "errors_have_std_kinds", || {
        in_task_and_thread(|at| {
            let d = TempDir::new("errors");
            std::fs::write(d.join("file"), b"x").unwrap();
            std::fs::create_dir(d.join("full")).unwrap();
            std::fs::write(d.join("full/inside"), b"y").unwrap();
            std::fs::write(d.join("bad-utf8"), [0xff, 0xfe, 0x00]).unwrap();
            let missing = d.join("missing");
            let k = |r: std::io::Result<()>| r.unwrap_err().kind();
            let cases: Vec<(&str, ErrorKind, ErrorKind, ErrorKind)> = vec![
                (
                    "open missing",
                    k(fs::File::open(&missing).map(drop)),
                    k(std::fs::File::open(&missing).map(drop)),
                    ErrorKind::NotFound,
                ),
                (
                    "read missing",
                    k(fs::read(&missing).map(drop)),
                    k(std::fs::read(&missing).map(drop)),
                    ErrorKind::NotFound,
                ),
                (
                    "metadata missing",
                    k(fs::metadata(&missing).map(drop)),
                    k(std::fs::metadata(&missing).map(drop)),
                    ErrorKind::NotFound,
                ),
                (
                    "remove_file missing",
                    k(fs::remove_file(&missing)),
                    k(std::fs::remove_file(&missing)),
                    ErrorKind::NotFound,
                ),
                (
                    "read_dir missing",
                    k(fs::read_dir(&missing).map(drop)),
                    k(std::fs::read_dir(&missing).map(drop)),
                    ErrorKind::NotFound,
                ),
                (
                    "create_new on an existing file",
                    k(fs::File::create_new(d.join("file")).map(drop)),
                    k(std::fs::File::create_new(d.join("file")).map(drop)),
                    ErrorKind::AlreadyExists,
                ),
                (
                    "create_dir on an existing directory",
                    k(fs::create_dir(d.join("full"))),
                    k(std::fs::create_dir(d.join("full"))),
                    ErrorKind::AlreadyExists,
                ),
                (
                    "remove_dir of a non-empty directory",
                    k(fs::remove_dir(d.join("full"))),
                    k(std::fs::remove_dir(d.join("full"))),
                    ErrorKind::DirectoryNotEmpty,
                ),
                (
                    "read of a directory",
                    k(fs::read(d.join("full")).map(drop)),
                    k(std::fs::read(d.join("full")).map(drop)),
                    ErrorKind::IsADirectory,
                ),
                (
                    "read_dir of a file",
                    k(fs::read_dir(d.join("file")).map(drop)),
                    k(std::fs::read_dir(d.join("file")).map(drop)),
                    ErrorKind::NotADirectory,
                ),
                (
                    "read_to_string of bytes that are not UTF-8",
                    k(fs::read_to_string(d.join("bad-utf8")).map(drop)),
                    k(std::fs::read_to_string(d.join("bad-utf8")).map(drop)),
                    ErrorKind::InvalidData,
                ),
                (
                    "read_link of a file",
                    k(fs::read_link(d.join("file")).map(drop)),
                    k(std::fs::read_link(d.join("file")).map(drop)),
                    ErrorKind::InvalidInput,
                ),
                (
                    "set_len on a file open for reading",
                    k(fs::File::open(d.join("file")).unwrap().set_len(0)),
                    k(std::fs::File::open(d.join("file")).unwrap().set_len(0)),
                    ErrorKind::InvalidInput,
                ),
                (
                    "copy of a missing file",
                    k(fs::copy(&missing, d.join("to")).map(drop)),
                    k(std::fs::copy(&missing, d.join("to")).map(drop)),
                    ErrorKind::NotFound,
                ),
            ];
            for (what, ours, theirs, expected) in cases {
                assert_eq!(ours, theirs, "{at}: {what}: bobine and std disagree");
                assert_eq!(ours, expected, "{at}: {what}");
            }
            // A failed read_to_string through a File leaves the string as it was, as std's.
            let mut s = String::from("kept");
            let e = fs::File::open(d.join("bad-utf8"))
                .unwrap()
                .read_to_string(&mut s)
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData);
            assert_eq!(s, "kept", "{at}: read_to_string left the string alone");
            // A read_exact past the end is UnexpectedEof.
            let mut two = [0; 2];
            let e = fs::File::open(d.join("file"))
                .unwrap()
                .read_exact(&mut two)
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{at}: read_exact");
        });
    });
}

/// An 8 MiB file goes through whole: `fs::write`, `fs::read`, `fs::copy`, and `File`'s
/// `write_all`, `read_to_end` and `read_exact`, every byte checked.
#[test]
fn large_file_round_trips_whole() {
    common::watchdog(60, "large_file_round_trips_whole", || {
        in_task_and_thread(|at| {
            let d = TempDir::new("large");
            let big = pattern(3, 8 << 20);
            fs::write(d.join("a"), &big).unwrap();
            assert!(fs::read(d.join("a")).unwrap() == big, "{at}: fs::read");
            assert_eq!(
                fs::copy(d.join("a"), d.join("b")).unwrap(),
                big.len() as u64
            );
            let mut f = fs::File::create_new(d.join("c")).unwrap();
            f.write_all(&big).unwrap();
            f.rewind().unwrap();
            let mut back = Vec::new();
            assert_eq!(f.read_to_end(&mut back).unwrap(), big.len());
            assert!(back == big, "{at}: read_to_end");
            let mut exact = vec![0; big.len()];
            fs::File::open(d.join("b"))
                .unwrap()
                .read_exact(&mut exact)
                .unwrap();
            assert!(exact == big, "{at}: read_exact of the copy");
            assert!(
                std::fs::read(d.join("c")).unwrap() == big,
                "{at}: write_all"
            );
        });
    });
}

/// A file call that blocks (opening a FIFO, which waits for a writer) parks its task and the
/// only domain keeps running others: the writer, a plain thread, opens the FIFO only once a
/// ticker task on that domain has ticked 20 times.
#[test]
fn a_blocked_file_call_leaves_the_domain_running() {
    common::watchdog(30, "a_blocked_file_call_leaves_the_domain_running", || {
        let d = TempDir::new("fifo");
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let ticks = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (fifo, ticks) = (fifo.clone(), ticks.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let end = Instant::now() + Duration::from_secs(10);
                while ticks.load(Ordering::SeqCst) < 20 && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let ticked = ticks.load(Ordering::SeqCst);
                std::fs::write(&fifo, b"through the fifo").unwrap();
                ticked
            })
        };
        let got = bobine::Builder::new().domains(1).run(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let ticker = spawn_ticker(ticks, stop.clone());
            let got = fs::read(&fifo).unwrap();
            stop.store(true, Ordering::SeqCst);
            ticker.join().unwrap();
            got
        });
        assert_eq!(got, b"through the fifo");
        let ticked = writer.join().unwrap();
        assert!(
            ticked >= 20,
            "the ticker ticked {ticked} times while the read waited"
        );
    });
}

/// 32 tasks over two domains each write a file of their own (in pieces, whole, and through
/// positional writes) and read it back every way, every byte checked; the directory then
/// lists exactly their files.
#[test]
fn many_tasks_on_two_domains_do_file_io() {
    common::watchdog(60, "many_tasks_on_two_domains_do_file_io", || {
        let d = TempDir::new("many");
        let dir = d.0.clone();
        bobine::Builder::new().domains(2).run(move || {
            const TASKS: u64 = 32;
            let handles: Vec<_> = (0..TASKS)
                .map(|i| {
                    let dir = dir.clone();
                    thread::spawn(move || {
                        let data = pattern(100 + i, 20_000 + i as usize * 997);
                        let p = dir.join(format!("task-{i}"));
                        let mut f = fs::File::create(&p).unwrap();
                        for piece in data.chunks(3000) {
                            f.write_all(piece).unwrap();
                        }
                        drop(f);
                        assert!(fs::read(&p).unwrap() == data, "task {i}: fs::read");
                        let q = dir.join(format!("whole-{i}"));
                        fs::write(&q, &data).unwrap();
                        let mut f = fs::File::open(&q).unwrap();
                        let mut half = vec![0; data.len() / 2];
                        f.read_exact(&mut half).unwrap();
                        let mut rest = Vec::new();
                        f.read_to_end(&mut rest).unwrap();
                        half.extend_from_slice(&rest);
                        assert!(half == data, "task {i}: read_exact + read_to_end");
                        let f = fs::File::options().write(true).open(&q).unwrap();
                        f.write_all_at(&data[..100], 500).unwrap();
                        let mut want = data.clone();
                        want.copy_within(..100, 500);
                        let mut got = vec![0; want.len()];
                        f.try_clone()
                            .and_then(|_| fs::File::open(&q))
                            .unwrap()
                            .read_exact_at(&mut got, 0)
                            .unwrap();
                        assert!(got == want, "task {i}: positional write");
                        fs::remove_file(&q).unwrap();
                        i
                    })
                })
                .collect();
            let done: BTreeSet<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(done.len(), TASKS as usize);
            let names: BTreeSet<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            let want: BTreeSet<String> = (0..TASKS).map(|i| format!("task-{i}")).collect();
            assert_eq!(names, want);
        });
    });
}

/// A `File` opened in a task moves to a plain thread and back, and converts to and from std's
/// file and an `OwnedFd` on the same descriptor.
#[test]
fn files_move_between_tasks_and_threads_and_convert() {
    common::watchdog(
        30,
        "files_move_between_tasks_and_threads_and_convert",
        || {
            let d = TempDir::new("convert");
            let p = d.join("f");
            bobine::run(move || {
                let f = fs::File::create_new(&p).unwrap();
                let fd = f.as_raw_fd();
                assert_eq!(f.as_fd().as_raw_fd(), fd);
                let shown = format!("{f:?}");
                assert!(
                    shown.contains(&*p.to_string_lossy()),
                    "Debug shows the path: {shown}"
                );
                let f = bobine::io::unblock(move || {
                    let mut f = f;
                    f.write_all(b"from a plain thread").unwrap();
                    f
                });
                let std_file: std::fs::File = f.into_std();
                assert_eq!(std_file.as_raw_fd(), fd, "into_std keeps the descriptor");
                let f = fs::File::from(std_file);
                let owned: OwnedFd = f.into();
                assert_eq!(owned.as_raw_fd(), fd);
                let mut f = fs::File::from(owned);
                f.rewind().unwrap();
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                assert_eq!(s, "from a plain thread");
            });
        },
    );
}

/// Whether `flock(op | LOCK_NB)` on `file` succeeds (`false`: someone else holds a lock).
fn try_flock(file: &std::fs::File, op: libc::c_int) -> bool {
    // SAFETY: flock touches no memory; `file` keeps the descriptor open for the call.
    let r = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    if r == -1 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "flock: {e}");
    }
    r == 0
}

/// Advisory locks: `lock` waits on the pool for a lock a plain thread holds, while the domain
/// runs a ticker task (the holder lets go only after 20 ticks); once taken, others cannot take
/// it, and `unlock` lets them.
#[test]
fn file_locks_wait_on_the_pool() {
    common::watchdog(30, "file_locks_wait_on_the_pool", || {
        let d = TempDir::new("lock");
        let p = d.join("f");
        std::fs::write(&p, b"x").unwrap();
        let holder = std::fs::File::open(&p).unwrap();
        assert!(try_flock(&holder, libc::LOCK_EX));
        let ticks = Arc::new(AtomicUsize::new(0));
        let releaser = {
            let ticks = ticks.clone();
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(10);
                while ticks.load(Ordering::SeqCst) < 20 && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let ticked = ticks.load(Ordering::SeqCst);
                assert!(try_flock(&holder, libc::LOCK_UN));
                ticked
            })
        };
        bobine::Builder::new().domains(1).run(move || {
            let f = fs::File::open(&p).unwrap();
            let theirs = std::fs::File::open(&p).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let ticker = spawn_ticker(ticks, stop.clone());
            f.lock().unwrap();
            stop.store(true, Ordering::SeqCst);
            ticker.join().unwrap();
            assert!(!try_flock(&theirs, libc::LOCK_SH), "held exclusively");
            f.unlock().unwrap();
            f.lock_shared().unwrap();
            assert!(
                try_flock(&theirs, libc::LOCK_SH),
                "shared with a shared lock"
            );
            assert!(
                !try_flock(&theirs, libc::LOCK_EX),
                "not exclusive while shared"
            );
            f.unlock().unwrap();
            assert!(try_flock(&theirs, libc::LOCK_EX), "free after unlock");
        });
        let ticked = releaser.join().unwrap();
        assert!(
            ticked >= 20,
            "the ticker ticked {ticked} times while lock waited"
        );
    });
}

/// A task cancelled while its write waits (for a FIFO's reader) unwinds at once, and the job
/// still completes on the pool: the bytes reach a reader that comes later.
#[test]
fn a_cancelled_task_s_write_still_completes() {
    common::watchdog(30, "a_cancelled_task_s_write_still_completes", || {
        let d = TempDir::new("cancel");
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        bobine::Builder::new().domains(1).run(move || {
            let started = Arc::new(AtomicBool::new(false));
            let writer = {
                let (fifo, started) = (fifo.clone(), started.clone());
                thread::spawn(move || {
                    started.store(true, Ordering::SeqCst);
                    fs::write(&fifo, b"written after the cancel").unwrap();
                    unreachable!("the write waits for a reader that comes after the cancel");
                })
            };
            while !started.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
            writer.cancel();
            let e = writer.join().unwrap_err();
            assert!(e.is::<bobine::TaskCancelled>());
            let got = bobine::io::unblock(move || std::fs::read(&fifo)).unwrap();
            assert_eq!(got, b"written after the cancel");
        });
    });
}

/// `DirBuilder` creates one directory, or a path of them when recursive, with its mode.
#[test]
fn dir_builder_agrees_with_std() {
    common::watchdog(30, "dir_builder_agrees_with_std", || {
        in_task_and_thread(|at| {
            use std::os::unix::fs::DirBuilderExt;
            let d = TempDir::new("dirbuilder");
            let e = fs::DirBuilder::new().create(d.join("a/b")).unwrap_err();
            let s = std::fs::DirBuilder::new()
                .create(d.join("a/b"))
                .unwrap_err();
            assert_eq!(e.kind(), s.kind(), "{at}: missing parent");
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d.join("a/b"))
                .unwrap();
            let m = std::fs::metadata(d.join("a/b")).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.permissions().mode() & 0o777, 0o700 & !umask(), "{at}");
            fs::DirBuilder::new()
                .recursive(true)
                .create(d.join("a/b"))
                .unwrap();
        });
    });
}
