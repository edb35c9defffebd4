//! `--log`: where onlyone reports what it did instead of running the job or beside it — a skipped
//! run (lock held, window already run), a replaced holder, a lost lock, a job stopped at
//! `--max-runtime` — one line each, with the lock's name, backend and holder.
//!
//! Destinations ([`Dest`]):
//! - `stderr`: the line on standard error only (what onlyone always did);
//! - `journal`: also to the systemd journal through its native protocol (crate
//!   `systemd-journal-logger`; a datagram to `/run/systemd/journal/socket`), with structured
//!   fields `ONLYONE_EVENT=`, `ONLYONE_NAME=`, `ONLYONE_BACKEND=`, `ONLYONE_HOLDER=`,
//!   `ONLYONE_HOLDER_PID=`, `ONLYONE_JOB_PID=`; where no journal listens (containers, systems
//!   without systemd), to syslog instead, else standard error alone, with one warning;
//! - `syslog`: also to syslog, RFC 3164 on the `/dev/log` socket (crate `syslog`, facility
//!   `user`, tag `onlyone`); where none listens, standard error alone, with one warning;
//! - `none`: nowhere, not even standard error (onlyone's own errors are still printed).
//!
//! The default is `stderr` when standard error is a terminal, else `journal` (cron, a timer):
//! the line still goes to standard error too, where cron mails it.
//!
//! A log that cannot be written never fails the job. For tests, `ONLYONE_SYSLOG_SOCKET` names
//! another syslog socket than `/dev/log` (the journal's path is fixed by its crate: tests run
//! journald in a mount namespace of their own).

use std::cell::RefCell;
use std::io::IsTerminal;

/// The syslog socket, unless `ONLYONE_SYSLOG_SOCKET` names another.
#[cfg(unix)]
const SYSLOG_SOCKET: &str = "/dev/log";

/// `--log` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dest {
    /// The systemd journal (structured fields), else syslog, beside standard error
    Journal,
    /// syslog (/dev/log), beside standard error
    Syslog,
    /// Standard error only
    Stderr,
    /// Nowhere
    None,
}

/// What happened, the `ONLYONE_EVENT=` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(windows, allow(dead_code))]
pub enum Event {
    /// The job was not started: the lock is held.
    Skipped,
    /// The job was not started: the lock has been held longer than `--stale-after`.
    Stale,
    /// The job was not started: `--once-per`'s window already had its run.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    AlreadyRan,
    /// `--replace` stopped the holder.
    Replaced,
    /// The lock was lost while the job ran.
    Lost,
    /// `--max-runtime` stopped the job.
    Timeout,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Skipped => "skipped",
            Event::Stale => "stale",
            Event::AlreadyRan => "already-ran",
            Event::Replaced => "replaced",
            Event::Lost => "lost",
            Event::Timeout => "timeout",
        }
    }
}

/// Where the lines go for one `onlyone run`, and the fields every line carries.
pub struct Log {
    stderr: bool,
    system: RefCell<System>,
    name: String,
    backend: String,
}

/// The system log, opened on first use.
enum System {
    /// Not asked for.
    Off,
    /// Asked for, not opened yet; whether `--log` named it (then a missing log is warned of).
    Want(Dest, bool),
    #[cfg(target_os = "linux")]
    Journal(Box<systemd_journal_logger::JournalLog>),
    #[cfg(unix)]
    Syslog(Box<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>),
    /// Nothing listens: standard error alone.
    Absent,
}

impl Log {
    /// The log for lock `name` of `backend`, to `dest` (`None`: the default, see the module
    /// docs); `quiet` (-q) keeps the conflict lines off standard error, as before.
    pub fn new(dest: Option<Dest>, name: &str, backend: &str) -> Log {
        let explicit = dest.is_some();
        let dest = dest.unwrap_or(if std::io::stderr().is_terminal() {
            Dest::Stderr
        } else {
            Dest::Journal
        });
        Log {
            stderr: dest != Dest::None,
            system: RefCell::new(match dest {
                Dest::Journal | Dest::Syslog => System::Want(dest, explicit),
                Dest::Stderr | Dest::None => System::Off,
            }),
            name: name.to_owned(),
            backend: backend.to_owned(),
        }
    }

    /// Reports `event`: `line` (without the `onlyone: ` prefix) on standard error unless
    /// `quiet`, and to the system log with the holder's description and pid, and the job's pid.
    pub fn event(
        &self,
        event: Event,
        line: &str,
        quiet: bool,
        holder: Option<&onlyone::Holder>,
        job: Option<u32>,
    ) {
        if self.stderr && !quiet {
            say!("onlyone: {line}");
        }
        let mut fields: Vec<(&str, String)> = vec![
            ("ONLYONE_EVENT", event.as_str().to_owned()),
            ("ONLYONE_NAME", self.name.clone()),
            ("ONLYONE_BACKEND", self.backend.clone()),
        ];
        if let Some(h) = holder {
            fields.push(("ONLYONE_HOLDER", h.to_string()));
            if let Some(pid) = h.pid {
                fields.push(("ONLYONE_HOLDER_PID", pid.to_string()));
            }
        }
        if let Some(pid) = job {
            fields.push(("ONLYONE_JOB_PID", pid.to_string()));
        }
        let priority = match event {
            Event::Skipped | Event::AlreadyRan => ::log::Level::Info,
            Event::Replaced => ::log::Level::Warn,
            Event::Stale | Event::Lost | Event::Timeout => ::log::Level::Error,
        };
        self.system_line(priority, line, &fields);
    }

    fn system_line(&self, level: ::log::Level, line: &str, fields: &[(&str, String)]) {
        // Only the journal carries the fields; syslog has the line.
        #[cfg(not(target_os = "linux"))]
        let _ = (fields, line, level);
        let mut system = self.system.borrow_mut();
        if let System::Want(dest, explicit) = *system {
            *system = open(dest, explicit);
        }
        #[cfg(windows)]
        let _ = (line, level);
        #[cfg(unix)]
        let result = match &mut *system {
            System::Off | System::Want(..) | System::Absent => return,
            #[cfg(target_os = "linux")]
            System::Journal(journal) => {
                let kvs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                journal.journal_send(
                    &::log::Record::builder()
                        .args(format_args!("{line}"))
                        .level(level)
                        .target("onlyone")
                        .key_values(&kvs)
                        .build(),
                )
            }
            #[cfg(unix)]
            System::Syslog(syslog) => {
                let message = format!("{}: {line}", self.name);
                match level {
                    ::log::Level::Error => syslog.err(message),
                    ::log::Level::Warn => syslog.warning(message),
                    _ => syslog.info(message),
                }
                .map_err(std::io::Error::other)
            }
        };
        #[cfg(unix)]
        if let Err(e) = result {
            say!("onlyone: warning: cannot write to the system log: {e}");
            *system = System::Absent;
        }
    }
}

/// Opens the journal (falling back to syslog) or syslog; says on standard error when neither
/// listens and `--log` asked for one (the default falls back silently: a container without a
/// system log would otherwise get a warning mailed by cron on every run).
fn open(dest: Dest, explicit: bool) -> System {
    #[cfg(target_os = "linux")]
    if dest == Dest::Journal {
        if let Ok(journal) = systemd_journal_logger::JournalLog::empty() {
            return System::Journal(Box::new(
                journal.with_syslog_identifier("onlyone".to_owned()),
            ));
        }
    }
    #[cfg(windows)]
    {
        // No syslog on Windows (the Event Log is not written): standard error alone.
        if explicit {
            say!("onlyone: warning: no system log on Windows; logging to standard error only");
        }
        let _ = dest;
        System::Absent
    }
    #[cfg(unix)]
    let path = std::env::var_os("ONLYONE_SYSLOG_SOCKET").unwrap_or_else(|| SYSLOG_SOCKET.into());
    #[cfg(unix)]
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_USER,
        hostname: None,
        process: "onlyone".to_owned(),
        pid: std::process::id(),
    };
    #[cfg(unix)]
    match syslog::unix_custom(formatter, &path) {
        Ok(logger) => System::Syslog(Box::new(logger)),
        Err(_) if !explicit => System::Absent,
        Err(e) => {
            let what = if dest == Dest::Journal && cfg!(target_os = "linux") {
                "no journal (/run/systemd/journal/socket) nor syslog"
            } else {
                "no syslog"
            };
            say!(
                "onlyone: warning: {what} listens ({}: {e}); logging to standard error only",
                std::path::Path::new(&path).display()
            );
            System::Absent
        }
    }
}
