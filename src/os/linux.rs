//! Linux and Android: identity from `/proc` (proc(5)), pidfd (pidfd_open(2)) to wait for a
//! process, inotify (inotify(7)) to wake on a lock file's release, `O_TMPFILE` (open(2)) to create
//! a file atomically, `/proc/locks` and `/proc/PID/fdinfo` to name flock holders.

use std::fs;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use super::ProcStat;
#[cfg(feature = "pidfile")]
pub(crate) use super::unix::flock_exclusive;
#[cfg(feature = "flock")]
pub(crate) use super::unix::{flock_shared_probe, flock_try_exclusive, flock_unlock};

pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    let bytes = read_proc(&format!("/proc/{pid}/stat"))?;
    parse_stat(std::str::from_utf8(&bytes).ok()?)
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
    fs::metadata("/proc/self/stat").is_ok()
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
    let link = fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// `/proc/PID/cmdline`, NUL-separated arguments joined by spaces.
pub(crate) fn command_line(pid: u32) -> Option<String> {
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
    let status = String::from_utf8(read_proc(&format!("/proc/{pid}/status"))?).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks after boot to wall-clock time, through `btime` in `/proc/stat` and `CLK_TCK`.
pub(crate) fn start_time(start_ticks: u64) -> Option<SystemTime> {
    static BOOT: OnceLock<Option<(SystemTime, u64)>> = OnceLock::new();
    let (boot, hz) = (*BOOT.get_or_init(|| {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let btime: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()?;
        Some((
            SystemTime::UNIX_EPOCH + Duration::from_secs(btime),
            u64::try_from(hz).ok()?,
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

#[cfg(all(any(feature = "flock", feature = "pidfile"), not(onlyone_portable)))]
pub(crate) use inotify::watch_file;

/// Watching lock files with inotify(7).
#[cfg(all(any(feature = "flock", feature = "pidfile"), not(onlyone_portable)))]
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
    /// load), so instances are never closed: a watch is removed (a microsecond) and its instance
    /// goes back to a process-wide pool. The pool holds as many instances as waits ever ran at once.
    pub(crate) fn watch_file(path: &Path) -> Option<FileWatch> {
        let pooled = POOL.lock().ok().and_then(|mut p| p.pop());
        let inotify = match pooled {
            Some(i) => i,
            None => Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok()?,
        };
        let watch = inotify.add_watch(
            path,
            AddWatchFlags::IN_ATTRIB
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_DONT_FOLLOW,
        );
        let file_watch = FileWatch {
            inotify: Some(inotify),
            watch: watch.as_ref().ok().copied(),
        };
        watch.ok()?;
        Some(file_watch)
    }

    static POOL: std::sync::Mutex<Vec<Inotify>> = std::sync::Mutex::new(Vec::new());

    /// An inotify watch on one file, in an instance borrowed from the pool.
    pub(crate) struct FileWatch {
        inotify: Option<Inotify>,
        watch: Option<WatchDescriptor>,
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
            let Some(inotify) = self.inotify.take() else {
                return;
            };
            if let Some(wd) = self.watch.take() {
                let _ = inotify.rm_watch(wd);
            }
            // Drain what is queued (at least the IN_IGNORED of the removed watch), so the next
            // borrower starts with an empty queue.
            while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
            if let Ok(mut pool) = POOL.lock() {
                pool.push(inotify);
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
/// is no `/proc/locks` to ask, `Some(None)` when it lists no such lock.
#[cfg(feature = "flock")]
pub(crate) fn flock_table_holder(dev: u64, ino: u64) -> Option<Option<u32>> {
    let table = fs::read_to_string("/proc/locks").ok()?;
    Some(
        table
            .lines()
            .find_map(|line| flock_line_pid(line, dev, ino)),
    )
}

/// Whether process `pid` holds a `flock` on device `dev`, inode `ino`, from the `lock:` lines of
/// its `/proc/PID/fdinfo/*`; `None` when that cannot be read (another user's process, no /proc).
#[cfg(feature = "flock")]
pub(crate) fn holds_flock(pid: u32, dev: u64, ino: u64) -> Option<bool> {
    let fds = fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let mut readable = false;
    for fd in fds.flatten() {
        let Ok(info) = fs::read_to_string(fd.path()) else {
            continue;
        };
        readable = true;
        let found = info
            .lines()
            .filter_map(|l| l.strip_prefix("lock:"))
            .any(|l| flock_line_pid(l, dev, ino).is_some());
        if found {
            return Some(true);
        }
    }
    readable.then_some(false)
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
