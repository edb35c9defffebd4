//! The advisory lock of the PostgreSQL backend: trying and waiting on a session of its own, the
//! holder looked up on the same session, the fencing counter, and the session thread that stays
//! as the held lock's heartbeat and raises the loss signal (see the [backend's docs](super)).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::error::SqlState;

use super::connect::{Session, error_text, last_row, pg_error, quote_literal};
use super::holder::{application_name, holder_from_row, host_name};
use super::{KEY_NAMESPACE, PostgresLock};
use crate::backend::BackendKind;
use crate::error::{Error, ErrorKind};
use crate::lock::{Acquire, Guard, HeldLock, Holder, Lock};
use crate::name::fnv1a_128;

/// The key that serialises the creation of the fencing table. Lock names cannot contain `/`,
/// so no lock name hashes the same input.
fn table_creation_key(table: &str) -> i64 {
    (fnv1a_128(format!("{KEY_NAMESPACE}fencing-table/{table}").as_bytes()) >> 64) as u64 as i64
}

impl PostgresLock {
    /// `pg_try_advisory_lock` on the session.
    fn try_lock(&self, s: &mut Session) -> Result<bool, Error> {
        let rows = s
            .client
            .simple_query(&format!("SELECT pg_try_advisory_lock({})", self.key))
            .map_err(|e| self.session_error(&e, "cannot try"))?;
        match last_row(&rows).and_then(|r| r.first().cloned()).as_deref() {
            Some("t") => Ok(true),
            Some("f") => Ok(false),
            _ => Err(self.protocol_error("pg_try_advisory_lock")),
        }
    }

    /// `pg_advisory_lock` with `lock_timeout` (0: none). `Ok(false)` when the timeout ran out.
    fn wait_lock(&self, s: &mut Session, timeout_ms: u64) -> Result<bool, Error> {
        // One implicit transaction: on a timeout the SET is rolled back with it; on success the
        // last statement puts lock_timeout back. The session-level lock outlives the transaction.
        let sql = format!(
            "SET lock_timeout = {timeout_ms}; SELECT pg_advisory_lock({}); SET lock_timeout = 0",
            self.key
        );
        match s.client.simple_query(&sql) {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
            Err(e) => Err(self.session_error(&e, "cannot wait for")),
        }
    }

    /// Who holds the key, seen from session `s`. With `prove`, a holder that names this host is
    /// pinned and proven local (see [`prove_local`](super::holder::prove_local)).
    pub(super) fn lookup(&self, s: &mut Session, prove: bool) -> Result<Option<Holder>, Error> {
        let key = self.key as u64;
        let sql = format!(
            "SELECT l.pid, a.application_name, host(a.client_addr), a.usename = current_user, \
             a.client_port FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.classid = '{}'::oid AND l.objid = '{}'::oid \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             LIMIT 1",
            key >> 32,
            key & 0xffff_ffff
        );
        let rows = s
            .client
            .simple_query(&sql)
            .map_err(|e| self.session_error(&e, "cannot look up the holder of"))?;
        Ok(last_row(&rows).map(|r| {
            let mut holder = holder_from_row(&r);
            if prove {
                holder.process = super::holder::prove_local(&holder, &r);
            }
            holder
        }))
    }

    /// Increments the fencing counter of this lock and returns it.
    fn next_token(&self, s: &mut Session, table: &str) -> Result<u64, Error> {
        let holder = application_name(
            std::process::id(),
            None,
            &host_name(),
            &format!("{} (backend {})", self.job, s.backend_pid),
        );
        let upsert = format!(
            "INSERT INTO {table} AS f (key, name, token, holder, acquired_at) \
             VALUES ({key}, {name}, 1, {holder}, now()) \
             ON CONFLICT (key) DO UPDATE SET token = f.token + 1, name = EXCLUDED.name, \
             holder = EXCLUDED.holder, acquired_at = EXCLUDED.acquired_at RETURNING token",
            key = self.key,
            name = quote_literal(self.name.as_str()),
            holder = quote_literal(&holder),
        );
        let rows = match s.client.simple_query(&upsert) {
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
                self.create_fencing_table(s, table)?;
                s.client.simple_query(&upsert)
            }
            other => other,
        }
        .map_err(|e| self.fencing_error(&e, table))?;
        last_row(&rows)
            .and_then(|r| r.first().and_then(|v| v.parse().ok()))
            .ok_or_else(|| self.protocol_error("the fencing counter update"))
    }

    /// Creates the fencing table. Concurrent creators queue on a transaction-level advisory lock,
    /// so the second one finds the table made rather than failing on the catalog's unique index.
    fn create_fencing_table(&self, s: &mut Session, table: &str) -> Result<(), Error> {
        let sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}); \
             CREATE TABLE IF NOT EXISTS {table} (key bigint PRIMARY KEY, name text NOT NULL, \
             token bigint NOT NULL, holder text, acquired_at timestamptz NOT NULL DEFAULT now()); \
             COMMIT",
            table_creation_key(table)
        );
        s.client.batch_execute(&sql).map_err(|e| {
            // Leave no transaction open on the session that holds the lock.
            let _ = s.client.batch_execute("ROLLBACK");
            self.fencing_error(&e, table)
        })
    }

    fn fencing_error(&self, e: &postgres::Error, table: &str) -> Error {
        let mut err = pg_error(
            e,
            format!(
                "cannot update the fencing counter of {} in table {table}",
                self.what()
            ),
        );
        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            err = Error::msg(
                ErrorKind::Connection,
                err.context().to_owned(),
                format!(
                    "{}; have the table created and granted (see PostgresLock::fencing_table), \
                     or take the lock without fencing",
                    err.io_error()
                ),
            );
        }
        err
    }

    /// The fencing token of a session that just took the lock; on failure the lock is given
    /// back (never a silent "acquired").
    fn fence(&self, s: &mut Session) -> Result<Option<u64>, Error> {
        let Some(table) = &self.fencing_table else {
            return Ok(None);
        };
        self.next_token(s, table).map(Some).inspect_err(|_| {
            let _ = s
                .client
                .simple_query(&format!("SELECT pg_advisory_unlock({})", self.key));
        })
    }

    /// Takes the lock on a fresh session (one try, or waiting up to `timeout`): the session and
    /// its fencing token, or the holder. Runs on the session thread.
    fn take(&self, timeout: Option<Duration>) -> Result<Taken, Error> {
        let mut s = self.connect()?;
        let holder = if timeout == Some(Duration::ZERO) {
            self.try_once(&mut s)?
        } else {
            self.wait(&mut s, timeout)?
        };
        match holder {
            Some(h) => Ok(Taken::Held(h)),
            None => {
                let token = self.fence(&mut s)?;
                Ok(Taken::Acquired(Box::new(s), token))
            }
        }
    }

    /// `pg_advisory_lock` until `timeout`; `None` when taken, else the holder.
    fn wait(&self, s: &mut Session, timeout: Option<Duration>) -> Result<Option<Holder>, Error> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let timeout_ms = match deadline {
                // lock_timeout is an int of milliseconds; 0 would mean no limit.
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000)
                    .clamp(1, i32::MAX as u128) as u64,
                None => 0,
            };
            if self.wait_lock(s, timeout_ms)? {
                return Ok(None);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.try_once(s);
            }
        }
    }

    /// Runs an acquisition on a session thread; when it takes the lock, the thread stays as the
    /// guard's heartbeat and the only user of the session.
    pub(super) fn acquire_on_thread(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        let lock = self.clone();
        let (tx, rx) = mpsc::channel();
        let thread = spawn_quiet("onlyone-pg-session", move || {
            session_thread(lock, timeout, tx)
        })
        .map_err(|e| self.thread_error(e))?;
        match rx.recv() {
            Ok(Outcome::Acquired {
                orders,
                loss,
                backend_pid,
                token,
            }) => Ok(Acquire::Acquired(Guard::new(
                Box::new(PostgresHeld {
                    orders: Some(orders),
                    thread: Some(thread),
                    loss,
                    key: self.key,
                    backend_pid,
                    token,
                    what: self.what(),
                }),
                BackendKind::Postgres,
                self.resource(),
            ))),
            Ok(Outcome::Held(h)) => {
                let _ = thread.join();
                Ok(Acquire::Held(h.into()))
            }
            Ok(Outcome::Failed(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::msg(
                    ErrorKind::Io,
                    format!("cannot acquire {}", self.what()),
                    "the session thread panicked",
                ))
            }
        }
    }

    pub(super) fn thread_error(&self, e: io::Error) -> Error {
        Error::new(
            ErrorKind::Io,
            format!("cannot start the session thread of {}", self.what()),
            e,
        )
    }

    /// One try on a fresh session; the holder (looked up on the same session) when held.
    fn try_once(&self, s: &mut Session) -> Result<Option<Holder>, Error> {
        for _ in 0..3 {
            if self.try_lock(s)? {
                return Ok(None);
            }
            if let Some(h) = self.lookup(s, false)? {
                return Ok(Some(h));
            }
            // Released between the try and the look-up: try again.
        }
        Ok(Some(Holder::unidentified()))
    }
}

/// What an acquisition on the session thread came to.
enum Taken {
    Acquired(Box<Session>, Option<u64>),
    Held(Holder),
}

/// What the session thread tells the thread that asked for the lock.
enum Outcome {
    Acquired {
        orders: mpsc::Sender<Order>,
        loss: OwnedFd,
        backend_pid: i32,
        token: Option<u64>,
    },
    Held(Holder),
    Failed(Error),
}

/// What a guard asks of its session thread.
enum Order {
    /// Check with the server now; answers why the lock is lost, if it is.
    Verify(mpsc::Sender<Option<String>>),
    /// Unlock and close the session, then end.
    Release(mpsc::Sender<Result<(), String>>),
}

/// A session thread: every statement on a lock's session runs here, never on the caller's
/// thread, so a caller that drives an async runtime (where the sync client's own runtime must
/// not be started) can use the lock too. After taking the lock the thread stays: it checks the
/// session every `heartbeat` and serves the guard's orders until release or drop.
fn session_thread(lock: PostgresLock, timeout: Option<Duration>, tx: mpsc::Sender<Outcome>) {
    let (mut session, token) = match lock.take(timeout) {
        Ok(Taken::Acquired(s, token)) => (*s, token),
        Ok(Taken::Held(h)) => {
            let _ = tx.send(Outcome::Held(h));
            return;
        }
        Err(e) => {
            let _ = tx.send(Outcome::Failed(e));
            return;
        }
    };
    let unlock_sql = format!("SELECT pg_advisory_unlock({})", lock.key);
    // A connected socket pair rather than pipe2(2), which macOS lacks; both ends close-on-exec.
    let (loss, notify) = match std::os::unix::net::UnixStream::pair() {
        Ok((loss, notify)) => (OwnedFd::from(loss), OwnedFd::from(notify)),
        Err(e) => {
            let _ = session.client.simple_query(&unlock_sql);
            let _ = tx.send(Outcome::Failed(Error::new(
                ErrorKind::Io,
                format!("cannot create the loss pipe of {}", lock.what()),
                e,
            )));
            return;
        }
    };
    let (orders, inbox) = mpsc::channel();
    let sent = tx.send(Outcome::Acquired {
        orders,
        loss,
        backend_pid: session.backend_pid,
        token,
    });
    if sent.is_err() {
        let _ = session.client.simple_query(&unlock_sql);
        return;
    }
    drop(tx);
    let (key, backend_pid) = (lock.key, session.backend_pid);
    let mut client = Some(session.client);
    let mut notify = Some(notify);
    let mut lost: Option<String> = None;
    loop {
        // Sleeps on the order channel: release and drop wake it at once. Once the lock is
        // lost there is nothing left to check.
        let order = match lost {
            None => inbox.recv_timeout(lock.heartbeat),
            Some(_) => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match order {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Order::Verify(reply)) => {
                if lost.is_none() {
                    lost = check(&mut client, &mut notify, key, backend_pid);
                }
                let _ = reply.send(lost.clone());
                continue;
            }
            Ok(Order::Release(reply)) => {
                let _ = reply.send(unlock(client.take(), &unlock_sql, lost.as_deref()));
                return;
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The guard was dropped without a word (its Drop sends Release): unlock anyway.
                let _ = unlock(client.take(), &unlock_sql, lost.as_deref());
                return;
            }
        }
        if lost.is_none() {
            lost = check(&mut client, &mut notify, key, backend_pid);
        }
    }
}

/// Unlocks and closes the session: `Err(reason)` when the lock was not held any more.
fn unlock(client: Option<Client>, sql: &str, lost: Option<&str>) -> Result<(), String> {
    if let Some(reason) = lost {
        return Err(reason.to_owned());
    }
    let Some(mut client) = client else {
        return Ok(());
    };
    let result = client.simple_query(sql);
    // Closing ends the session, which frees the lock in any case.
    let _ = client.close();
    match result {
        Ok(rows) => match last_row(&rows).and_then(|r| r.first().cloned()).as_deref() {
            Some("t") => Ok(()),
            _ => Err(
                "the server says this session did not hold the lock at release \
                      (a pooler in transaction mode between onlyone and the server?)"
                    .to_owned(),
            ),
        },
        Err(e) => Err(format!(
            "the session failed while releasing: {}",
            error_text(&e)
        )),
    }
}

/// Asks the server whether the session still holds the lock. On loss: closes the session and
/// the write end of the loss pipe (its read end becomes readable) and returns why.
fn check(
    client: &mut Option<Client>,
    notify: &mut Option<OwnedFd>,
    key: i64,
    backend_pid: i32,
) -> Option<String> {
    let c = client.as_mut()?;
    let k = key as u64;
    let sql = format!(
        "SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
         AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
         AND classid = '{}'::oid AND objid = '{}'::oid \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        k >> 32,
        k & 0xffff_ffff
    );
    let reason = match c.simple_query(&sql) {
        Ok(rows) => {
            let row = last_row(&rows);
            let pid = row
                .as_ref()
                .and_then(|r| r.first().and_then(|v| v.parse::<i32>().ok()));
            let holds = row.as_ref().and_then(|r| r.get(1).cloned()).as_deref() == Some("t");
            match (pid, holds) {
                (Some(p), true) if p == backend_pid => return None,
                (Some(p), _) if p != backend_pid => format!(
                    "the connection now reaches server backend {p} instead of {backend_pid} \
                     (a pooler in transaction mode between onlyone and the server?)"
                ),
                _ => "the server no longer lists this session as holding the lock".to_owned(),
            }
        }
        Err(e) => format!("the session ended: {}", error_text(&e)),
    };
    *notify = None;
    *client = None;
    Some(reason)
}

/// A held PostgreSQL lock: the order channel of its session thread and the loss pipe.
struct PostgresHeld {
    orders: Option<mpsc::Sender<Order>>,
    thread: Option<JoinHandle<()>>,
    loss: OwnedFd,
    key: i64,
    backend_pid: i32,
    token: Option<u64>,
    what: String,
}

impl fmt::Debug for PostgresHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresHeld")
            .field("lock", &self.what)
            .field("key", &self.key)
            .field("backend_pid", &self.backend_pid)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl PostgresHeld {
    fn lost_error(&self, reason: &str) -> Error {
        Error::msg(
            ErrorKind::Lost,
            format!("{} is no longer held", self.what),
            reason.to_owned(),
        )
    }

    /// Sends `order` and waits for the answer; `None` when the session thread is gone.
    fn ask<T>(&self, order: impl FnOnce(mpsc::Sender<T>) -> Order) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.orders.as_ref()?.send(order(tx)).ok()?;
        rx.recv().ok()
    }

    /// Releases through the session thread and waits for it to end. Once only: a second call
    /// (drop after release) does nothing.
    fn finish(&mut self) -> Result<(), Error> {
        let Some(orders) = self.orders.take() else {
            return Ok(());
        };
        let (tx, rx) = mpsc::channel();
        let answer = match orders.send(Order::Release(tx)) {
            Ok(()) => rx.recv().ok(),
            Err(_) => None,
        };
        drop(orders);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        match answer {
            Some(Ok(())) => Ok(()),
            Some(Err(reason)) => Err(self.lost_error(&reason)),
            None => Err(self.lost_error("the session thread ended unexpectedly")),
        }
    }
}

/// Starts a thread with every signal blocked, so that neither it nor the threads it starts (the
/// client runtime's resolver) ever takes a signal meant for the program: a program that reads
/// SIGCHLD or SIGTERM from a signalfd(2) or sigwait(3) blocks them in its own threads, and a
/// process-directed signal goes to any thread that does not block it.
pub(super) fn spawn_quiet<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut old = SigSet::empty();
    // Threads inherit the mask of the thread that creates them: block all, spawn, restore.
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), Some(&mut old));
    let handle = std::thread::Builder::new().name(name.to_owned()).spawn(f);
    if blocked.is_ok() {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    handle
}

impl HeldLock for PostgresHeld {
    /// Asks the server whether this session still holds the lock (one round trip on the session
    /// thread); waits for a heartbeat check in progress, and up to the TCP user timeout when the
    /// network is gone.
    fn verify(&self) -> Result<(), Error> {
        match self.ask(Order::Verify) {
            Some(None) => Ok(()),
            Some(Some(reason)) => Err(self.lost_error(&reason)),
            None => Err(self.lost_error("the session thread ended")),
        }
    }

    fn release(mut self: Box<Self>) -> Result<(), Error> {
        self.finish()
    }

    /// None: the lock lives in a server session, not in a descriptor of this process.
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn fencing_token(&self) -> Option<u64> {
        self.token
    }

    fn loss_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.loss.as_fd())
    }
}

impl Drop for PostgresHeld {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_FENCING_TABLE;
    use super::*;
    use crate::backend::postgres::advisory_key;
    use crate::name::LockName;

    #[test]
    fn the_table_creation_key_is_no_lock_key() {
        let key = |n: &str| advisory_key(&LockName::new(n).unwrap());
        assert_ne!(
            table_creation_key(DEFAULT_FENCING_TABLE),
            key("fencing-table")
        );
    }
}
