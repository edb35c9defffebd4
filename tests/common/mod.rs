//! Child-process harness: spawn the `holder` example, talk to it over pipes, kill and reap it on
//! drop (also when a test fails half-way).

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
    assert!(
        path.exists(),
        "{} is missing: run the tests through `cargo test`, which builds examples",
        path.display()
    );
    path
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

    /// Reads one line from the child's stdout (blocks on the pipe; panics on end of file).
    pub fn line(&mut self) -> String {
        let mut s = String::new();
        let n = self.stdout.read_line(&mut s).expect("read from child");
        assert!(n > 0, "child {} closed its stdout", self.pid());
        s.trim_end().to_owned()
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
        let status = self.child.wait().expect("wait");
        self.reaped = true;
        status
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

    /// Waits until the child has exited, without reaping it.
    pub fn wait_zombie(&mut self) {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        loop {
            match waitid(
                Id::Pid(Pid::from_raw(self.pid() as i32)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
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

/// Every local backend this build has.
pub fn backends() -> Vec<BackendKind> {
    BackendKind::available_local()
}

/// A unique lock name for one test, so that tests running in parallel never share a lock.
pub fn unique_name(test: &str) -> String {
    format!("test-{test}-{}", std::process::id())
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    onlyone::process::stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}
