//! Second-instance handoff with real processes: `examples/editor.rs` is the application, run as a
//! primary and as many secondaries, against real sockets, signals, uids and namespaces.
//!
//! Runs with its own harness (`harness = false`): every test prints `NAME: ok`, `NAME: FAILED:
//! why` or `NAME: skipped: why`, and the run ends with `N passed, N failed, N skipped`. Tests
//! that need root (another uid, namespaces) skip without it; with
//! `ONLYONE_REQUIRE_ROOT_TESTS=1` (CI, as root) a skip is a failure.
//! `cargo test --test handoff -- SUBSTRING` runs the tests whose name contains SUBSTRING.
//!
//! Every process a test starts is SIGKILLed and reaped when its guard drops, also on failure;
//! temporary directories are removed.

#[cfg(unix)]
mod common;
#[cfg(unix)]
mod reliability_common;

#[cfg(unix)]
use std::collections::{HashMap, HashSet};
#[cfg(unix)]
use std::ffi::OsString;
#[cfg(unix)]
use std::io::{BufRead, BufReader, Read};
#[cfg(unix)]
use std::os::unix::ffi::{OsStrExt, OsStringExt};
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
#[cfg(unix)]
use std::panic::{AssertUnwindSafe, catch_unwind};
#[cfg(unix)]
use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::process::{Child, Command, ExitCode, Stdio};
#[cfg(unix)]
use std::sync::mpsc;
#[cfg(unix)]
use std::time::{Duration, Instant};

#[cfg(unix)]
use nix::sys::signal::{Signal, kill};
#[cfg(unix)]
use nix::unistd::Pid;
#[cfg(unix)]
use onlyone::BackendKind;
#[cfg(unix)]
use reliability_common::scaled;

#[cfg(unix)]
struct Skip(String);
#[cfg(unix)]
type Outcome = Result<(), Skip>;
#[cfg(unix)]
type TestFn = fn() -> Outcome;

#[cfg(unix)]
fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: Vec<(&str, TestFn)> = vec![
        ("thousand_secondaries_one_primary", thousand_secondaries),
        ("fifty_at_once_on_a_free_lock", fifty_at_once),
        ("stopped_primary", || stopped_primary(false)),
        ("stopped_primary_abstract", || stopped_primary(true)),
        ("sigkill_mid_message_fail_policy", || {
            sigkill_mid_message(false)
        }),
        ("sigkill_mid_message_takeover_policy", || {
            sigkill_mid_message(true)
        }),
        ("sigkill_mid_message_abstract", || {
            sigkill_mid_message_on(false, true)?;
            sigkill_mid_message_on(true, true)
        }),
        ("byte_exact_arguments_cwd_token", byte_exact),
        ("listener_later_than_lock", listener_later),
        ("malformed_and_oversized_frames_refused", malformed_frames),
        ("other_uid_refused", other_uid_refused),
        (
            "flatpak_simulation_two_pid_and_net_namespaces",
            flatpak_simulation,
        ),
        ("abstract_lock_listener_carries_messages", abstract_delivery),
        ("abstract_listen_later", abstract_listen_later),
        ("abstract_other_uid_refused", abstract_other_uid_refused),
        (
            "abstract_read_then_died_unknown_never_twice",
            abstract_read_then_died,
        ),
    ];
    let require = std::env::var("ONLYONE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    if std::env::args().any(|a| a == "--list") {
        for (n, _) in &tests {
            println!("{n}: test");
        }
        return ExitCode::SUCCESS;
    }
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, run) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let t0 = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(run));
        let secs = t0.elapsed().as_secs_f64();
        match r {
            Ok(Ok(())) => {
                passed += 1;
                println!("{name}: ok ({secs:.1} s)");
            }
            Ok(Err(Skip(why))) if require => {
                failed += 1;
                println!("{name}: FAILED: skipped, and ONLYONE_REQUIRE_ROOT_TESTS=1: {why}");
            }
            Ok(Err(Skip(why))) => {
                skipped += 1;
                println!("{name}: skipped: {why}");
            }
            Err(_) => {
                failed += 1;
                println!("{name}: FAILED ({secs:.1} s)");
            }
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

#[cfg(unix)]
fn editor_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples")
        .join("editor");
    assert!(
        path.exists(),
        "{} is missing: run plain `cargo test` (which builds examples) or `cargo build --examples`",
        path.display()
    );
    path
}

#[cfg(unix)]
fn raw_exe() -> PathBuf {
    editor_exe().with_file_name("handoff_raw")
}

/// A file backend this build has (the handoff socket sits beside its lock file), else the
/// default one (the socket then sits in the test's directory all the same).
#[cfg(unix)]
fn file_backend() -> BackendKind {
    [BackendKind::Flock, BackendKind::PidFile]
        .into_iter()
        .find(|b| b.is_available())
        .unwrap_or(onlyone::DEFAULT_BACKEND)
}

/// Children killed and reaped on drop.
#[derive(Default)]
#[cfg(unix)]
struct Kids(Vec<Child>);

#[cfg(unix)]
impl Kids {
    fn push(&mut self, c: Child) -> usize {
        self.0.push(c);
        self.0.len() - 1
    }
}

#[cfg(unix)]
impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
            let _ = c.wait();
        }
    }
}

#[cfg(unix)]
struct Fixture {
    dir: tempfile::TempDir,
    name: String,
    backend: BackendKind,
}

#[cfg(unix)]
impl Fixture {
    fn new(tag: &str) -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
            name: format!("handoff-test-{tag}-{}", std::process::id()),
            backend: file_backend(),
        }
    }

    fn cmd(&self, args: &[OsString]) -> Command {
        let mut c = Command::new(editor_exe());
        c.args(args)
            .env("EDITOR_NAME", &self.name)
            .env("EDITOR_DIR", self.dir.path())
            .env("EDITOR_BACKEND", self.backend.as_str())
            .env_remove("XDG_ACTIVATION_TOKEN")
            .env_remove("DESKTOP_STARTUP_ID")
            .env_remove("FLATPAK_ID")
            .env_remove("SNAP_INSTANCE_NAME")
            .stdin(Stdio::null());
        c
    }

    /// Where secondaries reach the primary: the socket file beside the lock file, or `@` and
    /// the lock's abstract name when the build has only the abstract socket backend.
    fn socket(&self) -> PathBuf {
        onlyone::handoff::Handoff::new(&self.name)
            .backend(self.backend)
            .lock_dir(self.dir.path())
            .socket_path()
            .expect("handoff endpoint")
    }
}

/// A running primary whose stdout lines arrive on a channel.
#[cfg(unix)]
struct Primary {
    lines: mpsc::Receiver<String>,
    pid: u32,
}

#[cfg(unix)]
fn start_primary(kids: &mut Kids, mut cmd: Command) -> Primary {
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("spawn primary");
    let out = child.stdout.take().expect("stdout");
    let pid = child.id();
    kids.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let p = Primary { lines: rx, pid };
    let first = p.line();
    assert!(
        first.starts_with("primary "),
        "expected a primary, got {first:?}"
    );
    assert!(p.line().starts_with("own-args "));
    p
}

#[cfg(unix)]
impl Primary {
    /// The next line; a watchdog against hangs, not a synchronisation.
    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(120))
            .expect("a line from the primary within 120 s")
    }

    fn try_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.pid as i32), s).expect("signal primary");
    }
}

/// A parsed `activation` line: pid, args.
#[cfg(unix)]
struct Act {
    pid: Option<u32>,
    cwd: Vec<u8>,
    args: Vec<Vec<u8>>,
    token: Vec<u8>,
}

#[cfg(unix)]
fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[cfg(unix)]
fn parse_activation(line: &str) -> Act {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f[0], "activation", "{line:.200}");
    Act {
        pid: f[1].parse().ok(),
        cwd: unhex(f[3]),
        args: if f[4] == "-" {
            Vec::new()
        } else {
            f[4].split(',').map(unhex).collect()
        },
        token: unhex(f[5]),
    }
}

/// Runs a secondary to its end: (exit code, stdout).
#[cfg(unix)]
fn run_secondary(mut cmd: Command) -> (i32, Vec<u8>, String) {
    let out = cmd.output().expect("run secondary");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(unix)]
fn joined(args: &[OsString]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            v.push(0);
        }
        v.extend_from_slice(a.as_bytes());
    }
    v
}

#[cfg(unix)]
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

/// 1,000 secondaries at once against one healthy primary: each delivered once, in full, each
/// gets its own answer; none hangs (a 120 s watchdog) or errs. Uses the default backend.
#[cfg(unix)]
fn thousand_secondaries() -> Outcome {
    let n = scaled(1000, 200);
    let mut fx = Fixture::new("thousand");
    fx.backend = onlyone::DEFAULT_BACKEND;
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, fx.cmd(&[]));
    let outdir = fx.dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let mut secondaries = Vec::new();
    for i in 0..n {
        let args: Vec<OsString> = vec![format!("tok-{i}").into(), "two words".into(), "".into()];
        let mut c = fx.cmd(&args);
        c.env("EDITOR_TIMEOUT_MS", "120000");
        c.stdout(std::fs::File::create(outdir.join(format!("{i}.out"))).unwrap());
        c.stderr(std::fs::File::create(outdir.join(format!("{i}.err"))).unwrap());
        let idx = kids.push(c.spawn().expect("spawn secondary"));
        secondaries.push((idx, args));
    }
    for (idx, args) in &secondaries {
        let status = kids.0[*idx].wait().expect("wait");
        let i = idx - 1;
        let out = std::fs::read(outdir.join(format!("{i}.out"))).unwrap();
        let err = std::fs::read_to_string(outdir.join(format!("{i}.err"))).unwrap();
        assert_eq!(status.code(), Some(3), "secondary {i}: {status} {err}");
        assert_eq!(out, joined(args), "secondary {i} got another answer");
    }
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for _ in 0..n {
        let a = parse_activation(&primary.line());
        assert_eq!(a.args.len(), 3, "every argument arrives");
        assert_eq!(a.args[1], b"two words");
        assert_eq!(a.args[2], b"");
        *seen.entry(a.args[0].clone()).or_default() += 1;
    }
    assert_eq!(seen.len(), n, "every secondary's activation arrived");
    assert!(seen.values().all(|c| *c == 1), "one delivery each");
    assert!(primary.try_line().is_none(), "no extra activation");
    println!(
        "  {n} secondaries ({} scale)",
        reliability_common::scale_name()
    );
    Ok(())
}

/// 50 launches released at the same moment on a free lock: exactly one primary, 49 delivered.
#[cfg(unix)]
fn fifty_at_once() -> Outcome {
    let fx = Fixture::new("fifty");
    let fifo = fx.dir.path().join("gate");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut kids = Kids::default();
    let outdir = fx.dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    for i in 0..50 {
        let mut c = fx.cmd(&[format!("launch-{i}").into()]);
        c.env("EDITOR_GATE", &fifo)
            .env("EDITOR_TIMEOUT_MS", "60000");
        c.stdout(std::fs::File::create(outdir.join(format!("{i}.out"))).unwrap());
        c.stderr(Stdio::inherit());
        kids.push(c.spawn().unwrap());
    }
    // Opening the FIFO for writing releases every launch blocked in open(2) at once; it stays
    // open until the end so that a launch that reaches the gate late passes too.
    let gate = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    // 49 exit delivered; the primary keeps running. Watch them with a deadline.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut exited = HashMap::new();
    while exited.len() < 49 && Instant::now() < deadline {
        for (i, c) in kids.0.iter_mut().enumerate() {
            if let std::collections::hash_map::Entry::Vacant(e) = exited.entry(i) {
                if let Some(st) = c.try_wait().unwrap() {
                    e.insert(st.code());
                }
            }
        }
        // Polls exit statuses (no event tells which 49 of the 50 will end); the deadline is a
        // watchdog, not a synchronisation.
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(gate);
    assert_eq!(exited.len(), 49, "49 launches end, one stays primary");
    assert!(
        exited.values().all(|c| *c == Some(1)),
        "all delivered: {exited:?}"
    );
    let primary: Vec<usize> = (0..50).filter(|i| !exited.contains_key(i)).collect();
    assert_eq!(primary.len(), 1);
    let out = std::fs::read_to_string(outdir.join(format!("{}.out", primary[0]))).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("primary "), "{out}");
    let acts: HashSet<Vec<u8>> = lines
        .iter()
        .filter(|l| l.starts_with("activation "))
        .map(|l| parse_activation(l).args[0].clone())
        .collect();
    assert_eq!(acts.len(), 49, "49 distinct activations");
    assert!(!acts.contains(format!("launch-{}", primary[0]).as_bytes()));
    Ok(())
}

/// A SIGSTOPped primary: every secondary returns not delivered (69) or unknown (75) within its
/// timeout + 2 s, none becomes primary; after SIGCONT nothing is delivered twice, the not
/// delivered ones not at all, and new secondaries are served. With `on_abstract`, on the abstract
/// backend, whose lock's draining thread (stopped too) carries the messages.
#[cfg(unix)]
fn stopped_primary(on_abstract: bool) -> Outcome {
    let fx = if on_abstract {
        abstract_fixture("stopped-abs")?
    } else {
        Fixture::new("stopped")
    };
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, fx.cmd(&[]));
    primary.signal(Signal::SIGSTOP);
    let k = scaled(40, 10);
    let timeout = Duration::from_millis(1000);
    let (tx, rx) = mpsc::channel();
    for i in 0..k {
        let mut c = fx.cmd(&[format!("stopped-{i}").into()]);
        c.env("EDITOR_TIMEOUT_MS", timeout.as_millis().to_string());
        let tx = tx.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = run_secondary(c);
            let _ = tx.send((i, r, t0.elapsed()));
        });
    }
    drop(tx);
    let mut not_delivered = HashSet::new();
    let mut results = 0;
    while let Ok((i, (code, out, err), took)) = rx.recv_timeout(Duration::from_secs(60)) {
        results += 1;
        assert!(
            took <= timeout + Duration::from_secs(2),
            "secondary {i} took {took:?}, more than its timeout + 2 s"
        );
        let out = String::from_utf8_lossy(&out);
        assert!(!out.contains("primary"), "secondary {i} became primary");
        match code {
            69 => {
                not_delivered.insert(format!("stopped-{i}"));
            }
            75 => assert_eq!(out.trim(), "unknown"),
            other => panic!("secondary {i}: exit {other}, {out} {err}"),
        }
    }
    assert_eq!(results, k, "every secondary returned");
    primary.signal(Signal::SIGCONT);
    for i in 0..3 {
        let (code, out, err) = run_secondary(fx.cmd(&[format!("after-{i}").into()]));
        assert_eq!((code, out), (1, format!("after-{i}").into_bytes()), "{err}");
    }
    // Everything the primary delivered: the three new ones are its last activations.
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut after = 0;
    while after < 3 {
        let a = parse_activation(&primary.line());
        if a.args[0].starts_with(b"after-") {
            after += 1;
        }
        *seen.entry(a.args[0].clone()).or_default() += 1;
    }
    assert!(seen.values().all(|c| *c == 1), "delivered twice: {seen:?}");
    for t in &not_delivered {
        assert!(
            !seen.contains_key(t.as_bytes()),
            "{t} reported not delivered, but was"
        );
    }
    println!(
        "  {k} secondaries: {} not delivered, {} unknown",
        not_delivered.len(),
        k - not_delivered.len()
    );
    Ok(())
}

/// A primary SIGKILLed while a secondary sends it 1.5 MiB: the secondary reports not delivered
/// (fail policy) or becomes the primary (takeover policy), never both.
#[cfg(unix)]
fn sigkill_mid_message(takeover: bool) -> Outcome {
    sigkill_mid_message_on(takeover, false)
}

/// [`sigkill_mid_message`], on the abstract backend with `on_abstract` (the request waits in the
/// lock's own listener's queue, unaccepted, when the primary dies).
#[cfg(unix)]
fn sigkill_mid_message_on(takeover: bool, on_abstract: bool) -> Outcome {
    let tag = match (takeover, on_abstract) {
        (true, false) => "kill-take",
        (false, false) => "kill-fail",
        (true, true) => "kill-take-abs",
        (false, true) => "kill-fail-abs",
    };
    let fx = if on_abstract {
        abstract_fixture(tag)?
    } else {
        Fixture::new(tag)
    };
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, fx.cmd(&[]));
    primary.signal(Signal::SIGSTOP);
    // 1.5 MiB in 12 arguments of 128 KiB - 1 (exec's limit per argument), far more than the
    // stopped primary's socket buffer takes.
    let big: Vec<OsString> = (0..12u8)
        .map(|i| OsString::from_vec(vec![b'a' + (i % 26); 128 * 1024 - 1]))
        .collect();
    let mut c = fx.cmd(&big);
    c.env("EDITOR_TIMEOUT_MS", "60000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if takeover {
        c.env("EDITOR_IF_GONE", "takeover");
    }
    let mut sec = c.spawn().unwrap();
    let sec_pid = sec.id();
    let mut out = sec.stdout.take().unwrap();
    let mut err = sec.stderr.take().unwrap();
    kids.push(sec);
    // Wait until the secondary has a connected socket (its request is on its way: the stopped
    // primary's buffer takes a few hundred KiB of the 4 MiB), then kill the primary.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fds = std::fs::read_dir(format!("/proc/{sec_pid}/fd"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .any(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .unwrap_or(false);
        if fds {
            break;
        }
        assert!(Instant::now() < deadline, "the secondary never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
    primary.signal(Signal::SIGKILL);
    let mut first = String::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        first.push(byte[0] as char);
    }
    if takeover {
        assert!(first.starts_with("primary "), "takeover: {first:?}");
        // It must not have reported anything else: the rest of its first lines are its own.
        let mut second = String::new();
        while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            second.push(byte[0] as char);
        }
        assert_eq!(second, "own-args 12");
        // The new primary serves new secondaries.
        let (code, answer, e) = run_secondary(fx.cmd(&["after".into()]));
        assert_eq!((code, answer), (1, b"after".to_vec()), "{e}");
    } else {
        let status = kids.0[1].wait().unwrap();
        let mut e = String::new();
        let _ = err.read_to_string(&mut e);
        assert_eq!(status.code(), Some(69), "fail policy: {first} {e}");
        assert!(first.starts_with("not-delivered "), "{first}");
        assert!(!first.contains("primary"));
        println!("  secondary: {first}");
    }
    Ok(())
}

/// Arguments with non-UTF-8 bytes, newlines, empty strings and 1 MiB in all, a cwd with such
/// bytes and the activation token arrive byte-exact and in order.
#[cfg(unix)]
fn byte_exact() -> Outcome {
    let fx = Fixture::new("bytes");
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, fx.cmd(&[]));
    let mut args: Vec<OsString> = vec![
        OsString::new(),
        OsString::from_vec(b"\n".to_vec()),
        OsString::from_vec(b"\xff\xfe not utf-8 \x80".to_vec()),
        OsString::from_vec(b"line one\nline two\r\n".to_vec()),
        OsString::new(),
        OsString::from("--looks-like-an-option"),
    ];
    let mut total: usize = args.iter().map(|a| a.len()).sum();
    let mut i = 0u32;
    while total < 1 << 20 {
        let chunk: Vec<u8> = (0..120 * 1024)
            .map(|j| (((j as u32).wrapping_mul(31).wrapping_add(i)) % 255 + 1) as u8)
            .collect();
        total += chunk.len();
        args.push(OsString::from_vec(chunk));
        i += 1;
    }
    let cwd = fx
        .dir
        .path()
        .join(OsString::from_vec(b"dir \xff\nname".to_vec()));
    std::fs::create_dir(&cwd).unwrap();
    let mut c = fx.cmd(&args);
    c.current_dir(&cwd)
        .env("XDG_ACTIVATION_TOKEN", "token-\u{e9}-42");
    let (code, answer, err) = run_secondary(c);
    assert_eq!(code, args.len() as i32, "{err}");
    assert!(
        answer == joined(&args),
        "the answer's bytes come back whole"
    );
    let a = parse_activation(&primary.line());
    assert_eq!(a.args.len(), args.len());
    for (got, want) in a.args.iter().zip(&args) {
        assert!(got == want.as_bytes(), "an argument changed");
    }
    assert_eq!(a.cwd, cwd.as_os_str().as_bytes());
    assert_eq!(a.token, "token-\u{e9}-42".as_bytes());
    assert!(a.pid.is_some());
    println!("  {} arguments, {total} bytes", args.len());
    Ok(())
}

/// Ownership before readiness: a primary that takes the lock but listens only later. Secondaries
/// meanwhile wait (bounded backoff) and are delivered once it listens; with a deadline shorter
/// than that, not delivered.
#[cfg(unix)]
fn listener_later() -> Outcome {
    let fx = Fixture::new("later");
    let lock = onlyone::Builder::new(&fx.name)
        .backend(fx.backend)
        .lock_dir(fx.dir.path())
        .build()
        .unwrap();
    // The test itself holds the lock and nobody listens: a secondary must give up, not hang, and
    // must not become a primary.
    let guard = lock.try_acquire().unwrap().guard().expect("free lock");
    let mut c = fx.cmd(&["early".into()]);
    c.env("EDITOR_TIMEOUT_MS", "300");
    let (code, out, err) = run_secondary(c);
    assert_eq!(code, 69, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        "not-delivered NoListener"
    );
    drop(guard);
    // The library primary built with listen_later: a secondary started before listen() is
    // delivered once the primary listens.
    let handoff = onlyone::handoff::Handoff::new(&fx.name)
        .backend(fx.backend)
        .lock_dir(fx.dir.path())
        .listen_later(true);
    let onlyone::handoff::Start::Primary(mut p) = handoff
        .start(&onlyone::handoff::Message::with_args(["own"]))
        .unwrap()
    else {
        panic!("the lock was free")
    };
    let mut c = fx.cmd(&["waited".into()]);
    c.env("EDITOR_TIMEOUT_MS", "60000").stdout(Stdio::piped());
    let mut kids = Kids::default();
    let mut child = c.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    kids.push(child);
    // Whether the secondary is already retrying (no socket yet) or connects after listen(), it
    // must be delivered once, not fail and not become a primary.
    assert!(!fx.socket().exists());
    p.listen().unwrap();
    let a = p.recv_timeout(Duration::from_secs(60)).expect("activation");
    assert_eq!(a.args(), &[OsString::from("waited")]);
    a.answer(7, b"later").unwrap();
    let mut answer = Vec::new();
    out.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"later");
    assert_eq!(kids.0[0].wait().unwrap().code(), Some(7));
    drop(p);
    assert!(!fx.socket().exists(), "the primary removes its socket");
    Ok(())
}

/// A sender of another uid is refused by the primary (peer credentials), and nothing of it
/// reaches the application; a same-uid sender after it is served.
#[cfg(unix)]
fn other_uid_refused() -> Outcome {
    if !is_root() {
        return Err(Skip("needs root to run a sender as another uid".into()));
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return Err(Skip("setpriv(1) is missing".into()));
    }
    let fx = Fixture::new("uid");
    if fx.backend == BackendKind::AbstractSocket {
        return Err(Skip(
            "no flock or PID file backend in this build, so no socket file \
             (abstract_other_uid_refused covers the lock's own listener)"
                .into(),
        ));
    }
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, fx.cmd(&[]));
    // Let uid 65534 reach the socket (the directory is 0700, the socket 0600: file permissions
    // alone would refuse it; the test opens them to reach the credential check) and run a copy
    // of the example it can execute.
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(fx.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let exe = fx.dir.path().join("editor-copy");
    std::fs::copy(editor_exe(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let setpriv = |exe: &Path| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(exe)
            .current_dir("/");
        c
    };
    // The library's secondary refuses to send to a listener of another uid.
    let out = setpriv(&exe)
        .arg("foreign-token")
        .env("EDITOR_SEND_TO", fx.socket())
        .env("EDITOR_TIMEOUT_MS", "10000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        (out.status.code(), stdout.trim()),
        (Some(69), "not-delivered ForeignListener"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A client that skips that check (written from the wire format alone) is refused by the
    // primary, which reads the sender's uid from the kernel before reading its request.
    let raw = fx.dir.path().join("raw-copy");
    std::fs::copy(raw_exe(), &raw).unwrap();
    std::fs::set_permissions(&raw, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = setpriv(&raw)
        .arg(fx.socket())
        .arg("valid")
        .arg("foreign-token")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("refusal 4 ") && stdout.contains("uid 65534"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, answer, err) = run_secondary(fx.cmd(&["same-uid".into()]));
    assert_eq!((code, answer), (1, b"same-uid".to_vec()), "{err}");
    let a = parse_activation(&primary.line());
    assert_eq!(
        a.args,
        vec![b"same-uid".to_vec()],
        "the foreign one never arrived"
    );
    Ok(())
}

/// Flatpak, simulated: FLATPAK_ID set, the primary and a secondary each in its own PID and
/// network namespace (`unshare -p -n`), sharing `$XDG_RUNTIME_DIR/app/$FLATPAK_ID/`. The
/// secondary is delivered; the primary sees no pid for it (another sandbox).
#[cfg(unix)]
fn flatpak_simulation() -> Outcome {
    if !is_root() {
        return Err(Skip("needs root for unshare -p -n".into()));
    }
    let probe = Command::new("unshare")
        .args(["-p", "-n", "--fork", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Err(Skip("unshare -p -n does not work here".into()));
    }
    let runtime = tempfile::tempdir().unwrap();
    let app = "org.example.HandoffTest";
    std::fs::create_dir_all(runtime.path().join("app").join(app)).unwrap();
    std::fs::set_permissions(
        runtime.path().join("app").join(app),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let sandboxed = |args: &[&str]| {
        let mut c = Command::new("unshare");
        c.args(["-p", "-n", "--fork", "--kill-child"])
            .arg(editor_exe())
            .args(args)
            .env("FLATPAK_ID", app)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("EDITOR_NAME", "editor")
            .env("EDITOR_TIMEOUT_MS", "30000")
            .env_remove("EDITOR_DIR")
            // Whatever backend is asked for, Flatpak uses flock.
            .env("EDITOR_BACKEND", "pidfile")
            .stdin(Stdio::null());
        c
    };
    if !BackendKind::Flock.is_available() {
        return Err(Skip("the flock backend is not in this build".into()));
    }
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, sandboxed(&[]));
    let (code, answer, err) = run_secondary(sandboxed(&["from-another-sandbox"]));
    assert_eq!(
        (code, answer),
        (1, b"from-another-sandbox".to_vec()),
        "{err}"
    );
    let a = parse_activation(&primary.line());
    assert_eq!(a.args, vec![b"from-another-sandbox".to_vec()]);
    assert_eq!(
        a.pid, None,
        "a sender in another PID namespace has no pid here"
    );
    let dir = runtime.path().join("app").join(app);
    assert!(
        dir.join("editor.lock").exists(),
        "the lock is in the app directory"
    );
    assert!(
        dir.join("editor.handoff").exists(),
        "the socket is beside it"
    );
    // With the socket gone (the lock still held), a secondary is not delivered and names the
    // holder as being in another sandbox, not by a pid that means nothing in its namespace.
    std::fs::remove_file(dir.join("editor.handoff")).unwrap();
    let mut c = sandboxed(&["late"]);
    c.env("EDITOR_TIMEOUT_MS", "300");
    let (code, out, err) = run_secondary(c);
    assert_eq!(code, 69, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        "not-delivered NoListener"
    );
    assert!(err.contains("in another sandbox"), "{err}");
    Ok(())
}

/// Malformed and oversized frames from a real client are refused with a reason (the primary's
/// error reaches the sender), nothing reaches the application, and the primary keeps serving.
#[cfg(unix)]
fn malformed_frames() -> Outcome {
    let fx = Fixture::new("malformed");
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, fx.cmd(&[]));
    for (mode, want) in [
        ("bad-magic", "refusal 1 not a handoff frame"),
        ("bad-version", "refusal 3 handoff wire version 99"),
        (
            "oversize",
            "refusal 2 handoff frame of 16777217 bytes exceeds",
        ),
        ("truncated", "closed"),
        ("valid", "answer 1 3"),
    ] {
        let out = Command::new(raw_exe())
            .arg(fx.socket())
            .arg(mode)
            .arg("raw")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with(want), "{mode}: {stdout}");
    }
    // Only the valid frame reached the application.
    let a = parse_activation(&primary.line());
    assert_eq!(a.args, vec![b"raw".to_vec()]);
    assert!(primary.try_line().is_none());
    // The library's own sender refuses to send an oversized request (an error, before sending).
    let handoff = onlyone::handoff::Handoff::new(&fx.name)
        .backend(fx.backend)
        .lock_dir(fx.dir.path())
        .max_message(1000);
    let err = handoff
        .start(&onlyone::handoff::Message::with_args(["x".repeat(2000)]))
        .unwrap_err();
    assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");
    Ok(())
}

/// A fixture on the abstract socket backend, or a skip where this build has none.
#[cfg(unix)]
fn abstract_fixture(tag: &str) -> Result<Fixture, Skip> {
    if !BackendKind::AbstractSocket.is_available() {
        return Err(Skip(
            "the abstract socket backend is not in this build".into(),
        ));
    }
    let mut fx = Fixture::new(tag);
    fx.backend = BackendKind::AbstractSocket;
    Ok(fx)
}

#[cfg(unix)]
impl Fixture {
    fn handoff(&self) -> onlyone::handoff::Handoff {
        onlyone::handoff::Handoff::new(&self.name)
            .backend(self.backend)
            .lock_dir(self.dir.path())
    }

    /// `@` and the abstract lock's name: where secondaries connect on the abstract backend.
    fn abstract_address(&self) -> PathBuf {
        let at = self.handoff().socket_path().unwrap();
        assert!(
            at.as_os_str().as_bytes().starts_with(b"@"),
            "{}",
            at.display()
        );
        at
    }

    /// The `.handoff` socket files in the fixture's directory.
    fn socket_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "handoff"))
            .collect()
    }
}

/// On the abstract backend the lock's own listener carries the messages: a secondary (the
/// library's, `send` to `@name`, and a client written from the wire format) is delivered over
/// it, and no `.handoff` socket file is made.
#[cfg(unix)]
fn abstract_delivery() -> Outcome {
    let fx = abstract_fixture("abs")?;
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, fx.cmd(&[]));
    let (code, answer, err) = run_secondary(fx.cmd(&["one".into(), "two".into()]));
    assert_eq!((code, answer), (2, b"one\0two".to_vec()), "{err}");
    assert_eq!(
        parse_activation(&primary.line()).args,
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    // `send` to `@name`, as a job of `onlyone run --handoff` would from ONLYONE_HANDOFF_SOCKET.
    let at = fx.abstract_address();
    let mut c = fx.cmd(&["sent".into()]);
    c.env("EDITOR_SEND_TO", &at);
    let (code, answer, err) = run_secondary(c);
    assert_eq!((code, answer), (1, b"sent".to_vec()), "{err}");
    assert_eq!(
        parse_activation(&primary.line()).args,
        vec![b"sent".to_vec()]
    );
    let out = Command::new(raw_exe())
        .arg(&at)
        .arg("valid")
        .arg("raw")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("answer 1 3"), "{stdout}");
    assert_eq!(
        parse_activation(&primary.line()).args,
        vec![b"raw".to_vec()]
    );
    let out = Command::new(raw_exe())
        .arg(&at)
        .arg("bad-magic")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("refusal 1 not a handoff frame"),
        "{stdout}"
    );
    assert!(
        primary.try_line().is_none(),
        "only the valid frames arrived"
    );
    assert_eq!(fx.socket_files(), Vec::<PathBuf>::new(), "no socket file");
    Ok(())
}

/// Ownership before readiness on the abstract backend: a primary built with `listen_later` holds
/// the lock, and its listener (the lock's) already accepts, but closes every request unread
/// until `listen`. A secondary meanwhile is not delivered (NoListener, not Unknown: the reset
/// proves nothing was read); one still trying when `listen` comes is delivered, once.
#[cfg(unix)]
fn abstract_listen_later() -> Outcome {
    let fx = abstract_fixture("abs-later")?;
    let onlyone::handoff::Start::Primary(mut p) = fx
        .handoff()
        .listen_later(true)
        .start(&onlyone::handoff::Message::with_args(["own"]))
        .unwrap()
    else {
        panic!("the lock was free")
    };
    assert_eq!(p.socket_path(), fx.abstract_address());
    let mut c = fx.cmd(&["early".into()]);
    c.env("EDITOR_TIMEOUT_MS", "300");
    let (code, out, err) = run_secondary(c);
    assert_eq!(code, 69, "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        "not-delivered NoListener",
        "{err}"
    );
    assert!(p.try_recv().is_none(), "nothing listens yet");
    let mut c = fx.cmd(&["waited".into()]);
    c.env("EDITOR_TIMEOUT_MS", "60000").stdout(Stdio::piped());
    let mut kids = Kids::default();
    let mut child = c.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    kids.push(child);
    // Whether the secondary is already retrying (its requests closed unread) or connects after
    // listen(), it must be delivered once, not fail and not become a primary.
    p.listen().unwrap();
    let a = p.recv_timeout(Duration::from_secs(60)).expect("activation");
    assert_eq!(a.args(), &[OsString::from("waited")]);
    a.answer(7, b"later").unwrap();
    let mut answer = Vec::new();
    out.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"later");
    assert_eq!(kids.0[0].wait().unwrap().code(), Some(7));
    assert!(
        p.try_recv().is_none(),
        "the early one never arrives, the waited one once"
    );
    assert_eq!(fx.socket_files(), Vec::<PathBuf>::new(), "no socket file");
    Ok(())
}

/// On the abstract backend, where anyone may connect to the name: the library's secondary of
/// another uid sends nothing to a listener of ours, and a client that skips that check is
/// refused by the primary from the kernel's credentials; nothing of it reaches the application.
#[cfg(unix)]
fn abstract_other_uid_refused() -> Outcome {
    if !is_root() {
        return Err(Skip("needs root to run a sender as another uid".into()));
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return Err(Skip("setpriv(1) is missing".into()));
    }
    let fx = abstract_fixture("abs-uid")?;
    let mut kids = Kids::default();
    let primary = start_primary(&mut kids, fx.cmd(&[]));
    let at = fx.abstract_address();
    // Copies of the examples that uid 65534 can execute.
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |from: PathBuf, to: &str| {
        let exe = fx.dir.path().join(to);
        std::fs::copy(from, &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        exe
    };
    let exe = copy(editor_exe(), "editor-copy");
    let raw = copy(raw_exe(), "raw-copy");
    let setpriv = |exe: &Path| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(exe)
            .current_dir("/");
        c
    };
    let out = setpriv(&exe)
        .arg("foreign-token")
        .env("EDITOR_SEND_TO", &at)
        .env("EDITOR_TIMEOUT_MS", "10000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        (out.status.code(), stdout.trim()),
        (Some(69), "not-delivered ForeignListener"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = setpriv(&raw)
        .arg(&at)
        .arg("valid")
        .arg("foreign-token")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("refusal 4 ") && stdout.contains("uid 65534"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, answer, err) = run_secondary(fx.cmd(&["same-uid".into()]));
    assert_eq!((code, answer), (1, b"same-uid".to_vec()), "{err}");
    let a = parse_activation(&primary.line());
    assert_eq!(
        a.args,
        vec![b"same-uid".to_vec()],
        "the foreign one never arrived"
    );
    Ok(())
}

/// A primary on the abstract backend that read a request to its end and died before answering:
/// the secondary gets Unknown (the end of the stream, not a reset: it must not send again),
/// and the request is never delivered twice, not to the next primary either.
#[cfg(unix)]
fn abstract_read_then_died() -> Outcome {
    let fx = abstract_fixture("abs-died")?;
    let mut kids = Kids::default();
    let mut cmd = fx.cmd(&[]);
    cmd.env("EDITOR_DIE_ON", "fatal");
    let primary = start_primary(&mut kids, cmd);
    let mut c = fx.cmd(&["fatal".into()]);
    c.env("EDITOR_TIMEOUT_MS", "60000");
    let (code, out, err) = run_secondary(c);
    assert_eq!(
        (code, String::from_utf8_lossy(&out).trim()),
        (75, "unknown"),
        "{err}"
    );
    assert_eq!(
        parse_activation(&primary.line()).args,
        vec![b"fatal".to_vec()]
    );
    assert_eq!(
        kids.0[0].wait().unwrap().code(),
        Some(9),
        "the primary died"
    );
    // A new primary gets only what is sent to it afterwards.
    let next = start_primary(&mut kids, fx.cmd(&[]));
    let (code, answer, err) = run_secondary(fx.cmd(&["after".into()]));
    assert_eq!((code, answer), (1, b"after".to_vec()), "{err}");
    assert_eq!(parse_activation(&next.line()).args, vec![b"after".to_vec()]);
    assert!(
        next.try_line().is_none(),
        "the fatal request never arrived again"
    );
    Ok(())
}

/// Unix only: there is nothing to run here.
#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    println!(
        "handoff: skipped: second-instance handoff is Unix only (no named-pipe transport yet)"
    );
    println!("0 passed, 0 failed, 1 skipped");
    std::process::ExitCode::SUCCESS
}
