//! PostgreSQL backend: a session-level advisory lock (`pg_try_advisory_lock(key)`) held on a
//! connection of its own, for jobs that must run at most once across several machines.
//!
//! - **Exclusion:** the server grants an advisory lock on a 64-bit key to one session at a time.
//!   The key is computed in the client from the lock name ([`advisory_key`]): the high 64 bits of
//!   the [FNV-1a 128-bit hash](crate::name::fnv1a_128) of `onlyone/<name>`, as a signed `bigint`.
//!   The namespace prefix keeps onlyone's keys apart from the small integers other programs use,
//!   and the mapping is stable across releases and platforms (PostgreSQL's own `hashtext` is not
//!   promised to be). Locks are per database: every client of the same database contends,
//!   whatever its role or machine. [`Scope`](crate::Scope) does not apply.
//! - **One connection per held lock**, opened for it and closed on release, never taken from a
//!   pool: a session-level lock belongs to the session. Through pgbouncer in *transaction* mode
//!   two clients share a server session and both would be granted the lock; use a direct
//!   connection or session mode.
//! - **Release:** `pg_advisory_unlock` when the guard is released or dropped; the server frees the
//!   lock by itself when the session ends: the holder exits or is killed (its kernel closes the
//!   connection, the server notices at once), its machine vanishes (TCP keepalives: the session
//!   sets `tcp_keepalives_idle` 5 s, `tcp_keepalives_interval` 2 s, `tcp_keepalives_count` 3 and
//!   `tcp_user_timeout` 10 s, so the server gives up on a silent holder after about 10 s instead of
//!   the system's two hours), or the server restarts (which frees every lock).
//! - **Threads:** every statement runs on a thread of the lock's own, started with every signal
//!   blocked: a try or a wait blocks its caller but never starts the sync client's runtime on the
//!   caller's thread, so the lock works from code that drives an async runtime, and never takes a
//!   signal a program reads with signalfd(2). A held lock keeps its thread as its heartbeat.
//! - **Loss:** the heartbeat checks every second (by default) that the session still
//!   holds the lock. When it does not, [`Guard::verify`](crate::Guard::verify) says
//!   [`ErrorKind::Lost`] and the descriptor of [`Guard::loss_fd`](crate::Guard::loss_fd) becomes
//!   readable. The client side uses the same keepalive settings, so a vanished server is noticed
//!   within about 10 s.
//! - **Holder identity:** the holder's `application_name` is `onlyone <pid> <start> <host> <job>`
//!   (pid, process start time in seconds since the epoch, host name, job; at most 63 bytes, the
//!   server's limit, so a long host name or job is cut). Contenders read it from `pg_locks` joined
//!   with `pg_stat_activity`; `application_name` is visible to every role.
//! - **Fencing token:** every acquisition increments a counter in the table `onlyone_fencing`
//!   (created on first use; see [`PostgresLock::fencing_table`]), returned by
//!   [`Guard::fencing_token`](crate::Guard::fencing_token).
//! - **Waiting:** `pg_advisory_lock` with `lock_timeout` set to the time left: the server wakes
//!   the waiter the moment the holder's session lets go.
//! - **Server:** PostgreSQL 12 or later (`tcp_user_timeout`); no TLS.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use postgres::config::Host;
use postgres::error::SqlState;
use postgres::{Client, NoTls, SimpleQueryMessage};

use crate::backend::BackendKind;
use crate::error::{Error, ErrorKind};
use crate::lock::{Acquire, Guard, HeldLock, Holder, HolderKind, Lock};
use crate::name::{LockName, fnv1a_128};

/// What is hashed in front of the lock name to make the advisory key.
pub const KEY_NAMESPACE: &str = "onlyone/";

/// The fencing counter table, unless [`PostgresLock::fencing_table`] names another.
pub const DEFAULT_FENCING_TABLE: &str = "onlyone_fencing";

/// How often a held lock's session is checked, unless [`PostgresLock::heartbeat`] says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Idle time before the first TCP keepalive probe (client socket and server session).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Time between unanswered keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// Unanswered probes after which the connection is dropped.
pub const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection is dropped (`TCP_USER_TIMEOUT`, tcp(7)).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection timeout used when the URL sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `application_name` the server keeps (`NAMEDATALEN - 1`).
const APPLICATION_NAME_MAX: usize = 63;
/// Room kept for the host name in `application_name`.
const HOST_MAX: usize = 28;

/// The advisory lock key of `name`: the high 64 bits of `fnv1a_128("onlyone/" + name)`, as the
/// two's complement `bigint` PostgreSQL takes. `pg_locks` shows it as `classid` (high 32 bits)
/// and `objid` (low 32 bits) with `objsubid = 1`.
pub fn advisory_key(name: &LockName) -> i64 {
    let hash = fnv1a_128(format!("{KEY_NAMESPACE}{}", name.as_str()).as_bytes());
    (hash >> 64) as u64 as i64
}

/// The key that serialises the creation of the fencing table. Lock names cannot contain `/`,
/// so no lock name hashes the same input.
fn table_creation_key(table: &str) -> i64 {
    (fnv1a_128(format!("{KEY_NAMESPACE}fencing-table/{table}").as_bytes()) >> 64) as u64 as i64
}

/// A PostgreSQL session-level advisory lock. See the [module docs](self).
///
/// ```no_run
/// use onlyone::{Acquire, Lock, LockName, PostgresLock};
/// let lock = PostgresLock::new(LockName::new("nightly-report")?, "postgres://jobs@db.internal/jobs")?;
/// match lock.try_acquire()? {
///     Acquire::Acquired(guard) => println!("fencing token {:?}", guard.fencing_token()),
///     Acquire::Held(holder) => eprintln!("already running: {holder}"),
/// }
/// # Ok::<(), onlyone::Error>(())
/// ```
#[derive(Clone)]
pub struct PostgresLock {
    name: LockName,
    key: i64,
    config: postgres::Config,
    server: String,
    job: String,
    heartbeat: Duration,
    fencing_table: Option<String>,
    keepalive_idle: Duration,
    keepalive_interval: Duration,
    keepalive_retries: u32,
    tcp_user_timeout: Duration,
}

impl fmt::Debug for PostgresLock {
    /// Never shows the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLock")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("server", &self.server)
            .field("job", &self.job)
            .field("heartbeat", &self.heartbeat)
            .field("fencing_table", &self.fencing_table)
            .finish_non_exhaustive()
    }
}

impl PostgresLock {
    /// The lock `name` on the server of `url`: a `postgres://user:password@host:port/dbname?...`
    /// URL or a `host=... user=...` string, as libpq reads them. Nothing is connected yet.
    ///
    /// TLS is not supported: `sslmode=prefer` (the default) connects in plain text and
    /// `sslmode=require` fails to connect.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the URL cannot be parsed (the message never shows the
    /// password).
    pub fn new(name: LockName, url: &str) -> Result<PostgresLock, Error> {
        let config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            Error::msg(
                ErrorKind::InvalidInput,
                format!(
                    "invalid database URL {:?} for lock {:?}",
                    redact_url(url),
                    name.as_str()
                ),
                error_text(&e),
            )
        })?;
        let server = describe_server(&config);
        Ok(PostgresLock {
            key: advisory_key(&name),
            name,
            config,
            server,
            job: default_job(),
            heartbeat: DEFAULT_HEARTBEAT,
            fencing_table: Some(DEFAULT_FENCING_TABLE.to_owned()),
            keepalive_idle: KEEPALIVE_IDLE,
            keepalive_interval: KEEPALIVE_INTERVAL,
            keepalive_retries: KEEPALIVE_RETRIES,
            tcp_user_timeout: TCP_USER_TIMEOUT,
        })
    }

    /// The lock `name` on the server named by the environment variable `DATABASE_URL`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `DATABASE_URL` is unset, not UTF-8, or not a valid URL.
    pub fn from_env(name: LockName) -> Result<PostgresLock, Error> {
        match std::env::var("DATABASE_URL") {
            Ok(url) => PostgresLock::new(name, &url),
            Err(e) => Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("no database URL for the postgres lock {:?}", name.as_str()),
                format!("DATABASE_URL: {e}"),
            )),
        }
    }

    /// What the holder calls its job in `application_name`, shown to contenders as the holder's
    /// command. The default is the program's name (not its arguments: `application_name` is
    /// visible to every user of the database). Cut to fit 63 bytes; non-ASCII becomes `?`.
    pub fn job(mut self, job: impl Into<String>) -> PostgresLock {
        self.job = job.into();
        self
    }

    /// How often a held lock's session is checked (default [`DEFAULT_HEARTBEAT`]): the longest a
    /// guard may go without noticing a server restart. At least 10 ms.
    pub fn heartbeat(mut self, every: Duration) -> PostgresLock {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// The table of fencing counters, instead of `onlyone_fencing` (an identifier, optionally
    /// schema-qualified: `jobs.fencing`). onlyone creates it on first use when the role may; a
    /// role that may not needs it created beforehand:
    /// `CREATE TABLE onlyone_fencing (key bigint PRIMARY KEY, name text NOT NULL, token bigint NOT NULL, holder text, acquired_at timestamptz NOT NULL DEFAULT now())`,
    /// with `SELECT, INSERT, UPDATE` granted to every role that takes the lock.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for anything but `[A-Za-z_][A-Za-z0-9_]*`, once or twice
    /// joined by a dot.
    pub fn fencing_table(mut self, table: &str) -> Result<PostgresLock, Error> {
        let ok = !table.is_empty()
            && table.split('.').count() <= 2
            && table.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if !ok {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("invalid fencing table name {table:?}"),
                "expected an identifier like onlyone_fencing or jobs.fencing",
            ));
        }
        self.fencing_table = Some(table.to_owned());
        Ok(self)
    }

    /// Takes the lock without a fencing token (no table is read, created or written);
    /// [`Guard::fencing_token`](crate::Guard::fencing_token) is then `None`.
    pub fn without_fencing(mut self) -> PostgresLock {
        self.fencing_table = None;
        self
    }

    /// TCP keepalive settings for the client socket and, with `SET`, for the server's side of the
    /// session (defaults 5 s, 2 s, 3 probes).
    pub fn keepalives(mut self, idle: Duration, interval: Duration, retries: u32) -> PostgresLock {
        self.keepalive_idle = idle.max(Duration::from_secs(1));
        self.keepalive_interval = interval.max(Duration::from_secs(1));
        self.keepalive_retries = retries.max(1);
        self
    }

    /// `TCP_USER_TIMEOUT` for both sides of the connection (default 10 s).
    pub fn tcp_user_timeout(mut self, timeout: Duration) -> PostgresLock {
        self.tcp_user_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The advisory key this lock takes; see [`advisory_key`].
    pub fn key(&self) -> i64 {
        self.key
    }

    /// The server as `postgres://user@host:port/dbname`, without the password.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// What errors call this lock.
    fn what(&self) -> String {
        format!("postgres lock {:?} on {}", self.name.as_str(), self.server)
    }

    /// Opens a session of its own for this lock and applies the session settings.
    fn connect(&self) -> Result<Session, Error> {
        let mut config = self.config.clone();
        let me = crate::os::ProcessIdentity::current();
        let started = me
            .start_ticks
            .and_then(crate::os::start_time)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        config
            .application_name(&application_name(me.pid, started, &host_name(), &self.job))
            .keepalives(true)
            .keepalives_idle(self.keepalive_idle)
            .keepalives_interval(self.keepalive_interval)
            .keepalives_retries(self.keepalive_retries)
            .tcp_user_timeout(self.tcp_user_timeout)
            .notice_callback(|_| {});
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = config
            .connect(NoTls)
            .map_err(|e| connect_error(&e, &self.what(), config.get_user()))?;
        // One round trip of plain SETs (a query on pg_settings costs a millisecond on a fresh
        // session). idle_session_timeout exists from PostgreSQL 14: older servers reject the
        // whole batch (one implicit transaction, so nothing stays set) and get it without.
        let setup = |optional: &str| {
            format!(
                "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; \
                 SET tcp_keepalives_count = {}; SET tcp_user_timeout = {}; \
                 SET statement_timeout = 0; SET lock_timeout = 0; {optional}\
                 SELECT pg_backend_pid()",
                self.keepalive_idle.as_secs(),
                self.keepalive_interval.as_secs(),
                self.keepalive_retries,
                self.tcp_user_timeout.as_millis(),
            )
        };
        let rows = match client.simple_query(&setup("SET idle_session_timeout = 0; ")) {
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {
                client.simple_query(&setup(""))
            }
            other => other,
        }
        .map_err(|e| self.session_error(&e, "cannot set up the session for"))?;
        let backend_pid = last_row(&rows)
            .and_then(|r| r.first().and_then(|v| v.parse().ok()))
            .ok_or_else(|| self.protocol_error("pg_backend_pid()"))?;
        Ok(Session {
            client,
            backend_pid,
        })
    }

    fn session_error(&self, e: &postgres::Error, doing: &str) -> Error {
        pg_error(e, format!("{doing} {}", self.what()))
    }

    fn protocol_error(&self, what: &str) -> Error {
        Error::msg(
            ErrorKind::Connection,
            self.what(),
            format!("unexpected answer from the server to {what}"),
        )
    }

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

    /// Who holds the key, seen from session `s`.
    fn lookup(&self, s: &mut Session) -> Result<Option<Holder>, Error> {
        let key = self.key as u64;
        let sql = format!(
            "SELECT l.pid, a.application_name, host(a.client_addr), a.usename = current_user \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
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
        Ok(last_row(&rows).map(|r| holder_from_row(&r)))
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
    fn acquire_on_thread(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
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
                Ok(Acquire::Held(h))
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

    fn thread_error(&self, e: io::Error) -> Error {
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
            if let Some(h) = self.lookup(s)? {
                return Ok(Some(h));
            }
            // Released between the try and the look-up: try again.
        }
        Ok(Some(Holder::unidentified()))
    }
}

impl Lock for PostgresLock {
    fn try_acquire(&self) -> Result<Acquire, Error> {
        self.acquire_on_thread(Some(Duration::ZERO))
    }

    fn acquire_timeout(&self, timeout: Option<Duration>) -> Result<Acquire, Error> {
        self.acquire_on_thread(timeout)
    }

    fn holder(&self) -> Result<Option<Holder>, Error> {
        let lock = self.clone();
        spawn_quiet("onlyone-pg-session", move || {
            let mut s = lock.connect()?;
            lock.lookup(&mut s)
        })
        .map_err(|e| self.thread_error(e))?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::msg(
                ErrorKind::Io,
                format!("cannot look up the holder of {}", self.what()),
                "the session thread panicked",
            ))
        })
    }

    fn backend(&self) -> BackendKind {
        BackendKind::Postgres
    }

    fn name(&self) -> &LockName {
        &self.name
    }

    /// `postgres://user@host:port/dbname advisory key KEY`.
    fn resource(&self) -> String {
        format!("{} advisory key {}", self.server, self.key)
    }
}

/// A connection dedicated to one lock.
struct Session {
    client: Client,
    backend_pid: i32,
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
fn spawn_quiet<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
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

/// The last data row of a simple query's answer, as text columns.
fn last_row(messages: &[SimpleQueryMessage]) -> Option<Vec<String>> {
    messages.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(
            (0..row.len())
                .map(|i| row.get(i).unwrap_or("").to_owned())
                .collect(),
        ),
        _ => None,
    })
}

/// Reads a `pg_locks` row: backend pid, application_name, client address, same role.
fn holder_from_row(row: &[String]) -> Holder {
    let get = |i: usize| row.get(i).map(String::as_str).filter(|s| !s.is_empty());
    let same_role = get(3) != Some("f");
    match get(1).and_then(parse_application_name) {
        Some(app) => Holder {
            kind: if same_role {
                HolderKind::SameUser
            } else {
                HolderKind::OtherUser
            },
            pid: Some(app.pid),
            uid: None,
            started: app
                .started
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            command: Some(app.job).filter(|j| !j.is_empty()),
            host: Some(app.host),
            start_ticks: None,
        },
        // Not an onlyone holder: say what the server knows.
        None => Holder {
            host: get(2)
                .map(str::to_owned)
                .or_else(|| get(0).map(|pid| format!("the database server (backend pid {pid})"))),
            command: get(1).map(str::to_owned),
            ..Holder::unidentified()
        },
    }
}

/// What an onlyone holder says of itself in `application_name`.
#[derive(Debug, PartialEq, Eq)]
struct AppName {
    pid: u32,
    started: Option<u64>,
    host: String,
    job: String,
}

/// `onlyone <pid> <start|-> <host> <job>`, ASCII, at most 63 bytes.
fn application_name(pid: u32, started: Option<u64>, host: &str, job: &str) -> String {
    let clean = |s: &str, space: char| -> String {
        s.chars()
            .map(|c| match c {
                ' ' => space,
                c if c.is_ascii_graphic() => c,
                _ => '?',
            })
            .collect()
    };
    let mut host = clean(host, '_');
    host.truncate(HOST_MAX);
    if host.is_empty() {
        host.push('-');
    }
    let started = started.map_or("-".to_owned(), |s| s.to_string());
    let mut s = format!("onlyone {pid} {started} {host} {}", clean(job, ' '));
    s.truncate(APPLICATION_NAME_MAX);
    s.trim_end().to_owned()
}

fn parse_application_name(s: &str) -> Option<AppName> {
    let mut parts = s.strip_prefix("onlyone ")?.splitn(4, ' ');
    let pid = parts.next()?.parse().ok()?;
    let started = match parts.next()? {
        "-" => None,
        t => Some(t.parse().ok()?),
    };
    let host = parts.next()?.to_owned();
    let job = parts.next().unwrap_or("").to_owned();
    Some(AppName {
        pid,
        started,
        host,
        job,
    })
}

/// This machine's name (gethostname(2)), or `-`.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// The program's name: the last component of `argv[0]`.
fn default_job() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// A string literal that means `s` whatever `standard_conforming_strings` says.
fn quote_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `postgres://user@host:port/dbname` from a parsed configuration: never the password.
fn describe_server(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("postgres://{user}{hosts}/{db}")
}

/// Hides the password of a URL or key/value connection string that could not be parsed. Errs on
/// the side of hiding too much.
pub(crate) fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // URL form: scheme://user:password@host... The password may contain '/' or '@' (unescaped),
    // so the user info runs to the last '@' before the query string.
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let end = out[start..].find('?').map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    // password=... as a query parameter or a key/value pair, possibly 'quoted'.
    let mut searched = 0;
    while let Some(i) = out[searched..].find("password").map(|i| searched + i) {
        let after = i + "password".len();
        let rest = &out[after..];
        let eq = rest.len() - rest.trim_start().len();
        if !rest[eq..].starts_with('=') {
            searched = after;
            continue;
        }
        let value = after + eq + 1;
        let value = value + (out[value..].len() - out[value..].trim_start().len());
        let end = if out[value..].starts_with('\'') {
            out[value + 1..]
                .find('\'')
                .map_or(out.len(), |e| value + 1 + e + 1)
        } else {
            out[value..]
                .find(['&', ' '])
                .map_or(out.len(), |e| value + e)
        };
        out.replace_range(value..end, "***");
        searched = value + 3;
    }
    out
}

/// The text of a postgres error with its causes: `db error` alone says nothing.
fn error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The `io::ErrorKind` underneath a postgres error, if any.
fn io_kind(e: &postgres::Error) -> io::ErrorKind {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return io.kind();
        }
        cause = c.source();
    }
    io::ErrorKind::Other
}

/// An error on an open session: [`ErrorKind::Connection`], or [`ErrorKind::Lost`] material for
/// the caller to decide.
fn pg_error(e: &postgres::Error, context: String) -> Error {
    Error::new(
        ErrorKind::Connection,
        context,
        io::Error::new(io_kind(e), error_text(e)),
    )
}

/// A failed connection attempt, with what it most likely means.
fn connect_error(e: &postgres::Error, what: &str, user: Option<&str>) -> Error {
    let text = error_text(e);
    let code = e.code();
    let auth = matches!(
        code,
        Some(c) if *c == SqlState::INVALID_PASSWORD
            || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    ) || text.starts_with("authentication error");
    let (context, kind) = if auth {
        (
            format!(
                "authentication failed for user {:?} connecting for {what}",
                user.unwrap_or("")
            ),
            io::ErrorKind::PermissionDenied,
        )
    } else if code == Some(&SqlState::INVALID_CATALOG_NAME) {
        (
            format!("no such database for {what}"),
            io::ErrorKind::NotFound,
        )
    } else if text.contains("TLS") || text.contains("tls") {
        (
            format!(
                "cannot connect for {what} (onlyone connects without TLS: use sslmode=disable or prefer)"
            ),
            io::ErrorKind::Unsupported,
        )
    } else {
        (
            format!("cannot connect to the server for {what}"),
            io_kind(e),
        )
    };
    Error::new(ErrorKind::Connection, context, io::Error::new(kind, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable() {
        let key = |n: &str| advisory_key(&LockName::new(n).unwrap());
        // Pinned (computed independently): two releases of onlyone must take the same key for
        // the same name.
        assert_eq!(key("backup"), 0x2489_149c_9fa9_5c45);
        assert_eq!(key("backup"), 2_632_658_120_100_895_813);
        assert_ne!(key("backup"), key("backup2"));
        assert_ne!(
            table_creation_key(DEFAULT_FENCING_TABLE),
            key("fencing-table")
        );
    }

    #[test]
    fn application_name_round_trips_and_fits() {
        let s = application_name(4242, Some(1_795_595_401), "web-01", "nightly backup");
        assert_eq!(s, "onlyone 4242 1795595401 web-01 nightly backup");
        assert_eq!(
            parse_application_name(&s).unwrap(),
            AppName {
                pid: 4242,
                started: Some(1_795_595_401),
                host: "web-01".into(),
                job: "nightly backup".into()
            }
        );
        let long = application_name(
            4_194_304,
            None,
            &"h".repeat(80),
            "jöb with a very long name that does not fit",
        );
        assert!(long.len() <= APPLICATION_NAME_MAX, "{long}");
        assert!(long.is_ascii());
        let parsed = parse_application_name(&long).unwrap();
        assert_eq!(parsed.pid, 4_194_304);
        assert_eq!(parsed.host, "h".repeat(HOST_MAX));
        assert!(parsed.job.starts_with("j?b"), "{}", parsed.job);
        assert_eq!(parse_application_name("psql"), None);
        assert_eq!(parse_application_name("onlyone x - h j"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/jobs"),
            "postgres://app:***@db:5432/jobs"
        );
        assert_eq!(
            redact_url("postgresql://app:p@ss@db/jobs?password=x&sslmode=disable"),
            "postgresql://app:***@db/jobs?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db password=hunter2 user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(redact_url("postgres://db/jobs"), "postgres://db/jobs");
        assert_eq!(
            redact_url("postgres://app:pa/ss@db:x/jobs"),
            "postgres://app:***@db:x/jobs"
        );
        assert_eq!(
            redact_url("host=db password = 'a b' user=app"),
            "host=db password = *** user=app"
        );
    }

    #[test]
    fn server_description_has_no_password() {
        let c: postgres::Config = "postgres://app:hunter2@db.example:6543/jobs"
            .parse()
            .unwrap();
        assert_eq!(describe_server(&c), "postgres://app@db.example:6543/jobs");
        let err = PostgresLock::new(
            LockName::new("x").unwrap(),
            "postgres://app:hunter2@db:notaport/jobs",
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("invalid database URL"), "{err}");
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("it's"), "E'it''s'");
        assert_eq!(quote_literal("a\\'b"), "E'a\\\\''b'");
    }

    #[test]
    fn fencing_table_names_are_checked() {
        let lock = PostgresLock::new(LockName::new("x").unwrap(), "postgres://db/x").unwrap();
        assert!(lock.clone().fencing_table("jobs.fencing").is_ok());
        for bad in ["", "a;drop", "1a", "a.b.c", "a b", "\"a\""] {
            let err = lock.clone().fencing_table(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
