//! The backends, and the one place that picks the default.
//!
//! Every backend provides the same contract, through [`Lock`]:
//! - at most one holder at a time for a given name and scope, however many processes race;
//! - a non-blocking try that answers *held* with what it can learn of the holder, and a wait with a
//!   deadline woken by the release itself;
//! - release when the guard drops, and when the holding process dies (at once, or for the PID file
//!   on the next acquire, which finds the holder dead);
//! - close-on-exec descriptors: a child gets the lock only when the program hands it over on purpose;
//! - errors that name the resource and keep the `io::Error`; no file it did not create is ever
//!   deleted or overwritten.
//!
//! | backend | mechanism | released on SIGKILL | holder identity | scope of exclusion |
//! | --- | --- | --- | --- | --- |
//! | [`AbstractSocket`](BackendKind::AbstractSocket) | `bind("\0onlyone/...")`, `listen` | at once, by the kernel | pid, uid (`SO_PEERCRED`), command | network namespace |
//! | [`Flock`](BackendKind::Flock) | `flock(2)` on `NAME.lock` | at once, by the kernel | record in the file, `/proc/locks` | the file's inode (local filesystems) |
//! | [`PidFile`](BackendKind::PidFile) | `NAME.pid` linked into place | on the next acquire (stale detection) | record in the file | PID namespace, the directory |
//! | [`NamedMutex`](BackendKind::NamedMutex) | `CreateMutexW` + `WaitForSingleObject` on a backend thread (Windows) | at once, by the kernel (abandoned) | record `NAME.holder` in the lock directory | the session (user scope), the machine (system scope) |
//! | [`Postgres`](BackendKind::Postgres) | `pg_advisory_lock(key)` on a session of its own | when the server sees the session end (at once; ~10 s for a vanished host) | `application_name`: pid, host, job | the database |
//!
//! The default is chosen at compile time: the abstract socket on Linux and Android when the
//! `abstract-socket` feature is on, the named mutex on Windows (feature `named-mutex`), else
//! `flock`, else the PID file.

use std::fmt;
#[cfg(unix)]
use std::fs;
#[cfg(unix)]
use std::os::fd::{AsFd, BorrowedFd};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
#[cfg(unix)]
use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[cfg(unix)]
use nix::errno::Errno;
#[cfg(unix)]
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, ErrorKind};
pub use crate::lock::BackendKind;
use crate::lock::{Acquire, Attempt, Lock};
use crate::name::{LockDir, LockName, Scope};

#[cfg(all(
    feature = "abstract-socket",
    any(target_os = "linux", target_os = "android")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "abstract-socket",
        any(target_os = "linux", target_os = "android")
    )))
)]
pub mod abstract_socket;
#[cfg(all(feature = "flock", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "flock")))]
pub mod flock;
// Windows: the same backend with `LockFileEx` (src/backend/flock/windows.rs).
#[cfg(all(feature = "flock", windows))]
#[path = "backend/flock/windows.rs"]
pub mod flock;
#[cfg(all(feature = "named-mutex", windows))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "named-mutex", windows))))]
pub mod named_mutex;
// Windows: the PID file with OpenProcess + GetProcessTimes identities (src/backend/pidfile/windows.rs).
#[cfg(all(feature = "pidfile", windows))]
#[path = "backend/pidfile/windows.rs"]
pub mod pidfile;
#[cfg(all(feature = "pidfile", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "pidfile")))]
pub mod pidfile;
#[cfg(all(feature = "postgres", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

cfg_if::cfg_if! {
    if #[cfg(all(feature = "abstract-socket", any(target_os = "linux", target_os = "android")))] {
        /// The backend this build uses unless told otherwise.
        pub const DEFAULT_BACKEND: BackendKind = BackendKind::AbstractSocket;
    } else if #[cfg(all(feature = "named-mutex", windows))] {
        /// The backend this build uses unless told otherwise.
        pub const DEFAULT_BACKEND: BackendKind = BackendKind::NamedMutex;
    } else if #[cfg(all(feature = "flock", windows))] {
        /// The backend this build uses unless told otherwise.
        pub const DEFAULT_BACKEND: BackendKind = BackendKind::Flock;
    } else if #[cfg(all(feature = "pidfile", windows))] {
        /// The backend this build uses unless told otherwise.
        pub const DEFAULT_BACKEND: BackendKind = BackendKind::PidFile;
    } else if #[cfg(windows)] {
        compile_error!(
            "onlyone needs at least one backend: enable the `named-mutex`, `flock` or `pidfile` \
             feature"
        );
    } else if #[cfg(feature = "flock")] {
        /// The backend this build uses unless told otherwise.
        pub const DEFAULT_BACKEND: BackendKind = BackendKind::Flock;
    } else if #[cfg(feature = "pidfile")] {
        /// The backend this build uses unless told otherwise.
        pub const DEFAULT_BACKEND: BackendKind = BackendKind::PidFile;
    } else if #[cfg(feature = "abstract-socket")] {
        compile_error!(
            "onlyone: the `abstract-socket` backend exists only on Linux and Android; \
             enable the `flock` or `pidfile` feature for this target"
        );
    } else {
        compile_error!(
            "onlyone needs at least one backend: enable the `abstract-socket` (Linux), \
             `flock` or `pidfile` feature"
        );
    }
}

/// Builds a lock with the backend chosen at run time.
///
/// ```
/// use onlyone::{Acquire, Builder, Lock};
/// # let dir = tempfile::tempdir().unwrap(); // lock files of this test (flock, pidfile) go there
/// let lock = Builder::new("doc-example-builder")
/// #   .lock_dir(dir.path())
///     .build()?;
/// match lock.try_acquire()? {
///     Acquire::Acquired(guard) => { /* the work */ drop(guard) }
///     Acquire::Held(holder) => eprintln!("already running: {holder}"),
/// }
/// # Ok::<(), onlyone::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    name: String,
    backend: BackendKind,
    scope: Scope,
    lock_dir: Option<PathBuf>,
    database_url: Option<DatabaseUrl>,
}

/// A database URL that `Debug` never shows (it may carry a password).
#[derive(Clone)]
// Only the postgres backend reads it; other builds keep the setter so code compiles either way.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
struct DatabaseUrl(String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

impl Builder {
    /// A builder for the lock `name`, with the default backend and [`Scope::User`].
    pub fn new(name: impl Into<String>) -> Builder {
        Builder {
            name: name.into(),
            backend: DEFAULT_BACKEND,
            scope: Scope::User,
            lock_dir: None,
            database_url: None,
        }
    }

    /// Chooses the backend.
    pub fn backend(mut self, backend: BackendKind) -> Builder {
        self.backend = backend;
        self
    }

    /// Chooses who shares the lock.
    pub fn scope(mut self, scope: Scope) -> Builder {
        self.scope = scope;
        self
    }

    /// The directory for file backends, instead of the scope's default. It must exist.
    pub fn lock_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.lock_dir = Some(dir.into());
        self
    }

    /// The server of the [`Postgres`](BackendKind::Postgres) backend, instead of the environment
    /// variable `DATABASE_URL`; see `PostgresLock::new` (feature `postgres`) for the forms.
    /// Other backends ignore it.
    pub fn database_url(mut self, url: impl Into<String>) -> Builder {
        self.database_url = Some(DatabaseUrl(url.into()));
        self
    }

    /// Validates the name and builds the lock. Nothing is created yet.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] for a bad name; [`ErrorKind::Unsupported`] for a backend this
    /// build does not have; [`ErrorKind::InvalidInput`] for the PostgreSQL backend when there is
    /// no database URL (neither [`Builder::database_url`] nor `DATABASE_URL`) or it does not parse.
    pub fn build(self) -> Result<Box<dyn Lock>, Error> {
        let name = LockName::new(self.name)?;
        // Resolved by the file backends only: the user's runtime directory costs a geteuid(2)
        // and a statx(2) that the abstract socket never needs.
        #[allow(unused_variables)]
        let dir = || LockDir::new(self.scope, self.lock_dir.as_deref());
        match self.backend {
            #[cfg(all(
                feature = "abstract-socket",
                any(target_os = "linux", target_os = "android")
            ))]
            BackendKind::AbstractSocket => Ok(Box::new(abstract_socket::AbstractSocketLock::new(
                name, self.scope,
            ))),
            #[cfg(all(feature = "named-mutex", windows))]
            BackendKind::NamedMutex => Ok(Box::new(named_mutex::NamedMutexLock::with_dir(
                name,
                self.scope,
                dir(),
            ))),
            #[cfg(feature = "flock")]
            BackendKind::Flock => Ok(Box::new(flock::FlockLock::with_dir(
                name,
                self.scope,
                dir(),
            ))),
            #[cfg(feature = "pidfile")]
            BackendKind::PidFile => Ok(Box::new(pidfile::PidFileLock::with_dir(
                name,
                self.scope,
                dir(),
            ))),
            #[cfg(all(feature = "postgres", unix))]
            BackendKind::Postgres => Ok(Box::new(match self.database_url {
                Some(url) => postgres::PostgresLock::new(name, &url.0)?,
                None => postgres::PostgresLock::from_env(name)?,
            })),
            // Unreachable when every backend is compiled in.
            #[allow(unreachable_patterns)]
            other => Err(Error::msg(
                ErrorKind::Unsupported,
                format!("cannot build a {other} lock for {name:?}"),
                format!("this build of onlyone has no {other} backend (cargo feature missing)"),
            )),
        }
    }
}

/// A point in time after which a wait gives up; `None` waits forever.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    #[cfg(unix)]
    pub(crate) fn expired(&self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// Time left, `None` for no limit.
    #[cfg(windows)]
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Time left as a poll(2) timeout, rounded up to whole milliseconds.
    #[cfg(unix)]
    fn poll_timeout(&self) -> PollTimeout {
        match self.0 {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                let ms = left.as_micros().div_ceil(1000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        }
    }
}

/// Sleeps in poll(2) until one of `fds` reports an event or the deadline passes. Returns whether
/// an event came. Retries on `EINTR`.
#[cfg(unix)]
pub(crate) fn wait_for_event(fds: &[BorrowedFd<'_>], deadline: Deadline) -> Result<bool, Errno> {
    loop {
        if deadline.expired() {
            return Ok(false);
        }
        let mut pollfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut pollfds, deadline.poll_timeout()) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Sleeps in `WaitForMultipleObjects` until one of `handles` is signalled or the deadline passes.
#[cfg(windows)]
pub(crate) fn wait_for_event(
    handles: &[std::os::windows::io::BorrowedHandle<'_>],
    deadline: Deadline,
) -> std::io::Result<bool> {
    crate::os::wait_for_handles(handles, deadline.remaining())
}

/// Makes sure a file backend's directory exists and is safe to use.
///
/// A directory the caller named must exist. A default directory is checked on every
/// [`prepare_dir`] (once per lock object), in the spirit of sshd's `StrictModes`:
/// - [`Scope::User`]: created (mode 0700) if missing; must be a real directory (not a symlink),
///   owned by us, not writable by others - so that a planted `/tmp/onlyone-UID` cannot capture
///   our lock files.
/// - [`Scope::System`] (`/run/lock/onlyone`): the directory everyone shares. Only root creates it,
///   mode 1777 (sticky: everyone creates lock files there, nobody can delete or rename another
///   user's file). It must be a real directory owned by root, and not writable by others unless
///   sticky. Opened with `O_DIRECTORY | O_NOFOLLOW` and checked with `fstat` on that descriptor,
///   so the check cannot be raced by swapping the path; once it passes, only root can replace it
///   (its parent `/run/lock` is root's and sticky). A directory another user created first, or a
///   symlink, is refused with an error that names the path and the owner: that user could delete
///   or swap the lock files (two holders). Users other than root get an error that says how to
///   create it when it is missing.
// Only the file backends (flock, pidfile) call it.
#[cfg(unix)]
#[cfg_attr(not(any(feature = "flock", feature = "pidfile")), allow(dead_code))]
pub(crate) fn prepare_dir(dir: &LockDir, scope: Scope) -> Result<(), Error> {
    if dir.create && scope == Scope::System {
        return prepare_system_dir(&dir.path);
    }
    let path = &dir.path;
    let describe = || format!("lock directory {}", path.display());
    match fs::symlink_metadata(path) {
        Ok(meta) => check_dir(path, &meta, dir.create && scope == Scope::User),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.create => {
            match fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let meta = fs::symlink_metadata(path)
                        .map_err(|e| Error::new(ErrorKind::LockDir, describe(), e))?;
                    check_dir(path, &meta, scope == Scope::User)
                }
                Err(e) => Err(Error::new(
                    ErrorKind::LockDir,
                    format!("cannot create {}", describe()),
                    e,
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(
            ErrorKind::LockDir,
            format!("{} does not exist", describe()),
            e,
        )),
        Err(e) => Err(Error::new(ErrorKind::LockDir, describe(), e)),
    }
}

/// In the system scope's default directory (sticky, everyone creates files there) a file's owner
/// can delete it under its holder. Root therefore locks only files root owns there: a lock file
/// or a PID file's takeover guard another user created first is refused with an error naming it
/// and its owner, never locked or removed. (A PID file of another user is only read: a live
/// holder is respected, a dead one's file replaced by root's own.) Other users share files
/// whoever created them (each of them could break a lock by deleting a file it owns, as it could
/// by not taking it). `None` when the file may be used.
///
/// Stale recovery in the sticky directory: a user cannot remove another user's stale PID file
/// (`EPERM`, reported with the path); root or the file's owner can.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) fn untrusted_file(
    dir: &LockDir,
    scope: Scope,
    path: &Path,
    meta: &fs::Metadata,
) -> Option<Error> {
    // geteuid(2) only where it can matter: it is a system call on every acquire otherwise.
    if !(dir.create && scope == Scope::System && meta.uid() != 0)
        || nix::unistd::geteuid().as_raw() != 0
    {
        return None;
    }
    Some(Error::msg(
        ErrorKind::LockDir,
        format!("{} belongs to uid {}", path.display(), meta.uid()),
        format!(
            "in the shared system directory {} a file's owner can delete it under its holder, so \
             root uses only files of root; remove it (as root) if no job of that user runs",
            dir.path.display()
        ),
    ))
}

/// The system scope's default directory: see [`prepare_dir`].
#[cfg(unix)]
#[cfg_attr(not(any(feature = "flock", feature = "pidfile")), allow(dead_code))]
fn prepare_system_dir(path: &Path) -> Result<(), Error> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::{Mode, fchmod, fstat};
    let describe = || format!("system lock directory {}", path.display());
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let root = nix::unistd::geteuid().is_root();
    let fd = match open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) if root => {
            match nix::unistd::mkdir(path, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(crate::error::sys(
                        ErrorKind::LockDir,
                        format!("cannot create {}", describe()),
                        e,
                    ));
                }
            }
            let fd = open(path, flags, Mode::empty())
                .map_err(|e| crate::error::sys(ErrorKind::LockDir, describe(), e))?;
            // Made 0700 and widened once it is certainly ours: umask cannot narrow it, and nobody
            // sees a world-writable directory that is not yet checked. A directory another user
            // made between our mkdir's EEXIST and the open is caught by the owner check below.
            let st =
                fstat(&fd).map_err(|e| crate::error::sys(ErrorKind::LockDir, describe(), e))?;
            if st.st_uid == 0 {
                fchmod(&fd, Mode::from_bits_truncate(0o1777))
                    .map_err(|e| crate::error::sys(ErrorKind::LockDir, describe(), e))?;
            }
            fd
        }
        Err(Errno::ENOENT) => {
            return Err(Error::msg(
                ErrorKind::LockDir,
                format!("{} does not exist", describe()),
                "only root creates it (mode 1777, owner root): run any system-scope onlyone as \
                 root once, `install -d -m 1777 -o root -g root /run/lock/onlyone`, or a \
                 tmpfiles.d(5) line `d /run/lock/onlyone 1777 root root -`",
            ));
        }
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            let owner = fs::symlink_metadata(path)
                .map(|m| format!(", owner uid {}", m.uid()))
                .unwrap_or_default();
            let what = if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                "is a symbolic link"
            } else {
                "is not a directory"
            };
            return Err(Error::msg(
                ErrorKind::Symlink,
                describe(),
                format!(
                    "{what}{owner}; onlyone does not follow it (whoever planted it could swap the \
                     lock files); remove it as root"
                ),
            ));
        }
        Err(e) => return Err(crate::error::sys(ErrorKind::LockDir, describe(), e)),
    };
    let st = fstat(&fd).map_err(|e| crate::error::sys(ErrorKind::LockDir, describe(), e))?;
    let mode = st.st_mode & 0o7777;
    let others_write = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if st.st_uid != 0 || (others_write && !sticky) {
        return Err(Error::msg(
            ErrorKind::LockDir,
            describe(),
            format!(
                "belongs to uid {} with mode {mode:o}; onlyone uses it only when root owns it and \
                 others cannot write to it unless it is sticky (1777): whoever else owns or can \
                 write it can delete or swap the lock files under their holders. Remove it as \
                 root; onlyone recreates it",
                st.st_uid
            ),
        ));
    }
    Ok(())
}

// Only the file backends (flock, pidfile) call it.
#[cfg(unix)]
#[cfg_attr(not(any(feature = "flock", feature = "pidfile")), allow(dead_code))]
fn check_dir(path: &Path, meta: &fs::Metadata, private: bool) -> Result<(), Error> {
    let describe = format!("lock directory {}", path.display());
    if meta.file_type().is_symlink() && private {
        return Err(Error::msg(
            ErrorKind::Symlink,
            describe,
            "is a symbolic link; onlyone does not follow links for its default directory",
        ));
    }
    let is_dir = if meta.file_type().is_symlink() {
        fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false)
    } else {
        meta.is_dir()
    };
    if !is_dir {
        return Err(Error::msg(
            ErrorKind::LockDir,
            describe,
            "is not a directory",
        ));
    }
    if private {
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(Error::msg(
                ErrorKind::LockDir,
                describe,
                format!(
                    "belongs to uid {} with mode {:o}; expected uid {me} and no write access for others",
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// The holder a lock record names, once [`ProcessIdentity::liveness`](crate::os::ProcessIdentity::liveness)
/// said it is alive: what [`Holder::from_pid`](crate::Holder::from_pid) gives, without reading
/// `/proc/PID/stat` a second time (liveness has just compared its start time with the record's).
/// That second read was a quarter of a contended try's cost. Records without a start time go
/// through `from_pid`, which reads it from `/proc`.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) fn live_record_holder(id: &crate::os::ProcessIdentity) -> crate::Holder {
    let Some(start_ticks) = id.start_ticks else {
        return crate::Holder::from_pid(id.pid, Some(id.uid), None);
    };
    let me = nix::unistd::geteuid().as_raw();
    crate::Holder {
        kind: if id.uid == me {
            crate::HolderKind::SameUser
        } else {
            crate::HolderKind::OtherUser
        },
        pid: Some(id.pid),
        uid: Some(id.uid),
        started: crate::os::start_time(start_ticks),
        command: crate::os::command_line(id.pid),
        host: None,
        start_ticks: Some(start_ticks),
        process: None,
    }
}

/// The holder a lock record names when [`ProcessIdentity::liveness`](crate::os::ProcessIdentity::liveness)
/// cannot judge it: in another PID namespace (its pid means nothing here, so none is given), or
/// a process that exists but cannot be seen (`hidepid=2`, `ProtectProc=invisible`). Held either
/// way: unknown is never dead.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) fn unknown_record_holder(id: &crate::os::ProcessIdentity) -> crate::Holder {
    let here = crate::os::ProcessIdentity::current();
    let other_ns = matches!((id.pid_ns, here.pid_ns), (Some(a), Some(b)) if a != b);
    crate::Holder {
        kind: if other_ns {
            crate::HolderKind::OtherPidNamespace
        } else {
            crate::HolderKind::Unidentified
        },
        pid: (!other_ns).then_some(id.pid),
        uid: Some(id.uid),
        ..crate::Holder::unidentified()
    }
}

/// The compatibility lock of a default user-scope lock: after the lock itself (`primary`) is
/// taken, the same lock in the old default directory ([`Scope::legacy_default_dir`]) is taken
/// too, so that an older onlyone in the same environment and this one exclude each other. Held
/// there means held: the lock itself is let go again. A directory that cannot be used there (an
/// `XDG_RUNTIME_DIR` that cannot be written, say) is skipped: no old onlyone could lock in it
/// either.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) fn paired_try(primary: Acquire, legacy: Option<&dyn Lock>) -> Result<Acquire, Error> {
    let guard = match (primary, legacy) {
        (Acquire::Acquired(guard), Some(_)) => guard,
        (other, _) => return Ok(other),
    };
    let legacy = legacy.expect("matched above");
    Ok(match legacy_result(legacy.try_acquire())? {
        Some(Acquire::Acquired(old)) => Acquire::Acquired(guard.with_legacy(old)),
        Some(Acquire::Held(h)) => Acquire::Held(h),
        None => Acquire::Acquired(guard),
    })
}

/// [`paired_try`] for one try of a wait: the wake-up of a held compatibility lock is the one to
/// sleep on.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) fn paired_attempt(
    primary: Attempt,
    legacy: Option<&dyn Lock>,
) -> Result<Attempt, Error> {
    let guard = match (primary, legacy) {
        (Attempt::Acquired(guard), Some(_)) => guard,
        (other, _) => return Ok(other),
    };
    let legacy = legacy.expect("matched above");
    Ok(match legacy_result(legacy.attempt())? {
        Some(Attempt::Acquired(old)) => Attempt::Acquired(guard.with_legacy(old)),
        Some(Attempt::Held(h, wake)) => Attempt::Held(h, wake),
        None => Attempt::Acquired(guard),
    })
}

/// Who holds a lock with a compatibility lock: its own holder, else the old directory's.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) fn paired_holder(
    primary: Option<crate::Holder>,
    legacy: Option<&dyn Lock>,
) -> Result<Option<crate::Holder>, Error> {
    match (primary, legacy) {
        (Some(h), _) => Ok(Some(h)),
        (None, None) => Ok(None),
        (None, Some(legacy)) => Ok(legacy_result(legacy.holder())?.flatten()),
    }
}

/// A compatibility lock whose directory cannot be used counts as absent.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
fn legacy_result<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.kind(), ErrorKind::LockDir | ErrorKind::Symlink) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Turns an `open(2)` failure on a lock file into an error that names the cause.
// Only the file backends (flock, pidfile) call it.
#[cfg(unix)]
#[cfg_attr(not(any(feature = "flock", feature = "pidfile")), allow(dead_code))]
pub(crate) fn open_error(path: &Path, errno: Errno) -> Error {
    let (kind, context) = match errno {
        Errno::ELOOP => (
            ErrorKind::Symlink,
            format!(
                "{} is a symbolic link; refusing to follow it (its target is untouched)",
                path.display()
            ),
        ),
        Errno::EACCES | Errno::EPERM | Errno::EROFS | Errno::ENOENT | Errno::ENOTDIR => (
            ErrorKind::LockDir,
            format!("cannot create or open lock file {}", path.display()),
        ),
        _ => (
            ErrorKind::Io,
            format!("cannot open lock file {}", path.display()),
        ),
    };
    crate::error::sys(kind, context, errno)
}

/// The wait loop behind every backend's [`Lock::acquire_timeout`]: one try; when the lock is
/// held, join the line of waiters (Linux, Android: see the crate's `queue` module) and sleep on
/// the predecessor in it; when it leaves, try, and if that fails queue behind the next one, or,
/// at the head of the line, sleep on the [`WakeUp`](crate::WakeUp) the try returned. Only the head sets up a wake-up
/// (an inotify watch, a connection to the holder, a flock thread). Newcomers that do not wait
/// race for the lock too.
#[cfg(unix)]
pub fn wait_loop<L: Lock + ?Sized>(lock: &L, timeout: Option<Duration>) -> Result<Acquire, Error> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let wait_error = |e| {
        crate::error::sys(
            ErrorKind::Io,
            format!("cannot wait for {}", lock.resource()),
            e,
        )
    };
    let mut line = match lock.try_acquire()? {
        Acquire::Acquired(g) => return Ok(Acquire::Acquired(g)),
        Acquire::Held(h) if deadline.is_some_and(|d| Instant::now() >= d) => {
            return Ok(Acquire::Held(h));
        }
        Acquire::Held(_) => Line::join(lock),
    };
    let mut pacing = Pacing::default();
    loop {
        if let Some(pred) = line.predecessor() {
            // Someone is ahead in the line: sleep until it leaves it, not on the holder.
            if !wait_for_event(&[pred], Deadline(deadline)).map_err(wait_error)? {
                return line.last_try(lock);
            }
            line.predecessor_left();
            pacing = Pacing::default();
            continue;
        }
        let (holder, wake) = match lock.attempt()? {
            Attempt::Acquired(g) => return Ok(Acquire::Acquired(line.keep(g))),
            Attempt::Held(h, w) => (h, w),
        };
        if line.rescan() {
            // The waiter ahead left without the lock coming our way: queue behind the next one.
            continue;
        }
        let Some(sleep) = pacing.next(&wake, deadline, Instant::now()) else {
            return Ok(Acquire::Held(holder));
        };
        let Sleep::Until(until) = sleep else {
            continue;
        };
        let fds: Vec<BorrowedFd<'_>> = wake.sources().iter().map(|f| f.as_fd()).collect();
        wait_for_event(&fds, Deadline(until)).map_err(wait_error)?;
    }
}

/// A waiter's place in the line of waiters, joined after its first failed try (none where the
/// build has no line, or no place could be had: the waiter is then a head).
#[cfg(unix)]
#[derive(Debug)]
pub(crate) struct Line {
    place: Option<crate::queue::Place>,
}

#[cfg(unix)]
impl Line {
    /// Joins the line of `lock`'s waiters.
    pub(crate) fn join<L: Lock + ?Sized>(lock: &L) -> Line {
        Line {
            place: crate::queue::Place::join(&lock.resource()),
        }
    }

    /// The connection to the waiter ahead, to sleep on; `None` at the head of the line.
    pub(crate) fn predecessor(&self) -> Option<BorrowedFd<'_>> {
        self.place.as_ref()?.predecessor()
    }

    /// The predecessor's connection hung up: it left the line.
    pub(crate) fn predecessor_left(&mut self) {
        if let Some(place) = self.place.as_mut() {
            place.predecessor_left();
        }
    }

    /// After a failed try at the head: whether someone is ahead in the line after all (the
    /// predecessor that left was not the last one).
    pub(crate) fn rescan(&mut self) -> bool {
        self.place.as_mut().is_some_and(crate::queue::Place::rescan)
    }

    /// The guard, keeping our place until the lock is released.
    pub(crate) fn keep(self, guard: crate::Guard) -> crate::Guard {
        crate::queue::keep(guard, self.place)
    }

    /// The deadline passed while waiting behind someone: one last try, for the answer.
    pub(crate) fn last_try<L: Lock + ?Sized>(self, lock: &L) -> Result<Acquire, Error> {
        Ok(match lock.try_acquire()? {
            Acquire::Acquired(g) => Acquire::Acquired(self.keep(g)),
            held => held,
        })
    }
}

/// The wait loop behind every backend's [`Lock::acquire_timeout`] on Windows: try, sleep on the
/// [`WakeUp`](crate::WakeUp) the try returned (handles), try again — other waiters race for the
/// lock too. (No line of waiters here: a named mutex's own wait queue hands it over.)
#[cfg(windows)]
pub fn wait_loop<L: Lock + ?Sized>(lock: &L, timeout: Option<Duration>) -> Result<Acquire, Error> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut pacing = Pacing::default();
    loop {
        let (holder, wake) = match lock.attempt()? {
            Attempt::Acquired(g) => return Ok(Acquire::Acquired(g)),
            Attempt::Held(h, w) => (h, w),
        };
        let Some(sleep) = pacing.next(&wake, deadline, Instant::now()) else {
            return Ok(Acquire::Held(holder));
        };
        let Sleep::Until(until) = sleep else {
            continue;
        };
        let fds: Vec<std::os::windows::io::BorrowedHandle<'_>> = {
            use std::os::windows::io::AsHandle;
            wake.sources().iter().map(|f| f.as_handle()).collect()
        };
        wait_for_event(&fds, Deadline(until)).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot wait for {}", lock.resource()),
                e,
            )
        })?;
    }
}

/// How long a waiter sleeps after a failed try: shared by the blocking and the async wait.
#[derive(Debug)]
pub(crate) struct Pacing {
    backoff: Duration,
    retried_now: bool,
}

/// What a waiter does after a failed try.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sleep {
    /// Try again at once.
    Retry,
    /// Sleep on the wake-up's descriptors until this instant (`None`: no limit).
    Until(Option<Instant>),
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            backoff: Duration::from_millis(1),
            retried_now: false,
        }
    }
}

impl Pacing {
    /// The longest backoff step, when no release event is certain.
    const BACKOFF_MAX: Duration = Duration::from_millis(50);

    /// `None` when the deadline has passed; else whether to retry at once or sleep until when.
    pub(crate) fn next(
        &mut self,
        wake: &crate::WakeUp,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Option<Sleep> {
        if deadline.is_some_and(|d| now >= d) {
            return None;
        }
        // "Now" once: the holder just vanished. "Now" again: the lock is held through a
        // descriptor its dead taker handed down, and only a backoff is left.
        self.retried_now = wake.is_now() && !self.retried_now;
        if self.retried_now {
            return Some(Sleep::Retry);
        }
        if !(wake.needs_backoff() || wake.is_now()) {
            return Some(Sleep::Until(deadline));
        }
        let step = now + self.backoff;
        self.backoff = (self.backoff * 2).min(Self::BACKOFF_MAX);
        Some(Sleep::Until(Some(deadline.map_or(step, |d| d.min(step)))))
    }
}

/// Watches a lock file for its release (see the OS layer's `watch_file`): set up *before* a try,
/// so that a release between the try and the wait is not missed.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) fn watch_file(path: &Path) -> Option<crate::WakeSource> {
    crate::os::watch_file(path).map(crate::WakeSource::new)
}

/// The wake-up for a file backend whose lock is held by `holder`: the file watch set up before
/// the try, plus a wait for the holder's exit (pidfd, kqueue) when it can be named.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) fn file_wake_up(
    watch: Option<crate::WakeSource>,
    holder: &crate::Holder,
) -> crate::WakeUp {
    use crate::os::ProcessWatch;
    let mut sources: Vec<crate::WakeSource> = watch.into_iter().collect();
    let pidfd = match holder.pid {
        Some(pid) => crate::os::watch_process(pid, holder.start_ticks),
        None => ProcessWatch::Unsupported,
    };
    match pidfd {
        ProcessWatch::Gone => crate::WakeUp::now(),
        // Without a file watch (no inotify instance to be had: `EMFILE` once the user's processes
        // hold `fs.inotify.max_user_instances` of them), the pidfd only tells of the holder's
        // death: a holder that releases and lives on is noticed by retrying with a backoff.
        ProcessWatch::Fd(fd) if sources.is_empty() => {
            sources.push(crate::WakeSource::new(fd));
            crate::WakeUp::backoff(sources)
        }
        ProcessWatch::Fd(fd) => {
            sources.push(crate::WakeSource::new(fd));
            crate::WakeUp::on_event(sources)
        }
        // Nothing certain: a holder we cannot name (a descriptor inherited from a dead
        // process), no pidfd support. inotify events still come, with a backoff behind them.
        ProcessWatch::Unsupported => crate::WakeUp::backoff(sources),
    }
}

/// A wait for the release of the lock on `path`'s file that needs no inotify: a thread blocked
/// in `flock(LOCK_SH)` (flock(2)) on a descriptor of its own, which the kernel wakes when the
/// exclusive holder lets go (unlock, close, death): the flock backend's lock, and the `flock`
/// a PID-file holder of this version keeps on its PID file. With `locked_only`, `None` unless
/// the file is locked now (a PID file of an older onlyone is not: no release would wake the
/// thread, it would return at once). It lets go of its shared lock at once and
/// closes the write end of a pipe, whose read end is the wake-up source. One thread per locked
/// file and process, shared by the waits of that process, and only for the head of the line of
/// waiters (see the crate's `queue` module): the others sleep on their predecessor. A thread is
/// the only way: flock(2) has no timeout and no pollable form, and a wait must keep its
/// deadline; a wait that gives up leaves the thread blocked until the release, when it ends.
/// `None` in the portable build and on other systems (no line of waiters there, every waiter
/// would start one), or when the file or thread cannot be had.
#[cfg(all(
    any(feature = "flock", feature = "pidfile"),
    any(target_os = "linux", target_os = "android"),
    not(onlyone_portable)
))]
pub(crate) fn release_watch(path: &Path, locked_only: bool) -> Option<crate::WakeSource> {
    use std::collections::HashMap;
    use std::os::fd::OwnedFd;
    use std::sync::{Arc, Mutex};
    type Watches = Mutex<HashMap<(u64, u64), Arc<OwnedFd>>>;
    static WATCHES: std::sync::OnceLock<Watches> = std::sync::OnceLock::new();
    let flags = nix::fcntl::OFlag::O_RDONLY
        | nix::fcntl::OFlag::O_CLOEXEC
        | nix::fcntl::OFlag::O_NOFOLLOW
        | nix::fcntl::OFlag::O_NONBLOCK;
    let file =
        std::fs::File::from(nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()).ok()?);
    if locked_only {
        use rustix::fs::{FlockOperation, flock};
        if flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
            return None;
        }
    }
    let meta = file.metadata().ok()?;
    let key = (
        std::os::unix::fs::MetadataExt::dev(&meta),
        std::os::unix::fs::MetadataExt::ino(&meta),
    );
    let watches = WATCHES.get_or_init(Watches::default);
    let mut map = watches.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(read) = map.get(&key) {
        return read.try_clone().ok().map(crate::WakeSource::new);
    }
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    let read = Arc::new(read);
    spawn_quiet("onlyone-flock-wait", move || {
        // flock(2) with LOCK_SH: granted once the exclusive holder lets go.
        while rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared)
            == Err(rustix::io::Errno::INTR)
        {}
        drop(file);
        let watches = WATCHES.get_or_init(Watches::default);
        watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        drop(write);
    })
    .ok()?;
    map.insert(key, Arc::clone(&read));
    read.try_clone().ok().map(crate::WakeSource::new)
}

/// Elsewhere: no thread per waiter (no line of waiters there); see the Linux version.
#[cfg(all(
    unix,
    any(feature = "flock", feature = "pidfile"),
    not(all(any(target_os = "linux", target_os = "android"), not(onlyone_portable)))
))]
pub(crate) fn release_watch(_path: &Path, _locked_only: bool) -> Option<crate::WakeSource> {
    None
}

/// Starts one of the library's own threads (the abstract holder's draining thread, a flock
/// wait's thread) with every signal blocked (pthread_sigmask(3)), so that the kernel never
/// delivers a signal meant for the program to it: a program that blocks a signal in its own
/// threads and reads it from a `signalfd(2)` (the CLI does, for SIGCHLD) would lose it there.
/// The mask is set before the thread starts (it inherits it), and restored in the caller.
// Unused where there is neither the abstract socket nor the line of waiters (other systems; the
// portable build without the abstract socket).
#[cfg(unix)]
#[allow(dead_code)]
pub(crate) fn spawn_quiet(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )?;
    let spawned = std::thread::Builder::new().name(name.into()).spawn(f);
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    spawned
}
