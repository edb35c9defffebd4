//! Child-process harness: spawn the `holder` example, talk to it over pipes, kill and reap it on
//! drop (also when a test fails half-way).
//!
//! The CLI's tests (cli/tests/*.rs, package `onlyone-cli`) include this file too, through
//! `#[path]`; [`holder_exe`] serves only the library's tests (the example is the library's).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use onlyone::BackendKind;

/// The `holder` example, built by `cargo test` beside the test binaries.
pub fn holder_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join("examples").join("holder");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run the tests with plain `cargo test` (which builds examples) \
                 or `cargo build --examples` first",
                path.display()
            )
        });
    // `cargo test --test NAME` does not rebuild examples: refuse to test against a stale one.
    let newest_source = newest_mtime(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).max(
        newest_mtime(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")),
    );
    assert!(
        newest_source <= built,
        "{} is older than the sources: run plain `cargo test` (which rebuilds examples) or \
         `cargo build --examples` with the same features",
        path.display()
    );
    path
}

/// The newest modification time of any file below `dir`.
pub fn newest_mtime(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(newest)
        };
        newest = newest.max(t);
    }
    newest
}

/// A child process killed with SIGKILL and reaped when dropped.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    reaped: bool,
}

impl Proc {
    /// Spawns `cmd` with piped stdin and stdout.
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Proc {
            child,
            stdin,
            stdout,
            reaped: false,
        }
    }

    /// The holder example for `backend`, lock `name`, files in `dir`; `wait` as its 4th argument.
    pub fn holder(backend: BackendKind, name: &str, dir: &Path, wait: Option<&str>) -> Proc {
        let mut cmd = Command::new(holder_exe());
        cmd.arg(backend.as_str()).arg(name).arg(dir);
        if let Some(w) = wait {
            cmd.arg(w);
        }
        Proc::spawn(cmd)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The read end of the child's stdout, to poll several children at once.
    pub fn stdout_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.stdout.get_ref().as_fd()
    }

    /// Reads one line from the child's stdout (blocks on the pipe; panics on end of file).
    pub fn line(&mut self) -> String {
        self.next_line()
            .unwrap_or_else(|| panic!("child {} closed its stdout", self.pid()))
    }

    /// The next line, or `None` at end of file.
    pub fn next_line(&mut self) -> Option<String> {
        let mut s = String::new();
        let n = self.stdout.read_line(&mut s).expect("read from child");
        (n > 0).then(|| s.trim_end().to_owned())
    }

    /// Reads until a line containing `what` (for terminal output with echo and `\r`).
    pub fn line_containing(&mut self, what: &str) -> String {
        loop {
            let l = self.line();
            if l.contains(what) {
                return l;
            }
        }
    }

    /// Reads to end of file: every process holding the pipe's write end has exited.
    pub fn rest(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        self.stdout.read_to_string(&mut s).expect("read to end");
        s
    }

    /// Writes raw bytes to the child's stdin.
    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to child");
        stdin.flush().expect("flush");
    }

    /// Waits for the child's exit status (reaps it).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().expect("wait");
        self.reaped = true;
        status
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid() as i32), sig).expect("kill");
    }

    /// Sends one order line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush");
    }

    /// Sends an order and returns the answer line.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }

    /// Closes stdin (the holder exits, dropping its guard) and waits for the exit status.
    pub fn finish(mut self) -> std::process::ExitStatus {
        self.stdin = None;
        self.wait()
    }

    /// SIGKILLs the child without reaping it (it stays a zombie until dropped).
    pub fn kill(&mut self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL).expect("kill");
    }

    /// SIGKILLs and waits until the child is a zombie (dead, all its descriptors closed), without
    /// reaping it: its pid stays taken, as a crashed holder's would be until its parent waits.
    pub fn kill_to_zombie(&mut self) {
        self.kill();
        self.wait_zombie();
    }

    /// Waits until the child has exited, without reaping it (waitid(2) with `WNOWAIT`).
    pub fn wait_zombie(&mut self) {
        use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
        let pid = Pid::from_raw(self.pid() as i32).expect("a child's pid is positive");
        loop {
            match waitid(
                WaitId::Pid(pid),
                WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                other => {
                    other.expect("waitid");
                    return;
                }
            }
        }
    }

    /// SIGKILLs and reaps.
    pub fn kill_and_reap(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Kills a process that is not our child (a grandchild) when dropped.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
    }
}

/// Parses `acquired PID` / `held PID KIND`.
pub fn parse_outcome(line: &str) -> (bool, Option<u32>) {
    let mut words = line.split(' ');
    let what = words.next().unwrap_or("");
    let pid = words.next().and_then(|p| p.parse().ok());
    match what {
        "acquired" => (true, pid),
        "held" => (false, pid),
        _ => panic!("unexpected answer {line:?}"),
    }
}

/// The lock `name` of `backend`, its files (if any) in `dir`.
pub fn lock(backend: BackendKind, name: &str, dir: &Path) -> Box<dyn onlyone::Lock> {
    onlyone::Builder::new(name)
        .backend(backend)
        .lock_dir(dir)
        .build()
        .expect("build lock")
}

/// Every local backend this build has.
pub fn backends() -> Vec<BackendKind> {
    BackendKind::available_local()
}

/// The signals onlyone's `run` forwards to its job (`FORWARDED` in `cli/src/run.rs`).
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Gives the process `cmd` starts the default action for the signals onlyone forwards, whatever
/// the test's own dispositions. A test run from a non-interactive shell's background job (`cargo
/// test &` in a script) inherits SIGINT and SIGQUIT ignored, under nohup(1) SIGHUP, and onlyone
/// hands an ignored signal on to its job unchanged, as flock(1) does. A shell that starts with a
/// signal ignored cannot trap it (POSIX `trap`), so a test whose job waits to trap one would wait
/// for ever.
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    use nix::sys::signal::{SigHandler, signal};
    // SAFETY: the closure runs in the child between fork and exec; it only calls signal(2)
    // (sigaction), which is async-signal-safe, and touches no memory of the parent's.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            for sig in FORWARDED {
                signal(sig, SigHandler::SigDfl).map_err(std::io::Error::from)?;
            }
            Ok(())
        })
    }
}

/// A unique lock name for one test, so that tests running in parallel never share a lock.
pub fn unique_name(test: &str) -> String {
    format!("test-{test}-{}", std::process::id())
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    onlyone::process::stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Waits until process `pid`, which need not be our child, has exited: on a pidfd where the
/// kernel has them (Linux), else by looking until it is gone or a zombie.
pub fn wait_gone(pid: u32) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let raw = rustix::process::Pid::from_raw(pid as i32).expect("pid");
        match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                poll(&mut fds, PollTimeout::NONE).expect("poll pidfd");
                return;
            }
            Err(rustix::io::Errno::SRCH) => return,
            Err(_) => {}
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not exit"
        );
        std::thread::yield_now();
    }
}

/// Waits until process `pid` sleeps in poll(2)/ppoll(2) — i.e. a waiter has tried, found the lock
/// held, and is waiting for the release event. Reads `/proc/PID/syscall` (the state of the
/// process, not a timer); panics if it does not get there within a minute.
pub fn wait_until_sleeping_in_poll(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let path = format!("/proc/{pid}/syscall");
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // x86_64: poll = 7, ppoll = 271; aarch64 has only ppoll = 73.
        let nr = text.split(' ').next().unwrap_or("");
        let polling = if cfg!(target_arch = "x86_64") {
            nr == "7" || nr == "271"
        } else {
            nr == "73"
        };
        if polling {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} never started waiting (syscall: {text:?})"
        );
        std::thread::yield_now();
    }
}

/// How many inotify instances process `pid` has open (`/proc/PID/fd`; 0 if unreadable).
#[cfg(target_os = "linux")]
pub fn inotify_instances(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|l| l.as_os_str() == "anon_inode:inotify")
                })
                .count()
        })
        .unwrap_or(0)
}
