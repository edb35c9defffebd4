//! Release-to-acquire latency of a waiting process, per backend, and the waiter's CPU time over a
//! 2 s wait. Run with `cargo bench --bench wait` (`-- --trials N` to change the 200 trials).
//!
//! Every trial uses two fresh processes (this binary, re-executed): a holder and a waiter asleep in
//! `acquire_timeout(None)`. The holder releases (guard dropped, process lives on) or is SIGKILLed;
//! the gap is measured on `CLOCK_MONOTONIC` from just before the release (or the `kill`) to just
//! after the waiter's acquire returned.

#[cfg(unix)]
use std::io::{BufRead, BufReader, Write};
#[cfg(unix)]
use std::process::{Child, Command, Stdio};
#[cfg(unix)]
use std::time::Duration;

#[cfg(unix)]
use nix::sys::signal::{Signal, kill};
#[cfg(unix)]
use nix::time::{ClockId, clock_gettime};
#[cfg(unix)]
use nix::unistd::Pid;
#[cfg(unix)]
use onlyone::{Acquire, BackendKind, Builder, Lock};

#[cfg(unix)]
const ROLE: &str = "ONLYONE_WAIT_BENCH_ROLE";

/// `CLOCK_PROCESS_CPUTIME_ID`, by its libc number: nix names it on some systems only (not illumos).
#[cfg(unix)]
fn process_cpu_clock() -> ClockId {
    ClockId::from_raw(nix::libc::CLOCK_PROCESS_CPUTIME_ID)
}

#[cfg(unix)]
fn now_ns(clock: ClockId) -> u128 {
    let t = clock_gettime(clock).expect("clock_gettime");
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

/// The body measures Unix waits (signals, `CLOCK_MONOTONIC` across processes, `/proc`); on
/// Windows the bench builds and says so (figures from Wine would not be Windows figures).
#[cfg(not(unix))]
fn main() {
    eprintln!("the wait benchmark measures Unix waits; nothing to measure here");
}

#[cfg(unix)]
fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing criterion-style to list.
    }
    let trials: usize = args
        .iter()
        .position(|a| a == "--trials")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(200);
    println!("release-to-acquire latency, {trials} trials per cell (µs)");
    println!(
        "| backend | holder releases: median | p99 | holder SIGKILLed: median | p99 | waiter CPU over a 2 s wait |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for backend in BackendKind::available_local() {
        let dir = tempfile::tempdir().expect("tempdir");
        let release = measure(backend, dir.path(), trials, false);
        let killed = measure(backend, dir.path(), trials, true);
        let cpu = waiter_cpu(backend, dir.path());
        println!(
            "| {backend} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} ms |",
            pct(&release, 50),
            pct(&release, 99),
            pct(&killed, 50),
            pct(&killed, 99),
            cpu.as_secs_f64() * 1e3
        );
    }
}

#[cfg(unix)]
fn pct(sorted_us: &[f64], p: usize) -> f64 {
    sorted_us[(sorted_us.len() * p / 100).min(sorted_us.len() - 1)]
}

#[cfg(unix)]
struct Proc {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

#[cfg(unix)]
impl Proc {
    fn spawn(role: &str) -> Proc {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        Proc { child, out }
    }
    fn line(&mut self) -> String {
        let mut s = String::new();
        self.out.read_line(&mut s).expect("read");
        assert!(!s.is_empty(), "child exited early");
        s.trim_end().to_owned()
    }
    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write");
    }
}

#[cfg(unix)]
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
fn field(line: &str, prefix: &str) -> u128 {
    line.strip_prefix(prefix)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
}

/// Sorted gaps in µs.
#[cfg(unix)]
fn measure(backend: BackendKind, dir: &std::path::Path, trials: usize, sigkill: bool) -> Vec<f64> {
    let mut gaps = Vec::with_capacity(trials);
    for i in 0..trials {
        let name = format!("wait-bench-{}-{i}", std::process::id());
        let role = |r: &str| format!("{r} {backend} {name} {}", dir.display());
        let mut holder = Proc::spawn(&role("hold"));
        assert_eq!(holder.line(), "ready");
        let mut waiter = Proc::spawn(&role("wait"));
        wait_until_sleeping_in_poll(waiter.child.id());
        let start = if sigkill {
            let t = now_ns(ClockId::CLOCK_MONOTONIC);
            kill(Pid::from_raw(holder.child.id() as i32), Signal::SIGKILL).expect("kill");
            t
        } else {
            holder.send("release");
            field(&holder.line(), "releasing ")
        };
        let acquired = field(&waiter.line(), "acquired ");
        gaps.push(acquired.saturating_sub(start) as f64 / 1e3);
    }
    gaps.sort_by(f64::total_cmp);
    gaps
}

/// CPU time a waiter spends over a 2 s wait on a lock that stays held.
#[cfg(unix)]
fn waiter_cpu(backend: BackendKind, dir: &std::path::Path) -> Duration {
    let name = format!("wait-cpu-{}", std::process::id());
    let role = |r: &str| format!("{r} {backend} {name} {}", dir.display());
    let mut holder = Proc::spawn(&role("hold"));
    assert_eq!(holder.line(), "ready");
    let mut waiter = Proc::spawn(&role("wait2s"));
    Duration::from_nanos(field(&waiter.line(), "cpu ") as u64)
}

#[cfg(unix)]
fn wait_until_sleeping_in_poll(pid: u32) {
    let path = format!("/proc/{pid}/syscall");
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let nr = text.split(' ').next().unwrap_or("");
        if nr == "7" || nr == "271" || (cfg!(not(target_arch = "x86_64")) && nr == "73") {
            return;
        }
        std::thread::yield_now();
    }
}

/// The child roles: `hold B NAME DIR`, `wait B NAME DIR`, `wait2s B NAME DIR`.
#[cfg(unix)]
fn child(role: &str) {
    let words: Vec<&str> = role.splitn(4, ' ').collect();
    let backend: BackendKind = words[1].parse().expect("backend");
    let lock = Builder::new(words[2])
        .backend(backend)
        .lock_dir(words[3])
        .build()
        .expect("lock");
    let mut out = std::io::stdout();
    match words[0] {
        "hold" => {
            let guard = lock.try_acquire().expect("acquire").guard().expect("free");
            writeln!(out, "ready").unwrap();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let t = now_ns(ClockId::CLOCK_MONOTONIC);
            guard.release().expect("release");
            writeln!(out, "releasing {t}").unwrap();
            // Stay alive: this measures a release, not an exit.
            std::io::stdin().read_line(&mut line).unwrap();
        }
        "wait" => {
            let acquired = lock.acquire_timeout(None).expect("wait");
            let t = now_ns(ClockId::CLOCK_MONOTONIC);
            assert!(matches!(acquired, Acquire::Acquired(_)));
            writeln!(out, "acquired {t}").unwrap();
        }
        "wait2s" => {
            let before = now_ns(process_cpu_clock());
            let outcome = lock
                .acquire_timeout(Some(Duration::from_secs(2)))
                .expect("wait");
            let cpu = now_ns(process_cpu_clock()) - before;
            assert!(matches!(outcome, Acquire::Held(_)));
            writeln!(out, "cpu {cpu}").unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}
