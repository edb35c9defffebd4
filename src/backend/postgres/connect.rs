//! The connection of a PostgreSQL lock: one session of its own per lock, set up with the
//! keepalive and timeout settings of the [backend's docs](super); the answers of simple queries;
//! the server's description without the password; errors that say what failed.

use std::io;
use std::time::SystemTime;

use postgres::config::Host;
use postgres::error::SqlState;
use postgres::{Client, NoTls, SimpleQueryMessage};

use super::holder::{application_name, host_name};
use super::{CONNECT_TIMEOUT, PostgresLock, SslMode};
use crate::error::{Error, ErrorKind};

impl PostgresLock {
    /// Opens a session of its own for this lock and applies the session settings.
    pub(super) fn connect(&self) -> Result<Session, Error> {
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
        #[cfg(feature = "postgres-tls")]
        let connected = match &self.tls {
            Some(tls) => config.connect(tls.clone()),
            None => config.connect(NoTls),
        };
        #[cfg(not(feature = "postgres-tls"))]
        let connected = config.connect(NoTls);
        let mut client = connected
            .map_err(|e| connect_error(&e, &self.what(), config.get_user(), self.ssl_mode))?;
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

    pub(super) fn session_error(&self, e: &postgres::Error, doing: &str) -> Error {
        pg_error(e, format!("{doing} {}", self.what()))
    }

    pub(super) fn protocol_error(&self, what: &str) -> Error {
        Error::msg(
            ErrorKind::Connection,
            self.what(),
            format!("unexpected answer from the server to {what}"),
        )
    }
}

/// A connection dedicated to one lock.
pub(super) struct Session {
    pub(super) client: Client,
    pub(super) backend_pid: i32,
}

/// The last data row of a simple query's answer, as text columns.
pub(super) fn last_row(messages: &[SimpleQueryMessage]) -> Option<Vec<String>> {
    messages.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(
            (0..row.len())
                .map(|i| row.get(i).unwrap_or("").to_owned())
                .collect(),
        ),
        _ => None,
    })
}

/// A string literal that means `s` whatever `standard_conforming_strings` says.
pub(super) fn quote_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `postgres://user@host:port/dbname` from a parsed configuration: never the password.
pub(super) fn describe_server(config: &postgres::Config) -> String {
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
pub(super) fn error_text(e: &postgres::Error) -> String {
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
pub(super) fn pg_error(e: &postgres::Error, context: String) -> Error {
    Error::new(
        ErrorKind::Connection,
        context,
        io::Error::new(io_kind(e), error_text(e)),
    )
}

/// What a TLS failure under `e` means, in words.
#[cfg(feature = "postgres-tls")]
fn tls_failure(e: &postgres::Error) -> Option<String> {
    super::tls::explain(e)
}

#[cfg(not(feature = "postgres-tls"))]
fn tls_failure(_e: &postgres::Error) -> Option<String> {
    None
}

/// A failed connection attempt, with what it most likely means.
fn connect_error(e: &postgres::Error, what: &str, user: Option<&str>, mode: SslMode) -> Error {
    let text = error_text(e);
    let code = e.code();
    let auth = matches!(
        code,
        Some(c) if *c == SqlState::INVALID_PASSWORD
            || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    ) || text.starts_with("authentication error");
    let (context, kind) = if text.contains("password missing") {
        (
            format!(
                "authentication failed for user {:?} connecting for {what}: the server asks for \
                 a password and none was given (URL, PGPASSWORD or the password file)",
                user.unwrap_or("")
            ),
            io::ErrorKind::PermissionDenied,
        )
    } else if auth {
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
    } else if let Some(why) = tls_failure(e) {
        (
            format!("TLS: {why} (sslmode={}) for {what}", mode.as_str()),
            io::ErrorKind::InvalidData,
        )
    } else if text.contains("server does not support TLS") {
        (
            format!(
                "the server does not offer TLS, which sslmode={} insists on, for {what}",
                mode.as_str()
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
    use crate::name::LockName;

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
}
