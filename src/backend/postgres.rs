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
//! - **Connection:** as libpq users configure it: URL or `key=value` string, `PG*` variables,
//!   password file, `sslmode` up to `verify-full` with feature `postgres-tls`; see
//!   [`PostgresLock::new`].
//! - **Once per window:** [`PostgresLock::claim_window`] (see [`runs`]).
//! - **Server:** PostgreSQL 12 or later (`tcp_user_timeout`).
//!
//! The backend's parts, in `backend/postgres/`: `connect.rs` (the connection: URL, settings,
//! errors), `advisory.rs` (the advisory lock on its session thread, heartbeat, loss signal,
//! fencing token), `holder.rs` (what a holder says of itself in `application_name`),
//! `conninfo.rs` (the URL, libpq's `PG*` variables and password file), `tls.rs` (rustls and the
//! `sslmode`s), [`runs`] (at most one run per time window across hosts, the last run).

mod advisory;
mod connect;
mod conninfo;
mod holder;
pub mod runs;
#[cfg(feature = "postgres-tls")]
mod tls;

use std::fmt;
use std::time::Duration;

use crate::backend::BackendKind;
use crate::error::{Error, ErrorKind};
use crate::lock::{Acquire, Holder, Lock};
use crate::name::{LockName, fnv1a_128};

use advisory::spawn_quiet;
use connect::{describe_server, redact_url};
pub use conninfo::SslMode;
use holder::default_job;

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

/// The advisory lock key of `name`: the high 64 bits of `fnv1a_128("onlyone/" + name)`, as the
/// two's complement `bigint` PostgreSQL takes. `pg_locks` shows it as `classid` (high 32 bits)
/// and `objid` (low 32 bits) with `objsubid = 1`.
pub fn advisory_key(name: &LockName) -> i64 {
    let hash = fnv1a_128(format!("{KEY_NAMESPACE}{}", name.as_str()).as_bytes());
    (hash >> 64) as u64 as i64
}

/// Whether libpq's variables name a server without `DATABASE_URL`: `PGHOST`, `PGDATABASE`,
/// `PGPORT` or `PGSERVICE` (a section of pg_service.conf) is set.
pub fn env_names_a_server() -> bool {
    ["PGHOST", "PGDATABASE", "PGPORT", "PGSERVICE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

/// A PostgreSQL session-level advisory lock. See the [module docs](self).
///
// no_run: it needs a PostgreSQL server at that URL (tests/postgres.rs starts one of its own).
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
    ssl_mode: SslMode,
    #[cfg(feature = "postgres-tls")]
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    warnings: Vec<String>,
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
            .field("ssl_mode", &self.ssl_mode)
            .field("job", &self.job)
            .field("heartbeat", &self.heartbeat)
            .field("fencing_table", &self.fencing_table)
            .finish_non_exhaustive()
    }
}

impl PostgresLock {
    /// The lock `name` on the server of `url`: a `postgres://user:password@host:port/dbname?...`
    /// URL or a `host=... user=...` string, as libpq reads them, with libpq's environment
    /// variables for what it leaves out (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`,
    /// `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGCONNECT_TIMEOUT`) and then the password
    /// file (`passfile`, `PGPASSFILE` or `~/.pgpass`, ignored with a [warning](Self::warnings)
    /// when group or others may read it). An empty `url` takes everything from the environment.
    /// Nothing is connected yet.
    ///
    /// TLS (feature `postgres-tls`) follows `sslmode`: `prefer` (the default) and `allow` use TLS
    /// when the server offers it, without checking its certificate; `require` insists on TLS and
    /// checks the certificate against the root certificate file if there is one; `verify-ca`
    /// checks that a CA of `sslrootcert` (default `~/.postgresql/root.crt`) signed it;
    /// `verify-full` also that it names the host. A build without the feature connects in plain
    /// text and refuses `require` and the verify modes here. Unix-socket connections never use
    /// TLS (as libpq).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the URL or a variable cannot be parsed, the root
    /// certificate file cannot be read, or TLS is asked of a build without it (the message never
    /// shows the password).
    pub fn new(name: LockName, url: &str) -> Result<PostgresLock, Error> {
        let invalid = |why: String| {
            Error::msg(
                ErrorKind::InvalidInput,
                format!(
                    "invalid database URL {:?} for lock {:?}",
                    redact_url(url),
                    name.as_str()
                ),
                why,
            )
        };
        let conninfo::Conninfo {
            mut config,
            tls: tls_settings,
            warnings,
        } = conninfo::parse(url, &|k| std::env::var(k).ok()).map_err(invalid)?;
        let server = describe_server(&config);
        let only_sockets = config
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, postgres::config::Host::Tcp(_)));
        let mode = tls_settings.mode;
        let tls_error = |why: String| {
            Error::msg(
                ErrorKind::InvalidInput,
                format!(
                    "cannot use TLS (sslmode={}) for lock {:?} on {server}",
                    mode.as_str(),
                    name.as_str()
                ),
                why,
            )
        };
        let strict = matches!(
            mode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        );
        config.ssl_mode(match mode {
            _ if only_sockets => postgres::config::SslMode::Disable,
            SslMode::Disable => postgres::config::SslMode::Disable,
            _ if strict => postgres::config::SslMode::Require,
            _ => postgres::config::SslMode::Prefer,
        });
        #[cfg(feature = "postgres-tls")]
        let tls = if mode == SslMode::Disable || only_sockets {
            None
        } else {
            Some(tls::connector(&tls_settings).map_err(tls_error)?)
        };
        #[cfg(not(feature = "postgres-tls"))]
        if strict && !only_sockets {
            return Err(tls_error(
                "this build of onlyone has no TLS (cargo feature `postgres-tls`)".to_owned(),
            ));
        }
        Ok(PostgresLock {
            key: advisory_key(&name),
            name,
            config,
            ssl_mode: mode,
            #[cfg(feature = "postgres-tls")]
            tls,
            warnings,
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

    /// The lock `name` on the server named by the environment variable `DATABASE_URL`, else by
    /// libpq's variables when [`env_names_a_server`] (see [`new`](Self::new)).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when neither names a server, or `DATABASE_URL` is not UTF-8
    /// or not a valid URL.
    pub fn from_env(name: LockName) -> Result<PostgresLock, Error> {
        match std::env::var("DATABASE_URL") {
            Ok(url) => PostgresLock::new(name, &url),
            Err(std::env::VarError::NotPresent) if env_names_a_server() => {
                PostgresLock::new(name, "")
            }
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

    /// What the user should hear about the configuration: a password file that was ignored
    /// (libpq prints these on standard error; onlyone's command-line tool does too).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The `sslmode` in force (from the URL, else `PGSSLMODE`, else `prefer`).
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The server as `postgres://user@host:port/dbname`, without the password.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// What errors call this lock.
    fn what(&self) -> String {
        format!("postgres lock {:?} on {}", self.name.as_str(), self.server)
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
            lock.lookup(&mut s, true)
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
