//! `OpenOptions` and `DirBuilder`: std's builders, whose final call (`open`, `create`) is a
//! job on the blocking pool.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::{File, blocking, with_path};

/// Options for opening a file, as [`std::fs::OpenOptions`]: the same builder methods, and
/// [`open`](OpenOptions::open) runs on the blocking pool while the task parks.
///
/// ```
/// use std::io::Write;
/// let path = std::env::temp_dir().join(format!("bobine-doc-options-{}", std::process::id()));
/// bobine::run(|| {
///     let mut f = bobine::fs::OpenOptions::new()
///         .append(true)
///         .create(true)
///         .open(&path)
///         .unwrap();
///     f.write_all(b"one ").unwrap();
///     f.write_all(b"two").unwrap();
///     assert_eq!(bobine::fs::read(&path).unwrap(), b"one two");
///     bobine::fs::remove_file(&path).unwrap();
/// });
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions(std::fs::OpenOptions);

#[allow(clippy::new_without_default)] // as std: no `Default`
impl OpenOptions {
    /// Options with everything off ([`std::fs::OpenOptions::new`]).
    #[must_use]
    pub fn new() -> OpenOptions {
        OpenOptions(std::fs::OpenOptions::new())
    }

    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.0.read(read);
        self
    }

    /// Open for writing.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.0.write(write);
        self
    }

    /// Open for appending: every write goes to the end (implies writing).
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.0.append(append);
        self
    }

    /// Truncate the file to 0 bytes when it is opened (needs writing).
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.0.truncate(truncate);
        self
    }

    /// Create the file if it is missing (needs writing or appending).
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.0.create(create);
        self
    }

    /// Create the file, failing with `AlreadyExists` if something is at the path (needs
    /// writing or appending; `create` and `truncate` are then ignored).
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.0.create_new(create_new);
        self
    }

    /// Opens `path` with these options ([`std::fs::OpenOptions::open`]), as one job.
    ///
    /// # Errors
    ///
    /// As std: `InvalidInput` for an invalid combination of options (none of read, write or
    /// append, for instance), `NotFound`, `AlreadyExists` with `create_new`, ...
    #[track_caller]
    pub fn open<P: AsRef<Path>>(&self, path: P) -> io::Result<File> {
        let options = self.0.clone();
        with_path(path.as_ref(), move |p| options.open(p)).map(File::from)
    }
}

impl From<std::fs::OpenOptions> for OpenOptions {
    fn from(options: std::fs::OpenOptions) -> OpenOptions {
        OpenOptions(options)
    }
}

impl OpenOptionsExt for OpenOptions {
    fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.0.mode(mode);
        self
    }

    fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.0.custom_flags(flags);
        self
    }
}

/// A builder for directories, as [`std::fs::DirBuilder`]: [`create`](DirBuilder::create) runs
/// on the blocking pool while the task parks.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("bobine-doc-dirbuilder-{}", std::process::id()));
/// bobine::run(|| {
///     bobine::fs::DirBuilder::new().recursive(true).create(dir.join("x/y")).unwrap();
///     assert!(bobine::fs::metadata(dir.join("x/y")).unwrap().is_dir());
///     bobine::fs::remove_dir_all(&dir).unwrap();
/// });
/// ```
#[derive(Debug)]
pub struct DirBuilder {
    recursive: bool,
    mode: u32,
}

#[allow(clippy::new_without_default)] // as std: no `Default`
impl DirBuilder {
    /// A builder that creates one directory with mode `0o777` (less the umask).
    #[must_use]
    pub fn new() -> DirBuilder {
        DirBuilder {
            recursive: false,
            mode: 0o777,
        }
    }

    /// Whether missing parents are created too (and an existing directory is no error).
    pub fn recursive(&mut self, recursive: bool) -> &mut DirBuilder {
        self.recursive = recursive;
        self
    }

    /// Creates the directory at `path` ([`std::fs::DirBuilder::create`]), as one job.
    ///
    /// # Errors
    ///
    /// As std: `AlreadyExists` (unless recursive), `NotFound` for a missing parent (unless
    /// recursive), ...
    #[track_caller]
    pub fn create<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        let (recursive, mode) = (self.recursive, self.mode);
        let path = path.as_ref().to_path_buf();
        blocking(move || {
            std::fs::DirBuilder::new()
                .recursive(recursive)
                .mode(mode)
                .create(path)
        })
    }
}

impl DirBuilderExt for DirBuilder {
    fn mode(&mut self, mode: u32) -> &mut DirBuilder {
        self.mode = mode;
        self
    }
}
