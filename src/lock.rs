//! The contract every backend fulfils: the [`Lock`] trait, the [`Guard`] that holds a lock, what is
//! known of a [`Holder`], and the [`BackendKind`]s. Imports no backend.

use std::fmt;
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
#[cfg(windows)]
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::error::{Error, ErrorKind};
use crate::name::LockName;
use crate::os as process;

/// A lock that at most one process holds at a time.
///
/// Object safe: a program can pick a backend at run time and keep a `Box<dyn Lock>`.
/// Every backend in this crate implements it; see [`crate::backend`] for what each provides.
pub trait Lock: fmt::Debug + Send + Sync {
    /// Takes the lock if it is free, without waiting.
    ///
    /// `Ok(Acquire::Held(holder))` when another process holds it: that is an answer, not an
    /// error. The holder's identity is read when first asked for (see [`LazyHolder`]): a failed
    /// try that nobody asks about costs a failed try. `Err` means the question could not be answered (unwritable directory, corrupt
    /// PID file, server down, ...).
    fn try_acquire(&self) -> Result<Acquire, Error>;

    /// Takes the lock, waiting up to `timeout` for its holder to let go (`None`: no limit;
    /// zero: one try, like [`Lock::try_acquire`]).
    ///
    /// Waiting sleeps on the release event itself (socket hangup, inotify, a pidfd, a blocking
    /// `flock(2)`), then races newcomers for the lock. On Linux and Android waiters queue: each
    /// sleeps on the one ahead of it and only the head on the holder, so a release wakes one
    /// waiter (see the README's "Waiting for a lock"). A wait falls back to a timer (1 ms doubling
    /// to 50 ms) only when no release event is certain: a name bound without listening, a full
    /// backlog, a holder no pidfd can name, an older onlyone's PID file while the user's inotify
    /// instances are all in use, and the portable build's file backends. On timeout the result is
    /// [`Acquire::Held`] with the current holder.
    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error>;

    /// Says who holds the lock, or `None` when it is free, without taking it and without
    /// disturbing the holder.
    fn holder(&self) -> Result<Option<Holder>, Error>;

    /// One non-blocking try that, when the lock is held, also says what to wait on before trying
    /// again: the building block of [`Lock::acquire_timeout`] and of the async wait.
    ///
    /// The default has no event to offer and asks to be retried with a backoff; the crate's
    /// backends return descriptors that become readable when the holder lets go.
    fn attempt(&self) -> Result<Attempt, Error> {
        Ok(match self.try_acquire()? {
            Acquire::Acquired(g) => Attempt::Acquired(g),
            Acquire::Held(h) => Attempt::Held(h, WakeUp::backoff(Vec::new())),
        })
    }

    /// Which backend this is.
    fn backend(&self) -> BackendKind;

    /// The lock's name.
    fn name(&self) -> &LockName;

    /// The kernel resource the name maps to: `@onlyone/u1000/job` (abstract socket), a path.
    fn resource(&self) -> String;
}

impl<L: Lock + ?Sized> Lock for Box<L> {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        (**self).try_acquire()
    }
    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        (**self).acquire_timeout(timeout)
    }
    fn holder(&self) -> Result<Option<Holder>, Error> {
        (**self).holder()
    }
    fn attempt(&self) -> Result<Attempt, Error> {
        (**self).attempt()
    }
    fn backend(&self) -> BackendKind {
        (**self).backend()
    }
    fn name(&self) -> &LockName {
        (**self).name()
    }
    fn resource(&self) -> String {
        (**self).resource()
    }
}

/// The outcome of an acquire: the lock, or who has it.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub enum Acquire {
    /// The lock is ours until the guard is dropped.
    Acquired(Guard),
    /// Someone else holds the lock; who it is is read when first asked for.
    Held(LazyHolder),
}

impl Acquire {
    /// The guard, if the lock was acquired.
    pub fn guard(self) -> Option<Guard> {
        match self {
            Acquire::Acquired(g) => Some(g),
            Acquire::Held(_) => None,
        }
    }

    /// The holder, if the lock was held (reading its identity now, if not read yet).
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            Acquire::Acquired(_) => None,
            Acquire::Held(h) => Some(h.holder()),
        }
    }

    /// Whether the lock was acquired.
    pub fn is_acquired(&self) -> bool {
        matches!(self, Acquire::Acquired(_))
    }
}

/// The outcome of [`Lock::attempt`]: the lock, or who has it and what to wait on.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub enum Attempt {
    /// The lock is ours.
    Acquired(Guard),
    /// Someone else holds it; wait on the [`WakeUp`] before trying again. A waiter that loops
    /// never asks who holds it, so no identity is read per wake-up.
    Held(LazyHolder, WakeUp),
}

/// What a waiter sleeps on before its next try: descriptors that become readable when the holder
/// lets go (a hung-up connection to the holder's socket, an inotify watch on the lock file, a
/// pidfd of the holder, the pipe of a thread blocked in `flock(2)`), and whether it must also
/// retry on a timer because no event is certain. The crate's waits ask for it at the head of the
/// line of waiters only; the others sleep on the waiter ahead of them.
#[derive(Debug)]
pub struct WakeUp {
    sources: Vec<WakeSource>,
    retry: Retry,
}

/// One descriptor a waiter sleeps on. Dropping it releases whatever it watches.
#[cfg(unix)]
pub struct WakeSource(Box<dyn AsFd + Send + Sync>);

/// One waitable handle a waiter sleeps on (Windows: signalled when the lock may be free, such as
/// a process handle of the holder). Dropping it releases whatever it watches.
#[cfg(windows)]
pub struct WakeSource(Box<dyn AsHandle + Send + Sync>);

#[cfg(unix)]
impl WakeSource {
    /// Wraps anything that owns a pollable descriptor.
    pub fn new(source: impl AsFd + Send + Sync + 'static) -> WakeSource {
        WakeSource(Box::new(source))
    }
}

#[cfg(windows)]
impl WakeSource {
    /// Wraps anything that owns a waitable handle.
    pub fn new(source: impl AsHandle + Send + Sync + 'static) -> WakeSource {
        WakeSource(Box::new(source))
    }
}

#[cfg(windows)]
impl AsHandle for WakeSource {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.0.as_handle()
    }
}

#[cfg(windows)]
impl fmt::Debug for WakeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WakeSource({:?})", self.0.as_handle().as_raw_handle())
    }
}

#[cfg(unix)]
impl AsFd for WakeSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(unix)]
impl AsRawFd for WakeSource {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

#[cfg(unix)]
impl fmt::Debug for WakeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WakeSource({})", self.as_raw_fd())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// An event on a source is certain to come when the lock is released.
    OnEvent,
    /// Events may not come: also retry after a backoff (1 ms doubling to 50 ms).
    Backoff,
    /// Try again at once (the holder vanished between the try and the wait).
    Now,
}

impl WakeUp {
    /// Wait for one of `sources` to become readable; an event is certain when the lock is released.
    pub fn on_event(sources: Vec<WakeSource>) -> WakeUp {
        WakeUp {
            sources,
            retry: Retry::OnEvent,
        }
    }

    /// Wait for one of `sources` (possibly none), but also retry after a backoff: no event is
    /// certain.
    pub fn backoff(sources: Vec<WakeSource>) -> WakeUp {
        WakeUp {
            sources,
            retry: Retry::Backoff,
        }
    }

    /// Retry at once.
    pub fn now() -> WakeUp {
        WakeUp {
            sources: Vec::new(),
            retry: Retry::Now,
        }
    }

    /// The descriptors to wait on.
    pub fn sources(&self) -> &[WakeSource] {
        &self.sources
    }

    /// Takes the descriptors (an async runtime registers them).
    pub fn into_sources(self) -> Vec<WakeSource> {
        self.sources
    }

    /// Whether the waiter must also wake on a timer (no event is certain).
    pub fn needs_backoff(&self) -> bool {
        self.retry == Retry::Backoff
    }

    /// Whether to try again without waiting.
    pub fn is_now(&self) -> bool {
        self.retry == Retry::Now
    }
}

/// The kinds of backend. Every variant exists in every build so that a name typed by a user can be
/// parsed and answered with "not compiled in" rather than "unknown".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BackendKind {
    /// A listening Unix socket bound in Linux's abstract namespace (unix(7)). Feature `abstract-socket`.
    AbstractSocket,
    /// A Windows named mutex (`CreateMutexW`), owned by a thread of the backend. Feature
    /// `named-mutex`; Windows only, where it is the default.
    NamedMutex,
    /// `flock(2)` on a lock file. Feature `flock`.
    Flock,
    /// A PID file with the holder's start time and boot id. Feature `pidfile`.
    PidFile,
    /// A PostgreSQL session-level advisory lock. Feature `postgres`.
    Postgres,
}

impl BackendKind {
    /// Every kind, in the order onlyone presents them.
    pub const ALL: [BackendKind; 5] = [
        BackendKind::AbstractSocket,
        BackendKind::NamedMutex,
        BackendKind::Flock,
        BackendKind::PidFile,
        BackendKind::Postgres,
    ];

    /// The name used on the command line and in output: `abstract`, `mutex`, `flock`, `pidfile`,
    /// `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::AbstractSocket => "abstract",
            BackendKind::NamedMutex => "mutex",
            BackendKind::Flock => "flock",
            BackendKind::PidFile => "pidfile",
            BackendKind::Postgres => "postgres",
        }
    }

    /// Whether this build has the backend.
    pub fn is_available(self) -> bool {
        match self {
            BackendKind::AbstractSocket => cfg!(all(
                feature = "abstract-socket",
                any(target_os = "linux", target_os = "android")
            )),
            BackendKind::NamedMutex => cfg!(all(feature = "named-mutex", windows)),
            BackendKind::Flock => cfg!(feature = "flock"),
            BackendKind::PidFile => cfg!(feature = "pidfile"),
            BackendKind::Postgres => cfg!(all(feature = "postgres", unix)),
        }
    }

    /// The local backends this build has (PostgreSQL needs a server and is left out).
    pub fn available_local() -> Vec<BackendKind> {
        Self::ALL
            .into_iter()
            .filter(|b| *b != BackendKind::Postgres && b.is_available())
            .collect()
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "abstract" | "abstract-socket" => Ok(BackendKind::AbstractSocket),
            "mutex" | "named-mutex" => Ok(BackendKind::NamedMutex),
            "flock" => Ok(BackendKind::Flock),
            "pidfile" | "pid-file" => Ok(BackendKind::PidFile),
            "postgres" | "postgresql" => Ok(BackendKind::Postgres),
            other => Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("unknown backend {other:?}"),
                "expected one of: abstract, mutex, flock, pidfile, postgres",
            )),
        }
    }
}

/// What onlyone could learn about the process holding a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// How the holder answered, and whether it is one of us.
    pub kind: HolderKind,
    /// Process id, when known. For an abstract socket it is the process that called `listen()`;
    /// it may have exited if a child inherited the socket.
    pub pid: Option<u32>,
    /// Effective uid, when known.
    pub uid: Option<u32>,
    /// When the holding process started, when known.
    pub started: Option<SystemTime>,
    /// The holder's command line, when readable.
    pub command: Option<String>,
    /// Where the holder is, for holders on another machine (PostgreSQL `application_name`).
    pub host: Option<String>,
    /// Start time in clock ticks after boot, to recognise the process again (pidfd checks).
    pub(crate) start_ticks: Option<u64>,
    /// The holding process pinned by a handle that cannot name another process, when onlyone
    /// proved that this process holds the lock (only [`Lock::holder`] tries).
    pub(crate) process: Option<HolderProcess>,
}

/// The process that holds a lock, pinned by a pidfd (Linux): signals sent through it reach that
/// process or nobody, never a process that later got the same pid.
///
/// [`Lock::holder`] attaches one only after proving that the pinned process holds the lock:
/// - abstract socket: the pidfd comes from `SO_PEERPIDFD` (Linux 6.5+) on a connection to the
///   listening socket; the kernel keeps a reference to the process that called `listen(2)`, so a
///   listener that exited (a child kept the socket) yields none;
/// - flock: the process named by the record or `/proc/locks` is pinned, then its
///   `/proc/PID/fdinfo` must show the lock on the lock file's inode;
/// - PID file: the recorded process is pinned, then its start time must be the record's and the
///   PID file must still hold that record.
///
/// Anywhere else (another PID namespace, a holder that cannot be seen, another machine, an OS
/// without pidfds) there is none, and `onlyone run --replace` refuses.
///
/// On Windows the pin is a process handle (`OpenProcess` with `PROCESS_TERMINATE`), opened after
/// the holder's creation time was compared with the record's.
#[derive(Clone)]
pub struct HolderProcess {
    pid: u32,
    fd: std::sync::Arc<Pinned>,
}

/// What pins a process: a pidfd on Unix, a process handle on Windows.
#[cfg(unix)]
type Pinned = std::os::fd::OwnedFd;
#[cfg(windows)]
type Pinned = std::os::windows::io::OwnedHandle;

impl HolderProcess {
    /// Pins `pid` (pidfd_open(2)); the caller then proves that the pinned process holds the lock.
    #[cfg_attr(
        not(all(
            unix,
            any(feature = "flock", feature = "pidfile", feature = "postgres")
        )),
        allow(dead_code)
    )]
    pub(crate) fn pin(pid: u32) -> Option<HolderProcess> {
        crate::os::pin_process(pid).map(|fd| HolderProcess {
            pid,
            fd: std::sync::Arc::new(fd),
        })
    }

    /// Wraps a pidfd the kernel gave for the process with `pid` (in our PID namespace).
    #[allow(dead_code)] // Only the abstract-socket backend (Linux, Android) gets one this way.
    #[cfg(unix)]
    pub(crate) fn from_fd(pid: u32, fd: std::os::fd::OwnedFd) -> HolderProcess {
        HolderProcess {
            pid,
            fd: std::sync::Arc::new(fd),
        }
    }

    /// Its pid in this PID namespace.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends it SIGTERM through the pidfd. `ESRCH` when it has exited. On Windows, which has no
    /// polite signal for a process without a console it shares, `TerminateProcess` like
    /// [`HolderProcess::kill`].
    pub fn terminate(&self) -> std::io::Result<()> {
        #[cfg(unix)]
        return crate::os::signal_pinned(self.fd.as_fd(), false);
        #[cfg(windows)]
        return crate::os::terminate_pinned(self.fd.as_handle());
    }

    /// Sends it SIGKILL through the pidfd (Windows: `TerminateProcess` on the handle). `ESRCH`
    /// when it has exited.
    pub fn kill(&self) -> std::io::Result<()> {
        #[cfg(unix)]
        return crate::os::signal_pinned(self.fd.as_fd(), true);
        #[cfg(windows)]
        return crate::os::terminate_pinned(self.fd.as_handle());
    }

    /// Whether it has exited (Windows: its process handle is signalled).
    #[cfg(windows)]
    pub fn has_exited(&self) -> bool {
        crate::os::has_exited(self.fd.as_handle())
    }

    /// Whether it has exited (its pidfd is readable).
    #[cfg(unix)]
    pub fn has_exited(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
    }
}

#[cfg(windows)]
impl AsHandle for HolderProcess {
    /// The process handle: signalled once the process has exited.
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.fd.as_handle()
    }
}

#[cfg(unix)]
impl AsFd for HolderProcess {
    /// The pidfd: readable once the process has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PartialEq for HolderProcess {
    fn eq(&self, other: &HolderProcess) -> bool {
        self.pid == other.pid && std::sync::Arc::ptr_eq(&self.fd, &other.fd)
    }
}

impl Eq for HolderProcess {}

#[cfg(unix)]
impl fmt::Debug for HolderProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HolderProcess(pid {}, pidfd {})",
            self.pid,
            self.fd.as_raw_fd()
        )
    }
}

/// The holder a failed try met, read when first asked for.
///
/// A failed try knows only that the lock is held (and, where that came for free, the holder's pid);
/// the identity — `SO_PEERCRED`, the holder record, `/proc/PID/stat` and `/proc/PID/cmdline`,
/// `/proc/locks` — is read on the first use: [`LazyHolder::holder`], a field read through `Deref`
/// (`held.pid`), `Display` or `Debug`. Read once, then kept. So a cron job whose try fails and
/// that does not print the holder pays for a failed try only, and a waiter that loops on
/// [`Lock::attempt`] reads no `/proc` file per wake-up.
///
/// The identity describes the holder *when it is read*: read it soon after the try. If the lock
/// changed hands meanwhile it names the new holder; if it was released meanwhile it is
/// [`HolderKind::Unidentified`] (a held lock is never reported free). [`Lock::holder`] is the
/// eager lookup, and the only one that proves the holder ([`Holder::process`]).
pub struct LazyHolder {
    cell: std::sync::LazyLock<Holder, LookUp>,
}

/// How a [`LazyHolder`] reads its holder.
type LookUp = Box<dyn FnOnce() -> Holder + Send>;

impl LazyHolder {
    /// A holder that `look_up` reads when first asked for.
    pub fn new(look_up: impl FnOnce() -> Holder + Send + 'static) -> LazyHolder {
        LazyHolder {
            cell: std::sync::LazyLock::new(Box::new(look_up)),
        }
    }

    /// A holder already known.
    pub fn known(holder: Holder) -> LazyHolder {
        LazyHolder::new(move || holder)
    }

    /// The holder, read now if it was not yet.
    pub fn holder(&self) -> &Holder {
        std::sync::LazyLock::force(&self.cell)
    }

    /// The holder, read now if it was not yet.
    pub fn into_holder(self) -> Holder {
        self.holder().clone()
    }
}

impl From<Holder> for LazyHolder {
    fn from(holder: Holder) -> LazyHolder {
        LazyHolder::known(holder)
    }
}

impl std::ops::Deref for LazyHolder {
    type Target = Holder;
    /// Reads the holder if it was not yet: `held.pid` is `held.holder().pid`.
    fn deref(&self) -> &Holder {
        self.holder()
    }
}

impl fmt::Display for LazyHolder {
    /// The holder's line (see [`Holder`]'s `Display`), read now if it was not yet.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.holder(), f)
    }
}

impl fmt::Debug for LazyHolder {
    /// The holder's fields, read now if they were not yet.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.holder(), f)
    }
}

#[cfg(windows)]
impl fmt::Debug for HolderProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HolderProcess(pid {}, handle {:?})",
            self.pid,
            self.fd.as_raw_handle()
        )
    }
}

/// How a lock's holder presented itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HolderKind {
    /// A process of the calling user holds the lock the way onlyone takes it.
    SameUser,
    /// A process of another user holds it. In [`Scope::User`](crate::Scope::User) the name carries
    /// your uid, so this is someone squatting on it.
    OtherUser,
    /// The resource is taken but its holder does not answer the way onlyone holders do (an abstract
    /// name bound without `listen()`): another program, or squatting.
    Unresponsive,
    /// The lock is held but its holder could not be identified: no readable record, a holder
    /// `/proc` does not show (`hidepid=2`, `ProtectProc=invisible`), a process that took the lock
    /// and exited while a child it handed the lock to holds it. Unknown is never free: a lookup
    /// says this rather than "free" or a pid it cannot vouch for.
    Unidentified,
    /// The holder runs in another PID namespace (another container, `unshare -p`): its pid means
    /// nothing here and is not given; its uid is, when known. Nothing here can signal it.
    OtherPidNamespace,
}

impl Holder {
    /// A holder about whom nothing is known but that it exists.
    pub fn unidentified() -> Holder {
        Holder {
            kind: HolderKind::Unidentified,
            pid: None,
            uid: None,
            started: None,
            command: None,
            host: None,
            start_ticks: None,
            process: None,
        }
    }

    /// The holding process, pinned, when onlyone proved that it holds the lock; see
    /// [`HolderProcess`]. Only [`Lock::holder`] looks for one.
    pub fn process(&self) -> Option<&HolderProcess> {
        self.process.as_ref()
    }

    /// Builds a holder from a pid (and uid, if known), reading its start time and command line
    /// from `/proc` when they are visible. `start_ticks`, when given, must match for the
    /// command line to be trusted (the pid may have been reused).
    pub fn from_pid(pid: u32, uid: Option<u32>, start_ticks: Option<u64>) -> Holder {
        let stat = process::stat(pid);
        let same_process = match (stat, start_ticks) {
            (Some(s), Some(t)) => s.start_ticks == t,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let uid = uid.or_else(|| same_process.then(|| process::uid_of(pid)).flatten());
        let me = crate::os::effective_uid();
        let start_ticks = start_ticks.or(stat.map(|s| s.start_ticks));
        Holder {
            kind: match uid {
                Some(u) if u != me => HolderKind::OtherUser,
                _ => HolderKind::SameUser,
            },
            pid: Some(pid),
            uid,
            started: start_ticks.and_then(process::start_time),
            command: same_process.then(|| process::command_line(pid)).flatten(),
            host: None,
            start_ticks,
            process: None,
        }
    }
}

impl fmt::Display for Holder {
    /// One line for humans: `pid 4242 (uid 1000) "sleep 60", running since 2026-11-25 08:30:01 UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, self.kind) {
            (Some(pid), _) => write!(f, "pid {pid}")?,
            (None, HolderKind::OtherPidNamespace) => {
                f.write_str("a process in another PID namespace")?
            }
            (None, _) => f.write_str("an unidentified process")?,
        }
        if let Some(uid) = self.uid {
            write!(f, " (uid {uid})")?;
        }
        if let Some(host) = &self.host {
            write!(f, " on {host}")?;
        }
        if let Some(cmd) = &self.command {
            write!(f, " {cmd:?}")?;
        }
        if let Some(t) = self.started {
            write!(f, ", running since {}", format_utc(t))?;
        }
        match self.kind {
            HolderKind::OtherUser => f.write_str(" [another user]"),
            HolderKind::Unresponsive => {
                f.write_str(" [bound but not listening: not an onlyone holder, possibly squatting]")
            }
            _ => Ok(()),
        }
    }
}

/// Formats `t` as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, no time zone database needed).
pub fn format_utc(t: SystemTime) -> String {
    let (date, secs, _) = civil(t);
    format!(
        "{date} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Formats `t` as RFC 3339 in UTC with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`, for
/// machine-readable output.
pub fn format_utc_rfc3339(t: SystemTime) -> String {
    let (date, secs, millis) = civil(t);
    format!(
        "{date}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `t` as the date `YYYY-MM-DD`, the seconds into that day and the milliseconds into that second.
fn civil(t: SystemTime) -> (String, u64, u32) {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a proleptic Gregorian date, with eras of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        rem,
        since.subsec_millis(),
    )
}

/// What a backend keeps while it holds a lock. Implement it to plug a new backend into
/// [`Guard`]; the crate's backends are the examples.
pub trait HeldLock: fmt::Debug + Send + Sync {
    /// Checks that the lock is still ours: the lock file still names the locked inode, the PID
    /// file still holds our record, the server session still lives. [`ErrorKind::Lost`](crate::ErrorKind::Lost)
    /// when it is not.
    fn verify(&self) -> Result<(), Error>;

    /// Releases the lock and reports failures. Dropping the value must release it too, silently.
    fn release(self: Box<Self>) -> Result<(), Error>;

    /// The descriptor whose lifetime is the lock's (abstract socket, lock file), if there is one.
    /// A process that hands the lock to a child on purpose clears its close-on-exec flag.
    #[cfg(unix)]
    fn as_fd(&self) -> Option<BorrowedFd<'_>>;

    /// The handle whose lifetime is the lock's, if there is one (none for the named mutex, which
    /// its backend's thread owns).
    #[cfg(windows)]
    fn as_handle(&self) -> Option<BorrowedHandle<'_>> {
        None
    }

    /// Whether the previous holder died holding the lock (a Windows mutex acquired as
    /// `WAIT_ABANDONED`): whatever it protected may be half done. `false` where the backend
    /// cannot tell.
    fn previous_holder_died(&self) -> bool {
        false
    }

    /// A number that grows with every acquisition of this lock name, for backends that keep one.
    fn fencing_token(&self) -> Option<u64> {
        None
    }

    /// A descriptor that becomes readable when the lock may have been lost, for backends that
    /// can lose a lock while the process lives (a PostgreSQL session cut by a server restart; a
    /// lock file deleted or replaced). A loss is a failed [`HeldLock::verify`], never the event
    /// alone; `verify` must also clear what made the descriptor readable when the lock is still
    /// held (an inotify watch also fires on a harmless `touch`).
    #[cfg(unix)]
    fn loss_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Names `pid` (start token `start_ticks`), a child this process started, in the lock's
    /// holder record as its job (see [`crate::record`]): readers then count the lock as held while
    /// either process lives. `Ok(false)` when the backend keeps no record that decides whether the
    /// lock is held (the default): there the lock lives in a descriptor the child can inherit, or
    /// in a server session.
    fn record_job(&mut self, pid: u32, start_ticks: Option<u64>) -> Result<bool, Error> {
        let _ = (pid, start_ticks);
        Ok(false)
    }
}

/// Proof that this process holds a lock. Dropping it releases the lock; it never panics.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct Guard {
    held: Box<dyn HeldLock>,
    backend: BackendKind,
    resource: String,
}

impl Guard {
    /// Wraps a backend's held state.
    pub fn new(held: Box<dyn HeldLock>, backend: BackendKind, resource: String) -> Guard {
        Guard {
            held,
            backend,
            resource,
        }
    }

    /// Releases the lock now and reports what went wrong, where dropping would stay silent.
    pub fn release(self) -> Result<(), Error> {
        self.held.release()
    }

    /// Checks that the lock is still ours; see [`HeldLock::verify`].
    ///
    /// A flock guard notices its lock file deleted or replaced (a tmp cleaner, an `rm`); a PID
    /// file guard notices its file deleted or overwritten. Either means another process may take
    /// the lock now: stop what the lock protects.
    pub fn verify(&self) -> Result<(), Error> {
        self.held.verify()
    }

    /// The backend that holds this lock.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The kernel resource held (socket name or path).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The descriptor that embodies the lock, if the backend has one. It is close-on-exec; a
    /// program that wants a child to keep the lock after it dies clears that flag on purpose.
    #[cfg(unix)]
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.held.as_fd()
    }

    /// The handle that embodies the lock, if the backend has one (Windows; the named mutex has
    /// none: a thread of its backend owns it).
    #[cfg(windows)]
    pub fn as_handle(&self) -> Option<BorrowedHandle<'_>> {
        self.held.as_handle()
    }

    /// Whether the previous holder died holding the lock: a Windows named mutex acquired as
    /// abandoned (`WAIT_ABANDONED`). Whatever it protected may be half done. `false` where the
    /// backend cannot tell (a lock released by the kernel at a holder's death looks free).
    pub fn previous_holder_died(&self) -> bool {
        self.held.previous_holder_died()
    }

    /// The fencing token of this acquisition, for backends that keep one.
    pub fn fencing_token(&self) -> Option<u64> {
        self.held.fencing_token()
    }

    /// A descriptor that becomes readable when the lock may have been lost while this process
    /// lives: PostgreSQL (the server restarted, the session was terminated or the network
    /// failed; it stays readable) and, on Linux, the file backends (the lock file was deleted or
    /// replaced: an inotify watch made on the first call, one of the user's
    /// `fs.inotify.max_user_instances`, 128 by default; when the guard goes, its instance is kept
    /// for the process's next watch rather than closed, since a close waits for a kernel grace
    /// period, milliseconds). Poll it for `POLLIN` beside your own work
    /// (never read from it), then call [`Guard::verify`]: an error is the loss, and says why;
    /// `Ok` means the event was harmless (a `touch`, a `chmod`) and the descriptor is quiet
    /// again. `None` for backends whose lock lives as long as this process, or when no watch
    /// can be had (`verify` still tells).
    #[cfg(unix)]
    pub fn loss_fd(&self) -> Option<BorrowedFd<'_>> {
        self.held.loss_fd()
    }

    /// Names `pid`, a child of this process, as the lock's job: the lock then counts as held
    /// while this process *or* the child lives, so that a child that outlives this process (it
    /// was SIGKILLed, and the OS has no parent-death signal to take the child along) never runs
    /// without the lock. Returns whether the backend recorded it.
    ///
    /// The PID-file backend rewrites its file (a new file renamed over it, so readers never see
    /// it partial) with a `job` line; that line decides liveness, since a PID file has no
    /// descriptor a child could inherit. The flock backend writes the line into its record so
    /// that holder lookups name the child once this process is gone; its lock itself lives as
    /// long as some process keeps the locked descriptor open, so hand the child that descriptor
    /// (`Guard::as_fd`, Unix) as well. Other backends record nothing (`Ok(false)`). Call it before
    /// the child runs anything that needs the lock.
    pub fn record_job(&mut self, pid: u32) -> Result<bool, Error> {
        let start_ticks = process::stat(pid).map(|s| s.start_ticks);
        self.held.record_job(pid, start_ticks)
    }
}

impl Guard {
    /// Also holds `legacy`, the same lock in the old default directory: see
    /// `Scope::legacy_default_dir`. Released after this one; its loss is not this lock's loss
    /// (the old directory may vanish at logout: that is why it was left).
    #[cfg_attr(
        not(all(unix, any(feature = "flock", feature = "pidfile"))),
        allow(dead_code)
    )]
    pub(crate) fn with_legacy(self, legacy: Guard) -> Guard {
        Guard {
            held: Box::new(WithLegacy {
                main: self.held,
                legacy: legacy.held,
            }),
            backend: self.backend,
            resource: self.resource,
        }
    }

    #[cfg(unix)]
    /// Keeps a waiter's slot in the line of waiters (see the crate's `queue` module) until the
    /// lock is released, and closes it right after: the release then wakes the one waiter behind.
    pub(crate) fn with_wait_slot(self, slot: std::os::fd::OwnedFd) -> Guard {
        Guard {
            held: Box::new(WithWaitSlot {
                main: self.held,
                _slot: slot,
            }),
            backend: self.backend,
            resource: self.resource,
        }
    }
}

/// A held lock and the slot its taker had in the line of waiters (fields drop in order: the lock
/// first, then the slot, whose hang-up wakes the next waiter).
#[cfg(unix)]
#[derive(Debug)]
struct WithWaitSlot {
    main: Box<dyn HeldLock>,
    _slot: std::os::fd::OwnedFd,
}

#[cfg(unix)]
impl HeldLock for WithWaitSlot {
    fn verify(&self) -> Result<(), Error> {
        self.main.verify()
    }

    fn release(self: Box<Self>) -> Result<(), Error> {
        let WithWaitSlot { main, _slot } = *self;
        let result = main.release();
        drop(_slot);
        result
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.main.as_fd()
    }

    fn fencing_token(&self) -> Option<u64> {
        self.main.fencing_token()
    }

    fn loss_fd(&self) -> Option<BorrowedFd<'_>> {
        self.main.loss_fd()
    }

    fn record_job(&mut self, pid: u32, start_ticks: Option<u64>) -> Result<bool, Error> {
        self.main.record_job(pid, start_ticks)
    }
}

/// A lock and its compatibility lock in the old default directory (fields drop in order: the lock
/// itself first).
#[derive(Debug)]
#[cfg_attr(
    not(all(unix, any(feature = "flock", feature = "pidfile"))),
    allow(dead_code)
)]
struct WithLegacy {
    main: Box<dyn HeldLock>,
    legacy: Box<dyn HeldLock>,
}

impl HeldLock for WithLegacy {
    fn verify(&self) -> Result<(), Error> {
        self.main.verify()
    }

    fn release(self: Box<Self>) -> Result<(), Error> {
        let WithLegacy { main, legacy } = *self;
        let result = main.release();
        let _ = legacy.release();
        result
    }

    #[cfg(unix)]
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.main.as_fd()
    }

    #[cfg(windows)]
    fn as_handle(&self) -> Option<BorrowedHandle<'_>> {
        self.main.as_handle()
    }

    fn previous_holder_died(&self) -> bool {
        self.main.previous_holder_died()
    }

    fn fencing_token(&self) -> Option<u64> {
        self.main.fencing_token()
    }

    #[cfg(unix)]
    fn loss_fd(&self) -> Option<BorrowedFd<'_>> {
        self.main.loss_fd()
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("backend", &self.backend)
            .field("resource", &self.resource)
            .field("held", &self.held)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_595_401);
        assert_eq!(format_utc(t), "2026-11-25 08:30:01 UTC");
        assert_eq!(
            format_utc(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00 UTC"
        );
    }

    #[test]
    fn lazy_holder_reads_once_and_only_when_asked() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = reads.clone();
        let held = LazyHolder::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Holder {
                pid: Some(4242),
                ..Holder::unidentified()
            }
        });
        assert_eq!(
            reads.load(Ordering::SeqCst),
            0,
            "read before it was asked for"
        );
        assert_eq!(held.pid, Some(4242));
        assert_eq!(held.to_string(), "pid 4242");
        assert_eq!(held.into_holder().pid, Some(4242));
        assert_eq!(reads.load(Ordering::SeqCst), 1, "read more than once");
    }

    #[test]
    fn lock_is_object_safe() {
        fn takes(_: Option<&dyn Lock>) {}
        takes(None);
    }
}
