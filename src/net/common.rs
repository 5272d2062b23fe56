//! What every bobine socket type has in common, written once: conversions from and to std and
//! `OwnedFd`, the descriptor traits, non-blocking mode and `take_error`; timeouts; and, for the
//! stream types, `Read`/`Write` on the value and on a shared reference.
//!
//! Each socket type is a struct with one field `h: Handle<Std>` (plus, for some, fields that
//! `wrap` fills in) and a `fn wrap(h: Handle<Std>) -> Self`.

/// `from_std`, `into_std`, `set_nonblocking`, `take_error` and the descriptor traits.
macro_rules! socket_common {
    ($t:ident, $std:ty) => {
        impl $t {
            /// Wraps a std socket, switching its descriptor to non-blocking mode (bobine's
            /// blocking behaviour is built on top).
            ///
            /// # Errors
            ///
            /// If the descriptor's mode cannot be changed.
            pub fn from_std(s: $std) -> ::std::io::Result<$t> {
                Ok(<$t>::wrap($crate::net::handle::Handle::new(s)?))
            }

            /// A second handle on the same socket (a duplicated descriptor). Like std's
            /// clones it shares the original's non-blocking mode and timeouts: setting them on
            /// either handle applies to both.
            ///
            /// # Errors
            ///
            /// If the descriptor cannot be duplicated.
            pub fn try_clone(&self) -> ::std::io::Result<$t> {
                Ok(<$t>::wrap(self.h.try_clone()?))
            }

            /// The std socket back (its descriptor stays non-blocking).
            pub fn into_std(self) -> $std {
                self.h.into_inner()
            }

            /// In non-blocking mode an operation that would wait returns `WouldBlock` at once
            /// instead of parking.
            ///
            /// # Errors
            ///
            /// Never (the descriptor is always non-blocking underneath); the `Result` is std's.
            pub fn set_nonblocking(&self, nonblocking: bool) -> ::std::io::Result<()> {
                self.h.set_nonblocking(nonblocking);
                Ok(())
            }

            /// Takes the pending socket error (`SO_ERROR`).
            ///
            /// # Errors
            ///
            /// As std.
            pub fn take_error(&self) -> ::std::io::Result<Option<::std::io::Error>> {
                self.h.get().take_error()
            }
        }

        impl ::std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> ::std::os::fd::RawFd {
                ::std::os::fd::AsRawFd::as_raw_fd(self.h.get())
            }
        }

        impl ::std::os::fd::AsFd for $t {
            fn as_fd(&self) -> ::std::os::fd::BorrowedFd<'_> {
                ::std::os::fd::AsFd::as_fd(self.h.get())
            }
        }

        impl ::std::os::fd::IntoRawFd for $t {
            fn into_raw_fd(self) -> ::std::os::fd::RawFd {
                ::std::os::fd::IntoRawFd::into_raw_fd(self.h.into_inner())
            }
        }

        impl From<$t> for ::std::os::fd::OwnedFd {
            fn from(s: $t) -> ::std::os::fd::OwnedFd {
                s.h.into_inner().into()
            }
        }

        /// Takes ownership of a socket descriptor, as std's `From<OwnedFd>` does, switching it to
        /// non-blocking mode.
        ///
        /// # Panics
        ///
        /// If the descriptor's mode cannot be changed, which `ioctl(FIONBIO)` never refuses on
        /// an open descriptor.
        impl From<::std::os::fd::OwnedFd> for $t {
            fn from(fd: ::std::os::fd::OwnedFd) -> $t {
                <$t>::from_std(<$std>::from(fd))
                    .expect("an open descriptor can be made non-blocking")
            }
        }

        impl TryFrom<$std> for $t {
            type Error = ::std::io::Error;
            fn try_from(s: $std) -> ::std::io::Result<$t> {
                <$t>::from_std(s)
            }
        }
    };
}

/// `set_read_timeout`, `set_write_timeout`, `read_timeout`, `write_timeout`.
macro_rules! timeouts {
    ($t:ident) => {
        impl $t {
            /// How long a read may wait before it fails with `WouldBlock` (`None`: forever).
            ///
            /// # Errors
            ///
            /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
            pub fn set_read_timeout(
                &self,
                dur: Option<::std::time::Duration>,
            ) -> ::std::io::Result<()> {
                self.h.set_timeout($crate::sched::reactor::Dir::Read, dur)
            }

            /// How long a write may wait before it fails with `WouldBlock` (`None`: forever).
            ///
            /// # Errors
            ///
            /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
            pub fn set_write_timeout(
                &self,
                dur: Option<::std::time::Duration>,
            ) -> ::std::io::Result<()> {
                self.h.set_timeout($crate::sched::reactor::Dir::Write, dur)
            }

            /// The read timeout.
            ///
            /// # Errors
            ///
            /// Never; the `Result` is std's.
            pub fn read_timeout(&self) -> ::std::io::Result<Option<::std::time::Duration>> {
                Ok(self.h.timeout($crate::sched::reactor::Dir::Read))
            }

            /// The write timeout.
            ///
            /// # Errors
            ///
            /// Never; the `Result` is std's.
            pub fn write_timeout(&self) -> ::std::io::Result<Option<::std::time::Duration>> {
                Ok(self.h.timeout($crate::sched::reactor::Dir::Write))
            }
        }
    };
}

/// `Read` and `Write` for a stream type and for a shared reference to it. Writes go through
/// `send(2)`/`sendmsg(2)` with `MSG_NOSIGNAL`: a closed peer gives `BrokenPipe`, never
/// `SIGPIPE`.
macro_rules! stream_io {
    ($t:ident) => {
        impl ::std::io::Read for &$t {
            #[track_caller]
            fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                let len = buf.len();
                self.h.op_stream(
                    $crate::sched::reactor::Dir::Read,
                    concat!(stringify!($t), "::read"),
                    len,
                    |mut s| ::std::io::Read::read(&mut s, buf),
                )
            }

            #[track_caller]
            fn read_vectored(
                &mut self,
                bufs: &mut [::std::io::IoSliceMut<'_>],
            ) -> ::std::io::Result<usize> {
                let len = $crate::net::handle::vectored_len(bufs.iter().map(|b| b.len()));
                self.h.op_stream(
                    $crate::sched::reactor::Dir::Read,
                    concat!(stringify!($t), "::read"),
                    len,
                    |mut s| ::std::io::Read::read_vectored(&mut s, bufs),
                )
            }
        }

        impl ::std::io::Write for &$t {
            #[track_caller]
            fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                let fd = ::std::os::fd::AsRawFd::as_raw_fd(self.h.get());
                self.h.op_stream(
                    $crate::sched::reactor::Dir::Write,
                    concat!(stringify!($t), "::write"),
                    buf.len(),
                    |_| $crate::net::handle::send(fd, buf),
                )
            }

            #[track_caller]
            fn write_vectored(
                &mut self,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::io::Result<usize> {
                let fd = ::std::os::fd::AsRawFd::as_raw_fd(self.h.get());
                let len = $crate::net::handle::vectored_len(bufs.iter().map(|b| b.len()));
                self.h.op_stream(
                    $crate::sched::reactor::Dir::Write,
                    concat!(stringify!($t), "::write"),
                    len,
                    |_| $crate::net::handle::send_vectored(fd, bufs),
                )
            }

            fn flush(&mut self) -> ::std::io::Result<()> {
                Ok(())
            }
        }

        impl ::std::io::Read for $t {
            #[track_caller]
            fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                ::std::io::Read::read(&mut &*self, buf)
            }

            #[track_caller]
            fn read_vectored(
                &mut self,
                bufs: &mut [::std::io::IoSliceMut<'_>],
            ) -> ::std::io::Result<usize> {
                ::std::io::Read::read_vectored(&mut &*self, bufs)
            }
        }

        impl ::std::io::Write for $t {
            #[track_caller]
            fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                ::std::io::Write::write(&mut &*self, buf)
            }

            #[track_caller]
            fn write_vectored(
                &mut self,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::io::Result<usize> {
                ::std::io::Write::write_vectored(&mut &*self, bufs)
            }

            fn flush(&mut self) -> ::std::io::Result<()> {
                Ok(())
            }
        }
    };
}
