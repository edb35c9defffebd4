//! `flock(2)` backend: an exclusive lock on `<dir>/<name>.lock`.
//!
//! - **Exclusion:** `flock(LOCK_EX | LOCK_NB)` on the file, opened `O_RDWR | O_CREAT | O_CLOEXEC |
//!   O_NOFOLLOW` (read-write so that NFS, which emulates flock with `fcntl` locks, accepts it;
//!   read-only when another user's file refuses writing - enough on a local filesystem, and the
//!   holder then writes no record).
//!   After locking, the path must still name the locked inode (`fstat` against `lstat`): a holder
//!   may have replaced the file, and a lock on a deleted inode excludes nobody. On a mismatch the
//!   attempt starts over.
//! - **Release:** the kernel drops the lock when the last descriptor of the open file closes, on
//!   SIGKILL too. The guard unlocks before it closes (so waiters never wake too early). Lock files
//!   are never deleted: deleting one is what lets two processes hold "the same" lock.
//! - **Holder identity:** the holder writes a [record] into the file; readers
//!   check it against the live process and otherwise ask the OS's lock table (Linux `/proc/locks`,
//!   which also names holders that are not onlyone: `flock(1)` users of the same path). The table
//!   lists only lockers visible from the reader's PID namespace, so `holder()` never says "free"
//!   without a shared-lock probe (which cannot disturb an exclusive holder): held but invisible
//!   is reported as in another PID namespace (from the record) or unidentified. A locker that has
//!   exited (a child it handed the descriptor to holds the lock) is not named. `holder()` pins a
//!   named process whose `/proc/PID/fdinfo` shows the lock as [`Holder::process`](crate::Holder::process).
//!   which also names holders that are not onlyone: `flock(1)` users of the same path). A holder
//!   that handed its descriptor to a child names it in the record ([`Guard::record_job`]), so that
//!   readers name the child once the holder is gone.
//! - **Waiting:** waiters queue (Linux, Android; see [`Lock::acquire_timeout`]); the head of the
//!   line watches the file and waits for the holder's exit, where the OS has them (inotify and
//!   pidfd on Linux, kqueue on macOS and the BSDs), else a bounded backoff. An onlyone holder
//!   touches the file when it unlocks (`futimens`: the waiters of older onlyone versions still
//!   sleep on inotify); a holder that is not onlyone (`flock -u`) gives no such event, and a user
//!   whose inotify instances are all in use gets no watch: on Linux the head then waits through
//!   a thread blocked in `flock(LOCK_SH)`, elsewhere it also retries with the backoff.
//! - **Loss:** deleting or replacing the file breaks exclusion for the next opener; the guard's
//!   `verify()` notices, and on Linux its `loss_fd()` (an inotify watch on the held inode, made on
//!   request) becomes readable when it may have happened.
//! - **Scope:** the inode. Works across PID and network namespaces that share the filesystem;
//!   not across two overlay mounts of one lower file; on NFS only as far as the server's locks go.
//!   Interoperates with `flock -n PATH` users of the same path.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl, open};
use nix::sys::stat::Mode;

use crate::backend::{BackendKind, file_wake_up, open_error, prepare_dir, wait_loop, watch_file};
use crate::error::{Error, ErrorKind, sys};
use crate::lock::{Acquire, Attempt, Guard, HeldLock, Holder, LazyHolder, Lock, WakeUp};
use crate::name::{LockDir, LockName, Scope};
use crate::os::{self, Liveness, ProcessIdentity};
use crate::record;

/// A lock held with `flock(2)` on a lock file. See the [module docs](self).
#[derive(Debug)]
pub struct FlockLock {
    name: LockName,
    scope: Scope,
    dir: LockDir,
    path: PathBuf,
    dir_ready: AtomicBool,
    /// The same lock in the old default directory, taken too (user scope's default only).
    legacy: Option<Box<FlockLock>>,
}

impl FlockLock {
    /// The lock `name` in `scope`, with its file in the scope's default directory.
    pub fn new(name: LockName, scope: Scope) -> FlockLock {
        Self::with_dir(name, scope, LockDir::new(scope, None))
    }

    /// The lock `name` with its file in `dir`, which must exist.
    pub fn in_dir(name: LockName, dir: impl AsRef<Path>) -> FlockLock {
        Self::with_dir(
            name,
            Scope::User,
            LockDir::new(Scope::User, Some(dir.as_ref())),
        )
    }

    pub(crate) fn with_dir(name: LockName, scope: Scope, dir: LockDir) -> FlockLock {
        let legacy = dir.legacy.clone().map(|path| {
            let old = LockDir {
                path,
                create: true,
                legacy: None,
            };
            Box::new(Self::with_dir(name.clone(), scope, old))
        });
        let path = dir.path.join(name.file_name("lock"));
        FlockLock {
            name,
            scope,
            dir,
            path,
            dir_ready: AtomicBool::new(false),
            legacy,
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (creating) the lock file; with whether it is open for writing (another user's
    /// file is opened read-only).
    fn open(&self) -> Result<(File, bool), Error> {
        if !self.dir_ready.load(Ordering::Relaxed) {
            prepare_dir(&self.dir, self.scope)?;
            self.dir_ready.store(true, Ordering::Relaxed);
        }
        // O_NONBLOCK: a FIFO planted at the path must not block the open.
        let flags = OFlag::O_RDWR
            | OFlag::O_CREAT
            | OFlag::O_CLOEXEC
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY;
        let mode = match self.scope {
            Scope::User => Mode::from_bits_truncate(0o600),
            Scope::System => Mode::from_bits_truncate(0o644),
        };
        let file = match open(&self.path, flags, mode) {
            Ok(fd) => (File::from(fd), true),
            Err(Errno::ENOENT) => {
                // The directory vanished since we checked it.
                self.dir_ready.store(false, Ordering::Relaxed);
                prepare_dir(&self.dir, self.scope)?;
                open(&self.path, flags, mode)
                    .map(|fd| (File::from(fd), true))
                    .map_err(|e| open_error(&self.path, e))?
            }
            // Another user's lock file (mode 0644 in system scope): flock(2) needs no write
            // access on a local filesystem, only the record is not written.
            Err(Errno::EACCES) => {
                let read_only = (flags - OFlag::O_RDWR - OFlag::O_CREAT) | OFlag::O_RDONLY;
                open(&self.path, read_only, Mode::empty())
                    .map(|fd| (File::from(fd), false))
                    .map_err(|_| open_error(&self.path, Errno::EACCES))?
            }
            Err(Errno::EISDIR) => return Err(not_a_file(&self.path)),
            Err(e) => return Err(open_error(&self.path, e)),
        };
        Ok(file)
    }

    /// One try: the guard, or the open lock file another process holds a lock on.
    ///
    /// The failed try is `open` + `flock` and nothing else (the holder is read from the file
    /// when asked for: [`lazy_holder`]). A file that is not a regular one, or that root must not
    /// use ([`untrusted_file`](crate::backend::untrusted_file)), is refused once it is locked,
    /// before anything is written: the lock is dropped with the descriptor.
    fn try_lock(&self) -> Result<Result<Guard, File>, Error> {
        loop {
            let (file, writable) = self.open()?;
            match os::flock_try_exclusive(&file) {
                Ok(true) => {}
                Ok(false) => return Ok(Err(file)),
                Err(e) => return Err(self.io("cannot flock", e)),
            }
            let meta = file.metadata().map_err(|e| self.io("cannot stat", e))?;
            if !meta.file_type().is_file() {
                return Err(not_a_file(&self.path));
            }
            if let Some(e) =
                crate::backend::untrusted_file(&self.dir, self.scope, &self.path, &meta)
            {
                return Err(e);
            }
            // The path may have been replaced (or the file deleted) between open and flock.
            if !same_inode(&self.path, &meta) {
                continue;
            }
            let (pid, text) = record::current();
            // Usually empty: holders erase their record on release; a killed one leaves it.
            // Anything else is not ours to overwrite (a flock(1) user's content, a hard link
            // planted at the path): the lock works without a record.
            let wrote_record =
                writable && meta.nlink() == 1 && (meta.len() == 0 || holds_record(&file));
            if wrote_record {
                if meta.len() > text.len() as u64 {
                    file.set_len(text.len() as u64)
                        .map_err(|e| self.io("cannot truncate", e))?;
                }
                file.write_all_at(text.as_bytes(), 0)
                    .map_err(|e| self.io("cannot write the holder record to", e))?;
            }
            let held = FlockHeld {
                owner: pid,
                wrote_record,
                file: Some(file),
                path: self.path.clone(),
                dev: meta.dev(),
                ino: meta.ino(),
                loss: std::sync::OnceLock::new(),
                lent: AtomicBool::new(false),
            };
            return Ok(Ok(Guard::new(
                Box::new(held),
                BackendKind::Flock,
                self.resource(),
            )));
        }
    }

    fn io(&self, what: &str, e: io::Error) -> Error {
        Error::new(
            ErrorKind::Io,
            format!("{what} lock file {}", self.path.display()),
            e,
        )
    }
}

impl FlockLock {
    fn own_try_acquire(&self) -> Result<Acquire, Error> {
        Ok(match self.try_lock()? {
            Ok(g) => Acquire::Acquired(g),
            Err(file) => Acquire::Held(lazy_holder(file)),
        })
    }

    fn own_attempt(&self) -> Result<Attempt, Error> {
        // Watch before trying, so that a release between the try and the wait is not missed.
        let watch = watch_file(&self.path);
        Ok(match self.try_lock()? {
            Ok(g) => Attempt::Acquired(g),
            Err(file) => {
                // What the wake-up needs: the live process the record names (its pid and start
                // time, no command line). Without one (a `flock(1)` holder, a dead recorded
                // holder) the lock table names the holder, as a lookup would.
                let live = read_record(&file)
                    .map(|r| r.liveness())
                    .filter(|(l, _)| *l == Liveness::Alive)
                    .map(|(_, id)| id);
                // An onlyone holder touches the file when it unlocks (inotify wakes us); another
                // program (`flock -u`, a daemon calling flock(LOCK_UN)) may unlock and live on,
                // giving no inotify event at all; and a user whose inotify instances are all in
                // use gets no watch. Then the kernel's own wait tells of the release (see
                // `release_watch`), and where that cannot be had either, a backoff.
                let evented = watch.is_some() && live.is_some();
                let wake = match &live {
                    Some(id) => file_wake_up(
                        watch,
                        &Holder {
                            pid: Some(id.pid),
                            start_ticks: id.start_ticks,
                            ..Holder::unidentified()
                        },
                    ),
                    None => file_wake_up(watch, &read_holder(&file)),
                };
                let wake = if wake.is_now() || (evented && !wake.needs_backoff()) {
                    wake
                } else {
                    match crate::backend::release_watch(&self.path, false) {
                        Some(w) => {
                            let mut sources = wake.into_sources();
                            sources.push(w);
                            WakeUp::on_event(sources)
                        }
                        None => WakeUp::backoff(wake.into_sources()),
                    }
                };
                Attempt::Held(lazy_holder(file), wake)
            }
        })
    }

    fn own_holder(&self) -> Result<Option<Holder>, Error> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        let file = match open(&self.path, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(open_error(&self.path, e)),
        };
        let meta = file.metadata().map_err(|e| self.io("cannot stat", e))?;
        if !meta.file_type().is_file() {
            return Err(not_a_file(&self.path));
        }
        // The kernel's locks are the truth; the record only names. A live process named by the
        // record is asked first (its /proc/PID/fdinfo lists the locks it holds), because
        // /proc/locks is read a page per read(2) and a line can slip between two pages while
        // other locks come and go. A process is pinned (a pidfd) before it is asked, so that a
        // "yes" proves the pinned process holds the lock (`Holder::process`).
        let (dev, ino) = (meta.dev(), meta.ino());
        let id = read_record(&file);
        if let Some(mut holder) = id.as_ref().and_then(alive_holder) {
            let pid = holder.pid.unwrap_or(0);
            let pinned = crate::HolderProcess::pin(pid);
            if os::holds_flock(pid, dev, ino) == Some(true) {
                holder.process = pinned;
                return Ok(Some(holder));
            }
        }
        // No live recorded holder: most often a free lock (lock files stay after release, and
        // `list` asks about every one). One probe answers that, before the whole lock table is
        // read (a `list` of F free files beside H held locks read F tables of H lines). A
        // shared lock taken and dropped at once does not disturb an exclusive holder.
        match os::flock_shared_probe(&file) {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(e) => return Err(self.io("cannot flock", e)),
        }
        if let Some(Some(pid)) = os::flock_table_holder(dev, ino) {
            let pinned = crate::HolderProcess::pin(pid);
            match os::holds_flock(pid, dev, ino) {
                Some(true) => {
                    let mut holder = Holder::from_pid(pid, None, None);
                    holder.process = pinned;
                    return Ok(Some(holder));
                }
                // The process that took the lock is gone (a child it handed the descriptor to
                // holds it): its pid names nobody, or a stranger.
                None if process_gone(pid) => return Ok(Some(Holder::unidentified())),
                // Its descriptors cannot be read (another user's process): named, not proven.
                None => return Ok(Some(Holder::from_pid(pid, None, None))),
                // The process that took the lock has exited and one it handed the descriptor to
                // holds it; the pid may be another process's now: held, by whom is unknown.
                Some(false) => {}
            }
        }
        // Held (the probe said so) and not in the lock table: by a process this PID namespace
        // cannot see (the table lists only visible lockers), or there is no table at all.
        Ok(Some(invisible_holder(id.as_ref())))
    }
}

impl Lock for FlockLock {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        crate::backend::paired_try(
            self.own_try_acquire()?,
            self.legacy.as_deref().map(|l| l as &dyn Lock),
        )
    }

    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        wait_loop(self, timeout)
    }

    fn attempt(&self) -> Result<Attempt, Error> {
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
        BackendKind::Flock
    }
    fn name(&self) -> &LockName {
        &self.name
    }

    fn resource(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

/// The holder of the lock on `file`, read when first asked for (see [`LazyHolder`]); the file
/// stays open until then.
fn lazy_holder(file: File) -> LazyHolder {
    LazyHolder::new(move || read_holder(&file))
}

/// Who holds the lock on `file`: its record if the recorded process is alive, else the locker the
/// OS's lock table names (Linux `/proc/locks`), else what the record says of a holder that cannot
/// be seen from here.
fn read_holder(file: &File) -> Holder {
    let Ok(meta) = file.metadata() else {
        return Holder::unidentified();
    };
    let id = read_record(file);
    if let Some(h) = id.as_ref().and_then(alive_holder) {
        return h;
    }
    os::flock_table_holder(meta.dev(), meta.ino())
        .flatten()
        .map(|pid| Holder::from_pid(pid, None, None))
        .unwrap_or_else(|| invisible_holder(id.as_ref()))
}

/// Whether `file` holds a holder record, possibly cut short by a holder killed while writing it:
/// a first line of digits, then the record marker.
fn holds_record(file: &File) -> bool {
    let mut buf = [0u8; 64];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    let mut lines = buf[..n].split(|&b| b == b'\n');
    lines
        .next()
        .is_some_and(|l| !l.is_empty() && l.iter().all(u8::is_ascii_digit))
        && lines.next().is_some_and(|l| l.starts_with(b"onlyone "))
}

/// Whether no live process has `pid`: none at all, or a zombie (its files are closed).
fn process_gone(pid: u32) -> bool {
    let raw = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    nix::sys::signal::kill(raw, None) == Err(Errno::ESRCH)
        || os::stat(pid).is_some_and(|s| s.state == 'Z' || s.state == 'X')
}

/// The record in `file`, if it holds a whole one.
fn read_record(file: &File) -> Option<record::Record> {
    let mut buf = vec![0u8; record::MAX_RECORD_LEN + 1];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    record::parse_record(&buf[..n]).ok()
}

/// The holder a record names, if its holder (or, once the holder is gone, its job) is alive.
fn alive_holder(rec: &record::Record) -> Option<Holder> {
    let (liveness, id) = rec.liveness();
    (liveness == Liveness::Alive).then(|| crate::backend::live_record_holder(&id))
}

/// A holder the lock table does not show: in another PID namespace when its record says so.
fn invisible_holder(rec: Option<&record::Record>) -> Holder {
    match rec.map(record::Record::liveness) {
        Some((Liveness::Unknown(_), id)) => crate::backend::unknown_record_holder(&id),
        _ => Holder::unidentified(),
    }
}

fn not_a_file(path: &Path) -> Error {
    Error::msg(
        ErrorKind::LockDir,
        format!("lock file {}", path.display()),
        "is not a regular file; onlyone leaves it alone",
    )
}

/// Whether `path` (not following links) still names the inode described by `meta`.
fn same_inode(path: &Path, meta: &std::fs::Metadata) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}

/// The open, locked lock file.
#[derive(Debug)]
struct FlockHeld {
    file: Option<File>,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// The process that took the lock: a `fork`ed child's copy of the guard only closes.
    owner: u32,
    /// Whether the file holds our record (not when it held content that is not ours).
    wrote_record: bool,
    /// The loss watch, made when first asked for (`loss_fd`).
    loss: std::sync::OnceLock<Option<os::LossWatch>>,
    /// Whether `as_fd` lent the descriptor out (its close-on-exec flag may have been cleared).
    lent: AtomicBool,
}

impl FlockHeld {
    /// Unlocks before closing, unless the descriptor was handed to children on purpose
    /// (close-on-exec cleared) or this is a forked copy: then closing our copy is all we may do.
    fn unlock_and_close(&mut self) -> Result<(), Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // Only a descriptor lent out by `as_fd` can have had close-on-exec cleared: the flag is
        // asked for (fcntl(2) F_GETFD) only then.
        let handed_over = self.lent.load(Ordering::Relaxed)
            && fcntl(&file, FcntlArg::F_GETFD)
                .map(|f| !FdFlag::from_bits_truncate(f).contains(FdFlag::FD_CLOEXEC))
                .unwrap_or(false);
        if !handed_over && std::process::id() == self.owner {
            // Erase our record first: a live process that once held the lock must not be named
            // as the holder of the next acquisition.
            if self.wrote_record {
                file.set_len(0).map_err(|e| {
                    Error::new(
                        ErrorKind::Io,
                        format!("cannot clear lock file {}", self.path.display()),
                        e,
                    )
                })?;
            }
            os::flock_unlock(&file).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot unlock lock file {}", self.path.display()),
                    e,
                )
            })?;
            // Wakes waiters (inotify IN_ATTRIB) now that the lock is free; a failure here only
            // delays them until their next event.
            let now = nix::sys::time::TimeSpec::UTIME_NOW;
            let _ = nix::sys::stat::futimens(&file, &now, &now);
        }
        nix::unistd::close(file).map_err(|e| {
            sys(
                ErrorKind::Io,
                format!("cannot close lock file {}", self.path.display()),
                e,
            )
        })
    }
}

impl HeldLock for FlockHeld {
    fn verify(&self) -> Result<(), Error> {
        if let Some(Some(watch)) = self.loss.get() {
            os::drain_loss_watch(watch);
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => Ok(()),
            Ok(_) => Err(Error::msg(
                ErrorKind::Lost,
                format!("lock file {}", self.path.display()),
                "was replaced by another file; another process can lock the new one",
            )),
            Err(e) => Err(Error::new(
                ErrorKind::Lost,
                format!(
                    "lock file {} was deleted; another process can create and lock a new one",
                    self.path.display()
                ),
                e,
            )),
        }
    }

    fn release(mut self: Box<Self>) -> Result<(), Error> {
        self.unlock_and_close()
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.lent.store(true, Ordering::Relaxed);
        self.file.as_ref().map(|f| f.as_fd())
    }

    fn loss_fd(&self) -> Option<BorrowedFd<'_>> {
        self.loss
            .get_or_init(|| self.file.as_ref().and_then(os::loss_watch))
            .as_ref()
            .map(|w| w.as_fd())
    }

    /// Writes the record again with a `job` line (in place: it only grows). The lock itself does
    /// not depend on it: a child keeps it by keeping the descriptor.
    fn record_job(&mut self, pid: u32, start_ticks: Option<u64>) -> Result<bool, Error> {
        let Some(file) = self.file.as_ref().filter(|_| self.wrote_record) else {
            return Ok(false);
        };
        if std::process::id() != self.owner {
            return Ok(false);
        }
        let record = record::Record::new(ProcessIdentity::current())
            .with_job(record::Job { pid, start_ticks });
        let text = record::format_record(&record);
        file.write_all_at(text.as_bytes(), 0)
            .and_then(|()| file.set_len(text.len() as u64))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "cannot write job {pid} into lock file {}",
                        self.path.display()
                    ),
                    e,
                )
            })?;
        Ok(true)
    }
}

impl Drop for FlockHeld {
    fn drop(&mut self) {
        let _ = self.unlock_and_close();
    }
}
