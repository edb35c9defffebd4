//! The command line: the clap definitions only (main.rs parses and dispatches).
//!
//! To add a subcommand: a variant in [`Command`] and an arm in `main.rs`'s `run`; the
//! subcommand's `main` returns `Result<u8, Failure>` (its exit status, or a failure printed as
//! `onlyone: MESSAGE`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use onlyone::{BackendKind, Scope};

use crate::exit;

#[derive(Parser, Debug)]
#[command(
    name = "onlyone",
    version,
    about = "Run a command at most once at a time, and say who holds the lock when it does not",
    long_about = "Run a command at most once at a time, and say who holds the lock when it does \
                  not.\n\nonlyone wraps a command the way flock(1) does: `onlyone run -N backup -- \
                  backup.sh` runs backup.sh unless another `onlyone run -N backup` is running, \
                  and then exits with status 75 and names the holder. See `onlyone run --help`.\
                  \n\nMan pages and shell completions: `onlyone generate --help`.",
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line. `onlyone run ...`, the hot path of every cron run, is first
    /// parsed by the `run` subcommand's definition alone: building clap's definition of every
    /// subcommand was half the instructions of a whole `onlyone run -N x -- true` (callgrind,
    /// BENCHMARKS.md "CLI start-up"). Whatever that does not accept — an error, `--help`,
    /// `--version` (which only the whole tree defines) — is parsed again by the whole
    /// definition, so that messages, help and exit statuses are the whole tree's; what it does
    /// accept, the whole tree parses the same (a test compares them).
    pub fn parse_args(args: Vec<OsString>) -> Result<Cli, clap::Error> {
        if args.get(1).is_some_and(|a| a == "run") {
            if let Some(run) = parse_run_alone(&args[1..]) {
                return Ok(Cli {
                    command: Command::Run(run),
                });
            }
        }
        <Cli as Parser>::try_parse_from(args)
    }
}

/// `run ARGS...` parsed by the `run` subcommand's arguments alone; `None` where they do not
/// parse (the whole definition then says why).
fn parse_run_alone(args: &[OsString]) -> Option<RunArgs> {
    use clap::{Args as _, FromArgMatches as _};
    let command = RunArgs::augment_args(clap::Command::new("run"));
    let matches = command.try_get_matches_from(args).ok()?;
    RunArgs::from_arg_matches(&matches).ok()
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run COMMAND while holding a lock; if another process holds it, exit 75 and name it
    #[command(long_about = RUN_ABOUT, after_long_help = exit::table())]
    Run(RunArgs),
    /// Say who holds a lock, without taking it (exit 0 held, 1 free)
    Status(StatusArgs),
    /// List every onlyone lock held on this machine, with its holder
    List(ListArgs),
    /// Remove a PID file whose holder cannot be judged from here (another PID namespace, hidden
    /// by hidepid=2); without --force, only say why the lock counts as held
    #[command(name = "break-lock", long_about = BREAK_LOCK_ABOUT)]
    BreakLock(BreakLockArgs),
    /// Write the man pages or a shell completion script (see `onlyone generate --help`)
    #[command(long_about = GENERATE_ABOUT)]
    Generate(GenerateArgs),
    /// Measure every backend on this machine: latencies, SIGKILL release, behaviour matrix
    Compare(crate::compare::CompareArgs),
}

/// Which lock: backend, scope and directory (the name is given by each subcommand).
#[derive(Args, Debug, Clone)]
pub struct LockArgs {
    /// Backend: abstract (Linux default), flock, pidfile, postgres [default: the build's default]
    #[arg(short = 'b', long, value_name = "BACKEND", value_parser = parse_backend)]
    pub backend: Option<BackendKind>,
    /// Who shares the lock: user (only your own processes contend) or system (everyone)
    #[arg(long, value_name = "SCOPE", default_value = "user", value_parser = parse_scope)]
    pub scope: Scope,
    /// Directory for lock files (flock, pidfile backends); DIR must exist (onlyone creates only
    /// its default directory, see --help) [default: /var/tmp/onlyone-UID; /run/lock/onlyone with
    /// --scope system]
    ///
    /// The default directory is, with --scope user: /var/tmp/onlyone-UID, the same from cron, a
    /// login shell, a systemd user service and sudo -u, and not removed at logout (a lock there
    /// also takes the same lock in the directory older versions used - $XDG_RUNTIME_DIR/onlyone, else
    /// /run/user/UID/onlyone, else /tmp/onlyone-UID - so that old and new versions exclude each
    /// other); with --scope system: /run/lock/onlyone. `onlyone run` creates the default directory
    /// when it is missing (its last component only: the parent must exist), with mode 0700 for
    /// --scope user; /run/lock/onlyone only as root, mode 1777. `status` and `list` never create
    /// it. An existing default directory of --scope user must belong to you, be writable by nobody
    /// else, and not be a symbolic link; /run/lock/onlyone must belong to root and be writable by
    /// others only if sticky.
    #[arg(long, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// PostgreSQL server for --backend postgres: postgres://USER:PASSWORD@HOST:PORT/DB, with
    /// ?sslmode=verify-full&sslrootcert=CA.pem for TLS [default: $DATABASE_URL, else libpq's
    /// PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE, PGSERVICE ...; passwords from PGPASSWORD
    /// or ~/.pgpass stay out of ps(1)]
    #[arg(long, value_name = "URL", value_parser = parse_database_url)]
    pub database_url: Option<DatabaseUrl>,
}

/// `--database-url`: shown as `DatabaseUrl(..)` by `Debug`, never with its password.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

fn parse_database_url(s: &str) -> Result<DatabaseUrl, String> {
    Ok(DatabaseUrl(s.to_owned()))
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Lock name [default: derived from COMMAND and ARGS, see --help]
    #[arg(short = 'N', long, value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub lock: LockArgs,

    /// Wait up to SECS for the lock (fractional; `inf` waits without limit) [default: fail at once]
    #[arg(
        short = 'w',
        long = "wait",
        visible_alias = "timeout",
        value_name = "SECS",
        value_parser = parse_wait,
        allow_hyphen_values = true,
        conflicts_with_all = ["nonblock", "replace"]
    )]
    pub wait: Option<Wait>,

    /// Fail at once if the lock is held (the default; accepted because flock(1) users type it)
    #[arg(short = 'n', long = "nonblock")]
    pub nonblock: bool,

    /// Exit status when the lock is held (0-255)
    #[arg(short = 'E', long = "conflict-exit-code", value_name = "N", default_value_t = exit::TEMPFAIL)]
    pub conflict_exit_code: u8,

    /// The lock is released when the job exits, whatever its children hold (the default; accepted
    /// for flock(1) users)
    ///
    /// On Linux and FreeBSD the job does not inherit the lock's descriptor (close-on-exec), so a
    /// daemon it leaves behind never keeps the lock. On macOS, NetBSD and illumos, where nothing
    /// kills the job when onlyone is killed, the job inherits the flock descriptor (and the PID
    /// file names it), so that the lock lives at least as long as the job: while onlyone lives it
    /// still releases the lock when the job exits, but once onlyone was SIGKILLed, children the
    /// job started keep an inherited flock lock until the last of them exits.
    #[arg(short = 'o', long = "close", conflicts_with = "no_fork")]
    pub close: bool,

    /// Exec COMMAND in place of onlyone, handing it the lock (it and its children keep it)
    #[arg(short = 'F', long = "no-fork")]
    pub no_fork: bool,

    /// Stop the current holder (SIGTERM, then SIGKILL after --kill-after) and take over
    #[arg(long, conflicts_with = "no_fork")]
    pub replace: bool,

    /// Seconds between SIGTERM and SIGKILL when onlyone stops a process: the old holder with
    /// --replace, or the job when the lock is lost (a PostgreSQL session cut, the lock file
    /// deleted or replaced) [default: 10]
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse_secs,
        allow_hyphen_values = true
    )]
    pub kill_after: Option<Duration>,

    /// Stop the job after SECS (fractional): SIGTERM to its process group, SIGKILL after
    /// --kill-after; onlyone then exits 124, as timeout(1) does. Not with -F: onlyone execs
    /// COMMAND in place, so nobody is left to time it
    ///
    /// The job runs in a process group of its own (its children too, unless they leave it with
    /// setsid or setpgid: those are named in the message where they can be found, on Linux);
    /// when onlyone is in the foreground of a terminal, that group gets the terminal while the
    /// job runs. The signals onlyone forwards go to the whole group.
    #[arg(
        long,
        value_name = "SECS",
        value_parser = parse_secs,
        conflicts_with = "no_fork"
    )]
    pub max_runtime: Option<Duration>,

    /// When the lock is held and has been for AGE or longer, say so and exit 80 instead of 75
    /// (also with -q or -E), so that cron mails it and monitoring can alert. AGE: seconds, or a number with s, m,
    /// h or d (0 counts every holder as stale)
    ///
    /// The holder's age is the time since its process started (its onlyone: a few milliseconds
    /// before it took the lock; for PostgreSQL, the start its onlyone recorded in the session, by
    /// its host's clock). A holder whose start is unknown is never called stale.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub stale_after: Option<Duration>,

    /// Where onlyone reports a skipped run, a replaced holder, a lost lock, a job stopped at
    /// --max-runtime: journal, syslog, stderr or none [default: stderr on a terminal, else the
    /// journal too]
    ///
    /// journal: the systemd journal with fields ONLYONE_EVENT, ONLYONE_NAME, ONLYONE_BACKEND,
    /// ONLYONE_HOLDER, ONLYONE_HOLDER_PID, ONLYONE_JOB_PID (`journalctl ONLYONE_NAME=backup`);
    /// where none listens, syslog, else standard error alone. syslog: /dev/log (facility user,
    /// tag onlyone; ONLYONE_SYSLOG_SOCKET names another socket). Both also write standard error.
    /// none: nothing, not even standard error (errors are still printed). Without a terminal on
    /// standard error (cron, a timer) the default is journal. A log that cannot be written never
    /// fails the job.
    #[arg(long, value_name = "DEST", value_enum)]
    pub log: Option<crate::log::Dest>,

    /// Run the job at most once per time window across every host (backend postgres): skip it,
    /// exiting 79, when a run of NAME already started in the current window. Windows are counted
    /// on the database server's clock, aligned to the epoch (UTC): 1h starts on the hour, 1d at
    /// 00:00 UTC. DURATION: seconds, or a number with s, m, h or d (20s, 15m, 1h, 1d)
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = parse_period,
        conflicts_with = "no_fork"
    )]
    pub once_per: Option<Duration>,

    /// Run `sh -c CMD` (as flock -c does) instead of COMMAND ARGS
    #[arg(
        short = 'c',
        long = "command",
        value_name = "CMD",
        conflicts_with = "argv"
    )]
    pub shell_command: Option<OsString>,

    /// Print nothing when the lock is held (errors are still printed)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say what happens: lock taken, backend and resource, the job's exit
    #[arg(short, long)]
    pub verbose: bool,

    // Second-instance handoff: Unix only. The library's Windows named pipe exists
    // (`onlyone::handoff`), but the job's side (descriptors inherited as ONLYONE_HANDOFF_FD and
    // ONLYONE_HANDOFF_ANSWER_FD) has no Windows counterpart yet.
    #[cfg(unix)]
    #[command(flatten)]
    pub handoff: crate::handoff::HandoffArgs,

    /// The command to run, and its arguments
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        required_unless_present = "shell_command"
    )]
    pub argv: Vec<OsString>,
}

const RUN_ABOUT: &str = "\
Run COMMAND while holding a lock; if another process holds it, exit 75 and name it.

Lock lifetime: onlyone itself holds the lock and starts COMMAND as its child (the job). The job
does not inherit the lock's descriptor (close-on-exec), so a daemon the job leaves behind never
keeps the lock: it is released when the job exits. -o/--close is this default, accepted for
flock(1) users. The job dies with onlyone: it runs with PR_SET_PDEATHSIG=SIGKILL (Linux) or
procctl(PROC_PDEATHSIG_CTL) (FreeBSD), so if onlyone is SIGKILLed the kernel kills the job as
part of onlyone's exit, microseconds after it released the lock (far less than a new job takes
to start). Processes the job started itself are not killed, a set-user-ID job (sudo) loses the
death signal at exec, and a job frozen (cgroup freezer) or in uninterruptible sleep dies only
when it leaves that state, after the lock is free.

macOS, NetBSD and illumos have no such death signal, so there the lock lives at least as long as
the job instead: the job inherits the flock descriptor, and the PID file names the job beside
onlyone (the job starts only once it is named). A SIGKILLed onlyone then leaves the lock held
until the job exits, and, for flock, until the last child the job started with the descriptor
exits (while onlyone lives, it releases the lock when the job exits, whatever children hold). A
PostgreSQL lock lives in onlyone's server session and ends with onlyone there.

-F/--no-fork execs COMMAND in place of onlyone and hands it the lock, like flock(1) without -o:
the job and every child it starts keep the lock (abstract, flock) until the last of them exits.
With the pidfile backend the PID file names the job (exec keeps the pid), so the lock lives as
long as the job itself; children do not keep it. Signals then go to the job directly.

Process group: the job leads a process group of its own, so that it and its children can be
signalled as one (--max-runtime, a lost lock). When onlyone is in the foreground of a terminal,
it hands the terminal to the job's group while the job runs (tcsetpgrp, as job-control shells
do) and takes it back after, so a job that reads the terminal works, and Ctrl-C, Ctrl-\\ and
Ctrl-Z reach the job's group directly.

Signals: SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to onlyone are forwarded to
the job's process group, and onlyone exits after the job does, with its status. A signal the
terminal sent to onlyone's own group is forwarded too (the job, in its own group, did not get
it); only while the job is still in onlyone's group (it never is, unless it could not leave)
is such a signal not sent a second time. Linux and FreeBSD mark such signals (SI_KERNEL); on
macOS, NetBSD and illumos, SIGINT and SIGQUIT count as the terminal's while onlyone's standard
input is a terminal with onlyone in the foreground.

--max-runtime SECS: when the job has run SECS, onlyone sends its process group SIGTERM, then
SIGKILL after --kill-after (default 10 s), and exits 124 as timeout(1) does. Children that left
the group (setsid, setpgid) are not signalled; on Linux the message names them (found through
/proc), elsewhere it says they cannot be found. Not with -F: onlyone execs COMMAND in place and
is gone, so nobody is left to time the job.

--stale-after AGE: a lock held for AGE or longer makes the contender say `stale lock`, with how
long it has been held, and exit 80, so that cron mails it and monitoring can alert.

--log: a skipped run, a replaced holder, a lost lock and a --max-runtime kill are one line each,
with the lock's name, backend and holder, on standard error and, without a terminal (cron, a
timer), in the systemd journal (structured fields: ONLYONE_EVENT, ONLYONE_NAME,
ONLYONE_BACKEND, ONLYONE_HOLDER, ONLYONE_HOLDER_PID, ONLYONE_JOB_PID) or, where no journal
listens, syslog. ONLYONE_SYSLOG_SOCKET names another syslog socket than /dev/log.

--replace signals the holder through a pidfd, which pins the process: Linux only. Elsewhere it
refuses (exit 69) when the lock is held, and names the holder to stop by hand.

Default lock name: cmd.<base>.<hash>, where <base> is COMMAND's last path component made safe
(bytes other than A-Z a-z 0-9 . _ + - @ become _, 40 bytes at most) and <hash> the FNV-1a
128-bit hash, in 32 hex digits, of every argument as `<length>:<bytes>,`. So `sh -c 'a; b'` and
`sh -c 'a;' 'b'` do not share a lock. `onlyone list` shows the names in use.

The job's environment gets ONLYONE_NAME, ONLYONE_BACKEND, ONLYONE_SCOPE, ONLYONE_RESOURCE (socket
name or lock file) and ONLYONE_PID (the process holding the lock: onlyone, or the job with -F).";

const GENERATE_ABOUT: &str = "\
Write the man pages or a shell completion script, made from the definitions onlyone parses its
command line with (so they always match this binary). For example:

  onlyone generate man --out /usr/local/share/man/man1
      writes onlyone.1 and one page per subcommand (onlyone-run.1, ...); then `man onlyone-run`
  onlyone generate completions bash > /etc/bash_completion.d/onlyone
  onlyone generate completions zsh --out /usr/local/share/zsh/site-functions
      writes _onlyone there
  onlyone generate completions fish > ~/.config/fish/completions/onlyone.fish";

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Lock name
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub lock: LockArgs,

    /// Print JSON: {"name", "backend", "scope", "resource", "held", "holder"}
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BreakLockArgs {
    /// Lock name
    #[arg(value_name = "NAME")]
    pub name: String,

    #[command(flatten)]
    pub lock: LockArgs,

    /// Remove the PID file (without it, break-lock only says why the lock counts as held)
    #[arg(long)]
    pub force: bool,
}

const BREAK_LOCK_ABOUT: &str = "\
Remove a PID file whose holder cannot be judged from here.

onlyone never takes a PID-file lock whose holder it cannot prove dead: a holder recorded in
another PID namespace (another container, `unshare -p`), or one that /proc does not show
(hidepid=2, ProtectProc=invisible), keeps the lock even after it died. `onlyone break-lock NAME
-b pidfile` says why the lock counts as held; once you know by other means that the holder is
gone, `--force` removes the PID file (as root, or as the file's owner in a sticky directory; on
Windows as an administrator, or as the file's creator in the system-scope directory).
Removing the file of a live holder lets a second copy run. flock and abstract locks need no
such help: the kernel releases them when their holder dies.";

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Also look for lock files in DIR (repeatable; it must exist)
    #[arg(long, value_name = "DIR")]
    pub lock_dir: Vec<PathBuf>,

    /// Print JSON: {"locks": [objects as `status --json` prints them]}
    #[arg(long)]
    pub json: bool,

    /// Also print each lock's resource (socket name or file)
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generate,
}

#[derive(Subcommand, Debug)]
pub enum Generate {
    /// Man pages: onlyone.1 and one per subcommand (onlyone-run.1, ...)
    Man {
        /// Directory to write them to
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// A completion script for SHELL, on standard output or in DIR
    Completions {
        /// bash, zsh, fish, elvish or powershell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
        /// Directory to write the script to (default: standard output)
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `--wait` value: `None` waits without limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wait(pub Option<Duration>);

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    s.parse().map_err(|_| {
        format!("unknown backend {s:?}; expected one of: abstract, flock, pidfile, postgres")
    })
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
        .map_err(|_| format!("unknown scope {s:?}; expected \"user\" or \"system\""))
}

fn parse_wait(s: &str) -> Result<Wait, String> {
    match s {
        "inf" | "infinity" => Ok(Wait(None)),
        _ => parse_secs(s).map(|d| Wait(Some(d))),
    }
}

/// A window length in whole seconds: `90`, `20s`, `15m`, `1h`, `1d`; at least one second.
pub fn parse_period(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 90, 20s, 15m, 1h or 1d");
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(scale) {
        Some(secs) if secs > 0 && secs <= i64::MAX as u64 => Ok(Duration::from_secs(secs)),
        _ => Err(bad()),
    }
}

/// An age: like [`parse_period`], and 0 is allowed.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let digits = t.strip_suffix(['s', 'm', 'h', 'd']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
        return Ok(Duration::ZERO);
    }
    parse_period(s)
}

/// Seconds, fractional, not negative: `2`, `0.5`, `.25`.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected seconds, e.g. 2 or 0.5, or inf");
    let secs: f64 = s.trim().parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_wait("inf"), Ok(Wait(None)));
        assert_eq!(
            parse_wait("1.5"),
            Ok(Wait(Some(Duration::from_millis(1500))))
        );
        assert_eq!(
            parse_wait(".25"),
            Ok(Wait(Some(Duration::from_millis(250))))
        );
        assert_eq!(parse_wait("0"), Ok(Wait(Some(Duration::ZERO))));
        for bad in ["", "-1", "abc", "nan", "1e400", "1s"] {
            assert!(parse_wait(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn periods() {
        assert_eq!(parse_period("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_period("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_period("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_period("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_period("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_age("0"), Ok(Duration::ZERO));
        assert_eq!(parse_age("0h"), Ok(Duration::ZERO));
        assert_eq!(parse_age("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_age("").is_err() && parse_age("h").is_err() && parse_age("-1").is_err());
        for bad in [
            "",
            "0",
            "0h",
            "1.5h",
            "h",
            "1w",
            "-1",
            "99999999999999999999d",
        ] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
    }

    /// A parse, comparable: the `Debug` form of the run arguments and the database URL, which
    /// `Debug` hides.
    fn shown(run: &RunArgs) -> String {
        format!(
            "{run:?} url={:?}",
            run.lock.database_url.as_ref().map(|u| u.0.as_str())
        )
    }

    /// The `run` subcommand parsed alone accepts only what the whole definition accepts, and
    /// gives the same arguments; it accepts the everyday forms (else the fast path is never
    /// taken); `--help`, `--version` and errors go to the whole definition.
    #[test]
    fn run_alone_parses_as_the_whole_definition() {
        let everyday: &[&[&str]] = &[
            &["-N", "x", "--", "true"],
            &["-N", "x", "true"],
            &[
                "--name=x",
                "-b",
                "flock",
                "--lock-dir",
                "/tmp",
                "--",
                "true",
                "a",
                "-b",
            ],
            &["-w", "5", "-N", "x", "--", "sleep", "1"],
            &["-nN", "x", "true"],
            &["-E", "0", "-q", "-N", "x", "--", "backup.sh", "--full"],
            &["-c", "echo hi; exit 3", "-N", "x"],
            &["--scope", "system", "-b", "pidfile", "-N", "x", "true"],
            &["true"],
        ];
        let other: &[&[&str]] = &[
            &["-w", "inf", "true"],
            &["--timeout", "-1", "true"],
            &["--timeout", "2.5", "true"],
            &["-o", "-N", "x", "true"],
            &["-F", "-N", "x", "true"],
            &["-o", "-F", "true"],
            &["--replace", "-N", "x", "true"],
            &["--replace", "-w", "3", "true"],
            &["-n", "-w", "3", "true"],
            &[
                "--kill-after",
                "5",
                "--max-runtime",
                "10",
                "-N",
                "x",
                "true",
            ],
            &["--stale-after", "1h", "--log", "journal", "true"],
            &["--log", "bogus", "true"],
            &[
                "--once-per",
                "1h",
                "-b",
                "postgres",
                "--database-url",
                "postgres://u:p@h/db",
                "true",
            ],
            &["--once-per", "1h", "-F", "true"],
            &["-c", "x", "--", "y"],
            &["-q", "-v", "true"],
            &["-v", "--", "-N"],
            &["--handoff", "-N", "x", "true"],
            &["--handoff-timeout", "3", "true"],
            &["--handoff", "--handoff-timeout", "3", "true"],
            &["--handoff", "-w", "1", "true"],
            &["-b", "nosuch", "true"],
            &["--scope", "nosuch", "true"],
            &["-E", "300", "true"],
            &["-N", "x", "--", "--help"],
            &["-N", "x", "true", "--version"],
            &["-V"],
            &["--version"],
            &["-h"],
            &["--help"],
            &["--vers", "true"],
            &[],
            &["--"],
            &["-N"],
            &["-N", "x"],
            &["--name=", "true"],
            &["-N", "x", "-N", "y", "true"],
            &["run", "true"],
        ];
        for (case, must_be_fast) in everyday
            .iter()
            .map(|c| (c, true))
            .chain(other.iter().map(|c| (c, false)))
        {
            let args: Vec<OsString> = ["onlyone", "run"]
                .iter()
                .chain(case.iter())
                .map(OsString::from)
                .collect();
            let whole = <Cli as Parser>::try_parse_from(args.clone());
            let alone = parse_run_alone(&args[1..]);
            match (&whole, &alone) {
                (
                    Ok(Cli {
                        command: Command::Run(w),
                    }),
                    Some(a),
                ) => {
                    assert_eq!(shown(a), shown(w), "run {case:?}");
                }
                (_, Some(a)) => panic!(
                    "run {case:?}: parsed alone as {}, but the whole definition gives {whole:?}",
                    shown(a)
                ),
                (_, None) => assert!(!must_be_fast, "run {case:?} is not parsed alone"),
            }
            // And what main() gets is the whole definition's answer.
            match (Cli::parse_args(args), whole) {
                (
                    Ok(Cli {
                        command: Command::Run(p),
                    }),
                    Ok(Cli {
                        command: Command::Run(w),
                    }),
                ) => {
                    assert_eq!(shown(&p), shown(&w), "run {case:?}");
                }
                (Err(p), Err(w)) => {
                    assert_eq!(p.kind(), w.kind(), "run {case:?}");
                    assert_eq!(p.to_string(), w.to_string(), "run {case:?}");
                }
                (p, w) => panic!("run {case:?}: {p:?} against the whole definition's {w:?}"),
            }
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
