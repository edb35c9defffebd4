//! `onlyone compare`: measures every local backend on this machine, with real child processes,
//! and prints latencies and a behaviour matrix (or JSON, or an SVG chart).
//!
//! Every measurement that needs a holder starts one: this very binary, re-executed as
//! `onlyone compare --hold BACKEND NAME DIR` (hidden from `--help`), which takes the lock, prints
//! `ready` and waits for its standard input to close. Holders are SIGKILLed and reaped when a
//! measurement ends, also when it fails half-way.
//!
//! What is measured, per backend:
//! - acquire + release: `try_acquire` that succeeds, then `Guard::release`;
//! - contended try: `try_acquire` against a lock a child process holds (it names the holder);
//! - SIGKILL to acquired: from `kill(holder, SIGKILL)` until `acquire_timeout` in this process
//!   returns the lock (the holder is reaped afterwards, so the pidfile backend sees a zombie);
//! - the behaviour cells below, each from child processes, except those marked as documented.
//!
//! The strategies that do not exist on this platform or in this build are listed as absent, each
//! with the reason (abstract Unix sockets exist only on Linux; a backend left out at build time;
//! PostgreSQL needs a server).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use onlyone::process::ProcessIdentity;
use onlyone::{Acquire, BackendKind, Builder, ErrorKind, Lock};

/// Arguments of `onlyone compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Timed attempts for each latency measurement (SIGKILL trials: a tenth of it, 3 to 20).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub iterations: u32,

    /// Also write a bar chart of the latencies to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// Where to create the temporary lock directory for the file backends [default: $TMPDIR or
    /// /tmp]. The result depends on the filesystem: try /dev/shm (tmpfs) and a disk.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Internal: hold BACKEND's lock NAME in DIR, print "ready", wait for end of input.
    #[arg(long, hide = true, num_args = 3, value_names = ["BACKEND", "NAME", "DIR"])]
    pub hold: Option<Vec<String>>,
}

/// Runs `onlyone compare`.
pub fn run(args: &CompareArgs) -> ExitCode {
    if let Some(hold_args) = &args.hold {
        return hold(hold_args);
    }
    let dir = match ScratchDir::create(args.dir.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            say!("onlyone compare: {e}");
            return ExitCode::from(73);
        }
    };
    let report = match measure_all(args.iterations, dir.path()) {
        Ok(r) => Report {
            dir_arg: args.dir.clone(),
            ..r
        },
        Err(e) => {
            say!("onlyone compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if let Some(path) = &args.svg {
        if let Err(e) = std::fs::write(path, report.to_svg()) {
            say!("onlyone compare: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        if !args.json {
            println!("chart written to {}", path.display());
        }
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Results.

/// Median and 99th percentile of a latency, in microseconds.
#[derive(Clone, Copy, Debug)]
struct Latency {
    median_us: f64,
    p99_us: f64,
    samples: usize,
}

impl Latency {
    fn of(mut times: Vec<Duration>) -> Latency {
        times.sort_unstable();
        let n = times.len().max(1);
        let at = |i: usize| times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6);
        Latency {
            median_us: at(n / 2),
            p99_us: at((n * 99).div_ceil(100) - 1),
            samples: times.len(),
        }
    }
}

/// One cell of the behaviour matrix.
#[derive(Clone, Debug)]
struct Cell {
    value: bool,
    /// From child processes in this run; false: a documented fact.
    measured: bool,
    detail: String,
}

impl Cell {
    fn measured(value: bool, detail: impl Into<String>) -> Cell {
        Cell {
            value,
            measured: true,
            detail: detail.into(),
        }
    }

    fn documented(value: bool, detail: impl Into<String>) -> Cell {
        Cell {
            value,
            measured: false,
            detail: detail.into(),
        }
    }

    fn short(&self) -> String {
        let word = if self.value { "yes" } else { "no" };
        if self.measured {
            word.to_owned()
        } else {
            format!("{word} (doc)")
        }
    }
}

const BEHAVIOURS: [(&str, &str); 6] = [
    ("released_on_sigkill", "released on SIGKILL"),
    ("holder_identity", "holder identity available"),
    ("needs_writable_dir", "needs a writable directory"),
    ("crosses_network_namespaces", "crosses network namespaces"),
    (
        "survives_lock_file_deletion",
        "survives deletion of the lock file",
    ),
    ("pid_reuse_safe", "PID-reuse safe"),
];

/// Picks one latency out of a backend's results (a chart panel).
type Metric = fn(&BackendResult) -> Latency;

#[derive(Debug)]
struct BackendResult {
    backend: BackendKind,
    acquire_release: Latency,
    contended: Latency,
    sigkill_to_acquire: Latency,
    /// In the order of [`BEHAVIOURS`].
    cells: Vec<Cell>,
}

#[derive(Debug)]
struct Report {
    iterations: u32,
    /// The strategies not measured here, and why.
    absent: Vec<(BackendKind, String)>,
    /// The `--dir` given, for the chart's caption.
    dir_arg: Option<PathBuf>,
    lock_dir: PathBuf,
    filesystem: String,
    machine: Machine,
    results: Vec<BackendResult>,
}

#[derive(Debug)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
}

impl Machine {
    fn current() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        #[cfg(windows)]
        let kernel = "Windows".to_owned();
        #[cfg(unix)]
        let kernel = nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy()
                )
            })
            .unwrap_or_else(|_| "unknown kernel".to_owned());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// An error while measuring: what was being done, and why it failed.
type Fallible<T> = Result<T, String>;

fn measure_all(iterations: u32, dir: &Path) -> Fallible<Report> {
    let mut results = Vec::new();
    for backend in BackendKind::available_local() {
        results.push(measure(backend, iterations, dir).map_err(|e| format!("{backend}: {e}"))?);
    }
    Ok(Report {
        iterations,
        absent: absent(),
        dir_arg: None,
        lock_dir: dir.to_owned(),
        filesystem: fs_type(dir),
        machine: Machine::current(),
        results,
    })
}

/// The strategies `compare` does not measure on this platform and build, with the reason.
fn absent() -> Vec<(BackendKind, String)> {
    BackendKind::ALL
        .into_iter()
        .filter(|b| *b == BackendKind::Postgres || !b.is_available())
        .map(|b| (b, why_absent(b)))
        .collect()
}

/// Why `backend` is not measured here.
fn why_absent(backend: BackendKind) -> String {
    let linux = cfg!(any(target_os = "linux", target_os = "android"));
    match backend {
        BackendKind::AbstractSocket if !linux => {
            "abstract Unix sockets exist only on Linux".to_owned()
        }
        BackendKind::NamedMutex if !cfg!(windows) => {
            "Windows named mutexes exist only on Windows".to_owned()
        }
        BackendKind::Postgres if backend.is_available() => {
            "needs a PostgreSQL server; compare measures the local backends only".to_owned()
        }
        BackendKind::Postgres => {
            "not in this build (cargo feature `postgres`), and it needs a PostgreSQL server"
                .to_owned()
        }
        BackendKind::AbstractSocket => {
            "not in this build (cargo feature `abstract-socket`)".to_owned()
        }
        other => format!("not in this build (cargo feature `{other}`)"),
    }
}

fn lock_name(backend: BackendKind, what: &str) -> String {
    format!("compare-{}-{backend}-{what}", std::process::id())
}

fn build(backend: BackendKind, name: &str, dir: &Path) -> Fallible<Box<dyn Lock>> {
    Builder::new(name)
        .backend(backend)
        .lock_dir(dir)
        .build()
        .map_err(|e| e.to_string())
}

fn measure(backend: BackendKind, iterations: u32, dir: &Path) -> Fallible<BackendResult> {
    let n = iterations as usize;

    // Acquire + release, nobody else around.
    let lock = build(backend, &lock_name(backend, "free"), dir)?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        match lock.try_acquire().map_err(|e| e.to_string())? {
            Acquire::Acquired(g) => g.release().map_err(|e| e.to_string())?,
            Acquire::Held(h) => return Err(format!("{} is held by {h}", lock.resource())),
        }
        times.push(start.elapsed());
    }
    let acquire_release = Latency::of(times);

    // A failed try against a child's lock; does it name the child?
    let name = lock_name(backend, "held");
    let lock = build(backend, &name, dir)?;
    let mut times = Vec::with_capacity(n);
    let mut named = 0usize;
    let mut holder = HoldChild::spawn(backend, &name, dir, false)?;
    let mut connects = 0;
    for _ in 0..n {
        // An abstract holder never accepts: replace it before its backlog (4096) fills, so that
        // every attempt measures the normal path (`onlyone` benches measure the other one).
        if backend == BackendKind::AbstractSocket && connects == 2000 {
            holder = HoldChild::spawn(backend, &name, dir, false)?;
            connects = 0;
        }
        connects += 1;
        let start = Instant::now();
        let outcome = lock.try_acquire().map_err(|e| e.to_string())?;
        times.push(start.elapsed());
        match outcome {
            Acquire::Held(h) => named += usize::from(h.pid == Some(holder.pid())),
            Acquire::Acquired(_) => {
                return Err(format!(
                    "acquired {} while pid {} held it",
                    lock.resource(),
                    holder.pid()
                ));
            }
        }
    }
    drop(holder);
    let contended = Latency::of(times);
    let identity = Cell::measured(
        named == n,
        format!("{named} of {n} failed tries named the holder's pid"),
    );

    // SIGKILL the holder; how long until we have the lock?
    let trials = (n / 10).clamp(3, 20);
    let mut times = Vec::with_capacity(trials);
    let mut released = 0usize;
    for _ in 0..trials {
        let mut child = HoldChild::spawn(backend, &name, dir, false)?;
        let start = Instant::now();
        child.kill();
        let outcome = lock
            .acquire_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let elapsed = start.elapsed();
        child.reap();
        if let Acquire::Acquired(g) = outcome {
            released += 1;
            times.push(elapsed);
            g.release().map_err(|e| e.to_string())?;
        }
    }
    let sigkill_to_acquire = Latency::of(times);
    let sigkill = Cell::measured(
        released == trials,
        format!("{released} of {trials} SIGKILLed holders: lock acquired within 10 s"),
    );

    let cells = vec![
        sigkill,
        identity,
        needs_writable_dir(backend, dir)?,
        crosses_network_namespaces(backend, dir)?,
        survives_deletion(backend, dir)?,
        pid_reuse_safe(backend, dir)?,
    ];
    Ok(BackendResult {
        backend,
        acquire_release,
        contended,
        sigkill_to_acquire,
        cells,
    })
}

/// Does the backend need a directory? Acquire with one that does not exist; look at what a
/// holder leaves in an empty one.
fn needs_writable_dir(backend: BackendKind, dir: &Path) -> Fallible<Cell> {
    let missing = dir.join("does-not-exist");
    let lock = build(backend, &lock_name(backend, "nodir"), &missing)?;
    let without = match lock.try_acquire() {
        Ok(Acquire::Acquired(g)) => {
            g.release().map_err(|e| e.to_string())?;
            true
        }
        Ok(Acquire::Held(h)) => return Err(format!("{} is held by {h}", lock.resource())),
        Err(e) if e.kind() == ErrorKind::LockDir => false,
        Err(e) => return Err(e.to_string()),
    };
    let empty = dir.join(format!("empty-{backend}"));
    std::fs::create_dir(&empty).map_err(|e| format!("cannot create {}: {e}", empty.display()))?;
    let child = HoldChild::spawn(backend, &lock_name(backend, "files"), &empty, false)?;
    let files = std::fs::read_dir(&empty)
        .map_err(|e| format!("cannot list {}: {e}", empty.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Vec<_>>();
    drop(child);
    let detail = if without {
        "acquired with a lock directory that does not exist; a holder created no file".to_owned()
    } else {
        format!(
            "acquire fails without the directory; a holder created {}",
            if files.is_empty() {
                "no file".to_owned()
            } else {
                files.join(", ")
            }
        )
    };
    Ok(Cell::measured(!without || !files.is_empty(), detail))
}

/// Does a holder in another network namespace exclude us? Needs root (`unshare -n`).
fn crosses_network_namespaces(backend: BackendKind, dir: &Path) -> Fallible<Cell> {
    let documented = || {
        Cell::documented(
            backend != BackendKind::AbstractSocket,
            match backend {
                BackendKind::AbstractSocket => "abstract names live in the network namespace",
                _ => "the lock is on a file, which namespaces that share the filesystem share",
            },
        )
    };
    if !is_root() {
        return Ok(documented());
    }
    let name = lock_name(backend, "netns");
    let Ok(child) = HoldChild::spawn(backend, &name, dir, true) else {
        // No unshare(1), or namespaces forbidden here (a container): say so via the docs.
        return Ok(documented());
    };
    let lock = build(backend, &name, dir)?;
    let outcome = lock.try_acquire().map_err(|e| e.to_string())?;
    drop(child);
    Ok(match outcome {
        Acquire::Held(_) => Cell::measured(
            true,
            "a holder started under `unshare -n` excluded this process",
        ),
        Acquire::Acquired(g) => {
            g.release().map_err(|e| e.to_string())?;
            Cell::measured(
                false,
                "this process acquired while a holder under `unshare -n` held the lock",
            )
        }
    })
}

/// Delete the lock file while a child holds it: can this process acquire?
fn survives_deletion(backend: BackendKind, dir: &Path) -> Fallible<Cell> {
    let name = lock_name(backend, "delete");
    let lock = build(backend, &name, dir)?;
    let resource = lock.resource();
    if !resource.starts_with('/') {
        return Ok(Cell::documented(
            true,
            format!("no file: the lock is the socket name {resource}"),
        ));
    }
    let child = HoldChild::spawn(backend, &name, dir, false)?;
    std::fs::remove_file(&resource).map_err(|e| format!("cannot delete {resource}: {e}"))?;
    let outcome = lock.try_acquire().map_err(|e| e.to_string())?;
    let cell = match outcome {
        Acquire::Held(_) => Cell::measured(
            true,
            "after deleting the held lock file, the lock was still held",
        ),
        Acquire::Acquired(g) => {
            drop(g);
            Cell::measured(
                false,
                format!(
                    "after deleting {resource}, a second process acquired while pid {} held it (Guard::verify reports it)",
                    child.pid()
                ),
            )
        }
    };
    drop(child);
    Ok(cell)
}

/// A PID file naming a live process whose start time differs (its pid was reused): is it stale?
fn pid_reuse_safe(backend: BackendKind, dir: &Path) -> Fallible<Cell> {
    if backend != BackendKind::PidFile {
        return Ok(Cell::documented(
            true,
            "the kernel object is the lock; a pid is only reported, never trusted for exclusion",
        ));
    }
    let name = lock_name(backend, "reuse");
    let lock = build(backend, &name, dir)?;
    // A live process that does not hold this lock plays the process that reused the pid.
    let other = HoldChild::spawn(backend, &lock_name(backend, "bystander"), dir, false)?;
    let pid = other.pid();
    let start = onlyone::process::stat(pid)
        .ok_or_else(|| format!("cannot read the start time of pid {pid}"))?
        .start_ticks;
    let me = ProcessIdentity::current();
    let recorded = ProcessIdentity {
        pid,
        start_ticks: Some(start.saturating_sub(1000)),
        boot_id: me.boot_id.clone(),
        pid_ns: me.pid_ns,
        uid: me.uid,
    };
    let path = lock.resource();
    std::fs::write(&path, onlyone::record::format(&recorded))
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    let outcome = lock.try_acquire().map_err(|e| e.to_string());
    drop(other);
    Ok(match outcome? {
        Acquire::Acquired(g) => {
            g.release().map_err(|e| e.to_string())?;
            Cell::measured(
                true,
                format!(
                    "a record naming live pid {pid} with an earlier start time was taken over as stale"
                ),
            )
        }
        Acquire::Held(h) => {
            let _ = std::fs::remove_file(&path);
            Cell::measured(
                false,
                format!(
                    "a record naming live pid {pid} with another start time counted as held by {h}"
                ),
            )
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Holder processes.

/// `onlyone compare --hold ...` in a child: takes the lock, says `ready`, waits for end of input.
fn hold(args: &[String]) -> ExitCode {
    let [backend, name, dir] = args else {
        say!("onlyone compare --hold: expected BACKEND NAME DIR");
        return ExitCode::from(64);
    };
    let lock = match backend
        .parse::<BackendKind>()
        .and_then(|b| Builder::new(name).backend(b).lock_dir(dir).build())
    {
        Ok(l) => l,
        Err(e) => {
            say!("onlyone compare --hold: {e}");
            return ExitCode::from(64);
        }
    };
    let guard = match lock.try_acquire() {
        Ok(Acquire::Acquired(g)) => g,
        Ok(Acquire::Held(h)) => {
            say!("onlyone compare --hold: {} is held by {h}", lock.resource());
            return ExitCode::from(75);
        }
        Err(e) => {
            say!("onlyone compare --hold: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(guard);
    ExitCode::SUCCESS
}

/// A holder child; SIGKILLed and reaped when dropped.
struct HoldChild {
    child: Child,
    reaped: bool,
}

impl HoldChild {
    /// Starts a holder and waits for its `ready`; in a new network namespace with `netns`.
    fn spawn(backend: BackendKind, name: &str, dir: &Path, netns: bool) -> Fallible<HoldChild> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        let mut cmd = if netns {
            let mut c = Command::new("unshare");
            c.arg("-n").arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(["compare", "--hold", backend.as_str(), name])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if netns {
                Stdio::null()
            } else {
                Stdio::inherit()
            });
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start a holder ({cmd:?}): {e}"))?;
        let mut holder = HoldChild {
            child,
            reaped: false,
        };
        let mut line = String::new();
        let stdout = holder.child.stdout.as_mut().expect("piped stdout");
        let read = BufReader::new(stdout).read_line(&mut line);
        if !matches!(read, Ok(n) if n > 0) || line.trim() != "ready" {
            let status = holder.reap();
            return Err(format!(
                "the {backend} holder did not start ({})",
                status.unwrap_or_else(|| "no status".to_owned())
            ));
        }
        Ok(holder)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
        }
    }

    /// SIGKILLs (if still running) and reaps; returns how it ended.
    fn reap(&mut self) -> Option<String> {
        if self.reaped {
            return None;
        }
        self.kill();
        self.reaped = true;
        self.child.wait().ok().map(|s| s.to_string())
    }
}

impl Drop for HoldChild {
    fn drop(&mut self) {
        self.reap();
    }
}

/// A fresh private directory for the measurements, removed (with only what we put there) at the end.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(parent: Option<&Path>) -> Result<ScratchDir, String> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_owned);
        let path = parent.join(format!("onlyone-compare-{}", std::process::id()));
        #[cfg_attr(windows, allow(unused_mut))]
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(ScratchDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The name of the filesystem `path` is on: from statfs(2)'s magic number on Linux (glibc and
/// musl name different sets of constants: only the common ones are named), from its
/// `f_fstypename` on macOS and FreeBSD; unknown on NetBSD and illumos, where nix has no statfs.
fn fs_type(path: &Path) -> String {
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "android"))] {
            use nix::sys::statfs::{
                BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, NFS_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC,
                TMPFS_MAGIC, statfs,
            };
            match statfs(path).map(|s| s.filesystem_type()) {
                Ok(t) if t == TMPFS_MAGIC => "tmpfs".to_owned(),
                Ok(t) if t == EXT4_SUPER_MAGIC => "ext4".to_owned(),
                // XFS_SUPER_MAGIC is missing from nix on musl.
                Ok(nix::sys::statfs::FsType(0x5846_5342)) => "xfs".to_owned(),
                Ok(t) if t == BTRFS_SUPER_MAGIC => "btrfs".to_owned(),
                Ok(t) if t == OVERLAYFS_SUPER_MAGIC => "overlay".to_owned(),
                Ok(t) if t == NFS_SUPER_MAGIC => "nfs".to_owned(),
                Ok(t) => format!("filesystem type {:#x}", t.0),
                Err(e) => format!("unknown filesystem ({e})"),
            }
        } else if #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))] {
            match nix::sys::statfs::statfs(path) {
                Ok(s) => s.filesystem_type_name().to_owned(),
                Err(e) => format!("unknown filesystem ({e})"),
            }
        } else {
            let _ = path;
            "unknown filesystem (not read on this system)".to_owned()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output.

impl Report {
    fn to_text(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "onlyone compare: {} iterations; {} CPUs ({}), {}; lock directory {} ({})\n",
            self.iterations,
            m.cpus,
            m.cpu_model,
            m.kernel,
            self.lock_dir.display(),
            self.filesystem
        );
        let _ = writeln!(
            s,
            "{:<10} {:>22} {:>22} {:>24}",
            "latency", "acquire+release", "contended try", "SIGKILL -> acquired"
        );
        let _ = writeln!(
            s,
            "{:<10} {:>11}{:>11} {:>11}{:>11} {:>12}{:>12}",
            "(µs)", "median", "p99", "median", "p99", "median", "p99"
        );
        for r in &self.results {
            let _ = writeln!(
                s,
                "{:<10} {:>11.1}{:>11.1} {:>11.1}{:>11.1} {:>12.1}{:>12.1}",
                r.backend.as_str(),
                r.acquire_release.median_us,
                r.acquire_release.p99_us,
                r.contended.median_us,
                r.contended.p99_us,
                r.sigkill_to_acquire.median_us,
                r.sigkill_to_acquire.p99_us
            );
        }
        for (backend, why) in &self.absent {
            let _ = writeln!(s, "{:<10} absent: {why}", backend.as_str());
        }
        let _ = write!(s, "\n{:<36}", "behaviour");
        for r in &self.results {
            let _ = write!(s, "{:>12}", r.backend.as_str());
        }
        s.push('\n');
        for (i, (_, label)) in BEHAVIOURS.iter().enumerate() {
            let _ = write!(s, "{label:<36}");
            for r in &self.results {
                let _ = write!(s, "{:>12}", r.cells[i].short());
            }
            s.push('\n');
        }
        s.push_str(
            "\n(doc) = a documented fact, not measured here; every other cell comes from child processes.\n",
        );
        for r in &self.results {
            let _ = writeln!(s, "\n{}:", r.backend.as_str());
            for (i, (_, label)) in BEHAVIOURS.iter().enumerate() {
                let c = &r.cells[i];
                let _ = writeln!(
                    s,
                    "  {label}: {}{}: {}",
                    c.short(),
                    if c.measured { ", measured" } else { "" },
                    c.detail
                );
            }
        }
        s
    }

    fn to_json(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"iterations\":{},\"lock_dir\":{},\"filesystem\":{},\"machine\":{{\"cpus\":{},\"cpu_model\":{},\"kernel\":{}}},\"backends\":[",
            self.iterations,
            crate::json::string(&self.lock_dir.display().to_string()),
            crate::json::string(&self.filesystem),
            m.cpus,
            crate::json::string(&m.cpu_model),
            crate::json::string(&m.kernel)
        );
        for (i, r) in self.results.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let lat = |l: &Latency| {
                format!(
                    "{{\"median\":{:.3},\"p99\":{:.3},\"samples\":{}}}",
                    l.median_us, l.p99_us, l.samples
                )
            };
            let _ = write!(
                s,
                "{{\"backend\":{},\"acquire_release_us\":{},\"contended_us\":{},\"sigkill_to_acquire_us\":{},\"behaviour\":{{",
                crate::json::string(r.backend.as_str()),
                lat(&r.acquire_release),
                lat(&r.contended),
                lat(&r.sigkill_to_acquire)
            );
            for (j, (key, _)) in BEHAVIOURS.iter().enumerate() {
                let c = &r.cells[j];
                if j > 0 {
                    s.push(',');
                }
                let _ = write!(
                    s,
                    "\"{key}\":{{\"value\":{},\"measured\":{},\"detail\":{}}}",
                    c.value,
                    c.measured,
                    crate::json::string(&c.detail)
                );
            }
            s.push_str("}}");
        }
        s.push_str("],\"absent\":[");
        for (i, (backend, why)) in self.absent.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"backend\":{},\"reason\":{}}}",
                crate::json::string(backend.as_str()),
                crate::json::string(why)
            );
        }
        s.push_str("]}");
        s
    }

    /// Three panels of horizontal bars (median, with the p99 as a thin whisker), one per
    /// latency, each on its own linear scale fitted to the medians: a p99 beyond the scale is
    /// drawn to the edge with an arrow. The figures are written beside the bars.
    fn to_svg(&self) -> String {
        const LABEL: f64 = 80.0;
        const PLOT: f64 = 440.0;
        const FIGURES: f64 = LABEL + PLOT + 14.0;
        const WIDTH: f64 = FIGURES + 220.0;
        const BAR: f64 = 18.0;
        const GAP: f64 = 8.0;
        let colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];
        let panels: [(&str, Metric); 3] = [
            ("acquire + release", |r| r.acquire_release),
            ("contended try (names the holder)", |r| r.contended),
            ("holder SIGKILLed → lock acquired", |r| {
                r.sigkill_to_acquire
            }),
        ];
        let rows = self.results.len() as f64;
        let panel_h = 30.0 + rows * (BAR + GAP) + 26.0;
        let height = 64.0 + panel_h * panels.len() as f64 + 16.0;
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(
            s,
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">onlyone compare: latency per backend (bar: median; line: p99)</text>"
        );
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"42\" fill=\"#555\">{}</text>",
            xml(&format!(
                "{} iterations; {} CPUs ({}), {}; lock files on {}",
                self.iterations, m.cpus, m.cpu_model, m.kernel, self.filesystem
            ))
        );
        let mut y = 64.0;
        for (title, get) in panels {
            let max_median = self
                .results
                .iter()
                .map(|r| get(r).median_us)
                .fold(0.0_f64, f64::max)
                .max(1e-3);
            let full = nice_ceiling(max_median * 1.2);
            let scale = PLOT / full;
            let _ = writeln!(
                s,
                "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
                y + 14.0,
                xml(title)
            );
            let top = y + 24.0;
            let bottom = top + rows * (BAR + GAP);
            let _ = writeln!(
                s,
                "<line x1=\"{LABEL}\" y1=\"{top:.1}\" x2=\"{LABEL}\" y2=\"{bottom:.1}\" stroke=\"#999\"/><line x1=\"{LABEL}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" stroke=\"#999\"/>",
                LABEL + PLOT
            );
            let _ = writeln!(
                s,
                "<text x=\"{LABEL}\" y=\"{:.1}\" fill=\"#555\" text-anchor=\"middle\">0</text><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\" text-anchor=\"middle\">{}</text>",
                bottom + 14.0,
                LABEL + PLOT,
                bottom + 14.0,
                fmt_us(full)
            );
            for (i, r) in self.results.iter().enumerate() {
                let l = get(r);
                let by = top + i as f64 * (BAR + GAP) + GAP / 2.0;
                let mid = by + BAR / 2.0;
                let w = l.median_us * scale;
                let clipped = l.p99_us > full;
                let p99 = LABEL + l.p99_us.min(full) * scale;
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                    LABEL - 6.0,
                    by + BAR - 5.0,
                    r.backend.as_str()
                );
                let _ = writeln!(
                    s,
                    "<rect x=\"{LABEL}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{BAR}\" fill=\"{}\"/>",
                    colours[i % colours.len()]
                );
                if p99 > LABEL + w {
                    let _ = writeln!(
                        s,
                        "<line x1=\"{:.1}\" y1=\"{mid:.1}\" x2=\"{p99:.1}\" y2=\"{mid:.1}\" stroke=\"#333\"/>",
                        LABEL + w
                    );
                }
                if clipped {
                    let _ = writeln!(
                        s,
                        "<path d=\"M{:.1},{:.1} L{:.1},{mid:.1} L{:.1},{:.1} Z\" fill=\"#333\"/>",
                        p99 - 7.0,
                        mid - 4.0,
                        p99,
                        p99 - 7.0,
                        mid + 4.0
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "<line x1=\"{p99:.1}\" y1=\"{:.1}\" x2=\"{p99:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
                        by + 3.0,
                        by + BAR - 3.0
                    );
                }
                let _ = writeln!(
                    s,
                    "<text x=\"{FIGURES}\" y=\"{:.1}\">{}  (p99 {})</text>",
                    by + BAR - 5.0,
                    fmt_us(l.median_us),
                    fmt_us(l.p99_us)
                );
            }
            y += panel_h;
        }
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.1}\" fill=\"#555\">made by: onlyone compare --iterations {}{} --svg FILE</text>",
            y + 2.0,
            self.iterations,
            self.dir_arg
                .as_ref()
                .map(|d| xml(&format!(" --dir {}", d.display())))
                .unwrap_or_default()
        );
        s.push_str("</svg>\n");
        s
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// 1, 2 or 5 times a power of ten, at least `x`.
///
/// Powers of ten by repeated multiplication, not `log10`/`powf`: those would make the binary
/// load `libm` at every start, for every subcommand (see BENCHMARKS.md, CLI start-up).
fn nice_ceiling(x: f64) -> f64 {
    let mut p = 1e-3;
    while p * 10.0 <= x && p < 1e12 {
        p *= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * p)
        .find(|v| *v >= x)
        .unwrap_or(10.0 * p)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether onlyone runs as root (the namespace measurements need it; Windows has none).
fn is_root() -> bool {
    #[cfg(unix)]
    return nix::unistd::geteuid().is_root();
    #[cfg(windows)]
    return false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=100).map(Duration::from_micros).collect());
        assert_eq!(l.median_us, 51.0);
        assert_eq!(l.p99_us, 99.0);
        let one = Latency::of(vec![Duration::from_micros(7)]);
        assert_eq!((one.median_us, one.p99_us), (7.0, 7.0));
    }

    #[test]
    fn absent_strategies_say_why() {
        let absent = absent();
        for (backend, why) in &absent {
            assert!(!backend.is_available() || *backend == BackendKind::Postgres);
            assert!(!why.is_empty(), "{backend}");
        }
        assert!(absent.iter().any(|(b, _)| *b == BackendKind::Postgres));
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert!(why_absent(BackendKind::AbstractSocket).contains("cargo feature"));
        } else {
            assert_eq!(
                why_absent(BackendKind::AbstractSocket),
                "abstract Unix sockets exist only on Linux"
            );
        }
        assert!(why_absent(BackendKind::Postgres).contains("PostgreSQL server"));
    }

    #[test]
    fn scales_and_escapes() {
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(0.4), 0.5);
        assert_eq!(
            crate::json::string("a\"b\\\n\u{1}"),
            "\"a\\\"b\\\\\\n\\u0001\""
        );
        assert_eq!(xml("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
