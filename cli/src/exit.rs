//! Exit statuses (sysexits.h for onlyone's own failures) and the error type subcommands return.

use std::fmt;
use std::io;

use onlyone::ErrorKind;

/// Command line usage error: unknown option, bad value, bad name, empty command.
pub const USAGE: u8 = 64;
/// A file onlyone must read is not usable (a PID file it did not write).
pub const DATAERR: u8 = 65;
/// The lock directory does not exist.
pub const NOINPUT: u8 = 66;
/// A service is unavailable: backend not compiled in, server unreachable.
pub const UNAVAILABLE: u8 = 69;
/// Internal software error.
pub const SOFTWARE: u8 = 70;
/// An operating system call failed.
pub const OSERR: u8 = 71;
/// The lock file cannot be created (not a directory, read-only, a symbolic link in the way).
pub const CANTCREAT: u8 = 73;
/// The default exit status when the lock is held (EX_TEMPFAIL); `-E` changes it.
pub const TEMPFAIL: u8 = 75;
/// The lock was lost while the job ran (EX_PROTOCOL: the lock server ended our session); onlyone
/// stopped the job.
pub const LOST: u8 = 76;
/// Permission denied.
pub const NOPERM: u8 = 77;
/// `--once-per`: the current window's run already happened (or is happening) on some host; the
/// job was not started.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub const ALREADY_RAN: u8 = 79;
/// `--stale-after`: the lock is held, and has been for longer than the limit; the job was not
/// started.
pub const STALE: u8 = 80;
/// `--max-runtime`: the job ran out of time and onlyone stopped it (as timeout(1) exits).
#[cfg_attr(windows, allow(dead_code))]
pub const TIMED_OUT: u8 = 124;
/// The command was found but could not be executed (as in sh(1)).
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found (as in sh(1)).
pub const NOT_FOUND: u8 = 127;

/// The exit statuses of `onlyone run`, status and meaning: shown by `onlyone run --help`
/// ([`table`]) and as a table in the man page (`onlyone generate man`); the README has them too.
pub const STATUSES: [(&str, &str); 17] = [
    ("the job's own", "the job ran; its status is passed through"),
    ("128+N", "the job was killed by signal N"),
    (
        "75",
        "the lock is held (EX_TEMPFAIL; -E/--conflict-exit-code changes it)",
    ),
    (
        "76",
        "the lock was lost while the job ran (its PostgreSQL session ended, its lock file was \
         deleted or replaced); onlyone stopped the job if it still ran (SIGTERM, SIGKILL after \
         --kill-after)",
    ),
    (
        "79",
        "--once-per: a run of this name already started in the current window (on any host); \
         the job was not started",
    ),
    (
        "80",
        "--stale-after: the lock is held and has been for AGE or longer (a stuck holder?); the \
         job was not started",
    ),
    (
        "124",
        "--max-runtime: the job ran out of time; onlyone sent its process group SIGTERM, and \
         SIGKILL after --kill-after if it still ran",
    ),
    ("126", "COMMAND was found but could not be executed"),
    ("127", "COMMAND was not found"),
    (
        "64",
        "usage: bad option, value, duration, lock name, empty command",
    ),
    (
        "65",
        "a PID file onlyone did not write is in the way (left untouched)",
    ),
    ("66", "the lock directory does not exist"),
    (
        "69",
        "the backend is not available in this build or on this system; or --replace cannot \
         prove which process holds the lock (no pidfds on this system, another PID namespace or \
         host, ...): it signals none",
    ),
    ("70", "internal error"),
    ("71", "a system call failed (fork, signalfd, ...)"),
    (
        "73",
        "the lock file cannot be created (not a directory, read-only, a symbolic link, a kernel \
         file system such as /proc)",
    ),
    ("77", "permission denied"),
];

/// What [`STATUSES`] promises about onlyone's own failures.
pub const NEVER: &str = "onlyone's own failures never exit with 0 or 75.";

/// [`STATUSES`] as text for `--help`: two columns, the meanings wrapped at 100 columns.
pub fn table() -> String {
    const INDENT: usize = 21;
    const WIDTH: usize = 100;
    let mut out = String::from("Exit status:\n");
    for (status, meaning) in STATUSES {
        let mut line = format!("  {status:<width$}", width = INDENT - 2);
        let mut first = true;
        for word in meaning.split(' ') {
            if !first && line.len() + 1 + word.len() > WIDTH {
                out += &line;
                out.push('\n');
                line = " ".repeat(INDENT);
                first = true;
            }
            if !first {
                line.push(' ');
            }
            line += word;
            first = false;
        }
        out += &line;
        out.push('\n');
    }
    out += NEVER;
    out
}

/// A failure of onlyone itself: a message for stderr and an exit status.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A failed system call, with what was being done.
    pub fn os(what: &str, e: impl Into<io::Error>) -> Failure {
        let e = e.into();
        let code = match e.kind() {
            io::ErrorKind::PermissionDenied => NOPERM,
            _ => OSERR,
        };
        Failure::new(code, format!("{what}: {e}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<onlyone::Error> for Failure {
    fn from(e: onlyone::Error) -> Failure {
        Failure::new(for_error(&e), e.to_string())
    }
}

/// The exit status for a library error.
pub fn for_error(e: &onlyone::Error) -> u8 {
    match e.kind() {
        ErrorKind::InvalidName | ErrorKind::InvalidInput => USAGE,
        ErrorKind::LockDir => match e.io_error().kind() {
            io::ErrorKind::NotFound => NOINPUT,
            io::ErrorKind::PermissionDenied => NOPERM,
            _ => CANTCREAT,
        },
        ErrorKind::Symlink => CANTCREAT,
        ErrorKind::Corrupt => DATAERR,
        ErrorKind::Unsupported | ErrorKind::Connection => UNAVAILABLE,
        ErrorKind::Lost => SOFTWARE,
        _ => OSERR,
    }
}

/// The exit status for a command that could not be started, as sh(1) gives it.
pub fn for_spawn_error(e: &io::Error) -> u8 {
    match e.kind() {
        io::ErrorKind::NotFound => NOT_FOUND,
        _ => match e.raw_os_error() {
            // Errors of execve(2) itself: the file is there but cannot be run.
            Some(n) if EXEC_ERRORS.contains(&n) || OS_EXEC_ERRORS.contains(&n) => CANNOT_EXECUTE,
            _ => OSERR,
        },
    }
}

/// execve(2) errors every Unix has (POSIX).
#[cfg(unix)]
const EXEC_ERRORS: [i32; 8] = [
    nix::libc::EACCES,
    nix::libc::EPERM,
    nix::libc::ENOEXEC,
    nix::libc::EISDIR,
    nix::libc::ENOTDIR,
    nix::libc::ELOOP,
    nix::libc::ETXTBSY,
    nix::libc::E2BIG,
];

/// CreateProcessW errors for a file that is there but cannot be run: access denied, not a
/// valid Win32 application.
#[cfg(windows)]
const EXEC_ERRORS: [i32; 2] = [5, 193];

cfg_if::cfg_if! {
    if #[cfg(any(target_os = "linux", target_os = "android"))] {
        /// Linux: a bad ELF interpreter or shared library.
        const OS_EXEC_ERRORS: &[i32] = &[nix::libc::ELIBBAD];
    } else if #[cfg(any(target_os = "macos", target_os = "ios"))] {
        /// macOS: not an executable, the wrong CPU type, a bad Mach-O file.
        const OS_EXEC_ERRORS: &[i32] =
            &[nix::libc::EBADEXEC, nix::libc::EBADARCH, nix::libc::EBADMACHO];
    } else {
        const OS_EXEC_ERRORS: &[i32] = &[];
    }
}
