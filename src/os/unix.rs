//! What every Unix shares: `flock(2)` calls, and the portable ways to create a file atomically and
//! to wait, used by the OS files that have nothing better and by the portable build on Linux.

#[cfg(feature = "pidfile")]
use std::fs::File;
#[cfg(feature = "pidfile")]
use std::io::{self, Write};
#[cfg(any(feature = "flock", feature = "pidfile"))]
use std::path::Path;

/// Writes `content` to a new file with permissions `mode` and links it to `path`, so that readers
/// never see it empty or partial: a temporary file `dir/PREFIX<pid>.<n>` created with `O_EXCL`,
/// then `link(2)` to `path` (`EEXIST`: the path is taken, `Ok(None)`), then the temporary name is
/// unlinked. One behaviour on every filesystem and OS; `link(2)` is atomic on local filesystems
/// and on NFS servers alike. Errors are the OS's own, so callers can name the cause.
#[cfg(feature = "pidfile")]
pub(crate) fn create_linked(
    dir: &Path,
    path: &Path,
    temp_prefix: &str,
    mode: u32,
    content: &[u8],
) -> io::Result<Option<File>> {
    let (temp, mut file) = temp_file(dir, temp_prefix, mode)?;
    let linked = file
        .write_all(content)
        .and_then(|()| match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(Some(())),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e),
        });
    let _ = std::fs::remove_file(&temp);
    Ok(linked?.map(|()| file))
}

/// Writes `content` to a new file with permissions `mode` and renames it over `path`: rename(2)
/// replaces the file atomically, so a reader opens either the old file or the new one, each
/// whole. The temporary file is `dir/PREFIX<pid>.<n>`, as for [`create_linked`]. Returns the new
/// file, open. The caller makes sure that `path` is its own file to replace.
#[cfg(feature = "pidfile")]
pub(crate) fn replace_file(
    dir: &Path,
    path: &Path,
    temp_prefix: &str,
    mode: u32,
    content: &[u8],
) -> io::Result<File> {
    let (temp, mut file) = temp_file(dir, temp_prefix, mode)?;
    let renamed = file
        .write_all(content)
        .and_then(|()| std::fs::rename(&temp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    renamed.map(|()| file)
}

/// A new file `dir/PREFIX<pid>.<n>` created with `O_EXCL` and permissions `mode`.
#[cfg(feature = "pidfile")]
fn temp_file(dir: &Path, temp_prefix: &str, mode: u32) -> io::Result<(std::path::PathBuf, File)> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{temp_prefix}{}.{n}", std::process::id()));
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp);
        match opened {
            Ok(file) => return Ok((temp, file)),
            // Left behind by a killed process that had our pid: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// No portable event tells of a lock file's release: waiters back off.
#[cfg(any(feature = "flock", feature = "pidfile"))]
#[allow(dead_code)] // Linux has inotify, but for the portable build.
pub(crate) fn watch_file(_path: &Path) -> Option<std::os::fd::OwnedFd> {
    None
}

/// No portable way to wait for another process's exit: waiters back off.
#[cfg(any(feature = "flock", feature = "pidfile"))]
#[allow(dead_code)] // Linux has pidfds, but for the portable build.
pub(crate) fn watch_process(_pid: u32, _start: Option<u64>) -> super::ProcessWatch {
    super::ProcessWatch::Unsupported
}

// flock(2) through fs2, which wraps it on every Unix where it builds (not illumos: see
// `os/illumos.rs`).
cfg_if::cfg_if! {
    if #[cfg(all(any(feature = "flock", feature = "pidfile"), not(any(target_os = "illumos", target_os = "solaris"))))] {
        /// `flock(LOCK_EX | LOCK_NB)` (flock(2)): `Ok(false)` when another open file holds it.
        #[cfg(any(feature = "flock", feature = "pidfile"))]
        pub(crate) fn flock_try_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
            match fs2::FileExt::try_lock_exclusive(file) {
                Ok(()) => Ok(true),
                Err(e) if is_contended(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }

        /// `flock(LOCK_UN)` (flock(2)).
        #[cfg(feature = "flock")]
        pub(crate) fn flock_unlock(file: &std::fs::File) -> std::io::Result<()> {
            fs2::FileExt::unlock(file)
        }

        /// Whether a shared lock can be had at once (taken and dropped again; flock(2)): a probe
        /// that does not disturb a holder.
        #[cfg(feature = "flock")]
        pub(crate) fn flock_shared_probe(file: &std::fs::File) -> std::io::Result<bool> {
            match fs2::FileExt::try_lock_shared(file) {
                Ok(()) => {
                    let _ = fs2::FileExt::unlock(file);
                    Ok(true)
                }
                Err(e) if is_contended(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }

        #[cfg(any(feature = "flock", feature = "pidfile"))]
        fn is_contended(e: &std::io::Error) -> bool {
            e.kind() == std::io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(nix::errno::Errno::EWOULDBLOCK as i32)
        }
    }
}

/// No lock table names flock holders here (Linux has `/proc/locks`).
#[cfg(feature = "flock")]
#[allow(dead_code)]
pub(crate) fn flock_table_holder(_dev: u64, _ino: u64) -> Option<Option<u32>> {
    None
}

/// Whether `pid` holds a flock on the file: unknown here.
#[cfg(feature = "flock")]
#[allow(dead_code)]
pub(crate) fn holds_flock(_pid: u32, _dev: u64, _ino: u64) -> Option<bool> {
    None
}

/// No pidfds here: a process cannot be pinned, so it is never signalled on the strength of a pid.
#[allow(dead_code)] // Linux has pidfds.
pub(crate) fn pin_process(_pid: u32) -> Option<std::os::fd::OwnedFd> {
    None
}

/// Never called where [`pin_process`] gives nothing.
#[allow(dead_code)]
pub(crate) fn signal_pinned(_fd: std::os::fd::BorrowedFd<'_>, _kill: bool) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// No `SO_PEERPIDFD` here.
#[allow(dead_code)]
pub(crate) fn peer_pidfd(
    _sock: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<std::os::fd::OwnedFd> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Start tokens are not shifted by namespaces here.
#[allow(dead_code)] // Linux undoes its time-namespace normalisation.
pub(crate) fn as_read_here(token: u64) -> u64 {
    token
}

/// The caller's own state and start token, by its pid (Linux reads `/proc/self` instead).
#[allow(dead_code)] // Linux has its own.
pub(crate) fn self_stat() -> Option<super::ProcStat> {
    super::stat(std::process::id())
}

/// The caller's PID namespace, by its pid.
#[allow(dead_code)]
pub(crate) fn self_pid_namespace() -> Option<u64> {
    super::pid_namespace(std::process::id())
}

/// No watch for a lost lock file here: the loss is found by `verify()` (the CLI asks when the job
/// ends).
#[cfg(any(feature = "flock", feature = "pidfile"))]
#[allow(dead_code)] // Linux has inotify.
pub(crate) fn loss_watch(_file: &std::fs::File) -> Option<LossWatch> {
    None
}

/// What [`loss_watch`] would give.
#[cfg(any(feature = "flock", feature = "pidfile"))]
#[allow(dead_code)]
pub(crate) type LossWatch = std::os::fd::OwnedFd;

/// Nothing to drain.
#[cfg(any(feature = "flock", feature = "pidfile"))]
#[allow(dead_code)]
pub(crate) fn drain_loss_watch(_watch: &LossWatch) {}

/// No table of sockets to check here: a PostgreSQL holder is never proven local.
#[cfg(feature = "postgres")]
#[allow(dead_code)] // Linux reads /proc/net/tcp.
pub(crate) fn owns_tcp_endpoint(_pid: u32, _addr: std::net::IpAddr, _port: u16) -> Option<bool> {
    None
}

/// The uid of the peer of the connected Unix socket `sock` (`getpeereid(3)`); no pid here.
/// Where no such call exists the answer is an error, and handoff refuses the peer.
#[allow(dead_code)] // Linux reads SO_PEERCRED.
pub(crate) fn peer_credentials(
    sock: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<(Option<u32>, u32)> {
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd", target_os = "netbsd"))] {
            let (uid, _gid) = nix::unistd::getpeereid(sock)?;
            Ok((None, uid.as_raw()))
        } else {
            let _ = sock;
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no peer credentials for Unix sockets on this system",
            ))
        }
    }
}

/// Writes all of `buf` to the connected socket `sock` (write(2)). Not every system has
/// `MSG_NOSIGNAL`; Rust programs ignore SIGPIPE unless they asked otherwise.
#[allow(dead_code)] // Linux sends with MSG_NOSIGNAL.
pub(crate) fn send_all(sock: std::os::fd::BorrowedFd<'_>, buf: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let file = std::fs::File::from(sock.try_clone_to_owned()?);
    (&file).write_all(buf)
}

/// A non-blocking, close-on-exec Unix stream socket, for systems whose socket(2) takes no
/// `SOCK_NONBLOCK | SOCK_CLOEXEC` (macOS): the flags are set right after, with fcntl(2).
#[allow(dead_code)] // Linux passes the flags to socket(2).
pub(crate) fn nonblocking_unix_stream() -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )?;
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok(fd)
}
