//! Second-instance handoff on Windows, over the named pipe, with real processes: the primary is
//! `examples/editor.rs` (or this test process, where a test needs `listen_later` or a squatter),
//! the secondaries are editors or this test process. Run under Wine in CI (see .ci/run).
//!
//! Runs with its own harness (`harness = false`), like tests/windows.rs: every test prints
//! `NAME: ok`, `NAME: FAILED: why` or `NAME: skipped: why`, and the run ends with
//! `N passed, N failed, N skipped`. Every process a test starts is killed and waited for when
//! its guard drops, also on failure; waits are bounded (a line from a child, a child's exit),
//! never sleeps.
//!
//! What Wine cannot show is skipped with the reason: another user's secondary or primary (every
//! Wine process runs as one user, and Wine does not enforce pipe DACLs).

#[cfg(not(windows))]
fn main() {
    println!("handoff_windows: skipped: Windows only (named pipes)");
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
    use std::ffi::OsString;
    use std::io::{BufRead, BufReader, Read};
    use std::os::windows::io::AsRawHandle;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitCode, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use onlyone::handoff::{Handoff, Message, Outcome, Start};

    use crate::windows_harness::{Outcome as TestOutcome, Skip, TestFn, run_all};

    const TESTS: &[(&str, TestFn)] = &[
        (
            "fifty_secondaries_delivered_once_with_answers",
            fifty_secondaries_delivered_once_with_answers,
        ),
        (
            "odd_arguments_and_a_mebibyte_arrive_exact_and_in_order",
            odd_arguments_and_a_mebibyte_arrive_exact_and_in_order,
        ),
        (
            "squatted_pipe_name_is_an_error_naming_it",
            squatted_pipe_name_is_an_error_naming_it,
        ),
        (
            "secondary_retries_until_a_late_listener",
            secondary_retries_until_a_late_listener,
        ),
        (
            "primary_dying_after_reading_gives_unknown",
            primary_dying_after_reading_gives_unknown,
        ),
        (
            "primary_killed_while_handling_gives_unknown_at_once",
            primary_killed_while_handling_gives_unknown_at_once,
        ),
        (
            "killed_primary_next_launch_is_primary",
            killed_primary_next_launch_is_primary,
        ),
        (
            "listen_while_holding_serves_then_frees_the_name",
            listen_while_holding_serves_then_frees_the_name,
        ),
        (
            "send_to_the_pipe_without_the_lock",
            send_to_the_pipe_without_the_lock,
        ),
        ("other_user_is_refused", other_user_is_refused),
    ];

    pub(crate) fn main() -> ExitCode {
        run_all(TESTS)
    }

    // --------------------------------------------------------------------------------------------
    // Processes
    // --------------------------------------------------------------------------------------------

    fn editor_exe() -> PathBuf {
        let exe = std::env::current_exe().expect("test executable");
        let path = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("examples")
            .join("editor.exe");
        assert!(
            path.exists(),
            "{} is missing: run plain `cargo test` (which builds examples)",
            path.display()
        );
        path
    }

    /// A lock name no other test or run uses.
    fn unique(label: &str) -> String {
        format!(
            "onlyone-handoff-test-{label}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    /// An editor command for the application `name` in `dir`.
    fn editor(name: &str, dir: &Path, timeout_ms: u64) -> Command {
        let mut c = Command::new(editor_exe());
        c.env("EDITOR_NAME", name)
            .env("EDITOR_DIR", dir)
            .env("EDITOR_TIMEOUT_MS", timeout_ms.to_string())
            .env_remove("EDITOR_DIE_ON")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// A process, killed and waited for when dropped; its stdout lines come on a channel.
    struct Proc {
        child: Child,
        lines: mpsc::Receiver<String>,
    }

    impl Proc {
        fn spawn(mut c: Command) -> Proc {
            let mut child = c.spawn().expect("spawn the editor");
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            Proc { child, lines }
        }

        /// The next stdout line, waiting at most `timeout`.
        fn line(&self, timeout: Duration) -> String {
            self.lines
                .recv_timeout(timeout)
                .unwrap_or_else(|e| panic!("no line from the editor within {timeout:?}: {e}"))
        }

        /// Waits at most `timeout` for the process to exit (WaitForSingleObject); its exit code.
        fn wait(&mut self, timeout: Duration) -> Option<i32> {
            use windows_sys::Win32::System::Threading::WaitForSingleObject;
            let ms = timeout.as_millis().min(u128::from(u32::MAX - 1)) as u32;
            // SAFETY: the child's process handle is live while `self.child` is.
            let r = unsafe { WaitForSingleObject(self.child.as_raw_handle(), ms) };
            if r != 0 {
                return None;
            }
            self.child.wait().ok().and_then(|s| s.code())
        }

        /// The rest of stdout after the process exited.
        fn rest(&self) -> Vec<String> {
            let mut v = Vec::new();
            while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
                v.push(l);
            }
            v
        }

        fn stderr(&mut self) -> String {
            let mut s = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut s);
            }
            s
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A primary editor, listening (its `primary PID` line read).
    fn primary(name: &str, dir: &Path, extra: &[(&str, &str)]) -> Proc {
        let mut c = editor(name, dir, 30_000);
        for (k, v) in extra {
            c.env(k, v);
        }
        let p = Proc::spawn(c);
        let first = p.line(Duration::from_secs(60));
        assert!(first.starts_with("primary "), "{first}");
        let own = p.line(Duration::from_secs(60));
        assert_eq!(own, "own-args 0");
        p
    }

    fn hex(b: &[u8]) -> String {
        if b.is_empty() {
            return "-".into();
        }
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // --------------------------------------------------------------------------------------------
    // Tests
    // --------------------------------------------------------------------------------------------

    /// 50 secondaries at once: each gets its own answer, each activation arrives exactly once.
    fn fifty_secondaries_delivered_once_with_answers(dir: &Path) -> TestOutcome {
        let name = unique("fifty");
        let p = primary(&name, dir, &[]);
        let mut secondaries: Vec<Proc> = (0..50)
            .map(|i| {
                let mut c = editor(&name, dir, 60_000);
                c.arg(format!("s{i}"));
                Proc::spawn(c)
            })
            .collect();
        for (i, s) in secondaries.iter_mut().enumerate() {
            let code = s.wait(Duration::from_secs(120));
            let out = s.rest().join("\n");
            assert_eq!(
                code,
                Some(1),
                "secondary {i}: stdout {out:?}, stderr {:?}",
                s.stderr()
            );
            assert_eq!(out, format!("s{i}"), "secondary {i}'s answer");
        }
        let mut seen = std::collections::HashMap::new();
        for _ in 0..50 {
            let line = p.line(Duration::from_secs(30));
            let arg = line.split(' ').nth(4).expect("args column").to_owned();
            *seen.entry(arg).or_insert(0) += 1;
        }
        for i in 0..50 {
            assert_eq!(
                seen.get(&hex(format!("s{i}").as_bytes())),
                Some(&1),
                "s{i} delivered once: {seen:?}"
            );
        }
        assert!(
            p.lines.recv_timeout(Duration::from_millis(200)).is_err(),
            "no 51st activation"
        );
        Ok(())
    }

    /// Empty strings, newlines, quotes, non-ASCII and about 1 MiB in all, from this process (a
    /// command line holds at most 32767 characters): exact and in order, in the primary's
    /// printout and in its answer.
    fn odd_arguments_and_a_mebibyte_arrive_exact_and_in_order(dir: &Path) -> TestOutcome {
        let name = unique("odd");
        let p = primary(&name, dir, &[]);
        let mut args: Vec<OsString> = [
            "",
            "a\nb",
            "\r\n",
            "tab\there \"quoted\" \\ back",
            "日本語 ✓ 🎉",
            " ",
            "",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        for i in 0..4 {
            args.push(format!("{i}{}", "é".repeat(128 * 1024)).into());
        }
        let total: usize = args.iter().map(|a| a.len()).sum();
        assert!(total > 1 << 20, "{total} bytes");
        let message = Message {
            args: args.clone(),
            cwd: dir.to_owned(),
            env: vec![("XDG_ACTIVATION_TOKEN".into(), "tok\n✓".into())],
        };
        let outcome = Handoff::new(name.clone())
            .lock_dir(dir)
            .timeout(Duration::from_secs(60))
            .start(&message)
            .expect("hand over");
        let Start::Secondary(Outcome::Delivered(answer)) = outcome else {
            panic!("not delivered: {outcome:?}");
        };
        let mut joined = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                joined.push(0);
            }
            joined.extend_from_slice(a.to_str().unwrap().as_bytes());
        }
        assert_eq!(answer.code, args.len() as i32);
        assert!(answer.data == joined, "the answer is the arguments, exact");
        let line = p.line(Duration::from_secs(30));
        let cols: Vec<&str> = line.split(' ').collect();
        let printed: Vec<String> = args
            .iter()
            .map(|a| hex(a.to_str().unwrap().as_bytes()))
            .collect();
        assert_eq!(cols[3], hex(dir.to_str().unwrap().as_bytes()), "cwd");
        assert!(cols[4] == printed.join(","), "the printed arguments");
        assert_eq!(cols[5], hex("tok\n✓".as_bytes()), "activation token");
        Ok(())
    }

    /// Another handle created the pipe name first: the primary's listen fails, naming the pipe.
    fn squatted_pipe_name_is_an_error_naming_it(dir: &Path) -> TestOutcome {
        use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
        use windows_sys::Win32::Storage::FileSystem::PIPE_ACCESS_DUPLEX;
        use windows_sys::Win32::System::Pipes::{CreateNamedPipeW, PIPE_TYPE_BYTE};
        let name = unique("squat");
        let handoff = Handoff::new(name.clone()).lock_dir(dir);
        let pipe = handoff.socket_path().expect("pipe name");
        assert!(
            pipe.to_str()
                .unwrap()
                .starts_with(r"\\.\pipe\onlyone-handoff-S-"),
            "{}",
            pipe.display()
        );
        let wide: Vec<u16> = pipe
            .to_str()
            .unwrap()
            .encode_utf16()
            .chain(Some(0))
            .collect();
        // SAFETY: `wide` is NUL-terminated UTF-16; default security; the handle is closed below.
        let squatter = unsafe {
            CreateNamedPipeW(
                wide.as_ptr(),
                PIPE_ACCESS_DUPLEX,
                PIPE_TYPE_BYTE,
                10,
                4096,
                4096,
                0,
                std::ptr::null(),
            )
        };
        assert!(squatter != INVALID_HANDLE_VALUE, "the squatter's pipe");
        let result = handoff.start(&Message::with_args(["x"]));
        // SAFETY: the squatter's handle, closed once.
        unsafe { CloseHandle(squatter) };
        let e = match result {
            Err(e) => e.to_string(),
            Ok(s) => panic!("listened on a squatted pipe: {s:?}"),
        };
        assert!(e.contains(pipe.to_str().unwrap()), "names the pipe: {e}");
        assert!(e.contains("exists already"), "{e}");
        // The squatter gone, the name is ours again.
        let Start::Primary(_primary) = handoff.start(&Message::with_args(["x"])).unwrap() else {
            panic!("not primary after the squatter left");
        };
        Ok(())
    }

    /// The lock is held but nobody listens yet: a secondary keeps trying, and is delivered once
    /// the primary listens.
    fn secondary_retries_until_a_late_listener(dir: &Path) -> TestOutcome {
        let name = unique("late");
        let Start::Primary(mut primary) = Handoff::new(name.clone())
            .lock_dir(dir)
            .listen_later(true)
            .start(&Message::with_args(["own"]))
            .unwrap()
        else {
            panic!("not primary");
        };
        assert!(primary.try_recv().is_none(), "not listening yet");
        let mut c = editor(&name, dir, 60_000);
        c.arg("late");
        let mut s = Proc::spawn(c);
        // Still trying a second later (bounded wait on the process, not a sleep).
        assert_eq!(
            s.wait(Duration::from_secs(1)),
            None,
            "the secondary gave up"
        );
        primary.listen().unwrap();
        let a = primary
            .recv_timeout(Duration::from_secs(60))
            .expect("the activation");
        assert_eq!(a.args(), &[OsString::from("late")]);
        a.answer(5, b"later").unwrap();
        assert_eq!(s.wait(Duration::from_secs(60)), Some(5), "{}", s.stderr());
        assert_eq!(s.rest().join("\n"), "later");
        Ok(())
    }

    /// The primary reads the request, then exits without answering: the secondary, which sent
    /// it in full, reports unknown (never "not delivered", never a hang).
    fn primary_dying_after_reading_gives_unknown(dir: &Path) -> TestOutcome {
        let name = unique("die");
        let mut p = primary(&name, dir, &[("EDITOR_DIE_ON", "die")]);
        let mut c = editor(&name, dir, 20_000);
        c.arg("die");
        let started = Instant::now();
        let mut s = Proc::spawn(c);
        let code = s.wait(Duration::from_secs(60));
        assert_eq!(code, Some(75), "unknown: {:?} {}", s.rest(), s.stderr());
        assert!(started.elapsed() < Duration::from_secs(40));
        assert_eq!(p.wait(Duration::from_secs(30)), Some(9), "the primary died");
        Ok(())
    }

    /// The primary is killed (TerminateProcess) while it holds a request it read: the
    /// secondary reports unknown as soon as the pipe breaks, well before its timeout.
    fn primary_killed_while_handling_gives_unknown_at_once(dir: &Path) -> TestOutcome {
        let name = unique("killed");
        let mut p = primary(&name, dir, &[("EDITOR_HANG_ON", "hang")]);
        let mut c = editor(&name, dir, 60_000);
        c.arg("hang");
        let mut s = Proc::spawn(c);
        let line = p.line(Duration::from_secs(60));
        assert!(line.starts_with("activation "), "{line}");
        let killed = Instant::now();
        p.child.kill().unwrap();
        assert!(p.wait(Duration::from_secs(30)).is_some(), "killed");
        let code = s.wait(Duration::from_secs(90));
        assert_eq!(code, Some(75), "unknown: {:?} {}", s.rest(), s.stderr());
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "reported {:?} after the kill, its timeout is 60 s",
            killed.elapsed()
        );
        Ok(())
    }

    /// A killed primary's lock and pipe die with it: the next launch is the primary, listening
    /// on the same pipe name, and a secondary reaches it.
    fn killed_primary_next_launch_is_primary(dir: &Path) -> TestOutcome {
        let name = unique("next");
        let mut p = primary(&name, dir, &[]);
        p.child.kill().unwrap();
        assert!(p.wait(Duration::from_secs(30)).is_some(), "killed");
        let Start::Primary(primary) = Handoff::new(name.clone())
            .lock_dir(dir)
            .start(&Message::with_args(["next"]))
            .unwrap()
        else {
            panic!("not primary after the primary was killed");
        };
        let mut c = editor(&name, dir, 60_000);
        c.args(["a", "b"]);
        let mut s = Proc::spawn(c);
        let a = primary
            .recv_timeout(Duration::from_secs(60))
            .expect("the activation");
        a.answer(2, b"ok").unwrap();
        assert_eq!(s.wait(Duration::from_secs(60)), Some(2), "{}", s.stderr());
        Ok(())
    }

    /// A caller that took the lock itself (as `onlyone run --handoff` does) listens on a
    /// thread of its own; dropping the listener stops it and frees the pipe name.
    fn listen_while_holding_serves_then_frees_the_name(dir: &Path) -> TestOutcome {
        use onlyone::{Acquire, Builder};
        let name = unique("holding");
        let lock = Builder::new(name.clone()).lock_dir(dir).build().unwrap();
        let Acquire::Acquired(guard) = lock.try_acquire().unwrap() else {
            panic!("lock held by someone else");
        };
        let handoff = Handoff::new(name.clone()).lock_dir(dir);
        let listener = handoff.listen_while_holding(&guard).unwrap();
        let mut c = editor(&name, dir, 60_000);
        c.arg("held");
        let mut s = Proc::spawn(c);
        let a = listener
            .recv_timeout(Duration::from_secs(60))
            .expect("the activation");
        assert_eq!(a.args(), &[OsString::from("held")]);
        a.answer(1, b"held").unwrap();
        assert_eq!(s.wait(Duration::from_secs(60)), Some(1), "{}", s.stderr());
        assert_eq!(s.rest().join("\n"), "held");
        drop(listener);
        let again = handoff
            .listen_while_holding(&guard)
            .expect("the pipe name is free again after the drop");
        drop(again);
        Ok(())
    }

    /// `handoff::send` to the pipe name (`EDITOR_SEND_TO`) delivers without looking at the lock;
    /// to a pipe nobody serves it says not delivered (no listener) at its timeout.
    fn send_to_the_pipe_without_the_lock(dir: &Path) -> TestOutcome {
        let name = unique("send");
        let pipe = Handoff::new(name.clone())
            .lock_dir(dir)
            .socket_path()
            .unwrap();
        let p = primary(&name, dir, &[]);
        let mut c = editor("unused", dir, 60_000);
        c.env("EDITOR_SEND_TO", &pipe).args(["x", "y", "z"]);
        let mut s = Proc::spawn(c);
        assert_eq!(s.wait(Duration::from_secs(60)), Some(3), "{}", s.stderr());
        assert!(p.line(Duration::from_secs(30)).starts_with("activation "));
        drop(p);
        let started = Instant::now();
        let outcome = onlyone::handoff::send(
            &pipe,
            &Message::with_args(["late"]),
            Duration::from_millis(500),
        )
        .unwrap();
        assert!(
            matches!(
                outcome,
                Outcome::NotDelivered {
                    reason: onlyone::handoff::Reason::NoListener,
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        Ok(())
    }

    fn other_user_is_refused(_dir: &Path) -> TestOutcome {
        Err(Skip(
            "Wine runs every process as one user (and does not enforce pipe DACLs): the \
             refusal of another user's secondary or primary cannot be shown here"
                .into(),
        ))
    }
}
