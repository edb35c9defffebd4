//! Shared by the `reliability_*` tests: the scale knob, the witness file and its analysis, process
//! control (stop, kill at a chosen moment), a watchdog against hangs, and mounts for the
//! filesystem tests.
//!
//! **Scale:** `ONLYONE_TEST_SCALE=full` runs the figures the README reports (CI sets it); unset
//! (or anything else) runs a quick tenth of them, for `cargo test` on a laptop.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The environment variable that selects the scale.
pub const SCALE_VAR: &str = "ONLYONE_TEST_SCALE";

/// Whether the full-scale figures were asked for.
pub fn full_scale() -> bool {
    std::env::var(SCALE_VAR).is_ok_and(|v| v == "full")
}

/// Whether a fifth of the quick scale was asked for (`ONLYONE_TEST_SCALE=reduced`): the extra CI
/// runs (musl, the portable build, whose waiters back off instead of sleeping on an event).
pub fn reduced_scale() -> bool {
    std::env::var(SCALE_VAR).is_ok_and(|v| v == "reduced")
}

/// `full` at full scale, a fifth of `quick` (at least 1) at reduced scale, else `quick`.
pub fn scaled(full: usize, quick: usize) -> usize {
    if full_scale() {
        full
    } else if reduced_scale() {
        (quick / 5).max(1)
    } else {
        quick
    }
}

/// "full", "reduced" or "quick", for the figures printed.
pub fn scale_name() -> &'static str {
    if full_scale() {
        "full"
    } else if reduced_scale() {
        "reduced"
    } else {
        "quick"
    }
}

/// Whether the tests run in CI (`CI=true`), where a test that cannot set itself up must fail
/// rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether we are root (the mount and uid tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips a test that needs root, loudly; in CI a missing privilege is a failure.
#[must_use]
pub fn need_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        !in_ci(),
        "{what} needs root, and CI=true: CI must run these tests as root"
    );
    eprintln!("\n*** SKIPPED: {what} needs root (run as root or in CI to cover it) ***\n");
    false
}

/// A small deterministic generator (xorshift64*), seeded per test so that a failure can be rerun.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A seed from the clock, printed so that a failing run can be repeated with `ONLYONE_SEED`.
    pub fn from_env_or_clock(test: &str) -> Rng {
        let seed = std::env::var("ONLYONE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: seed {seed} (rerun with ONLYONE_SEED={seed})");
        Rng::new(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// An `O_APPEND` log that every racer writes one whole line at a time to, with one `write(2)` per
/// line: the order of lines in the file is the order in which the writes happened.
pub struct Witness {
    pub path: PathBuf,
    file: File,
}

impl Witness {
    pub fn create(dir: &Path) -> Witness {
        let path = dir.join("witness.log");
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .expect("create witness file");
        Witness { path, file }
    }

    /// Appends one line (the newline is added) with a single write.
    pub fn note(&self, line: &str) {
        (&self.file)
            .write_all(format!("{line}\n").as_bytes())
            .expect("write witness");
    }

    pub fn read(&self) -> String {
        std::fs::read_to_string(&self.path).expect("read witness")
    }

    /// The last line process `pid` wrote, if any. Reads the tail of the file first (the log
    /// grows to megabytes in the long runs).
    pub fn last_line_of(&self, pid: u32) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = File::open(&self.path).expect("open witness");
        let len = f.metadata().expect("stat witness").len();
        let find = |text: &str| {
            let pid = pid.to_string();
            text.lines()
                .rev()
                .find(|l| l.split(' ').nth(1) == Some(pid.as_str()))
                .map(str::to_owned)
        };
        for tail in [64 * 1024u64, u64::MAX] {
            let from = len.saturating_sub(tail);
            f.seek(SeekFrom::Start(from)).expect("seek witness");
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).expect("read witness");
            let text = String::from_utf8_lossy(&buf);
            // Skip the first, possibly partial, line of a tail.
            let text = if from > 0 {
                text.split_once('\n').map_or("", |(_, rest)| rest)
            } else {
                &text
            };
            if let Some(line) = find(text) {
                return Some(line);
            }
            if from == 0 {
                break;
            }
        }
        None
    }
}

/// What a witness log says happened.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Critical sections entered (`start` lines).
    pub holds: usize,
    /// Tries that found the lock held.
    pub held_answers: usize,
    /// ... of which named no pid.
    pub unnamed_holders: usize,
    /// `held` answers naming a process that is not one of the racers.
    pub strangers: Vec<String>,
    /// `error` lines.
    pub errors: Vec<String>,
    /// Two critical sections at once with no excuse: the figure that must be 0.
    pub double_holders: Vec<String>,
    /// Two critical sections at once on different inodes after the lock file was deleted or
    /// replaced, where a holder's `verify` reported the loss.
    pub explained_overlaps: usize,
    /// Holders whose `verify` reported their file deleted or replaced.
    pub losses_detected: usize,
    /// `kill PID PHASE` lines, by phase.
    pub kills: BTreeMap<String, usize>,
    /// Deletions or replacements of the lock file by the test.
    pub file_changes: usize,
}

#[derive(Debug, Clone)]
struct Inside {
    line: usize,
    ino: u64,
    start_lost: bool,
}

impl Verdict {
    /// Replays the log. `racers` are all the pids allowed to hold the lock.
    ///
    /// A `start` while another process is inside its critical section is a double holder,
    /// unless the other one was killed (`kill` line: it was stopped, then killed, so it cannot
    /// hold any more), or the two hold different inodes and one of them noticed with `verify`
    /// that its file was deleted or replaced: right after locking (`start ... lost`) or right
    /// after its critical section (`verify PID lost`, written after `end`, so that it covers
    /// everything logged inside the section). Tests that change
    /// no file also require that no loss was reported at all ([`Verdict::assert_clean`]).
    pub fn analyse(text: &str, racers: &HashSet<u32>) -> Verdict {
        let mut v = Verdict::default();
        let mut inside: HashMap<u32, Inside> = HashMap::new();
        // Overlaps explained by a file change, waiting for one of the two to report the loss.
        let mut pairs: Vec<(u32, usize, u32, usize)> = Vec::new();
        let mut lost_sections: HashSet<(u32, usize)> = HashSet::new();
        // Sections ended, waiting for their `verify` line.
        let mut ended: HashMap<u32, usize> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let w: Vec<&str> = line.split(' ').collect();
            let pid = || -> u32 {
                w.get(1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("witness line {n} {line:?}: no pid"))
            };
            match w[0] {
                "acq" | "free" => {}
                "held" => {
                    v.held_answers += 1;
                    match w.get(2).copied() {
                        Some("?") | None => v.unnamed_holders += 1,
                        Some(h) => {
                            if !h.parse().is_ok_and(|h: u32| racers.contains(&h)) {
                                v.strangers.push(format!("line {n}: {line}"));
                            }
                        }
                    }
                }
                "error" => v.errors.push(format!("line {n}: {line}")),
                "start" => {
                    let p = pid();
                    v.holds += 1;
                    let ino: u64 = w.get(2).and_then(|i| i.parse().ok()).unwrap_or(0);
                    let start_lost = w.get(3) == Some(&"lost");
                    if start_lost {
                        lost_sections.insert((p, n));
                    }
                    let me = Inside {
                        line: n,
                        ino,
                        start_lost,
                    };
                    for (&o, other) in &inside {
                        // An inode read after the file changed is not the locked one: a
                        // holder whose first verify failed holds some other (unknown) file.
                        let different_files = me.start_lost
                            || other.start_lost
                            || (me.ino != 0 && other.ino != 0 && me.ino != other.ino);
                        if different_files {
                            v.explained_overlaps += 1;
                            pairs.push((o, other.line, p, n));
                        } else {
                            v.double_holders.push(format!(
                                "line {n}: {p} entered while {o} held the lock (since line {}): {:?}",
                                other.line,
                                excerpt(text, other.line.saturating_sub(4), n)
                            ));
                        }
                    }
                    inside.insert(p, me);
                }
                "end" => {
                    let p = pid();
                    if let Some(me) = inside.remove(&p) {
                        ended.insert(p, me.line);
                    }
                }
                "verify" => {
                    let p = pid();
                    if let Some(section) = ended.remove(&p) {
                        if w.get(2) == Some(&"lost") {
                            lost_sections.insert((p, section));
                        }
                    }
                }
                "kill" => {
                    let p = pid();
                    inside.remove(&p);
                    let phase = w.get(2).copied().unwrap_or("?").to_owned();
                    *v.kills.entry(phase).or_default() += 1;
                }
                "change-begin" => v.file_changes += 1,
                "change-end" => {}
                other => panic!("witness line {n}: unknown record {other:?} in {line:?}"),
            }
        }
        for (a, la, b, lb) in pairs {
            if !lost_sections.contains(&(a, la)) && !lost_sections.contains(&(b, lb)) {
                v.double_holders.push(format!(
                    "lines {la} and {lb}: {a} and {b} held different files at once, and neither \
                     one's verify() noticed: {:?}",
                    excerpt(text, la, lb)
                ));
            }
        }
        v.losses_detected = lost_sections.len();
        v
    }

    /// Panics with the evidence if anything that must be zero is not, for a run in which the
    /// lock file was left alone: then not even an explained overlap or a reported loss may occur.
    pub fn assert_clean(&self, what: &str) {
        self.assert_clean_despite_file_changes(what);
        assert_eq!(
            (self.explained_overlaps, self.losses_detected),
            (0, 0),
            "{what}: nobody touched the lock file, yet holders saw it change"
        );
    }

    /// Panics with the evidence if anything that must be zero is not, for a run in which the
    /// test itself deleted or replaced the lock file.
    pub fn assert_clean_despite_file_changes(&self, what: &str) {
        assert!(
            self.double_holders.is_empty(),
            "{what}: {} double holders, first: {:?}",
            self.double_holders.len(),
            &self.double_holders[..self.double_holders.len().min(5)]
        );
        assert!(
            self.strangers.is_empty(),
            "{what}: holders named that are not racers: {:?}",
            &self.strangers[..self.strangers.len().min(5)]
        );
        assert!(
            self.errors.is_empty(),
            "{what}: errors: {:?}",
            &self.errors[..self.errors.len().min(5)]
        );
    }
}

/// Lines `from..=to` (1-based) of `text`, at most 16 of them.
fn excerpt(text: &str, from: usize, to: usize) -> Vec<String> {
    let from = from.max(to.saturating_sub(15)).max(1);
    text.lines()
        .enumerate()
        .skip(from - 1)
        .take(to + 1 - from)
        .map(|(i, l)| format!("{}: {l}", i + 1))
        .collect()
}

/// Stops `pid` (SIGSTOP) and waits until it is stopped: it runs no more instructions, and
/// whatever lock it holds it still holds.
pub fn stop(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    wait_no_reap(
        pid,
        rustix::process::WaitIdOptions::STOPPED,
        "waitid(WSTOPPED)",
    );
}

/// SIGKILLs `pid` (our child) and waits until it has exited, without reaping it: all its
/// descriptors are closed, its pid is a zombie's.
pub fn kill_and_wait(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("SIGKILL");
    wait_no_reap(
        pid,
        rustix::process::WaitIdOptions::EXITED,
        "waitid(WEXITED)",
    );
}

/// Kills the given processes if it is not disarmed (dropped) within `limit`: a hung test then
/// fails on the closed pipes of its children instead of hanging CI. Not a timing assertion: the
/// limit is minutes, far beyond any healthy run.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    pub fn new(what: &str, limit: Duration, pids: Vec<u32>) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let what = what.to_owned();
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = fired.clone();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                eprintln!("WATCHDOG: {what} still running after {limit:?}: killing {pids:?}");
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        });
        Watchdog {
            done: Some(tx),
            thread: Some(thread),
            fired,
        }
    }

    /// Whether the limit passed and the processes were killed.
    pub fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A tmpfs mounted by the test, unmounted (lazily, so that it never fails) when dropped.
pub struct Mount {
    pub path: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs with `options` (`"ro"`, `"size=16k"`...) at `path`. `None`, with a loud
    /// message, when that is impossible outside CI; a panic in CI.
    pub fn tmpfs(path: &Path, options: &str) -> Option<Mount> {
        if !need_root(&format!("mounting a tmpfs ({options})")) {
            return None;
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "onlyone-test"])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount {
                path: path.to_owned(),
            }),
            other => {
                let why = format!("cannot mount a tmpfs on {}: {other:?}", path.display());
                assert!(!in_ci(), "{why} (CI=true: this test must run)");
                eprintln!("\n*** SKIPPED: {why} ***\n");
                None
            }
        }
    }

    /// `mount -o remount,OPTIONS`.
    pub fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "remount {options} {}",
            self.path.display()
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The `holder` example where any uid can run it (the build directory may not be reachable for
/// uid 65534): hard-linked, or copied, into a directory of its own.
pub fn holder_exe_for_everyone() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = dir.path().join("holder");
    if std::fs::hard_link(crate::common::holder_exe(), &exe).is_err() {
        std::fs::copy(crate::common::holder_exe(), &exe).expect("copy holder");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // A child forked by another test thread while the copy was open for writing holds
        // that descriptor until it execs, and exec of a file open for writing fails with
        // ETXTBSY: run the copy once (it exits at once without arguments) until it starts.
        for _ in 0..1000 {
            match Command::new(&exe).output() {
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => std::thread::yield_now(),
                _ => break,
            }
        }
    }
    (dir, exe)
}

/// The uid and gid the tests drop to: `nobody`.
pub const NOBODY: u32 = 65534;

/// A `sleep` child, killed and reaped on drop.
pub struct Sleeper(std::process::Child);

impl Sleeper {
    pub fn start() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("3600")
                .stdin(std::process::Stdio::null())
                .spawn()
                .expect("spawn sleep"),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn start_ticks(&self) -> u64 {
        onlyone::process::stat(self.pid())
            .expect("stat sleeper")
            .start_ticks
    }

    /// Kills it and waits until it is a zombie (not reaped: its pid stays taken).
    pub fn into_zombie(mut self) -> Sleeper {
        let _ = self.0.kill();
        wait_no_reap(
            self.pid(),
            rustix::process::WaitIdOptions::EXITED,
            "waitid(WEXITED)",
        );
        self
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Number of open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// Prints a figure line that the README copies, prefixed so that it is easy to grep.
pub fn figure(line: &str) {
    println!("FIGURE [{}] {line}", scale_name());
}

/// waitid(2) with `WNOWAIT` for our child `pid`: waits for the state change in `what` (stopped,
/// exited) and leaves the child waitable, so its pid stays taken. rustix has it on every Unix
/// target onlyone builds for.
pub fn wait_no_reap(pid: u32, what: rustix::process::WaitIdOptions, context: &str) {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let pid = Pid::from_raw(pid as i32).expect("a child's pid is positive");
    loop {
        match waitid(WaitId::Pid(pid), what | WaitIdOptions::NOWAIT) {
            Err(rustix::io::Errno::INTR) => continue,
            other => {
                other.expect(context);
                return;
            }
        }
    }
}
