//! `ReadDir` and `DirEntry`: a directory listing read whole in one job.
//!
//! std's `DirEntry` keeps the directory's descriptor open and asks the file system for the
//! file type lazily; here the listing job asks for everything an entry answers without a
//! further job (its path, name, inode number and file type, the latter from the directory
//! record's `d_type` where the file system fills it in, else from an `lstat` in the same job)
//! and closes the directory before it returns. Only [`DirEntry::metadata`] is a job of its own:
//! an `lstat` of the entry's path (std's uses the directory's descriptor, which the listing has
//! closed; the two differ only if the directory is moved between the listing and the call).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};

use super::{FileType, Metadata, with_path};

/// The entries of a directory, from [`read_dir`](super::read_dir): an iterator of
/// `io::Result<DirEntry>`, as [`std::fs::ReadDir`]. The listing was read when `read_dir`
/// returned; iterating makes no system call.
pub struct ReadDir {
    entries: std::vec::IntoIter<io::Result<DirEntry>>,
    dir: PathBuf,
}

/// One entry of a [`ReadDir`], as [`std::fs::DirEntry`].
///
/// ```
/// bobine::run(|| {
///     for entry in bobine::fs::read_dir("src").unwrap() {
///         let entry = entry.unwrap();
///         if entry.file_name() == "lib.rs" {
///             assert!(entry.file_type().unwrap().is_file());
///             assert!(entry.metadata().unwrap().len() > 0);
///             assert_eq!(entry.path(), std::path::Path::new("src/lib.rs"));
///         }
///     }
/// });
/// ```
pub struct DirEntry {
    path: PathBuf,
    ino: u64,
    /// From the listing job; `None` if it could not be told there (asked again on demand).
    file_type: Option<FileType>,
}

/// Lists `dir` (the body of the `read_dir` job).
pub(super) fn list(dir: &Path) -> io::Result<ReadDir> {
    let entries: Vec<_> = std::fs::read_dir(dir)?
        .map(|entry| {
            entry.map(|e| DirEntry {
                path: e.path(),
                ino: e.ino(),
                file_type: e.file_type().ok(),
            })
        })
        .collect();
    Ok(ReadDir {
        entries: entries.into_iter(),
        dir: dir.to_path_buf(),
    })
}

impl Iterator for ReadDir {
    type Item = io::Result<DirEntry>;

    fn next(&mut self) -> Option<io::Result<DirEntry>> {
        self.entries.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadDir").field(&self.dir).finish()
    }
}

impl DirEntry {
    /// The entry's full path: the path given to `read_dir` joined with the entry's name.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The entry's name, without any leading path.
    #[must_use]
    pub fn file_name(&self) -> OsString {
        self.name().to_os_string()
    }

    fn name(&self) -> &OsStr {
        // A directory entry's name is one non-empty component, never `.` or `..`, so it is
        // the last component of the path joined from it.
        self.path.file_name().unwrap_or_default()
    }

    /// The entry's file type, not following a symbolic link. Read by the listing job: no job
    /// here, unless the listing could not tell it (then one `lstat` job, whose error this is).
    ///
    /// # Errors
    ///
    /// As [`std::fs::DirEntry::file_type`].
    #[track_caller]
    pub fn file_type(&self) -> io::Result<FileType> {
        match self.file_type {
            Some(t) => Ok(t),
            None => with_path(&self.path, |p| std::fs::symlink_metadata(p)).map(|m| m.file_type()),
        }
    }

    /// The entry's metadata, not following a symbolic link (an `lstat` of its path), as one
    /// job.
    ///
    /// # Errors
    ///
    /// As [`std::fs::DirEntry::metadata`]: `NotFound` if the entry was removed since the
    /// listing, ...
    #[track_caller]
    pub fn metadata(&self) -> io::Result<Metadata> {
        with_path(&self.path, |p| std::fs::symlink_metadata(p))
    }
}

impl DirEntryExt for DirEntry {
    /// The entry's inode number, from the directory record.
    fn ino(&self) -> u64 {
        self.ino
    }
}

impl fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DirEntry").field(&self.path).finish()
    }
}
