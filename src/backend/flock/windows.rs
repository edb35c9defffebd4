//! The flock backend on Windows: `LockFileEx` on the lock file `NAME.lock`, the counterpart of
//! `flock(2)` (what fs2 and std's `File::try_lock` use there).
//!
//! - The lock is one byte at the fixed offset `0x7FFF_FFFF_0000_0000`, exclusive, fail-immediately
//!   (`ERROR_LOCK_VIOLATION`: held). Windows byte-range locks are mandatory, so the lock never
//!   covers the record at the start of the file, which contenders read to name the holder.
//! - The kernel releases it when the holder's handle closes, and so when the holder dies.
//! - The file is opened without `FILE_SHARE_DELETE`: while anyone has it open, nobody can delete or
//!   rename it, so the unlink race of `flock(2)` cannot happen; the file id
//!   (`GetFileInformationByHandle`: volume serial, file index) is still compared with the path's
//!   after locking, as the inode is on Unix.
//! - A reparse point (symbolic link, junction) where the lock file belongs is refused, never
//!   followed (`FILE_FLAG_OPEN_REPARSE_POINT`, then its attributes checked).
//! - Waiting retries with a backoff (1 ms doubling to 50 ms), woken early by the holder's death
//!   (its process handle); Windows has no event for a byte-range unlock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use windows_sys::Win32::Storage::FileSystem::{
    FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_OPEN_REPARSE_POINT, FILE_SHARE_READ, FILE_SHARE_WRITE,
};

use crate::error::{Error, ErrorKind};
use crate::lock::{
    Acquire, Attempt, BackendKind, Guard, HeldLock, Holder, HolderKind, Lock, WakeSource, WakeUp,
};
use crate::name::{LockDir, LockName, Scope};
use crate::os::{LOCK_OFFSET, Liveness, ProcessIdentity};

/// A lock held with `LockFileEx` on a lock file; see the [module docs](self).
#[derive(Debug)]
pub struct FlockLock {
    name: LockName,
    dir: LockDir,
    path: PathBuf,
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

    pub(crate) fn with_dir(name: LockName, _scope: Scope, dir: LockDir) -> FlockLock {
        let path = dir.path.join(name.file_name("lock"));
        FlockLock { name, dir, path }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, kind: ErrorKind, what: &str, e: std::io::Error) -> Error {
        Error::new(kind, format!("{what} {}", self.path.display()), e)
    }

    /// Opens (creating) the lock file, refusing a reparse point.
    fn open(&self) -> Result<File, Error> {
        if self.dir.create {
            crate::os::create_lock_dir(&self.dir.path).map_err(|e| {
                Error::new(
                    ErrorKind::LockDir,
                    format!("cannot create lock directory {}", self.dir.path.display()),
                    e,
                )
            })?;
        }
        // Refused before the open too: where the handle's attributes do not show the reparse
        // point (Wine presents a link it made as a Unix symlink that it follows), the path's do.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(self.reparse_point());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(&self.path)
            .map_err(|e| {
                let kind = match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                        ErrorKind::LockDir
                    }
                    _ => ErrorKind::Io,
                };
                self.err(kind, "cannot create or open lock file", e)
            })?;
        let id = crate::os::file_id(&file)
            .map_err(|e| self.err(ErrorKind::Io, "cannot identify lock file", e))?;
        if id.attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
            return Err(self.reparse_point());
        }
        Ok(file)
    }

    fn reparse_point(&self) -> Error {
        Error::msg(
            ErrorKind::Symlink,
            format!("lock file {}", self.path.display()),
            "is a reparse point (a symbolic link or junction); onlyone does not follow it \
             (its target is untouched)",
        )
    }

    /// The holder its record names, when that process still runs; else unidentified.
    fn read_holder(file: &mut File) -> Holder {
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return Holder::unidentified();
        }
        match crate::record::parse_record(&bytes).map(|r| r.liveness()) {
            Ok((Liveness::Alive, id)) => {
                let mut holder = Holder::from_pid(id.pid, Some(id.uid), id.start_ticks);
                holder.kind = HolderKind::SameUser;
                holder
            }
            _ => Holder::unidentified(),
        }
    }

    fn try_once(&self) -> Result<Acquire, Error> {
        let mut file = self.open()?;
        let locked = crate::os::try_lock_byte(&file, LOCK_OFFSET)
            .map_err(|e| self.err(ErrorKind::Io, "cannot lock", e))?;
        if !locked {
            return Ok(Acquire::Held(Self::read_holder(&mut file).into()));
        }
        let id = crate::os::file_id(&file)
            .map_err(|e| self.err(ErrorKind::Io, "cannot identify lock file", e))?;
        let record = crate::record::format(&ProcessIdentity::current());
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.set_len(0))
            .and_then(|()| file.write_all(record.as_bytes()))
            .map_err(|e| self.err(ErrorKind::Io, "cannot write the record to", e))?;
        Ok(Acquire::Acquired(Guard::new(
            Box::new(FlockHeld {
                file,
                path: self.path.clone(),
                id: id.id,
            }),
            BackendKind::Flock,
            self.path.display().to_string(),
        )))
    }
}

impl Lock for FlockLock {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        self.try_once()
    }

    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        crate::backend::wait_loop(self, timeout)
    }

    fn holder(&self) -> Result<Option<Holder>, Error> {
        let mut file = self.open()?;
        let locked = crate::os::try_lock_byte(&file, LOCK_OFFSET)
            .map_err(|e| self.err(ErrorKind::Io, "cannot look at", e))?;
        if locked {
            let _ = crate::os::unlock_byte(&file, LOCK_OFFSET);
            return Ok(None);
        }
        Ok(Some(Self::read_holder(&mut file)))
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
        BackendKind::Flock
    }

    fn name(&self) -> &LockName {
        &self.name
    }

    fn resource(&self) -> String {
        self.path.display().to_string()
    }
}

/// A held lock file: the locked handle, and the file id it was locked with.
#[derive(Debug)]
struct FlockHeld {
    file: File,
    path: PathBuf,
    id: (u32, u64),
}

impl HeldLock for FlockHeld {
    fn verify(&self) -> Result<(), Error> {
        let now = File::open(&self.path)
            .and_then(|f| crate::os::file_id(&f))
            .map(|f| f.id);
        match now {
            Ok(id) if id == self.id => Ok(()),
            Ok(_) => Err(Error::msg(
                ErrorKind::Lost,
                format!("lock file {}", self.path.display()),
                "was replaced by another file",
            )),
            Err(e) => Err(Error::new(
                ErrorKind::Lost,
                format!("lock file {} is gone", self.path.display()),
                e,
            )),
        }
    }

    fn release(self: Box<Self>) -> Result<(), Error> {
        let _ = self.file.set_len(0);
        crate::os::unlock_byte(&self.file, LOCK_OFFSET).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot unlock {}", self.path.display()),
                e,
            )
        })
    }
}
