//! The crate's error: what went wrong, with which lock, and the `io::Error` underneath.

use std::{fmt, io};

/// What kind of failure an [`Error`] is. A lock that is held is not an error: see
/// [`Acquire::Held`](crate::Acquire::Held).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The lock name is empty, contains NUL, `/` or a control character.
    InvalidName,
    /// Another argument is not valid (unknown backend or scope, bad URL, ...).
    InvalidInput,
    /// The lock directory is missing, not a directory, not ours, or not writable.
    LockDir,
    /// A symbolic link sits where a lock file belongs; it was not followed and its target is untouched.
    Symlink,
    /// A lock file or PID file holds content onlyone did not write; it was left untouched.
    Corrupt,
    /// The lock is no longer ours: its file was deleted or replaced, or the server session ended.
    Lost,
    /// The backend is not compiled in or not available on this system.
    Unsupported,
    /// The lock server could not be reached or refused us (PostgreSQL backend).
    Connection,
    /// Any other system call failure.
    Io,
}

/// An error from a lock operation. It names the lock (its resource or path) and keeps the
/// underlying [`io::Error`], reachable through [`Error::io_error`] and [`std::error::Error::source`].
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    context: String,
    source: io::Error,
}

impl Error {
    /// Creates an error: `context` says what was being done to which lock ("cannot open lock file
    /// /var/tmp/onlyone-1000/backup.lock").
    pub fn new(kind: ErrorKind, context: impl Into<String>, source: io::Error) -> Self {
        Error {
            kind,
            context: context.into(),
            source,
        }
    }

    /// Creates an error whose cause is a sentence rather than a system call failure.
    pub(crate) fn msg(kind: ErrorKind, context: impl Into<String>, msg: impl Into<String>) -> Self {
        let io_kind = match kind {
            ErrorKind::InvalidName | ErrorKind::InvalidInput | ErrorKind::Corrupt => {
                io::ErrorKind::InvalidData
            }
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            _ => io::ErrorKind::Other,
        };
        Error::new(kind, context, io::Error::new(io_kind, msg.into()))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What was being done, to which lock.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The underlying I/O error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    /// The underlying I/O error, by value.
    pub fn into_io_error(self) -> io::Error {
        self.source
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<Error> for io::Error {
    /// Keeps the underlying error's kind and puts the context in front of its message.
    fn from(e: Error) -> io::Error {
        io::Error::new(e.source.kind(), e.to_string())
    }
}

/// Wraps a `nix` errno with context.
#[cfg(unix)]
pub(crate) fn sys(kind: ErrorKind, context: impl Into<String>, errno: nix::errno::Errno) -> Error {
    Error::new(kind, context, io::Error::from(errno))
}
