//! `File`: std's file behind an `Arc`, so that a pool job can own a reference to it while the
//! task waits (and after the task, if it is stopped meanwhile; see the module doc of `fs`).

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::{BATCH, CHUNK, FileTimes, Metadata, OpenOptions, Permissions};
use super::{blocking, in_task};

/// An open file, as [`std::fs::File`], whose calls run on the blocking pool while the task
/// parks (std's calls in place on a plain thread).
///
/// `Read`, `Write` and `Seek` are implemented for `File` and for `&File`, as std does: a
/// shared file can be read and written from several tasks at once (they share its position).
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
/// let path = std::env::temp_dir().join(format!("bobine-doc-file-{}", std::process::id()));
/// bobine::run(|| {
///     let mut f = bobine::fs::File::create(&path).unwrap();
///     f.write_all(b"hello, file").unwrap();
///     let mut f = bobine::fs::File::open(&path).unwrap();
///     f.seek(SeekFrom::Start(7)).unwrap();
///     let mut s = String::new();
///     f.read_to_string(&mut s).unwrap();
///     assert_eq!(s, "file");
///     bobine::fs::remove_file(&path).unwrap();
/// });
/// ```
pub struct File {
    std: Arc<std::fs::File>,
}

impl File {
    /// Opens a file for reading ([`std::fs::File::open`]).
    ///
    /// # Errors
    ///
    /// As std: `NotFound` for a missing file, `PermissionDenied`, ...
    #[track_caller]
    pub fn open<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new().read(true).open(path)
    }

    /// Opens a file for writing, creating it or truncating it ([`std::fs::File::create`]).
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn create<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// Creates a new file for reading and writing, failing if it exists
    /// ([`std::fs::File::create_new`]).
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if something is at `path` (even a dangling symbolic link); else as std.
    #[track_caller]
    pub fn create_new<P: AsRef<Path>>(path: P) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
    }

    /// A new [`OpenOptions`], all options off ([`std::fs::File::options`]).
    #[must_use]
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Flushes the file's data and metadata to the device ([`std::fs::File::sync_all`]).
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn sync_all(&self) -> io::Result<()> {
        self.job(|f| f.sync_all())
    }

    /// Flushes the file's data to the device ([`std::fs::File::sync_data`]).
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn sync_data(&self) -> io::Result<()> {
        self.job(|f| f.sync_data())
    }

    /// Takes an exclusive advisory lock (`flock(2)`), waiting for it, as std's `File::lock`;
    /// the wait is on the pool, so the domain runs other tasks meanwhile.
    ///
    /// (std's `lock` family arrived in Rust 1.89, past this crate's minimum version: these
    /// make the same call, and `try_lock`, whose error type is 1.89's `TryLockError`, is left
    /// out.)
    ///
    /// # Errors
    ///
    /// As std: the error of `flock(2)`.
    #[track_caller]
    pub fn lock(&self) -> io::Result<()> {
        self.job(|f| flock(f, libc::LOCK_EX))
    }

    /// Takes a shared advisory lock, waiting for it, as std's `File::lock_shared`.
    ///
    /// # Errors
    ///
    /// As std: the error of `flock(2)`.
    #[track_caller]
    pub fn lock_shared(&self) -> io::Result<()> {
        self.job(|f| flock(f, libc::LOCK_SH))
    }

    /// Releases this open file's advisory lock, as std's `File::unlock`.
    ///
    /// # Errors
    ///
    /// As std: the error of `flock(2)`.
    #[track_caller]
    pub fn unlock(&self) -> io::Result<()> {
        self.job(|f| flock(f, libc::LOCK_UN))
    }

    /// Truncates or extends the file to `size` bytes ([`std::fs::File::set_len`]); the
    /// position is left as it is.
    ///
    /// # Errors
    ///
    /// As std: `InvalidInput` if the file is not open for writing, ...
    #[track_caller]
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        self.job(move |f| f.set_len(size))
    }

    /// The file's metadata ([`std::fs::File::metadata`]).
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn metadata(&self) -> io::Result<Metadata> {
        self.job(|f| f.metadata())
    }

    /// A new `File` for the same open file (a duplicated descriptor: shared position and
    /// flags), as [`std::fs::File::try_clone`].
    ///
    /// # Errors
    ///
    /// As std: `EMFILE` when out of descriptors, ...
    #[track_caller]
    pub fn try_clone(&self) -> io::Result<File> {
        self.job(|f| f.try_clone()).map(File::from)
    }

    /// Changes the file's permissions ([`std::fs::File::set_permissions`]).
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn set_permissions(&self, perm: Permissions) -> io::Result<()> {
        self.job(move |f| f.set_permissions(perm))
    }

    /// Changes the file's access and modification times ([`std::fs::File::set_times`]).
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn set_times(&self, times: FileTimes) -> io::Result<()> {
        self.job(move |f| f.set_times(times))
    }

    /// Changes the file's modification time ([`std::fs::File::set_modified`]).
    ///
    /// # Errors
    ///
    /// As std.
    #[track_caller]
    pub fn set_modified(&self, time: SystemTime) -> io::Result<()> {
        self.job(move |f| f.set_modified(time))
    }

    /// The std file inside, for code that wants std's blocking calls.
    ///
    /// # Panics
    ///
    /// Only if the descriptor must be duplicated and cannot be (out of descriptors). It must
    /// be duplicated only when a job of a stopped task still uses this file (see the module
    /// doc of `fs`): the std file then is a duplicate of the same open file.
    pub fn into_std(self) -> std::fs::File {
        Arc::try_unwrap(self.std).unwrap_or_else(|shared| {
            shared.try_clone().unwrap_or_else(|e| {
                panic!(
                    "bobine::fs::File::into_std: a job of a stopped task still uses this file, \
                     and duplicating its descriptor failed: {e}"
                )
            })
        })
    }

    /// Runs `op` on the std file: as one job in a task (with a reference of its own), in
    /// place on a plain thread.
    #[track_caller]
    fn job<T, F>(&self, op: F) -> T
    where
        F: FnOnce(&std::fs::File) -> T + Send + 'static,
        T: Send + 'static,
    {
        if !in_task() {
            return op(&self.std);
        }
        let file = self.std.clone();
        blocking(move || op(&file))
    }

    /// A read of at most [`CHUNK`] bytes into `buf` by `op`, which gets a buffer of the job's
    /// own (copied into `buf` afterwards) in a task, and `buf` itself on a plain thread.
    fn read_with<F>(&self, buf: &mut [u8], op: F) -> io::Result<usize>
    where
        F: FnOnce(&std::fs::File, &mut [u8]) -> io::Result<usize> + Send + 'static,
    {
        if !in_task() {
            return op(&self.std, buf);
        }
        let len = buf.len().min(CHUNK);
        let (r, data) = self.job(move |f| {
            let mut data = vec![0; len];
            (op(f, &mut data), data)
        });
        let n = r?;
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    /// A write of at most [`CHUNK`] bytes of `buf` by `op`, which gets a copy in a task, and
    /// `buf` itself on a plain thread.
    fn write_with<F>(&self, buf: &[u8], op: F) -> io::Result<usize>
    where
        F: FnOnce(&std::fs::File, &[u8]) -> io::Result<usize> + Send + 'static,
    {
        if !in_task() {
            return op(&self.std, buf);
        }
        let data = buf[..buf.len().min(CHUNK)].to_vec();
        self.job(move |f| op(f, &data))
    }

    /// Fills `buf` by `op` (a `read_exact` from the offset it is given, plus `base`): one job
    /// per [`BATCH`] bytes in a task.
    fn read_exact_with<F>(&self, buf: &mut [u8], base: u64, op: F) -> io::Result<()>
    where
        F: Fn(&std::fs::File, &mut [u8], u64) -> io::Result<()> + Send + Sync + 'static,
    {
        if !in_task() {
            return op(&self.std, buf, base);
        }
        let op = Arc::new(op);
        let mut offset = base;
        for chunk in buf.chunks_mut(BATCH) {
            let len = chunk.len();
            let op = op.clone();
            let (r, data) = self.job(move |f| {
                let mut data = vec![0; len];
                (op(f, &mut data, offset), data)
            });
            r?;
            chunk.copy_from_slice(&data);
            offset = offset.saturating_add(len as u64);
        }
        Ok(())
    }

    /// Writes all of `buf` by `op` (a `write_all` at the offset it is given, plus `base`): one
    /// job per [`BATCH`] bytes in a task.
    fn write_all_with<F>(&self, buf: &[u8], base: u64, op: F) -> io::Result<()>
    where
        F: Fn(&std::fs::File, &[u8], u64) -> io::Result<()> + Send + Sync + 'static,
    {
        if !in_task() {
            return op(&self.std, buf, base);
        }
        let op = Arc::new(op);
        let mut offset = base;
        for chunk in buf.chunks(BATCH) {
            let data = chunk.to_vec();
            let op = op.clone();
            self.job(move |f| op(f, &data, offset))?;
            offset = offset.saturating_add(chunk.len() as u64);
        }
        Ok(())
    }
}

/// One `flock(2)` call on `file` (what std's `File::lock` family makes).
fn flock(file: &std::fs::File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock takes a descriptor number and flags and touches no memory of ours; the
    // descriptor is open for the call, since `file` borrows the std file that owns it.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(buf, |mut f, b| f.read(b))
    }

    /// One read of at most [`CHUNK`] bytes in all, scattered over `bufs`.
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        if !in_task() {
            return (&*self.std).read_vectored(bufs);
        }
        let total = bufs.iter().map(|b| b.len()).sum::<usize>().min(CHUNK);
        let (r, data) = self.job(move |mut f| {
            let mut data = vec![0; total];
            (f.read(&mut data), data)
        });
        let mut rest = &data[..r?];
        let n = rest.len();
        for b in bufs.iter_mut() {
            let k = b.len().min(rest.len());
            b[..k].copy_from_slice(&rest[..k]);
            rest = &rest[k..];
        }
        Ok(n)
    }

    /// One job: the job reads to the end into a buffer of its own, which is handed over (or
    /// appended, if `buf` was not empty).
    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if !in_task() {
            return (&*self.std).read_to_end(buf);
        }
        let (r, data) = self.job(|mut f| {
            let mut data = Vec::new();
            (f.read_to_end(&mut data), data)
        });
        if buf.is_empty() {
            *buf = data;
        } else {
            buf.extend_from_slice(&data);
        }
        r
    }

    /// One job, as [`read_to_end`](Read::read_to_end); `buf` is left as it was if the bytes
    /// read are not UTF-8.
    fn read_to_string(&mut self, buf: &mut String) -> io::Result<usize> {
        if !in_task() {
            return (&*self.std).read_to_string(buf);
        }
        let (r, data) = self.job(|mut f| {
            let mut data = String::new();
            (f.read_to_string(&mut data), data)
        });
        if buf.is_empty() {
            *buf = data;
        } else {
            buf.push_str(&data);
        }
        r
    }

    /// One job per [`BATCH`] bytes.
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_with(buf, 0, |mut f, b, _| f.read_exact(b))
    }
}

impl Write for &File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(buf, |mut f, b| f.write(b))
    }

    /// One write of the buffers gathered (at most [`CHUNK`] bytes in all).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !in_task() {
            return (&*self.std).write_vectored(bufs);
        }
        let mut data = Vec::new();
        for b in bufs {
            let k = b.len().min(CHUNK - data.len());
            data.extend_from_slice(&b[..k]);
        }
        self.job(move |mut f| f.write(&data))
    }

    /// Files have no buffer of their own: nothing to do (as std), no job.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// One job per [`BATCH`] bytes.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all_with(buf, 0, |mut f, b, _| f.write_all(b))
    }

    /// Formats into a string first, then writes it with one job.
    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        if !in_task() {
            return (&*self.std).write_fmt(args);
        }
        match args.as_str() {
            Some(s) => self.write_all(s.as_bytes()),
            None => self.write_all(fmt::format(args).as_bytes()),
        }
    }
}

impl Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.job(move |mut f| f.seek(pos))
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }

    fn read_to_end(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        (&*self).read_to_end(buf)
    }

    fn read_to_string(&mut self, buf: &mut String) -> io::Result<usize> {
        (&*self).read_to_string(buf)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        (&*self).read_exact(buf)
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        (&*self).write_fmt(args)
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&*self).seek(pos)
    }
}

/// Positional reads and writes (`pread`/`pwrite`), which leave the position alone: each call
/// one job, bounded as `read`/`write` and `read_exact`/`write_all` are.
impl FileExt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.read_with(buf, move |f, b| f.read_at(b, offset))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.write_with(buf, move |f, b| f.write_at(b, offset))
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_with(buf, offset, |f, b, at| f.read_exact_at(b, at))
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_with(buf, offset, |f, b, at| f.write_all_at(b, at))
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.std, f)
    }
}

impl From<std::fs::File> for File {
    fn from(file: std::fs::File) -> File {
        File {
            std: Arc::new(file),
        }
    }
}

impl From<File> for std::fs::File {
    /// As [`File::into_std`].
    fn from(file: File) -> std::fs::File {
        file.into_std()
    }
}

impl From<OwnedFd> for File {
    fn from(fd: OwnedFd) -> File {
        File::from(std::fs::File::from(fd))
    }
}

impl From<File> for OwnedFd {
    /// As [`File::into_std`].
    fn from(file: File) -> OwnedFd {
        file.into_std().into()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.std.as_fd()
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.std.as_raw_fd()
    }
}

impl IntoRawFd for File {
    fn into_raw_fd(self) -> RawFd {
        self.into_std().into_raw_fd()
    }
}

impl FromRawFd for File {
    /// # Safety
    ///
    /// As [`std::fs::File::from_raw_fd`]: `fd` is an open descriptor that nothing else owns.
    unsafe fn from_raw_fd(fd: RawFd) -> File {
        // SAFETY: the caller hands over an open descriptor that it owns alone, the contract
        // of this function, which is std's.
        File::from(unsafe { std::fs::File::from_raw_fd(fd) })
    }
}
