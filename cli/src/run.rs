//! `onlyone run`: take the lock, run the job, forward signals, pass its exit status through.

use std::ffi::OsString;
use std::io;
#[cfg(unix)]
use std::os::unix::process::CommandExt;
#[cfg(unix)]
use std::process::Command;
use std::time::Duration;

#[cfg(unix)]
use nix::errno::Errno;
#[cfg(unix)]
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
#[cfg(unix)]
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
#[cfg(unix)]
use nix::unistd::Pid;
#[cfg(unix)]
use onlyone::Guard;
use onlyone::{Acquire, Holder, HolderKind, Lock};

use crate::cli::{RunArgs, Wait};
use crate::exit::{self, Failure};
#[cfg(unix)]
use crate::job::{Job, Origin, Received, Signals};
use crate::log::{Event, Log};

/// What `--kill-after` is when not given.
const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(10);

/// The signals onlyone forwards to the job.
#[cfg(unix)]
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

pub fn main(args: RunArgs) -> Result<u8, Failure> {
    let argv = command_argv(&args)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => crate::names::derive(&argv),
    };
    let lock = crate::locks::build(&name, &args.lock)?;
    let wait = match args.wait {
        Some(Wait(Some(d))) if d.is_zero() => None,
        other => other,
    };
    let log = Log::new(args.log, lock.name().as_str(), lock.backend().as_str());
    let outcome = if args.replace {
        crate::replace::take_over(
            &*lock,
            args.kill_after.unwrap_or(DEFAULT_KILL_AFTER),
            args.verbose,
            &log,
        )?
    } else {
        match wait {
            None => lock.try_acquire()?,
            Some(Wait(timeout)) => {
                if args.verbose {
                    let limit = timeout.map_or("without limit".to_owned(), |d| {
                        format!("up to {} s", d.as_secs_f64())
                    });
                    say!(
                        "onlyone: waiting {limit} for lock {:?}",
                        lock.name().as_str()
                    );
                }
                lock.acquire_timeout(timeout)?
            }
        }
    };
    let guard = match outcome {
        Acquire::Acquired(g) => g,
        Acquire::Held(holder) => {
            // --handoff (cli/src/handoff.rs): hand ARGS to the running job instead.
            #[cfg(unix)]
            if args.handoff.handoff {
                return crate::handoff::second_launch(
                    &name,
                    &args.lock,
                    &args.handoff,
                    &argv,
                    args.quiet,
                );
            }
            let stale =
                held_for(&holder).filter(|&age| args.stale_after.is_some_and(|limit| age >= limit));
            let mut line = conflict_line(&*lock, &holder, wait, args.verbose);
            if let Some(age) = stale {
                line = format!(
                    "stale lock: {line}; held for {}, --stale-after is {}",
                    crate::status::duration_words(age),
                    crate::status::duration_words(args.stale_after.unwrap_or_default())
                );
            }
            let event = if stale.is_some() {
                Event::Stale
            } else {
                Event::Skipped
            };
            log.event(
                event,
                &line,
                args.quiet && stale.is_none(),
                Some(&holder),
                None,
            );
            return Ok(if stale.is_some() {
                exit::STALE
            } else {
                args.conflict_exit_code
            });
        }
    };

    let mut vars = vec![
        ("ONLYONE_NAME", lock.name().as_str().to_owned()),
        ("ONLYONE_BACKEND", lock.backend().as_str().to_owned()),
        ("ONLYONE_SCOPE", args.lock.scope.to_string()),
        ("ONLYONE_RESOURCE", guard.resource().to_owned()),
        ("ONLYONE_PID", std::process::id().to_string()),
    ];
    if let Some(token) = guard.fencing_token() {
        vars.push(("ONLYONE_FENCING_TOKEN", token.to_string()));
    }
    // --handoff (cli/src/handoff.rs): listen for second launches; the job reads them from pipes.
    #[cfg(unix)]
    let first_launch = match args.handoff.handoff {
        true => Some(crate::handoff::FirstLaunch::start(
            &name,
            &args.lock,
            &args.handoff,
            &guard,
        )?),
        false => None,
    };
    #[cfg(unix)]
    if let Some(f) = &first_launch {
        vars.extend(f.vars());
    }
    if args.verbose {
        say!(
            "onlyone: took lock {:?} ({} {}); running {}",
            lock.name().as_str(),
            lock.backend(),
            guard.resource(),
            show_argv(&argv)
        );
    }
    #[cfg(unix)]
    if args.no_fork {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).envs(vars);
        return Err(exec_in_place(cmd, guard, &argv[0]));
    }
    #[cfg(windows)]
    if args.no_fork {
        return Err(Failure::new(
            exit::UNAVAILABLE,
            "--no-fork is not available on Windows, which cannot replace a process by another \
             (no execve): onlyone runs the job as a child in a job object",
        ));
    }
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !vars.iter().any(|(name, _)| k == name))
        .collect();
    env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
    #[cfg(unix)]
    let job = Job::new(&argv, env)
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot run {:?}: {e}", argv[0])))?;
    #[cfg(windows)]
    let job = crate::job::Job::new(&argv, env);
    let kill_after = args.kill_after.unwrap_or(DEFAULT_KILL_AFTER);
    let window = match crate::once::claim(&args, lock.name().as_str(), &log)? {
        Ok(window) => window,
        Err(skipped) => return Ok(skipped),
    };
    #[cfg(unix)]
    let result = {
        let watch = Watch {
            terminal: crate::job::foreground_terminal(),
            kill_after,
            max_runtime: args.max_runtime,
            verbose: args.verbose,
            log: &log,
        };
        supervise(job, guard, &argv[0], &watch)
    };
    #[cfg(windows)]
    let result = crate::job::supervise(&job, guard, &argv[0], kill_after, args.verbose);
    crate::once::finish(window, &result);
    result
}

/// COMMAND ARGS, or `sh -c CMD`; never empty.
fn command_argv(args: &RunArgs) -> Result<Vec<OsString>, Failure> {
    let argv = match &args.shell_command {
        Some(c) => vec!["sh".into(), "-c".into(), c.clone()],
        None => args.argv.clone(),
    };
    let empty = match &args.shell_command {
        Some(c) => c.is_empty(),
        None => argv.first().is_none_or(|a| a.is_empty()),
    };
    if empty {
        return Err(Failure::new(
            exit::USAGE,
            "empty command: give the command to run after `--`, e.g. `onlyone run -N job -- backup.sh`",
        ));
    }
    Ok(argv)
}

/// How long the holder has held the lock, as far as known: since its process started (for
/// PostgreSQL, as the holder recorded it in its session's `application_name`).
pub fn held_for(h: &Holder) -> Option<Duration> {
    h.started.map(|t| {
        std::time::SystemTime::now()
            .duration_since(t)
            .unwrap_or_default()
    })
}

/// One line naming the holder, for stderr (without the `onlyone: ` prefix).
fn conflict_line(lock: &dyn Lock, h: &Holder, wait: Option<Wait>, verbose: bool) -> String {
    let name = lock.name().as_str();
    let mut line = match h.kind {
        HolderKind::OtherUser => format!("lock {name:?} is taken by another user: {h}"),
        HolderKind::Unresponsive => {
            format!("lock {name:?} is taken by a process that is not an onlyone holder: {h}")
        }
        _ => format!("already running: lock {name:?} is held by {h}"),
    };
    if let Some(Wait(Some(d))) = wait {
        line += &format!(" (still held after waiting {} s)", d.as_secs_f64());
    }
    if verbose {
        line += &format!(" [{} {}]", lock.backend(), lock.resource());
    }
    if let Some(hint) = crate::status::break_lock_hint(lock, h) {
        line += &format!("; {hint}");
    }
    line
}

fn show_argv(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why COMMAND could not be started, with the status sh(1) would give.
pub(crate) fn spawn_failure(program: &OsString, e: io::Error) -> Failure {
    Failure::new(
        exit::for_spawn_error(&e),
        format!("cannot run {:?}: {e}", program.to_string_lossy()),
    )
}

/// `-F`: exec COMMAND in place, the lock's descriptor handed over. Returns only on failure.
#[cfg(unix)]
fn exec_in_place(mut cmd: Command, guard: Guard, program: &OsString) -> Failure {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    if let Some(fd) = guard.as_fd() {
        if let Err(e) = fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())) {
            return Failure::os("cannot hand the lock to the command", e);
        }
    }
    let e = cmd.exec();
    if let Some(fd) = guard.as_fd() {
        // Take the lock back so that releasing it below unlocks it properly.
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    drop(guard);
    spawn_failure(program, e)
}

/// What onlyone watches while the job runs, and how it stops it.
#[cfg(unix)]
struct Watch<'a> {
    /// The terminal the job's group was given, if any.
    terminal: Option<std::os::fd::RawFd>,
    kill_after: Duration,
    max_runtime: Option<Duration>,
    verbose: bool,
    log: &'a Log,
}

/// Why onlyone stopped the job, if it did.
#[cfg(unix)]
#[derive(Default)]
struct Stopped {
    /// The lock was lost: why.
    lost: Option<String>,
    /// `--max-runtime` ran out.
    timed_out: bool,
}

/// Runs the job as a child in a process group of its own (given the terminal when onlyone has
/// it), forwards signals to that group, waits for the job, takes the terminal back, releases
/// the lock.
#[cfg(unix)]
fn supervise(
    mut job: Job,
    mut guard: Guard,
    program: &OsString,
    watch: &Watch<'_>,
) -> Result<u8, Failure> {
    // Blocked from here on, then read from a signalfd (Linux) or a self-pipe: a signal that
    // arrives before the job exists waits in the queue and is forwarded once it does.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old))
        .map_err(|e| Failure::os("cannot block signals", e))?;
    crate::job::default_sigchld().map_err(|e| Failure::os("cannot reset SIGCHLD", e))?;
    let tether = crate::job::tether(guard.backend());
    let terminal = watch.terminal;
    job.give_terminal(terminal);
    let pid = job
        .spawn(nix::unistd::getpid(), &old, tether, &mut guard)
        .map_err(|e| spawn_failure(program, e))?;
    // The job made itself a group leader before execve(2); this only repeats it (as shells do)
    // and fails harmlessly (EACCES) once the job has executed.
    let _ = nix::unistd::setpgid(pid, pid);
    if let Some(fd) = terminal {
        // The job asked for the terminal itself too: whichever comes first.
        let _ = crate::job::hand_terminal(fd, pid);
    }

    // The job runs: whatever happens now, onlyone waits for it before it lets the lock go.
    let mut stopped = Stopped::default();
    let status = match Signals::open(&mask) {
        Ok(signals) => wait_forwarding(pid, signals, &guard, watch, &mut stopped),
        Err(e) => {
            say!("onlyone: warning: cannot forward signals to the job ({e})");
            wait_blocking(pid)
        }
    };
    if let Some(fd) = terminal {
        if let Err(e) = crate::job::hand_terminal(fd, nix::unistd::getpgrp()) {
            say!("onlyone: warning: cannot take the terminal back from the job: {e}");
        }
    }
    if stopped.timed_out && nix::sys::signal::killpg(pid, None).is_ok() {
        // The job is gone but members of its group remain (children that ignored SIGTERM and
        // outlived it): the group still exists, so its id is not reused yet.
        let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
    }
    let mut lost = stopped.lost;
    if lost.is_none() {
        // No loss event came (or none can come: no watch to be had, no such event on this OS):
        // the lock is checked once more before it is let go.
        if let Err(e) = guard.verify() {
            let line = format!("lost the lock while the job ran: {e}");
            watch
                .log
                .event(Event::Lost, &line, false, None, Some(pid.as_raw() as u32));
            lost = Some(e.to_string());
        }
    }
    if lost.is_none() {
        if let Err(e) = guard.release() {
            say!("onlyone: warning: releasing the lock: {e}");
        }
    }
    let status = status.map_err(|e| Failure::os("cannot wait for the job", e))?;
    let code = match lost {
        Some(_) => exit::LOST,
        None if stopped.timed_out => exit::TIMED_OUT,
        None => exit_code(status),
    };
    if watch.verbose {
        let released = if lost.is_some() {
            "the lock was lost"
        } else {
            "lock released"
        };
        say!(
            "onlyone: job {pid} {}; {released}, exiting with {code}",
            describe_end(status)
        );
    }
    Ok(code)
}

/// How the job ended, in words: `exited with status 3`, `was killed by SIGTERM (core dumped)`.
#[cfg(unix)]
fn describe_end(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, c) => format!("exited with status {c}"),
        WaitStatus::Signaled(_, sig, core) => format!(
            "was killed by {sig}{}",
            if core { " (core dumped)" } else { "" }
        ),
        // wait_forwarding and wait_blocking return only exits and deaths by signal.
        _ => "ended in a state that is neither an exit nor a signal".to_owned(),
    }
}

/// The job's exit status as onlyone's: its code, or 128+N when killed by signal N.
#[cfg(unix)]
fn exit_code(status: WaitStatus) -> u8 {
    match status {
        WaitStatus::Exited(_, c) => c as u8,
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32) as u8,
        _ => exit::SOFTWARE,
    }
}

/// Reaps the job if it has exited (`waitpid(WNOHANG | WUNTRACED)`); stops and continues are not
/// exits. A job stopped by the terminal (Ctrl-Z) while it has the terminal stops onlyone too, so
/// that the shell sees a stopped job and takes the terminal back ([`follow_stop`]).
#[cfg(unix)]
fn try_wait(pid: Pid, terminal: Option<std::os::fd::RawFd>) -> Result<Option<WaitStatus>, Errno> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(Some(s)),
            Ok(WaitStatus::Stopped(_, signal)) => {
                if let Some(fd) = terminal {
                    follow_stop(pid, fd, signal);
                }
                return Ok(None);
            }
            Ok(_) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The job, which had the terminal, was stopped by `signal` (SIGTSTP, SIGTTIN, SIGTTOU from the
/// terminal; SIGSTOP): onlyone takes the terminal back and stops itself the same way, as a
/// job-control shell's child would appear to its shell. When the shell continues onlyone (`fg`),
/// it gives the terminal to the job's group again and continues the group (`bg`: onlyone is then
/// in the background and leaves the terminal alone).
#[cfg(unix)]
fn follow_stop(job: Pid, fd: std::os::fd::RawFd, signal: Signal) {
    use nix::unistd::{getpgrp, tcgetpgrp};
    let own = getpgrp();
    let job_has_terminal = crate::job::with_terminal(fd, |t| tcgetpgrp(t).is_ok_and(|g| g == job));
    if !job_has_terminal {
        return;
    }
    let _ = crate::job::hand_terminal(fd, own);
    let stop = match signal {
        Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => signal,
        _ => Signal::SIGSTOP,
    };
    // SIGTSTP and the others stop onlyone by their default action, which it never changed.
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), stop);
    // Continued: in the foreground again?
    if crate::job::with_terminal(fd, |t| tcgetpgrp(t).is_ok_and(|g| g == own)) {
        let _ = crate::job::hand_terminal(fd, job);
    }
    let _ = nix::sys::signal::killpg(job, Signal::SIGCONT);
}

/// Blocks until the job exits (when signals cannot be forwarded).
#[cfg(unix)]
fn wait_blocking(pid: Pid) -> Result<WaitStatus, Errno> {
    loop {
        match waitpid(pid, None) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(s),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// How long the job runs before the lock's loss watch starts. The watch of a lock file is an
/// inotify instance, and closing one that watched a file waits for an RCU grace period (under
/// 0.1 ms on an idle machine here, 16 ms on a busy one: BENCHMARKS.md "CLI start-up"): a cron job
/// of a millisecond would pay it at every run, several times its own cost. A loss before the
/// watch starts is not missed: starting it checks the lock once (`verify`: is the lock file still
/// the one locked), so it is found at most this late.
#[cfg(unix)]
const LOSS_WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// Waits for the job, forwarding the signals `signals` receives (except SIGCHLD) to its process
/// group. Stops the job's group — SIGTERM, then SIGKILL after `kill_after` — when the guard says
/// the lock is lost (its loss descriptor becomes readable, watched from [`LOSS_WATCH_AFTER`] into
/// the job; why goes to `stopped.lost`) or when `--max-runtime` runs out (`stopped.timed_out`).
#[cfg(unix)]
fn wait_forwarding(
    pid: Pid,
    mut signals: Signals,
    guard: &Guard,
    watch: &Watch<'_>,
    stopped: &mut Stopped,
) -> Result<WaitStatus, Errno> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signal::killpg;
    use std::os::fd::AsFd;
    use std::time::Instant;
    let mut loss_fd = None;
    let mut watch_loss_at = Some(Instant::now() + LOSS_WATCH_AFTER);
    let mut kill_at: Option<Instant> = None;
    let mut deadline = watch.max_runtime.map(|d| Instant::now() + d);
    loop {
        // The loss watch starts now: what happened before it is asked of verify() right away.
        let watch_started = watch_loss_at.is_some_and(|t| Instant::now() >= t);
        if watch_started {
            watch_loss_at = None;
            loss_fd = guard.loss_fd();
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if stopped.lost.is_none() {
            if let Some(fd) = loss_fd {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
        }
        let next = [kill_at, deadline, watch_loss_at]
            .into_iter()
            .flatten()
            .min();
        let timeout = if watch_started {
            PollTimeout::ZERO
        } else {
            next.map_or(PollTimeout::NONE, |t| {
                let left = t.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().saturating_add(1))
                    .unwrap_or(PollTimeout::MAX)
            })
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        let lock_gone = watch_started
            || fds
                .get(1)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty());
        drop(fds);
        // A loss is a failed verify(), never the event alone (a `touch` of a lock file fires
        // it too; verify() quiets such a watch). A descriptor still readable after a verify()
        // that passed is one that stays readable once the lock is gone (PostgreSQL).
        let why = if lock_gone {
            match guard.verify() {
                Err(e) => Some(e.to_string()),
                Ok(()) if still_readable(guard.loss_fd()) => {
                    Some("the lock is no longer held".to_owned())
                }
                Ok(()) => None,
            }
        } else {
            None
        };
        if let Some(why) = why {
            let line = format!(
                "lost the lock while the job ran ({why}); stopping the job, pid {pid} \
                 (SIGTERM, SIGKILL in {} s){}",
                watch.kill_after.as_secs_f64(),
                outside_group(pid)
            );
            watch
                .log
                .event(Event::Lost, &line, false, None, Some(pid.as_raw() as u32));
            let _ = killpg(pid, Signal::SIGTERM);
            kill_at = kill_at.or(Some(Instant::now() + watch.kill_after));
            stopped.lost = Some(why);
        }
        if deadline.is_some_and(|t| Instant::now() >= t) {
            deadline = None;
            let line = format!(
                "the job ran longer than --max-runtime {} s: SIGTERM to its process group {pid}, \
                 SIGKILL in {} s{}",
                watch.max_runtime.unwrap_or_default().as_secs_f64(),
                watch.kill_after.as_secs_f64(),
                outside_group(pid)
            );
            watch.log.event(
                Event::Timeout,
                &line,
                false,
                None,
                Some(pid.as_raw() as u32),
            );
            let _ = killpg(pid, Signal::SIGTERM);
            // A job stopped by the terminal (SIGTSTP) acts on SIGTERM only once continued.
            let _ = killpg(pid, Signal::SIGCONT);
            kill_at = kill_at.or(Some(Instant::now() + watch.kill_after));
            stopped.timed_out = true;
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            if watch.verbose {
                say!("onlyone: the job is still running: SIGKILL to its process group {pid}");
            }
            let _ = killpg(pid, Signal::SIGKILL);
            kill_at = None;
        }
        let received = match signals.read() {
            Ok(Some(received)) => received,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(e) => {
                say!("onlyone: warning: cannot forward signals to the job (read: {e})");
                return wait_blocking(pid);
            }
        };
        let signal = received.signal;
        if signal == Signal::SIGCHLD {
            // Also sent when the job stops or continues; only an exit ends the wait.
            if let Some(status) = try_wait(pid, watch.terminal)? {
                return Ok(status);
            }
            continue;
        }
        if from_terminal(&received, pid) {
            if watch.verbose {
                say!(
                    "onlyone: {signal} came from the terminal, which sent it to the job too: not forwarded"
                );
            }
            continue;
        }
        // The job is our unreaped child and its group's leader: the group's id cannot have
        // been reused.
        let sent = killpg(pid, signal);
        if watch.verbose {
            match sent {
                Ok(()) => say!("onlyone: forwarded {signal} to the job's process group {pid}"),
                Err(e) => {
                    say!("onlyone: cannot forward {signal} to the job's process group {pid}: {e}")
                }
            }
        }
    }
}

/// The job's descendants that left its process group, which a signal to the group misses, for
/// a message: `; not signalled, outside the job's process group: pid 12 (daemon)`.
#[cfg(unix)]
fn outside_group(job: Pid) -> String {
    match crate::job::escaped(job, job) {
        Some(found) if found.is_empty() => String::new(),
        Some(found) => format!(
            "; not signalled, outside the job's process group: {}",
            found
                .iter()
                .map(|(pid, comm)| format!("pid {pid} ({comm})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "; children that left the job's process group (setsid) cannot be found on this \
                 system and are not signalled"
            .to_owned(),
    }
}

/// Whether a signal came from the terminal (the kernel sends those to the whole foreground
/// process group, so the job got it too) and the job is still in onlyone's process group.
///
/// Linux and FreeBSD mark a signal the kernel generated (`SI_KERNEL`). Where no `si_code` says
/// so (macOS, NetBSD, illumos; Linux in the portable build), SIGINT and SIGQUIT — what a
/// terminal's keys send — count as the terminal's while onlyone's standard input is a terminal
/// whose foreground process group is onlyone's: a Ctrl-C then reaches the job once, and a
/// `kill -INT` sent to onlyone alone from elsewhere is not passed on. Every other signal is
/// forwarded.
#[cfg(unix)]
fn from_terminal(received: &Received, job: Pid) -> bool {
    use nix::unistd::{getpgid, getpgrp, tcgetpgrp};
    let terminal_may_have_sent = match received.origin {
        Origin::Kernel => true,
        Origin::Process => false,
        Origin::Unknown => {
            matches!(received.signal, Signal::SIGINT | Signal::SIGQUIT)
                && tcgetpgrp(std::io::stdin()).is_ok_and(|g| g == getpgrp())
        }
    };
    terminal_may_have_sent && getpgid(Some(job)).is_ok_and(|g| g == getpgrp())
}

/// Whether `fd` (if any) is readable right now.
#[cfg(unix)]
fn still_readable(fd: Option<std::os::fd::BorrowedFd<'_>>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let Some(fd) = fd else {
        return false;
    };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}
