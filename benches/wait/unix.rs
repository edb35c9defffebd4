// The Unix body of benches/wait.rs (see its module docs).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;
use onlyone::{Acquire, BackendKind, Builder, Lock};

const ROLE: &str = "ONLYONE_WAIT_BENCH_ROLE";

/// `CLOCK_PROCESS_CPUTIME_ID`, by its libc number: nix names it on some systems only (not illumos).
fn process_cpu_clock() -> ClockId {
    ClockId::from_raw(nix::libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn now_ns(clock: ClockId) -> u128 {
    let t = clock_gettime(clock).expect("clock_gettime");
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

pub fn main() {
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
    let waiters: Vec<usize> = args
        .iter()
        .position(|a| a == "--waiters")
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.split(',')
                .map(|n| n.parse().expect("--waiters N,N"))
                .collect()
        })
        .unwrap_or_else(|| vec![1, 8, 64, 256]);
    if !args.iter().any(|a| a == "--handover") {
        latency(trials);
    }
    handover(&waiters);
}

fn latency(trials: usize) {
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

/// How long each waiter holds the lock in its turn.
const TURN: Duration = Duration::from_millis(1);
/// How long the lock is merely held while the waiters' CPU is measured.
const HELD: Duration = Duration::from_secs(1);

fn handover(sizes: &[usize]) {
    println!();
    println!(
        "hand-over through N waiters, each holding {} ms in its turn; CPU while held over {} s",
        TURN.as_millis(),
        HELD.as_secs()
    );
    println!(
        "| backend | N | per hand-over (ms) | ÷ kernel flock | wake-ups per hand-over | waiters' CPU while held (ms per s, all) | waiter CPU until its turn (µs, mean) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = repeated("kernel", dir.path(), n);
        kernel.print("kernel flock(LOCK_EX)", n, kernel.per_handover_ms);
        for backend in BackendKind::available_local() {
            let cell = repeated(backend.as_str(), dir.path(), n);
            cell.print(backend.as_str(), n, kernel.per_handover_ms);
        }
    }
}

/// A cell run at least 3 times and until it made 64 hand-overs (the CPU while held is measured in the first
/// run only); the median run's time per hand-over, the mean of the rest.
fn repeated(backend: &str, dir: &std::path::Path, n: usize) -> Turns {
    let runs = 64usize.div_ceil(n).max(3);
    let mut all: Vec<Turns> = (0..runs).map(|i| turns(backend, dir, n, i == 0)).collect();
    let held = all[0].held_cpu_ms_per_s;
    let wakeups = all.iter().map(|t| t.wakeups).sum::<f64>() / runs as f64;
    let turn_cpu_us = all.iter().map(|t| t.turn_cpu_us).sum::<f64>() / runs as f64;
    all.sort_by(|a, b| a.per_handover_ms.total_cmp(&b.per_handover_ms));
    Turns {
        per_handover_ms: all[runs / 2].per_handover_ms,
        wakeups,
        held_cpu_ms_per_s: held,
        turn_cpu_us,
    }
}

struct Turns {
    per_handover_ms: f64,
    wakeups: f64,
    held_cpu_ms_per_s: f64,
    turn_cpu_us: f64,
}

impl Turns {
    fn print(&self, what: &str, n: usize, kernel_ms: f64) {
        println!(
            "| {what} | {n} | {:.2} | {:.2}× | {:.2} | {:.2} | {:.0} |",
            self.per_handover_ms,
            self.per_handover_ms / kernel_ms,
            self.wakeups,
            self.held_cpu_ms_per_s,
            self.turn_cpu_us
        );
    }
}

/// `/proc/PID/task/PID/status`'s voluntary context switches of the main thread.
fn voluntary_switches(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// CPU time of every thread of `pid`, in ns (`/proc/PID/task/*/schedstat`, first field).
fn cpu_ns(pid: u32) -> u128 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| {
                let text = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
                text.split(' ').next()?.parse::<u128>().ok()
            })
            .sum()
        })
        .unwrap_or(0)
}

/// Whether `pid` sleeps in poll/ppoll (the library's waits) or flock (the kernel's).
fn sleeping_in_wait(pid: u32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let nr = text.split(' ').next().unwrap_or("");
    if cfg!(target_arch = "x86_64") {
        matches!(nr, "7" | "271" | "73")
    } else {
        matches!(nr, "73" | "32")
    }
}

/// One cell: the parent holds the lock, N waiters queue, the lock is held for [`HELD`], then
/// released; each waiter holds it for [`TURN`] and lets go.
fn turns(backend: &str, dir: &std::path::Path, n: usize, held_spell: bool) -> Turns {
    let name = format!("turns-{}-{backend}-{n}", std::process::id());
    let kernel_path = dir.join(format!("{name}.kernel"));
    let kernel = backend == "kernel";
    let lock = (!kernel).then(|| {
        Builder::new(&name)
            .backend(backend.parse().expect("backend"))
            .lock_dir(dir)
            .build()
            .expect("lock")
    });
    let kernel_file = kernel.then(|| {
        let f = std::fs::File::create(&kernel_path).expect("kernel lock file");
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).expect("flock");
        f
    });
    let guard = lock
        .as_ref()
        .map(|l| l.try_acquire().expect("acquire").guard().expect("free"));
    let mut waiters: Vec<Proc> = (0..n)
        .map(|_| Proc::spawn(&format!("turn {backend} {name} {}", dir.display())))
        .collect();
    for w in &waiters {
        while !sleeping_in_wait(w.child.id()) {
            std::thread::yield_now();
        }
    }
    let pids: Vec<u32> = waiters.iter().map(|w| w.child.id()).collect();
    let cpu0: Vec<u128> = pids.iter().map(|&p| cpu_ns(p)).collect();
    if held_spell {
        std::thread::sleep(HELD);
    }
    let cpu1: Vec<u128> = pids.iter().map(|&p| cpu_ns(p)).collect();
    let vcs1: Vec<u64> = pids.iter().map(|&p| voluntary_switches(p)).collect();
    let released = now_ns(ClockId::CLOCK_MONOTONIC);
    drop(guard);
    drop(kernel_file);
    let mut last = released;
    let mut wakeups = 0u64;
    let mut turn_cpu = 0u128;
    for (i, w) in waiters.iter_mut().enumerate() {
        let line = w.line();
        let f: Vec<u128> = line
            .strip_prefix("done ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .split(' ')
            .map(|v| v.parse().expect("number"))
            .collect();
        last = last.max(f[0]);
        wakeups += (f[1] as u64).saturating_sub(vcs1[i]) + 1;
        turn_cpu += f[2].saturating_sub(cpu1[i]);
    }
    let held: u128 = cpu1.iter().zip(&cpu0).map(|(b, a)| b - a).sum();
    let _ = std::fs::remove_file(&kernel_path);
    Turns {
        per_handover_ms: (last - released + TURN.as_nanos()) as f64 / 1e6 / n as f64,
        wakeups: wakeups as f64 / n as f64,
        held_cpu_ms_per_s: if held_spell {
            held as f64 / 1e6 / HELD.as_secs_f64()
        } else {
            0.0
        },
        turn_cpu_us: turn_cpu as f64 / 1e3 / n as f64,
    }
}

/// The waiter's turn: waits (the library's wait, or the kernel's blocking flock), notes when it
/// got the lock, its voluntary context switches and CPU time then, holds it for [`TURN`]
/// (spinning: a sleep would count as a context switch) and lets go.
fn turn(backend: &str, name: &str, dir: &str) {
    let mut out = std::io::stdout();
    let (t, vcs, cpu) = if backend == "kernel" {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .open(std::path::Path::new(dir).join(format!("{name}.kernel")))
            .expect("open");
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        let got = stamp();
        spin(got.0);
        drop(f);
        got
    } else {
        let lock = Builder::new(name)
            .backend(backend.parse().expect("backend"))
            .lock_dir(dir)
            .build()
            .expect("lock");
        let guard = lock
            .acquire_timeout(None)
            .expect("wait")
            .guard()
            .expect("acquired");
        let got = stamp();
        spin(got.0);
        drop(guard);
        got
    };
    writeln!(out, "done {t} {vcs} {cpu}").unwrap();
}

/// Now, this thread's voluntary context switches, and the process's CPU time.
fn stamp() -> (u128, u64, u128) {
    let t = now_ns(ClockId::CLOCK_MONOTONIC);
    let me = std::process::id();
    (t, voluntary_switches(me), now_ns(process_cpu_clock()))
}

fn spin(from: u128) {
    while now_ns(ClockId::CLOCK_MONOTONIC) < from + TURN.as_nanos() {
        std::hint::spin_loop();
    }
}

fn pct(sorted_us: &[f64], p: usize) -> f64 {
    sorted_us[(sorted_us.len() * p / 100).min(sorted_us.len() - 1)]
}

struct Proc {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

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

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, prefix: &str) -> u128 {
    line.strip_prefix(prefix)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
}

/// Sorted gaps in µs.
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
fn waiter_cpu(backend: BackendKind, dir: &std::path::Path) -> Duration {
    let name = format!("wait-cpu-{}", std::process::id());
    let role = |r: &str| format!("{r} {backend} {name} {}", dir.display());
    let mut holder = Proc::spawn(&role("hold"));
    assert_eq!(holder.line(), "ready");
    let mut waiter = Proc::spawn(&role("wait2s"));
    Duration::from_nanos(field(&waiter.line(), "cpu ") as u64)
}

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

/// The child roles: `hold B NAME DIR`, `wait B NAME DIR`, `wait2s B NAME DIR`, `turn B NAME DIR`
/// (B may be `kernel`).
fn child(role: &str) {
    let words: Vec<&str> = role.splitn(4, ' ').collect();
    if words[0] == "turn" {
        turn(words[1], words[2], words[3]);
        return;
    }
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
