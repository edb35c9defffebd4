//! The operating-system layer: process identity, liveness, waiting for a process to exit, waking on
//! a lock file's release, and creating a file atomically under its final name. The one module that
//! knows which operating system this is; backends call it and carry no `target_os` cfg of their own.
//!
//! A pid alone does not name a process: pids are reused. onlyone identifies a process by its pid,
//! its *start token* (the OS's record of when it started), the boot it belongs to and, on Linux,
//! its PID namespace. What each OS file provides:
//!
//! | | identity (start token, uid, command) | boot | exit wait | lock-file release wake | atomic create |
//! | --- | --- | --- | --- | --- | --- |
//! | Linux, Android (`os/linux.rs`) | `/proc/PID/stat` field 22 (ticks after boot), `status`, `cmdline` | `boot_id` | pidfd | inotify | `O_TMPFILE` + `linkat`, else named temp + `link` |
//! | macOS (`os/macos.rs`) | `proc_pidinfo(PROC_PIDTBSDINFO)` (µs since the epoch), `KERN_PROCARGS2` | `kern.bootsessionuuid` | kqueue `EVFILT_PROC` | kqueue `EVFILT_VNODE` | named temp + `link` |
//! | FreeBSD (`os/freebsd.rs`) | `sysctl(KERN_PROC_PID)` (µs since the epoch), `KERN_PROC_ARGS` | `kern.boot_id` (14.0+) | kqueue `EVFILT_PROC` | kqueue `EVFILT_VNODE` | named temp + `link` |
//! | NetBSD (`os/netbsd.rs`) | `sysctl(KERN_PROC2)` (µs since the epoch), `KERN_PROC_ARGS` | none | kqueue `EVFILT_PROC` | kqueue `EVFILT_VNODE` | named temp + `link` |
//! | illumos (`os/illumos.rs`) | `/proc/PID/psinfo` (ns since the epoch) | none | bounded backoff | bounded backoff | named temp + `link` |
//! | Windows (`os/windows.rs`) | `OpenProcess` + `GetProcessTimes` (100 ns since 1601), image path; "uid": the RID of the user's SID | none | `WaitForSingleObject` on the process handle | backoff (`LockFileEx` has no unlock event) | temporary file + `CreateHardLinkW` |
//!
//! Start tokens are compared only for equality, and only with tokens read on the same machine:
//! their unit differs per OS. Code common to every Unix (liveness by `kill(2)`, the named temporary
//! file + `link(2)` creation, `flock(2)` calls) lives in `os/unix.rs`.
//!
//! **The portable build.** Built with the environment variable `ONLYONE_PORTABLE=1`, `build.rs`
//! sets the cfg `onlyone_portable`: Linux then uses the code paths of the systems CI cannot boot
//! — named temporary file + `link(2)` instead of `O_TMPFILE`, a bounded backoff instead of pidfd
//! and inotify — so that the backend and torture suites exercise them.

use std::sync::OnceLock;
use std::time::SystemTime;

#[cfg(unix)]
use nix::errno::Errno;
#[cfg(unix)]
use nix::sys::signal::kill;
#[cfg(unix)]
use nix::unistd::Pid;

#[cfg(unix)]
pub(crate) mod unix;

cfg_if::cfg_if! {
    if #[cfg(any(target_os = "linux", target_os = "android"))] {
        mod linux;
        use linux as imp;
        pub use linux::parse_stat;
    } else if #[cfg(any(target_os = "macos", target_os = "ios"))] {
        mod kqueue;
        mod sysctl;
        mod macos;
        use macos as imp;
    } else if #[cfg(target_os = "freebsd")] {
        mod kqueue;
        mod sysctl;
        mod freebsd;
        use freebsd as imp;
    } else if #[cfg(target_os = "netbsd")] {
        mod kqueue;
        mod sysctl;
        mod netbsd;
        use netbsd as imp;
    } else if #[cfg(any(target_os = "illumos", target_os = "solaris"))] {
        mod illumos;
        use illumos as imp;
    } else if #[cfg(windows)] {
        mod windows;
        use windows as imp;
        use windows as self_ids;
        pub(crate) use windows::{
            SecurityDescriptor, as_read_here, create_lock_dir, current_user, default_dir,
            effective_uid, has_exited, liveness, pin_process, process_user_sid, sid_text,
            terminate_pinned, wait_for_handles,
        };
        #[cfg(any(feature = "flock", feature = "pidfile"))]
        pub(crate) use windows::LOCK_OFFSET;
        #[cfg(any(feature = "flock", feature = "pidfile"))]
        pub(crate) use windows::try_lock_byte;
        #[cfg(feature = "pidfile")]
        pub(crate) use windows::{delete_on_close, open_to_delete};
        #[cfg(feature = "flock")]
        pub(crate) use windows::{file_id, unlock_byte};
        #[cfg(feature = "named-mutex")]
        pub(crate) use windows::{
            Mutex, MutexWait, Namespace, private_namespaces, wait_for_exit,
        };
    } else {
        compile_error!(
            "onlyone supports Linux, Android, macOS, FreeBSD, NetBSD, illumos and Windows; \
             this target has no OS layer yet"
        );
    }
}

// What replaces the OS's own event sources and O_TMPFILE in the portable build.
#[cfg(unix)]
cfg_if::cfg_if! {
    if #[cfg(onlyone_portable)] {
        #[cfg(any(feature = "flock", feature = "pidfile"))]
        pub(crate) use unix::{watch_file, watch_process};
        #[cfg(feature = "pidfile")]
        pub(crate) use unix::create_linked;
    } else {
        #[cfg(any(feature = "flock", feature = "pidfile"))]
        pub(crate) use imp::{watch_file, watch_process};
        #[cfg(feature = "pidfile")]
        pub(crate) use imp::create_linked;
    }
}
// Pinning a process (a pidfd) and signalling only the pinned process: Linux's alone (not in the
// portable build, which takes the path of systems without pidfds).
#[cfg(unix)]
cfg_if::cfg_if! {
    if #[cfg(all(any(target_os = "linux", target_os = "android"), not(onlyone_portable)))] {
        #[cfg_attr(not(feature = "abstract-socket"), allow(unused_imports))]
        pub(crate) use linux::{peer_pidfd, pin_process, signal_pinned};
    } else {
        // Only the abstract-socket backend (Linux) asks for a peer's pidfd.
        #[allow(unused_imports)]
        pub(crate) use unix::{peer_pidfd, pin_process, signal_pinned};
    }
}
// The caller's own identity through `/proc/self` (Linux) or its pid (elsewhere); time-namespace
// start times; the loss watch; the socket check of a PostgreSQL holder.
#[cfg(unix)]
cfg_if::cfg_if! {
    if #[cfg(any(target_os = "linux", target_os = "android"))] {
        pub(crate) use linux::as_read_here;
        #[cfg(any(feature = "flock", feature = "pidfile"))]
        pub(crate) use linux::{LossWatch, drain_loss_watch, loss_watch};
        #[cfg(feature = "postgres")]
        pub(crate) use linux::owns_tcp_endpoint;
        use linux as self_ids;
    } else {
        pub(crate) use unix::as_read_here;
        #[cfg(any(feature = "flock", feature = "pidfile"))]
        pub(crate) use unix::{LossWatch, drain_loss_watch, loss_watch};
        #[cfg(feature = "postgres")]
        pub(crate) use unix::owns_tcp_endpoint;
        use unix as self_ids;
    }
}
// The peer of a connected Unix socket (second-instance handoff): SO_PEERCRED on Linux,
// getpeereid(3) elsewhere.
cfg_if::cfg_if! {
    if #[cfg(any(target_os = "linux", target_os = "android"))] {
        pub(crate) use linux::{nonblocking_unix_stream, peer_credentials, send_all};
    } else if #[cfg(unix)] {
        pub(crate) use unix::{nonblocking_unix_stream, peer_credentials, send_all};
    }
}
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
pub(crate) use imp::flock_try_exclusive;
#[cfg(all(unix, feature = "flock"))]
pub(crate) use imp::{flock_shared_probe, flock_unlock};
#[cfg(all(unix, feature = "flock"))]
pub(crate) use imp::{flock_table_holder, holds_flock};
#[cfg(all(unix, feature = "pidfile"))]
pub(crate) use unix::replace_file;

/// The effective uid of the calling process. On Windows, which has no uids, the relative id
/// (the last sub-authority) of the user's SID: 1001 for the first user made after setup.
#[cfg(unix)]
pub(crate) fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether this build uses the portable code paths on Linux (see the module docs).
pub const PORTABLE_BUILD: bool = cfg!(onlyone_portable);

/// Everything needed to recognise one process again later, even after its pid was reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: u32,
    /// The start token: when the process started, in the OS's own unit (clock ticks after boot on
    /// Linux, microseconds since the epoch on macOS and the BSDs, nanoseconds on illumos); `None`
    /// where it cannot be read. Compared only for equality, on the same machine.
    pub start_ticks: Option<u64>,
    /// The boot this process belongs to (`boot_id` on Linux, the boot time elsewhere); `None`
    /// where unavailable.
    pub boot_id: Option<String>,
    /// Inode of the PID namespace the pid belongs to (Linux); `None` where unavailable.
    pub pid_ns: Option<u64>,
    /// The effective uid.
    pub uid: u32,
}

impl ProcessIdentity {
    /// The identity of the calling process, read once and cached (a `fork`ed child gets its own).
    pub fn current() -> ProcessIdentity {
        static CACHE: OnceLock<ProcessIdentity> = OnceLock::new();
        let pid = std::process::id();
        let cached = CACHE.get_or_init(|| Self::read_current(pid));
        if cached.pid == pid {
            cached.clone()
        } else {
            Self::read_current(pid)
        }
    }

    /// Describes the caller from what names the caller whatever `/proc` is mounted (Linux
    /// `/proc/self`, syscalls), never from `/proc/<getpid()>`, which in a PID namespace without
    /// its own `/proc` is another process.
    fn read_current(pid: u32) -> ProcessIdentity {
        ProcessIdentity {
            pid,
            start_ticks: self_ids::self_stat().map(|s| s.start_ticks),
            boot_id: boot_id().map(str::to_owned),
            pid_ns: self_ids::self_pid_namespace(),
            uid: effective_uid(),
        }
    }
}

/// What the OS says about a running process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Single-letter state as Linux's proc(5) spells it: `R`, `S`, `D`, `Z` (zombie), `X` (dead),
    /// ... Other systems map their zombie state to `Z` and every live state to `R`.
    pub state: char,
    /// The start token (see [`ProcessIdentity::start_ticks`]).
    pub start_ticks: u64,
}

/// The state and start token of `pid`; `None` if the process does not exist or the OS will not
/// say (Linux: `/proc` not mounted or the process hidden by `hidepid`).
pub fn stat(pid: u32) -> Option<ProcStat> {
    imp::stat(pid)
}

/// The boot this machine is in, read once: an id that changes at every boot.
pub fn boot_id() -> Option<&'static str> {
    static BOOT_ID: OnceLock<Option<String>> = OnceLock::new();
    BOOT_ID.get_or_init(imp::boot_id).as_deref()
}

/// Inode number of the PID namespace of `pid` (Linux `/proc/PID/ns/pid`); `None` elsewhere.
pub fn pid_namespace(pid: u32) -> Option<u64> {
    imp::pid_namespace(pid)
}

/// The command line of `pid`, arguments joined by spaces, or `None` if unreadable or empty (a
/// kernel thread, a zombie).
pub fn command_line(pid: u32) -> Option<String> {
    imp::command_line(pid)
}

/// The real uid of `pid`, when the OS shows it.
pub fn uid_of(pid: u32) -> Option<u32> {
    imp::uid_of(pid)
}

/// Converts a start token to wall-clock time.
pub fn start_time(start_ticks: u64) -> Option<SystemTime> {
    imp::start_time(start_ticks)
}

/// Whether a recorded start token `recorded` is the start token `now` read (normalised) from the
/// OS: equal, or - for records written before start times were normalised to the initial time
/// namespace's clock, by a process in our own time namespace - equal to the value as our
/// namespace shows it.
#[cfg(unix)]
fn same_start(recorded: u64, now: u64) -> bool {
    recorded == now || recorded == as_read_here(now)
}

/// Whether the process a lock record names is still the one that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It runs (possibly under another uid: `kill(pid, 0)` gave `EPERM`).
    Alive,
    /// It is gone; the reason says how onlyone knows.
    Dead(&'static str),
    /// onlyone cannot judge from here (another PID namespace); treated as alive.
    Unknown(&'static str),
}

impl ProcessIdentity {
    /// Decides whether this recorded process still runs (kill(2), proc(5)).
    ///
    /// Dead: another boot; `kill(pid, 0)` says `ESRCH`; a zombie; a different start token (the pid
    /// was reused). Alive: `kill` succeeds or says `EPERM` (another user's live process). Unknown:
    /// the record comes from another PID namespace, where its pid means nothing.
    ///
    /// On Windows: dead when `OpenProcess` says no such process, when the process handle is
    /// signalled (it exited; opening a pid can succeed shortly after its process died) or when
    /// its creation time (`GetProcessTimes`) is not the record's; alive when it cannot be opened
    /// for lack of rights (another user's process).
    pub fn liveness(&self) -> Liveness {
        #[cfg(windows)]
        return liveness(self);
        #[cfg(unix)]
        self.liveness_unix()
    }

    #[cfg(unix)]
    fn liveness_unix(&self) -> Liveness {
        let here = ProcessIdentity::current();
        if let (Some(recorded), Some(now)) = (&self.boot_id, &here.boot_id) {
            if recorded != now {
                return Liveness::Dead("recorded before the last reboot");
            }
        }
        if let (Some(recorded), Some(now)) = (self.pid_ns, here.pid_ns) {
            if recorded != now {
                return Liveness::Unknown("recorded in another PID namespace");
            }
        }
        let Ok(raw) = i32::try_from(self.pid) else {
            return Liveness::Dead("pid out of range");
        };
        match kill(Pid::from_raw(raw), None) {
            Err(Errno::ESRCH) => return Liveness::Dead("no process has that pid"),
            Ok(()) | Err(Errno::EPERM) => {}
            Err(_) => return Liveness::Unknown("kill(pid, 0) failed"),
        }
        match stat(self.pid) {
            // kill() says the pid exists but the OS will not show it (hidepid=2,
            // ProtectProc=invisible, a /proc of another PID namespace): unknown is not dead.
            // Unless it exited between kill() and the read: ask kill() again.
            None => match kill(Pid::from_raw(raw), None) {
                Err(Errno::ESRCH) => Liveness::Dead("no process has that pid"),
                _ if imp::can_see_processes() => {
                    Liveness::Unknown("the process exists but /proc does not show it")
                }
                _ => Liveness::Alive,
            },
            Some(s) if s.state == 'Z' || s.state == 'X' => {
                Liveness::Dead("the process is a zombie")
            }
            Some(s) => match self.start_ticks {
                Some(t) if !same_start(t, s.start_ticks) => {
                    Liveness::Dead("the pid now belongs to a process started later")
                }
                _ => Liveness::Alive,
            },
        }
    }
}

/// A wait for one process to exit: a descriptor that becomes readable when it has exited, after
/// the kernel closed all its files (and so dropped its locks).
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
#[cfg_attr(any(target_os = "illumos", target_os = "solaris"), allow(dead_code))]
pub(crate) enum ProcessWatch {
    /// Poll this for `POLLIN`.
    Fd(Box<dyn std::os::fd::AsFd + Send + Sync>),
    /// The process is gone (or the pid was reused).
    Gone,
    /// Nothing to wait on here (no pidfd or kqueue, seccomp): the waiter backs off.
    Unsupported,
}

/// Whether the process with `pid` is the one that started at `start`, checked after the caller
/// pinned it (a pidfd or a kqueue registration), so that the answer holds for the pinned process.
#[cfg(all(unix, any(feature = "flock", feature = "pidfile")))]
#[cfg_attr(any(target_os = "illumos", target_os = "solaris"), allow(dead_code))]
pub(crate) fn is_same_process(pid: u32, start: Option<u64>) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && start.is_none_or(|t| same_start(t, s.start_ticks)))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_current_process_is_alive() {
        let me = ProcessIdentity::current();
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(matches!(reused.liveness(), Liveness::Dead(_)));
        let old_boot = ProcessIdentity {
            boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
            ..me
        };
        assert!(matches!(old_boot.liveness(), Liveness::Dead(_)));
    }

    #[test]
    fn the_current_process_has_a_start_token_and_command() {
        let me = std::process::id();
        assert!(stat(me).is_some_and(|s| s.state != 'Z'));
        assert!(command_line(me).is_some());
        assert_eq!(uid_of(me), Some(nix::unistd::getuid().as_raw()));
        assert!(boot_id().is_some());
        let started = start_time(stat(me).unwrap().start_ticks).unwrap();
        let age = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        assert!(
            age.as_secs() < 24 * 3600,
            "start time {started:?} is implausible"
        );
    }
}
