//! The Linux body of the strategies benchmark (see `benches/strategies.rs`).

use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, open};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect, getsockopt, listen,
    socket, sockopt,
};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use onlyone::{Acquire, BackendKind, Builder, Lock};
use rustix::fs::FlockOperation;

#[path = "many.rs"]
mod many;

/// Set in a re-executed copy of this binary: `BACKEND\tNAME\tDIR`, hold that lock.
const HOLD_ENV: &str = "ONLYONE_BENCH_HOLD";

/// Connecting attempts against one abstract holder before it is replaced (its backlog is 4096).
const CONNECTS_PER_HOLDER: u64 = 2000;

pub fn main() {
    if let Ok(spec) = std::env::var(HOLD_ENV) {
        hold(&spec);
        return;
    }
    let local = [
        BackendKind::AbstractSocket,
        BackendKind::Flock,
        BackendKind::PidFile,
    ];
    if let Some(missing) = local.iter().find(|b| !b.is_available()) {
        eprintln!(
            "benches/strategies compares the three local backends side by side; this build has no \
             {missing} backend: run it with the default features"
        );
        return;
    }
    let tmpfs = BenchDir::new("ONLYONE_BENCH_DIR", "/dev/shm");
    if !is_test_mode() && std::env::args().skip(1).any(|a| a == "many") {
        many::many(tmpfs.path());
        return;
    }
    let disk = BenchDir::new("ONLYONE_BENCH_DISK_DIR", "/var/tmp");
    eprintln!(
        "lock directories: {} ({}), {} ({})",
        tmpfs.path().display(),
        fs_type(tmpfs.path()),
        disk.path().display(),
        fs_type(disk.path())
    );

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args();

    acquire_release(&mut c, "acquire_release", tmpfs.path(), true);
    contended(&mut c, "contended", tmpfs.path(), true);
    holder_lookup(&mut c, tmpfs.path());
    acquire_release(&mut c, "acquire_release_ext4", disk.path(), false);
    contended(&mut c, "contended_ext4", disk.path(), false);
    c.final_summary();
    if !is_test_mode() {
        print_ratios();
    }

    if wants_scale() {
        scale(tmpfs.path());
    }
}

/// `cargo test --benches` runs each benchmark once, in test mode.
fn is_test_mode() -> bool {
    std::env::args().any(|a| a == "--test" || a == "--list")
}

/// The goals, as ratios of criterion's median estimates: (label, group, id, baseline group,
/// baseline id, goal).
const RATIOS: &[(&str, &str, &str, &str, &str, f64)] = &[
    (
        "acquire_release abstract",
        "acquire_release",
        "abstract",
        "acquire_release",
        "raw_abstract",
        1.15,
    ),
    (
        "acquire_release flock",
        "acquire_release",
        "flock",
        "acquire_release",
        "raw_flock",
        1.15,
    ),
    (
        "acquire_release pidfile",
        "acquire_release",
        "pidfile",
        "acquire_release",
        "raw_pidfile",
        1.15,
    ),
    (
        "contended abstract",
        "contended",
        "abstract",
        "contended",
        "raw_abstract",
        1.15,
    ),
    (
        "contended flock",
        "contended",
        "flock",
        "contended",
        "raw_flock",
        1.15,
    ),
    (
        "contended pidfile",
        "contended",
        "pidfile",
        "contended",
        "raw_pidfile",
        1.15,
    ),
    (
        "holder_lookup abstract",
        "holder_lookup",
        "abstract",
        "contended",
        "raw_abstract",
        3.0,
    ),
    (
        "holder_lookup flock",
        "holder_lookup",
        "flock",
        "contended",
        "raw_flock",
        3.0,
    ),
    (
        "holder_lookup pidfile",
        "holder_lookup",
        "pidfile",
        "contended",
        "raw_pidfile",
        3.0,
    ),
    (
        "  (raw_peercred itself)",
        "holder_lookup",
        "raw_peercred",
        "contended",
        "raw_abstract",
        3.0,
    ),
    (
        "acquire_release_ext4 flock",
        "acquire_release_ext4",
        "flock",
        "acquire_release_ext4",
        "raw_flock",
        1.15,
    ),
    (
        "acquire_release_ext4 pidfile",
        "acquire_release_ext4",
        "pidfile",
        "acquire_release_ext4",
        "raw_pidfile",
        1.15,
    ),
    (
        "contended_ext4 flock",
        "contended_ext4",
        "flock",
        "contended_ext4",
        "raw_flock",
        1.15,
    ),
    (
        "contended_ext4 pidfile",
        "contended_ext4",
        "pidfile",
        "contended_ext4",
        "raw_pidfile",
        1.15,
    ),
];

/// Criterion's median estimate (ns) for `group/id`, from the latest run that measured it.
fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Prints every goal as measured: onlyone's median over its baseline's, and whether it holds.
fn print_ratios() {
    println!("\nratios of medians (target/criterion/<group>/<id>/new/estimates.json):");
    println!(
        "{:<30} {:>10} {:>10} {:>7} {:>6}  verdict",
        "", "onlyone", "baseline", "ratio", "goal"
    );
    for (label, group, id, base_group, base_id, goal) in RATIOS {
        let (Some(x), Some(base)) = (median_ns(group, id), median_ns(base_group, base_id)) else {
            continue;
        };
        let ratio = x / base;
        println!(
            "{label:<30} {:>8.2}µs {:>8.2}µs {ratio:>6.2}x {goal:>5.2}x  {}  ({base_group}/{base_id})",
            x / 1000.0,
            base / 1000.0,
            if ratio <= *goal { "met" } else { "MISSED" }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The groups.

fn acquire_release(c: &mut Criterion, group: &str, dir: &Path, with_abstract: bool) {
    let name = format!("bench-ar-{}", std::process::id());
    let mut g = c.benchmark_group(group);
    if with_abstract {
        let lock = build(BackendKind::AbstractSocket, &name, dir);
        let addr = abstract_addr(&*lock);
        g.bench_function("raw_abstract", |b| {
            b.iter(|| {
                let fd = stream_socket(SockFlag::empty());
                bind(fd.as_raw_fd(), &addr).expect("raw bind");
                listen(&fd, Backlog::MAXCONN).expect("raw listen");
                drop(black_box(fd));
            })
        });
        g.bench_function("abstract", |b| b.iter(|| acquire_and_release(&*lock)));
    }
    let flock = build(BackendKind::Flock, &name, dir);
    let path = PathBuf::from(flock.resource());
    g.bench_function("raw_flock", |b| {
        b.iter(|| {
            let file = open_rw(&path, OFlag::O_CREAT);
            rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).expect("raw flock");
            drop(black_box(file));
        })
    });
    g.bench_function("flock", |b| b.iter(|| acquire_and_release(&*flock)));

    let pidfile = build(BackendKind::PidFile, &name, dir);
    let pid_path = PathBuf::from(pidfile.resource());
    let content = format!("{}\n", std::process::id());
    g.bench_function("raw_pidfile", |b| {
        b.iter(|| {
            // An unnamed temp file in the same directory, written, then linked into place; the
            // release unlinks it.
            let fd = open(
                dir,
                OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .expect("raw O_TMPFILE");
            let mut file = File::from(fd);
            file.write_all(content.as_bytes()).expect("raw write");
            let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
            nix::unistd::linkat(
                AT_FDCWD,
                proc_path.as_str(),
                AT_FDCWD,
                &pid_path,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
            .expect("raw linkat");
            nix::unistd::unlink(&pid_path).expect("raw unlink");
            drop(black_box(file));
        })
    });
    g.bench_function("pidfile", |b| b.iter(|| acquire_and_release(&*pidfile)));
    g.finish();
}

fn contended(c: &mut Criterion, group: &str, dir: &Path, with_abstract: bool) {
    let name = format!("bench-ct-{}", std::process::id());
    let mut g = c.benchmark_group(group);
    if with_abstract {
        let lock = build(BackendKind::AbstractSocket, &name, dir);
        let addr = abstract_addr(&*lock);
        let mut holder = HolderProc::spawn(BackendKind::AbstractSocket, &name, dir);
        g.bench_function("raw_abstract", |b| {
            b.iter(|| {
                let fd = stream_socket(SockFlag::empty());
                assert_eq!(bind(fd.as_raw_fd(), &addr), Err(Errno::EADDRINUSE));
                drop(black_box(fd));
            })
        });
        g.bench_function("abstract", |b| {
            b.iter_custom(|iters| holder.timed_batches(iters, |_| expect_held(&*lock, None)))
        });
    }
    let flock = build(BackendKind::Flock, &name, dir);
    let path = PathBuf::from(flock.resource());
    let _flock_holder = HolderProc::spawn(BackendKind::Flock, &name, dir);
    g.bench_function("raw_flock", |b| {
        b.iter(|| {
            let file = open_rw(&path, OFlag::O_CREAT);
            let e = rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
                .expect_err("raw flock must fail");
            assert_eq!(e.raw_os_error(), libc_ewouldblock());
            drop(black_box(file));
        })
    });
    g.bench_function("flock", |b| b.iter(|| expect_held(&*flock, None)));

    let pidfile = build(BackendKind::PidFile, &name, dir);
    let pid_path = PathBuf::from(pidfile.resource());
    let pid_holder = HolderProc::spawn(BackendKind::PidFile, &name, dir);
    assert_eq!(raw_pidfile_contended(&pid_path), pid_holder.pid());
    g.bench_function("raw_pidfile", |b| {
        b.iter(|| black_box(raw_pidfile_contended(&pid_path)))
    });
    g.bench_function("pidfile", |b| b.iter(|| expect_held(&*pidfile, None)));
    g.finish();
}

fn holder_lookup(c: &mut Criterion, dir: &Path) {
    let name = format!("bench-hl-{}", std::process::id());
    let mut g = c.benchmark_group("holder_lookup");

    let lock = build(BackendKind::AbstractSocket, &name, dir);
    let addr = abstract_addr(&*lock);
    let mut holder = HolderProc::spawn(BackendKind::AbstractSocket, &name, dir);
    g.bench_function("raw_peercred", |b| {
        b.iter_custom(|iters| {
            holder.timed_batches(iters, |_| {
                let fd = stream_socket(SockFlag::SOCK_NONBLOCK);
                connect(fd.as_raw_fd(), &addr).expect("raw connect");
                let cred = getsockopt(&fd, sockopt::PeerCredentials).expect("SO_PEERCRED");
                black_box(cred.pid());
            })
        })
    });
    g.bench_function("abstract", |b| {
        b.iter_custom(|iters| holder.timed_batches(iters, |pid| expect_held(&*lock, Some(pid))))
    });
    drop(holder);

    for backend in [BackendKind::Flock, BackendKind::PidFile] {
        let lock = build(backend, &name, dir);
        let holder = HolderProc::spawn(backend, &name, dir);
        let pid = holder.pid();
        g.bench_function(backend.as_str(), |b| {
            b.iter(|| expect_held(&*lock, Some(pid)))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Scale: 100k contended attempts against one holder.

const SCALE_ATTEMPTS: usize = 100_000;
const SCALE_BLOCK: usize = 10_000;

fn wants_scale() -> bool {
    if is_test_mode() {
        return false;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Criterion's filter is the first argument that is not an option (cargo adds `--bench`).
    let filter = args.iter().find(|a| !a.starts_with('-'));
    filter.is_none_or(|f| "scale".contains(f.as_str()))
}

fn scale(dir: &Path) {
    println!(
        "\nscale: {SCALE_ATTEMPTS} contended attempts against one holder per backend (tmpfs {})",
        dir.display()
    );
    let mut json = String::from("{");
    for backend in BackendKind::available_local() {
        let name = format!("bench-scale-{}-{}", backend, std::process::id());
        let lock = build(backend, &name, dir);
        let holder = HolderProc::spawn(backend, &name, dir);
        let pid = holder.pid();
        let start = Instant::now();
        let mut wrong = 0usize;
        let mut timed = |n: usize, times: &mut Vec<Duration>| {
            for _ in 0..n {
                let t = Instant::now();
                let r = lock.try_acquire().expect("try_acquire");
                times.push(t.elapsed());
                match r {
                    Acquire::Held(h) if h.pid == Some(pid) => {}
                    _ => wrong += 1,
                }
            }
        };
        let mut times = Vec::with_capacity(SCALE_ATTEMPTS);
        // (label, first attempt, last attempt, median µs)
        let mut segments: Vec<(&str, usize, usize, f64)> = Vec::new();
        // The abstract holder drains its listener, so its backlog never fills: every backend's
        // 100k attempts are timed.
        let stand_ins = 0;
        {
            timed(SCALE_ATTEMPTS, &mut times);
            for (i, block) in times.chunks(SCALE_BLOCK).enumerate() {
                let label = match i {
                    0 => "first 10k",
                    9 => "last 10k",
                    _ => "10k block",
                };
                let from = i * SCALE_BLOCK + 1;
                segments.push((label, from, from + block.len() - 1, median_us(block)));
            }
        }
        let total = start.elapsed();
        let backlog_full = backend == BackendKind::AbstractSocket && {
            let fd = stream_socket(SockFlag::SOCK_NONBLOCK);
            connect(fd.as_raw_fd(), &abstract_addr(&*lock)) == Err(Errno::EAGAIN)
        };
        println!(
            "{}: {:.1} s, {} timed attempts{}; holder (pid {pid}) named every time: {}{}",
            backend.as_str(),
            total.as_secs_f64(),
            SCALE_ATTEMPTS - stand_ins,
            if stand_ins > 0 {
                format!(" and {stand_ins} stand-ins")
            } else {
                String::new()
            },
            if wrong == 0 {
                "yes".to_owned()
            } else {
                format!("NO ({wrong} attempts did not)")
            },
            if backlog_full {
                "; backlog full: lookups go through /proc"
            } else {
                ""
            }
        );
        let line: Vec<String> = segments
            .iter()
            .map(|(label, from, to, m)| format!("{label} [{from}..{to}] {m:.2}"))
            .collect();
        println!("  medians (µs): {}", line.join(", "));
        if json.len() > 1 {
            json.push(',');
        }
        let segs: Vec<String> = segments
            .iter()
            .map(|(label, from, to, m)| {
                format!(
                    "{{\"label\":\"{label}\",\"from\":{from},\"to\":{to},\"median_us\":{m:.3}}}"
                )
            })
            .collect();
        json.push_str(&format!(
            "\"{}\":{{\"attempts\":{SCALE_ATTEMPTS},\"stand_ins\":{stand_ins},\"wrong_holder\":{wrong},\"backlog_full_at_end\":{backlog_full},\"total_s\":{:.3},\"segments\":[{}]}}",
            backend.as_str(),
            total.as_secs_f64(),
            segs.join(",")
        ));
        drop(holder);
    }
    json.push('}');
    let out = criterion_dir().join("scale");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("scale.json"), json + "\n");
        println!("written to {}", out.join("scale.json").display());
    }
}

fn criterion_dir() -> PathBuf {
    // Criterion writes to $CARGO_TARGET_DIR/criterion; the bench runs in the package root.
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

fn median_us(times: &[Duration]) -> f64 {
    let mut v: Vec<Duration> = times.to_vec();
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e6
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn build(backend: BackendKind, name: &str, dir: &Path) -> Box<dyn Lock> {
    Builder::new(name)
        .backend(backend)
        .lock_dir(dir)
        .build()
        .unwrap_or_else(|e| panic!("cannot build the {backend} lock: {e}"))
}

fn acquire_and_release(lock: &dyn Lock) {
    match lock.try_acquire().expect("try_acquire") {
        Acquire::Acquired(g) => g.release().expect("release"),
        Acquire::Held(h) => panic!("{} is held by {h}", lock.resource()),
    }
}

/// A failed try; `pid`, when given, must be the holder it names.
fn expect_held(lock: &dyn Lock, pid: Option<u32>) {
    match lock.try_acquire().expect("try_acquire") {
        Acquire::Held(h) => {
            if let Some(p) = pid {
                assert_eq!(h.pid, Some(p), "wrong holder for {}", lock.resource());
            }
            black_box(h);
        }
        Acquire::Acquired(_) => panic!("{} was free", lock.resource()),
    }
}

fn abstract_addr(lock: &dyn Lock) -> UnixAddr {
    let resource = lock.resource();
    let name = resource.strip_prefix('@').expect("abstract resource");
    UnixAddr::new_abstract(name.as_bytes()).expect("abstract address")
}

fn stream_socket(flags: SockFlag) -> OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::Stream,
        flags | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket")
}

fn open_rw(path: &Path, extra: OFlag) -> File {
    File::from(
        open(
            path,
            OFlag::O_RDWR | OFlag::O_CLOEXEC | extra,
            Mode::from_bits_truncate(0o600),
        )
        .expect("open"),
    )
}

fn libc_ewouldblock() -> i32 {
    Errno::EWOULDBLOCK as i32
}

/// The floor of a failed PID-file try: `O_EXCL` create fails with `EEXIST`, read the file, take
/// the pid from its first line, `kill(pid, 0)`, and compare the process's start time
/// (`/proc/PID/stat` field 22) with the recorded one. Returns the pid.
fn raw_pidfile_contended(path: &Path) -> u32 {
    let excl = open(
        path,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    );
    assert_eq!(excl.err(), Some(Errno::EEXIST));
    let mut buf = [0u8; 512];
    let n = read_into(path, &mut buf);
    let text = std::str::from_utf8(&buf[..n]).expect("utf-8 record");
    let pid: u32 = text
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .expect("pid");
    let start: Option<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("start "))
        .and_then(|s| s.parse().ok());
    nix::sys::signal::kill(Pid::from_raw(pid as i32), None).expect("holder alive");
    let mut stat = [0u8; 1024];
    let n = read_into(Path::new(&format!("/proc/{pid}/stat")), &mut stat);
    let stat = std::str::from_utf8(&stat[..n]).expect("utf-8 stat");
    let after = &stat[stat.rfind(')').expect("stat") + 1..];
    let ticks: u64 = after
        .split_ascii_whitespace()
        .nth(19)
        .and_then(|s| s.parse().ok())
        .expect("start time");
    assert_eq!(Some(ticks), start, "the recorded start time matches");
    pid
}

fn read_into(path: &Path, buf: &mut [u8]) -> usize {
    let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).expect("open");
    let mut total = 0;
    loop {
        match nix::unistd::read(fd.as_fd(), &mut buf[total..]) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read {}: {e}", path.display()),
        }
        if total == buf.len() {
            return total;
        }
    }
}

fn fs_type(path: &Path) -> &'static str {
    use nix::sys::statfs::{EXT4_SUPER_MAGIC, TMPFS_MAGIC, statfs};
    match statfs(path).map(|s| s.filesystem_type()) {
        Ok(t) if t == TMPFS_MAGIC => "tmpfs",
        Ok(t) if t == EXT4_SUPER_MAGIC => "ext4",
        Ok(_) => "other filesystem",
        Err(_) => "unknown filesystem",
    }
}

/// A fresh private directory under `default` (or `$var`), removed at the end.
struct BenchDir(tempfile::TempDir);

impl BenchDir {
    fn new(var: &str, default: &str) -> BenchDir {
        let parent = std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default));
        BenchDir(
            tempfile::Builder::new()
                .prefix("onlyone-bench-")
                .tempdir_in(&parent)
                .unwrap_or_else(|e| {
                    panic!("cannot create a directory in {}: {e}", parent.display())
                }),
        )
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

// ---------------------------------------------------------------------------------------------
// The holder: this binary again, holding one lock until its stdin closes.

/// Runs in the child: takes the lock, says `ready`, waits for end of input.
fn hold(spec: &str) {
    let mut parts = spec.splitn(3, '\t');
    let (Some(backend), Some(name), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        eprintln!("bad {HOLD_ENV}: {spec:?}");
        std::process::exit(64);
    };
    let backend: BackendKind = backend.parse().expect("backend");
    let lock = build(backend, name, Path::new(dir));
    let guard = match lock.try_acquire().expect("holder: try_acquire") {
        Acquire::Acquired(g) => g,
        Acquire::Held(h) => panic!("holder: {} is held by {h}", lock.resource()),
    };
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(guard);
}

/// A holder child process, SIGKILLed and reaped on drop (also when a benchmark panics).
struct HolderProc {
    child: Child,
    backend: BackendKind,
    name: String,
    dir: PathBuf,
    /// Connecting attempts since this holder started (abstract backlog accounting).
    connects: u64,
}

impl HolderProc {
    fn spawn(backend: BackendKind, name: &str, dir: &Path) -> HolderProc {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(HOLD_ENV, format!("{backend}\t{name}\t{}", dir.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read holder");
        let mut holder = HolderProc {
            child,
            backend,
            name: name.to_owned(),
            dir: dir.to_owned(),
            connects: 0,
        };
        if line.trim() != "ready" {
            holder.kill();
            panic!("holder for {backend} said {line:?}");
        }
        holder
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Replaces the holder by a fresh one (its lock is released when it dies, at once).
    fn restart(&mut self) {
        self.kill();
        *self = HolderProc::spawn(self.backend, &self.name, &self.dir);
    }

    /// Times `iters` calls of `op`, each of which connects to the holder once; the holder is
    /// replaced, outside the timed region, before its backlog can fill.
    /// `op` gets the holder's pid.
    fn timed_batches(&mut self, iters: u64, mut op: impl FnMut(u32)) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            if self.connects >= CONNECTS_PER_HOLDER {
                self.restart();
            }
            let n = left.min(CONNECTS_PER_HOLDER - self.connects);
            let pid = self.pid();
            let start = Instant::now();
            for _ in 0..n {
                op(pid);
            }
            total += start.elapsed();
            self.connects += n;
            left -= n;
        }
        total
    }
}

impl Drop for HolderProc {
    fn drop(&mut self) {
        self.kill();
    }
}
