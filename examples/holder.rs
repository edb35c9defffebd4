//! Holds a lock and takes orders on standard input, one per line. The test suite drives it; it also
//! shows the library's API.
//!
//! ```text
//! cargo run --example holder -- BACKEND NAME LOCK_DIR [WAIT_SECS|inf|idle]
//! ```
//! On start it acquires the lock (waiting up to WAIT_SECS if given, `inf` for no limit) and prints
//! `acquired PID` or `held HOLDER_PID KIND`; with `idle` instead of WAIT_SECS it prints `ready` and
//! waits for orders. Orders:
//! - `try` / `wait SECS`: acquire again (after a release), printing the same lines;
//! - `release`: release the lock, print `released`;
//! - `verify`: print `ok` or `lost REASON`;
//! - `spawn`: start `sleep 3600` (which must not inherit the lock), print `spawned PID`;
//! - `inherit`: the same, handing the lock descriptor to the child on purpose;
//! - `witness FILE`: while holding, append `start PID` and `end PID` lines around a pause
//!   (used by race tests); prints `witnessed`.
//!
//! It exits on end of input, releasing the lock by dropping the guard.

use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use onlyone::{Acquire, BackendKind, Builder, Guard, Lock};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: holder BACKEND NAME LOCK_DIR [WAIT_SECS]");
        std::process::exit(64);
    }
    let backend: BackendKind = args[0].parse().unwrap_or_else(|e| fail(e));
    let lock = Builder::new(&args[1])
        .backend(backend)
        .lock_dir(&args[2])
        .build()
        .unwrap_or_else(|e| fail(e));
    let mut out = std::io::stdout().lock();
    let mut guard = match args.get(3).map(String::as_str) {
        Some("idle") => {
            say(&mut out, "ready");
            None
        }
        wait => acquire(&*lock, wait, &mut out),
    };
    let mut children = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_default();
        let (order, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match order {
            "try" => guard = acquire(&*lock, None, &mut out),
            "wait" => guard = acquire(&*lock, Some(arg), &mut out),
            "release" => {
                if let Some(g) = guard.take() {
                    g.release().unwrap_or_else(|e| fail(e));
                }
                say(&mut out, "released");
            }
            "verify" => match guard.as_ref().map(Guard::verify) {
                Some(Ok(())) => say(&mut out, "ok"),
                Some(Err(e)) => say(&mut out, &format!("lost {e}")),
                None => say(&mut out, "lost not holding"),
            },
            "spawn" | "inherit" => {
                let mut cmd = Command::new("sleep");
                cmd.arg("3600").stdin(Stdio::null()).stdout(Stdio::null());
                if order == "inherit" {
                    if let Some(fd) = guard.as_ref().and_then(Guard::as_fd) {
                        hand_over(fd);
                    }
                }
                let child = cmd.spawn().unwrap_or_else(|e| fail(e));
                say(&mut out, &format!("spawned {}", child.id()));
                children.push(child);
            }
            "witness" => {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(arg)
                    .unwrap_or_else(|e| fail(e));
                let pid = std::process::id();
                writeln!(f, "start {pid}").unwrap_or_else(|e| fail(e));
                std::thread::yield_now();
                writeln!(f, "end {pid}").unwrap_or_else(|e| fail(e));
                say(&mut out, "witnessed");
            }
            _ => fail(format!("unknown order {line:?}")),
        }
    }
}

fn acquire(lock: &dyn Lock, wait: Option<&str>, out: &mut impl Write) -> Option<Guard> {
    let timeout = match wait {
        None => Some(Duration::ZERO),
        Some("inf") => None,
        Some(secs) => Some(Duration::from_secs_f64(
            secs.parse().unwrap_or_else(|e| fail(e)),
        )),
    };
    match lock.acquire_timeout(timeout).unwrap_or_else(|e| fail(e)) {
        Acquire::Acquired(g) => {
            say(out, &format!("acquired {}", std::process::id()));
            Some(g)
        }
        Acquire::Held(h) => {
            let pid = h.pid.map_or("?".to_owned(), |p| p.to_string());
            say(out, &format!("held {pid} {:?}", h.kind));
            None
        }
    }
}

/// Clears close-on-exec so that the next child keeps the lock (on purpose).
fn hand_over(fd: std::os::fd::BorrowedFd<'_>) {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap_or_else(|e| fail(e));
}

fn say(out: &mut impl Write, line: &str) {
    writeln!(out, "{line}").and_then(|()| out.flush()).ok();
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("holder: {e}");
    std::process::exit(1);
}
