//! The PID file backend on Windows: `NAME.pid` holds the holder's record (pid and creation time
//! from `OpenProcess` + `GetProcessTimes`), and the same race-free rules as on Unix:
//!
//! - **Atomic create:** the record is written to a temporary file, then hard-linked into place
//!   (`CreateHardLinkW`, which fails when the name exists): readers never see a partial file.
//! - **Stale takeover without two winners:** a record whose process is dead (another creation
//!   time, exited, no such pid) is removed only under the takeover lock (`LockFileEx` on
//!   `NAME.pid.takeover`, a file never deleted), through a handle that read the file again and
//!   found the same stale record (`FileDispositionInfo` on that handle: the very file read goes,
//!   never one linked under its name meanwhile); the taker then links its record like any
//!   contender, and a contender that links first holds the lock. Never deleted on the strength of
//!   an earlier read. (A file does not always go when it is deleted: while another process has it
//!   open, Windows keeps its name until that handle closes, and Wine even keeps it readable. The
//!   name can thus vanish at any moment after a stale read, and a rename over it by name could
//!   replace a record linked in that moment: two holders. The Windows suite's
//!   `pidfile_exiting_holders_never_two_holders` caught that under Wine.)
//! - **Release:** the same removal through a handle that read the holder's own record.
//! - **Unknown is held:** a process that exists but cannot be opened counts as alive.
//! - Waiters retry with a backoff, woken early by the holder's death (its process handle).

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::lock::{
    Acquire, Attempt, BackendKind, Guard, HeldLock, Holder, HolderKind, Lock, WakeSource, WakeUp,
};
use crate::name::{LockDir, LockName, Scope};
use crate::os::{LOCK_OFFSET, Liveness, ProcessIdentity};
use crate::record::Record;

/// A lock held as a PID file; see the [module docs](self).
#[derive(Debug)]
pub struct PidFileLock {
    name: LockName,
    dir: LockDir,
    path: PathBuf,
}

/// What the file says, read once.
enum Found {
    Free,
    Live(Holder),
    Stale(Vec<u8>),
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

    pub(crate) fn with_dir(name: LockName, _scope: Scope, dir: LockDir) -> PidFileLock {
        let path = dir.path.join(name.file_name("pid"));
        PidFileLock { name, dir, path }
    }

    /// The PID file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, what: &str, e: std::io::Error) -> Error {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                ErrorKind::LockDir
            }
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{what} {}", self.path.display()), e)
    }

    /// A temporary file in the same directory holding `text`.
    fn temp_with(&self, text: &str) -> Result<PathBuf, Error> {
        if self.dir.create {
            crate::os::create_lock_dir(&self.dir.path)
                .map_err(|e| self.io("cannot create the directory of", e))?;
        }
        let temp = self.path.with_extension(format!(
            "pid.{}.{}.tmp",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        fs::write(&temp, text).map_err(|e| self.io("cannot write a record beside", e))?;
        Ok(temp)
    }

    /// What the file says now.
    fn look(&self) -> Result<Found, Error> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Free),
            // Deleted by its releasing holder while another handle reads it: the name stays
            // until that handle closes (Windows' delete-pending state). Held for a moment.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Ok(Found::Live(Holder::unidentified()));
            }
            Err(e) => return Err(self.io("cannot read PID file", e)),
        };
        let record = crate::record::parse_record(&bytes).map_err(|why| {
            Error::msg(
                ErrorKind::Corrupt,
                format!("PID file {}", self.path.display()),
                format!("does not hold an onlyone record ({why}); it was left untouched"),
            )
        })?;
        Ok(match record.liveness() {
            (Liveness::Dead(_), _) => Found::Stale(bytes),
            (Liveness::Alive, id) => {
                let mut holder = Holder::from_pid(id.pid, Some(id.uid), id.start_ticks);
                holder.kind = HolderKind::SameUser;
                Found::Live(holder)
            }
            (Liveness::Unknown(_), id) => Found::Live(Holder {
                pid: Some(id.pid),
                ..Holder::unidentified()
            }),
        })
    }

    fn try_once(&self) -> Result<Acquire, Error> {
        let mine = crate::record::format(&ProcessIdentity::current());
        let temp = self.temp_with(&mine)?;
        let result = self.place(&temp, &mine);
        let _ = fs::remove_file(&temp);
        result
    }

    /// Links `temp` into place, or takes over a stale file under the takeover lock.
    fn place(&self, temp: &Path, mine: &str) -> Result<Acquire, Error> {
        const LINKS: u32 = 4;
        for link in 1..=LINKS {
            match fs::hard_link(temp, &self.path) {
                Ok(()) => return Ok(Acquire::Acquired(self.guard(mine))),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                // The directory is writable (the temporary file was written): a denied link is
                // a PID file in the delete-pending state (removed, still open by a reader).
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => continue,
                Err(e) => return Err(self.io("cannot create PID file", e)),
            }
            if link == LINKS {
                break;
            }
            let stale = match self.look()? {
                Found::Free => continue,
                Found::Live(h) => return Ok(Acquire::Held(h.into())),
                Found::Stale(bytes) => bytes,
            };
            let Some(guard_file) = self.lock_takeover()? else {
                // Another contender is taking it over: held by whoever wins.
                return Ok(Acquire::Held(Holder::unidentified().into()));
            };
            // Under the takeover lock: remove only the very record judged stale, then link ours
            // (next round). A file some reader still has open keeps its name until the reader
            // closes it: the link then fails and the lock counts as held for that moment.
            remove_if_holds(&self.path, &stale)
                .map_err(|e| self.io("cannot remove the stale PID file", e))?;
            drop(guard_file);
        }
        Ok(Acquire::Held(Holder::unidentified().into()))
    }

    /// The takeover lock (`LockFileEx` on `NAME.pid.takeover`), held while the returned file is
    /// open; `None` when another process holds it.
    fn lock_takeover(&self) -> Result<Option<std::fs::File>, Error> {
        let takeover = self.path.with_extension("pid.takeover");
        let guard_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&takeover)
            .map_err(|e| self.io("cannot open the takeover lock of", e))?;
        let locked = crate::os::try_lock_byte(&guard_file, LOCK_OFFSET)
            .map_err(|e| self.io("cannot lock the takeover lock of", e))?;
        Ok(locked.then_some(guard_file))
    }

    /// The administrator's way out: removes the PID file whatever its holder's liveness, and
    /// returns the record it held (`None` when there was no file, or it changed meanwhile).
    ///
    /// A holder that cannot be judged from here (a process that exists but cannot be opened)
    /// keeps the lock for ever: unknown is never dead. Once you know by other means that it is
    /// gone, this removes its file. It does not check liveness: removing the file of a live
    /// holder lets a second one in. Like a stale takeover it holds the takeover lock (an error
    /// if a takeover is under way), removes the file only if it still holds the very record it
    /// read, and never touches a file that is not an onlyone record ([`ErrorKind::Corrupt`]).
    /// In the system-scope directory only an administrator or the file's creator may remove it.
    pub fn force_remove(&self) -> Result<Option<ProcessIdentity>, Error> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            // No file, or one being deleted (Windows' delete-pending state): nothing to remove.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) && !self.path.is_file() =>
            {
                return Ok(None);
            }
            Err(e) => return Err(self.io("cannot read PID file", e)),
        };
        let record = crate::record::parse_record(&bytes).map_err(|why| {
            Error::msg(
                ErrorKind::Corrupt,
                format!("PID file {}", self.path.display()),
                format!("does not hold an onlyone record ({why}); it was left untouched"),
            )
        })?;
        let Some(_takeover) = self.lock_takeover()? else {
            return Err(Error::msg(
                ErrorKind::Io,
                format!("cannot remove PID file {}", self.path.display()),
                "a takeover is under way (its lock is held); look again",
            ));
        };
        // Under the takeover lock: remove only the very record read above.
        let removed = remove_if_holds(&self.path, &bytes).map_err(|e| {
            Error::new(
                ErrorKind::LockDir,
                format!("cannot remove PID file {}", self.path.display()),
                e,
            )
        })?;
        Ok(removed.then_some(record.holder))
    }

    fn guard(&self, mine: &str) -> Guard {
        Guard::new(
            Box::new(PidFileHeld {
                path: self.path.clone(),
                record: mine.to_owned(),
                released: false,
            }),
            BackendKind::PidFile,
            self.path.display().to_string(),
        )
    }
}

impl Lock for PidFileLock {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        self.try_once()
    }

    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        crate::backend::wait_loop(self, timeout)
    }

    fn holder(&self) -> Result<Option<Holder>, Error> {
        Ok(match self.look()? {
            Found::Live(h) => Some(h),
            Found::Free | Found::Stale(_) => None,
        })
    }

    fn attempt(&self) -> Result<Attempt, Error> {
        Ok(match self.try_once()? {
            Acquire::Acquired(g) => Attempt::Acquired(g),
            Acquire::Held(h) => {
                let sources = h
                    .pid
                    .and_then(crate::os::pin_process)
                    .map(WakeSource::new)
                    .into_iter()
                    .collect();
                Attempt::Held(h, WakeUp::backoff(sources))
            }
        })
    }

    fn backend(&self) -> BackendKind {
        BackendKind::PidFile
    }

    fn name(&self) -> &LockName {
        &self.name
    }

    fn resource(&self) -> String {
        self.path.display().to_string()
    }
}

/// Removes the file at `path` if it holds `expected`, through the handle that read it
/// ([`crate::os::delete_on_close`]): only that very file goes, even if its name vanishes and
/// another file is linked under it before the handle closes. `false` when there is no file, it
/// holds something else, or it cannot be opened because it is being deleted; an error
/// (`PermissionDenied`) when it may be read but not deleted (another user's file in the system
/// scope's directory).
fn remove_if_holds(path: &Path, expected: &[u8]) -> std::io::Result<bool> {
    let mut file = match crate::os::open_to_delete(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        // Windows refuses every open of a file being deleted (delete-pending) with the same
        // error as a denied one: a file that still opens for reading is a denial.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return if fs::File::open(path).is_ok() {
                Err(e)
            } else {
                Ok(false)
            };
        }
        Err(e) => return Err(e),
    };
    let mut now = Vec::with_capacity(expected.len() + 1);
    file.read_to_end(&mut now)?;
    if now != expected {
        return Ok(false);
    }
    crate::os::delete_on_close(&file)?;
    Ok(true)
}

/// A held PID file: its path and the record this process wrote.
#[derive(Debug)]
struct PidFileHeld {
    path: PathBuf,
    record: String,
    /// Set once `release` removed the file (or found it lost), so that `Drop` does not look again.
    released: bool,
}

impl HeldLock for PidFileHeld {
    fn verify(&self) -> Result<(), Error> {
        match fs::read(&self.path) {
            Ok(b) if b == self.record.as_bytes() => Ok(()),
            Ok(_) => Err(Error::msg(
                ErrorKind::Lost,
                format!("PID file {}", self.path.display()),
                "holds another record now",
            )),
            Err(e) => Err(Error::new(
                ErrorKind::Lost,
                format!("PID file {} is gone", self.path.display()),
                e,
            )),
        }
    }

    fn release(mut self: Box<Self>) -> Result<(), Error> {
        self.released = true;
        match remove_if_holds(&self.path, self.record.as_bytes()) {
            Ok(true) => Ok(()),
            // Not ours (any more): say what is there instead.
            Ok(false) => Err(self.verify().err().unwrap_or_else(|| {
                Error::msg(
                    ErrorKind::Lost,
                    format!("PID file {}", self.path.display()),
                    "changed while it was being removed",
                )
            })),
            Err(e) => Err(Error::new(
                ErrorKind::Io,
                format!("cannot remove PID file {}", self.path.display()),
                e,
            )),
        }
    }

    fn record_job(&mut self, pid: u32, start_ticks: Option<u64>) -> Result<bool, Error> {
        let text = crate::record::format_record(
            &Record::new(ProcessIdentity::current())
                .with_job(crate::record::Job { pid, start_ticks }),
        );
        let temp = self.path.with_extension("pid.job.tmp");
        fs::write(&temp, &text)
            .and_then(|()| fs::rename(&temp, &self.path))
            .map_err(|e| {
                let _ = fs::remove_file(&temp);
                Error::new(
                    ErrorKind::Io,
                    format!("cannot rewrite PID file {}", self.path.display()),
                    e,
                )
            })?;
        self.record = text;
        Ok(true)
    }
}

impl Drop for PidFileHeld {
    fn drop(&mut self) {
        if !self.released {
            let _ = remove_if_holds(&self.path, self.record.as_bytes());
        }
    }
}
