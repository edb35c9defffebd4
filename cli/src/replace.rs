//! `onlyone run --replace`: stop the exact process that holds the lock and take it over.
//!
//! The holder is the process the lock names (an `onlyone run` wrapper, which forwards SIGTERM to
//! its job; or a job run with `-F`). It is signalled through a pidfd (pidfd_open(2),
//! pidfd_send_signal(2)) opened after checking its start time, so a pid reused by another
//! process is never signalled, and no process is ever looked up by name.
//!
//! Systems without pidfds (macOS, the BSDs, illumos; Linux in the portable build, which takes
//! their path) have no way to pin the holder between the check and the signal: there `--replace`
//! refuses to signal a holder (exit 69) and says how to stop it by hand. A free lock is simply
//! taken.

use std::os::fd::OwnedFd;
use std::time::Duration;

use onlyone::{Acquire, Holder, HolderKind, Lock};
use rustix::process::Signal;

/// Whether the holder can be pinned by a pidfd here.
const PIDFDS: bool =
    cfg!(any(target_os = "linux", target_os = "android")) && !onlyone::os::PORTABLE_BUILD;

use crate::exit::{self, Failure};

/// Takes the lock, stopping its holder first if there is one.
pub fn take_over(lock: &dyn Lock, kill_after: Duration, verbose: bool) -> Result<Acquire, Failure> {
    let name = lock.name().as_str();
    // The holder may exit between the try and the pidfd: then look again (a few times).
    for _ in 0..3 {
        let holder = match lock.try_acquire()? {
            Acquire::Acquired(g) => return Ok(Acquire::Acquired(g)),
            Acquire::Held(h) => h,
        };
        let Some(target) = Target::open(name, &holder)? else {
            continue;
        };
        if verbose {
            eprintln!("onlyone: replacing the holder of {name:?}: SIGTERM to {holder}");
        }
        target.signal(Signal::TERM)?;
        let after_term = lock.acquire_timeout(Some(kill_after))?;
        match &after_term {
            Acquire::Held(now) if target.is(now) => {}
            // Released (ours now), or taken by another process meanwhile: never kill that one.
            _ => return Ok(after_term),
        }
        if verbose {
            eprintln!(
                "onlyone: pid {} still holds {name:?} {} s after SIGTERM: SIGKILL",
                target.pid,
                kill_after.as_secs_f64()
            );
        }
        target.signal(Signal::KILL)?;
        return Ok(lock.acquire_timeout(Some(kill_after))?);
    }
    Err(Failure::new(
        exit::UNAVAILABLE,
        format!(
            "cannot replace the holder of {name:?}: the process the lock names keeps vanishing \
             while the lock stays held (a child that inherited the lock holds it?)"
        ),
    ))
}

/// The holding process, pinned by a pidfd where the kernel has them.
struct Target {
    pid: u32,
    started: Option<std::time::SystemTime>,
    pidfd: Option<OwnedFd>,
}

impl Target {
    /// Opens the holder; `Ok(None)` when it is already gone.
    fn open(name: &str, holder: &Holder) -> Result<Option<Target>, Failure> {
        let pid = match (holder.kind, holder.pid) {
            (HolderKind::Unresponsive, _) => {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "cannot replace the holder of {name:?}: it is not an onlyone holder \
                         ({holder}); onlyone does not signal it"
                    ),
                ));
            }
            (_, Some(pid)) => pid,
            (_, None) => {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "cannot replace the holder of {name:?}: it cannot be identified ({holder})"
                    ),
                ));
            }
        };
        if !PIDFDS {
            return Err(Failure::new(
                exit::UNAVAILABLE,
                format!(
                    "cannot replace the holder of {name:?} ({holder}): this system has no pidfd \
                     to pin a process, and onlyone does not signal a pid that may have been \
                     reused meanwhile; stop the holder yourself (e.g. `kill -TERM {pid}` once you \
                     have checked it), then run again"
                ),
            ));
        }
        let raw = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| {
                Failure::new(exit::SOFTWARE, format!("holder pid {pid} is out of range"))
            })?;
        let pidfd = match open_pidfd(raw) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Ok(None),
            // No pidfds (kernel before 5.3, seccomp): the start time check below and kill(2).
            Err(_) => None,
        };
        let target = Target {
            pid,
            started: holder.started,
            pidfd,
        };
        // Checked after the pidfd exists: if this is the holder now, the pidfd is the holder.
        Ok(target.still_running().then_some(target))
    }

    /// Whether `pid` is still the holder: alive, same start time.
    fn still_running(&self) -> bool {
        match onlyone::process::stat(self.pid) {
            Some(s) if s.state != 'Z' && s.state != 'X' => {
                self.started.is_none()
                    || onlyone::process::start_time(s.start_ticks) == self.started
            }
            _ => false,
        }
    }

    /// Whether `holder` is this process.
    fn is(&self, holder: &Holder) -> bool {
        holder.pid == Some(self.pid) && holder.started == self.started
    }

    fn signal(&self, sig: Signal) -> Result<(), Failure> {
        let result = match &self.pidfd {
            Some(fd) => send_by_pidfd(fd, sig),
            None if self.still_running() => rustix::process::kill_process(
                rustix::process::Pid::from_raw(self.pid as i32).expect("checked in open"),
                sig,
            ),
            None => return Ok(()),
        };
        match result {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(rustix::io::Errno::PERM) => Err(Failure::new(
                exit::NOPERM,
                format!("not permitted to signal the holder, pid {}", self.pid),
            )),
            Err(e) => Err(Failure::os(
                &format!("cannot signal the holder, pid {}", self.pid),
                std::io::Error::from(e),
            )),
        }
    }
}

/// A pidfd for `pid` (pidfd_open(2)); `Ok(None)` where the OS has none (never reached there:
/// [`PIDFDS`] refuses first).
fn open_pidfd(pid: rustix::process::Pid) -> Result<Option<OwnedFd>, rustix::io::Errno> {
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "android"))] {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map(Some)
        } else {
            let _ = pid;
            Ok(None)
        }
    }
}

/// pidfd_send_signal(2).
fn send_by_pidfd(fd: &OwnedFd, sig: Signal) -> Result<(), rustix::io::Errno> {
    cfg_if::cfg_if! {
        if #[cfg(any(target_os = "linux", target_os = "android"))] {
            rustix::process::pidfd_send_signal(fd, sig)
        } else {
            let _ = (fd, sig);
            Err(rustix::io::Errno::NOSYS)
        }
    }
}
