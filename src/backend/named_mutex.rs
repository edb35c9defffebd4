//! The named-mutex backend, Windows' default: `CreateMutexW` + `WaitForSingleObject`.
//!
//! - **A thread owns the mutex.** Windows mutexes belong to a thread, not a process:
//!   `ReleaseMutex` from any other thread fails (`ERROR_NOT_OWNER`), and a thread that exits
//!   owning one abandons it. Guards are `Send` (tokio moves tasks between threads), so each
//!   acquisition runs on a thread of its own that this backend starts: it opens the mutex, waits
//!   on it, writes the holder record, then sleeps until the guard is released or dropped (from
//!   any thread), and only then releases the mutex and exits. The thread lives exactly as long as
//!   the guard; if the process dies, the kernel abandons the mutex at once.
//! - **Abandoned = acquired.** `WAIT_ABANDONED` (the previous owner died holding it) is an
//!   acquisition, and [`Guard::previous_holder_died`] says so. A mutex whose last handle closed
//!   with its dead holder no longer exists: the next process creates a fresh one and acquires
//!   plainly. Both count as acquired.
//! - **Scopes.** [`Scope::User`]: this user in this session: a private namespace whose boundary
//!   holds the user's SID (`CreatePrivateNamespaceW`), so no other user can create the mutex
//!   first; where the OS lacks private namespaces (Wine) `Local\onlyone-<SID>-<name>`, and a
//!   mutex that already exists must be owned by this user (or its token's default owner): one
//!   made by anyone else is refused with an error naming its owner's SID. [`Scope::System`]:
//!   `Global\onlyone-system-<name>`, spanning sessions, created with a DACL that lets every
//!   authenticated user wait on it (and so take it), SYSTEM and administrators do everything.
//! - **Who holds it.** A mutex does not name its owner, so the holder writes its record (the
//!   format of [`crate::record`]: pid, creation time) to `NAME.holder` in the lock directory
//!   (`%LOCALAPPDATA%\onlyone`, `%ProgramData%\onlyone`), a new file renamed over the old so
//!   readers never see it partial, and removes it before releasing. A reader trusts a record only
//!   when its process still runs with the recorded creation time; otherwise the holder is
//!   reported as unidentified (it has taken the mutex and not yet written its record, or it
//!   cannot write in the directory). A file mapping in `Global\` would avoid the file, but
//!   creating one needs a privilege ordinary users lack.
//! - **The job outlives its holder by a moment.** `onlyone run` names its job in the record
//!   ([`Guard::record_job`]) and runs it in a job object that kills it when onlyone dies; the
//!   mutex is abandoned at once, the job is killed a little later. So a new holder that finds a
//!   record whose holder is dead and whose job still runs waits (within its timeout) for that job
//!   to exit before it counts as holding the lock; a try reports the lock held by the job.
//! - **Waiting** blocks the owner thread in `WaitForSingleObject` with the timeout: no polling.
//!   [`Lock::holder`] takes the mutex for an instant (a zero-timeout wait) when it is free, so an
//!   abandoned state it finds is reported to nobody after it.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::lock::{
    Acquire, Attempt, BackendKind, Guard, HeldLock, Holder, HolderKind, Lock, WakeSource, WakeUp,
};
use crate::name::{LockDir, LockName, Scope};
use crate::os::{Liveness, Mutex, MutexWait, Namespace, ProcessIdentity, current_user};

/// Room for the lock name inside a kernel object name (`MAX_PATH` less the prefixes).
const OBJECT_NAME_ROOM: usize = 160;

/// A lock held as a Windows named mutex; see the [module docs](self).
#[derive(Debug)]
pub struct NamedMutexLock {
    name: LockName,
    scope: Scope,
    dir: LockDir,
    /// The lock's name inside the object namespace (after `Local\onlyone-<SID>-` and the like).
    object: String,
}

/// Where the mutex lives, decided once per use (the namespace must stay open while it is used).
struct Opened {
    mutex: Mutex,
    _namespace: Option<Namespace>,
}

impl NamedMutexLock {
    /// The lock `name` in `scope`, its holder records in the scope's default directory.
    pub fn new(name: LockName, scope: Scope) -> NamedMutexLock {
        NamedMutexLock::with_dir(name, scope, LockDir::new(scope, None))
    }

    /// The lock `name` in `scope`, its holder records in `dir` (which must exist).
    pub fn with_lock_dir(name: LockName, scope: Scope, dir: impl Into<PathBuf>) -> NamedMutexLock {
        let dir = dir.into();
        NamedMutexLock::with_dir(name, scope, LockDir::new(scope, Some(&dir)))
    }

    pub(crate) fn with_dir(name: LockName, scope: Scope, dir: LockDir) -> NamedMutexLock {
        let object = name.object_name(OBJECT_NAME_ROOM);
        NamedMutexLock {
            name,
            scope,
            dir,
            object,
        }
    }

    /// The holder record's path: `NAME.holder` in the lock directory.
    pub fn record_path(&self) -> PathBuf {
        self.dir.path.join(self.name.file_name("holder"))
    }

    /// The full object name in the session or global namespace (without a private namespace).
    fn public_object_name(&self) -> String {
        match self.scope {
            Scope::User => format!("Local\\onlyone-{}-{}", current_user().text, self.object),
            Scope::System => format!("Global\\onlyone-system-{}", self.object),
        }
    }

    /// Opens (or creates) the mutex: see the module docs for the namespaces and checks.
    fn open(&self) -> Result<Opened, Error> {
        let fail = |what: &str, e: io::Error| {
            Error::new(
                ErrorKind::Io,
                format!("cannot {what} the mutex of lock {:?}", self.name.as_str()),
                e,
            )
        };
        if self.scope == Scope::System {
            let name = self.public_object_name();
            let mutex = Mutex::create(&name, true).map_err(|e| {
                if e.raw_os_error() == Some(5) {
                    Error::new(
                        ErrorKind::Io,
                        format!("cannot open mutex {name}"),
                        io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            "it exists and does not let this user wait on it: another program \
                             or user created it first (squatting?)",
                        ),
                    )
                } else {
                    fail("create", e)
                }
            })?;
            return Ok(Opened {
                mutex,
                _namespace: None,
            });
        }
        let user = current_user();
        let alias = format!("onlyone-{}", user.text);
        if let Some(namespace) = Namespace::open(&alias, &user.sid)
            .map_err(|e| fail("open the private namespace of", e))?
        {
            let mutex = Mutex::create(&format!("{alias}\\{}", self.object), false)
                .map_err(|e| fail("create", e))?;
            return Ok(Opened {
                mutex,
                _namespace: Some(namespace),
            });
        }
        let name = self.public_object_name();
        let mutex = Mutex::create(&name, false).map_err(|e| fail("create", e))?;
        if mutex.existed {
            let owner = mutex.owner().map_err(|e| fail("read the owner of", e))?;
            // No owner at all: Wine 8 keeps none on its mutexes. Windows always gives a kernel
            // object an owner (the creator's default owner when none was asked for), so there
            // this never lets a squatter through.
            if !owner.is_empty() && owner != user.sid && owner != user.owner {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("mutex {name}"),
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "belongs to {}, not to this user ({}): another user created it \
                             first (squatting); onlyone does not use it",
                            crate::os::sid_text(&owner),
                            user.text
                        ),
                    ),
                ));
            }
        }
        Ok(Opened {
            mutex,
            _namespace: None,
        })
    }

    /// Takes the lock, waiting up to `timeout` in the owner thread.
    fn take(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        let (answer_tx, answer_rx) = mpsc::channel::<Result<MutexWait, Error>>();
        let record = Arc::new(StdMutex::new(String::new()));
        let thread_record = Arc::clone(&record);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let record_path = self.record_path();
        let create_dir = self.dir.create.then(|| self.dir.path.clone());
        let opener = NamedMutexLock {
            name: self.name.clone(),
            scope: self.scope,
            dir: self.dir.clone(),
            object: self.object.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("onlyone-mutex".to_owned())
            .spawn(move || {
                owner_thread(
                    &opener,
                    timeout,
                    &record_path,
                    create_dir,
                    &thread_record,
                    answer_tx,
                    release_rx,
                )
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot start the thread that owns {}", self.resource()),
                    e,
                )
            })?;
        let answer = answer_rx.recv();
        match answer {
            Ok(Ok(MutexWait::Timeout)) => {
                let _ = thread.join();
                Ok(Acquire::Held(self.read_holder().into()))
            }
            Ok(Ok(wait)) => Ok(Acquire::Acquired(Guard::new(
                Box::new(HeldMutex {
                    record,
                    record_path: self.record_path(),
                    release: Some(release_tx),
                    thread: Some(thread),
                    abandoned: wait == MutexWait::Abandoned,
                    resource: self.resource(),
                }),
                BackendKind::NamedMutex,
                self.resource(),
            ))),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::msg(
                    ErrorKind::Io,
                    format!("cannot take {}", self.resource()),
                    "the thread that owns the mutex ended without an answer",
                ))
            }
        }
    }

    /// The holder its record names, when that process still runs; else unidentified.
    fn read_holder(&self) -> Holder {
        let Ok(bytes) = fs::read(self.record_path()) else {
            return Holder::unidentified();
        };
        let Ok(record) = crate::record::parse_record(&bytes) else {
            return Holder::unidentified();
        };
        match record.liveness() {
            (Liveness::Alive, id) => identified(&id),
            _ => Holder::unidentified(),
        }
    }
}

/// A holder named by a record whose process runs with the recorded creation time.
fn identified(id: &ProcessIdentity) -> Holder {
    let mut holder = Holder::from_pid(id.pid, Some(id.uid), id.start_ticks);
    holder.kind = if id.uid == crate::os::effective_uid() {
        HolderKind::SameUser
    } else {
        HolderKind::OtherUser
    };
    holder
}

/// The thread that owns the mutex: opens it, waits, answers, then holds it until told (or until
/// the guard's sender is dropped) and releases it from this same thread.
fn owner_thread(
    lock: &NamedMutexLock,
    timeout: Option<Duration>,
    record_path: &std::path::Path,
    create_dir: Option<PathBuf>,
    record: &StdMutex<String>,
    answer: mpsc::Sender<Result<MutexWait, Error>>,
    release: mpsc::Receiver<()>,
) -> Result<(), Error> {
    let start = Instant::now();
    let opened = match lock.open() {
        Ok(o) => o,
        Err(e) => {
            let _ = answer.send(Err(e));
            return Ok(());
        }
    };
    let wait = match opened.mutex.wait(timeout) {
        Ok(w) => w,
        Err(e) => {
            let _ = answer.send(Err(Error::new(
                ErrorKind::Io,
                format!("cannot wait for {}", lock.resource()),
                e,
            )));
            return Ok(());
        }
    };
    if wait == MutexWait::Timeout {
        let _ = answer.send(Ok(wait));
        return Ok(());
    }
    let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
    if !previous_job_gone(record_path, left) {
        let _ = opened.mutex.release();
        let _ = answer.send(Ok(MutexWait::Timeout));
        return Ok(());
    }
    // Best effort: a holder that cannot write its record still holds the lock; readers then
    // report it as unidentified.
    if let Some(dir) = create_dir {
        let _ = crate::os::create_lock_dir(&dir);
    }
    let mine = crate::record::format(&ProcessIdentity::current());
    if write_record(record_path, &mine).is_ok() {
        *record.lock().unwrap_or_else(|e| e.into_inner()) = mine;
    }
    let _ = answer.send(Ok(wait));
    // Released by the guard: a message, or its sender dropped.
    let _ = release.recv();
    let mine = record.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !mine.is_empty() && fs::read(record_path).is_ok_and(|b| b == mine.as_bytes()) {
        let _ = fs::remove_file(record_path);
    }
    opened.mutex.release().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot release {}", lock.resource()),
            e,
        )
    })
}

/// Whether the job a dead previous holder left running (its record, still in place: a holder
/// that released removed it) has exited, waiting up to `timeout` for it.
fn previous_job_gone(record_path: &std::path::Path, timeout: Option<Duration>) -> bool {
    let Some(record) = fs::read(record_path)
        .ok()
        .and_then(|b| crate::record::parse_record(&b).ok())
    else {
        return true;
    };
    let Some(job) = record.job_identity() else {
        return true;
    };
    if record.holder.liveness() == Liveness::Alive {
        // A live holder released (its record could not be removed): its job is its business.
        return true;
    }
    crate::os::wait_for_exit(job.pid, job.start_ticks, timeout)
}

/// Writes `record` to `path` through a new file renamed over it (MoveFileExW with
/// `MOVEFILE_REPLACE_EXISTING`), so readers see the old record or the new, never a part.
fn write_record(path: &std::path::Path, record: &str) -> io::Result<()> {
    let temp = path.with_extension(format!("holder.{}.tmp", std::process::id()));
    fs::write(&temp, record)?;
    fs::rename(&temp, path).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// A held mutex: the channel to its owner thread, and the thread.
#[derive(Debug)]
struct HeldMutex {
    /// The record this holder wrote (empty if it could not), removed at release if unchanged.
    record: Arc<StdMutex<String>>,
    record_path: PathBuf,
    release: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<Result<(), Error>>>,
    abandoned: bool,
    resource: String,
}

impl HeldMutex {
    fn finish(&mut self) -> Result<(), Error> {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::msg(
                ErrorKind::Io,
                format!("cannot release {}", self.resource),
                "the thread that owns the mutex panicked (the mutex is abandoned)",
            )),
            None => Ok(()),
        }
    }
}

impl HeldLock for HeldMutex {
    fn verify(&self) -> Result<(), Error> {
        match &self.thread {
            Some(t) if !t.is_finished() => Ok(()),
            _ => Err(Error::msg(
                ErrorKind::Lost,
                format!("lock {}", self.resource),
                "the thread that owned the mutex has ended",
            )),
        }
    }

    fn release(mut self: Box<Self>) -> Result<(), Error> {
        self.finish()
    }

    fn previous_holder_died(&self) -> bool {
        self.abandoned
    }

    /// Rewrites the record with the `job` line, so that the next holder waits for the job if
    /// this process dies first.
    fn record_job(&mut self, pid: u32, start_ticks: Option<u64>) -> Result<bool, Error> {
        let text = crate::record::format_record(
            &crate::record::Record::new(ProcessIdentity::current())
                .with_job(crate::record::Job { pid, start_ticks }),
        );
        write_record(&self.record_path, &text).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "cannot write the holder record {}",
                    self.record_path.display()
                ),
                e,
            )
        })?;
        *self.record.lock().unwrap_or_else(|e| e.into_inner()) = text;
        Ok(true)
    }
}

impl Drop for HeldMutex {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Lock for NamedMutexLock {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        self.take(Some(Duration::ZERO))
    }

    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        self.take(timeout)
    }

    fn holder(&self) -> Result<Option<Holder>, Error> {
        let opened = self.open()?;
        let wait = opened.mutex.wait(Some(Duration::ZERO)).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot look at {}", self.resource()),
                e,
            )
        })?;
        if wait == MutexWait::Timeout {
            let mut holder = self.read_holder();
            // Pinned by a process handle, opened before its creation time is compared with the
            // record's: the handle then names the recorded process or nothing (`--replace`).
            if let (Some(pid), Some(start)) = (holder.pid, holder.start_ticks) {
                holder.process = crate::lock::HolderProcess::pin(pid)
                    .filter(|_| crate::os::stat(pid).is_some_and(|s| s.start_ticks == start));
            }
            return Ok(Some(holder));
        }
        opened.mutex.release().map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot release {}", self.resource()),
                e,
            )
        })?;
        Ok(None)
    }

    fn attempt(&self) -> Result<Attempt, Error> {
        Ok(match self.try_acquire()? {
            Acquire::Acquired(g) => Attempt::Acquired(g),
            Acquire::Held(h) => {
                // The holder's process handle wakes a waiter when it dies; a release by a live
                // holder is noticed by the backoff.
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
        BackendKind::NamedMutex
    }

    fn name(&self) -> &LockName {
        &self.name
    }

    /// The mutex's object name: `onlyone-<SID>\NAME` in the user's private namespace, else
    /// `Local\onlyone-<SID>-NAME` or `Global\onlyone-system-NAME`.
    fn resource(&self) -> String {
        if self.scope == Scope::User && crate::os::private_namespaces() {
            format!("onlyone-{}\\{}", current_user().text, self.object)
        } else {
            self.public_object_name()
        }
    }
}
