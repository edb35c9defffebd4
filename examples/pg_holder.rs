//! Holds a PostgreSQL lock and takes orders on standard input, one per line; the PostgreSQL tests
//! and benchmark drive it, and it shows the backend's API.
//!
//! ```text
//! cargo run --features postgres --example pg_holder -- DATABASE_URL NAME [WAIT_SECS|inf|idle]
//! ```
//! On start it acquires the lock (waiting up to WAIT_SECS if given, `inf` for no limit) and prints
//! `acquired PID TOKEN` or `held PID HOST`; with `idle` it prints `ready` and waits for orders:
//! - `try` / `wait SECS|inf`: acquire (after a release), printing the same lines;
//! - `release`: release the lock, print `released` (or `release-failed REASON`);
//! - `verify`: print `ok` or `lost REASON`;
//! - `loss-wait SECS`: wait up to SECS for the guard's loss descriptor, print `loss-notified` or
//!   `not-notified`;
//! - `cycle N FILE`: N times: wait for the lock, append `start PID TOKEN` and `end PID TOKEN` to
//!   FILE around a pause, release; then print `cycled` (the race test).
//!
//! It exits on end of input, releasing the lock by dropping the guard.

use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use onlyone::{Acquire, Guard, Lock, LockName, PostgresLock};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: pg_holder DATABASE_URL NAME [WAIT_SECS|inf|idle]");
        std::process::exit(64);
    }
    let name = LockName::new(args[1].as_str()).unwrap_or_else(|e| fail(e));
    let lock = PostgresLock::new(name, &args[0])
        .unwrap_or_else(|e| fail(e))
        .job("pg_holder test job");
    let mut out = std::io::stdout().lock();
    let mut guard = match args.get(2).map(String::as_str) {
        Some("idle") => {
            say(&mut out, "ready");
            None
        }
        wait => acquire(&lock, wait, &mut out),
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_default();
        let (order, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match order {
            "try" => guard = acquire(&lock, None, &mut out),
            "wait" => guard = acquire(&lock, Some(arg), &mut out),
            "release" => match guard.take().map(Guard::release) {
                Some(Err(e)) => say(&mut out, &format!("release-failed {e}")),
                _ => say(&mut out, "released"),
            },
            "verify" => match guard.as_ref().map(Guard::verify) {
                Some(Ok(())) => say(&mut out, "ok"),
                Some(Err(e)) => say(&mut out, &format!("lost {e}")),
                None => say(&mut out, "lost not holding"),
            },
            "loss-wait" => {
                let secs: f64 = arg.parse().unwrap_or_else(|e| fail(e));
                let fd = guard.as_ref().and_then(Guard::loss_fd);
                let notified = fd.is_some_and(|fd| {
                    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                    let ms =
                        PollTimeout::try_from((secs * 1000.0) as i64).unwrap_or(PollTimeout::MAX);
                    poll(&mut fds, ms).unwrap_or(0) > 0
                });
                say(
                    &mut out,
                    if notified {
                        "loss-notified"
                    } else {
                        "not-notified"
                    },
                );
            }
            "cycle" => {
                let (n, file) = arg.split_once(' ').unwrap_or_else(|| fail("cycle N FILE"));
                let n: u32 = n.parse().unwrap_or_else(|e| fail(e));
                for _ in 0..n {
                    let g = match lock.acquire_timeout(None).unwrap_or_else(|e| fail(e)) {
                        Acquire::Acquired(g) => g,
                        Acquire::Held(h) => fail(format!("waited forever but got held by {h}")),
                    };
                    witness(file, g.fencing_token().unwrap_or(0));
                    g.release().unwrap_or_else(|e| fail(e));
                }
                say(&mut out, "cycled");
            }
            _ => fail(format!("unknown order {line:?}")),
        }
    }
}

fn acquire(lock: &PostgresLock, wait: Option<&str>, out: &mut impl Write) -> Option<Guard> {
    let timeout = match wait {
        None => Some(Duration::ZERO),
        Some("inf") => None,
        Some(secs) => Some(Duration::from_secs_f64(
            secs.parse().unwrap_or_else(|e| fail(e)),
        )),
    };
    match lock.acquire_timeout(timeout).unwrap_or_else(|e| fail(e)) {
        Acquire::Acquired(g) => {
            let token = g.fencing_token().map_or("-".to_owned(), |t| t.to_string());
            say(out, &format!("acquired {} {token}", std::process::id()));
            Some(g)
        }
        Acquire::Held(h) => {
            let pid = h.pid.map_or("?".to_owned(), |p| p.to_string());
            let host = h.host.as_deref().unwrap_or("?");
            say(out, &format!("held {pid} {host}"));
            None
        }
    }
}

/// Appends `start PID TOKEN` and `end PID TOKEN` around a pause: another holder's lines in
/// between would show two holders at once.
fn witness(file: &str, token: u64) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .unwrap_or_else(|e| fail(e));
    let pid = std::process::id();
    writeln!(f, "start {pid} {token}").unwrap_or_else(|e| fail(e));
    std::thread::yield_now();
    writeln!(f, "end {pid} {token}").unwrap_or_else(|e| fail(e));
}

fn say(out: &mut impl Write, line: &str) {
    writeln!(out, "{line}").and_then(|()| out.flush()).ok();
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("pg_holder: {e}");
    std::process::exit(1);
}
