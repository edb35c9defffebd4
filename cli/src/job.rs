//! Starting the job, binding its life to onlyone's, and receiving the signals onlyone forwards to
//! it. One file per family, chosen by the `cfg_if!` below:
//!
//! | | start | the job when onlyone dies | signals |
//! | --- | --- | --- | --- |
//! | Linux, Android (`job/linux.rs`) | `clone(CLONE_VM \| CLONE_VFORK)` | killed: `PR_SET_PDEATHSIG` | signalfd(2) |
//! | every other Unix (`job/posix.rs`) | fork(2) | FreeBSD: killed (`procctl(PROC_PDEATHSIG_CTL)`); macOS, NetBSD, illumos: keeps the lock | a self-pipe |
//!
//! Linux in the portable build (`onlyone::os::PORTABLE_BUILD`, `ONLYONE_PORTABLE=1`) takes the
//! portable path too, with the rules of macOS — except for the abstract socket (see [`tether`]) —
//! so that the CLI's tests exercise it.
//!
//! Both paths run the same code between the start and execve(2) ([`Job::enter_own_group`]: a
//! process group of its own, and the terminal when onlyone has it; [`Job::exec`]): only system
//! calls, no allocation; they restore the signal mask onlyone had before it blocked the signals it
//! forwards, leave SIGPIPE's disposition as onlyone's parent gave it where that is known
//! ([`SIGPIPE_FROM_PARENT`]; else the default action), and search `PATH` as execvp(3) does.

use std::ffi::{CString, OsStr, OsString, c_char, c_int};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use onlyone::{BackendKind, Guard};

/// Whether onlyone's own SIGPIPE disposition is the one its parent gave it, so that the job can
/// simply inherit it (ignored stays ignored, as under flock(1)).
///
/// - glibc Linux: yes. onlyone has no Rust `fn main` there (see `main.rs`): Rust's start-up, which
///   sets SIGPIPE to "ignore", never runs, and nothing else in onlyone changes it.
/// - Every other target (musl, macOS, the BSDs, illumos): no. Rust's start-up has set SIGPIPE to
///   "ignore" before any code of onlyone runs, and what the parent gave is not kept anywhere (std
///   offers no way to keep it on stable Rust). The job then gets the default action, which most
///   programs expect.
const SIGPIPE_FROM_PARENT: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

cfg_if::cfg_if! {
    if #[cfg(any(target_os = "linux", target_os = "android"))] {
        mod linux;
        mod posix;
    } else {
        mod posix;
    }
}

/// Whether Linux takes the portable path (the portable build); every other Unix always does.
#[cfg(any(target_os = "linux", target_os = "android"))]
const PORTABLE: bool = onlyone::os::PORTABLE_BUILD;

/// The shell that runs a file the kernel cannot execute by itself.
const SH: &std::ffi::CStr = c"/bin/sh";

/// execve(2) errors after which execvp(3) tries the next `PATH` entry.
const NEXT_ON: [c_int; 6] = [
    libc::EACCES,
    libc::ENOENT,
    libc::ENOTDIR,
    libc::ESTALE,
    libc::ENODEV,
    libc::ETIMEDOUT,
];

/// How the job's life is bound to onlyone's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Each OS but Linux has one of the two.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub enum Tether {
    /// The kernel kills the job when onlyone dies: Linux `PR_SET_PDEATHSIG`, FreeBSD
    /// `procctl(PROC_PDEATHSIG_CTL)`. The job checks, once it asked, that onlyone is still its
    /// parent, so that no job runs after its onlyone died.
    DeathSignal,
    /// Nothing kills the job when onlyone dies (macOS, NetBSD, illumos), so the job holds the lock
    /// with onlyone: it inherits the lock's descriptor (flock), and the PID file names it as the
    /// lock's job. The lock then lives at least as long as the job, never shorter; once onlyone
    /// is gone, also as long as the job's own children keep the inherited flock descriptor. The
    /// job runs only after onlyone has recorded it.
    KeepsLock,
}

/// How the job started for `backend` is bound to onlyone on this system.
///
/// In the portable build on Linux every file backend gets macOS's rule, so that it is tested
/// here; the abstract socket, which exists only on Linux, keeps the death signal: a listening
/// socket handed to the job would stay bound in every daemon the job leaves behind, also after
/// a normal end, and Linux can kill the job instead.
pub fn tether(backend: BackendKind) -> Tether {
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "android"))] {
            if onlyone::os::PORTABLE_BUILD && backend != BackendKind::AbstractSocket {
                Tether::KeepsLock
            } else {
                Tether::DeathSignal
            }
        } else if #[cfg(target_os = "freebsd")] {
            let _ = backend;
            Tether::DeathSignal
        } else {
            let _ = backend;
            Tether::KeepsLock
        }
    }
}

/// A job ready to start: every string and pointer array built before the child exists, so that
/// the child allocates nothing.
pub struct Job {
    /// Paths to try, in order (one if COMMAND contains a `/`, else one per `PATH` entry).
    candidates: Vec<CString>,
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    /// Owns the strings `envp_ptrs` points into.
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    /// The terminal the job's process group is given (a descriptor onlyone holds open), or -1.
    terminal: c_int,
    /// SIGTTOU alone, blocked in the child while it takes the terminal.
    ttou: SigSet,
}

impl Job {
    /// `argv[0]` is looked up in `PATH` (from `env`) unless it contains a `/`.
    pub fn new(argv: &[OsString], env: Vec<(OsString, OsString)>) -> io::Result<Job> {
        let argv: Vec<CString> = argv.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_bytes().to_vec());
        let envp: Vec<CString> = env
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).map_err(|_| invalid("an environment variable contains NUL"))
            })
            .collect::<Result<_, _>>()?;
        let program = argv[0].as_bytes();
        let candidates = if program.contains(&b'/') {
            vec![argv[0].clone()]
        } else {
            // execvp(3): an empty entry means the current directory; no PATH means the default.
            let path = path_var.unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
            path.split(|&b| b == b':')
                .map(|dir| {
                    let mut p = if dir.is_empty() {
                        b".".to_vec()
                    } else {
                        dir.to_vec()
                    };
                    p.push(b'/');
                    p.extend_from_slice(program);
                    CString::new(p).map_err(|_| invalid("PATH contains NUL"))
                })
                .collect::<Result<_, _>>()?
        };
        let argv_ptrs = null_terminated(&argv);
        let envp_ptrs = null_terminated(&envp);
        Ok(Job {
            candidates,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            terminal: -1,
            ttou: SigSet::from(Signal::SIGTTOU),
        })
    }

    /// The job's process group takes the terminal open on `fd` (the one whose foreground group
    /// is onlyone's, see [`foreground_terminal`]) as its first act, before it can read from it.
    pub fn give_terminal(&mut self, fd: Option<RawFd>) {
        self.terminal = fd.unwrap_or(-1);
    }

    /// In the child, before [`Job::exec`]: makes the job the leader of a process group of its own
    /// (setpgid(2)), so that it and its children can be signalled as one; if onlyone has the
    /// terminal, hands it to that group (tcsetpgrp(3)) with SIGTTOU blocked, as a job-control
    /// shell's child does (onlyone does it too, after the start: whichever comes first wins the
    /// race against the job's first read). Returns 0 or the errno of setpgid(2).
    ///
    /// # Safety
    /// As [`Job::exec`]: only in the child between its creation and execve(2); system calls
    /// only, on memory prepared before (`self.ttou`), no allocation. The caller resets the signal
    /// mask afterwards.
    #[allow(unsafe_code)]
    unsafe fn enter_own_group(&self) -> c_int {
        // SAFETY: setpgid, sigprocmask, tcsetpgrp and getpid are async-signal-safe system calls
        // on integers and on a sigset_t owned by `self`.
        unsafe {
            if libc::setpgid(0, 0) != 0 {
                return Errno::last_raw().max(1);
            }
            if self.terminal >= 0 {
                libc::sigprocmask(libc::SIG_BLOCK, self.ttou.as_ref(), std::ptr::null_mut());
                // A failure (the terminal gone meanwhile) leaves the job in the background of
                // the terminal, as it would be without onlyone's help: not a reason to fail.
                libc::tcsetpgrp(self.terminal, libc::getpid());
            }
        }
        0
    }

    /// Starts the job as a child of `parent` (this process), bound to it as `tether` says, with
    /// signal mask `mask`. With [`Tether::KeepsLock`] the job inherits the lock's descriptor and
    /// is named in the lock's record (`guard`) before it runs. Returns once the child has called
    /// execve(2) successfully, or the error of the last execve(2) (ENOENT when no candidate
    /// exists, EACCES when one was found but was not executable), as execvp(3) reports it.
    pub fn spawn(
        &self,
        parent: Pid,
        mask: &SigSet,
        tether: Tether,
        guard: &mut Guard,
    ) -> io::Result<Pid> {
        cfg_if::cfg_if! {
            if #[cfg(any(target_os = "linux", target_os = "android"))] {
                if !PORTABLE {
                    debug_assert_eq!(tether, Tether::DeathSignal);
                    return linux::spawn(self, parent, mask);
                }
            }
        }
        posix::spawn(self, parent, mask, tether, guard)
    }

    /// `/bin/sh PATH ARGS...` for a file without `#!` (`ENOEXEC`), the PATH slot (index 1) left
    /// for the child to fill in.
    fn sh_argv(&self) -> Vec<*const c_char> {
        let mut sh_argv = Vec::with_capacity(self.argv_ptrs.len() + 1);
        sh_argv.push(SH.as_ptr());
        sh_argv.push(std::ptr::null());
        sh_argv.extend_from_slice(&self.argv_ptrs[1..]);
        sh_argv
    }

    /// In the child: execve(2) on each candidate path, as execvp(3) searches `PATH`; a file the
    /// kernel does not know how to run (`ENOEXEC`) is run by `/bin/sh`, as execvp(3) and shells
    /// do. Returns only on failure, with the errno to report: EACCES if any candidate gave it,
    /// else the last error.
    ///
    /// # Safety
    /// Called only in a child between its creation and execve(2) or `_exit`: it makes only
    /// execve(2) calls and writes only `sh_argv[1]` (built by [`Job::sh_argv`]), allocating
    /// nothing and taking no lock, so that it is safe after fork(2) in a process with threads
    /// and on a borrowed stack after `clone(CLONE_VM)`.
    #[allow(unsafe_code)]
    unsafe fn exec(&self, sh_argv: &mut [*const c_char]) -> c_int {
        let mut result = libc::ENOENT;
        let mut saw_eacces = false;
        for path in &self.candidates {
            // SAFETY: every pointer array is NULL-terminated and points into CStrings owned by
            // `self`, alive for the call; execve(2) returns only on failure.
            unsafe {
                libc::execve(
                    path.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                )
            };
            result = Errno::last_raw();
            if result == libc::ENOEXEC {
                sh_argv[1] = path.as_ptr();
                // SAFETY: as above; `sh_argv` is NULL-terminated (it ends with argv's NULL).
                unsafe { libc::execve(SH.as_ptr(), sh_argv.as_ptr(), self.envp_ptrs.as_ptr()) };
                break;
            }
            match result {
                libc::EACCES => saw_eacces = true,
                e if NEXT_ON.contains(&e) => {}
                _ => break,
            }
        }
        if saw_eacces && NEXT_ON.contains(&result) {
            result = libc::EACCES;
        }
        result.max(1)
    }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| invalid("an argument contains NUL"))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Sets SIGCHLD to its default action. A parent that ignores SIGCHLD (SIG_IGN survives execve)
/// would make the kernel reap the job by itself, and its exit status would be lost.
#[allow(unsafe_code)]
pub fn default_sigchld() -> Result<(), Errno> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, sigaction};
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in a signal context; the
    // previous action is dropped without being used.
    unsafe { sigaction(Signal::SIGCHLD, &action) }.map(drop)
}

/// Who sent a signal, as far as the OS says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The kernel (the terminal, a hangup): Linux and FreeBSD mark these `SI_KERNEL`.
    Kernel,
    /// A process, with kill(2) or sigqueue(3).
    Process,
    /// The OS has no code that tells the two apart (macOS, NetBSD, illumos; Linux in the
    /// portable build, to test that rule).
    Unknown,
}

/// One signal onlyone received.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub signal: Signal,
    pub origin: Origin,
}

/// Where onlyone reads the signals it blocked (see `run.rs`): a signalfd on Linux, a self-pipe
/// elsewhere.
pub enum Signals {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Fd(linux::SignalReader),
    Pipe(posix::SignalPipe),
}

impl Signals {
    /// Starts receiving the signals of `mask`, which are blocked in this process. Called once the
    /// job runs: a signal that arrived before waits, blocked, and is read then.
    pub fn open(mask: &SigSet) -> Result<Signals, Errno> {
        cfg_if::cfg_if! {
            if #[cfg(any(target_os = "linux", target_os = "android"))] {
                if !PORTABLE {
                    return linux::SignalReader::open(mask).map(Signals::Fd);
                }
            }
        }
        posix::SignalPipe::open(mask).map(Signals::Pipe)
    }

    /// The next signal, if one is waiting (never blocks).
    pub fn read(&mut self) -> Result<Option<Received>, Errno> {
        match self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Signals::Fd(r) => r.read(),
            Signals::Pipe(p) => p.read(),
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Signals::Fd(r) => r.as_fd(),
            Signals::Pipe(p) => p.as_fd(),
        }
    }
}

/// The standard descriptor (0, 1 or 2) open on a terminal whose foreground process group is
/// onlyone's, if any: the terminal onlyone hands to the job's process group (tcgetpgrp(3)).
pub fn foreground_terminal() -> Option<RawFd> {
    use std::os::fd::AsRawFd;
    let own = nix::unistd::getpgrp();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]
        .into_iter()
        .find(|fd| nix::unistd::tcgetpgrp(fd).is_ok_and(|g| g == own))
        .map(|fd| fd.as_raw_fd())
}

/// Gives the terminal open on `fd` to process group `group` (tcsetpgrp(3)), with SIGTTOU blocked
/// for the call: a process outside the terminal's foreground group would otherwise be stopped
/// by it (how job-control shells take the terminal back).
pub fn hand_terminal(fd: RawFd, group: Pid) -> Result<(), Errno> {
    use nix::sys::signal::{SigmaskHow, sigprocmask};
    let ttou = SigSet::from(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old))?;
    let result = with_terminal(fd, |fd| nix::unistd::tcsetpgrp(fd, group));
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    result
}

/// Runs `f` on standard descriptor `fd` (0, 1 or 2) borrowed from std's handle.
pub fn with_terminal<T>(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>) -> T) -> T {
    match fd {
        0 => f(std::io::stdin().as_fd()),
        1 => f(std::io::stdout().as_fd()),
        _ => f(std::io::stderr().as_fd()),
    }
}

/// The job's descendants that left its process group (setsid(2), setpgid(2)), which a signal to
/// the group does not reach: pid and command name. `None` where they cannot be found (every
/// system but Linux: no `/proc` with parent and group of each process).
pub fn escaped(job: Pid, group: Pid) -> Option<Vec<(u32, String)>> {
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "android"))] {
            Some(linux::escaped(job, group))
        } else {
            let _ = (job, group);
            None
        }
    }
}
