//! Scale with the number of locks (`cargo bench --bench strategies -- many`, tens of seconds):
//!
//! - one process holding `HELD` locks of each local backend: the time to take them (per lock, the
//!   first and the last hundred), the resident memory and descriptors they cost, the time to
//!   release them all;
//! - `onlyone list` while this process holds `LISTED` locks, a third of each backend (abstract
//!   sockets, flock files and PID files in one lock directory given with `--lock-dir`): wall time
//!   of the CLI (median of a few runs) and the number of lines it printed.
//!
//! The CLI is `target/release/onlyone` (`cargo build --release -p onlyone-cli`); without it the
//! `list` part says so and is skipped. `ONLYONE_MANY_HELD` and `ONLYONE_MANY_LISTED` change the
//! counts (defaults 1000 and 10000).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use onlyone::{Acquire, BackendKind, Builder, Guard};

const BACKENDS: [BackendKind; 3] = [
    BackendKind::AbstractSocket,
    BackendKind::Flock,
    BackendKind::PidFile,
];

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Takes `n` locks of `backend` named `prefix-0` ... in `dir`; the time per lock of each.
fn take(backend: BackendKind, prefix: &str, dir: &Path, n: usize) -> (Vec<Guard>, Vec<Duration>) {
    let mut guards = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let lock = Builder::new(format!("{prefix}-{i}"))
            .backend(backend)
            .lock_dir(dir)
            .build()
            .expect("build");
        let start = Instant::now();
        let acquired = lock.try_acquire().expect("try_acquire");
        times.push(start.elapsed());
        match acquired {
            Acquire::Acquired(g) => guards.push(g),
            Acquire::Held(h) => panic!("{} is held by {h}", lock.resource()),
        }
    }
    (guards, times)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The descriptor limit raised to its hard limit: holding many locks holds many descriptors.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

pub fn many(dir: &Path) {
    let held = count("ONLYONE_MANY_HELD", 1000);
    let listed = count("ONLYONE_MANY_LISTED", 10_000);
    let limit = raise_fd_limit();
    let pid = std::process::id();
    println!(
        "\nmany: one process holding {held} locks per backend (lock directory {})",
        dir.display()
    );
    println!(
        "| backend | take all | per lock, first 100 (median) | per lock, last 100 (median) | RSS added | descriptors added | release all |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for backend in BACKENDS {
        let (rss, fds) = (status_kib("VmRSS:"), open_fds());
        let start = Instant::now();
        let (guards, mut times) = take(backend, &format!("many-{backend}-{pid}"), dir, held);
        let took = start.elapsed();
        let (rss_after, fds_after) = (status_kib("VmRSS:"), open_fds());
        let tail = held.saturating_sub(100);
        let last = median(&mut times[tail..]);
        let first = median(&mut times[..held.min(100)]);
        let start = Instant::now();
        for g in guards {
            g.release().expect("release");
        }
        let released = start.elapsed();
        println!(
            "| {backend} | {:.1} ms | {:.1} µs | {:.1} µs | {} KiB | {} | {:.1} ms |",
            took.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e6,
            last.as_secs_f64() * 1e6,
            rss_after.saturating_sub(rss),
            fds_after.saturating_sub(fds),
            released.as_secs_f64() * 1e3
        );
    }

    let cli =
        PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
            .join("release/onlyone");
    if !cli.exists() {
        println!(
            "\nmany: `onlyone list` skipped: no {} (cargo build --release -p onlyone-cli)",
            cli.display()
        );
        return;
    }
    if listed as u64 + 100 > limit {
        println!(
            "\nmany: `onlyone list` skipped: {listed} locks need more descriptors than {limit}"
        );
        return;
    }
    println!(
        "\nmany: `onlyone list --lock-dir DIR` while this process holds {listed} locks, a third of each backend"
    );
    println!("| locks held | list wall time (median of 3) | lines printed |");
    println!("| --- | --- | --- |");
    let mut guards = Vec::new();
    for (i, backend) in BACKENDS.into_iter().enumerate() {
        let n = listed / 3 + usize::from(i < listed % 3);
        guards.extend(take(backend, &format!("list-{backend}-{pid}"), dir, n).0);
    }
    let mut walls = Vec::new();
    let mut lines = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let out = Command::new(&cli)
            .arg("list")
            .arg("--lock-dir")
            .arg(dir)
            .output()
            .expect("run onlyone list");
        walls.push(start.elapsed());
        assert!(
            out.status.success(),
            "onlyone list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
    }
    println!(
        "| {} (abstract, flock, pidfile: a third each) | {:.0} ms | {lines} |",
        guards.len(),
        median(&mut walls).as_secs_f64() * 1e3
    );
    drop(guards);
}
