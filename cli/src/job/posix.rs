//! Every Unix but Linux (and Linux in the portable build): the job started with fork(2), and the
//! signals onlyone forwards received through a self-pipe.
//!
//! **Why fork(2), not posix_spawn(3) or `std::process::Command`.** The child must run code of
//! ours before execve(2): `procctl(PROC_PDEATHSIG_CTL)` on FreeBSD; on macOS, NetBSD and illumos
//! a wait until onlyone has named it in the lock's record (a PID file has no descriptor to
//! inherit, and a job that ran before it was named would run without the lock if onlyone died in
//! between), and the lock's descriptor made inheritable in the child alone. posix_spawn has no
//! hook for the first two. `Command::pre_exec` forks too, but searches `PATH` and handles
//! `ENOEXEC` with the libc's execvp(3), which differ per system; here the child runs the same
//! [`Job::exec`] as on Linux, so every system resolves COMMAND alike and reports the same errors.
//! Between fork and execve the child makes only async-signal-safe system calls (read, close,
//! fcntl, getppid, procctl/prctl, setpgid, tcsetpgrp, signal, sigprocmask, execve, write,
//! _exit) and allocates nothing, so a thread of onlyone's (the PostgreSQL session's) cannot leave it a held lock.
//! The child reports a failed execve through a close-on-exec pipe: end of file means it ran.
//!
//! **The job's lifetime** ([`Tether`]): FreeBSD asks for SIGKILL at the parent's death with
//! `procctl(P_PID, 0, PROC_PDEATHSIG_CTL, &SIGKILL)` and checks, as Linux does, that onlyone is
//! still its parent. macOS, NetBSD and illumos have no such request (illumos's process contracts
//! could kill the job with its holder, through libcontract; not used here), so the job holds the
//! lock itself ([`Tether::KeepsLock`]): the child waits on a pipe until onlyone has named it in
//! the lock's record (`Guard::record_job`) and closed the pipe, checks that onlyone is still its
//! parent (end of file also comes when onlyone died), clears close-on-exec on the lock's
//! descriptor (flock), and only then executes COMMAND.
//!
//! **Signals without signalfd.** A handler (`SA_SIGINFO`) writes each signal's number and
//! `si_code` to a non-blocking pipe, which onlyone polls beside the lost-lock descriptor: one
//! write(2) of 8 bytes, async-signal-safe and atomic, errno saved and restored. It is installed
//! only after the job has started, so the job inherits onlyone's original dispositions, and the
//! signals stay blocked until then, so none is lost (a blocked signal waits). A `sigwait` thread
//! would need `sigwaitinfo` for the `si_code`, which macOS lacks. Which `si_code` means "sent by
//! the kernel" (the terminal, a hangup) is documented only on FreeBSD (`SI_KERNEL`, 0x10006) and
//! Linux (`SI_KERNEL`, 0x80, read by `job/linux.rs`); elsewhere the origin is unknown and
//! `run.rs` decides by the terminal's foreground process group. Linux in the portable build
//! takes that rule too, so that it is tested.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::libc;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};
use nix::unistd::Pid;
use onlyone::Guard;

use super::{Job, Origin, Received, Tether};

/// The `si_code` of signals the kernel generates itself, where the OS documents one.
const KERNEL_CODE: Option<c_int> = if cfg!(target_os = "freebsd") {
    // sys/signal.h: SI_KERNEL (the libc crate does not define it for FreeBSD); the terminal's
    // signals carry it (tty_signal_pgrp).
    Some(0x10006)
} else {
    None
};

/// Starts `job` with fork(2); see the module docs and [`Job::spawn`].
#[allow(unsafe_code)]
pub fn spawn(
    job: &Job,
    parent: Pid,
    mask: &SigSet,
    tether: Tether,
    guard: &mut Guard,
) -> io::Result<Pid> {
    let (report_r, report_w) = pipe_cloexec()?;
    let go = match tether {
        Tether::KeepsLock => Some(pipe_cloexec()?),
        Tether::DeathSignal => None,
    };
    let lock_fd = match tether {
        Tether::KeepsLock => guard.as_fd().map_or(-1, |fd| fd.as_raw_fd()),
        Tether::DeathSignal => -1,
    };
    let child = Child {
        job,
        sh_argv: job.sh_argv(),
        tether,
        parent: parent.as_raw(),
        mask: mask.as_ref(),
        lock_fd,
        go: go.as_ref().map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd())),
        report: report_w.as_raw_fd(),
    };
    // SAFETY: fork(2) itself is safe to call; what makes it unsafe is the child's code, which
    // runs in a copy of a process that may have other threads: `Child::run` makes only
    // async-signal-safe system calls on memory prepared above, and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the child of the fork above; see `Child::run`.
        unsafe { child.run() }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(report_w);
    let pid = Pid::from_raw(pid);
    if let Some((go_r, go_w)) = go {
        drop(go_r);
        if let Err(e) = guard.record_job(pid.as_raw() as u32) {
            // The child waits for the pipe: it never runs the job.
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            reap(pid);
            return Err(io::Error::other(format!(
                "cannot name the job in the lock's record, so that the lock outlives onlyone: {e}"
            )));
        }
        // End of file on the pipe: run.
        drop(go_w);
    }
    let mut errno = [0u8; 4];
    let mut got = 0;
    while got < errno.len() {
        match nix::unistd::read(&report_r, &mut errno[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => {
                reap(pid);
                return Err(e.into());
            }
        }
    }
    match got {
        // End of file: the child's end closed at execve.
        0 => Ok(pid),
        _ => {
            reap(pid);
            Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
        }
    }
}

/// Waits for a child that did not run the job.
fn reap(pid: Pid) {
    while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
}

/// A pipe whose ends are close-on-exec. (pipe2(2) is missing on macOS; onlyone starts no other
/// process from another thread meanwhile.)
fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe()?;
    for fd in [&r, &w] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((r, w))
}

/// What the child needs between fork and execve, prepared before the fork.
struct Child<'a> {
    job: &'a Job,
    sh_argv: Vec<*const std::ffi::c_char>,
    tether: Tether,
    parent: libc::pid_t,
    mask: *const libc::sigset_t,
    /// The lock's descriptor, to keep across execve (`KeepsLock`), or -1.
    lock_fd: c_int,
    /// Read and write ends of the pipe whose end of file says "run" (`KeepsLock`).
    go: Option<(c_int, c_int)>,
    /// Write end of the pipe that reports a failed execve (4 bytes: the errno).
    report: c_int,
}

impl Child<'_> {
    /// The child's side: see the module docs. Never returns.
    ///
    /// # Safety
    /// Only in the child of fork(2), once.
    #[allow(unsafe_code)]
    unsafe fn run(mut self) -> ! {
        // SAFETY: only async-signal-safe system calls on descriptors and memory prepared before
        // the fork (this process's own copy); see the module docs.
        unsafe {
            match self.tether {
                Tether::DeathSignal => {
                    if let Err(e) = request_death_signal() {
                        self.fail(e);
                    }
                    if libc::getppid() != self.parent {
                        // onlyone died before the request took effect.
                        libc::_exit(127);
                    }
                }
                Tether::KeepsLock => {
                    if let Some((r, w)) = self.go {
                        libc::close(w);
                        let mut byte = 0u8;
                        while libc::read(r, (&mut byte as *mut u8).cast(), 1) < 0
                            && Errno::last_raw() == libc::EINTR
                        {}
                        libc::close(r);
                    }
                    if libc::getppid() != self.parent {
                        // onlyone died, so it may not have named us: run nothing.
                        libc::_exit(127);
                    }
                    if self.lock_fd >= 0 && libc::fcntl(self.lock_fd, libc::F_SETFD, 0) != 0 {
                        self.fail(Errno::last_raw());
                    }
                }
            }
            let e = self.job.enter_own_group();
            if e != 0 {
                self.fail(e);
            }
            if !super::SIGPIPE_FROM_PARENT {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            libc::sigprocmask(libc::SIG_SETMASK, self.mask, std::ptr::null_mut());
            let e = self.job.exec(&mut self.sh_argv);
            self.fail(e)
        }
    }

    /// Reports `errno` to onlyone and exits.
    #[allow(unsafe_code)]
    fn fail(&self, errno: c_int) -> ! {
        let bytes = errno.to_ne_bytes();
        // SAFETY: write(2) of a local buffer to our end of the report pipe, then _exit(2).
        unsafe {
            libc::write(self.report, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    }
}

/// Asks the kernel for SIGKILL when the parent dies: FreeBSD `procctl(PROC_PDEATHSIG_CTL)`,
/// Linux `prctl(PR_SET_PDEATHSIG)` (the portable build's abstract socket). Async-signal-safe.
#[allow(unsafe_code)]
fn request_death_signal() -> Result<(), c_int> {
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "android"))] {
            // SAFETY: prctl(2) with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
        } else if #[cfg(target_os = "freebsd")] {
            let mut signal: c_int = libc::SIGKILL;
            // SAFETY: procctl(2) reads the int `signal` points to, alive for the call.
            let rc = unsafe {
                libc::procctl(
                    libc::P_PID,
                    0,
                    libc::PROC_PDEATHSIG_CTL,
                    (&mut signal as *mut c_int).cast::<c_void>(),
                )
            };
        } else {
            // `tether` never asks for it here.
            let rc = 0;
        }
    }
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::last_raw())
    }
}

/// Write end of the self-pipe, for the handler; -1 when none is open.
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// The signal handler: appends the signal's number and `si_code` to the self-pipe.
#[allow(unsafe_code)]
extern "C" fn on_signal(signal: c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
    let saved = Errno::last_raw();
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t (checked for NULL anyway).
    let code = if info.is_null() {
        c_int::MIN
    } else {
        unsafe { (*info).si_code }
    };
    let mut record = [0u8; 8];
    record[..4].copy_from_slice(&signal.to_ne_bytes());
    record[4..].copy_from_slice(&code.to_ne_bytes());
    let fd = PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; 8 bytes are written whole or not at all (less
        // than PIPE_BUF). A full pipe (thousands of unread signals) drops this one.
        unsafe { libc::write(fd, record.as_ptr().cast(), record.len()) };
    }
    Errno::set_raw(saved);
}

/// The self-pipe the handler writes to.
pub struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
    mask: SigSet,
}

impl SignalPipe {
    /// Installs the handler for every signal of `mask` and unblocks them: signals that waited
    /// while blocked arrive now, in the pipe.
    #[allow(unsafe_code)]
    pub fn open(mask: &SigSet) -> Result<SignalPipe, Errno> {
        let (read, write) =
            pipe_cloexec().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        for fd in [&read, &write] {
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        }
        PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::SigAction(on_signal),
            SaFlags::SA_SIGINFO | SaFlags::SA_RESTART,
            *mask,
        );
        for signal in mask.iter() {
            // SAFETY: `on_signal` is async-signal-safe (write(2) only, errno preserved); the
            // previous actions are not needed: the job, started before, inherited them.
            unsafe { sigaction(signal, &action) }?;
        }
        sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(mask), None)?;
        Ok(SignalPipe {
            read,
            write,
            mask: *mask,
        })
    }

    /// The next signal from the pipe, if one is there (never blocks).
    pub fn read(&mut self) -> Result<Option<Received>, Errno> {
        loop {
            let mut record = [0u8; 8];
            match nix::unistd::read(&self.read, &mut record) {
                Ok(8) => {}
                Ok(_) | Err(Errno::EAGAIN) => return Ok(None),
                Err(e) => return Err(e),
            }
            let number = i32::from_ne_bytes(record[..4].try_into().expect("4 bytes"));
            let code = i32::from_ne_bytes(record[4..].try_into().expect("4 bytes"));
            let Ok(signal) = Signal::try_from(number) else {
                continue;
            };
            let origin = match KERNEL_CODE {
                Some(kernel) if code == kernel => Origin::Kernel,
                Some(_) => Origin::Process,
                None => Origin::Unknown,
            };
            return Ok(Some(Received { signal, origin }));
        }
    }
}

impl AsFd for SignalPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl Drop for SignalPipe {
    /// Blocks the signals again before the write end closes, so that the handler never writes to
    /// a descriptor number that something else may reuse.
    fn drop(&mut self) {
        let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&self.mask), None);
        PIPE.store(-1, Ordering::Relaxed);
        let _ = &self.write;
    }
}
