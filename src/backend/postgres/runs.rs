//! The runs table: at most one run of a name per time window, across every host that shares the
//! server, and the last run of a name for `status`.
//!
//! Windows are counted on the server's clock, never the hosts': window number
//! `floor(extract(epoch from now()) / period)`, so they are aligned to the Unix epoch, which is
//! UTC: `1h` windows start on the hour, `1d` windows at 00:00 UTC. A run claims its window with
//! one statement, `INSERT ... ON CONFLICT DO NOTHING RETURNING`: of any number of hosts claiming
//! the same window at the same moment, the server lets exactly one insert. The row records the
//! claimant's host and pid and the server's `now()` as the start; [`WindowRun::finish`] adds the
//! end and the exit status.
//!
//! The table (default `onlyone_runs`) is created on first use when the role may; otherwise
//! create it beforehand and grant `SELECT, INSERT, UPDATE` on it to every role that runs jobs:
//!
//! ```sql
//! CREATE TABLE onlyone_runs (
//!     name        text        NOT NULL,  -- the lock name
//!     period_secs bigint      NOT NULL,  -- the window length
//!     window_no   bigint      NOT NULL,  -- floor(epoch of the server's now() / period_secs)
//!     host        text        NOT NULL,  -- who ran it
//!     pid         integer     NOT NULL,
//!     started_at  timestamptz NOT NULL DEFAULT now(),  -- the server's clock
//!     ended_at    timestamptz,           -- NULL while running, or if the runner died
//!     exit_status integer,               -- the runner's exit status (the job's, or 128+N)
//!     PRIMARY KEY (name, period_secs, window_no)
//! );
//! ```

use std::time::Duration;

use postgres::error::SqlState;

use super::PostgresLock;
use super::advisory::spawn_quiet;
use super::connect::{Session, last_row, pg_error, quote_literal};
use super::holder::host_name;
use crate::error::{Error, ErrorKind};
use crate::name::fnv1a_128;

/// The runs table.
pub const RUNS_TABLE: &str = "onlyone_runs";

/// One recorded run of a name.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// The host that ran it (its host name).
    pub host: String,
    /// The pid of the process that claimed the window there.
    pub pid: u32,
    /// The window length.
    pub period: Duration,
    /// The window's number: the server's epoch seconds at the start, divided by the period.
    pub window: i64,
    /// When it started, on the server's clock: seconds since the epoch.
    pub started: f64,
    /// When it ended, on the server's clock; `None` while it runs or if its runner died.
    pub ended: Option<f64>,
    /// The exit status recorded at the end.
    pub exit_status: Option<i32>,
}

/// What a claim on the current window came to.
#[derive(Debug)]
pub enum Claim {
    /// This process has the window: run the job, then [`WindowRun::finish`].
    Claimed(WindowRun),
    /// The window's run already happened (or is happening): this one.
    AlreadyRan(RunRecord),
}

/// A claimed window, to be finished with the job's exit status.
#[derive(Debug)]
pub struct WindowRun {
    lock: Box<PostgresLock>,
    /// The row as inserted.
    pub record: RunRecord,
}

impl WindowRun {
    /// Records the end (the server's `now()`) and `exit_status` of the run.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`] when the server cannot be reached or the row updated.
    pub fn finish(self, exit_status: i32) -> Result<(), Error> {
        let r = &self.record;
        let sql = format!(
            "UPDATE {RUNS_TABLE} SET ended_at = now(), exit_status = {exit_status} \
             WHERE name = {} AND period_secs = {} AND window_no = {}",
            quote_literal(self.lock.name.as_str()),
            r.period.as_secs(),
            r.window
        );
        self.lock
            .on_session("cannot record the end of the run of", move |lock, s| {
                s.client
                    .simple_query(&sql)
                    .map(|_| ())
                    .map_err(|e| lock.runs_error(&e, "cannot record the end of the run of"))
            })
    }
}

impl PostgresLock {
    /// Claims the current window of length `period` (whole seconds, at least 1) for a run of
    /// this name: see the [module docs](self). Independent of the advisory lock: take the lock
    /// first to also keep two runs from overlapping.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a period under a second; [`ErrorKind::Connection`] when
    /// the server cannot be reached or the table cannot be created or written (the message
    /// says which grants are missing).
    pub fn claim_window(&self, period: Duration) -> Result<Claim, Error> {
        let secs = period.as_secs();
        if secs == 0 || secs > i64::MAX as u64 {
            return Err(Error::msg(
                ErrorKind::InvalidInput,
                format!("invalid window for {}", self.what()),
                format!("{period:?}: expected whole seconds, at least 1"),
            ));
        }
        let name = quote_literal(self.name.as_str());
        let window = format!("floor(extract(epoch from now()) / {secs})::bigint");
        let insert = format!(
            "INSERT INTO {RUNS_TABLE} (name, period_secs, window_no, host, pid, started_at) \
             VALUES ({name}, {secs}, {window}, {host}, {pid}, now()) ON CONFLICT DO NOTHING \
             RETURNING {COLUMNS}",
            host = quote_literal(&host_name()),
            pid = std::process::id(),
        );
        let existing = format!(
            "SELECT {COLUMNS} FROM {RUNS_TABLE} WHERE name = {name} AND period_secs = {secs} \
             AND window_no = {window}"
        );
        self.on_session("cannot claim the window of", move |lock, s| {
            let rows = lock.with_table(s, &insert)?;
            if let Some(row) = last_row(&rows) {
                let record = lock.record(&row)?;
                return Ok(Claim::Claimed(WindowRun {
                    lock: Box::new(lock.clone()),
                    record,
                }));
            }
            let rows = s
                .client
                .simple_query(&existing)
                .map_err(|e| lock.runs_error(&e, "cannot read the run of"))?;
            match last_row(&rows) {
                Some(row) => Ok(Claim::AlreadyRan(lock.record(&row)?)),
                // The window ended between the two statements: the next one is free.
                None => Err(Error::msg(
                    ErrorKind::Connection,
                    format!("cannot claim the window of {}", lock.what()),
                    "the window changed while it was claimed; try again",
                )),
            }
        })
    }

    /// The most recent run of this name in the runs table (any period); `None` when there is
    /// none or no table.
    ///
    /// # Errors
    /// [`ErrorKind::Connection`] when the server cannot be reached or the table read.
    pub fn last_run(&self) -> Result<Option<RunRecord>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {RUNS_TABLE} WHERE name = {} \
             ORDER BY started_at DESC LIMIT 1",
            quote_literal(self.name.as_str())
        );
        self.on_session("cannot read the last run of", move |lock, s| {
            match s.client.simple_query(&sql) {
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
                Err(e) => Err(lock.runs_error(&e, "cannot read the last run of")),
                Ok(rows) => last_row(&rows).map(|r| lock.record(&r)).transpose(),
            }
        })
    }

    /// Runs `f` on a fresh session, on a thread of its own (as every statement of this backend).
    fn on_session<T: Send + 'static>(
        &self,
        doing: &'static str,
        f: impl FnOnce(&PostgresLock, &mut Session) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let lock = self.clone();
        spawn_quiet("onlyone-pg-runs", move || {
            let mut s = lock.connect()?;
            let out = f(&lock, &mut s);
            let _ = s.client.close();
            out
        })
        .map_err(|e| self.thread_error(e))?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::msg(
                ErrorKind::Io,
                format!("{doing} {}", self.what()),
                "the session thread panicked",
            ))
        })
    }

    /// Runs `sql`, creating the table first if it does not exist.
    fn with_table(
        &self,
        s: &mut Session,
        sql: &str,
    ) -> Result<Vec<postgres::SimpleQueryMessage>, Error> {
        match s.client.simple_query(sql) {
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
                // Concurrent creators queue on a transaction-level advisory lock.
                let create = format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({}); {CREATE}; COMMIT",
                    (fnv1a_128(b"onlyone/runs-table/onlyone_runs") >> 64) as u64 as i64
                );
                s.client.batch_execute(&create).map_err(|e| {
                    let _ = s.client.batch_execute("ROLLBACK");
                    self.runs_error(&e, "cannot create the runs table for")
                })?;
                s.client.simple_query(sql)
            }
            other => other,
        }
        .map_err(|e| self.runs_error(&e, "cannot claim the window of"))
    }

    fn record(&self, row: &[String]) -> Result<RunRecord, Error> {
        let bad = || self.protocol_error("the runs table");
        let get = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let num = |i: usize| get(i).parse::<f64>().ok();
        Ok(RunRecord {
            host: get(0).to_owned(),
            pid: get(1).parse().map_err(|_| bad())?,
            period: Duration::from_secs(get(2).parse().map_err(|_| bad())?),
            window: get(3).parse().map_err(|_| bad())?,
            started: num(4).ok_or_else(bad)?,
            ended: num(5),
            exit_status: get(6).parse().ok(),
        })
    }

    fn runs_error(&self, e: &postgres::Error, doing: &str) -> Error {
        let mut err = pg_error(e, format!("{doing} {} in table {RUNS_TABLE}", self.what()));
        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            err = Error::msg(
                ErrorKind::Connection,
                err.context().to_owned(),
                format!(
                    "{}; have the table created and SELECT, INSERT, UPDATE granted (its schema \
                     is in the docs of onlyone::backend::postgres::runs)",
                    err.io_error()
                ),
            );
        }
        err
    }
}

/// The columns [`PostgresLock::record`] reads, epoch seconds for the times.
const COLUMNS: &str = "host, pid, period_secs, window_no, extract(epoch from started_at), \
                       extract(epoch from ended_at), exit_status";

/// The table as onlyone creates it.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS onlyone_runs (name text NOT NULL, \
                      period_secs bigint NOT NULL, window_no bigint NOT NULL, host text NOT NULL, \
                      pid integer NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), \
                      ended_at timestamptz, exit_status integer, \
                      PRIMARY KEY (name, period_secs, window_no))";
