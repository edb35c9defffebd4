//! Holds a lock and takes orders on standard input, one per line. The test suite drives it; it also
//! shows the library's API.
//!
//! ```text
//! cargo run --example holder -- BACKEND NAME LOCK_DIR [WAIT_SECS|inf|idle]
//! ```
//! LOCK_DIR `@default` uses the scope's default directory. The scope is [`Scope::User`] unless the
//! environment variable `HOLDER_SCOPE` says `system`.
//! On start it acquires the lock (waiting up to WAIT_SECS if given, `inf` for no limit) and prints
//! `acquired PID` or `held HOLDER_PID KIND`; with `idle` instead of WAIT_SECS it prints `ready` and
//! waits for orders. Orders:
//! - `try` / `wait SECS`: acquire again (after a release), printing the same lines;
//! - `release`: release the lock, print `released`;
//! - `verify`: print `ok` or `lost REASON`;
//! - `spawn`: start `sleep 3600` (which must not inherit the lock), print `spawned PID`;
//! - `inherit`: the same, handing the lock descriptor to the child on purpose;
//! - `job`: the same as `inherit`, and the child named in the lock's record as its job
//!   (`Guard::record_job`: the PID file then stays held while the child lives);
//! - `witness FILE`: while holding, append `start PID` and `end PID` lines around a pause
//!   (used by race tests); prints `witnessed`.
//! - `race FILE HOLDS SEED HOLD_US [nolock]`: acquire and release HOLDS times (0: until killed),
//!   each try chosen at random among `try_acquire`, a short timeout and no timeout; held for a
//!   random 0..=HOLD_US µs. Every step appends one line to FILE with a single `write(2)` on an
//!   `O_APPEND` descriptor: `acq PID`, `held PID HOLDER`, `start PID INODE ok|lost`, `end PID`,
//!   `verify PID ok|lost` (the guard's `verify`, after the end of the critical section, before
//!   the release), `free PID ok|lost|err`, `error PID MESSAGE`.
//!   `nolock` skips the lock (a control run that must show overlaps). Prints `raced HOLDS TRIES`.
//!   The id in those lines is the pid, or `HOLDER_ID` from the environment when set (racers in
//!   different PID namespaces may share a pid).
//! - `fork keep|drop`: fork(2) without exec; the child keeps or drops its copy of the guard, prints
//!   `child PID kept|dropped` and waits for a signal; the parent prints `forked PID`.
//! - `status`: ask [`Lock::holder`] without taking the lock; prints `free` or
//!   `holder PID|? KIND`.
//! - `bind NAME listen|nolisten`: bind a stream socket to the abstract name NAME (no leading NUL),
//!   listening or not, as a squatter would; prints `bound`.
//!
//! It exits on end of input, releasing the lock by dropping the guard.

#[cfg(unix)]
use std::io::{BufRead, Write};
#[cfg(unix)]
use std::os::fd::AsFd;
#[cfg(unix)]
use std::process::{Command, Stdio};
#[cfg(unix)]
use std::time::Duration;

#[cfg(unix)]
use onlyone::{Acquire, BackendKind, Builder, Guard, Lock, Scope};

/// The helper is Unix only (fork, descriptors, signals); tests/windows.rs runs its contenders itself.
#[cfg(not(unix))]
fn main() {
    eprintln!("holder: Unix only");
    std::process::exit(2);
}

#[cfg(unix)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: holder BACKEND NAME LOCK_DIR [WAIT_SECS]");
        std::process::exit(64);
    }
    let backend: BackendKind = args[0].parse().unwrap_or_else(|e| fail(e));
    let scope = match std::env::var("HOLDER_SCOPE").as_deref() {
        Ok("system") => Scope::System,
        _ => Scope::User,
    };
    let mut builder = Builder::new(&args[1]).backend(backend).scope(scope);
    if args[2] != "@default" {
        builder = builder.lock_dir(&args[2]);
    }
    let lock = builder.build().unwrap_or_else(|e| fail(e));
    let mut out = std::io::stdout().lock();
    let mut guard = match args.get(3).map(String::as_str) {
        Some("idle") => {
            say(&mut out, "ready");
            None
        }
        wait => acquire(&*lock, wait, &mut out),
    };
    let mut children = Vec::new();
    let mut sockets = Vec::new();
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
            "spawn" | "inherit" | "job" => {
                let mut cmd = Command::new("sleep");
                cmd.arg("3600").stdin(Stdio::null()).stdout(Stdio::null());
                if order != "spawn" {
                    if let Some(fd) = guard.as_ref().and_then(Guard::as_fd) {
                        hand_over(fd);
                    }
                }
                let child = cmd.spawn().unwrap_or_else(|e| fail(e));
                if order == "job" {
                    if let Some(g) = guard.as_mut() {
                        g.record_job(child.id()).unwrap_or_else(|e| fail(e));
                    }
                }
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
            "race" => {
                let (held, tries) = race(&*lock, arg);
                say(&mut out, &format!("raced {held} {tries}"));
            }
            "fork" => {
                // SAFETY: this program starts no thread of its own; the library's (an abstract
                // lock's draining thread, a flock wait's thread) hold no lock the child takes: the
                // child only formats, writes and drops the guard, which in a forked copy only
                // closes its descriptor, and glibc's fork(2) keeps malloc usable in the child.
                match unsafe { nix::unistd::fork() } {
                    Ok(nix::unistd::ForkResult::Child) => {
                        let what = if arg == "drop" {
                            drop(guard.take());
                            "dropped"
                        } else {
                            "kept"
                        };
                        say(&mut out, &format!("child {} {what}", std::process::id()));
                        loop {
                            nix::unistd::pause();
                        }
                    }
                    Ok(nix::unistd::ForkResult::Parent { child }) => {
                        say(&mut out, &format!("forked {child}"));
                    }
                    Err(e) => fail(e),
                }
            }
            "status" => match lock.holder().unwrap_or_else(|e| fail(e)) {
                None => say(&mut out, "free"),
                Some(h) => {
                    let pid = h.pid.map_or("?".to_owned(), |p| p.to_string());
                    say(&mut out, &format!("holder {pid} {:?}", h.kind));
                }
            },
            "bind" => {
                sockets.push(squat(arg));
                say(&mut out, "bound");
            }
            _ => fail(format!("unknown order {line:?}")),
        }
    }
}

#[cfg(unix)]
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
#[cfg(unix)]
fn hand_over(fd: std::os::fd::BorrowedFd<'_>) {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap_or_else(|e| fail(e));
}

/// The `race` order: see the module docs.
#[cfg(unix)]
fn race(lock: &dyn Lock, args: &str) -> (u64, u64) {
    fn usage<T>(args: &str) -> T {
        fail(format!(
            "usage: race FILE HOLDS SEED HOLD_US [nolock], not {args:?}"
        ))
    }
    let mut words = args.split(' ');
    let file = words
        .next()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| usage(args));
    let mut number = || -> u64 {
        words
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| usage(args))
    };
    let (holds, seed, hold_us) = (number(), number(), number());
    let nolock = words.next() == Some("nolock");
    let mut witness = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .unwrap_or_else(|e| fail(e));
    // One write(2) per line: O_APPEND makes each land whole and in order among all writers.
    let mut note = |line: String| {
        witness
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| fail(e))
    };
    let pid = std::env::var("HOLDER_ID")
        .ok()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(std::process::id);
    let mut rng = Rng(seed ^ (u64::from(pid) << 32) | 1);
    let (mut held, mut tries) = (0, 0);
    while holds == 0 || held < holds {
        tries += 1;
        note(format!("acq {pid}\n"));
        let guard = if nolock {
            None
        } else {
            let timeout = match rng.below(4) {
                0 => Some(Duration::ZERO),
                1 => Some(Duration::from_micros(rng.below(5000))),
                _ => None,
            };
            match lock.acquire_timeout(timeout) {
                Ok(Acquire::Acquired(g)) => Some(g),
                Ok(Acquire::Held(h)) => {
                    let holder = h.pid.map_or("?".to_owned(), |p| p.to_string());
                    note(format!("held {pid} {holder}\n"));
                    pause(rng.below(hold_us + 1));
                    continue;
                }
                Err(e) => {
                    note(format!("error {pid} {e}\n"));
                    pause(rng.below(hold_us + 1));
                    continue;
                }
            }
        };
        let verified = |g: &Option<Guard>| match g.as_ref().map(Guard::verify) {
            Some(Err(_)) => "lost",
            _ => "ok",
        };
        note(format!(
            "start {pid} {} {}\n",
            guard.as_ref().map_or(0, inode),
            verified(&guard)
        ));
        pause(rng.below(hold_us + 1));
        // The verdict is written after the end of the critical section, so that it covers
        // everything that happened inside it.
        note(format!("end {pid}\n"));
        note(format!("verify {pid} {}\n", verified(&guard)));
        let freed = match guard.map(Guard::release) {
            Some(Err(e)) if e.kind() == onlyone::ErrorKind::Lost => "lost",
            Some(Err(_)) => "err",
            _ => "ok",
        };
        note(format!("free {pid} {freed}\n"));
        held += 1;
    }
    (held, tries)
}

/// The inode of the held lock file (0 for a lock without a file).
#[cfg(unix)]
fn inode(guard: &Guard) -> u64 {
    use std::os::unix::fs::MetadataExt;
    match guard.as_fd() {
        Some(fd) => nix::sys::stat::fstat(fd.as_fd()).map_or(0, |s| s.st_ino),
        None if guard.backend() == BackendKind::AbstractSocket => 0,
        None => std::fs::symlink_metadata(guard.resource()).map_or(0, |m| m.ino()),
    }
}

/// Sleeps `us` microseconds (0: just yields): how long a racer holds, not a synchronisation.
#[cfg(unix)]
fn pause(us: u64) {
    if us == 0 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(us));
    }
}

/// xorshift64*: enough randomness for picking timeouts, no dependency.
#[cfg(unix)]
struct Rng(u64);

#[cfg(unix)]
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The `bind` order: a socket bound to an abstract name, listening or not (Linux only).
#[cfg(unix)]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn squat(args: &str) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
    };
    use std::os::fd::AsRawFd;
    let (name, mode) = args
        .rsplit_once(' ')
        .unwrap_or_else(|| fail(format!("usage: bind NAME listen|nolisten, not {args:?}")));
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap_or_else(|e| fail(e));
    let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap_or_else(|e| fail(e));
    bind(fd.as_raw_fd(), &addr).unwrap_or_else(|e| fail(format!("bind @{name}: {e}")));
    if mode == "listen" {
        listen(&fd, Backlog::new(16).unwrap_or_else(|e| fail(e))).unwrap_or_else(|e| fail(e));
    }
    fd
}

#[cfg(unix)]
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn squat(_args: &str) -> std::os::fd::OwnedFd {
    fail("abstract sockets exist only on Linux and Android")
}

#[cfg(unix)]
fn say(out: &mut impl Write, line: &str) {
    writeln!(out, "{line}").and_then(|()| out.flush()).ok();
}

#[cfg(unix)]
fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("holder: {e}");
    std::process::exit(1);
}
