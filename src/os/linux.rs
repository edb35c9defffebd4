//! Linux and Android: identity from `/proc` (proc(5)), pidfd (pidfd_open(2)) to wait for a
//! process, inotify (inotify(7)) to wake on a lock file's release, `O_TMPFILE` (open(2)) to create
//! a file atomically, `/proc/locks` and `/proc/PID/fdinfo` to name flock holders.

use std::fs;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use super::ProcStat;
#[cfg(any(feature = "flock", feature = "pidfile"))]
pub(crate) use super::unix::flock_try_exclusive;
#[cfg(feature = "flock")]
pub(crate) use super::unix::{flock_shared_probe, flock_unlock};

/// `/proc/PID/stat`, its start time moved to the clock of the initial time namespace. `None`
/// when `/proc` is not our PID namespace's (a pid of ours names another process there).
pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    if !proc_is_ours() {
        return None;
    }
    read_stat(&format!("/proc/{pid}/stat"))
}

/// The calling process's own `stat`, through `/proc/self`, which names the caller whatever PID
/// namespace the mounted `/proc` belongs to (`unshare -p -f` without `--mount-proc` keeps the
/// parent's `/proc`, where our pid names another process).
pub(crate) fn self_stat() -> Option<ProcStat> {
    read_stat("/proc/self/stat")
}

fn read_stat(path: &str) -> Option<ProcStat> {
    let bytes = read_proc(path)?;
    let mut s = parse_stat(std::str::from_utf8(&bytes).ok()?)?;
    s.start_ticks = normalize_ticks(s.start_ticks);
    Some(s)
}

/// Start times in `/proc/PID/stat` count from the boot as the *reader's* time namespace shifts it
/// (time_namespaces(7)): a reader in a namespace with a boot-time offset sees every process start
/// that much later. onlyone records and compares start times on the initial namespace's clock,
/// which every reader can compute: the value read, less the reader's own boot-time offset
/// (`/proc/self/timens_offsets`). Offsets of whole clock ticks (what `unshare --boottime SECS`
/// sets) give exact values; others may differ by one tick.
fn normalize_ticks(ticks: u64) -> u64 {
    let shifted = i128::from(ticks) - i128::from(boottime_offset().1);
    u64::try_from(shifted.max(0)).unwrap_or(0)
}

/// A start time as this process's own time namespace shows it (undoes [`normalize_ticks`]):
/// records written by versions before the normalisation hold that value.
pub(crate) fn as_read_here(ticks: u64) -> u64 {
    let shifted = i128::from(ticks) + i128::from(boottime_offset().1);
    u64::try_from(shifted.max(0)).unwrap_or(0)
}

/// The boot-time offset of our time namespace: (nanoseconds, clock ticks). (0, 0) in the initial
/// namespace and where the file is missing (kernels before 5.6).
fn boottime_offset() -> (i128, i64) {
    static OFFSET: OnceLock<(i128, i64)> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let text = fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default();
        let ns = text
            .lines()
            .find_map(|l| {
                let mut w = l.split_ascii_whitespace();
                (w.next()? == "boottime").then_some(())?;
                let secs: i128 = w.next()?.parse().ok()?;
                let nanos: i128 = w.next()?.parse().ok()?;
                Some(secs * 1_000_000_000 + nanos)
            })
            .unwrap_or(0);
        let hz = i128::from(clock_ticks_per_second().unwrap_or(100));
        (ns, i64::try_from(ns * hz / 1_000_000_000).unwrap_or(0))
    })
}

fn clock_ticks_per_second() -> Option<u64> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()?;
    u64::try_from(hz).ok()
}

/// Whether the pids in the mounted `/proc` are the pids of our PID namespace: `/proc/self` links
/// to our pid as that `/proc` numbers it. Not so under `unshare -p -f` without a fresh `/proc`.
pub(crate) fn proc_is_ours() -> bool {
    static CACHE: std::sync::Mutex<Option<(u32, bool)>> = std::sync::Mutex::new(None);
    let me = std::process::id();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((pid, ours)) = *cache {
        if pid == me {
            return ours;
        }
    }
    let ours = fs::read_link("/proc/self")
        .ok()
        .and_then(|l| l.to_str()?.parse::<u32>().ok())
        == Some(me);
    *cache = Some((me, ours));
    ours
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may contain spaces and `)`, so
/// fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // Field 3 is the state; starttime is field 22, i.e. 19 fields after the state.
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// Whether a pid missing from `/proc` means the process is gone: only where `/proc` is mounted.
pub(crate) fn can_see_processes() -> bool {
    proc_is_ours() && fs::metadata("/proc/self/stat").is_ok()
}

/// Reads a small `/proc` file. These report a size of 0, so `fs::read` starts from a tiny buffer
/// and grows it over several `read(2)` calls; one read into a page-sized buffer usually gets it
/// all (a lookup of a holder reads two of them on every contended try).
fn read_proc(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    const PAGE: usize = 4096;
    let mut file = fs::File::open(path).ok()?;
    let mut buf = vec![0; PAGE];
    let n = file.read(&mut buf).ok()?;
    buf.truncate(n);
    // A short first read of a seq_file is the whole file; a full one may have more behind it.
    if n == PAGE {
        file.read_to_end(&mut buf).ok()?;
    }
    Some(buf)
}

/// `/proc/sys/kernel/random/boot_id`.
pub(crate) fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The `pid:[N]` link in `/proc/PID/ns/pid`.
pub(crate) fn pid_namespace(pid: u32) -> Option<u64> {
    if !proc_is_ours() {
        return None;
    }
    ns_link(&format!("/proc/{pid}/ns/pid"))
}

/// The PID namespace of the calling process (`/proc/self/ns/pid`).
pub(crate) fn self_pid_namespace() -> Option<u64> {
    ns_link("/proc/self/ns/pid")
}

fn ns_link(path: &str) -> Option<u64> {
    let link = fs::read_link(path).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// `/proc/PID/cmdline`, NUL-separated arguments joined by spaces.
pub(crate) fn command_line(pid: u32) -> Option<String> {
    if !proc_is_ours() {
        return None;
    }
    let raw = read_proc(&format!("/proc/{pid}/cmdline"))?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

/// The real uid, from the `Uid:` line of `/proc/PID/status`.
pub(crate) fn uid_of(pid: u32) -> Option<u32> {
    if !proc_is_ours() {
        return None;
    }
    let status = String::from_utf8(read_proc(&format!("/proc/{pid}/status"))?).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks after boot (on the initial time namespace's clock, see [`normalize_ticks`]) to
/// wall-clock time, through `btime` in `/proc/stat` (which our time namespace shifts back by its
/// boot-time offset, undone here) and `CLK_TCK`.
pub(crate) fn start_time(start_ticks: u64) -> Option<SystemTime> {
    static BOOT: OnceLock<Option<(SystemTime, u64)>> = OnceLock::new();
    let (boot, hz) = (*BOOT.get_or_init(|| {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let btime: i128 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let boot_ns = btime * 1_000_000_000 + boottime_offset().0;
        let boot_ns = u64::try_from(boot_ns).ok()?;
        Some((
            SystemTime::UNIX_EPOCH + Duration::from_nanos(boot_ns),
            clock_ticks_per_second()?,
        ))
    }))?;
    Some(boot + Duration::from_millis(start_ticks.saturating_mul(1000) / hz.max(1)))
}

/// A pidfd (pidfd_open(2)) for `pid`, provided it is still the process that started at `start`.
/// It becomes readable when the process has exited.
#[cfg(any(feature = "flock", feature = "pidfile"))]
#[cfg_attr(onlyone_portable, allow(dead_code))]
pub(crate) fn watch_process(pid: u32, start: Option<u64>) -> super::ProcessWatch {
    use rustix::process::{Pid, PidfdFlags, pidfd_open};
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return super::ProcessWatch::Gone;
    };
    match pidfd_open(raw, PidfdFlags::empty()) {
        // The pidfd pins the process: if its start time matches now, it is the holder.
        Ok(fd) if super::is_same_process(pid, start) => super::ProcessWatch::Fd(Box::new(fd)),
        Ok(_) | Err(rustix::io::Errno::SRCH) => super::ProcessWatch::Gone,
        Err(_) => super::ProcessWatch::Unsupported,
    }
}

/// A pidfd (pidfd_open(2)) for `pid`: it names that one process until it is closed, even after
/// the process exited and its pid was reused. `None` when no process has the pid or there are no
/// pidfds here (Linux before 5.3, seccomp).
#[cfg_attr(
    not(any(feature = "flock", feature = "pidfile", feature = "postgres")),
    allow(dead_code)
)]
#[cfg_attr(onlyone_portable, allow(dead_code))]
pub(crate) fn pin_process(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use rustix::process::{Pid, PidfdFlags, pidfd_open};
    let raw = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    pidfd_open(raw, PidfdFlags::empty()).ok()
}

/// Sends SIGTERM (`kill == false`) or SIGKILL through a pidfd (pidfd_send_signal(2)): only the
/// process it names can receive it.
#[cfg_attr(onlyone_portable, allow(dead_code))]
pub(crate) fn signal_pinned(fd: std::os::fd::BorrowedFd<'_>, kill: bool) -> std::io::Result<()> {
    use rustix::process::{Signal, pidfd_send_signal};
    let sig = if kill { Signal::KILL } else { Signal::TERM };
    pidfd_send_signal(fd, sig).map_err(std::io::Error::from)
}

/// A watch on a held lock file for what may mean the lock was lost (its unlink or rename changes
/// the link count: `IN_ATTRIB`; `IN_DELETE_SELF`, `IN_MOVE_SELF`): an inotify instance of its
/// own (from the pool of [`inotify`]: dropping the watch is a microsecond, not a grace period),
/// non-blocking. Readable on such an event; whether the lock *was* lost is for `verify()` to say
/// (a `touch` or `chmod` fires it too), which drains it with [`drain_loss_watch`]. Each instance
/// counts against the user's `fs.inotify.max_user_instances` (128 by default); `None` when none
/// can be had.
///
/// The watch is put on the inode the holder has open (`file`, through `/proc/self/fd/N`), not on
/// whatever the path names by then.
#[cfg(any(feature = "flock", feature = "pidfile"))]
pub(crate) fn loss_watch(file: &fs::File) -> Option<LossWatch> {
    use std::os::fd::AsRawFd;

    use nix::sys::inotify::AddWatchFlags;
    inotify::watch(
        std::path::Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())),
        AddWatchFlags::IN_ATTRIB | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF,
    )
}

/// What [`loss_watch`] gives.
#[cfg(any(feature = "flock", feature = "pidfile"))]
pub(crate) type LossWatch = inotify::FileWatch;

/// Reads away the queued events of a [`loss_watch`].
#[cfg(any(feature = "flock", feature = "pidfile"))]
pub(crate) fn drain_loss_watch(watch: &LossWatch) {
    watch.drain();
}

/// Whether process `pid` has open a TCP socket whose local end is `addr`:`port`
/// (`/proc/net/tcp`, `tcp6` of our network namespace, then `/proc/PID/fd`); `None` when that
/// cannot be read (another user's process, a /proc of another PID namespace).
#[cfg(feature = "postgres")]
pub(crate) fn owns_tcp_endpoint(pid: u32, addr: std::net::IpAddr, port: u16) -> Option<bool> {
    if !proc_is_ours() {
        return None;
    }
    let mut inodes = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let Some((a, p)) = f.get(1).and_then(|l| l.split_once(':')) else {
                continue;
            };
            let same = u16::from_str_radix(p, 16) == Ok(port)
                && proc_net_addr(a, v6).is_some_and(|local| same_ip(local, addr));
            if same {
                if let Some(inode) = f.get(9) {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if inodes.is_empty() {
        return Some(false);
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
    }))
}

/// An address of `/proc/net/tcp(6)`: 8 or 32 hex digits, each 32-bit word in host byte order.
#[cfg(feature = "postgres")]
fn proc_net_addr(hex: &str, v6: bool) -> Option<std::net::IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    if v6 {
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        Some(std::net::IpAddr::from(b))
    } else {
        Some(std::net::IpAddr::from(word(0)?))
    }
}

/// Equal addresses, an IPv4 address and its IPv4-mapped IPv6 form included.
#[cfg(feature = "postgres")]
fn same_ip(a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
    let canon = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    canon(a) == canon(b)
}

// The portable build identifies a peer as the other systems do, by pid.
#[cfg_attr(onlyone_portable, allow(unused_imports))]
pub(crate) use peer::peer_pidfd;

/// `SO_PEERPIDFD`, the one `getsockopt(2)` the standard wrappers lack.
mod peer {
    #![allow(unsafe_code)]
    #![cfg_attr(
        any(onlyone_portable, not(feature = "abstract-socket")),
        allow(dead_code)
    )]
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

    use nix::libc;

    /// `SO_PEERPIDFD` (asm-generic/socket.h; sparc numbers its options apart).
    #[cfg(target_arch = "sparc64")]
    const SO_PEERPIDFD: libc::c_int = 0x0056;
    #[cfg(not(target_arch = "sparc64"))]
    const SO_PEERPIDFD: libc::c_int = 77;

    /// A pidfd of the process the kernel recorded as the peer of the connected Unix socket `sock`
    /// (for a connection to a listening socket: the process that called `listen(2)`), Linux 6.5
    /// and later. The kernel keeps a reference to that very process, so the pidfd can never name a
    /// newer process that got the same pid: when the peer has exited the call fails (`ESRCH` or
    /// `EINVAL`); `ENOPROTOOPT` on older kernels.
    pub(crate) fn peer_pidfd(sock: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
        let mut fd: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt(2) writes at most `len` bytes (the size of one c_int) to `fd`, a
        // local that outlives the call, and stores the written length in `len`; `sock` is an open
        // descriptor for the duration of the call (it is borrowed).
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERPIDFD,
                (&raw mut fd).cast(),
                &raw mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if fd < 0 || len as usize != std::mem::size_of::<libc::c_int>() {
            return Err(std::io::Error::other("SO_PEERPIDFD returned no descriptor"));
        }
        // SAFETY: on success the kernel installed a new descriptor `fd` in this process (close-on-
        // exec, as pidfds are) that nothing else owns; ownership passes to the OwnedFd.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

#[cfg(all(any(feature = "flock", feature = "pidfile"), not(onlyone_portable)))]
pub(crate) use inotify::watch_file;

/// Watching lock files with inotify(7): waiters watch the path (not in the portable build, whose
/// waiters back off), holders the file they hold ([`loss_watch`]).
#[cfg(any(feature = "flock", feature = "pidfile"))]
mod inotify {
    use std::os::fd::{AsFd, BorrowedFd};
    use std::path::Path;

    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

    /// Watches `path` for what may mean the lock is free: a change of attributes (`IN_ATTRIB`: an
    /// unlink changes the link count — a PID file released; a flock holder touches its file's
    /// timestamps right after unlocking), a rename or deletion. Opens and closes are not watched:
    /// contenders and waiters open and close the file all the time, and a close is reported just
    /// *before* the kernel drops a `flock` held through it, so it would wake waiters too early.
    /// `None` when inotify is unavailable or the file does not exist.
    ///
    /// Closing an inotify instance waits for an RCU grace period (8 ms median here, far more under
    /// load), so instances are not closed: a watch is removed (a microsecond) and its instance
    /// goes back to a process-wide pool, which keeps up to [`POOL_IDLE_MAX`] idle ones.
    #[cfg_attr(onlyone_portable, allow(dead_code))]
    pub(crate) fn watch_file(path: &Path) -> Option<FileWatch> {
        watch(
            path,
            AddWatchFlags::IN_ATTRIB
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_DONT_FOLLOW,
        )
    }

    /// A watch of `path` for `events`, in an instance from the pool (or a new one).
    pub(super) fn watch(path: &Path, events: AddWatchFlags) -> Option<FileWatch> {
        let pooled = POOL.lock().ok().and_then(|mut p| p.pop());
        let inotify = match pooled {
            Some(i) => i,
            None => Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?,
        };
        let watch = inotify.add_watch(path, events);
        // Dropped on failure too: the instance goes back to the pool.
        let file_watch = FileWatch {
            inotify: Some(inotify),
            watch: watch.as_ref().ok().copied(),
        };
        watch.ok()?;
        Some(file_watch)
    }

    static POOL: std::sync::Mutex<Vec<Inotify>> = std::sync::Mutex::new(Vec::new());

    /// The most idle instances the pool keeps; one given back beyond that is closed (paying the
    /// grace period). Instances are the user's (`fs.inotify.max_user_instances`, 128 by default,
    /// shared by all the user's programs): a process that once held many lock files with loss
    /// watches must not keep them all after their release.
    const POOL_IDLE_MAX: usize = 8;

    /// An inotify watch on one file, in an instance borrowed from the pool.
    #[derive(Debug)]
    pub(crate) struct FileWatch {
        inotify: Option<Inotify>,
        watch: Option<WatchDescriptor>,
    }

    impl FileWatch {
        /// Reads away the queued events.
        pub(crate) fn drain(&self) {
            if let Some(inotify) = &self.inotify {
                while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
            }
        }
    }

    impl AsFd for FileWatch {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.inotify
                .as_ref()
                .expect("the instance stays until drop")
                .as_fd()
        }
    }

    impl Drop for FileWatch {
        fn drop(&mut self) {
            if let (Some(inotify), Some(wd)) = (&self.inotify, self.watch.take()) {
                let _ = inotify.rm_watch(wd);
            }
            // Drain what is queued (at least the IN_IGNORED of the removed watch), so the next
            // borrower starts with an empty queue.
            self.drain();
            let Some(inotify) = self.inotify.take() else {
                return;
            };
            if let Ok(mut pool) = POOL.lock() {
                if pool.len() < POOL_IDLE_MAX {
                    pool.push(inotify);
                }
            }
        }
    }
}

/// Writes `content` under no name (`O_TMPFILE`) and links it to `path` through
/// `/proc/self/fd`; falls back to the portable named temporary file where the filesystem refuses
/// `O_TMPFILE` or `/proc` is missing. `Ok(None)` when `path` exists.
#[cfg(feature = "pidfile")]
#[cfg_attr(onlyone_portable, allow(dead_code))]
pub(crate) fn create_linked(
    dir: &std::path::Path,
    path: &std::path::Path,
    temp_prefix: &str,
    mode: u32,
    content: &[u8],
) -> std::io::Result<Option<fs::File>> {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use nix::errno::Errno;
    use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, open};
    use nix::sys::stat::Mode;

    let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
    match open(dir, flags, Mode::from_bits_truncate(mode)) {
        Ok(fd) => {
            let mut file = fs::File::from(fd);
            file.write_all(content)?;
            let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
            let linked = nix::unistd::linkat(
                AT_FDCWD,
                proc_path.as_str(),
                AT_FDCWD,
                path,
                AtFlags::AT_SYMLINK_FOLLOW,
            );
            match linked {
                Ok(()) => return Ok(Some(file)),
                Err(Errno::EEXIST) => return Ok(None),
                // No /proc to name the unnamed file: fall through to a named temp file.
                Err(Errno::ENOENT) if dir.exists() => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The filesystem has no O_TMPFILE.
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {}
        Err(e) => return Err(e.into()),
    }
    super::unix::create_linked(dir, path, temp_prefix, mode, content)
}

/// The pid `/proc/locks` gives for a `FLOCK` lock on device `dev`, inode `ino`: `None` when there
/// is no `/proc/locks` of our PID namespace to ask, `Some(None)` when it lists no such lock (it
/// lists only locks whose owner is visible from the reader's PID namespace: not a proof that the
/// lock is free).
#[cfg(feature = "flock")]
pub(crate) fn flock_table_holder(dev: u64, ino: u64) -> Option<Option<u32>> {
    // A /proc of another PID namespace numbers its pids, not ours.
    if !proc_is_ours() {
        return None;
    }
    let table = fs::read_to_string("/proc/locks").ok()?;
    Some(
        table
            .lines()
            .find_map(|line| flock_line_pid(line, dev, ino)),
    )
}

/// Whether process `pid` holds a `flock` on device `dev`, inode `ino`, from the `lock:` lines of
/// `/proc/PID/fdinfo/FD` for its descriptors `FD` of that inode; `None` when its descriptors cannot
/// be read (another user's process, no /proc).
///
/// Finding those descriptors takes a `stat` of every descriptor of `pid`, and `list` asks about
/// every lock one process may hold: a pass per lock made `list` quadratic (48 s for 10,000 locks
/// held by one process). So the pass over a process with many descriptors leaves an index,
/// descriptor numbers by inode, for the next question about the same process. The index is only
/// a hint: a descriptor it names is `stat`ed again and its fdinfo read before it proves anything,
/// and a question it cannot answer yes to takes a fresh pass (a descriptor opened since, a
/// number reused, another process under the same pid).
#[cfg(feature = "flock")]
pub(crate) fn holds_flock(pid: u32, dev: u64, ino: u64) -> Option<bool> {
    if !proc_is_ours() {
        return None;
    }
    let mut index = FD_INDEX.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(fds) = index
        .as_ref()
        .filter(|i| i.pid == pid)
        .and_then(|i| i.fds.get(&(dev, ino)))
    {
        if fds.iter().any(|&fd| fd_holds_flock(pid, fd, dev, ino)) {
            return Some(true);
        }
    }
    let (answer, fresh) = scan_fds_for_flock(pid, dev, ino)?;
    *index = fresh;
    Some(answer)
}

/// Descriptor numbers of one process by the (device, inode) they have open: see [`holds_flock`].
#[cfg(feature = "flock")]
struct FdIndex {
    pid: u32,
    fds: std::collections::HashMap<(u64, u64), Vec<u32>>,
}

#[cfg(feature = "flock")]
static FD_INDEX: std::sync::Mutex<Option<FdIndex>> = std::sync::Mutex::new(None);

/// Processes with fewer descriptors get no index: a pass over them costs little.
#[cfg(feature = "flock")]
const FD_INDEX_MIN: usize = 64;

/// Whether descriptor `fd` of `pid` is open on `dev`/`ino` and holds a `flock` there.
#[cfg(feature = "flock")]
fn fd_holds_flock(pid: u32, fd: u32, dev: u64, ino: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
        && fdinfo_has_flock(pid, fd, dev, ino)
}

/// Whether the `lock:` lines of descriptor `fd`'s fdinfo show a `flock` on `dev`/`ino`.
#[cfg(feature = "flock")]
fn fdinfo_has_flock(pid: u32, fd: u32, dev: u64, ino: u64) -> bool {
    fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).is_ok_and(|info| {
        info.lines()
            .filter_map(|l| l.strip_prefix("lock:"))
            .any(|l| flock_line_pid(l, dev, ino).is_some())
    })
}

/// One pass over the descriptors of `pid`: whether one of `dev`/`ino` holds a `flock`, and the
/// index of the pass (`None` for a process with few descriptors). `None` when none of its
/// descriptors can be read.
#[cfg(feature = "flock")]
fn scan_fds_for_flock(pid: u32, dev: u64, ino: u64) -> Option<(bool, Option<FdIndex>)> {
    use std::os::unix::fs::MetadataExt;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut found = false;
    let mut by_inode: std::collections::HashMap<(u64, u64), Vec<u32>> = Default::default();
    let mut count = 0;
    for entry in fds.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // stat(2) through the descriptor's link names the open file: only a descriptor of the
        // lock file's inode has its fdinfo read.
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        count += 1;
        by_inode
            .entry((meta.dev(), meta.ino()))
            .or_default()
            .push(fd);
        if !found && meta.dev() == dev && meta.ino() == ino {
            found = fdinfo_has_flock(pid, fd, dev, ino);
        }
    }
    if count == 0 {
        return None;
    }
    let index = (count >= FD_INDEX_MIN).then_some(FdIndex { pid, fds: by_inode });
    Some((found, index))
}

/// The pid of a `/proc/locks`-style line for a `FLOCK` lock on `dev`/`ino`:
/// `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1311266 0 EOF` (waiters have `->` after the number).
#[cfg(feature = "flock")]
fn flock_line_pid(line: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    if f.len() < 6 || f[1] != "FLOCK" {
        return None;
    }
    let mut id = f[5].split(':');
    let maj = u64::from_str_radix(id.next()?, 16).ok()?;
    let min = u64::from_str_radix(id.next()?, 16).ok()?;
    let i: u64 = id.next()?.parse().ok()?;
    (maj == major && min == minor && i == ino)
        .then(|| f[4].parse().ok())
        .flatten()
}

/// The pid (when it maps into this PID namespace) and uid of the peer of the connected Unix
/// socket `sock`, as the kernel recorded them at `connect(2)`: `SO_PEERCRED` (unix(7)).
pub(crate) fn peer_credentials(
    sock: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<(Option<u32>, u32)> {
    let cred = nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials)?;
    // A peer in a PID namespace this one cannot see is reported as pid 0.
    let pid = u32::try_from(cred.pid()).ok().filter(|p| *p != 0);
    Ok((pid, cred.uid()))
}

/// Writes all of `buf` to the connected socket `sock` with `MSG_NOSIGNAL`, so that a peer that
/// went away yields `EPIPE` rather than a SIGPIPE that would kill a program that did not ignore
/// it (send(2)).
pub(crate) fn send_all(sock: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        match send(sock.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A non-blocking, close-on-exec Unix stream socket (socket(2) with `SOCK_NONBLOCK |
/// SOCK_CLOEXEC`: no window in which a fork could inherit it).
pub(crate) fn nonblocking_unix_stream() -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    Ok(socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_counts_from_the_last_paren() {
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_ticks, 987654);
        assert_eq!(parse_stat("garbage"), None);
    }
}
