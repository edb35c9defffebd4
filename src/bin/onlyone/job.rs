//! Starting the job as a child that dies with onlyone, and the two places that need `unsafe`.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

/// Makes `cmd`'s child, between fork and exec:
/// - ask the kernel for SIGKILL when onlyone dies (`PR_SET_PDEATHSIG`, prctl(2)), then check that
///   its parent is still `parent` (onlyone may have died before the request: then exit at once);
/// - restore the signal mask onlyone had before it blocked the signals it forwards.
///
/// The death signal is sent when the *thread* that forked exits: onlyone forks from its only
/// thread. execve(2) keeps it, except for set-user-ID/set-group-ID programs and file capabilities.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command, parent: Pid, mask: SigSet) {
    // SAFETY: the closure runs in the child between fork(2) and execve(2), where only
    // async-signal-safe functions may be called. It calls exactly prctl(2) (set_pdeathsig),
    // getppid(2) and sigprocmask(2), all async-signal-safe system calls; it does not allocate
    // (`mask` and `parent` are copied in before the fork, io::Error::from_raw_os_error does not
    // allocate), takes no lock and touches no state shared with other threads.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                // onlyone died before the request took effect: nobody holds the lock for us.
                return Err(io::Error::from_raw_os_error(Errno::ESRCH as i32));
            }
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)?;
            Ok(())
        });
    }
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
