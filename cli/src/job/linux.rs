//! Linux: the job started as a child that dies with onlyone, and signals read from a signalfd.
//!
//! The job is started the way posix_spawn(3) starts a program: `clone(CLONE_VM | CLONE_VFORK)`,
//! so the child borrows onlyone's memory until it calls execve(2) instead of copying its page
//! tables as fork(2) does (a fork costs more than the rest of onlyone's start-up; see
//! BENCHMARKS.md). Between clone and execve the child only makes system calls:
//! - `prctl(PR_SET_PDEATHSIG, SIGKILL)`, then checks that its parent is still onlyone (onlyone may
//!   have died before the request: then it exits at once, and no job runs without the lock);
//! - leads a process group of its own and, if onlyone had the terminal, takes it
//!   ([`Job::enter_own_group`](super::Job::enter_own_group));
//! - restores the signal mask onlyone had before it blocked the signals it forwards, and leaves
//!   SIGPIPE's disposition as onlyone got it where that is its parent's
//!   ([`SIGPIPE_FROM_PARENT`](super::SIGPIPE_FROM_PARENT)), else restores the default;
//! - [`Job::exec`](super::Job::exec).
//!
//! The death signal is sent when the *thread* that created the child exits: onlyone starts the job
//! from its only thread. execve(2) keeps it, except for set-user-ID/set-group-ID programs and
//! programs with file capabilities.
//!
//! Signals are read from a signalfd(2), whose `ssi_code` says whether the kernel sent them
//! (`SI_KERNEL`: the terminal, a hangup) or a process did.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use super::{Job, Origin, Received};

/// Stack for the child between clone and execve: a few system calls deep.
const CHILD_STACK: usize = 64 * 1024;

/// Starts `job` as a child of `parent` (this process) that gets SIGKILL when `parent` dies, with
/// signal mask `mask`. See [`Job::spawn`].
#[allow(unsafe_code)]
pub fn spawn(job: &Job, parent: Pid, mask: &SigSet) -> io::Result<Pid> {
    let error = AtomicI32::new(0);
    let mut stack = vec![0u8; CHILD_STACK];
    let parent_raw = parent.as_raw();
    let mask_ptr: *const libc::sigset_t = mask.as_ref();
    let mut sh_argv = job.sh_argv();
    let mut child = || -> c_int {
        // SAFETY: this closure runs in the child created by clone(CLONE_VM | CLONE_VFORK)
        // below, on its own stack, while onlyone's only thread is suspended until the child
        // calls execve or exits. It calls only async-signal-safe system call wrappers
        // (prctl, getppid, setpgid, tcsetpgrp, signal, sigprocmask, execve, _exit), allocates
        // nothing (every string and pointer array was built by `Job::new` or above, `mask`
        // lives in the caller's frame), takes no lock, and writes to shared memory only the atomic `error` and
        // the reserved slot of `sh_argv`, which the parent reads or drops after it resumes. errno
        // is written through the parent's thread-local storage, which the suspended parent does
        // not read until it resumes.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                error.store(Errno::last_raw(), Ordering::Relaxed);
                libc::_exit(127);
            }
            if libc::getppid() != parent_raw {
                // onlyone died before the request took effect: nobody holds the lock for us.
                libc::_exit(127);
            }
            let e = job.enter_own_group();
            if e != 0 {
                error.store(e, Ordering::Relaxed);
                libc::_exit(127);
            }
            if !super::SIGPIPE_FROM_PARENT {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            libc::sigprocmask(libc::SIG_SETMASK, mask_ptr, std::ptr::null_mut());
            error.store(job.exec(&mut sh_argv), Ordering::Relaxed);
            libc::_exit(127)
        }
    };
    extern "C" fn trampoline<F: FnMut() -> c_int>(data: *mut c_void) -> c_int {
        // SAFETY: `data` is the `&mut F` passed to clone below, alive until the parent resumes.
        let f = unsafe { &mut *(data as *mut F) };
        f()
    }
    fn trampoline_of<F: FnMut() -> c_int>(_: &F) -> extern "C" fn(*mut c_void) -> c_int {
        trampoline::<F>
    }
    let entry = trampoline_of(&child);
    // The stack grows down on every Linux architecture Rust supports: pass its top, 16-byte
    // aligned as the ABIs require.
    let top = stack.as_mut_ptr_range().end;
    let top = top.wrapping_sub(top as usize % 16) as *mut c_void;
    // SAFETY: clone(2) with CLONE_VM | CLONE_VFORK is how glibc's posix_spawn starts a child:
    // the child runs `child` (see its SAFETY note) on `stack`, which outlives it because this
    // thread is suspended until the child has called execve or _exit. SIGCHLD is reported to
    // onlyone when the job exits, as for any child.
    let pid = unsafe {
        libc::clone(
            entry,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut child as *mut _) as *mut c_void,
        )
    };
    drop(stack);
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let pid = Pid::from_raw(pid);
    match error.load(Ordering::Relaxed) {
        0 => Ok(pid),
        e => {
            // The child has exited: reap it.
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(io::Error::from_raw_os_error(e))
        }
    }
}

/// The blocked signals, read from a signalfd.
pub struct SignalReader(SignalFd);

impl SignalReader {
    pub fn open(mask: &SigSet) -> Result<SignalReader, Errno> {
        SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map(SignalReader)
    }

    pub fn read(&mut self) -> Result<Option<Received>, Errno> {
        loop {
            let Some(info) = self.0.read_signal()? else {
                return Ok(None);
            };
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            let origin = if info.ssi_code == libc::SI_KERNEL {
                Origin::Kernel
            } else {
                Origin::Process
            };
            return Ok(Some(Received { signal, origin }));
        }
    }
}

impl AsFd for SignalReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The descendants of `job` that are no longer in process group `group` (they called setsid(2)
/// or setpgid(2)), with their command names, found by walking `/proc` (proc(5): the `ppid` and
/// `pgrp` fields of `/proc/PID/stat`). Processes whose parent already exited were adopted by
/// init or a subreaper and are not found.
pub fn escaped(job: Pid, group: Pid) -> Vec<(u32, String)> {
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID PGRP ...": COMM may contain spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let mut rest = stat[close + 1..].split_whitespace().skip(1);
        let (Some(Ok(ppid)), Some(Ok(pgrp))) = (
            rest.next().map(str::parse::<u32>),
            rest.next().map(str::parse::<i32>),
        ) else {
            continue;
        };
        procs.push((pid, ppid, pgrp, comm));
    }
    let mut tree = vec![job.as_raw() as u32];
    let mut found = Vec::new();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for (pid, ppid, pgrp, comm) in &procs {
            if *ppid == parent && !tree.contains(pid) {
                tree.push(*pid);
                if *pgrp != group.as_raw() {
                    found.push((*pid, comm.clone()));
                }
            }
        }
        i += 1;
    }
    found
}
