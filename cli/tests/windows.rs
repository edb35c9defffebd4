//! `onlyone run` on Windows (run under Wine in CI, see .ci/run): the job runs in a kill-on-close
//! job object, dies with its wrapper, and the lock lives at least as long as the job.
//!
//! Runs with the library's Windows harness (`harness = false`, tests/windows_harness), printing
//! `NAME: ok`, `NAME: FAILED: why` or `NAME: skipped: why` and `N passed, N failed, N skipped`. The jobs are this test binary
//! started again (by onlyone) with `ONLYONE_CLI_WIN_ROLE`; every process a test starts is killed
//! and waited for when its guard drops (a killed wrapper's job dies with its job object).

#[cfg(not(windows))]
fn main() {
    println!("windows: skipped: Windows only (job objects)");
    println!("0 passed, 0 failed, 1 skipped");
}

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    suite::main()
}

// The skip-counting harness of the library's Windows suites.
#[cfg(windows)]
#[path = "../../tests/windows_harness/mod.rs"]
mod windows_harness;

#[cfg(windows)]
mod suite {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};

    use onlyone::os::{Liveness, ProcessIdentity};

    use crate::windows_harness::{Outcome, TestFn, run_all};

    const TESTS: &[(&str, TestFn)] = &[
        ("exit_status_passes_through", exit_status_passes_through),
        ("held_lock_gives_75_and_names_the_job", held_lock_gives_75),
        ("job_dies_with_its_wrapper", job_dies_with_its_wrapper),
        (
            "after_a_killed_wrapper_the_next_job_starts_once_the_first_exited",
            next_job_waits_for_the_first,
        ),
        (
            "replace_terminates_the_holder_and_its_job",
            replace_terminates_the_holder,
        ),
        (
            "list_shows_a_held_mutex_until_its_holder_exits",
            list_shows_a_held_mutex,
        ),
        (
            "break_lock_force_removes_a_pid_file",
            break_lock_force_removes_a_pid_file,
        ),
        (
            "break_lock_force_leaves_a_file_that_is_no_record",
            break_lock_force_leaves_a_foreign_file,
        ),
    ];

    const ROLE: &str = "ONLYONE_CLI_WIN_ROLE";

    pub(crate) fn main() -> ExitCode {
        if let Ok(role) = std::env::var(ROLE) {
            return job(&role);
        }
        run_all(TESTS)
    }

    /// The job: `exit N` exits with N; `hold` says `started PID ALIVE` (ALIVE: whether the job
    /// named by `ONLYONE_CLI_WIN_PREVIOUS=PID START` still runs) and sleeps until killed.
    fn job(role: &str) -> ExitCode {
        if let Some(code) = role.strip_prefix("exit ") {
            return ExitCode::from(code.parse::<u8>().expect("exit code"));
        }
        let previous_alive = std::env::var("ONLYONE_CLI_WIN_PREVIOUS")
            .ok()
            .and_then(|v| {
                let (pid, start) = v.split_once(' ')?;
                Some(ProcessIdentity {
                    pid: pid.parse().ok()?,
                    start_ticks: start.parse().ok(),
                    ..ProcessIdentity::current()
                })
            })
            .is_some_and(|id| !matches!(id.liveness(), Liveness::Dead(_)));
        println!("started {} {previous_alive}", std::process::id());
        loop {
            std::thread::park();
        }
    }

    /// An `onlyone` process, killed and waited for when dropped.
    struct Wrapper {
        child: Child,
        stdout: BufReader<ChildStdout>,
    }

    impl Wrapper {
        fn start(
            name: &str,
            dir: &Path,
            extra: &[&str],
            role: &str,
            env: &[(&str, String)],
        ) -> Self {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_onlyone"));
            cmd.args(["run", "-N", name, "--lock-dir"])
                .arg(dir)
                .args(extra)
                .arg("--")
                .arg(std::env::current_exe().expect("test binary"))
                .env(ROLE, role)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("start onlyone");
            let stdout = BufReader::new(child.stdout.take().expect("stdout"));
            Wrapper { child, stdout }
        }

        /// The job's `started PID ALIVE` line.
        fn started(&mut self) -> (u32, bool) {
            let mut line = String::new();
            self.stdout.read_line(&mut line).expect("read the job");
            let mut words = line.split_whitespace().skip(1);
            let pid = words.next().and_then(|p| p.parse().ok());
            let alive = words.next().map(|a| a == "true");
            match (pid, alive) {
                (Some(p), Some(a)) => (p, a),
                _ => panic!("the job should have started, said {line:?}"),
            }
        }

        fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Wrapper {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn unique(label: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("cliwin-{label}-{}-{nanos}", std::process::id())
    }

    /// Waits up to 10 s for process `pid` to exit; whether it did.
    fn exits_within_10_s(pid: u32) -> bool {
        use windows_sys::Win32::Foundation::{CloseHandle, WAIT_OBJECT_0};
        use windows_sys::Win32::System::Threading::{
            OpenProcess, PROCESS_SYNCHRONIZE, WaitForSingleObject,
        };
        // SAFETY: opens a process by pid; the handle is closed below.
        let handle = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
        if handle.is_null() {
            return true; // Gone already.
        }
        // SAFETY: an open handle with SYNCHRONIZE access, closed once afterwards.
        unsafe {
            let exited = WaitForSingleObject(handle, 10_000) == WAIT_OBJECT_0;
            CloseHandle(handle);
            exited
        }
    }

    fn exit_status_passes_through(dir: &Path) -> Outcome {
        let status = Command::new(env!("CARGO_BIN_EXE_onlyone"))
            .args(["run", "-N", &unique("exit"), "--lock-dir"])
            .arg(dir)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env(ROLE, "exit 7")
            .status()
            .expect("run onlyone");
        assert_eq!(status.code(), Some(7));
        Ok(())
    }

    fn held_lock_gives_75(dir: &Path) -> Outcome {
        let name = unique("held");
        let mut first = Wrapper::start(&name, dir, &[], "hold", &[]);
        let (job, _) = first.started();
        let out = Command::new(env!("CARGO_BIN_EXE_onlyone"))
            .args(["run", "-N", &name, "--lock-dir"])
            .arg(dir)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env(ROLE, "exit 0")
            .output()
            .expect("run onlyone");
        assert_eq!(out.status.code(), Some(75));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let wrapper = first.child.id();
        assert!(
            stderr.contains(&format!("pid {wrapper}")) || stderr.contains(&format!("pid {job}")),
            "names the holder: {stderr}"
        );
        Ok(())
    }

    fn job_dies_with_its_wrapper(dir: &Path) -> Outcome {
        let mut wrapper = Wrapper::start(&unique("dies"), dir, &[], "hold", &[]);
        let (job, _) = wrapper.started();
        wrapper.kill();
        assert!(
            exits_within_10_s(job),
            "the job outlived its killed wrapper"
        );
        Ok(())
    }

    fn next_job_waits_for_the_first(dir: &Path) -> Outcome {
        let name = unique("next");
        let mut first = Wrapper::start(&name, dir, &[], "hold", &[]);
        let (job, _) = first.started();
        let start = onlyone::os::stat(job)
            .map(|s| s.start_ticks)
            .expect("the job's creation time");
        first.kill();
        // At once: the mutex is already abandoned, the job may still run for a moment.
        let mut second = Wrapper::start(
            &name,
            dir,
            &["--wait", "30"],
            "hold",
            &[("ONLYONE_CLI_WIN_PREVIOUS", format!("{job} {start}"))],
        );
        let (_, previous_alive) = second.started();
        assert!(
            !previous_alive,
            "the second job started while the first still ran"
        );
        Ok(())
    }

    /// `--replace`: the holder (the first wrapper, pinned by a process handle after its creation
    /// time matched its record) is terminated, its job dies with its job object, and the new
    /// job starts only after the old one exited.
    fn replace_terminates_the_holder(dir: &Path) -> Outcome {
        let name = unique("replace");
        let mut first = Wrapper::start(&name, dir, &[], "hold", &[]);
        let (job, _) = first.started();
        let start = onlyone::os::stat(job)
            .map(|s| s.start_ticks)
            .expect("the job's creation time");
        let mut second = Wrapper::start(
            &name,
            dir,
            &["--replace"],
            "hold",
            &[("ONLYONE_CLI_WIN_PREVIOUS", format!("{job} {start}"))],
        );
        let (_, previous_alive) = second.started();
        assert!(
            !previous_alive,
            "the new job started while the old one still ran"
        );
        assert!(
            exits_within_10_s(first.child.id()),
            "the replaced wrapper was terminated"
        );
        Ok(())
    }

    /// `onlyone ARGS...` with its output; never left running (`output` waits for it).
    fn onlyone(args: &[&str], dir: &Path) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_onlyone"))
            .args(args)
            .arg("--lock-dir")
            .arg(dir)
            .output()
            .expect("run onlyone")
    }

    /// `list` enumerates the lock directory: a running holder's mutex is listed with its name
    /// and pid (from its `NAME.holder` record); once the holder was killed and its job exited,
    /// the record it left behind is not listed (its mutex is free).
    fn list_shows_a_held_mutex(dir: &Path) -> Outcome {
        let name = unique("list");
        let mut holder = Wrapper::start(&name, dir, &[], "hold", &[]);
        let (job, _) = holder.started();
        let wrapper = holder.child.id();
        let out = onlyone(&["list", "--verbose"], dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "list failed: {out:?}");
        let line = stdout
            .lines()
            .find(|l| l.contains(&name))
            .unwrap_or_else(|| panic!("list does not show {name}: {stdout}"));
        assert!(
            line.starts_with("mutex ") && line.contains(&format!(" pid {wrapper} ")),
            "list names the mutex and its holder's pid {wrapper}: {line}"
        );
        let json = onlyone(&["list", "--json"], dir);
        let json = String::from_utf8_lossy(&json.stdout);
        assert!(
            json.contains(&format!("\"name\":\"{name}\"")) && json.contains("\"held\":true"),
            "list --json shows it held: {json}"
        );
        holder.kill();
        assert!(
            exits_within_10_s(job),
            "the job outlived its killed wrapper"
        );
        let out = onlyone(&["list"], dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "list failed: {out:?}");
        assert!(
            !stdout.contains(&name),
            "a dead holder's lock is still listed: {stdout}"
        );
        Ok(())
    }

    /// `break-lock -b pidfile`: without --force it says who holds the lock and leaves the file;
    /// with --force it removes the PID file (here of a live holder, which is what --force is
    /// for when the holder cannot be judged) and the lock is free.
    fn break_lock_force_removes_a_pid_file(dir: &Path) -> Outcome {
        let name = unique("break");
        let mut holder = Wrapper::start(&name, dir, &["-b", "pidfile"], "hold", &[]);
        holder.started();
        let pid_file = dir.join(format!("{name}.pid"));
        assert!(
            pid_file.is_file(),
            "the holder wrote {}",
            pid_file.display()
        );
        let asked = onlyone(&["break-lock", &name, "-b", "pidfile"], dir);
        assert_eq!(asked.status.code(), Some(1), "without --force: {asked:?}");
        assert!(pid_file.is_file(), "without --force nothing is removed");
        let forced = onlyone(&["break-lock", &name, "-b", "pidfile", "--force"], dir);
        let stdout = String::from_utf8_lossy(&forced.stdout);
        assert_eq!(forced.status.code(), Some(0), "with --force: {forced:?}");
        assert!(stdout.contains("removed"), "says what it removed: {stdout}");
        assert!(!pid_file.exists(), "the PID file is gone");
        let status = onlyone(&["status", &name, "-b", "pidfile"], dir);
        assert_eq!(status.status.code(), Some(1), "free afterwards: {status:?}");
        holder.kill();
        Ok(())
    }

    /// A `NAME.pid` that is not an onlyone record is never removed, --force or not.
    fn break_lock_force_leaves_a_foreign_file(dir: &Path) -> Outcome {
        let name = unique("foreign");
        let pid_file = dir.join(format!("{name}.pid"));
        std::fs::write(&pid_file, "not a record\n").expect("write the file");
        let forced = onlyone(&["break-lock", &name, "-b", "pidfile", "--force"], dir);
        assert!(!forced.status.success(), "refused: {forced:?}");
        assert_eq!(
            std::fs::read_to_string(&pid_file).expect("the file is still there"),
            "not a record\n"
        );
        Ok(())
    }
}
