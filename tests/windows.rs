//! The Windows suite: the named-mutex backend and the Windows OS layer, run as real processes
//! (under Wine in CI: `CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine cargo test --target
//! x86_64-pc-windows-gnu --test windows`, see .ci/run and README "Windows").
//!
//! Runs with its own harness (`harness = false`): libtest has no "skipped". Every test prints
//! one line, `NAME: ok`, `NAME: FAILED: why` or `NAME: skipped: why`, and the run ends with
//! `N passed, N failed, N skipped`. The contenders are this test binary started again with the
//! environment variable `ONLYONE_WIN_ROLE` (see `role`); every process a test starts is killed
//! and waited for when its guard drops, also on failure.
//!
//! What Wine cannot show is skipped with the reason: other users and sessions (every Wine
//! process is one user in one session), private namespaces (Wine has none: the fallback runs).

#[cfg(not(windows))]
fn main() {
    println!("windows: skipped: Windows only (named mutexes, process handles)");
    println!("0 passed, 0 failed, 1 skipped");
}

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    suite::main()
}

#[cfg(windows)]
mod windows_harness;

#[cfg(windows)]
mod suite {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
    use std::time::{Duration, Instant};

    use onlyone::os::{Liveness, ProcessIdentity};
    use onlyone::{Acquire, BackendKind, Builder, HolderKind, Lock, LockName, Scope};

    use crate::windows_harness::{Outcome, Skip, TestFn, run_all};

    const TESTS: &[(&str, TestFn)] = &[
        (
            "default_backend_is_the_named_mutex",
            default_backend_is_the_named_mutex,
        ),
        ("two_contenders_one_holder", two_contenders_one_holder),
        (
            "holder_killed_next_acquires_abandoned",
            holder_killed_next_acquires_abandoned,
        ),
        (
            "holder_killed_without_waiters_next_acquires",
            holder_killed_without_waiters_next_acquires,
        ),
        (
            "waiter_acquires_when_the_holder_is_killed",
            waiter_acquires_when_the_holder_is_killed,
        ),
        (
            "lock_lives_as_long_as_the_recorded_job",
            lock_lives_as_long_as_the_recorded_job,
        ),
        (
            "flock_two_contenders_and_a_killed_holder",
            flock_two_contenders_and_a_killed_holder,
        ),
        (
            "flock_lock_range_is_beyond_the_record",
            flock_lock_range_is_beyond_the_record,
        ),
        (
            "flock_refuses_a_symbolic_link",
            flock_refuses_a_symbolic_link,
        ),
        (
            "flock_eight_processes_never_two_holders",
            flock_eight_processes_never_two_holders,
        ),
        (
            "pidfile_two_contenders_and_a_stale_takeover",
            pidfile_two_contenders_and_a_stale_takeover,
        ),
        (
            "pidfile_eight_processes_never_two_holders",
            pidfile_eight_processes_never_two_holders,
        ),
        (
            "pidfile_exiting_holders_never_two_holders",
            pidfile_exiting_holders_never_two_holders,
        ),
        (
            "acquire_on_one_thread_release_on_another",
            acquire_on_one_thread_release_on_another,
        ),
        (
            "eight_processes_never_two_holders",
            eight_processes_never_two_holders,
        ),
        ("timeout_wait_returns", timeout_wait_returns),
        ("holder_lookup_without_taking", holder_lookup_without_taking),
        (
            "process_identity_and_liveness",
            process_identity_and_liveness,
        ),
        ("file_names_are_windows_safe", file_names_are_windows_safe),
        ("system_scope_is_global", system_scope_is_global),
        ("private_namespace", private_namespace),
        ("squatted_mutex_is_refused", squatted_mutex_is_refused),
        (
            "system_lock_dir_is_created_with_a_protected_dacl",
            system_lock_dir_has_a_protected_dacl,
        ),
    ];

    pub(crate) fn main() -> ExitCode {
        if let Ok(role) = std::env::var("ONLYONE_WIN_ROLE") {
            return run_role(&role);
        }
        run_all(TESTS)
    }

    // --------------------------------------------------------------------------------------------
    // Contender processes
    // --------------------------------------------------------------------------------------------

    /// A lock name no other test or run uses.
    fn unique(label: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("win-{label}-{}-{nanos}", std::process::id())
    }

    /// The flock backend's lock (LockFileEx) for `name` in `dir`.
    fn flock(name: &str, dir: &Path) -> Box<dyn Lock> {
        Builder::new(name)
            .backend(BackendKind::Flock)
            .lock_dir(dir)
            .build()
            .expect("build the flock lock")
    }

    /// The lock of a role: `f...` roles use the flock backend, the others the named mutex.
    fn role_lock(role: &str, name: &str, dir: &Path) -> Box<dyn Lock> {
        match role.chars().next() {
            Some('f') => flock(name, dir),
            Some('p') => pidfile(name, dir),
            _ => lock(name, dir),
        }
    }

    /// The PID file backend's lock for `name` in `dir`.
    fn pidfile(name: &str, dir: &Path) -> Box<dyn Lock> {
        Builder::new(name)
            .backend(BackendKind::PidFile)
            .lock_dir(dir)
            .build()
            .expect("build the PID file lock")
    }

    fn lock(name: &str, dir: &Path) -> Box<dyn Lock> {
        Builder::new(name)
            .backend(BackendKind::NamedMutex)
            .lock_dir(dir)
            .build()
            .expect("build the lock")
    }

    /// A contender process, killed and waited for when dropped.
    struct Contender {
        child: Child,
        stdin: Option<ChildStdin>,
        stdout: BufReader<ChildStdout>,
    }

    impl Contender {
        /// Starts this binary in `role` (`hold NAME DIR`, `rounds NAME DIR N MARKER`).
        fn start(role: &str) -> Contender {
            let mut child = Command::new(std::env::current_exe().expect("test binary"))
                .env("ONLYONE_WIN_ROLE", role)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a contender");
            let stdin = child.stdin.take();
            let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            Contender {
                child,
                stdin,
                stdout,
            }
        }

        /// The next line it prints.
        fn line(&mut self) -> String {
            let mut line = String::new();
            self.stdout.read_line(&mut line).expect("read a contender");
            line.trim_end().to_owned()
        }

        /// Closes its stdin (a holder then releases) and waits for its exit, returning the rest
        /// of its output.
        fn finish(mut self) -> String {
            drop(self.stdin.take());
            let mut rest = String::new();
            let _ = self.stdout.read_to_string(&mut rest);
            let status = self.child.wait().expect("wait for a contender");
            assert!(status.success(), "contender failed: {status}: {rest}");
            rest
        }

        /// Kills it (TerminateProcess: the Windows counterpart of SIGKILL) and waits.
        fn kill(mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Contender {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// What a contender process does.
    fn run_role(role: &str) -> ExitCode {
        let words: Vec<&str> = role.split(' ').collect();
        let out = &mut std::io::stdout();
        match words.as_slice() {
            [kind @ ("hold" | "fhold" | "phold"), name, dir] => {
                let lock = role_lock(kind, name, Path::new(dir));
                match lock.try_acquire().expect("try") {
                    Acquire::Acquired(guard) => {
                        let _ = writeln!(out, "acquired {}", std::process::id());
                        let _ = out.flush();
                        // Holds until the test closes stdin (or kills it).
                        let _ = std::io::stdin().read_to_end(&mut Vec::new());
                        guard.release().expect("release");
                    }
                    Acquire::Held(h) => {
                        let _ = writeln!(out, "held {:?}", h.pid);
                    }
                }
                ExitCode::SUCCESS
            }
            ["holdjob", name, dir, job] => {
                let lock = lock(name, Path::new(dir));
                let mut guard = lock.try_acquire().expect("try").guard().expect("free");
                let job: u32 = job.parse().expect("job pid");
                assert!(guard.record_job(job).expect("record the job"));
                let _ = writeln!(out, "acquired {}", std::process::id());
                let _ = out.flush();
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
                ExitCode::SUCCESS
            }
            ["sysdir", name] => {
                // `ProgramData` points into the test's directory: the system-scope default
                // directory is created there by the first lock that needs it.
                let lock = Builder::new(*name)
                    .backend(BackendKind::Flock)
                    .scope(Scope::System)
                    .build()
                    .expect("build the system-scope lock");
                let acquired = lock.try_acquire().expect("try").is_acquired();
                let _ = writeln!(out, "acquired {acquired}");
                ExitCode::SUCCESS
            }
            // Reads the lock's holder over and over (each read opens the PID file) until its
            // stdin closes; prints how many reads it made.
            ["plook", name, dir] => {
                let lock = pidfile(name, Path::new(dir));
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let stop_on_eof = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    let _ = std::io::stdin().read_to_end(&mut Vec::new());
                    stop_on_eof.store(true, std::sync::atomic::Ordering::Relaxed);
                });
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = lock.holder();
                    reads += 1;
                }
                let _ = writeln!(out, "reads {reads}");
                ExitCode::SUCCESS
            }
            ["sleep"] => {
                let _ = writeln!(out, "acquired {}", std::process::id());
                let _ = out.flush();
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
                ExitCode::SUCCESS
            }
            [
                kind @ ("rounds" | "frounds" | "prounds"),
                name,
                dir,
                n,
                marker,
            ] => {
                let lock = role_lock(kind, name, Path::new(dir));
                let n: u32 = n.parse().expect("rounds");
                let marker = PathBuf::from(marker);
                let mut overlaps = 0;
                for _ in 0..n {
                    let guard = lock
                        .acquire_timeout(None)
                        .expect("acquire")
                        .guard()
                        .expect("an unlimited wait acquires");
                    // Only the holder may be here: the marker must not exist.
                    match std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&marker)
                    {
                        // Inside, the marker names this process: an overlap says whom it met.
                        Ok(mut file) => {
                            let _ = write!(file, "{}", std::process::id());
                        }
                        Err(e) => {
                            overlaps += 1;
                            // Which error: another holder's marker, or something else.
                            eprintln!(
                                "process {} found marker {}: {e} ({:?}), written by {:?}",
                                std::process::id(),
                                marker.display(),
                                e.kind(),
                                std::fs::read_to_string(&marker)
                            );
                        }
                    }
                    let _ = std::fs::remove_file(&marker);
                    drop(guard);
                }
                let _ = writeln!(out, "overlaps {overlaps}");
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("unknown role {role:?}");
                ExitCode::FAILURE
            }
        }
    }

    fn hold(name: &str, dir: &Path) -> (Contender, u32) {
        let mut c = Contender::start(&format!("hold {name} {}", dir.display()));
        let line = c.line();
        let pid = line
            .strip_prefix("acquired ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the first contender should acquire, said {line:?}"));
        (c, pid)
    }

    // --------------------------------------------------------------------------------------------
    // The tests
    // --------------------------------------------------------------------------------------------

    fn default_backend_is_the_named_mutex(_dir: &Path) -> Outcome {
        assert_eq!(onlyone::DEFAULT_BACKEND, BackendKind::NamedMutex);
        assert!(BackendKind::NamedMutex.is_available());
        assert!(!BackendKind::AbstractSocket.is_available());
        assert_eq!(
            "mutex".parse::<BackendKind>().unwrap(),
            BackendKind::NamedMutex
        );
        Ok(())
    }

    /// Two processes race for one name: one holds, the other is told who.
    fn two_contenders_one_holder(dir: &Path) -> Outcome {
        let name = unique("two");
        let (first, pid) = hold(&name, dir);
        let mut second = Contender::start(&format!("hold {name} {}", dir.display()));
        let said = second.line();
        assert_eq!(
            said,
            format!("held Some({pid})"),
            "the second is told the holder"
        );
        second.finish();
        // In this process too, from the outside: held, by that pid, same user.
        let here = lock(&name, dir);
        let holder = here.try_acquire().unwrap().holder().cloned().expect("held");
        assert_eq!(holder.pid, Some(pid));
        assert_eq!(holder.kind, HolderKind::SameUser);
        assert!(holder.started.is_some(), "creation time known: {holder}");
        first.finish();
        assert!(
            here.try_acquire().unwrap().is_acquired(),
            "free once released"
        );
        Ok(())
    }

    /// The holder is killed while another process has the mutex open: the next acquire is
    /// `WAIT_ABANDONED`, reported as acquired with the previous holder dead.
    fn holder_killed_next_acquires_abandoned(dir: &Path) -> Outcome {
        use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ALREADY_EXISTS, GetLastError};
        use windows_sys::Win32::System::Threading::CreateMutexW;

        let name = unique("abandoned");
        let (holder, _) = hold(&name, dir);
        let here = lock(&name, dir);
        let object = here.resource();
        if !object.starts_with("Local\\") {
            return Err(Skip(format!(
                "the mutex lives in a private namespace ({object}), which this test does not \
                 open; the abandoned path was run under Wine (no private namespaces)"
            )));
        }
        // A second handle, as a waiter's would be, keeps the mutex alive past its holder's death.
        let wide: Vec<u16> = object.encode_utf16().chain(std::iter::once(0)).collect();
        // SAFETY: a NUL-terminated name, default security, not owned; closed below.
        let (handle, error) = unsafe {
            let h = CreateMutexW(std::ptr::null(), 0, wide.as_ptr());
            (h, GetLastError())
        };
        assert!(!handle.is_null(), "open {object}");
        assert_eq!(error, ERROR_ALREADY_EXISTS, "the holder's mutex");
        holder.kill();
        let guard = here.try_acquire().unwrap().guard();
        // SAFETY: the handle opened above, closed once.
        unsafe { CloseHandle(handle) };
        let guard = guard.expect("acquired after the holder was killed");
        assert!(guard.previous_holder_died(), "WAIT_ABANDONED reported");
        drop(guard);
        let again = here.try_acquire().unwrap().guard().expect("free");
        assert!(
            !again.previous_holder_died(),
            "reported once, to the next holder only"
        );
        Ok(())
    }

    /// The holder is killed while a waiter in another process blocks on the mutex: the waiter
    /// acquires (abandoned, or fresh if the kill came before its open; both are acquisitions).
    fn waiter_acquires_when_the_holder_is_killed(dir: &Path) -> Outcome {
        let name = unique("waiter");
        let (holder, _) = hold(&name, dir);
        let waiter = std::thread::spawn({
            let name = name.clone();
            let dir = dir.to_owned();
            move || lock(&name, &dir).acquire_timeout(None)
        });
        holder.kill();
        let got = waiter.join().expect("waiter thread").expect("wait");
        assert!(
            got.is_acquired(),
            "an unlimited wait ends only by acquiring"
        );
        Ok(())
    }

    /// The holder is killed with nobody else having the mutex open: the mutex dies with it, and
    /// the next process acquires a fresh one.
    fn holder_killed_without_waiters_next_acquires(dir: &Path) -> Outcome {
        let name = unique("killed");
        let (holder, _) = hold(&name, dir);
        holder.kill();
        let (next, pid) = hold(&name, dir);
        let here = lock(&name, dir);
        let holder = here.try_acquire().unwrap().holder().cloned().expect("held");
        assert_eq!(holder.pid, Some(pid), "the stale record is not believed");
        next.finish();
        Ok(())
    }

    /// A holder that named a job in its record and died: the lock stays held by the job until
    /// the job exits (what keeps `onlyone run`'s lock alive while its job object kills the job).
    fn lock_lives_as_long_as_the_recorded_job(dir: &Path) -> Outcome {
        let name = unique("job");
        let mut job = Contender::start("sleep");
        let job_pid: u32 = job
            .line()
            .strip_prefix("acquired ")
            .and_then(|p| p.parse().ok())
            .expect("the job's pid");
        let mut holder = Contender::start(&format!("holdjob {name} {} {job_pid}", dir.display()));
        assert!(holder.line().starts_with("acquired "));
        holder.kill();
        let here = lock(&name, dir);
        let held = here.try_acquire().unwrap();
        assert_eq!(
            held.holder().and_then(|h| h.pid),
            Some(job_pid),
            "held by the job while it runs"
        );
        let waited = here
            .acquire_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(!waited.is_acquired(), "a wait ends held while the job runs");
        let waiter = std::thread::spawn({
            let name = name.clone();
            let dir = dir.to_owned();
            move || lock(&name, &dir).acquire_timeout(None)
        });
        job.kill();
        let got = waiter.join().expect("waiter").expect("wait");
        assert!(got.is_acquired(), "free once the job exited");
        Ok(())
    }

    /// flock (LockFileEx): two processes, one holds and is named; killed, the next acquires.
    fn flock_two_contenders_and_a_killed_holder(dir: &Path) -> Outcome {
        let name = unique("flock");
        let mut first = Contender::start(&format!("fhold {name} {}", dir.display()));
        let line = first.line();
        let pid: u32 = line
            .strip_prefix("acquired ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the first should acquire, said {line:?}"));
        let mut second = Contender::start(&format!("fhold {name} {}", dir.display()));
        assert_eq!(second.line(), format!("held Some({pid})"));
        second.finish();
        let here = flock(&name, dir);
        assert_eq!(here.holder().unwrap().and_then(|h| h.pid), Some(pid));
        first.kill();
        let guard = here
            .try_acquire()
            .unwrap()
            .guard()
            .expect("released by the death");
        guard.verify().expect("still the same file");
        guard.release().expect("release");
        assert_eq!(here.holder().unwrap(), None);
        Ok(())
    }

    /// The lock byte lies at 0x7FFF_FFFF_0000_0000, never over the record: another handle can
    /// lock the record's bytes and read them while the lock is held, and cannot lock that byte.
    /// (Windows locks are mandatory, Wine's are not: this pins the range where Wine cannot show
    /// a lock that would hide the record.)
    fn flock_lock_range_is_beyond_the_record(dir: &Path) -> Outcome {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Storage::FileSystem::{
            LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY, LockFileEx, UnlockFileEx,
        };
        use windows_sys::Win32::System::IO::OVERLAPPED;

        let name = unique("range");
        let mut holder = Contender::start(&format!("fhold {name} {}", dir.display()));
        assert!(holder.line().starts_with("acquired "));
        let path = dir.join(format!("{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open the lock file");
        let lock_at = |offset: u64, len: u32| {
            let mut o: OVERLAPPED = Default::default();
            o.Anonymous.Anonymous.Offset = offset as u32;
            o.Anonymous.Anonymous.OffsetHigh = (offset >> 32) as u32;
            // SAFETY: an open handle; `o` carries the offset and outlives the synchronous call.
            let ok = unsafe {
                LockFileEx(
                    file.as_raw_handle(),
                    LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
                    0,
                    len,
                    0,
                    &mut o,
                )
            };
            if ok != 0 {
                // SAFETY: unlocks the range just locked.
                unsafe { UnlockFileEx(file.as_raw_handle(), 0, len, 0, &mut o) };
            }
            ok != 0
        };
        assert!(lock_at(0, 4096), "the record's bytes are not locked");
        assert!(!lock_at(0x7FFF_FFFF_0000_0000, 1), "the lock byte is held");
        let record = std::fs::read_to_string(&path).expect("read the record");
        assert!(
            record.starts_with(&format!("{}\n", holder.child.id())),
            "{record:?}"
        );
        holder.finish();
        Ok(())
    }

    /// A symbolic link where the lock file belongs is refused, its target untouched.
    fn flock_refuses_a_symbolic_link(dir: &Path) -> Outcome {
        let name = unique("link");
        let target = dir.join("target");
        std::fs::write(&target, "untouched").unwrap();
        if let Err(e) =
            std::os::windows::fs::symlink_file(&target, dir.join(format!("{name}.lock")))
        {
            return Err(Skip(format!("cannot create a symbolic link here: {e}")));
        }
        let link = dir.join(format!("{name}.lock"));
        if !std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Skip(
                "the link made here is not reported as a reparse point (Wine presents it as the \
                 file it names); the refusal rests on Microsoft's documentation of \
                 FILE_FLAG_OPEN_REPARSE_POINT and FILE_ATTRIBUTE_REPARSE_POINT"
                    .into(),
            ));
        }
        let err = flock(&name, dir).try_acquire().unwrap_err();
        assert_eq!(err.kind(), onlyone::ErrorKind::Symlink, "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        Ok(())
    }

    /// flock: 8 processes x 200 rounds never overlap.
    fn flock_eight_processes_never_two_holders(dir: &Path) -> Outcome {
        let name = unique("frace");
        let marker = dir.join("inside");
        let contenders: Vec<Contender> = (0..8)
            .map(|_| {
                Contender::start(&format!(
                    "frounds {name} {} 200 {}",
                    dir.display(),
                    marker.display()
                ))
            })
            .collect();
        for c in contenders {
            assert_eq!(c.finish().trim(), "overlaps 0", "two holders at once");
        }
        Ok(())
    }

    /// PID file: two processes, one holds and is named; killed, its stale file is taken over
    /// (the record names a dead process), and released files are removed.
    fn pidfile_two_contenders_and_a_stale_takeover(dir: &Path) -> Outcome {
        let name = unique("pid");
        let mut first = Contender::start(&format!("phold {name} {}", dir.display()));
        let line = first.line();
        let pid: u32 = line
            .strip_prefix("acquired ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the first should acquire, said {line:?}"));
        let mut second = Contender::start(&format!("phold {name} {}", dir.display()));
        assert_eq!(second.line(), format!("held Some({pid})"));
        second.finish();
        first.kill();
        let here = pidfile(&name, dir);
        assert!(
            dir.join(format!("{name}.pid")).exists(),
            "the dead holder's file stays"
        );
        assert_eq!(here.holder().unwrap(), None, "a dead holder holds nothing");
        let guard = here
            .try_acquire()
            .unwrap()
            .guard()
            .expect("stale file taken over");
        guard.verify().expect("our record");
        guard.release().expect("release");
        assert!(
            !dir.join(format!("{name}.pid")).exists(),
            "removed at release"
        );
        Ok(())
    }

    /// PID file: 8 processes x 200 rounds never overlap.
    fn pidfile_eight_processes_never_two_holders(dir: &Path) -> Outcome {
        let name = unique("prace");
        let marker = dir.join("inside");
        let contenders: Vec<Contender> = (0..8)
            .map(|_| {
                Contender::start(&format!(
                    "prounds {name} {} 200 {}",
                    dir.display(),
                    marker.display()
                ))
            })
            .collect();
        for c in contenders {
            assert_eq!(c.finish().trim(), "overlaps 0", "two holders at once");
        }
        Ok(())
    }

    /// PID file: holders that exit right after their release, while others read their record.
    /// Under Wine a file removed while another process reads it stays visible (with the dead
    /// holder's record) until that reader closes it, then vanishes: a taker that judged it stale
    /// must remove exactly that file, never a fresh holder's linked in meanwhile. 8 lines of 12
    /// processes x 2 rounds, beside 2 processes that keep reading the record: never two holders.
    fn pidfile_exiting_holders_never_two_holders(dir: &Path) -> Outcome {
        let name = unique("pexit");
        let marker = dir.join("inside");
        let role = format!("prounds {name} {} 2 {}", dir.display(), marker.display());
        let readers: Vec<Contender> = (0..2)
            .map(|_| Contender::start(&format!("plook {name} {}", dir.display())))
            .collect();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..12 {
                        let said = Contender::start(&role).finish();
                        assert_eq!(said.trim(), "overlaps 0", "two holders at once");
                    }
                });
            }
        });
        for reader in readers {
            assert!(
                reader.finish().starts_with("reads "),
                "a reader ended early"
            );
        }
        Ok(())
    }

    /// A guard taken on one thread and released on another releases the mutex (its owner thread
    /// does), and the same process's other threads see it held meanwhile.
    fn acquire_on_one_thread_release_on_another(dir: &Path) -> Outcome {
        let name = unique("threads");
        let here = lock(&name, dir);
        let guard = here.try_acquire().unwrap().guard().expect("free");
        let other = lock(&name, dir);
        let held = std::thread::scope(|s| s.spawn(|| other.try_acquire().unwrap()).join())
            .expect("thread");
        assert!(
            !held.is_acquired(),
            "another thread of the same process must not get it"
        );
        std::thread::spawn(move || guard.release())
            .join()
            .expect("release thread")
            .expect("release on another thread");
        let mut c = Contender::start(&format!("hold {name} {}", dir.display()));
        assert!(c.line().starts_with("acquired "), "another process gets it");
        c.finish();
        Ok(())
    }

    /// 8 processes × 200 rounds, each inside the lock creating and removing a marker that must
    /// not exist: never two holders.
    fn eight_processes_never_two_holders(dir: &Path) -> Outcome {
        let name = unique("race");
        let marker = dir.join("inside");
        let contenders: Vec<Contender> = (0..8)
            .map(|_| {
                Contender::start(&format!(
                    "rounds {name} {} 200 {}",
                    dir.display(),
                    marker.display()
                ))
            })
            .collect();
        for c in contenders {
            let rest = c.finish();
            assert_eq!(rest.trim(), "overlaps 0", "two holders at once");
        }
        Ok(())
    }

    /// A wait with a timeout on a held lock returns held, within the deadline and 2 s (the
    /// wait's precision is measured in benches/wait.rs, not asserted here).
    fn timeout_wait_returns(dir: &Path) -> Outcome {
        let name = unique("timeout");
        let (holder, pid) = hold(&name, dir);
        let here = lock(&name, dir);
        let timeout = Duration::from_millis(300);
        let start = Instant::now();
        let got = here.acquire_timeout(Some(timeout)).unwrap();
        let took = start.elapsed();
        assert_eq!(got.holder().and_then(|h| h.pid), Some(pid));
        assert!(took < timeout + Duration::from_secs(2), "took {took:?}");
        holder.finish();
        Ok(())
    }

    /// `holder()` names the holder without taking the lock, and says free when it is.
    fn holder_lookup_without_taking(dir: &Path) -> Outcome {
        let name = unique("lookup");
        let here = lock(&name, dir);
        assert_eq!(here.holder().unwrap(), None);
        let (holder, pid) = hold(&name, dir);
        let found = here.holder().unwrap().expect("held");
        assert_eq!(found.pid, Some(pid));
        let command = found.command.clone().unwrap_or_default();
        assert!(
            command.to_lowercase().contains("windows"),
            "the image path: {command:?}"
        );
        holder.finish();
        assert_eq!(here.holder().unwrap(), None);
        Ok(())
    }

    /// OpenProcess + GetProcessTimes: this process is alive; another creation time or an exited
    /// process is dead.
    fn process_identity_and_liveness(_dir: &Path) -> Outcome {
        let me = ProcessIdentity::current();
        assert!(
            me.start_ticks.is_some(),
            "GetProcessTimes gives a creation time"
        );
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(matches!(reused.liveness(), Liveness::Dead(_)));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("ONLYONE_WIN_ROLE", "none")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = onlyone::os::stat(pid).map(|s| s.start_ticks);
        child.wait().unwrap();
        let gone = ProcessIdentity {
            pid,
            start_ticks: started,
            ..me
        };
        assert!(
            matches!(gone.liveness(), Liveness::Dead(_)),
            "{:?}",
            gone.liveness()
        );
        Ok(())
    }

    /// Names that Windows file names cannot keep apart or keep at all get the hashed form.
    fn file_names_are_windows_safe(_dir: &Path) -> Outcome {
        let file = |n: &str| LockName::new(n).unwrap().file_name("holder");
        assert_eq!(file("nightly-job"), "nightly-job.holder");
        assert_ne!(file("Job"), file("job"), "case-folded names stay apart");
        for bad in [
            "Job", "con", "NUL", "com1", "lpt9.txt", "a.", "a ", "a:b", "a\\b", "a*b",
        ] {
            let f = file(bad);
            assert!(f.starts_with('#'), "{bad:?} -> {f:?}");
            assert!(
                !f.chars()
                    .any(|c| "<>:\"\\|?*".contains(c) || c.is_uppercase()),
                "{bad:?} -> {f:?}"
            );
        }
        Ok(())
    }

    /// System scope: the mutex lives in `Global\`, the user scope's does not.
    fn system_scope_is_global(dir: &Path) -> Outcome {
        let name = unique("system");
        let system = Builder::new(&name)
            .backend(BackendKind::NamedMutex)
            .scope(Scope::System)
            .lock_dir(dir)
            .build()
            .unwrap();
        assert!(system.resource().starts_with("Global\\onlyone-system-"));
        let user = lock(&name, dir);
        assert!(!user.resource().starts_with("Global\\"));
        let guard = system.try_acquire().unwrap().guard().expect("free");
        assert!(
            user.try_acquire().unwrap().is_acquired(),
            "user and system scope are separate locks"
        );
        drop(guard);
        Ok(())
    }

    fn private_namespace(dir: &Path) -> Outcome {
        let user = lock(&unique("ns"), dir);
        if user.resource().starts_with("Local\\") {
            return Err(Skip(
                "no private namespaces here (Wine): the Local\\ fallback with the owner check \
                 ran instead; the namespace path rests on Microsoft's documentation"
                    .into(),
            ));
        }
        assert!(user.try_acquire().unwrap().is_acquired());
        Ok(())
    }

    fn squatted_mutex_is_refused(_dir: &Path) -> Outcome {
        Err(Skip(
            "needs a second user to create the mutex first; every Wine process is the same \
             user (the owner comparison runs on every acquire of an existing mutex)"
                .into(),
        ))
    }

    /// Whether this process runs under Wine (ntdll exports `wine_get_version` there only).
    fn under_wine() -> bool {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
        let ntdll: Vec<u16> = "ntdll.dll\0".encode_utf16().collect();
        // SAFETY: ntdll is loaded in every process; the name is NUL-terminated UTF-16.
        let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
        // SAFETY: a NUL-terminated ASCII name; the address is only compared, never called.
        !module.is_null()
            && unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()) }.is_some()
    }

    /// The DACL of `path` as SDDL (GetNamedSecurityInfoW).
    fn dacl_sddl(path: &Path) -> String {
        use std::os::windows::ffi::OsStrExt;
        use windows_sys::Win32::Foundation::LocalFree;
        use windows_sys::Win32::Security::Authorization::{
            ConvertSecurityDescriptorToStringSecurityDescriptorW, GetNamedSecurityInfoW,
            SDDL_REVISION_1, SE_FILE_OBJECT,
        };
        use windows_sys::Win32::Security::{DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR};
        let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `wide` is a NUL-terminated path; only the descriptor is asked for (the other
        // out-pointers may be NULL); it is freed with LocalFree below.
        let status = unsafe {
            GetNamedSecurityInfoW(
                wide.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut descriptor,
            )
        };
        assert_eq!(status, 0, "GetNamedSecurityInfoW({})", path.display());
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: `descriptor` is the live descriptor read above; the string is LocalAlloc'd.
        let ok = unsafe {
            ConvertSecurityDescriptorToStringSecurityDescriptorW(
                descriptor,
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut text,
                std::ptr::null_mut(),
            )
        };
        assert_ne!(ok, 0, "the DACL of {} as SDDL", path.display());
        // SAFETY: `text` is a NUL-terminated UTF-16 string the call allocated.
        let len = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
        // SAFETY: `len` units were just read as initialised.
        let sddl = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
        // SAFETY: both were LocalAlloc'd by the calls above and are freed once, after their
        // last use.
        unsafe {
            LocalFree(text.cast());
            LocalFree(descriptor);
        }
        sddl
    }

    /// `%ProgramData%\onlyone`, when onlyone creates it, gets a protected DACL: SYSTEM and
    /// Administrators full control, Authenticated Users may add files but not delete others'.
    /// Wine keeps no security descriptors on files, so there only the creation is checked.
    fn system_lock_dir_has_a_protected_dacl(dir: &Path) -> Outcome {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .env("ONLYONE_WIN_ROLE", format!("sysdir {}", unique("sysdir")))
            .env("ProgramData", dir)
            .output()
            .expect("run the role");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("acquired true"),
            "the system-scope lock was taken: {out:?}"
        );
        let lock_dir = dir.join("onlyone");
        assert!(lock_dir.is_dir(), "{} was created", lock_dir.display());
        if under_wine() {
            return Err(Skip(
                "Wine does not keep the descriptor given to CreateDirectoryW (Wine 8 reads back \
                 a default DACL, SYSTEM and the user, unprotected): the directory was created \
                 with it, its DACL rests on Microsoft's documentation"
                    .into(),
            ));
        }
        let sddl = dacl_sddl(&lock_dir);
        assert!(sddl.starts_with("D:P"), "a protected DACL: {sddl}");
        for trustee in [";;;SY)", ";;;BA)", ";;;AU)", ";;;CO)"] {
            assert!(sddl.contains(trustee), "an ACE for {trustee}: {sddl}");
        }
        for inherited in [";;;WD)", ";;;BU)"] {
            assert!(!sddl.contains(inherited), "nothing for {inherited}: {sddl}");
        }
        Ok(())
    }
}
