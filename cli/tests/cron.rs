//! What a cron job needs beyond the lock, against the `onlyone` binary and real processes:
//! `--max-runtime` (the job's process group, the terminal), `--stale-after`, `--log` to a real
//! systemd-journald (standalone in a mount namespace of its own), to a syslog socket, and the
//! fallback when neither listens.
//!
//! A harness of its own (`harness = false`), because some tests cannot run everywhere (journald
//! and mount namespaces need root and `systemd-journald`): it prints "N passed, N failed, N
//! skipped", each skip with its reason; `ONLYONE_REQUIRE_ROOT_TESTS=1` makes a skip a failure
//! (CI). No sleeps: the tests wait on pipes, on journald's readiness notification, on
//! `journalctl --sync`, and on pidfds with a bound that only a failure reaches.

// The workspace's child-process harness, shared with the library's tests.
#[cfg(target_os = "linux")]
#[path = "../../tests/common/mod.rs"]
mod common;

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    println!("cron: skipped: Linux only (/proc, script(1) of util-linux, journald, unshare)");
    let require = std::env::var("ONLYONE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    println!(
        "0 passed, {}, {}",
        if require { "1 failed" } else { "0 failed" },
        if require { "0 skipped" } else { "1 skipped" }
    );
    if require {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    suite::main()
}

#[cfg(target_os = "linux")]
mod suite {
    use std::ffi::OsStr;
    use std::os::unix::net::UnixDatagram;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::{Path, PathBuf};
    use std::process::{Command, ExitCode, Stdio};
    use std::time::Duration;

    use nix::unistd::Pid;
    use onlyone::BackendKind;

    use crate::common::{KillOnDrop, Proc, unique_name};

    const EXE: &str = env!("CARGO_BIN_EXE_onlyone");

    /// Why a test could not run here.
    struct Skip(String);

    type Test = fn() -> Result<(), Skip>;

    const TESTS: &[(&str, Test)] = &[
        (
            "max_runtime_kills_the_group_that_ignores_sigterm",
            max_runtime_kills_the_group_that_ignores_sigterm,
        ),
        (
            "max_runtime_names_children_that_left_the_group",
            max_runtime_names_children_that_left_the_group,
        ),
        (
            "max_runtime_lets_a_quick_job_end_with_its_status",
            max_runtime_lets_a_quick_job_end_with_its_status,
        ),
        (
            "the_job_has_a_process_group_of_its_own",
            the_job_has_a_process_group_of_its_own,
        ),
        (
            "a_job_reading_the_terminal_under_max_runtime",
            a_job_reading_the_terminal_under_max_runtime,
        ),
        (
            "ctrl_z_stops_onlyone_with_the_job_and_fg_resumes_both",
            ctrl_z_stops_onlyone_with_the_job_and_fg_resumes_both,
        ),
        (
            "stale_holder_gives_its_own_exit_status",
            stale_holder_gives_its_own_exit_status,
        ),
        (
            "skipped_run_in_the_journal_with_fields",
            skipped_run_in_the_journal_with_fields,
        ),
        ("skipped_run_in_syslog", skipped_run_in_syslog),
        (
            "replaced_holder_and_lost_lock_in_syslog",
            replaced_holder_and_lost_lock_in_syslog,
        ),
        (
            "no_journal_no_syslog_the_job_still_runs",
            no_journal_no_syslog_the_job_still_runs,
        ),
    ];

    pub fn main() -> ExitCode {
        let filters: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let require = std::env::var("ONLYONE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        for (name, test) in TESTS {
            if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            match catch_unwind(AssertUnwindSafe(test)) {
                Ok(Ok(())) => {
                    println!("test {name} ... ok");
                    passed += 1;
                }
                Ok(Err(Skip(why))) if !require => {
                    println!("test {name} ... skipped: {why}");
                    skipped += 1;
                }
                Ok(Err(Skip(why))) => {
                    println!(
                        "test {name} ... FAILED: skipped ({why}) under ONLYONE_REQUIRE_ROOT_TESTS=1"
                    );
                    failed += 1;
                }
                Err(_) => {
                    println!("test {name} ... FAILED");
                    failed += 1;
                }
            }
        }
        println!("{passed} passed, {failed} failed, {skipped} skipped");
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// A lock directory and a unique name, on flock where the build has it (else the first
    /// local backend it has: the CLI's tests also run with one backend alone).
    struct Lk {
        dir: tempfile::TempDir,
        name: String,
    }

    impl Lk {
        fn new(test: &str) -> Lk {
            Lk {
                dir: tempfile::tempdir().expect("tempdir"),
                name: unique_name(test),
            }
        }

        fn dir(&self) -> &Path {
            self.dir.path()
        }

        fn file(&self, name: &str) -> PathBuf {
            self.dir().join(name)
        }

        /// `onlyone run -b BACKEND --lock-dir D -N NAME OPTS -- JOB`.
        fn run<S: AsRef<OsStr>>(&self, opts: &[&str], job: &[S]) -> Command {
            let mut cmd = Command::new(EXE);
            cmd.args(self.run_args(opts)).args(job);
            cmd
        }

        fn run_args(&self, opts: &[&str]) -> Vec<String> {
            let mut v: Vec<String> = vec![
                "run".into(),
                "-b".into(),
                backend().as_str().into(),
                "--lock-dir".into(),
                self.dir().display().to_string(),
                "-N".into(),
                self.name.clone(),
            ];
            v.extend(opts.iter().map(|s| s.to_string()));
            v.push("--".into());
            v
        }

        /// A running holder whose job said `ready` and waits for its standard input to close.
        fn hold(&self) -> Proc {
            let mut holder =
                Proc::spawn(self.run(&[], &["sh", "-c", "echo ready; read x; exit 0"]));
            assert_eq!(holder.line(), "ready");
            holder
        }
    }

    /// The backend the tests use.
    fn backend() -> BackendKind {
        let all = crate::common::backends();
        if all.contains(&BackendKind::Flock) {
            BackendKind::Flock
        } else {
            all[0]
        }
    }

    struct Out {
        code: Option<i32>,
        stdout: String,
        stderr: String,
    }

    fn output(cmd: &mut Command) -> Out {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Waits for `pid` (not our child) to be gone, on a pidfd; panics if it still lives after
    /// `limit`, a bound only a failure reaches.
    fn gone_within(pid: u32, limit: Duration, what: &str) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let raw = rustix::process::Pid::from_raw(pid as i32).expect("pid");
        let Ok(fd) = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) else {
            return; // already gone
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let n = poll(
            &mut fds,
            PollTimeout::try_from(limit.as_millis() as u64).unwrap(),
        )
        .expect("poll");
        assert!(n > 0, "{what} (pid {pid}) still runs after {limit:?}");
    }

    fn read_pid(path: &Path) -> u32 {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .expect("a pid")
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    // --------------------------------------------------------------------------------------
    // --max-runtime
    // --------------------------------------------------------------------------------------

    /// A job that ignores SIGTERM, with a child that ignores it too (inherited), is SIGKILLed
    /// with that child after --kill-after; onlyone exits 124 and says why.
    fn max_runtime_kills_the_group_that_ignores_sigterm() -> Result<(), Skip> {
        let lk = Lk::new("max-runtime");
        let child = lk.file("child");
        let script = format!(
            "trap '' TERM; sleep 1000 >/dev/null 2>&1 & echo $! > {}; wait; wait; echo survived",
            child.display()
        );
        let out = output(&mut lk.run(
            &["--max-runtime", "0.2", "--kill-after", "0.2"],
            &["sh", "-c", &script],
        ));
        let _cleanup = KillOnDrop(read_pid(&child));
        assert_eq!(out.code, Some(124), "{}", out.stderr);
        assert!(
            out.stderr.contains("ran longer than --max-runtime 0.2 s"),
            "{}",
            out.stderr
        );
        assert!(!out.stdout.contains("survived"), "{}", out.stdout);
        gone_within(read_pid(&child), Duration::from_secs(10), "the job's child");
        Ok(())
    }

    /// A child that left the job's process group (setsid) is not signalled, and the message
    /// names it.
    fn max_runtime_names_children_that_left_the_group() -> Result<(), Skip> {
        let lk = Lk::new("max-runtime-setsid");
        let escaped = lk.file("escaped");
        let script = format!(
            "setsid sleep 1000 >/dev/null 2>&1 & echo $! > {}; sleep 1000 >/dev/null 2>&1",
            escaped.display()
        );
        let out = output(&mut lk.run(
            &["--max-runtime", "0.2", "--kill-after", "0.2"],
            &["sh", "-c", &script],
        ));
        let pid = read_pid(&escaped);
        let _cleanup = KillOnDrop(pid);
        assert_eq!(out.code, Some(124), "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "outside the job's process group: pid {pid} (sleep)"
            )),
            "{}",
            out.stderr
        );
        assert!(crate::common::alive(pid), "the escaped child was signalled");
        Ok(())
    }

    /// A job that ends in time keeps its own status.
    fn max_runtime_lets_a_quick_job_end_with_its_status() -> Result<(), Skip> {
        let lk = Lk::new("max-runtime-quick");
        let out = output(&mut lk.run(&["--max-runtime", "1000"], &["sh", "-c", "exit 3"]));
        assert_eq!(out.code, Some(3), "{}", out.stderr);
        // -F runs no supervisor: refused with --max-runtime.
        let out = output(&mut lk.run(&["-F", "--max-runtime", "1"], &["true"]));
        assert_eq!(out.code, Some(64), "{}", out.stderr);
        Ok(())
    }

    /// The job leads a process group of its own, not onlyone's.
    fn the_job_has_a_process_group_of_its_own() -> Result<(), Skip> {
        let lk = Lk::new("pgrp");
        let mut wrapper = Proc::spawn(lk.run(&[], &["sh", "-c", "echo $$; read x; exit 0"]));
        let job: i32 = wrapper.line().parse().expect("pid");
        let job_group = nix::unistd::getpgid(Some(Pid::from_raw(job))).expect("getpgid job");
        let wrapper_group =
            nix::unistd::getpgid(Some(Pid::from_raw(wrapper.pid() as i32))).expect("getpgid");
        assert_eq!(job_group, Pid::from_raw(job), "the job leads its group");
        assert_ne!(job_group, wrapper_group);
        assert_eq!(wrapper.finish().code(), Some(0));
        Ok(())
    }

    /// On a terminal (a pty made by script(1)), the job's group gets the terminal: a job that
    /// reads it under --max-runtime gets its input, and is not stopped by SIGTTIN.
    fn a_job_reading_the_terminal_under_max_runtime() -> Result<(), Skip> {
        if Command::new("script").arg("--version").output().is_err() {
            return Err(Skip("script(1) of util-linux is not installed".into()));
        }
        let lk = Lk::new("tty");
        let got = lk.file("got");
        let mut args = lk.run_args(&["--max-runtime", "1000"]);
        args.extend([
            "sh".into(),
            "-c".into(),
            format!("echo ready; read x; echo \"got-$x\" > {}", got.display()),
        ]);
        let inner = std::iter::once(EXE.to_owned())
            .chain(args)
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut script = Command::new("script");
        script.args(["-q", "-e", "-c", &format!("exec {inner}"), "/dev/null"]);
        let mut term = Proc::spawn(script);
        term.line_containing("ready");
        term.write(b"hello\n");
        let rest = term.rest();
        let status = term.wait();
        assert_eq!(status.code(), Some(0), "{rest}");
        assert_eq!(
            std::fs::read_to_string(&got).unwrap_or_default(),
            "got-hello\n",
            "{rest}"
        );
        Ok(())
    }

    /// In an interactive bash (job control) on a pty: Ctrl-Z while the job reads the terminal
    /// stops the job and onlyone (bash reports it Stopped and takes the terminal), `fg` hands
    /// the terminal back to the job, which then reads its line; onlyone exits with its status.
    fn ctrl_z_stops_onlyone_with_the_job_and_fg_resumes_both() -> Result<(), Skip> {
        if Command::new("script").arg("--version").output().is_err() {
            return Err(Skip("script(1) of util-linux is not installed".into()));
        }
        if Command::new("bash").arg("--version").output().is_err() {
            return Err(Skip("bash is not installed".into()));
        }
        let lk = Lk::new("ctrl-z");
        let got = lk.file("got");
        let mut args = lk.run_args(&["--max-runtime", "1000"]);
        // The words the test waits for are split in the command line, which bash echoes.
        args.extend([
            "sh".into(),
            "-c".into(),
            format!(
                "echo re''ady; read x; echo \"got-$x\" > {}; exit 7",
                got.display()
            ),
        ]);
        let line = std::iter::once(EXE.to_owned())
            .chain(args)
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut script = Command::new("script");
        script
            .args(["-q", "-e", "-c", "bash --norc --noprofile -i", "/dev/null"])
            .env("PS1", "$ ");
        let mut term = Proc::spawn(script);
        term.write(format!("{line}\n").as_bytes());
        term.line_containing("ready");
        term.write(b"\x1a");
        term.line_containing("Stopped");
        term.write(b"fg\n");
        // bash prints the job's command line as it continues it.
        term.line_containing(&lk.name);
        term.write(b"hello\n");
        term.write(b"echo \"st\"\"atus-$?\"\n");
        term.line_containing("status-7");
        term.write(b"exit\n");
        let rest = term.rest();
        let status = term.wait();
        assert_eq!(status.code(), Some(0), "{rest}");
        assert_eq!(
            std::fs::read_to_string(&got).unwrap_or_default(),
            "got-hello\n",
            "{rest}"
        );
        Ok(())
    }

    // --------------------------------------------------------------------------------------
    // --stale-after
    // --------------------------------------------------------------------------------------

    /// Every holder is older than 0 s: exit 80 with the age; no holder is older than a day: the
    /// usual 75. `status` says for how long the lock has been held.
    fn stale_holder_gives_its_own_exit_status() -> Result<(), Skip> {
        let lk = Lk::new("stale");
        let holder = lk.hold();
        let out = output(&mut lk.run(&["--stale-after", "0"], &["true"]));
        assert_eq!(out.code, Some(80), "{}", out.stderr);
        assert!(
            out.stderr.contains("stale lock") && out.stderr.contains("held for"),
            "{}",
            out.stderr
        );
        // -q does not hide a stale lock.
        let out = output(&mut lk.run(&["-q", "--stale-after", "0"], &["true"]));
        assert_eq!(out.code, Some(80), "{}", out.stderr);
        assert!(out.stderr.contains("stale lock"), "{}", out.stderr);
        let out = output(&mut lk.run(&["--stale-after", "1d"], &["true"]));
        assert_eq!(out.code, Some(75), "{}", out.stderr);
        assert!(!out.stderr.contains("stale lock"), "{}", out.stderr);
        let out = output(Command::new(EXE).args([
            "status",
            "-b",
            backend().as_str(),
            "--lock-dir",
            &lk.dir().display().to_string(),
            &lk.name,
        ]));
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stdout.contains(", held for "), "{}", out.stdout);
        assert_eq!(holder.finish().code(), Some(0));
        Ok(())
    }

    // --------------------------------------------------------------------------------------
    // --log
    // --------------------------------------------------------------------------------------

    /// systemd-journald, standalone in a mount namespace with tmpfs on /run/systemd, /run/log
    /// (and /var/log/journal, so that nothing reaches the host's journal), started with a
    /// NOTIFY_SOCKET this test reads its READY=1 from. Killed when dropped; the namespace and
    /// its mounts go with it.
    struct Journald {
        pid: u32,
        child: std::process::Child,
    }

    impl Drop for Journald {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Journald {
        fn start(dir: &Path) -> Result<Journald, Skip> {
            let journald = [
                "/lib/systemd/systemd-journald",
                "/usr/lib/systemd/systemd-journald",
            ]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| Skip("systemd-journald is not installed (apt: systemd)".into()))?;
            if !is_root() {
                return Err(Skip("needs root (mount namespace, tmpfs mounts)".into()));
            }
            let notify = dir.join("notify");
            let socket = UnixDatagram::bind(&notify).expect("bind the notify socket");
            socket
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let script = format!(
                "set -e; mount -n -t tmpfs tmpfs /run/systemd; mkdir -p /run/log; \
                 mount -n -t tmpfs tmpfs /run/log; \
                 if [ -d /var/log/journal ]; then mount -n -t tmpfs tmpfs /var/log/journal; fi; \
                 exec {journald}"
            );
            let child = Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c", &script])
                .env("NOTIFY_SOCKET", &notify)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| Skip(format!("cannot run unshare: {e}")))?;
            let pid = child.id();
            let journald = Journald { pid, child };
            let mut buf = [0u8; 4096];
            loop {
                let n = socket
                    .recv(&mut buf)
                    .expect("journald said nothing on NOTIFY_SOCKET within 30 s");
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    return Ok(journald);
                }
            }
        }

        /// `COMMAND` in journald's mount namespace.
        fn inside(&self, program: &str) -> Command {
            let mut cmd = Command::new("nsenter");
            cmd.args(["-t", &self.pid.to_string(), "-m", "--", program]);
            cmd
        }
    }

    /// A run skipped because the lock is held is one journal entry, read back with journalctl,
    /// with the structured fields.
    fn skipped_run_in_the_journal_with_fields() -> Result<(), Skip> {
        let lk = Lk::new("journal");
        let journald = Journald::start(lk.dir())?;
        let holder = lk.hold();
        let mut contender = journald.inside(EXE);
        contender
            .args(lk.run_args(&["--log", "journal"]))
            .arg("true");
        let out = output(&mut contender);
        assert_eq!(out.code, Some(75), "{}", out.stderr);
        assert!(out.stderr.contains("already running"), "{}", out.stderr);
        let sync = output(journald.inside("journalctl").arg("--sync"));
        assert_eq!(sync.code, Some(0), "journalctl --sync: {}", sync.stderr);
        let read = output(journald.inside("journalctl").args([
            "--no-pager",
            "-o",
            "json",
            &format!("ONLYONE_NAME={}", lk.name),
        ]));
        assert_eq!(read.code, Some(0), "journalctl: {}", read.stderr);
        let entries: Vec<serde_json::Value> = read
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("journalctl -o json"))
            .collect();
        assert_eq!(entries.len(), 1, "{}", read.stdout);
        let e = &entries[0];
        let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        assert_eq!(field("ONLYONE_EVENT"), "skipped");
        assert_eq!(field("ONLYONE_BACKEND"), backend().as_str());
        assert_eq!(field("ONLYONE_HOLDER_PID"), holder.pid().to_string());
        assert_eq!(field("SYSLOG_IDENTIFIER"), "onlyone");
        assert!(
            field("MESSAGE").contains("already running") && field("ONLYONE_HOLDER").contains("pid"),
            "{e}"
        );
        assert_eq!(holder.finish().code(), Some(0));
        Ok(())
    }

    /// `--log syslog` sends the line to the socket ONLYONE_SYSLOG_SOCKET names (a datagram
    /// socket this test binds, as syslog daemons do on /dev/log).
    fn skipped_run_in_syslog() -> Result<(), Skip> {
        let lk = Lk::new("syslog");
        let path = lk.file("log.sock");
        let socket = UnixDatagram::bind(&path).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let holder = lk.hold();
        let out = output(
            lk.run(&["--log", "syslog", "-q"], &["true"])
                .env("ONLYONE_SYSLOG_SOCKET", &path),
        );
        assert_eq!(out.code, Some(75), "{}", out.stderr);
        assert_eq!(out.stderr, "", "-q keeps the line off stderr");
        let mut buf = [0u8; 8192];
        let n = socket.recv(&mut buf).expect("no syslog line within 30 s");
        let line = String::from_utf8_lossy(&buf[..n]);
        // <PRI>TIMESTAMP onlyone[PID]: NAME: MESSAGE; user.info is 14.
        assert!(line.starts_with("<14>"), "{line}");
        assert!(line.contains("onlyone["), "{line}");
        assert!(
            line.contains(&format!("{}: already running", lk.name))
                && line.contains(&format!("pid {}", holder.pid())),
            "{line}"
        );
        assert_eq!(holder.finish().code(), Some(0));

        // A --max-runtime kill is a line too, at priority err (user.err is 11).
        let out = output(
            lk.run(
                &["--log", "syslog", "--max-runtime", "0.1"],
                &["sleep", "1000"],
            )
            .env("ONLYONE_SYSLOG_SOCKET", &path),
        );
        assert_eq!(out.code, Some(124), "{}", out.stderr);
        let n = socket.recv(&mut buf).expect("no syslog line within 30 s");
        let line = String::from_utf8_lossy(&buf[..n]);
        assert!(
            line.starts_with("<11>") && line.contains("ran longer than --max-runtime 0.1 s"),
            "{line}"
        );
        Ok(())
    }

    /// `--replace` and a lost lock (its file deleted under the job) are syslog lines too.
    fn replaced_holder_and_lost_lock_in_syslog() -> Result<(), Skip> {
        let lk = Lk::new("syslog-replace");
        let path = lk.file("log.sock");
        let socket = UnixDatagram::bind(&path).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = [0u8; 8192];
        let mut holder = lk.hold();
        let out = output(
            lk.run(&["--log", "syslog", "--replace"], &["true"])
                .env("ONLYONE_SYSLOG_SOCKET", &path),
        );
        if out.code == Some(69) {
            return Err(Skip(format!("--replace is refused here: {}", out.stderr)));
        }
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let n = socket.recv(&mut buf).expect("no syslog line within 30 s");
        let line = String::from_utf8_lossy(&buf[..n]);
        // user.warning is 12.
        assert!(
            line.starts_with("<12>")
                && line.contains("replacing the holder")
                && line.contains(&format!("pid {}", holder.pid())),
            "{line}"
        );
        assert_eq!(
            holder.wait().code(),
            Some(128 + 15),
            "the holder got SIGTERM"
        );

        if backend() == BackendKind::AbstractSocket {
            return Ok(()); // no file to delete under the job
        }
        let mut cmd = lk.run(
            &["--log", "syslog"],
            &["sh", "-c", "echo \"$ONLYONE_RESOURCE\"; read x; exit 0"],
        );
        cmd.env("ONLYONE_SYSLOG_SOCKET", &path);
        let mut runner = Proc::spawn(cmd);
        let file = runner.line();
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("remove {file}: {e}"));
        assert_eq!(runner.wait().code(), Some(76));
        let n = socket.recv(&mut buf).expect("no syslog line within 30 s");
        let line = String::from_utf8_lossy(&buf[..n]);
        assert!(
            line.starts_with("<11>") && line.contains("lost the lock while the job ran"),
            "{line}"
        );
        Ok(())
    }

    /// Where no journal (tmpfs on /run/systemd) and no syslog listen, `--log journal` warns and
    /// the job runs; a skipped run still says so on stderr.
    fn no_journal_no_syslog_the_job_still_runs() -> Result<(), Skip> {
        if !is_root() {
            return Err(Skip("needs root (mount namespace, tmpfs mounts)".into()));
        }
        let lk = Lk::new("nolog");
        let absent = lk.file("no-syslog-here");
        let run = |opts: &[&str], job: &str| {
            let args = lk
                .run_args(opts)
                .into_iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ");
            output(
                Command::new("unshare")
                    .args(["-m", "--propagation", "private", "sh", "-c"])
                    .arg(format!(
                        "mount -n -t tmpfs tmpfs /run/systemd && exec {EXE} {args} {job}"
                    ))
                    .env("ONLYONE_SYSLOG_SOCKET", &absent),
            )
        };
        let out = run(&["--log", "journal", "--max-runtime", "1000"], "echo ran");
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_eq!(out.stdout, "ran\n");
        let holder = lk.hold();
        let out = run(&["--log", "journal"], "true");
        assert_eq!(out.code, Some(75), "{}", out.stderr);
        assert!(
            out.stderr.contains("already running")
                && out.stderr.contains("no journal")
                && out.stderr.contains("logging to standard error only"),
            "{}",
            out.stderr
        );
        // The default (no terminal: journal) falls back without a word.
        let out = run(&[], "true");
        assert_eq!(out.code, Some(75), "{}", out.stderr);
        assert!(!out.stderr.contains("warning"), "{}", out.stderr);
        assert_eq!(holder.finish().code(), Some(0));
        Ok(())
    }
}
