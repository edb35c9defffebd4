//! Where the guarantee holds: containers, PID/mount/network/time/user namespaces, `hidepid=2`,
//! other users — simulated with `unshare`, `nsenter`, `setpriv` and bind mounts (no container
//! runtime), with real processes, signals, files and namespaces.
//!
//! Two parts:
//! - one regression test per class of issue #19 (`classNN_*`), each asserting the correct
//!   behaviour;
//! - the matrix of the README's table "Where the guarantee holds" (`matrix_ENV_BACKEND_*`):
//!   for each environment and backend, 8 contenders give one holder (or one per namespace where
//!   the backend's scope says so), a SIGKILLed holder leaves the lock acquirable (or the
//!   documented outcome), `holder()` is truthful, and racers in two namespaces that share the
//!   lock never hold it at once.
//!
//! Runs with its own harness (`harness = false`): libtest has no "skipped". Every test prints
//! one line, `NAME: ok`, `NAME: FAILED: why` or `NAME: skipped: why`, and the run ends with
//! `N passed, N failed, N skipped`. A test that lacks a capability (not root, no `unshare`, a
//! kernel without time namespaces, a backend or the CLI not in this build) is skipped, never
//! passed; with `ONLYONE_REQUIRE_ROOT_TESTS=1` (CI, as root) a skip counts as a failure.
//! `cargo test --test namespaces -- SUBSTRING` runs the tests whose name contains SUBSTRING.
//!
//! Isolation: every process a test starts is SIGKILLed and reaped when its guard drops (also on
//! failure); namespaces live only as long as their processes (no `nsfs` bind mounts); mounts are
//! made only inside private mount namespaces (the host's `/proc`, `/run` and `/tmp` are never
//! touched); temporary directories are removed.

#[cfg(unix)]
mod common;
#[cfg(all(unix, feature = "postgres"))]
mod pg;
#[cfg(unix)]
mod reliability_common;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    suite::main()
}

/// The suite needs Linux (namespaces, `unshare`, pidfds): elsewhere it skips, and
/// `ONLYONE_REQUIRE_ROOT_TESTS=1` makes that skip a failure.
#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    println!("namespaces: skipped: Linux only (namespaces, unshare, pidfds)");
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
mod suite {
    #[cfg(feature = "postgres")]
    use crate::pg;
    use crate::{common, reliability_common};

    use std::collections::HashSet;
    use std::ffi::OsString;
    use std::fs::{File, OpenOptions};
    use std::io::{BufRead, BufReader, Read};
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::PermissionsExt;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, ExitStatus, Stdio};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use onlyone::BackendKind;

    // ------------------------------------------------------------------------------------------------
    // The runner
    // ------------------------------------------------------------------------------------------------

    /// Why a test could not run here.
    struct Skip(String);

    type Outcome = Result<(), Skip>;

    struct Test {
        name: String,
        run: Box<dyn Fn() -> Outcome>,
    }

    impl Test {
        fn new(name: impl Into<String>, run: impl Fn() -> Outcome + 'static) -> Test {
            Test {
                name: name.into(),
                run: Box::new(run),
            }
        }
    }

    /// libtest options that take a value: their value is not a filter.
    const VALUE_OPTIONS: [&str; 9] = [
        "--test-threads",
        "--format",
        "--color",
        "--logfile",
        "--skip",
        "--shuffle-seed",
        "--report-time",
        "-Z",
        "--exclude-should-panic",
    ];

    pub(crate) fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut filters = Vec::new();
        let mut skip_value = false;
        for a in &args {
            if skip_value {
                skip_value = false;
            } else if a.starts_with('-') {
                skip_value = VALUE_OPTIONS.contains(&a.as_str());
            } else {
                filters.push(a.clone());
            }
        }
        let exact = args.iter().any(|a| a == "--exact");
        let tests: Vec<Test> = all_tests()
            .into_iter()
            .filter(|t| {
                filters.is_empty()
                    || filters.iter().any(|f| {
                        if exact {
                            t.name == *f
                        } else {
                            t.name.contains(f)
                        }
                    })
            })
            .collect();
        if args.iter().any(|a| a == "--list") {
            for t in &tests {
                println!("{}: test", t.name);
            }
            return ExitCode::SUCCESS;
        }
        let require = std::env::var("ONLYONE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
        // Panics are reported on the test's line; the default hook would print them a second time.
        let last_panic: &'static Mutex<String> = Box::leak(Box::new(Mutex::new(String::new())));
        std::panic::set_hook(Box::new(move |info| {
            let msg = panic_message(info.payload());
            let at = info
                .location()
                .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                .unwrap_or_default();
            *last_panic.lock().unwrap_or_else(|e| e.into_inner()) = format!("{msg}{at}");
        }));
        println!(
            "running {} namespace tests{}",
            tests.len(),
            if require {
                " (ONLYONE_REQUIRE_ROOT_TESTS=1: a skip is a failure)"
            } else {
                ""
            }
        );
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        let started = Instant::now();
        for t in &tests {
            let t0 = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| (t.run)()));
            let secs = t0.elapsed().as_secs_f64();
            match result {
                Ok(Ok(())) => {
                    passed += 1;
                    println!("{}: ok ({secs:.1} s)", t.name);
                }
                Ok(Err(Skip(why))) if require => {
                    failed += 1;
                    println!(
                        "{}: FAILED: skipped, and ONLYONE_REQUIRE_ROOT_TESTS=1: {}",
                        t.name,
                        one_line(&why)
                    );
                }
                Ok(Err(Skip(why))) => {
                    skipped += 1;
                    println!("{}: skipped: {}", t.name, one_line(&why));
                }
                Err(_) => {
                    failed += 1;
                    let why = last_panic.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    println!("{}: FAILED: {} ({secs:.1} s)", t.name, one_line(&why));
                }
            }
        }
        let _ = std::fs::remove_dir_all(logs_dir());
        eprintln!(
            "namespace tests took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        println!("{passed} passed, {failed} failed, {skipped} skipped");
        if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_owned()
        }
    }

    fn one_line(s: &str) -> String {
        s.trim().replace('\n', " / ")
    }

    fn all_tests() -> Vec<Test> {
        let mut t = vec![
            Test::new("class01_system_scope_directory_ownership", class01),
            Test::new("class02_replace_never_signals_a_reused_pid", class02),
            Test::new(
                "class03_replace_postgres_never_trusts_application_name",
                class03,
            ),
            Test::new("class04_pidfile_under_hidepid_is_not_robbed", class04),
            Test::new("class05_pidfile_across_time_namespaces", class05),
            Test::new(
                "class06_identity_in_pid_namespace_without_own_proc",
                class06,
            ),
            Test::new("class07_takeover_guard_never_blocks_a_try", class07),
            Test::new("class08_waiters_wake_on_a_foreign_unlock", class08),
            Test::new("class09_status_never_says_free_while_held", class09),
            Test::new("class10_abstract_holder_in_another_pid_namespace", class10),
            Test::new("class11_lost_file_lock_exits_76", class11),
            Test::new("class12_sigpipe_disposition_passes_through", class12),
            Test::new("class13_one_default_directory_for_every_session", class13),
            Test::new(
                "compat_old_and_new_onlyone_exclude_each_other",
                compat_old_and_new,
            ),
        ];
        for env in Env::ALL {
            for backend in MATRIX_BACKENDS {
                let cell = format!("matrix_{}_{}", env.label(), backend);
                t.push(Test::new(format!("{cell}_8_contenders"), move || {
                    cell_contenders(env, backend)
                }));
                t.push(Test::new(format!("{cell}_holder_sigkilled"), move || {
                    cell_sigkill(env, backend)
                }));
                t.push(Test::new(format!("{cell}_status_truthful"), move || {
                    cell_status(env, backend)
                }));
                t.push(Test::new(format!("{cell}_replace"), move || {
                    cell_replace(env, backend)
                }));
                // Two namespaces that do not share the lock (abstract sockets in two network
                // namespaces) have nothing to race for: the 8-contender cell shows one holder each.
                if env.shares(backend) {
                    t.push(Test::new(
                        format!("{cell}_race_two_namespaces"),
                        move || cell_race(env, backend),
                    ));
                }
            }
        }
        t
    }

    // ------------------------------------------------------------------------------------------------
    // Capabilities
    // ------------------------------------------------------------------------------------------------

    fn skip<T>(why: impl Into<String>) -> Result<T, Skip> {
        Err(Skip(why.into()))
    }

    fn need_root() -> Outcome {
        if nix::unistd::geteuid().is_root() {
            Ok(())
        } else {
            skip("needs root (namespaces, mounts, other uids)")
        }
    }

    fn need_tool(name: &str) -> Outcome {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()));
        if found {
            Ok(())
        } else {
            skip(format!("needs `{name}` (util-linux) in PATH"))
        }
    }

    /// Whether `unshare FLAGS -- true` works here (cached per set of flags).
    fn need_unshare(flags: &[&str]) -> Outcome {
        static CACHE: Mutex<Vec<(String, Result<(), String>)>> = Mutex::new(Vec::new());
        need_root()?;
        need_tool("unshare")?;
        let key = flags.join(" ");
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, r)) = cache.iter().find(|(k, _)| *k == key) {
            return r.clone().map_err(Skip);
        }
        let out = Command::new("unshare")
            .args(flags)
            .args(["--", "true"])
            .stdin(Stdio::null())
            .output();
        let r = match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "`unshare {key}` does not work here ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run unshare: {e}")),
        };
        cache.push((key, r.clone()));
        r.map_err(Skip)
    }

    fn need_backend(b: BackendKind) -> Outcome {
        if b.is_available() {
            Ok(())
        } else {
            skip(format!("the {b} backend is not in this build"))
        }
    }

    /// The `onlyone` binary of this workspace (package `onlyone-cli`), which `cargo test --workspace`
    /// builds beside the test binaries; refused when older than the sources.
    fn need_cli() -> Result<PathBuf, Skip> {
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        let path = dir.join("onlyone");
        let Ok(built) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
            return skip(format!(
                "needs the `onlyone` binary at {} (`cargo test --workspace` builds it)",
                path.display()
            ));
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let newest = ["src", "cli/src"]
            .iter()
            .map(|d| common::newest_mtime(&root.join(d)))
            .max()
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        if newest > built {
            return skip(format!(
                "{} is older than the sources (`cargo test --workspace` rebuilds it)",
                path.display()
            ));
        }
        Ok(path)
    }

    // ------------------------------------------------------------------------------------------------
    // Processes
    // ------------------------------------------------------------------------------------------------

    /// How long a child may take to answer before the test calls it hung (not a timing assertion: a
    /// healthy answer takes milliseconds).
    const HANG: Duration = Duration::from_secs(60);

    /// A process the test started (directly, or through `unshare`/`nsenter`/`setpriv`), talking over
    /// pipes. Dropping it SIGKILLs the process that does the work (through a pidfd, so a reused pid
    /// is never hit) and the wrapper, and reaps the wrapper.
    struct Actor {
        label: String,
        child: Child,
        stdin: Option<ChildStdin>,
        out: BufReader<ChildStdout>,
        /// Whether the wrapper forks (`unshare -f`, `nsenter -p`): the worker is then its child.
        forks: bool,
        inner: Option<(u32, OwnedFd)>,
        stderr_path: PathBuf,
        reaped: bool,
    }

    impl Actor {
        fn spawn(
            label: &str,
            argv: &[OsString],
            forks: bool,
            env: &[(&str, Option<&str>)],
        ) -> Actor {
            let logs = logs_dir();
            let _ = std::fs::create_dir(&logs);
            static N: Mutex<u32> = Mutex::new(0);
            let n = {
                let mut n = N.lock().unwrap_or_else(|e| e.into_inner());
                *n += 1;
                *n
            };
            let stderr_path = logs.join(format!("{n}.stderr"));
            let stderr = File::create(&stderr_path).expect("create stderr file");
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(stderr);
            for (k, v) in env {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("{label}: cannot spawn {argv:?}: {e}"));
            let stdin = child.stdin.take();
            let out = BufReader::new(child.stdout.take().expect("stdout"));
            Actor {
                label: label.to_owned(),
                child,
                stdin,
                out,
                forks,
                inner: None,
                stderr_path,
                reaped: false,
            }
        }

        /// The next line within `limit`: `Ok(None)` at end of file, `Err` when none came in time.
        fn line_within(&mut self, limit: Duration) -> Result<Option<String>, ()> {
            let deadline = Instant::now() + limit;
            loop {
                if !self.out.buffer().is_empty() {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(());
                }
                let ms = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(self.out.get_ref().as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, ms) {
                    Ok(0) => continue,
                    Ok(_) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => panic!("{}: poll: {e}", self.label),
                }
            }
            let mut s = String::new();
            let n = self.out.read_line(&mut s).expect("read from child");
            Ok((n > 0).then(|| s.trim_end().to_owned()))
        }

        /// The next line, `None` at end of file; panics (with the child's stderr) if it hangs.
        fn next_line(&mut self) -> Option<String> {
            match self.line_within(HANG) {
                Ok(l) => l,
                Err(()) => panic!(
                    "{}: no answer within {HANG:?} (hung); stderr: {}",
                    self.label,
                    self.stderr()
                ),
            }
        }

        /// The next line; panics at end of file.
        fn line(&mut self) -> String {
            match self.next_line() {
                Some(l) => l,
                None => panic!(
                    "{}: exited without answering; stderr: {}",
                    self.label,
                    self.stderr()
                ),
            }
        }

        fn send(&mut self, line: &str) {
            use std::io::Write;
            let stdin = self.stdin.as_mut().expect("stdin open");
            writeln!(stdin, "{line}").expect("write to child");
            stdin.flush().expect("flush");
        }

        fn ask(&mut self, line: &str) -> String {
            self.send(line);
            self.line()
        }

        fn stderr(&self) -> String {
            std::fs::read_to_string(&self.stderr_path)
                .unwrap_or_default()
                .trim()
                .to_owned()
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }

        /// The host pid of the process doing the work: the wrapper itself, or its only child. Call
        /// it after the worker has answered once (it exists by then).
        fn inner_pid(&mut self) -> u32 {
            if let Some((pid, _)) = &self.inner {
                return *pid;
            }
            let pid = if self.forks {
                let wrapper = self.pid();
                let children =
                    std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
                        .unwrap_or_default();
                let kids: Vec<u32> = children
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                assert_eq!(
                    kids.len(),
                    1,
                    "{}: expected one child of the wrapper {wrapper}, found {kids:?}",
                    self.label
                );
                kids[0]
            } else {
                self.pid()
            };
            let fd = pidfd(pid).unwrap_or_else(|| panic!("{}: pidfd_open({pid})", self.label));
            self.inner = Some((pid, fd));
            pid
        }

        /// SIGKILLs the worker and waits until it has exited (its descriptors are closed).
        fn kill_inner(&mut self) {
            self.inner_pid();
            let (pid, fd) = self.inner.as_ref().expect("inner");
            rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL)
                .unwrap_or_else(|e| panic!("{}: SIGKILL {pid}: {e}", self.label));
            assert!(
                wait_readable(fd.as_fd(), HANG),
                "{}: pid {pid} did not exit after SIGKILL",
                self.label
            );
            // A direct child is reaped, as a crashed holder's parent would: a zombie of another
            // user cannot be told from a live process under hidepid=2 (and counts as alive).
            if !self.forks && !self.reaped {
                self.reaped = true;
                let _ = self.child.wait();
            }
        }

        fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
            let fd = pidfd(self.pid()).expect("pidfd of our own child");
            assert!(
                wait_readable(fd.as_fd(), limit),
                "{}: still running after {limit:?}; stderr: {}",
                self.label,
                self.stderr()
            );
            self.reaped = true;
            self.child.wait().expect("wait")
        }

        /// Everything left on stdout (after the process exited).
        fn rest(&mut self) -> String {
            let mut s = String::new();
            let _ = self.out.read_to_string(&mut s);
            s
        }
    }

    impl Drop for Actor {
        fn drop(&mut self) {
            if let Some((_, fd)) = &self.inner {
                let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            }
            if !self.reaped {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            let _ = std::fs::remove_file(&self.stderr_path);
        }
    }

    /// Where the children's stderr goes (removed at the end of the run).
    fn logs_dir() -> PathBuf {
        std::env::temp_dir().join(format!("onlyone-ns-logs-{}", std::process::id()))
    }

    fn pidfd(pid: u32) -> Option<OwnedFd> {
        let raw = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
        rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).ok()
    }

    /// Whether `fd` became readable within `limit` (a pidfd: the process exited).
    fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left.as_millis()).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) if left.is_zero() => return false,
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => return true,
                Err(e) => panic!("poll: {e}"),
            }
        }
    }

    /// Whether the process behind `fd` still runs (its pidfd is not readable).
    fn still_running(fd: &OwnedFd) -> bool {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
    }

    /// Runs a command to its end (bounded), returning its status, stdout and stderr.
    fn run(
        label: &str,
        argv: &[OsString],
        env: &[(&str, Option<&str>)],
    ) -> (ExitStatus, String, String) {
        let mut a = Actor::spawn(label, argv, false, env);
        a.stdin = None;
        let status = a.wait_exit(HANG);
        let out = a.rest();
        (status, out, a.stderr())
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn with(mut a: Vec<OsString>, b: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
        a.extend(b);
        a
    }

    fn as_user(uid: u32, cmd: Vec<OsString>) -> Vec<OsString> {
        with(
            os(&[
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--",
            ]),
            cmd,
        )
    }

    const NOBODY: u32 = reliability_common::NOBODY;
    const NOBODY2: u32 = 65533;

    /// A temporary directory for one test: `shared` (mode 0777, the "volume"), `mnt` (an empty
    /// mount point for the volume inside mount namespaces), and the holder example where any uid can
    /// run it.
    struct Fixture {
        _dir: tempfile::TempDir,
        shared: PathBuf,
        mnt: PathBuf,
        _exe_dir: tempfile::TempDir,
        exe: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            let shared = dir.path().join("shared");
            let mnt = dir.path().join("mnt");
            for (d, mode) in [(&shared, 0o777), (&mnt, 0o755)] {
                std::fs::create_dir(d).expect("mkdir");
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).expect("chmod");
            }
            let (exe_dir, exe) = reliability_common::holder_exe_for_everyone();
            Fixture {
                _dir: dir,
                shared,
                mnt,
                _exe_dir: exe_dir,
                exe,
            }
        }

        fn holder_argv(
            &self,
            backend: BackendKind,
            name: &str,
            dir: &Path,
            wait: &str,
        ) -> Vec<OsString> {
            vec![
                self.exe.clone().into(),
                backend.as_str().into(),
                name.into(),
                dir.into(),
                wait.into(),
            ]
        }

        /// A holder example on the host (no namespace), as root.
        fn host_holder(&self, label: &str, backend: BackendKind, name: &str, wait: &str) -> Actor {
            Actor::spawn(
                label,
                &self.holder_argv(backend, name, &self.shared, wait),
                false,
                &[],
            )
        }
    }

    fn unique(test: &str) -> String {
        format!("ns-{test}-{}", std::process::id())
    }

    /// A process that keeps namespaces alive for others to join with `nsenter -t PID`. Its worker
    /// prints `ready` once the namespaces are set up.
    struct Keeper(Actor);

    impl Keeper {
        /// `unshare FLAGS -- sh -c 'SETUP && echo ready && exec sleep 1000000'`.
        fn start(label: &str, flags: &[&str], forks: bool, setup: &str) -> Keeper {
            let script = format!("{setup} && echo ready && exec sleep 1000000");
            let argv = with(
                with(os(&["unshare"]), os(flags)),
                os(&["--", "sh", "-c", &script]),
            );
            let mut a = Actor::spawn(label, &argv, forks, &[]);
            let l = a.line();
            assert_eq!(l, "ready", "{label}: setup failed: {}", a.stderr());
            a.inner_pid();
            Keeper(a)
        }

        fn pid(&mut self) -> u32 {
            self.0.inner_pid()
        }

        /// `nsenter -t KEEPER NS_FLAGS -- cmd`.
        fn join(&mut self, ns_flags: &[&str], cmd: Vec<OsString>) -> Vec<OsString> {
            let t = self.pid().to_string();
            with(
                with(os(&["nsenter", "-t", &t]), os(ns_flags)),
                with(os(&["--"]), cmd),
            )
        }
    }

    /// `acquired PID` / `held PID KIND`: whether acquired, and the pid word.
    fn outcome(line: &str) -> (bool, String) {
        let mut w = line.split(' ');
        match w.next() {
            Some("acquired") => (true, w.next().unwrap_or("").to_owned()),
            Some("held") => (false, w.next().unwrap_or("").to_owned()),
            _ => panic!("unexpected answer {line:?}"),
        }
    }

    // ------------------------------------------------------------------------------------------------
    // The environments of the README table
    // ------------------------------------------------------------------------------------------------

    const MATRIX_BACKENDS: [BackendKind; 3] = [
        BackendKind::AbstractSocket,
        BackendKind::Flock,
        BackendKind::PidFile,
    ];

    /// Where each contender of a matrix cell runs. Contender `i` gets its own instance of the
    /// environment (its own namespaces); the lock directory is the fixture's shared volume.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Env {
        /// No namespace, all root.
        Host,
        /// Own PID namespace with its own /proc (`unshare -p -f --mount-proc`).
        PidNs,
        /// Own PID namespace, the host's /proc (`unshare -p -f`).
        PidNsNoProc,
        /// Own mount namespace, the volume bind-mounted at another path.
        MountNs,
        /// Own network namespace.
        NetNs,
        /// Own time namespace, boot-time and monotonic clocks shifted by a different offset each.
        TimeNs,
        /// Own mount namespace with a fresh `/proc` mounted `hidepid=2`; uids 65534 and 65533 in turn,
        /// system scope.
        Hidepid,
        /// A container: own mount (volume bind-mounted), PID (own /proc), network, UTS and IPC
        /// namespaces.
        Containers,
        /// No namespace; root and uid 65534 in turn, system scope.
        OtherUid,
        /// Rootless: uid 65534 creates its own user namespace (`unshare -U -r`, root inside).
        UserNs,
    }

    impl Env {
        const ALL: [Env; 10] = [
            Env::Host,
            Env::PidNs,
            Env::PidNsNoProc,
            Env::MountNs,
            Env::NetNs,
            Env::TimeNs,
            Env::Hidepid,
            Env::Containers,
            Env::OtherUid,
            Env::UserNs,
        ];

        fn label(self) -> &'static str {
            match self {
                Env::Host => "host",
                Env::PidNs => "pidns",
                Env::PidNsNoProc => "pidns_noproc",
                Env::MountNs => "mountns",
                Env::NetNs => "netns",
                Env::TimeNs => "timens",
                Env::Hidepid => "hidepid",
                Env::Containers => "containers",
                Env::OtherUid => "other_uid",
                Env::UserNs => "userns",
            }
        }

        fn check(self) -> Outcome {
            match self {
                Env::Host => Ok(()),
                Env::PidNs => need_unshare(&["-p", "-f", "--mount-proc"]),
                Env::PidNsNoProc => need_unshare(&["-p", "-f"]),
                Env::MountNs => need_unshare(&["-m"]),
                Env::NetNs => need_unshare(&["-n"]),
                Env::TimeNs => need_unshare(&["-T", "--boottime", "1000", "-f"]),
                Env::Hidepid => {
                    need_tool("setpriv")?;
                    need_unshare(&["-m"])
                }
                Env::Containers => {
                    need_unshare(&["-m", "-u", "-i", "-n", "-p", "-f", "--mount-proc"])
                }
                Env::OtherUid => {
                    need_root()?;
                    need_tool("setpriv")
                }
                Env::UserNs => {
                    need_root()?;
                    need_tool("setpriv")?;
                    need_tool("unshare")?;
                    let probe = as_user(NOBODY, os(&["unshare", "-U", "-r", "--", "true"]));
                    let (st, _, err) = run("userns probe", &probe, &[]);
                    if st.success() {
                        Ok(())
                    } else {
                        skip(format!(
                            "uid {NOBODY} cannot create a user namespace here: {err}"
                        ))
                    }
                }
            }
        }

        /// Whether two instances of the environment share the lock.
        fn shares(self, backend: BackendKind) -> bool {
            !(backend == BackendKind::AbstractSocket
                && matches!(self, Env::NetNs | Env::Containers))
        }

        fn system_scope(self) -> bool {
            matches!(self, Env::Hidepid | Env::OtherUid)
        }

        fn uid(self, i: usize) -> Option<u32> {
            match self {
                Env::Hidepid => Some([NOBODY, NOBODY2][i % 2]),
                Env::OtherUid => [None, Some(NOBODY)][i % 2],
                _ => None,
            }
        }

        /// The lock directory as contender `i` sees it.
        fn dir(self, fx: &Fixture) -> PathBuf {
            match self {
                Env::MountNs | Env::Containers => fx.mnt.clone(),
                _ => fx.shared.clone(),
            }
        }

        /// Contender `i` running `holder BACKEND NAME DIR WAIT` in its own instance.
        fn holder(
            self,
            fx: &Fixture,
            i: usize,
            backend: BackendKind,
            name: &str,
            wait: &str,
        ) -> Actor {
            let cmd = fx.holder_argv(backend, name, &self.dir(fx), wait);
            self.spawn(fx, i, cmd, &format!("{} contender {i}", self.label()))
        }

        fn spawn(self, fx: &Fixture, i: usize, cmd: Vec<OsString>, label: &str) -> Actor {
            const BIND: &str = r#"mount --bind "$1" "$2" || exit 97; shift 2; exec "$@""#;
            const HIDEPID: &str = r#"mount -t proc -o hidepid=2 proc /proc || exit 97; exec "$@""#;
            let cmd = match self.uid(i) {
                Some(uid) => as_user(uid, cmd),
                None => cmd,
            };
            let bind = |prefix: &[&str]| {
                with(
                    os(prefix),
                    with(
                        os(&["--", "sh", "-c", BIND, "sh"]),
                        with(
                            vec![fx.shared.clone().into(), fx.mnt.clone().into()],
                            cmd.clone(),
                        ),
                    ),
                )
            };
            let offset = ((i as u64 + 1) * 100_000).to_string();
            let (argv, forks) = match self {
                Env::Host | Env::OtherUid => (cmd.clone(), false),
                Env::PidNs => (
                    with(
                        os(&["unshare", "-p", "-f", "--mount-proc", "--kill-child", "--"]),
                        cmd.clone(),
                    ),
                    true,
                ),
                Env::PidNsNoProc => (
                    with(
                        os(&["unshare", "-p", "-f", "--kill-child", "--"]),
                        cmd.clone(),
                    ),
                    true,
                ),
                Env::MountNs => (bind(&["unshare", "-m", "--propagation", "private"]), false),
                Env::NetNs => (with(os(&["unshare", "-n", "--"]), cmd.clone()), false),
                Env::TimeNs => (
                    with(
                        os(&[
                            "unshare",
                            "-T",
                            "--boottime",
                            &offset,
                            "--monotonic",
                            &offset,
                            "-f",
                            "--kill-child",
                            "--",
                        ]),
                        cmd.clone(),
                    ),
                    true,
                ),
                Env::Hidepid => (
                    with(
                        os(&[
                            "unshare",
                            "-m",
                            "--propagation",
                            "private",
                            "--",
                            "sh",
                            "-c",
                            HIDEPID,
                            "sh",
                        ]),
                        cmd.clone(),
                    ),
                    false,
                ),
                Env::Containers => (
                    bind(&[
                        "unshare",
                        "-m",
                        "-u",
                        "-i",
                        "-n",
                        "-p",
                        "-f",
                        "--mount-proc",
                        "--propagation",
                        "private",
                        "--kill-child",
                    ]),
                    true,
                ),
                Env::UserNs => (
                    as_user(
                        NOBODY,
                        with(os(&["unshare", "-U", "-r", "--"]), cmd.clone()),
                    ),
                    false,
                ),
            };
            let scope = self.system_scope().then_some("system");
            Actor::spawn(label, &argv, forks, &[("HOLDER_SCOPE", scope)])
        }
    }

    /// Checks shared by every cell.
    fn cell_setup(env: Env, backend: BackendKind) -> Result<Fixture, Skip> {
        need_backend(backend)?;
        env.check()?;
        Ok(Fixture::new())
    }

    /// 8 contenders, each in its own instance of `env`, try at once; then every one that did not get
    /// the lock tries again (so that each has seen the holder's record). One holder, or one per
    /// instance where the backend's scope is not shared.
    fn cell_contenders(env: Env, backend: BackendKind) -> Outcome {
        const N: usize = 8;
        let fx = cell_setup(env, backend)?;
        let name = unique(&format!("c-{}-{backend}", env.label()));
        let mut actors: Vec<Actor> = (0..N)
            .map(|i| env.holder(&fx, i, backend, &name, "idle"))
            .collect();
        for a in &mut actors {
            let l = a.line();
            assert_eq!(l, "ready", "{}: {}", a.label, a.stderr());
        }
        for a in &mut actors {
            a.send("try");
        }
        let mut answers: Vec<String> = actors.iter_mut().map(Actor::line).collect();
        for (a, answer) in actors.iter_mut().zip(answers.iter_mut()) {
            if !outcome(answer).0 {
                *answer = format!("{answer}, then {}", a.ask("try"));
            }
        }
        let holders = answers
            .iter()
            .filter(|a| a.starts_with("acquired") || a.contains("then acquired"))
            .count();
        let expected = if env.shares(backend) { 1 } else { N };
        assert_eq!(
            holders,
            expected,
            "{} {backend}: {holders} holders at once, expected {expected}: {answers:?}",
            env.label()
        );
        Ok(())
    }

    /// Whether the documented outcome after the holder's SIGKILL is "held, holder unidentified"
    /// rather than "acquirable": a PID file written in another PID namespace cannot be judged.
    fn sigkill_leaves_unidentified_holder(env: Env, backend: BackendKind) -> bool {
        backend == BackendKind::PidFile
            && matches!(env, Env::PidNs | Env::PidNsNoProc | Env::Containers)
    }

    /// The holder (instance 0) is SIGKILLed; a contender in instance 1 then tries once.
    fn cell_sigkill(env: Env, backend: BackendKind) -> Outcome {
        let fx = cell_setup(env, backend)?;
        let name = unique(&format!("k-{}-{backend}", env.label()));
        let mut holder = env.holder(&fx, 0, backend, &name, "0");
        let first = holder.line();
        assert!(
            first.starts_with("acquired"),
            "holder: {first} {}",
            holder.stderr()
        );
        let mut contender = env.holder(&fx, 1, backend, &name, "idle");
        assert_eq!(contender.line(), "ready", "{}", contender.stderr());
        let before = contender.ask("try");
        assert_eq!(
            outcome(&before).0,
            !env.shares(backend),
            "before the SIGKILL: {before}"
        );
        if outcome(&before).0 {
            assert_eq!(contender.ask("release"), "released");
        }
        holder.kill_inner();
        let after = contender.ask("try");
        if sigkill_leaves_unidentified_holder(env, backend) {
            assert!(
                after.starts_with("held ? "),
                "{} {backend}: after the holder's SIGKILL the contender said {after:?}; the documented \
                 outcome is `held` with an unidentified holder (a pid from another PID namespace means \
                 nothing here)",
                env.label()
            );
        } else {
            assert!(
                after.starts_with("acquired"),
                "{} {backend}: after the holder's SIGKILL the contender said {after:?}",
                env.label()
            );
        }
        Ok(())
    }

    fn ns_inode(pid: u32) -> Option<String> {
        std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .map(|l| l.to_string_lossy().into_owned())
    }

    /// The pids of `pid` in each PID namespace from the host's down (`NSpid:` of /proc/PID/status).
    fn nspids(pid: u32) -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What pid `holder` has as seen from `observer`'s PID namespace, if it has one there.
    fn pid_as_seen_by(holder: u32, observer: u32) -> Option<u32> {
        let (h, o, me) = (
            ns_inode(holder),
            ns_inode(observer),
            ns_inode(std::process::id()),
        );
        let pids = nspids(holder);
        if o == h {
            pids.last().copied()
        } else if o == me {
            pids.first().copied()
        } else {
            None
        }
    }

    /// An observer in instance 1 asks `holder()` while instance 0 holds, and after it released.
    /// Held must be reported exactly when the lock is shared; a pid, when named, must be the
    /// holder's pid in the observer's PID namespace.
    fn cell_status(env: Env, backend: BackendKind) -> Outcome {
        let fx = cell_setup(env, backend)?;
        let name = unique(&format!("s-{}-{backend}", env.label()));
        let mut holder = env.holder(&fx, 0, backend, &name, "0");
        let first = holder.line();
        assert!(
            first.starts_with("acquired"),
            "holder: {first} {}",
            holder.stderr()
        );
        let mut observer = env.holder(&fx, 1, backend, &name, "idle");
        assert_eq!(observer.line(), "ready", "{}", observer.stderr());
        let seen = observer.ask("status");
        if env.shares(backend) {
            let words: Vec<&str> = seen.split(' ').collect();
            assert_eq!(
                words.first(),
                Some(&"holder"),
                "{} {backend}: the observer says {seen:?} while the lock is held",
                env.label()
            );
            let expected = pid_as_seen_by(holder.inner_pid(), observer.inner_pid());
            let named: Option<u32> = words.get(1).and_then(|p| p.parse().ok());
            if let Some(p) = named {
                assert_eq!(
                    Some(p),
                    expected,
                    "{} {backend}: the observer names pid {p} as the holder ({seen:?}); the holder is \
                     {} in the observer's PID namespace",
                    env.label(),
                    expected.map_or("invisible".to_owned(), |e| format!("pid {e}"))
                );
            }
        } else {
            assert_eq!(
                seen,
                "free",
                "{} {backend}: not shared, yet {seen:?}",
                env.label()
            );
        }
        assert_eq!(holder.ask("release"), "released");
        let after = observer.ask("status");
        assert_eq!(
            after,
            "free",
            "{} {backend}: the observer says {after:?} after the release",
            env.label()
        );
        Ok(())
    }

    /// What `onlyone run --replace` did in a cell.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Replaced {
        /// The holder was stopped and the lock taken over.
        Holder,
        /// Refused (exit 69 or 77), the holder untouched.
        Refused,
        /// The lock is not shared across the two instances: the replacer took its own.
        NotShared,
    }

    /// The documented outcome of `--replace` from instance 1 against a holder in instance 0: it
    /// stops the holder where it can prove from its own namespace which process holds the lock
    /// (`HolderProcess`), and refuses elsewhere.
    fn replace_outcome(env: Env, backend: BackendKind) -> Replaced {
        use BackendKind::{AbstractSocket, Flock, PidFile};
        if !env.shares(backend) {
            return Replaced::NotShared;
        }
        // The portable build takes the path of systems without pidfds: nothing is ever pinned,
        // so --replace refuses everywhere.
        if onlyone::os::PORTABLE_BUILD {
            return Replaced::Refused;
        }
        match (env, backend) {
            (Env::Host | Env::MountNs | Env::NetNs | Env::TimeNs, _) => Replaced::Holder,
            // Another PID namespace: nothing there can be named or signalled from here.
            (Env::PidNs | Env::PidNsNoProc | Env::Containers, _) => Replaced::Refused,
            // Another user: not permitted to signal it (root replacing uid 65534 would be, but the
            // cell alternates: instance 1 is uid 65534, the holder root) or, under hidepid=2, not
            // even able to see it.
            (Env::OtherUid | Env::Hidepid, _) => Replaced::Refused,
            // Sibling user namespaces of one uid: the socket's peer pidfd proves the listener; a
            // lock file's holder cannot be checked (its fdinfo is not readable across user
            // namespaces), a PID file's can (start time).
            (Env::UserNs, AbstractSocket | PidFile) => Replaced::Holder,
            (Env::UserNs, Flock) => Replaced::Refused,
            _ => Replaced::Refused,
        }
    }

    /// `onlyone run --replace` from instance 1 against the holder in instance 0: it stops exactly the
    /// holder and takes the lock, or refuses and leaves it alone; never two holders.
    fn cell_replace(env: Env, backend: BackendKind) -> Outcome {
        let cli = need_cli()?;
        let fx = cell_setup(env, backend)?;
        // Where every uid can run it.
        let cli_copy = fx.exe.with_file_name("onlyone");
        if std::fs::hard_link(&cli, &cli_copy).is_err() {
            std::fs::copy(&cli, &cli_copy).expect("copy onlyone");
        }
        let name = unique(&format!("p-{}-{backend}", env.label()));
        let mut holder = env.holder(&fx, 0, backend, &name, "0");
        let first = holder.line();
        assert!(
            first.starts_with("acquired"),
            "holder: {first} {}",
            holder.stderr()
        );
        let holder_pid = holder.inner_pid();
        let holder_fd = pidfd(holder_pid).expect("pidfd of the holder");
        let mut argv = vec![
            OsString::from(&cli_copy),
            "run".into(),
            "--replace".into(),
            "--kill-after".into(),
            "1".into(),
            "-b".into(),
            backend.as_str().into(),
            "--lock-dir".into(),
            env.dir(&fx).into(),
        ];
        if env.system_scope() {
            argv.extend(["--scope".into(), "system".into()]);
        }
        argv.extend(os(&["-N", &name, "--", "true"]));
        let mut replacer = env.spawn(&fx, 1, argv, &format!("{} replacer", env.label()));
        let status = replacer.wait_exit(HANG);
        let err = replacer.stderr();
        let holder_gone = !still_running(&holder_fd);
        let outcome = match (status.code(), holder_gone) {
            (Some(0), true) => Replaced::Holder,
            (Some(0), false) if !env.shares(backend) => Replaced::NotShared,
            (Some(0), false) => panic!(
                "{} {backend}: --replace ran its job while the holder (pid {holder_pid}) still runs: \
                 two holders ({err})",
                env.label()
            ),
            (Some(69 | 77), false) => {
                assert_eq!(
                    holder.ask("verify"),
                    "ok",
                    "a refused replace broke the lock"
                );
                Replaced::Refused
            }
            (code, gone) => panic!(
                "{} {backend}: --replace exited {code:?}, holder {}: {err}",
                env.label(),
                if gone { "stopped" } else { "alive" }
            ),
        };
        assert_eq!(
            outcome,
            replace_outcome(env, backend),
            "{} {backend}: --replace outcome (stderr: {err})",
            env.label()
        );
        let _ = std::fs::remove_file(&cli_copy);
        Ok(())
    }

    /// Two racers in two instances take and release the lock over and over; the witness file on the
    /// shared volume must never show both inside.
    fn cell_race(env: Env, backend: BackendKind) -> Outcome {
        let fx = cell_setup(env, backend)?;
        let holds = reliability_common::scaled(300, 60);
        let name = unique(&format!("r-{}-{backend}", env.label()));
        let witness_host = fx.shared.join("witness.log");
        File::create(&witness_host).expect("create witness");
        std::fs::set_permissions(&witness_host, std::fs::Permissions::from_mode(0o666))
            .expect("chmod witness");
        let mut racers: Vec<Actor> = (0..2)
            .map(|i| {
                let cmd = fx.holder_argv(backend, &name, &env.dir(&fx), "idle");
                let cmd = with(os(&["env", &format!("HOLDER_ID={}", 1000 + i)]), cmd);
                env.spawn(&fx, i, cmd, &format!("{} racer {i}", env.label()))
            })
            .collect();
        for r in &mut racers {
            assert_eq!(r.line(), "ready", "{}", r.stderr());
        }
        // Each racer can take the lock at all (else it would race for ever, noting errors).
        for r in &mut racers {
            r.send("try");
            match r.next_line() {
                Some(l) if l.starts_with("acquired") => assert_eq!(r.ask("release"), "released"),
                l => panic!(
                    "{}: cannot take the free lock: {l:?} {}",
                    r.label,
                    r.stderr()
                ),
            }
        }
        let witness = env.dir(&fx).join("witness.log");
        for (i, r) in racers.iter_mut().enumerate() {
            r.send(&format!(
                "race {} {holds} {} 100",
                witness.display(),
                0x9e37_79b9_u64 + i as u64
            ));
        }
        for r in &mut racers {
            let done = r.line();
            assert!(done.starts_with("raced "), "{}: {done}", r.label);
        }
        let text = std::fs::read_to_string(&witness_host).expect("read witness");
        let (mut inside, mut starts, mut overlaps, mut errors) =
            (HashSet::new(), 0, Vec::new(), Vec::new());
        for (n, line) in text.lines().enumerate() {
            let w: Vec<&str> = line.split(' ').collect();
            match w[0] {
                "start" => {
                    starts += 1;
                    if !inside.is_empty() {
                        overlaps.push(format!("line {}: {line} while {inside:?} inside", n + 1));
                    }
                    inside.insert(w[1].to_owned());
                }
                "end" => {
                    inside.remove(w[1]);
                }
                "error" => errors.push(line.to_owned()),
                _ => {}
            }
        }
        assert!(
            overlaps.is_empty(),
            "{} {backend}: {} times both racers held the lock: {:?}",
            env.label(),
            overlaps.len(),
            &overlaps[..overlaps.len().min(3)]
        );
        assert!(
            errors.is_empty(),
            "errors: {:?}",
            &errors[..errors.len().min(3)]
        );
        assert_eq!(starts, 2 * holds, "every racer got its holds");
        Ok(())
    }

    // ------------------------------------------------------------------------------------------------
    // Regression tests, one per class of issue #19
    // ------------------------------------------------------------------------------------------------

    /// A mount namespace with a fresh tmpfs (sticky, world-writable, like the real one) on /run/lock,
    /// so that the system scope's default directory can be created and planted freely.
    fn run_lock_namespace(label: &str) -> Keeper {
        Keeper::start(
            label,
            &["-m", "--propagation", "private"],
            false,
            "mount -t tmpfs -o mode=1777 onlyone-test /run/lock",
        )
    }

    /// Class 1: The system-scope directory belongs to whoever creates it first.
    fn class01() -> Outcome {
        need_unshare(&["-m"])?;
        need_tool("nsenter")?;
        need_tool("setpriv")?;
        let fx = Fixture::new();
        let mut failures = Vec::new();
        for backend in [BackendKind::Flock, BackendKind::PidFile] {
            if !backend.is_available() {
                continue;
            }
            let name = unique(&format!("c1-{backend}"));
            let holder = |k: &mut Keeper, uid: Option<u32>| {
                let cmd = fx.holder_argv(backend, &name, Path::new("@default"), "0");
                let cmd = match uid {
                    Some(u) => as_user(u, cmd),
                    None => cmd,
                };
                let argv = k.join(&["-m"], cmd);
                Actor::spawn(
                    "system-scope holder",
                    &argv,
                    false,
                    &[("HOLDER_SCOPE", Some("system"))],
                )
            };
            // (a) Another user created the directory first: root must refuse it and say whose it is.
            let mut k = run_lock_namespace("class 1 keeper");
            let plant = k.join(
                &["-m"],
                as_user(NOBODY, os(&["mkdir", "-m", "0777", "/run/lock/onlyone"])),
            );
            let (st, _, err) = run("plant", &plant, &[]);
            assert!(
                st.success(),
                "uid {NOBODY} cannot mkdir in /run/lock: {err}"
            );
            let mut root = holder(&mut k, None);
            match root.next_line() {
                None => {
                    let err = root.stderr();
                    if !(err.contains("/run/lock/onlyone") && err.contains(&NOBODY.to_string())) {
                        failures.push(format!(
                            "{backend}: refused a directory of uid {NOBODY}, but the error does not \
                             name the path and the owner: {err:?}"
                        ));
                    }
                }
                Some(l) => failures.push(format!(
                    "{backend}: root used /run/lock/onlyone created by uid {NOBODY} ({l}): that user can \
                     delete or swap root's lock file"
                )),
            }
            drop(root);
            drop(k);
            // (b) Another user planted a symbolic link there.
            let mut k = run_lock_namespace("class 1 keeper");
            let plant = k.join(
                &["-m"],
                as_user(
                    NOBODY,
                    os(&[
                        "sh",
                        "-c",
                        "mkdir -m 0777 /run/lock/elsewhere && ln -s /run/lock/elsewhere /run/lock/onlyone",
                    ]),
                ),
            );
            let (st, _, err) = run("plant link", &plant, &[]);
            assert!(st.success(), "cannot plant the link: {err}");
            let mut root = holder(&mut k, None);
            if let Some(l) = root.next_line() {
                failures.push(format!(
                    "{backend}: root followed a symbolic link planted at /run/lock/onlyone by uid \
                     {NOBODY} ({l})"
                ));
            }
            drop(root);
            drop(k);
            // (c) Root used the scope first: other users' system-scope locks must still work.
            let mut k = run_lock_namespace("class 1 keeper");
            let mut root = holder(&mut k, None);
            let l = root.line();
            assert!(l.starts_with("acquired"), "root: {l} {}", root.stderr());
            assert_eq!(root.ask("release"), "released");
            let mut other = holder(&mut k, Some(NOBODY));
            match other.next_line() {
                Some(l) if l.starts_with("acquired") => {}
                l => failures.push(format!(
                    "{backend}: after root created the system directory, uid {NOBODY} got {l:?}: {}",
                    other.stderr()
                )),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }

    /// A PID namespace with its own /proc, for several processes to join (`nsenter -p -m`).
    fn pid_namespace(label: &str) -> Keeper {
        Keeper::start(
            label,
            &["-p", "-f", "--mount-proc", "--kill-child"],
            true,
            "true",
        )
    }

    /// Class 2: `--replace` must signal only a process proven to be the holder. The listener of an
    /// abstract socket exits while a child it handed the socket to keeps the name; its pid is reused
    /// by a stranger (forced with `ns_last_pid` in a PID namespace of the test's own).
    fn class02() -> Outcome {
        need_backend(BackendKind::AbstractSocket)?;
        let cli = need_cli()?;
        need_unshare(&["-p", "-f", "--mount-proc"])?;
        need_tool("nsenter")?;
        let fx = Fixture::new();
        let name = unique("c2");
        let mut k = pid_namespace("class 2 keeper");
        let h = k.join(
            &["-p", "-m"],
            fx.holder_argv(BackendKind::AbstractSocket, &name, &fx.shared, "0"),
        );
        let mut holder = Actor::spawn("listener", &h, true, &[]);
        let (acquired, ns_pid) = outcome(&holder.line());
        assert!(
            acquired,
            "the listener did not get the lock: {}",
            holder.stderr()
        );
        let ns_pid: u32 = ns_pid.parse().expect("pid");
        let spawned = holder.ask("inherit");
        assert!(spawned.starts_with("spawned "), "{spawned}");
        holder.kill_inner();
        // The stranger takes the dead listener's pid.
        let script = r#"echo "$1" > /proc/sys/kernel/ns_last_pid || exit 97; sleep 1000000 & echo "$!"; wait"#;
        let s = k.join(
            &["-p", "-m"],
            os(&["sh", "-c", script, "sh", &(ns_pid - 1).to_string()]),
        );
        let mut stranger_sh = Actor::spawn("stranger", &s, true, &[]);
        let stranger_ns_pid = stranger_sh.line();
        if stranger_ns_pid != ns_pid.to_string() {
            return skip(format!(
                "could not make a stranger reuse pid {ns_pid} (got {stranger_ns_pid})"
            ));
        }
        let sh_host = stranger_sh.inner_pid();
        let kids = std::fs::read_to_string(format!("/proc/{sh_host}/task/{sh_host}/children"))
            .unwrap_or_default();
        let stranger_host: u32 = kids.trim().parse().expect("the stranger's host pid");
        let stranger = pidfd(stranger_host).expect("pidfd of the stranger");
        let r = k.join(
            &["-p", "-m"],
            with(
                vec![cli.into()],
                os(&[
                    "run",
                    "--replace",
                    "--kill-after",
                    "1",
                    "-N",
                    &name,
                    "--",
                    "true",
                ]),
            ),
        );
        let (st, _, err) = run("onlyone run --replace", &r, &[]);
        assert!(
            still_running(&stranger),
            "--replace signalled pid {ns_pid}, a stranger that reused the dead listener's pid \
             (exit {st}; stderr: {err})"
        );
        let code = st.code();
        assert!(
            code.is_some_and(|c| c != 0 && c != 70),
            "--replace should refuse with a documented code and a clear message, got {st}: {err}"
        );
        Ok(())
    }

    /// Class 3: `--replace` on PostgreSQL: `application_name` is forgeable; a genuine replace must work.
    #[cfg(feature = "postgres")]
    fn class03() -> Outcome {
        let cli = need_cli()?;
        let Some(server) = pg::PgServer::start() else {
            return skip("no PostgreSQL server binaries (Debian package `postgresql`)");
        };
        let name = unique("c3");
        let url = server.url();
        // (a) A client that is not onlyone forges an application_name naming a local stranger.
        let stranger = reliability_common::Sleeper::start();
        let stranger_fd = pidfd(stranger.pid()).expect("pidfd");
        let key =
            (onlyone::name::fnv1a_128(format!("onlyone/{name}").as_bytes()) >> 64) as u64 as i64;
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let forged = format!("onlyone {} - {host} forged", stranger.pid());
        let mut config: postgres::Config = url.parse().expect("database url");
        let mut forger = config
            .application_name(&forged)
            .connect(postgres::NoTls)
            .expect("connect the forger");
        forger
            .simple_query(&format!("SELECT pg_advisory_lock({key})"))
            .expect("the forger takes the lock");
        let replace = |name: &str| {
            with(
                vec![cli.clone().into()],
                os(&[
                    "run",
                    "-b",
                    "postgres",
                    "--database-url",
                    &url,
                    "--replace",
                    "--kill-after",
                    "1",
                    "-N",
                    name,
                    "--",
                    "true",
                ]),
            )
        };
        let (st, _, err) = run("replace forged", &replace(&name), &[]);
        let mut failures = Vec::new();
        if !still_running(&stranger_fd) {
            failures.push(format!(
                "--replace signalled local pid {} on the strength of an application_name any client \
                 can set ({st}: {err})",
                stranger.pid()
            ));
        }
        drop(forger);
        // (b) A genuine onlyone holder on this host is replaced.
        let name2 = unique("c3-genuine");
        let holder_argv = with(
            vec![cli.clone().into()],
            os(&[
                "run",
                "-b",
                "postgres",
                "--database-url",
                &url,
                "-N",
                &name2,
                "--",
                // Ends when the test's end of its stdin closes: in the portable build a job
                // outlives its SIGKILLed wrapper (no death signal), and a `sleep` was left behind.
                "sh",
                "-c",
                "read x",
            ]),
        );
        let holder = Actor::spawn("genuine holder", &holder_argv, false, &[]);
        let status_argv = with(
            vec![cli.clone().into()],
            os(&["status", "-b", "postgres", "--database-url", &url, &name2]),
        );
        // Wait until the holder holds (status exits 0 when held): bounded by HANG.
        let deadline = Instant::now() + HANG;
        loop {
            let (st, _, _) = run("status", &status_argv, &[]);
            if st.code() == Some(0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the genuine holder never took the lock: {}",
                holder.stderr()
            );
            std::thread::yield_now();
        }
        let (st, _, err) = run("replace genuine", &replace(&name2), &[]);
        let holder_fd = pidfd(holder.pid()).expect("pidfd of the holder");
        if onlyone::os::PORTABLE_BUILD {
            // The portable build takes the path of systems without pidfds: nothing can be
            // pinned, so --replace refuses and signals no one.
            if st.code() != Some(69) || !still_running(&holder_fd) {
                failures.push(format!(
                    "portable build: --replace should refuse (69) and leave the holder ({st}): {err}"
                ));
            }
        } else {
            if st.code() != Some(0) {
                failures.push(format!(
                    "a genuine --replace on PostgreSQL failed ({st}): {err}"
                ));
            }
            if !wait_readable(holder_fd.as_fd(), Duration::from_secs(10)) {
                failures.push("the genuine holder still runs after --replace".to_owned());
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }

    #[cfg(not(feature = "postgres"))]
    fn class03() -> Outcome {
        skip("needs the postgres backend (cargo feature `postgres`)")
    }

    /// Class 4: A PID file holder invisible under `hidepid=2` is alive, not dead.
    fn class04() -> Outcome {
        need_backend(BackendKind::PidFile)?;
        Env::Hidepid.check()?;
        let fx = Fixture::new();
        let name = unique("c4");
        let mut holder = Actor::spawn(
            "holder",
            &as_user(
                NOBODY2,
                fx.holder_argv(BackendKind::PidFile, &name, &fx.shared, "0"),
            ),
            false,
            &[("HOLDER_SCOPE", Some("system"))],
        );
        let l = holder.line();
        assert!(l.starts_with("acquired"), "{l} {}", holder.stderr());
        // Env::Hidepid runs instance 0 as uid 65534, in a mount namespace with /proc hidepid=2.
        let mut contender = Env::Hidepid.holder(&fx, 0, BackendKind::PidFile, &name, "0");
        let answer = contender.line();
        assert!(
            answer.starts_with("held"),
            "uid {NOBODY} under hidepid=2 cannot see the holder (uid {NOBODY2}) and said {answer:?}: \
             an invisible holder is not a dead one"
        );
        Ok(())
    }

    /// Class 5: A PID file holder in another time namespace is alive, not a reused pid.
    fn class05() -> Outcome {
        need_backend(BackendKind::PidFile)?;
        Env::TimeNs.check()?;
        let fx = Fixture::new();
        let mut failures = Vec::new();
        for holder_in_ns in [true, false] {
            let name = unique(&format!("c5-{holder_in_ns}"));
            let mut holder = if holder_in_ns {
                Env::TimeNs.holder(&fx, 0, BackendKind::PidFile, &name, "0")
            } else {
                fx.host_holder("holder", BackendKind::PidFile, &name, "0")
            };
            let l = holder.line();
            assert!(l.starts_with("acquired"), "{l} {}", holder.stderr());
            let mut contender = if holder_in_ns {
                fx.host_holder("contender", BackendKind::PidFile, &name, "0")
            } else {
                Env::TimeNs.holder(&fx, 1, BackendKind::PidFile, &name, "0")
            };
            let answer = contender.line();
            if !answer.starts_with("held") {
                failures.push(format!(
                    "holder {} a time namespace, contender {}: the contender said {answer:?}",
                    if holder_in_ns { "in" } else { "outside" },
                    if holder_in_ns {
                        "outside"
                    } else {
                        "in another"
                    },
                ));
            }
        }
        assert!(failures.is_empty(), "two holders: {}", failures.join("; "));
        Ok(())
    }

    /// Class 6: A holder in a PID namespace without its own /proc must describe itself, not the process
    /// that has its pid in /proc.
    fn class06() -> Outcome {
        need_backend(BackendKind::PidFile)?;
        Env::PidNsNoProc.check()?;
        let fx = Fixture::new();
        let name = unique("c6");
        let mut holder = Env::PidNsNoProc.holder(&fx, 0, BackendKind::PidFile, &name, "0");
        let l = holder.line();
        assert!(l.starts_with("acquired"), "{l} {}", holder.stderr());
        let host_pid = holder.inner_pid();
        let bytes =
            std::fs::read(fx.shared.join(format!("{name}.pid"))).expect("read the PID file");
        let record = onlyone::record::parse(&bytes).expect("parse the record");
        let true_start = onlyone::process::stat(host_pid)
            .expect("stat holder")
            .start_ticks;
        let true_ns = ns_inode(host_pid).expect("holder's pid namespace");
        let mut failures = Vec::new();
        if record.start_ticks != Some(true_start) {
            failures.push(format!(
                "the record's start time {:?} is not the holder's ({true_start}): it describes \
                 another process",
                record.start_ticks
            ));
        }
        if record.pid_ns.map(|n| format!("pid:[{n}]")) != Some(true_ns.clone()) {
            failures.push(format!(
                "the record's PID namespace {:?} is not the holder's ({true_ns})",
                record.pid_ns
            ));
        }
        holder.kill_inner();
        let mut contender = fx.host_holder("contender", BackendKind::PidFile, &name, "idle");
        assert_eq!(contender.line(), "ready");
        let after = contender.ask("try");
        if !(after.starts_with("acquired") || after.starts_with("held ? ")) {
            failures.push(format!(
                "after the holder's SIGKILL a contender on the host said {after:?}: the stale file \
                 names a live process that is not the holder"
            ));
        }
        // The administrator's way out (class 4's too): break-lock says why, --force removes it.
        if after.starts_with("held ? ") {
            if let Ok(cli) = need_cli() {
                let break_lock = |force: bool| {
                    let mut argv = with(
                        vec![cli.clone().into()],
                        os(&["break-lock", &name, "-b", "pidfile", "--lock-dir"]),
                    );
                    argv.push(fx.shared.clone().into());
                    if force {
                        argv.push("--force".into());
                    }
                    run("break-lock", &argv, &[])
                };
                let (st, out, err) = break_lock(false);
                if st.code() != Some(1) || !out.contains("another PID namespace") {
                    failures.push(format!("break-lock without --force: {st} {out:?} {err:?}"));
                }
                let (st, out, err) = break_lock(true);
                if st.code() != Some(0) || !out.contains("removed") {
                    failures.push(format!("break-lock --force: {st} {out:?} {err:?}"));
                }
                let again = contender.ask("try");
                if !again.starts_with("acquired") {
                    failures.push(format!(
                        "after break-lock --force the contender said {again:?}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }

    /// Class 7: A try never blocks, and a wait keeps its deadline, when a stranger holds the PID file's
    /// takeover guard.
    fn class07() -> Outcome {
        need_backend(BackendKind::PidFile)?;
        need_tool("flock")?;
        let fx = Fixture::new();
        let name = unique("c7");
        let mut holder = fx.host_holder("holder", BackendKind::PidFile, &name, "0");
        let l = holder.line();
        assert!(l.starts_with("acquired"), "{l}");
        holder.kill_inner(); // a stale PID file (its holder is a zombie until dropped)
        let guard = fx.shared.join(format!("{name}.pid-takeover"));
        let mut stranger = Actor::spawn(
            "stranger holding the takeover guard",
            &with(
                os(&["flock", "-x"]),
                with(
                    vec![guard.into()],
                    os(&["sh", "-c", "echo locked; exec sleep 1000000"]),
                ),
            ),
            true,
            &[],
        );
        assert_eq!(stranger.line(), "locked");
        // flock(1) runs the command as its child: that one is killed on drop too.
        stranger.inner_pid();
        let mut failures = Vec::new();
        for (wait, bound) in [("0", 5.0), ("1", 3.0)] {
            let mut c = fx.host_holder("contender", BackendKind::PidFile, &name, wait);
            match c.line_within(Duration::from_secs_f64(bound)) {
                Err(()) => failures.push(format!(
                    "a {} did not answer within {bound} s: it blocks on the takeover guard",
                    if wait == "0" { "try" } else { "1 s wait" }
                )),
                Ok(Some(l)) if l.starts_with("held") => {}
                Ok(l) => failures.push(format!("wait {wait}: {l:?} {}", c.stderr())),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }

    /// Class 8: A waiter wakes when another program unlocks the flock lock and lives on.
    fn class08() -> Outcome {
        need_backend(BackendKind::Flock)?;
        let fx = Fixture::new();
        let name = unique("c8");
        let path = fx.shared.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .expect("open lock file");
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        // A wait without a deadline: a waiter that misses the release never answers.
        let mut waiter = fx.host_holder("waiter", BackendKind::Flock, &name, "inf");
        common::wait_until_sleeping_in_poll(waiter.pid());
        rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock).expect("LOCK_UN");
        // This process (the other program) lives on with the file open.
        let bound = Duration::from_secs(10);
        match waiter.line_within(bound) {
            Ok(Some(answer)) => assert!(answer.starts_with("acquired"), "{answer}"),
            Ok(None) => panic!("the waiter exited: {}", waiter.stderr()),
            Err(()) => panic!(
                "the waiter missed the release by LOCK_UN of a live holder: still waiting {bound:?} \
                 later (the lock has been free all along)"
            ),
        }
        drop(file);
        Ok(())
    }

    /// Class 9: `holder()` in a PID namespace where /proc/locks hides the holder must not say free.
    fn class09() -> Outcome {
        need_backend(BackendKind::Flock)?;
        Env::PidNs.check()?;
        let fx = Fixture::new();
        let name = unique("c9");
        let mut holder = fx.host_holder("holder", BackendKind::Flock, &name, "0");
        let l = holder.line();
        assert!(l.starts_with("acquired"), "{l}");
        let mut observer = Env::PidNs.holder(&fx, 0, BackendKind::Flock, &name, "idle");
        assert_eq!(observer.line(), "ready");
        let seen = observer.ask("status");
        assert!(
            seen.starts_with("holder "),
            "inside a PID namespace the lock held on the host is reported {seen:?}"
        );
        Ok(())
    }

    /// Class 10: An abstract-socket holder in another PID namespace (SO_PEERCRED says pid 0).
    fn class10() -> Outcome {
        need_backend(BackendKind::AbstractSocket)?;
        let cli = need_cli()?;
        Env::PidNs.check()?;
        let fx = Fixture::new();
        let name = unique("c10");
        let mut holder = fx.host_holder("holder", BackendKind::AbstractSocket, &name, "0");
        let l = holder.line();
        assert!(l.starts_with("acquired"), "{l}");
        let mut failures = Vec::new();
        let mut lib = Env::PidNs.holder(&fx, 0, BackendKind::AbstractSocket, &name, "0");
        let answer = lib.line();
        if !answer.starts_with("held ? ") {
            failures.push(format!(
                "the library names the holder {answer:?} (a pid of the holder's namespace, or 0, means \
                 nothing here)"
            ));
        }
        let in_ns = |args: &[&str]| {
            with(
                os(&["unshare", "-p", "-f", "--mount-proc", "--kill-child", "--"]),
                with(vec![cli.clone().into()], os(args)),
            )
        };
        let (st, out, err) = run("status", &in_ns(&["status", &name]), &[]);
        if out.contains("pid 0") || !out.contains("PID namespace") || st.code() != Some(0) {
            failures.push(format!(
                "`onlyone status` says {out:?} ({st}, {err:?}); expected held by a process in another \
                 PID namespace"
            ));
        }
        let (st, _, err) = run(
            "replace",
            &in_ns(&[
                "run",
                "--replace",
                "--kill-after",
                "1",
                "-N",
                &name,
                "--",
                "true",
            ]),
            &[],
        );
        if st.code().is_none_or(|c| c == 0 || c == 70) || !err.contains("PID namespace") {
            failures.push(format!(
                "`onlyone run --replace` exited {st} with {err:?}; expected a refusal naming the other \
                 PID namespace"
            ));
        }
        assert_eq!(holder.ask("verify"), "ok", "the holder lost its lock");
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }

    /// Class 11: A file lock lost while the job runs makes `onlyone run` exit 76, as on PostgreSQL.
    fn class11() -> Outcome {
        let cli = need_cli()?;
        let fx = Fixture::new();
        let mut failures = Vec::new();
        for backend in [BackendKind::Flock, BackendKind::PidFile] {
            if !backend.is_available() {
                continue;
            }
            // (job script, expected exit status): the loss found when the job ends; found while it
            // runs (it would never end by itself); a harmless touch and chmod is not a loss.
            let cases = [
                (
                    r#"rm -f "$ONLYONE_RESOURCE""#,
                    76,
                    "deleted the lock file and exited 0",
                ),
                (
                    r#"rm -f "$ONLYONE_RESOURCE"; exec sleep 1000000"#,
                    76,
                    "deleted the lock file and kept running",
                ),
                (
                    r#"touch "$ONLYONE_RESOURCE" && chmod 644 "$ONLYONE_RESOURCE" && exit 3"#,
                    3,
                    "touched its lock file and exited 3",
                ),
            ];
            for (n, (script, expected, what)) in cases.into_iter().enumerate() {
                let name = unique(&format!("c11-{backend}-{n}"));
                let argv = with(
                    vec![cli.clone().into()],
                    with(
                        os(&[
                            "run",
                            "-b",
                            backend.as_str(),
                            "--kill-after",
                            "1",
                            "--lock-dir",
                        ]),
                        with(
                            vec![fx.shared.clone().into()],
                            os(&["-N", &name, "--", "sh", "-c", script]),
                        ),
                    ),
                );
                let (st, _, err) = run("onlyone run", &argv, &[]);
                if st.code() != Some(expected) {
                    failures.push(format!(
                        "{backend}: the job {what}; onlyone exited {st}, expected {expected} ({err:?})"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }

    /// Class 12: The job gets SIGPIPE's disposition as onlyone got it, as under flock(1). Only
    /// on glibc Linux can onlyone know it (it runs without Rust's start-up there); elsewhere
    /// (musl) Rust's start-up has set "ignore" before `main` and the documented outcome is the
    /// default action for the job, whatever the parent gave.
    fn class12() -> Outcome {
        let cli = need_cli()?;
        need_backend(BackendKind::Flock)?;
        let passes_through = cfg!(target_env = "gnu");
        let fx = Fixture::new();
        let mut failures = Vec::new();
        for ignored in [true, false] {
            let name = unique(&format!("c12-{ignored}"));
            let trap = if ignored { "trap '' PIPE; " } else { "" };
            let script = format!(
                r#"{trap}exec "$0" run -b flock --lock-dir "$1" -N "$2" -- grep SigIgn /proc/self/status"#
            );
            let argv = vec![
                OsString::from("sh"),
                "-c".into(),
                script.into(),
                cli.clone().into(),
                fx.shared.clone().into(),
                name.into(),
            ];
            let (st, out, err) = run("onlyone run", &argv, &[]);
            assert!(st.success(), "{st}: {err}");
            let mask = out
                .split_whitespace()
                .nth(1)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("no SigIgn line in {out:?}"));
            let job_ignores = mask & (1 << (13 - 1)) != 0;
            if job_ignores != (ignored && passes_through) {
                failures.push(format!(
                    "parent {} SIGPIPE, the job {} it",
                    if ignored {
                        "ignores"
                    } else {
                        "does not ignore"
                    },
                    if job_ignores {
                        "ignores"
                    } else {
                        "does not ignore"
                    }
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }

    /// Class 13: One user's default directory is the same from cron, a login shell, a user service and
    /// `sudo -u`, and does not vanish under a held lock.
    fn class13() -> Outcome {
        need_unshare(&["-m"])?;
        need_tool("nsenter")?;
        let mut failures = Vec::new();
        let exe = common::holder_exe();
        for backend in [BackendKind::Flock, BackendKind::PidFile] {
            if !backend.is_available() {
                continue;
            }
            for login_first in [true, false] {
                // Fresh /run, /tmp and /var/tmp, seen only by this namespace.
                let mut k = Keeper::start(
                    "class 13 keeper",
                    &["-m", "--propagation", "private"],
                    false,
                    "mount -t tmpfs -o mode=755 onlyone-run /run && mkdir -m 1777 /run/lock && \
                     mount -t tmpfs -o mode=1777 onlyone-tmp /tmp && \
                     mount -t tmpfs -o mode=1777 onlyone-vartmp /var/tmp",
                );
                let uid = nix::unistd::geteuid().as_raw();
                let run_user = format!("/run/user/{uid}");
                let name = unique(&format!("c13-{backend}"));
                let holder = |k: &mut Keeper, xdg: Option<&str>| {
                    let argv = k.join(
                        &["-m"],
                        vec![
                            exe.clone().into(),
                            backend.as_str().into(),
                            name.clone().into(),
                            "@default".into(),
                            "0".into(),
                        ],
                    );
                    Actor::spawn("session", &argv, false, &[("XDG_RUNTIME_DIR", xdg)])
                };
                let sh = |k: &mut Keeper, script: &str| {
                    let argv = k.join(&["-m"], os(&["sh", "-c", script]));
                    let (st, _, err) = run("sh", &argv, &[]);
                    assert!(st.success(), "{script}: {err}");
                };
                let (mut first, mut second);
                if login_first {
                    // Logged in: XDG_RUNTIME_DIR is set. Then the last logout removes /run/user/UID,
                    // and cron (no XDG_RUNTIME_DIR) runs the same job.
                    sh(&mut k, &format!("mkdir -p -m 700 {run_user}"));
                    first = holder(&mut k, Some(&run_user));
                    let a = first.line();
                    assert!(a.starts_with("acquired"), "{a} {}", first.stderr());
                    sh(&mut k, &format!("rm -rf {run_user}"));
                    second = holder(&mut k, None);
                } else {
                    // Cron while logged out, then a login shell.
                    first = holder(&mut k, None);
                    let a = first.line();
                    assert!(a.starts_with("acquired"), "{a} {}", first.stderr());
                    sh(&mut k, &format!("mkdir -p -m 700 {run_user}"));
                    second = holder(&mut k, Some(&run_user));
                }
                let b = second.line();
                let first_still_holds = first.ask("verify") == "ok";
                if b.starts_with("acquired") && first_still_holds {
                    failures.push(format!(
                        "{backend}, {}: two holders of one user's lock {name:?}",
                        if login_first {
                            "login shell then cron after logout"
                        } else {
                            "cron then login shell"
                        }
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }

    /// The commit `ONLYONE_OLD_BINARY` is built from (.ci/run): main before issue 19 changed the
    /// user scope's default directory.
    const OLD_COMMIT: &str = "c5b1b51";

    /// The compatibility rule of issue 19: an onlyone built before the default directory changed and
    /// this one exclude each other on the same name, both ways, for every backend, in each
    /// environment the old default depended on (`XDG_RUNTIME_DIR` set; unset with `/run/user/UID`;
    /// unset without). Needs the old binary in `ONLYONE_OLD_BINARY` (.ci/run builds it from
    /// [`OLD_COMMIT`]); runs in a private mount namespace with fresh /run, /tmp and /var/tmp.
    fn compat_old_and_new() -> Outcome {
        let Some(old) = std::env::var_os("ONLYONE_OLD_BINARY") else {
            return skip(format!(
                "ONLYONE_OLD_BINARY is not set (.ci/run builds onlyone at {OLD_COMMIT}, before the \
                 default directory changed, and sets it)"
            ));
        };
        let new = need_cli()?;
        need_unshare(&["-m"])?;
        need_tool("nsenter")?;
        // The namespace below mounts fresh /tmp, /run and /var/tmp: the old binary must live
        // elsewhere (cargo's per-target scratch directory, removed afterwards).
        let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir");
        let old_copy = scratch.path().join("onlyone-old");
        std::fs::copy(&old, &old_copy).unwrap_or_else(|e| panic!("copy {old:?}: {e}"));
        let old = old_copy.into_os_string();
        let uid = nix::unistd::geteuid().as_raw();
        let run_user = format!("/run/user/{uid}");
        let mut failures = Vec::new();
        for backend in MATRIX_BACKENDS {
            if !backend.is_available() {
                continue;
            }
            // The last case runs both in a time namespace: a PID-file record written there by
            // the old version holds the start time as that namespace shows it.
            let cases = [
                (true, true, false),
                (false, true, false),
                (false, false, false),
                (false, false, true),
            ];
            for (xdg, run_user_exists, timens) in cases {
                for old_first in [true, false] {
                    let mkdir = if run_user_exists {
                        format!(" && mkdir -p -m 700 {run_user}")
                    } else {
                        String::new()
                    };
                    let mut flags = vec!["-m", "--propagation", "private"];
                    if timens {
                        flags.extend([
                            "-T",
                            "--boottime",
                            "100000",
                            "--monotonic",
                            "100000",
                            "-f",
                            "--kill-child",
                        ]);
                    }
                    let join: &[&str] = if timens { &["-m", "-T"] } else { &["-m"] };
                    let mut k = Keeper::start(
                        "compat keeper",
                        &flags,
                        timens,
                        &format!(
                            "mount -t tmpfs -o mode=755 onlyone-run /run && mkdir -m 1777 /run/lock && \
                             mount -t tmpfs -o mode=1777 onlyone-tmp /tmp && \
                             mount -t tmpfs -o mode=1777 onlyone-vartmp /var/tmp{mkdir}"
                        ),
                    );
                    let name = unique(&format!("compat-{backend}"));
                    let env_xdg = xdg.then_some(run_user.as_str());
                    let (first, second) = if old_first {
                        (old.clone(), new.clone().into_os_string())
                    } else {
                        (new.clone().into_os_string(), old.clone())
                    };
                    let run_argv = |k: &mut Keeper, exe: &OsString, job: &[&str]| {
                        k.join(
                            join,
                            with(
                                vec![exe.clone()],
                                with(
                                    os(&["run", "-b", backend.as_str(), "-N", &name, "--"]),
                                    os(job),
                                ),
                            ),
                        )
                    };
                    let argv = run_argv(
                        &mut k,
                        &first,
                        &["sh", "-c", "echo started; exec sleep 1000000"],
                    );
                    // nsenter forks to enter a time namespace: the holder is then its child.
                    let mut holder =
                        Actor::spawn("first", &argv, timens, &[("XDG_RUNTIME_DIR", env_xdg)]);
                    match holder.next_line() {
                        Some(l) if l == "started" => {
                            // Killed through its pidfd on drop, like the wrapper.
                            holder.inner_pid();
                        }
                        l => {
                            failures.push(format!(
                                "{backend}: the first ({}) did not run: {l:?} {}",
                                if old_first { "old" } else { "new" },
                                holder.stderr()
                            ));
                            continue;
                        }
                    }
                    let argv = run_argv(&mut k, &second, &["true"]);
                    let (st, _, err) = run("second", &argv, &[("XDG_RUNTIME_DIR", env_xdg)]);
                    if st.code() != Some(75) {
                        failures.push(format!(
                            "{backend}, XDG_RUNTIME_DIR {}, /run/user/UID {}{}: {} held, {} exited \
                             {st} ({err:?})",
                            if xdg { "set" } else { "unset" },
                            if run_user_exists { "exists" } else { "absent" },
                            if timens { ", in a time namespace" } else { "" },
                            if old_first { "old" } else { "new" },
                            if old_first { "new" } else { "old" },
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    }
}
