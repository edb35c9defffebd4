//! The Linux body of the peers benchmark (see `benches/peers.rs`).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, open};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use onlyone::{Acquire, BackendKind, Builder, Lock};
use rustix::fs::FlockOperation;

/// Set in a re-executed copy of this binary: `ID\tNAME\tDIR`, hold that lock until stdin closes.
const HOLD_ENV: &str = "ONLYONE_PEERS_HOLD";
/// `ID:OP:N`: run one operation N times and exit (for callgrind and strace).
const LOOP_ENV: &str = "ONLYONE_PEERS_LOOP";
/// Connecting attempts against one abstract holder before it is replaced (its backlog is 4096).
const CONNECTS_PER_HOLDER: u64 = 2000;
/// single-instance leaks its socket on a failed try: close the leaked ones this often.
const LEAKS_PER_SWEEP: u64 = 500;
/// Alternating pairs per ratio, and the wall time of one block.
const PAIRS: usize = 15;
const BLOCK: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Flock,
    Abstract,
    PidFile,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Id {
    RawFlock,
    Std,
    Fs2,
    FdLock,
    NamedLock,
    OnlyoneFlock,
    RawAbstract,
    SingleInstance,
    OnlyoneAbstract,
    RawPidfile,
    Pidlock,
    OnlyonePidfile,
    // Timed only (no criterion group, no guarantee checks): the floors and lookups of the
    // three-row table (see EXTRA_IDS).
    RawFlockSame,
    RawPidfileSame,
    OnlyoneFlockLookup,
    OnlyoneAbstractLookup,
    OnlyonePidfileLookup,
}

const IDS: [Id; 12] = [
    Id::RawFlock,
    Id::Std,
    Id::Fs2,
    Id::FdLock,
    Id::NamedLock,
    Id::OnlyoneFlock,
    Id::RawAbstract,
    Id::SingleInstance,
    Id::OnlyoneAbstract,
    Id::RawPidfile,
    Id::Pidlock,
    Id::OnlyonePidfile,
];

/// Timed in the paired ratios only: `raw_flock_same` and `raw_pidfile_same` make the system calls
/// onlyone's acquire + release makes, bare (the floor of those guarantees: BENCHMARKS.md names
/// each call); `onlyone_*_lookup` is a failed try whose holder is then read (`held.pid`), the
/// "holder lookup" row, compared with the raw failed try.
const EXTRA_IDS: [Id; 5] = [
    Id::RawFlockSame,
    Id::RawPidfileSame,
    Id::OnlyoneFlockLookup,
    Id::OnlyoneAbstractLookup,
    Id::OnlyonePidfileLookup,
];

impl Id {
    fn as_str(self) -> &'static str {
        match self {
            Id::RawFlock => "raw_flock",
            Id::Std => "std",
            Id::Fs2 => "fs2",
            Id::FdLock => "fd-lock",
            Id::NamedLock => "named-lock",
            Id::OnlyoneFlock => "onlyone_flock",
            Id::RawAbstract => "raw_abstract",
            Id::SingleInstance => "single-instance",
            Id::OnlyoneAbstract => "onlyone_abstract",
            Id::RawPidfile => "raw_pidfile",
            Id::Pidlock => "pidlock",
            Id::OnlyonePidfile => "onlyone_pidfile",
            Id::RawFlockSame => "raw_flock_same",
            Id::RawPidfileSame => "raw_pidfile_same",
            Id::OnlyoneFlockLookup => "onlyone_flock_lookup",
            Id::OnlyoneAbstractLookup => "onlyone_abstract_lookup",
            Id::OnlyonePidfileLookup => "onlyone_pidfile_lookup",
        }
    }

    fn parse(s: &str) -> Option<Id> {
        IDS.iter()
            .chain(EXTRA_IDS.iter())
            .copied()
            .find(|id| id.as_str() == s)
    }

    /// The onlyone backend an `onlyone_*` id goes through.
    fn onlyone(self) -> Option<BackendKind> {
        match self {
            Id::OnlyoneFlock | Id::OnlyoneFlockLookup => Some(BackendKind::Flock),
            Id::OnlyoneAbstract | Id::OnlyoneAbstractLookup => Some(BackendKind::AbstractSocket),
            Id::OnlyonePidfile | Id::OnlyonePidfileLookup => Some(BackendKind::PidFile),
            _ => None,
        }
    }

    fn family(self) -> Family {
        match self {
            Id::RawFlock
            | Id::Std
            | Id::Fs2
            | Id::FdLock
            | Id::NamedLock
            | Id::OnlyoneFlock
            | Id::RawFlockSame
            | Id::OnlyoneFlockLookup => Family::Flock,
            Id::RawAbstract
            | Id::SingleInstance
            | Id::OnlyoneAbstract
            | Id::OnlyoneAbstractLookup => Family::Abstract,
            Id::RawPidfile
            | Id::Pidlock
            | Id::OnlyonePidfile
            | Id::RawPidfileSame
            | Id::OnlyonePidfileLookup => Family::PidFile,
        }
    }

    /// The raw system calls this id is compared with.
    fn raw(self) -> Id {
        match self.family() {
            Family::Flock => Id::RawFlock,
            Family::Abstract => Id::RawAbstract,
            Family::PidFile => Id::RawPidfile,
        }
    }

    fn is_raw(self) -> bool {
        self.raw() == self
    }

    /// Who holds the lock in the timed failed tries: the same holder for raw and peers of a
    /// family (onlyone, so that onlyone's failed try finds a record), except pidlock, whose
    /// reader deletes files that are not its own PID files.
    fn contended_holder(self) -> Id {
        match self {
            Id::Pidlock => Id::Pidlock,
            _ => match self.family() {
                Family::Flock => Id::OnlyoneFlock,
                Family::Abstract => Id::OnlyoneAbstract,
                Family::PidFile => Id::OnlyonePidfile,
            },
        }
    }

    /// Works across containers / namespaces: read from the sources, not measured here.
    fn namespaces(self) -> &'static str {
        match self.family() {
            Family::Flock => "yes, where the file system is shared (the lock is on the inode)",
            Family::Abstract => "no: one network namespace",
            Family::PidFile => match self {
                Id::OnlyonePidfile => {
                    "shared dir: a record from another PID namespace counts as held"
                }
                Id::Pidlock => "no: kill(pid, 0) on another namespace's pid",
                _ => "no: kill(pid, 0) on another namespace's pid",
            },
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    AcquireRelease,
    Contended,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::AcquireRelease => "acquire_release",
            Op::Contended => "contended",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        [Op::AcquireRelease, Op::Contended]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// The lock resources of one name in one directory, as every implementation names them.
#[derive(Clone)]
struct Res {
    name: String,
    dir: PathBuf,
    /// onlyone's flock file, locked by every flock implementation.
    flock_path: PathBuf,
    /// onlyone's abstract name (without the leading NUL), bound by every socket implementation.
    abstract_name: String,
    /// onlyone's PID file, also the raw PID file's path.
    pid_path: PathBuf,
    /// pidlock's own file (its reader deletes anything that is not a bare pid).
    pidlock_path: PathBuf,
}

impl Res {
    fn new(name: &str, dir: &Path) -> Res {
        let flock = build(BackendKind::Flock, name, dir);
        let abs = build(BackendKind::AbstractSocket, name, dir);
        let pid = build(BackendKind::PidFile, name, dir);
        Res {
            name: name.to_owned(),
            dir: dir.to_owned(),
            flock_path: PathBuf::from(flock.resource()),
            abstract_name: abs
                .resource()
                .strip_prefix('@')
                .expect("abstract resource")
                .to_owned(),
            pid_path: PathBuf::from(pid.resource()),
            pidlock_path: dir.join(format!("{name}.pidlock.pid")),
        }
    }

    fn abstract_addr(&self) -> UnixAddr {
        UnixAddr::new_abstract(self.abstract_name.as_bytes()).expect("abstract address")
    }
}

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
            "benches/peers compares the three local backends with their peers; this build has \
             no {missing} backend: run it with the default features"
        );
        return;
    }
    let dir = BenchDir::new();
    if let Ok(spec) = std::env::var(LOOP_ENV) {
        run_loop(&spec, dir.path());
        return;
    }
    let bench_mode = std::env::args().any(|a| a == "--bench");
    if bench_mode && std::env::args().any(|a| a == "floor") {
        floor_table(dir.path());
        return;
    }

    let checks = guarantee_checks(dir.path());
    if !bench_mode {
        // `cargo test --benches`: every operation once, then the guarantees.
        for op in [Op::AcquireRelease, Op::Contended] {
            let mut set = RunnerSet::new(op, dir.path());
            for id in IDS {
                set.runner(id).run(3);
            }
            let mut extra = RunnerSet::only(op, dir.path(), &EXTRA_IDS);
            for id in EXTRA_IDS {
                extra.runner(id).run(3);
            }
        }
        print_checks(&checks);
        return;
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    let mut pairs = Vec::new();
    for op in [Op::AcquireRelease, Op::Contended] {
        let mut set = RunnerSet::new(op, dir.path());
        let mut g = c.benchmark_group(op.as_str());
        for id in IDS {
            let r = set.runner(id);
            g.bench_function(id.as_str(), |b| b.iter_custom(|n| r.run(n)));
        }
        g.finish();
        for id in IDS.into_iter().filter(|id| !id.is_raw()) {
            pairs.push((op, id, paired_ratio(&mut set, id)));
        }
    }
    c.final_summary();
    print_table(&pairs, &checks);
}

// ---------------------------------------------------------------------------------------------
// Operations.

/// One operation of one implementation, run `n` times at a time outside the timed region's
/// housekeeping (holder replacement, leaked-descriptor sweeps).
struct Runner {
    op: Box<dyn FnMut()>,
    /// Iterations allowed before `between` must run.
    budget: u64,
    used: u64,
    between: Option<Box<dyn FnMut()>>,
}

impl Runner {
    fn plain(op: impl FnMut() + 'static) -> Runner {
        Runner {
            op: Box::new(op),
            budget: u64::MAX,
            used: 0,
            between: None,
        }
    }

    fn with_between(
        op: impl FnMut() + 'static,
        budget: u64,
        between: impl FnMut() + 'static,
    ) -> Runner {
        Runner {
            op: Box::new(op),
            budget,
            used: 0,
            between: Some(Box::new(between)),
        }
    }

    fn run(&mut self, n: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            if self.used >= self.budget {
                if let Some(b) = self.between.as_mut() {
                    b();
                }
                self.used = 0;
            }
            let k = left.min(self.budget - self.used);
            let start = Instant::now();
            for _ in 0..k {
                (self.op)();
            }
            total += start.elapsed();
            self.used += k;
            left -= k;
        }
        total
    }
}

/// Every implementation's runner for one operation, with the holder processes it needs.
struct RunnerSet {
    runners: Vec<(Id, Runner)>,
    _holders: Vec<Rc<RefCell<HolderProc>>>,
}

impl RunnerSet {
    fn new(op: Op, dir: &Path) -> RunnerSet {
        Self::only(op, dir, &IDS)
    }

    fn only(op: Op, dir: &Path, ids: &[Id]) -> RunnerSet {
        let name = format!("peers-{}-{}", &op.as_str()[..2], std::process::id());
        let res = Res::new(&name, dir);
        let mut holders: Vec<(Id, Rc<RefCell<HolderProc>>)> = Vec::new();
        if op == Op::Contended {
            for id in ids {
                let h = id.contended_holder();
                if !holders.iter().any(|(x, _)| *x == h) {
                    holders.push((h, Rc::new(RefCell::new(HolderProc::spawn(h, &res)))));
                }
            }
        }
        let runners = ids
            .iter()
            .map(|&id| {
                let holder = holders
                    .iter()
                    .find(|(h, _)| *h == id.contended_holder())
                    .map(|(_, p)| p.clone());
                (id, make_runner(id, op, &res, holder))
            })
            .collect();
        RunnerSet {
            runners,
            _holders: holders.into_iter().map(|(_, h)| h).collect(),
        }
    }

    fn runner(&mut self, id: Id) -> &mut Runner {
        &mut self
            .runners
            .iter_mut()
            .find(|(x, _)| *x == id)
            .expect("runner")
            .1
    }

    fn pair(&mut self, a: Id, b: Id) -> (&mut Runner, &mut Runner) {
        let ia = self.runners.iter().position(|(x, _)| *x == a).expect("a");
        let ib = self.runners.iter().position(|(x, _)| *x == b).expect("b");
        assert_ne!(ia, ib);
        if ia < ib {
            let (l, r) = self.runners.split_at_mut(ib);
            (&mut l[ia].1, &mut r[0].1)
        } else {
            let (l, r) = self.runners.split_at_mut(ia);
            (&mut r[0].1, &mut l[ib].1)
        }
    }
}

fn make_runner(id: Id, op: Op, res: &Res, holder: Option<Rc<RefCell<HolderProc>>>) -> Runner {
    let r = res.clone();
    match op {
        Op::AcquireRelease => Runner::plain(acquire_release_op(id, &r)),
        Op::Contended => {
            let once = contended_op(id, &r);
            match id {
                Id::OnlyoneAbstract | Id::OnlyoneAbstractLookup => {
                    let h = holder.expect("abstract holder");
                    Runner::with_between(once, CONNECTS_PER_HOLDER, move || {
                        h.borrow_mut().restart()
                    })
                }
                Id::SingleInstance => {
                    let before = open_fds();
                    Runner::with_between(once, LEAKS_PER_SWEEP, move || {
                        close_leaked_sockets(&before)
                    })
                }
                _ => Runner::plain(once),
            }
        }
    }
}

fn open_std(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open")
}

fn acquire_release_op(id: Id, r: &Res) -> Box<dyn FnMut()> {
    let path = r.flock_path.clone();
    match id {
        Id::RawFlock => Box::new(move || {
            let file = open_rw(&path, OFlag::O_CREAT);
            rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).expect("raw flock");
            drop(black_box(file));
        }),
        Id::Std => Box::new(move || {
            let file = open_std(&path);
            std_try_lock(&file).expect("std try_lock");
            drop(black_box(file));
        }),
        Id::Fs2 => Box::new(move || {
            let file = open_std(&path);
            fs2::FileExt::try_lock_exclusive(&file).expect("fs2 try_lock_exclusive");
            drop(black_box(file));
        }),
        Id::FdLock => Box::new(move || {
            let mut lock = fd_lock::RwLock::new(open_std(&path));
            let guard = lock.try_write().expect("fd-lock try_write");
            drop(black_box(guard));
        }),
        Id::NamedLock => Box::new(move || {
            let lock = named_lock::NamedLock::with_path(&path).expect("named-lock with_path");
            let guard = lock.try_lock().expect("named-lock try_lock");
            drop(black_box(guard));
        }),
        Id::RawAbstract => {
            let addr = r.abstract_addr();
            Box::new(move || {
                let fd = stream_socket();
                bind(fd.as_raw_fd(), &addr).expect("raw bind");
                listen(&fd, Backlog::MAXCONN).expect("raw listen");
                drop(black_box(fd));
            })
        }
        Id::SingleInstance => {
            let name = r.abstract_name.clone();
            Box::new(move || {
                let s = single_instance::SingleInstance::new(&name).expect("single-instance");
                assert!(s.is_single(), "single-instance: {name} is held");
                drop(black_box(s));
            })
        }
        Id::RawPidfile => {
            let (dir, pid_path) = (r.dir.clone(), r.pid_path.clone());
            let content = raw_record();
            Box::new(move || {
                let file = raw_pidfile_link(&dir, &pid_path, &content).expect("raw linkat");
                nix::unistd::unlink(&pid_path).expect("raw unlink");
                drop(black_box(file));
            })
        }
        Id::Pidlock => {
            let path = r.pidlock_path.clone();
            Box::new(move || {
                let mut lock = pidlock::Pidlock::new_validated(&path).expect("pidlock path");
                lock.acquire().expect("pidlock acquire");
                lock.release().expect("pidlock release");
                drop(black_box(lock));
            })
        }
        Id::RawFlockSame => {
            let record = onlyone::record::format(&onlyone::os::ProcessIdentity::current());
            Box::new(move || raw_flock_same(&path, &record))
        }
        Id::RawPidfileSame => {
            let (dir, pid_path) = (r.dir.clone(), r.pid_path.clone());
            let record = onlyone::record::format(&onlyone::os::ProcessIdentity::current());
            Box::new(move || raw_pidfile_same(&dir, &pid_path, &record))
        }
        _ => {
            let lock = build(id.onlyone().expect("an onlyone id"), &r.name, &r.dir);
            Box::new(move || match lock.try_acquire().expect("try_acquire") {
                Acquire::Acquired(g) => g.release().expect("release"),
                Acquire::Held(h) => panic!("{} is held by {h}", lock.resource()),
            })
        }
    }
}

/// onlyone's flock acquire + release, bare: `open` + `flock` + `fstat` (inode, regular file,
/// link count) + `lstat` (the path still names it) + `getpid` (the record) + `pwrite` (the
/// record) | `getpid` (not a forked copy) + `ftruncate` (erase the record) + `flock(LOCK_UN)` +
/// `futimens` (wake inotify waiters) + `close`.
fn raw_flock_same(path: &Path, record: &str) {
    let flags = OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    let file = open_rw(path, flags);
    rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).expect("raw flock");
    let (meta, link) = (fstat(&file), lstat(path));
    assert_eq!(meta, link);
    black_box(rustix::process::getpid());
    rustix::io::pwrite(&file, record.as_bytes(), 0).expect("pwrite");
    black_box(rustix::process::getpid());
    rustix::fs::ftruncate(&file, 0).expect("ftruncate");
    rustix::fs::flock(&file, FlockOperation::Unlock).expect("unlock");
    let now = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    };
    let times = rustix::fs::Timestamps {
        last_access: now,
        last_modification: now,
    };
    rustix::fs::futimens(&file, &times).expect("futimens");
    drop(black_box(file));
}

/// `fstat` as std makes it (`statx(fd, "", AT_EMPTY_PATH)`): device and inode.
fn fstat(file: &File) -> (u32, u32, u64) {
    use rustix::fs::{AtFlags, StatxFlags, statx};
    let flags = AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW;
    let m = statx(file, "", flags, StatxFlags::BASIC_STATS | StatxFlags::BTIME).expect("fstat");
    (m.stx_dev_major, m.stx_dev_minor, m.stx_ino)
}

/// `lstat` as std makes it (`statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW)`).
fn lstat(path: &Path) -> (u32, u32, u64) {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    let flags = AtFlags::SYMLINK_NOFOLLOW;
    let m = statx(
        CWD,
        path,
        flags,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )
    .expect("lstat");
    (m.stx_dev_major, m.stx_dev_minor, m.stx_ino)
}

/// onlyone's PID-file acquire + release, bare: `open` of the path (`ENOENT`: no PID file) +
/// `open(O_TMPFILE)` + `write` + `linkat` + `fstat` (the inode, to recognise it at release) +
/// `getpid` (the record) | `getpid` (not a forked copy) + `lstat` (still our file) + `unlink` +
/// `close`.
fn raw_pidfile_same(dir: &Path, path: &Path, record: &str) {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    assert_eq!(open(path, flags, Mode::empty()).err(), Some(Errno::ENOENT));
    black_box(rustix::process::getpid());
    let file = raw_pidfile_link(dir, path, record).expect("raw linkat");
    let meta = fstat(&file);
    black_box(rustix::process::getpid());
    assert_eq!(meta, lstat(path));
    nix::unistd::unlink(path).expect("raw unlink");
    drop(black_box(file));
}

fn contended_op(id: Id, r: &Res) -> Box<dyn FnMut()> {
    let path = r.flock_path.clone();
    match id {
        Id::RawFlock => Box::new(move || {
            let file = open_rw(&path, OFlag::O_CREAT);
            let e = rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
                .expect_err("raw flock must fail");
            assert_eq!(e, rustix::io::Errno::WOULDBLOCK);
            drop(black_box(file));
        }),
        Id::Std => Box::new(move || {
            let file = open_std(&path);
            assert!(matches!(
                std_try_lock(&file),
                Err(std::fs::TryLockError::WouldBlock)
            ));
            drop(black_box(file));
        }),
        Id::Fs2 => Box::new(move || {
            let file = open_std(&path);
            let e = fs2::FileExt::try_lock_exclusive(&file).expect_err("fs2 must fail");
            assert_eq!(e.raw_os_error(), Some(Errno::EWOULDBLOCK as i32));
            drop(black_box(file));
        }),
        Id::FdLock => Box::new(move || {
            let mut lock = fd_lock::RwLock::new(open_std(&path));
            let e = lock.try_write().expect_err("fd-lock must fail");
            assert_eq!(e.raw_os_error(), Some(Errno::EWOULDBLOCK as i32));
            drop(black_box(lock));
        }),
        Id::NamedLock => Box::new(move || {
            let lock = named_lock::NamedLock::with_path(&path).expect("named-lock with_path");
            assert!(matches!(
                lock.try_lock(),
                Err(named_lock::Error::WouldBlock)
            ));
            drop(black_box(lock));
        }),
        Id::RawAbstract => {
            let addr = r.abstract_addr();
            Box::new(move || {
                let fd = stream_socket();
                assert_eq!(bind(fd.as_raw_fd(), &addr), Err(Errno::EADDRINUSE));
                drop(black_box(fd));
            })
        }
        Id::SingleInstance => {
            let name = r.abstract_name.clone();
            Box::new(move || {
                let s = single_instance::SingleInstance::new(&name).expect("single-instance");
                assert!(!s.is_single(), "single-instance: {name} was free");
                drop(black_box(s));
            })
        }
        Id::RawPidfile => {
            let path = r.pid_path.clone();
            Box::new(move || {
                black_box(raw_pidfile_contended(&path));
            })
        }
        Id::Pidlock => {
            let path = r.pidlock_path.clone();
            Box::new(move || {
                let mut lock = pidlock::Pidlock::new_validated(&path).expect("pidlock path");
                assert_eq!(lock.acquire(), Err(pidlock::PidlockError::LockExists));
                drop(black_box(lock));
            })
        }
        Id::RawFlockSame => contended_op(Id::RawFlock, r),
        Id::RawPidfileSame => contended_op(Id::RawPidfile, r),
        Id::OnlyoneFlockLookup | Id::OnlyoneAbstractLookup | Id::OnlyonePidfileLookup => {
            let lock = build(id.onlyone().expect("an onlyone id"), &r.name, &r.dir);
            Box::new(move || match lock.try_acquire().expect("try_acquire") {
                Acquire::Held(h) => {
                    assert!(
                        h.pid.is_some(),
                        "{}: holder not named: {h}",
                        lock.resource()
                    );
                    black_box(h);
                }
                Acquire::Acquired(_) => panic!("{} was free", lock.resource()),
            })
        }
        _ => {
            let lock = build(id.onlyone().expect("an onlyone id"), &r.name, &r.dir);
            Box::new(move || match lock.try_acquire().expect("try_acquire") {
                Acquire::Held(h) => {
                    black_box(h);
                }
                Acquire::Acquired(_) => panic!("{} was free", lock.resource()),
            })
        }
    }
}

// `File::try_lock` is stable since Rust 1.89; the library's MSRV (1.85) does not cover the
// benches, which need criterion 0.8 (1.86) anyway.
#[allow(clippy::incompatible_msrv)]
fn std_try_lock(file: &File) -> Result<(), std::fs::TryLockError> {
    file.try_lock()
}

fn backend_of(id: Id) -> BackendKind {
    match id {
        Id::OnlyoneFlock => BackendKind::Flock,
        Id::OnlyoneAbstract => BackendKind::AbstractSocket,
        Id::OnlyonePidfile => BackendKind::PidFile,
        _ => unreachable!("{id:?} is not onlyone"),
    }
}

// ---------------------------------------------------------------------------------------------
// Ratios of alternating same-run pairs.

struct Paired {
    /// Median time per operation of the peer and of raw over the pairs, ns.
    peer_ns: f64,
    raw_ns: f64,
    median: f64,
    min: f64,
    max: f64,
}

fn paired_ratio(set: &mut RunnerSet, id: Id) -> Paired {
    paired_ratio_to(set, id.raw(), id, PAIRS)
}

fn paired_ratio_to(set: &mut RunnerSet, raw: Id, id: Id, pairs: usize) -> Paired {
    let (r, p) = set.pair(raw, id);
    // Calibrate a block to about BLOCK of the slower of the two.
    r.run(20);
    p.run(20);
    let per = r.run(50).max(p.run(50)) / 50;
    let k = (BLOCK.as_nanos() / per.as_nanos().max(1)).clamp(20, 20_000) as u64;
    let (mut ratios, mut peer_ns, mut raw_ns) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let (tr, tp) = if i % 2 == 0 {
            let tr = r.run(k);
            (tr, p.run(k))
        } else {
            let tp = p.run(k);
            (r.run(k), tp)
        };
        ratios.push(tp.as_secs_f64() / tr.as_secs_f64());
        peer_ns.push(tp.as_nanos() as f64 / k as f64);
        raw_ns.push(tr.as_nanos() as f64 / k as f64);
    }
    let median = median_f(&mut ratios);
    Paired {
        peer_ns: median_f(&mut peer_ns),
        raw_ns: median_f(&mut raw_ns),
        median,
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max: ratios.iter().copied().fold(0.0, f64::max),
    }
}

/// Alternating pairs per ratio of the floor table.
const FLOOR_PAIRS: usize = 9;

/// The three-row table of BENCHMARKS.md (`cargo bench --bench peers -- floor`, a few seconds):
/// each onlyone operation against the raw calls of its family and, for acquire + release of the
/// file backends, against the raw calls that make the same system calls as onlyone.
fn floor_table(dir: &Path) {
    use Id::*;
    let rows: [(Op, Id, Id); 12] = [
        (Op::AcquireRelease, RawAbstract, OnlyoneAbstract),
        (Op::AcquireRelease, RawFlock, OnlyoneFlock),
        (Op::AcquireRelease, RawFlockSame, OnlyoneFlock),
        (Op::AcquireRelease, RawFlock, RawFlockSame),
        (Op::AcquireRelease, RawPidfile, OnlyonePidfile),
        (Op::AcquireRelease, RawPidfileSame, OnlyonePidfile),
        (Op::Contended, RawAbstract, OnlyoneAbstract),
        (Op::Contended, RawFlock, OnlyoneFlock),
        (Op::Contended, RawPidfile, OnlyonePidfile),
        (Op::Contended, RawAbstract, OnlyoneAbstractLookup),
        (Op::Contended, RawFlock, OnlyoneFlockLookup),
        (Op::Contended, RawPidfile, OnlyonePidfileLookup),
    ];
    println!(
        "floor: ratio = median of {FLOOR_PAIRS} alternating same-run pairs of ~{} ms blocks [min-max] (µs per operation: id / baseline)",
        BLOCK.as_millis()
    );
    println!("| operation | id | ÷ baseline | ratio [spread] | µs |");
    println!("| --- | --- | --- | --- | --- |");
    for op in [Op::AcquireRelease, Op::Contended] {
        let mut ids: Vec<Id> = Vec::new();
        for (_, a, b) in rows.iter().filter(|(o, _, _)| *o == op) {
            for id in [*a, *b] {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let mut set = RunnerSet::only(op, dir, &ids);
        for (_, raw, id) in rows.iter().filter(|(o, _, _)| *o == op) {
            let p = paired_ratio_to(&mut set, *raw, *id, FLOOR_PAIRS);
            println!(
                "| {} | {} | {} | {:.2}× [{:.2}-{:.2}] | {:.2} / {:.2} |",
                op.as_str(),
                id.as_str(),
                raw.as_str(),
                p.median,
                p.min,
                p.max,
                p.peer_ns / 1000.0,
                p.raw_ns / 1000.0
            );
        }
    }
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Criterion's median estimate (ns) for `group/id`, from the latest run that measured it.
fn criterion_median_ns(group: &str, id: &str) -> Option<f64> {
    let path = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn print_table(pairs: &[(Op, Id, Paired)], checks: &[(Id, Checks)]) {
    println!(
        "\npeers: criterion median per operation; ratio to the raw calls of the family = median of \
         {PAIRS} alternating same-run pairs [min-max]"
    );
    println!(
        "| id | acquire+release | ÷ raw [spread] | failed try | ÷ raw [spread] | close-on-exec (ran) | holder on conflict (ran) | free after holder SIGKILLed (ran) | across namespaces (read) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for id in IDS {
        let mut cells = Vec::new();
        for op in [Op::AcquireRelease, Op::Contended] {
            let t = criterion_median_ns(op.as_str(), id.as_str())
                .map(|ns| format!("{:.2} µs", ns / 1000.0))
                .unwrap_or_else(|| "-".into());
            let ratio = match pairs.iter().find(|(o, i, _)| *o == op && *i == id) {
                Some((_, _, p)) => format!(
                    "{:.2}× [{:.2}-{:.2}] ({:.2}/{:.2} µs)",
                    p.median,
                    p.min,
                    p.max,
                    p.peer_ns / 1000.0,
                    p.raw_ns / 1000.0
                ),
                None if id.is_raw() => "1 (baseline)".into(),
                None => "-".into(),
            };
            cells.push(t);
            cells.push(ratio);
        }
        let c = &checks.iter().find(|(i, _)| *i == id).expect("checks").1;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            id.as_str(),
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            c.cloexec,
            c.holder,
            c.stale,
            id.namespaces()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Guarantee checks, run against real holder processes.

struct Checks {
    cloexec: String,
    holder: String,
    stale: String,
}

fn guarantee_checks(dir: &Path) -> Vec<(Id, Checks)> {
    IDS.iter()
        .map(|&id| {
            let pid = std::process::id();
            let cloexec = check_cloexec(id, &Res::new(&format!("ck-{}-{pid}", id.as_str()), dir));
            let holder = check_holder(id, &Res::new(&format!("hi-{}-{pid}", id.as_str()), dir));
            let stale = check_stale(id, &Res::new(&format!("st-{}-{pid}", id.as_str()), dir));
            (
                id,
                Checks {
                    cloexec,
                    holder,
                    stale,
                },
            )
        })
        .collect()
}

fn print_checks(checks: &[(Id, Checks)]) {
    println!(
        "| id | close-on-exec | holder on conflict | free after holder SIGKILLed | across namespaces (read) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (id, c) in checks {
        println!(
            "| {} | {} | {} | {} | {} |",
            id.as_str(),
            c.cloexec,
            c.holder,
            c.stale,
            id.namespaces()
        );
    }
}

/// Whether every descriptor the held lock keeps open is close-on-exec: the descriptors that
/// appear in /proc/self/fd while it is held.
fn check_cloexec(id: Id, res: &Res) -> String {
    let before = open_fds();
    let mut verdict = String::new();
    with_held(id, res, || {
        let new: Vec<RawFd> = open_fds().difference(&before).copied().collect();
        let mut without = 0;
        for fd in &new {
            if !is_cloexec(*fd) {
                without += 1;
            }
        }
        verdict = match (new.len(), without) {
            (0, _) => "no descriptor kept".into(),
            (n, 0) => format!("yes ({n} fd)"),
            (n, w) => format!("**no** ({w} of {n} fd inherited by exec)"),
        };
    });
    // A failed try must not leave descriptors behind either.
    let holder = HolderProc::spawn(id, res);
    let before = open_fds();
    let _ = try_once(id, res);
    let leaked = open_fds().difference(&before).count();
    drop(holder);
    if leaked > 0 {
        close_leaked_sockets(&before);
        verdict += &format!("; **a failed try leaks {leaked} fd**");
    }
    verdict
}

fn check_holder(id: Id, res: &Res) -> String {
    let holder = HolderProc::spawn(id, res);
    let pid = holder.pid();
    let before = open_fds();
    let out = try_once(id, res);
    close_leaked_sockets(&before);
    let verdict = match out {
        Outcome::Acquired => "**acquired while held**".into(),
        Outcome::Held(None) => "no".into(),
        Outcome::Held(Some(p)) if p == pid => "yes: the holder (pid checked)".into(),
        Outcome::Held(Some(p)) => format!("**wrong pid {p} (holder {pid})**"),
        Outcome::HeldAsk(Some(p)) if p == pid => "pid, by a second call (`get_owner`)".into(),
        Outcome::HeldAsk(p) => format!("**get_owner said {p:?} (holder {pid})**"),
    };
    drop(holder);
    if id.is_raw() {
        format!("{verdict} (not asked)")
    } else {
        verdict
    }
}

fn check_stale(id: Id, res: &Res) -> String {
    let mut holder = HolderProc::spawn(id, res);
    holder.kill();
    let before = open_fds();
    let out = try_once(id, res);
    close_leaked_sockets(&before);
    match out {
        Outcome::Acquired => "yes".into(),
        _ => "**no**: still held".into(),
    }
}

enum Outcome {
    Acquired,
    /// Held; the pid the failed try names, if any.
    Held(Option<u32>),
    /// Held; the pid a second call names.
    HeldAsk(Option<u32>),
}

/// One try; releases at once when it gets the lock.
fn try_once(id: Id, r: &Res) -> Outcome {
    let path = &r.flock_path;
    let flock_outcome = |ok: bool| {
        if ok {
            Outcome::Acquired
        } else {
            Outcome::Held(None)
        }
    };
    match id {
        Id::RawFlock => {
            let file = open_rw(path, OFlag::O_CREAT);
            flock_outcome(
                rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok(),
            )
        }
        Id::Std => flock_outcome(std_try_lock(&open_std(path)).is_ok()),
        Id::Fs2 => flock_outcome(fs2::FileExt::try_lock_exclusive(&open_std(path)).is_ok()),
        Id::FdLock => {
            let mut lock = fd_lock::RwLock::new(open_std(path));
            flock_outcome(lock.try_write().is_ok())
        }
        Id::NamedLock => {
            let lock = named_lock::NamedLock::with_path(path).expect("named-lock");
            flock_outcome(lock.try_lock().is_ok())
        }
        Id::RawAbstract => {
            let fd = stream_socket();
            flock_outcome(bind(fd.as_raw_fd(), &r.abstract_addr()).is_ok())
        }
        Id::SingleInstance => flock_outcome(
            single_instance::SingleInstance::new(&r.abstract_name)
                .expect("single-instance")
                .is_single(),
        ),
        Id::RawPidfile => match raw_pidfile_link(&r.dir, &r.pid_path, &raw_record()) {
            Ok(_) => {
                nix::unistd::unlink(&r.pid_path).expect("unlink");
                Outcome::Acquired
            }
            Err(Errno::EEXIST) => Outcome::Held(None),
            Err(e) => panic!("raw pidfile: {e}"),
        },
        Id::Pidlock => {
            let mut lock = pidlock::Pidlock::new_validated(&r.pidlock_path).expect("pidlock");
            match lock.acquire() {
                Ok(()) => {
                    lock.release().expect("pidlock release");
                    Outcome::Acquired
                }
                Err(pidlock::PidlockError::LockExists) => Outcome::HeldAsk(
                    lock.get_owner()
                        .ok()
                        .flatten()
                        .and_then(|p| u32::try_from(p).ok()),
                ),
                Err(e) => panic!("pidlock: {e}"),
            }
        }
        _ => {
            let lock = build(backend_of(id), &r.name, &r.dir);
            match lock.try_acquire().expect("try_acquire") {
                Acquire::Acquired(g) => {
                    g.release().expect("release");
                    Outcome::Acquired
                }
                Acquire::Held(h) => Outcome::Held(h.pid),
            }
        }
    }
}

/// Takes the lock through `id`, runs `f` while it is held, and lets it go.
fn with_held(id: Id, r: &Res, f: impl FnOnce()) {
    let path = &r.flock_path;
    match id {
        Id::RawFlock => {
            let file = open_rw(path, OFlag::O_CREAT);
            rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).expect("flock");
            f();
        }
        Id::Std => {
            let file = open_std(path);
            std_try_lock(&file).expect("std try_lock");
            f();
        }
        Id::Fs2 => {
            let file = open_std(path);
            fs2::FileExt::try_lock_exclusive(&file).expect("fs2");
            f();
        }
        Id::FdLock => {
            let mut lock = fd_lock::RwLock::new(open_std(path));
            let _guard = lock.try_write().expect("fd-lock");
            f();
        }
        Id::NamedLock => {
            let lock = named_lock::NamedLock::with_path(path).expect("named-lock");
            let _guard = lock.try_lock().expect("named-lock try_lock");
            f();
        }
        Id::RawAbstract => {
            let fd = stream_socket();
            bind(fd.as_raw_fd(), &r.abstract_addr()).expect("bind");
            listen(&fd, Backlog::MAXCONN).expect("listen");
            f();
        }
        Id::SingleInstance => {
            let s = single_instance::SingleInstance::new(&r.abstract_name).expect("single");
            assert!(s.is_single());
            f();
        }
        Id::RawPidfile => {
            let file = raw_pidfile_link(&r.dir, &r.pid_path, &raw_record()).expect("linkat");
            drop(file);
            f();
            nix::unistd::unlink(&r.pid_path).expect("unlink");
        }
        Id::Pidlock => {
            let mut lock = pidlock::Pidlock::new_validated(&r.pidlock_path).expect("pidlock");
            lock.acquire().expect("pidlock acquire");
            f();
            lock.release().expect("pidlock release");
        }
        _ => {
            let lock = build(backend_of(id), &r.name, &r.dir);
            let guard = match lock.try_acquire().expect("try_acquire") {
                Acquire::Acquired(g) => g,
                Acquire::Held(h) => panic!("{} is held by {h}", lock.resource()),
            };
            f();
            guard.release().expect("release");
        }
    }
}

/// Whether `fd` is close-on-exec, from the `flags:` line of /proc/self/fdinfo/FD (octal; the
/// kernel shows `O_CLOEXEC` there for a descriptor with `FD_CLOEXEC`).
fn is_cloexec(fd: RawFd) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
        .expect("fdinfo flags");
    flags & OFlag::O_CLOEXEC.bits() != 0
}

/// This process's open descriptors (without the one that lists them).
fn open_fds() -> BTreeSet<RawFd> {
    let mut fds = BTreeSet::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
    {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // The directory being listed is itself an open descriptor.
        if std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with("/proc")) {
            continue;
        }
        fds.insert(fd);
    }
    fds
}

/// Closes the sockets opened since `before` (single-instance leaks one per failed try).
fn close_leaked_sockets(before: &BTreeSet<RawFd>) {
    for fd in open_fds().difference(before) {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        if target.to_string_lossy().starts_with("socket:") {
            let _ = nix::unistd::close(*fd);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One operation N times, for callgrind and strace.

fn run_loop(spec: &str, dir: &Path) {
    let mut parts = spec.split(':');
    let (Some(id), Some(op), Some(n)) = (
        parts.next().and_then(Id::parse),
        parts.next().and_then(Op::parse),
        parts.next().and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!(
            "bad {LOOP_ENV}={spec:?}: want ID:OP:N, ID one of {}, OP acquire_release or contended",
            IDS.map(Id::as_str).join(", ")
        );
        std::process::exit(64);
    };
    let mut set = RunnerSet::only(op, dir, &[id]);
    let r = set.runner(id);
    if id == Id::SingleInstance && op == Op::Contended {
        // Counted runs leave out the sweep of single-instance's leaked sockets when the
        // descriptor limit allows, so that only its own calls are counted.
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        if n + 64 < limit {
            r.budget = u64::MAX;
        } else {
            eprintln!("N={n} is near the descriptor limit {limit}: the counts include sweeps");
        }
    }
    // One untimed operation first: lazily initialised state (the lock directory check, std's
    // statics) is then outside every N.
    r.run(1);
    let t = r.run(n);
    eprintln!(
        "{} {} x{n}: {:.2} µs each",
        id.as_str(),
        op.as_str(),
        t.as_secs_f64() * 1e6 / n.max(1) as f64
    );
}

// ---------------------------------------------------------------------------------------------
// Raw helpers.

fn build(backend: BackendKind, name: &str, dir: &Path) -> Box<dyn Lock> {
    Builder::new(name)
        .backend(backend)
        .lock_dir(dir)
        .build()
        .unwrap_or_else(|e| panic!("cannot build the {backend} lock: {e}"))
}

fn stream_socket() -> std::os::fd::OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
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

/// The raw PID file's content: our pid and start time, as a careful C program would write.
fn raw_record() -> String {
    let me = std::process::id();
    format!("{me}\nstart {}\n", start_ticks(me))
}

fn start_ticks(pid: u32) -> u64 {
    let mut buf = [0u8; 1024];
    let n = read_into(Path::new(&format!("/proc/{pid}/stat")), &mut buf);
    let stat = std::str::from_utf8(&buf[..n]).expect("utf-8 stat");
    stat[stat.rfind(')').expect("stat") + 1..]
        .split_ascii_whitespace()
        .nth(19)
        .and_then(|s| s.parse().ok())
        .expect("start time")
}

/// `open(dir, O_TMPFILE)` + `write` + `linkat` into place; `EEXIST` when the path exists.
fn raw_pidfile_link(dir: &Path, path: &Path, content: &str) -> Result<File, Errno> {
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
        path,
        AtFlags::AT_SYMLINK_FOLLOW,
    )?;
    Ok(file)
}

/// The floor of a failed PID-file try: `O_EXCL` create fails with `EEXIST`, read the file,
/// `kill(pid, 0)`, compare `/proc/PID/stat`'s start time with the recorded one.
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
    assert_eq!(
        Some(start_ticks(pid)),
        start,
        "the recorded start time matches"
    );
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

/// A fresh private directory on tmpfs (`/dev/shm`, or `$ONLYONE_BENCH_DIR`), removed at the end.
struct BenchDir(tempfile::TempDir);

impl BenchDir {
    fn new() -> BenchDir {
        let parent = std::env::var_os("ONLYONE_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/shm"));
        BenchDir(
            tempfile::Builder::new()
                .prefix("onlyone-peers-")
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
// The holder: this binary again, holding one lock through one implementation until its stdin
// closes.

fn hold(spec: &str) {
    let mut parts = spec.splitn(3, '\t');
    let (Some(id), Some(name), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        eprintln!("bad {HOLD_ENV}: {spec:?}");
        std::process::exit(64);
    };
    let id = Id::parse(id).expect("holder id");
    let res = Res::new(name, Path::new(dir));
    with_held(id, &res, || {
        println!("ready");
        std::io::stdout().flush().expect("flush");
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    });
}

/// A holder child process, SIGKILLed and reaped on drop (also when a benchmark panics).
struct HolderProc {
    child: Option<Child>,
    id: Id,
    res: Res,
}

impl HolderProc {
    fn spawn(id: Id, res: &Res) -> HolderProc {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(
                HOLD_ENV,
                format!("{}\t{}\t{}", id.as_str(), res.name, res.dir.display()),
            )
            .env_remove(LOOP_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line);
        let mut holder = HolderProc {
            child: Some(child),
            id,
            res: res.clone(),
        };
        if read.is_err() || line.trim() != "ready" {
            holder.kill();
            panic!("holder {} said {line:?}", id.as_str());
        }
        holder
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, then reap: the kernel has released what the holder held when this returns.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Replaces the holder by a fresh one.
    fn restart(&mut self) {
        self.kill();
        *self = HolderProc::spawn(self.id, &self.res);
    }
}

impl Drop for HolderProc {
    fn drop(&mut self) {
        self.kill();
    }
}
