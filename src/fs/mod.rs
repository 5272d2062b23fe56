//! Files and directories with `std::fs`'s signatures, whose calls run on the blocking pool
//! while the calling task parks, so that its domain keeps running other tasks.
//!
//! A file system call has no readiness to wait for: `read(2)` on a regular file never returns
//! `EAGAIN`, it simply takes as long as the disk takes (and opening a FIFO, or anything on a
//! network file system, may take for ever). So nothing here goes through the reactor; every
//! call that makes a system call is a job for the blocking pool ([`crate::io::unblock`]).
//!
//! What runs where:
//!
//! | caller | what happens |
//! |---|---|
//! | a task | the call is one job on the pool; the task parks until the job ends; its domain runs other tasks meanwhile |
//! | a plain OS thread (outside any task) | the call is std's, made in place on the caller's thread (and on the caller's buffer) |
//!
//! Only `Write::flush` (std's is a no-op for files), `Debug` (which reads the descriptor's
//! path from `/proc`), dropping a file (below) and the conversions (`AsFd`, `From`,
//! `into_std`) run in place in a task: they make no system call that waits for a device.
//!
//! # Batching
//!
//! One call, one job. A call that std makes of many system calls is still one job here:
//! [`read`], [`read_to_string`] and [`write`](write()) move a whole file in one job;
//! `File::read_to_end`, `read_to_string`, `read_exact`, `write_all` and `write_fmt` are
//! overridden so that each is one job (not one per chunk, as the `Read` and `Write` defaults
//! would do); [`read_dir`] reads the whole listing, with each entry's file type, in one job.
//!
//! # Buffers
//!
//! A job runs on another thread and may outlive the caller (see below), so it cannot borrow
//! the caller's buffer: a read fills a buffer the job owns, which the caller then copies out;
//! a write sends the job a copy of the caller's bytes. One job's buffer is bounded:
//!
//! - `read`, `write` (and `read_at`, `write_at`, the vectored forms) move at most
//!   [`CHUNK`] (1 MiB) per call: a larger buffer gets a short count, which their contracts
//!   allow;
//! - `read_exact` and `write_all` (and their `_at` forms) move at most [`BATCH`] (64 MiB) per
//!   job: one job for anything up to that, then one job per 64 MiB;
//! - whole-file reads ([`read`], `read_to_end`, ...) fill a buffer the job hands over (no copy
//!   when the caller's buffer was empty); [`write`](write()) copies the contents once.
//!
//! On a plain thread none of this applies: std works on the caller's buffer directly.
//!
//! # Limits
//!
//! - A task stopped (cancelled, or its runtime ending) while its job runs unwinds at once;
//!   the job still runs to its end on the pool, and its result is dropped there. The job owns
//!   its copy of the data and a reference to the file, so this is memory-safe and the file
//!   stays open until the job ends. But the effect is not undone: a write may still land (in
//!   whole or in part) after the task is gone, and nobody learns how much of it did; a read
//!   still moves the file's position; a `create_dir` or `rename` still happens.
//! - Dropping a [`File`] closes it in place (`close(2)` of a local file does not wait for the
//!   disk; on some network file systems it flushes, and then the domain waits).
//! - [`read_dir`] holds the whole listing in memory (a path, a name and a file type per entry).
//! - The pool has a bound (`BOBINE_BLOCKING_THREADS`, default 512 threads): past it, calls wait
//!   their turn, so files that block for ever (FIFOs with no writer) can hold up other tasks'
//!   file calls once the bound is reached.
//!
//! This module owns the file types and their jobs. It must not touch the scheduler or the
//! reactor: it only goes down to `crate::io::unblock` (and asks the kernel whether the caller
//! is a task).

mod dir;
mod file;
mod options;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use dir::{DirEntry, ReadDir};
pub use file::File;
pub use options::{DirBuilder, OpenOptions};
pub use std::fs::{FileTimes, FileType, Metadata, Permissions};

/// The most bytes one `read` or `write` call (and their `_at` and vectored forms) moves in a
/// task: the size of one job's buffer.
pub const CHUNK: usize = 1 << 20;

/// The most bytes one job of `read_exact` or `write_all` (and their `_at` forms) moves in a
/// task; a larger buffer takes one job per `BATCH` bytes.
pub const BATCH: usize = 64 << 20;

/// Whether the caller is a task (else a plain thread, where std is called in place).
fn in_task() -> bool {
    !crate::sched::current_ptr().is_null()
}

/// Runs `f` on the blocking pool while the task parks (in place outside any task). Every job
/// of this module goes through here, so that the unit tests can count them.
#[track_caller]
fn blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[cfg(test)]
    tests::count_job();
    crate::io::unblock(f)
}

/// Runs `op` on an owned copy of `path`, as one job.
#[track_caller]
fn with_path<T, F>(path: &Path, op: F) -> io::Result<T>
where
    F: FnOnce(&Path) -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let path = path.to_path_buf();
    blocking(move || op(&path))
}

/// Runs `op` on owned copies of two paths, as one job.
#[track_caller]
fn with_paths<T, F>(from: &Path, to: &Path, op: F) -> io::Result<T>
where
    F: FnOnce(&Path, &Path) -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    blocking(move || op(&from, &to))
}

/// Reads the whole file at `path` ([`std::fs::read`]), in one job.
///
/// ```
/// bobine::run(|| {
///     let bytes = bobine::fs::read("Cargo.toml").unwrap();
///     assert_eq!(bytes, std::fs::read("Cargo.toml").unwrap());
/// });
/// ```
///
/// # Errors
///
/// As [`std::fs::read`]: `NotFound` for a missing file, `IsADirectory` for a directory, ...
#[track_caller]
pub fn read<P: AsRef<Path>>(path: P) -> io::Result<Vec<u8>> {
    with_path(path.as_ref(), |p| std::fs::read(p))
}

/// Reads the whole file at `path` into a string ([`std::fs::read_to_string`]), in one job.
///
/// ```
/// bobine::run(|| {
///     let text = bobine::fs::read_to_string("Cargo.toml").unwrap();
///     assert!(text.contains("[package]"));
/// });
/// ```
///
/// # Errors
///
/// As [`std::fs::read_to_string`]; `InvalidData` if the file is not UTF-8.
#[track_caller]
pub fn read_to_string<P: AsRef<Path>>(path: P) -> io::Result<String> {
    with_path(path.as_ref(), |p| std::fs::read_to_string(p))
}

/// Creates or truncates the file at `path` and writes `contents` to it ([`std::fs::write`]),
/// in one job (which gets a copy of `contents`).
///
/// ```
/// let path = std::env::temp_dir().join(format!("bobine-doc-write-{}", std::process::id()));
/// bobine::run(|| {
///     bobine::fs::write(&path, "hello").unwrap();
///     assert_eq!(bobine::fs::read_to_string(&path).unwrap(), "hello");
///     bobine::fs::remove_file(&path).unwrap();
/// });
/// ```
///
/// # Errors
///
/// As [`std::fs::write`].
#[track_caller]
pub fn write<P: AsRef<Path>, C: AsRef<[u8]>>(path: P, contents: C) -> io::Result<()> {
    let contents = contents.as_ref().to_vec();
    with_path(path.as_ref(), move |p| std::fs::write(p, contents))
}

/// The metadata of the file at `path`, following symbolic links ([`std::fs::metadata`]).
///
/// ```
/// bobine::run(|| {
///     assert!(bobine::fs::metadata("Cargo.toml").unwrap().is_file());
///     assert!(bobine::fs::metadata("src").unwrap().is_dir());
/// });
/// ```
///
/// # Errors
///
/// As [`std::fs::metadata`].
#[track_caller]
pub fn metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    with_path(path.as_ref(), |p| std::fs::metadata(p))
}

/// The metadata of the file at `path`, not following a final symbolic link
/// ([`std::fs::symlink_metadata`]).
///
/// # Errors
///
/// As [`std::fs::symlink_metadata`].
#[track_caller]
pub fn symlink_metadata<P: AsRef<Path>>(path: P) -> io::Result<Metadata> {
    with_path(path.as_ref(), |p| std::fs::symlink_metadata(p))
}

/// The entries of the directory at `path` ([`std::fs::read_dir`]): the whole listing is read
/// in one job, with each entry's file type, and then iterated without further jobs.
///
/// ```
/// bobine::run(|| {
///     let names: Vec<_> = bobine::fs::read_dir("src")
///         .unwrap()
///         .map(|e| e.unwrap().file_name())
///         .collect();
///     assert!(names.iter().any(|n| n == "lib.rs"));
/// });
/// ```
///
/// # Errors
///
/// As [`std::fs::read_dir`]: `NotFound`, `NotADirectory`, `PermissionDenied`, ... An error
/// met while listing comes out of the iterator, as with std.
#[track_caller]
pub fn read_dir<P: AsRef<Path>>(path: P) -> io::Result<ReadDir> {
    with_path(path.as_ref(), dir::list)
}

/// Creates a directory ([`std::fs::create_dir`]).
///
/// # Errors
///
/// As [`std::fs::create_dir`]: `AlreadyExists` if `path` exists, `NotFound` if its parent
/// does not.
#[track_caller]
pub fn create_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    with_path(path.as_ref(), |p| std::fs::create_dir(p))
}

/// Creates a directory and all its missing parents ([`std::fs::create_dir_all`]), in one job.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("bobine-doc-mkdirs-{}", std::process::id()));
/// bobine::run(|| {
///     bobine::fs::create_dir_all(dir.join("a/b/c")).unwrap();
///     assert!(bobine::fs::metadata(dir.join("a/b/c")).unwrap().is_dir());
///     bobine::fs::remove_dir_all(&dir).unwrap();
/// });
/// ```
///
/// # Errors
///
/// As [`std::fs::create_dir_all`].
#[track_caller]
pub fn create_dir_all<P: AsRef<Path>>(path: P) -> io::Result<()> {
    with_path(path.as_ref(), |p| std::fs::create_dir_all(p))
}

/// Removes a file or a symbolic link ([`std::fs::remove_file`]).
///
/// # Errors
///
/// As [`std::fs::remove_file`]: `NotFound`, `IsADirectory`, ...
#[track_caller]
pub fn remove_file<P: AsRef<Path>>(path: P) -> io::Result<()> {
    with_path(path.as_ref(), |p| std::fs::remove_file(p))
}

/// Removes an empty directory ([`std::fs::remove_dir`]).
///
/// # Errors
///
/// As [`std::fs::remove_dir`]: `DirectoryNotEmpty` if it has entries, `NotFound`, ...
#[track_caller]
pub fn remove_dir<P: AsRef<Path>>(path: P) -> io::Result<()> {
    with_path(path.as_ref(), |p| std::fs::remove_dir(p))
}

/// Removes a directory and everything in it ([`std::fs::remove_dir_all`]), in one job.
///
/// # Errors
///
/// As [`std::fs::remove_dir_all`].
#[track_caller]
pub fn remove_dir_all<P: AsRef<Path>>(path: P) -> io::Result<()> {
    with_path(path.as_ref(), |p| std::fs::remove_dir_all(p))
}

/// Renames `from` to `to`, replacing `to` if it is a file ([`std::fs::rename`]).
///
/// # Errors
///
/// As [`std::fs::rename`].
#[track_caller]
pub fn rename<P: AsRef<Path>, Q: AsRef<Path>>(from: P, to: Q) -> io::Result<()> {
    with_paths(from.as_ref(), to.as_ref(), |a, b| std::fs::rename(a, b))
}

/// Copies the contents and permissions of `from` to `to` ([`std::fs::copy`]), in one job;
/// returns the number of bytes copied.
///
/// # Errors
///
/// As [`std::fs::copy`]: `NotFound` if `from` is missing, `InvalidInput` if it is not a
/// regular file, ...
#[track_caller]
pub fn copy<P: AsRef<Path>, Q: AsRef<Path>>(from: P, to: Q) -> io::Result<u64> {
    with_paths(from.as_ref(), to.as_ref(), |a, b| std::fs::copy(a, b))
}

/// Creates a hard link `link` to `original` ([`std::fs::hard_link`]).
///
/// # Errors
///
/// As [`std::fs::hard_link`].
#[track_caller]
pub fn hard_link<P: AsRef<Path>, Q: AsRef<Path>>(original: P, link: Q) -> io::Result<()> {
    with_paths(original.as_ref(), link.as_ref(), |a, b| {
        std::fs::hard_link(a, b)
    })
}

/// The absolute path of `path` with every symbolic link resolved
/// ([`std::fs::canonicalize`]).
///
/// # Errors
///
/// As [`std::fs::canonicalize`].
#[track_caller]
pub fn canonicalize<P: AsRef<Path>>(path: P) -> io::Result<PathBuf> {
    with_path(path.as_ref(), |p| std::fs::canonicalize(p))
}

/// The target of the symbolic link at `path` ([`std::fs::read_link`]).
///
/// # Errors
///
/// As [`std::fs::read_link`]: `InvalidInput` if `path` is not a symbolic link.
#[track_caller]
pub fn read_link<P: AsRef<Path>>(path: P) -> io::Result<PathBuf> {
    with_path(path.as_ref(), |p| std::fs::read_link(p))
}

/// Sets the permissions of the file at `path` ([`std::fs::set_permissions`]).
///
/// # Errors
///
/// As [`std::fs::set_permissions`].
#[track_caller]
pub fn set_permissions<P: AsRef<Path>>(path: P, perm: Permissions) -> io::Result<()> {
    with_path(path.as_ref(), move |p| std::fs::set_permissions(p, perm))
}

/// Whether something exists at `path` ([`std::fs::exists`]): `Ok(false)` for a missing file
/// or a broken symbolic link, an error if it cannot be told.
///
/// ```
/// bobine::run(|| {
///     assert!(bobine::fs::exists("Cargo.toml").unwrap());
///     assert!(!bobine::fs::exists("no-such-file-here").unwrap());
/// });
/// ```
///
/// # Errors
///
/// As [`std::fs::exists`]: for instance `PermissionDenied` on a path it cannot search.
#[track_caller]
pub fn exists<P: AsRef<Path>>(path: P) -> io::Result<bool> {
    with_path(path.as_ref(), |p| std::fs::exists(p))
}
