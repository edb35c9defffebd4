//! PID-file backend: `<dir>/<name>.pid` holds the holder's [record] — pid, start
//! time, boot id, PID namespace, uid.
//!
//! - **Exclusion:** the file is written completely under no name and then linked into place with
//!   `link(2)`, which fails with `EEXIST` when the file exists: `O_TMPFILE` on Linux; a named
//!   temporary file (`O_EXCL`) in the same directory elsewhere, on filesystems without
//!   `O_TMPFILE`, and in the portable build. Readers never see a partial file.
//! - **Liveness:** the recorded process is dead when it belongs to another boot, `kill(pid, 0)`
//!   says `ESRCH`, it is a zombie, or its pid now belongs to a process with another start time.
//!   `EPERM` means alive (another user's process). Unknown is never dead: a record from another
//!   PID namespace cannot be judged here, and a process `kill` says exists but `/proc` does not
//!   show (`hidepid=2`, `ProtectProc=invisible`, another user's zombie there) cannot be checked;
//!   both count as held ([`HolderKind::OtherPidNamespace`](crate::HolderKind::OtherPidNamespace),
//!   [`HolderKind::Unidentified`](crate::HolderKind::Unidentified)), and such a stale file stays
//!   until someone who can see its holder (root on the host) removes it. Start times are compared
//!   on the initial time namespace's clock, so holders in other time namespaces are judged right;
//!   the holder describes itself through `/proc/self`, right in a PID namespace without its own
//!   `/proc`. A record that names a job ([`Guard::record_job`]) is held while the holder or the
//!   job lives; the file is then rewritten with the `job` line, as a new file renamed over the
//!   old one.
//! - **Stale takeover:** a contender that finds a dead holder tries `flock(2)` on
//!   `<name>.pid-takeover` (never deleted; the kernel frees it if the taker dies; never waited
//!   on: held by another taker or by any process that keeps it, the answer is "held", so a try
//!   never blocks and a wait keeps its deadline), checks that the
//!   path still names the very inode it judged stale (it keeps that file open, so the inode number
//!   cannot be reused), unlinks it and links its own. Two takers cannot both win; a taker killed
//!   half-way leaves either the stale file (judged stale again) or no file (free).
//! - **Release:** the guard unlinks the file if it is still its own. A holder killed by SIGKILL
//!   leaves its file; the next acquire finds it stale.
//! - **Waiting:** waiters queue (Linux, Android; see [`Lock::acquire_timeout`]); the head of the
//!   line watches the file (its unlink) and waits for the holder's exit, where the OS has them
//!   (inotify and pidfd on Linux, kqueue on macOS and the BSDs), else a bounded backoff. With the
//!   user's inotify instances all in use, the head blocks in `flock(LOCK_SH)` on the PID file
//!   (on a thread), which the holder keeps `flock`ed until it closes the file after its unlink
//!   (Linux; the lock excludes nobody, the link does). An older onlyone's holder keeps no such
//!   lock: the head then learns of its release only by its exit or the backoff.
//! - **Scope:** the directory, and the PID namespace for judging a holder: across PID namespaces
//!   exclusion holds but a dead holder's file stays. A PID file cannot be handed to a child: it
//!   names one process. `Lock::holder` pins a live recorded holder (a pidfd, checked against the
//!   record's start time and the file) as [`Holder::process`](crate::Holder::process).
//!
//! Files that are not onlyone records (empty, garbage, huge, pid 0 or negative, another program's
//! PID file) are reported as [`ErrorKind::Corrupt`] and never deleted or overwritten; symbolic
//! links are refused.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use crate::backend::{BackendKind, file_wake_up, open_error, prepare_dir, wait_loop, watch_file};
use crate::error::{Error, ErrorKind, sys};
use crate::lock::{Acquire, Guard, HeldLock, Holder, LazyHolder, Lock};
use crate::name::{LockDir, LockName, Scope};
use crate::os::{Liveness, ProcessIdentity};
use crate::record::{self, Record};

/// A lock held by a PID file. See the [module docs](self).
#[derive(Debug)]
pub struct PidFileLock {
    name: LockName,
    scope: Scope,
    dir: LockDir,
    path: PathBuf,
    takeover_path: PathBuf,
    /// Temporary files are `.<name>.pid.<pid>.<n>` beside the PID file: this is `.<name>.pid.`
    /// (computed once: formatting it was half the instructions of an acquire + release).
    temp_prefix: String,
    dir_ready: AtomicBool,
    /// The same lock in the old default directory, taken too (user scope's default only).
    legacy: Option<Box<PidFileLock>>,
}

/// What one look at the PID file found.
enum Attempt {
    Acquired(Guard),
    /// Held: who holds it (read when asked for), and what a waiter watches (the live recorded
    /// process's pid and start time, nothing else read).
    Held(LazyHolder, Holder),
    /// Something changed under us; look again.
    Retry,
}

impl PidFileLock {
    /// The lock `name` in `scope`, with its file in the scope's default directory.
    pub fn new(name: LockName, scope: Scope) -> PidFileLock {
        Self::with_dir(name, scope, LockDir::new(scope, None))
    }

    /// The lock `name` with its file in `dir`, which must exist.
    pub fn in_dir(name: LockName, dir: impl AsRef<Path>) -> PidFileLock {
        Self::with_dir(
            name,
            Scope::User,
            LockDir::new(Scope::User, Some(dir.as_ref())),
        )
    }

    pub(crate) fn with_dir(name: LockName, scope: Scope, dir: LockDir) -> PidFileLock {
        let legacy = dir.legacy.clone().map(|path| {
            let old = LockDir {
                path,
                create: true,
                legacy: None,
            };
            Box::new(Self::with_dir(name.clone(), scope, old))
        });
        let path = dir.path.join(name.file_name("pid"));
        let takeover_path = dir.path.join(name.file_name("pid-takeover"));
        let temp_prefix = format!(".{}.", name.file_name("pid"));
        PidFileLock {
            temp_prefix,
            name,
            scope,
            dir,
            path,
            takeover_path,
            dir_ready: AtomicBool::new(false),
            legacy,
        }
    }

    /// The PID file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The administrator's way out: removes the PID file whatever its holder's liveness, and
    /// returns the record it held (`None` when there was no file).
    ///
    /// A holder that cannot be judged from here - recorded in another PID namespace, invisible
    /// under `hidepid=2`, an unreapable zombie of another user - keeps the lock for ever (unknown
    /// is never dead). Once you know by other means that it is gone, this removes its file. It
    /// does not check liveness: removing the file of a live holder lets a second one in. Like a
    /// takeover it holds the takeover guard (an error if a takeover is under way), removes the
    /// file only if the path still names the file it read, and never touches a file that is not
    /// an onlyone record ([`ErrorKind::Corrupt`]). In the sticky system directory only root or
    /// the file's owner may remove it.
    pub fn force_remove(&self) -> Result<Option<ProcessIdentity>, Error> {
        let Some(file) = self.open_existing()? else {
            return Ok(None);
        };
        let id = self.read_record(&file)?;
        let meta = file.metadata().map_err(|e| self.io("cannot stat", e))?;
        let guard = self.open_guard()?;
        let locked = crate::os::flock_try_exclusive(&guard).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot lock {}", self.takeover_path.display()),
                e,
            )
        })?;
        if !locked {
            return Err(Error::msg(
                ErrorKind::Io,
                format!("cannot remove PID file {}", self.path.display()),
                "a takeover is under way (its guard is held); look again",
            ));
        }
        let same = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if !same {
            return Ok(None);
        }
        nix::unistd::unlink(&self.path).map_err(|e| {
            sys(
                ErrorKind::LockDir,
                format!("cannot remove PID file {}", self.path.display()),
                e,
            )
        })?;
        Ok(Some(id.holder))
    }

    fn ensure_dir(&self) -> Result<(), Error> {
        if !self.dir_ready.load(Ordering::Relaxed) {
            prepare_dir(&self.dir, self.scope)?;
            self.dir_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn mode(&self) -> u32 {
        match self.scope {
            Scope::User => 0o600,
            Scope::System => 0o644,
        }
    }

    /// Opens the existing PID file for reading; `None` when there is none.
    fn open_existing(&self) -> Result<Option<File>, Error> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        match open(&self.path, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(open_error(&self.path, e)),
        }
    }

    /// Reads and judges an existing PID file.
    fn read_record(&self, file: &File) -> Result<Record, Error> {
        let meta = file.metadata().map_err(|e| self.io("cannot stat", e))?;
        if !meta.file_type().is_file() {
            return Err(Error::msg(
                ErrorKind::Corrupt,
                format!("PID file {}", self.path.display()),
                "is not a regular file; onlyone leaves it alone",
            ));
        }
        let mut buf = Vec::with_capacity(512);
        file.take(record::MAX_RECORD_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.io("cannot read", e))?;
        let len = meta.len().max(buf.len() as u64);
        let parsed = if len > record::MAX_RECORD_LEN as u64 {
            Err(format!(
                "the file is {len} bytes long, more than a record can be"
            ))
        } else {
            record::parse_record(&buf)
        };
        parsed.map_err(|why| {
            Error::msg(
                ErrorKind::Corrupt,
                format!("PID file {} is not usable", self.path.display()),
                format!(
                    "{why}; onlyone did not write it and leaves it alone (remove it if no job is running)"
                ),
            )
        })
    }

    /// Writes our record under no name and links it to the PID file's path. `Ok(None)` when a
    /// file is already there.
    fn create(&self) -> Result<Option<Guard>, Error> {
        let (pid, text) = record::current();
        let file = match self.create_linked(text.as_bytes())? {
            Some(f) => f,
            None => return Ok(None),
        };
        lock_for_waiters(&file);
        let meta = file.metadata().map_err(|e| self.io("cannot stat", e))?;
        let held = PidFileHeld {
            path: self.path.clone(),
            dir: self.dir.path.clone(),
            temp_prefix: self.temp_prefix.clone(),
            mode: self.mode(),
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            record: text.into_owned(),
            owner: pid,
            released: false,
            loss: std::sync::OnceLock::new(),
        };
        Ok(Some(Guard::new(
            Box::new(held),
            BackendKind::PidFile,
            self.resource(),
        )))
    }

    fn create_linked(&self, content: &[u8]) -> Result<Option<File>, Error> {
        let prefix = &self.temp_prefix;
        crate::os::create_linked(&self.dir.path, &self.path, prefix, self.mode(), content).map_err(
            |e| match e.raw_os_error() {
                Some(errno) => open_error(&self.path, Errno::from_raw(errno)),
                None => self.io("cannot create", e),
            },
        )
    }

    fn attempt_once(&self) -> Result<Attempt, Error> {
        self.ensure_dir()?;
        let Some(existing) = self.open_existing()? else {
            return Ok(match self.create()? {
                Some(g) => Attempt::Acquired(g),
                None => Attempt::Retry,
            });
        };
        let record = self.read_record(&existing)?;
        match record.liveness() {
            (Liveness::Alive, id) => {
                let wake = Holder {
                    pid: Some(id.pid),
                    start_ticks: id.start_ticks,
                    ..Holder::unidentified()
                };
                let holder = LazyHolder::new(move || crate::backend::live_record_holder(&id));
                Ok(Attempt::Held(holder, wake))
            }
            (Liveness::Unknown(_), id) => {
                let holder = crate::backend::unknown_record_holder(&id);
                Ok(Attempt::Held(holder.clone().into(), holder))
            }
            (Liveness::Dead(_), _) => self.take_over(&existing),
        }
    }

    /// Replaces a PID file whose holder is dead; see the module docs for why this is safe.
    fn take_over(&self, stale: &File) -> Result<Attempt, Error> {
        let stale_meta = stale.metadata().map_err(|e| self.io("cannot stat", e))?;
        let guard = self.open_guard()?;
        // Never block on the guard: a taker holds it for microseconds, but any process that can
        // open the file can hold it for ever (a stopped taker, a stranger). A try answers "held"
        // at once, a wait sleeps on its wake-up and keeps its deadline.
        let locked = crate::os::flock_try_exclusive(&guard).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot lock {}", self.takeover_path.display()),
                e,
            )
        })?;
        if !locked {
            let holder = guard_holder(&guard);
            return Ok(Attempt::Held(holder.clone().into(), holder));
        }
        // A guard deleted under its holder (a tmp cleaner) lets a second taker lock a new file of
        // the same name: the guard counts only while its path names the inode we locked, checked
        // last thing before the unlink (a window of microseconds remains: see the README).
        let guard_meta = guard.metadata().map_err(|e| self.io("cannot stat", e))?;
        let guard_named = || {
            std::fs::symlink_metadata(&self.takeover_path)
                .is_ok_and(|m| m.dev() == guard_meta.dev() && m.ino() == guard_meta.ino())
        };
        let still_stale = || {
            std::fs::symlink_metadata(&self.path)
                .is_ok_and(|m| m.dev() == stale_meta.dev() && m.ino() == stale_meta.ino())
        };
        if !still_stale() || !guard_named() {
            return Ok(Attempt::Retry);
        }
        match nix::unistd::unlink(&self.path) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(sys(
                    ErrorKind::LockDir,
                    format!("cannot remove stale PID file {}", self.path.display()),
                    e,
                ));
            }
        }
        // A fresh acquirer may link between our unlink and link: then it holds the lock.
        Ok(match self.create()? {
            Some(g) => Attempt::Acquired(g),
            None => Attempt::Retry,
        })
    }

    /// Opens (creating) `NAME.pid-takeover`: read-write where we may (NFS emulates flock with
    /// `fcntl` locks, which need it), else read-only, which is enough for `flock(2)` on a local
    /// filesystem - so that every user of a system-scope lock can take the guard of a file
    /// another user created (mode 0644).
    fn open_guard(&self) -> Result<File, Error> {
        let mode = Mode::from_bits_truncate(self.mode() as nix::sys::stat::mode_t);
        let flags = OFlag::O_CREAT | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        let guard = match open(&self.takeover_path, flags | OFlag::O_RDWR, mode) {
            Ok(fd) => File::from(fd),
            Err(Errno::EACCES) => open(&self.takeover_path, flags | OFlag::O_RDONLY, mode)
                .map(File::from)
                .map_err(|e| open_error(&self.takeover_path, e))?,
            Err(e) => return Err(open_error(&self.takeover_path, e)),
        };
        let meta = guard.metadata().map_err(|e| self.io("cannot stat", e))?;
        if let Some(e) =
            crate::backend::untrusted_file(&self.dir, self.scope, &self.takeover_path, &meta)
        {
            return Err(e);
        }
        Ok(guard)
    }

    fn io(&self, what: &str, e: io::Error) -> Error {
        Error::new(
            ErrorKind::Io,
            format!("{what} PID file {}", self.path.display()),
            e,
        )
    }
}

impl PidFileLock {
    fn own_try_acquire(&self) -> Result<Acquire, Error> {
        loop {
            match self.attempt_once()? {
                Attempt::Acquired(g) => return Ok(Acquire::Acquired(g)),
                Attempt::Held(h, _) => return Ok(Acquire::Held(h)),
                Attempt::Retry => continue,
            }
        }
    }

    fn own_attempt(&self) -> Result<crate::Attempt, Error> {
        loop {
            // Watch before trying, so that a release between the try and the wait is not missed.
            let watch = watch_file(&self.path);
            match self.attempt_once()? {
                Attempt::Acquired(g) => return Ok(crate::Attempt::Acquired(g)),
                Attempt::Retry => continue,
                Attempt::Held(h, of) => {
                    let no_watch = watch.is_none();
                    let wake = file_wake_up(watch, &of);
                    // No inotify instance to be had: the holder's flock on its PID file (see
                    // `lock_for_waiters`) is released when it lets go or dies.
                    let wake = if no_watch && !wake.is_now() {
                        match crate::backend::release_watch(&self.path, true) {
                            Some(w) => {
                                let mut sources = wake.into_sources();
                                sources.push(w);
                                crate::WakeUp::on_event(sources)
                            }
                            None => wake,
                        }
                    } else {
                        wake
                    };
                    return Ok(crate::Attempt::Held(h, wake));
                }
            }
        }
    }

    fn own_holder(&self) -> Result<Option<Holder>, Error> {
        let Some(file) = self.open_existing()? else {
            return Ok(None);
        };
        let record = self.read_record(&file)?;
        Ok(match record.liveness() {
            (Liveness::Alive, id) => {
                // Pinned, then checked against the record (start time) and the file (still this
                // record): then the pinned process is the holder (`Holder::process`). For a job
                // named in the record (its holder gone), the job is the one pinned and checked.
                let mut holder = crate::backend::live_record_holder(&id);
                let pinned = crate::HolderProcess::pin(id.pid);
                let proven = id.start_ticks.is_some()
                    && crate::os::is_same_process(id.pid, id.start_ticks)
                    && self
                        .open_existing()
                        .ok()
                        .flatten()
                        .and_then(|f| self.read_record(&f).ok())
                        .is_some_and(|now| now == record);
                if proven {
                    holder.process = pinned;
                }
                Some(holder)
            }
            (Liveness::Unknown(_), id) => Some(crate::backend::unknown_record_holder(&id)),
            (Liveness::Dead(_), _) => None,
        })
    }
}

impl Lock for PidFileLock {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        crate::backend::paired_try(
            self.own_try_acquire()?,
            self.legacy.as_deref().map(|l| l as &dyn Lock),
        )
    }

    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        wait_loop(self, timeout)
    }

    fn attempt(&self) -> Result<crate::Attempt, Error> {
        crate::backend::paired_attempt(
            self.own_attempt()?,
            self.legacy.as_deref().map(|l| l as &dyn Lock),
        )
    }

    fn holder(&self) -> Result<Option<Holder>, Error> {
        crate::backend::paired_holder(
            self.own_holder()?,
            self.legacy.as_deref().map(|l| l as &dyn Lock),
        )
    }

    fn backend(&self) -> BackendKind {
        BackendKind::PidFile
    }
    fn name(&self) -> &LockName {
        &self.name
    }

    fn resource(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

/// Takes `flock(LOCK_EX)` on our new PID file (flock(2); never contended: nobody else has this
/// inode yet), held until the file is closed after its unlink, or the holder dies. It excludes
/// nobody (the link decides who holds the lock); it is a release event without inotify: a waiter
/// whose user has no inotify instance left blocks in `flock(LOCK_SH)` on the file (see
/// `backend::release_watch`). Linux only, where waiters queue; a failure only costs such waiters
/// their event (they back off).
fn lock_for_waiters(file: &File) {
    if cfg!(all(
        any(target_os = "linux", target_os = "android"),
        not(onlyone_portable)
    )) {
        let _ = crate::os::flock_try_exclusive(file);
    }
}

/// Our PID file, kept open so that its inode number stays ours while we check it.
#[derive(Debug)]
struct PidFileHeld {
    path: PathBuf,
    /// The directory and the temporary names and mode, to rewrite the file with a job.
    dir: PathBuf,
    temp_prefix: String,
    mode: u32,
    /// Held open so that the inode number cannot be reused while we compare against it.
    file: File,
    dev: u64,
    ino: u64,
    record: String,
    owner: u32,
    released: bool,
    /// The loss watch, made when first asked for (`loss_fd`).
    loss: std::sync::OnceLock<Option<crate::os::LossWatch>>,
}

impl PidFileHeld {
    fn still_ours(&self) -> Result<(), Error> {
        let lost = |why: &str| {
            Error::msg(
                ErrorKind::Lost,
                format!("PID file {}", self.path.display()),
                why.to_owned(),
            )
        };
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {}
            Ok(_) => return Err(lost("was replaced by another file")),
            Err(_) => return Err(lost("was deleted")),
        }
        let mut now = Vec::new();
        std::fs::File::open(&self.path)
            .and_then(|f| {
                f.take(record::MAX_RECORD_LEN as u64 + 1)
                    .read_to_end(&mut now)
            })
            .map_err(|e| self.io_lost(e))?;
        if now != self.record.as_bytes() {
            return Err(lost("was overwritten with another record"));
        }
        Ok(())
    }

    fn io_lost(&self, e: io::Error) -> Error {
        Error::new(
            ErrorKind::Lost,
            format!("cannot read back PID file {}", self.path.display()),
            e,
        )
    }

    fn remove(&mut self) -> Result<(), Error> {
        if self.released || std::process::id() != self.owner {
            // A forked child's copy of the guard: the file belongs to the parent.
            self.released = true;
            return Ok(());
        }
        self.released = true;
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if !ours {
            return Err(Error::msg(
                ErrorKind::Lost,
                format!("PID file {}", self.path.display()),
                "was deleted or replaced while held; the file there now is left alone",
            ));
        }
        nix::unistd::unlink(&self.path).map_err(|e| {
            sys(
                ErrorKind::Io,
                format!("cannot remove PID file {}", self.path.display()),
                e,
            )
        })
    }
}

impl HeldLock for PidFileHeld {
    fn verify(&self) -> Result<(), Error> {
        if let Some(Some(watch)) = self.loss.get() {
            crate::os::drain_loss_watch(watch);
        }
        self.still_ours()
    }

    fn loss_fd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.loss
            .get_or_init(|| crate::os::loss_watch(&self.file))
            .as_ref()
            .map(|w| w.as_fd())
    }

    fn release(mut self: Box<Self>) -> Result<(), Error> {
        self.remove()
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        // The open file is not the lock: handing it to a child would hand over nothing.
        None
    }

    /// Rewrites the PID file with a `job` line: a new file renamed over ours, so that readers
    /// see the old record or the new one, never a partial one, and the path is never empty (a
    /// contender's link(2) keeps failing). Only a file that is still ours is replaced.
    fn record_job(&mut self, pid: u32, start_ticks: Option<u64>) -> Result<bool, Error> {
        if std::process::id() != self.owner {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("PID file {}", self.path.display()),
                "belongs to the process that created it; a forked copy of its guard cannot name a job",
            ));
        }
        self.still_ours()?;
        let record =
            Record::new(ProcessIdentity::current()).with_job(record::Job { pid, start_ticks });
        let text = record::format_record(&record);
        let file = crate::os::replace_file(
            &self.dir,
            &self.path,
            &self.temp_prefix,
            self.mode,
            text.as_bytes(),
        )
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "cannot write job {pid} into PID file {}",
                    self.path.display()
                ),
                e,
            )
        })?;
        let meta = file.metadata().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot stat PID file {}", self.path.display()),
                e,
            )
        })?;
        lock_for_waiters(&file);
        self.file = file;
        // The loss watch follows the new file (made again when next asked for).
        self.loss = std::sync::OnceLock::new();
        self.dev = meta.dev();
        self.ino = meta.ino();
        self.record = text;
        Ok(true)
    }
}

impl Drop for PidFileHeld {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// Who holds the takeover guard: another contender in the middle of a takeover, or a process
/// that keeps it (the lock table names it where there is one).
fn guard_holder(guard: &File) -> Holder {
    #[cfg(feature = "flock")]
    if let Ok(meta) = guard.metadata() {
        if let Some(Some(pid)) = crate::os::flock_table_holder(meta.dev(), meta.ino()) {
            return Holder::from_pid(pid, None, None);
        }
    }
    let _ = guard;
    Holder::unidentified()
}
