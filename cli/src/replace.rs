//! `onlyone run --replace`: stop the exact process that holds the lock and take it over.
//!
//! The holder is the process the lock names (an `onlyone run` wrapper, which forwards SIGTERM to
//! its job; or a job run with `-F`). onlyone signals only a process the library *proved* to be
//! the holder and pinned with a pidfd ([`onlyone::HolderProcess`]): signals go through that pidfd,
//! so they reach that process or nobody, never one that got its pid later. Where no such proof
//! exists — the process that took the lock has exited and a child it handed the lock to holds it,
//! the holder runs in another PID namespace or on another machine, it cannot be seen, the system
//! has no pidfds — onlyone refuses with exit status 69 and says why. No process is ever looked up
//! by name.
//!
//! Systems without pidfds (macOS, the BSDs, illumos; Linux in the portable build, which takes
//! their path) can never pin the holder: there `--replace` refuses to signal a holder and says
//! how to stop it by hand. A free lock is simply taken.

use std::time::Duration;

use onlyone::{Acquire, Holder, HolderKind, HolderProcess, Lock};

use crate::log::{Event, Log};

/// Whether a holder can be pinned by a pidfd here (on Windows: by a process handle).
const PIDFDS: bool = cfg!(windows)
    || (cfg!(any(target_os = "linux", target_os = "android")) && !onlyone::os::PORTABLE_BUILD);

use crate::exit::{self, Failure};

/// Takes the lock, stopping its holder first if there is one.
pub fn take_over(
    lock: &dyn Lock,
    kill_after: Duration,
    verbose: bool,
    log: &Log,
) -> Result<Acquire, Failure> {
    let name = lock.name().as_str();
    // The holder may let go between the try and the lookup: then try again (a few times).
    for _ in 0..3 {
        if let Acquire::Acquired(g) = lock.try_acquire()? {
            return Ok(Acquire::Acquired(g));
        }
        let Some(holder) = lock.holder()? else {
            continue;
        };
        let target = proven(name, &holder)?;
        log.event(
            Event::Replaced,
            &format!("replacing the holder of {name:?}: SIGTERM to {holder}"),
            !verbose,
            Some(&holder),
            None,
        );
        signal(&target, false)?;
        let after_term = lock.acquire_timeout(Some(kill_after))?;
        let Acquire::Held(_) = &after_term else {
            return Ok(after_term);
        };
        // Still held: by our target (alive, and proven again), or by a process that took the
        // lock meanwhile, which is never killed.
        let still_target = !target.has_exited()
            && lock
                .holder()?
                .and_then(|h| h.process().map(HolderProcess::pid))
                == Some(target.pid());
        if !still_target {
            return Ok(after_term);
        }
        if verbose {
            say!(
                "onlyone: pid {} still holds {name:?} {} s after SIGTERM: SIGKILL",
                target.pid(),
                kill_after.as_secs_f64()
            );
        }
        signal(&target, true)?;
        return Ok(lock.acquire_timeout(Some(kill_after))?);
    }
    Err(Failure::new(
        exit::UNAVAILABLE,
        format!(
            "cannot replace the holder of {name:?}: the lock changes hands faster than onlyone can \
             look at its holder"
        ),
    ))
}

/// The holder's pinned process, or the refusal that says why there is none.
fn proven(name: &str, holder: &Holder) -> Result<HolderProcess, Failure> {
    if let Some(p) = holder.process() {
        return Ok(p.clone());
    }
    let why = match (holder.kind, holder.pid, &holder.host) {
        (HolderKind::Unresponsive, _, _) => {
            "it is not an onlyone holder (bound but not listening); onlyone does not signal it"
                .to_owned()
        }
        (HolderKind::OtherPidNamespace, _, _) => {
            "it runs in another PID namespace (another container?), where no pid of ours can \
             reach it; stop it from its own namespace"
                .to_owned()
        }
        (_, _, Some(host)) => format!(
            "its record names a process on {host}, and onlyone signals only a process it can prove \
             holds the lock on this machine"
        ),
        (_, None, _) => "it cannot be identified from here".to_owned(),
        (_, Some(pid), _) if !PIDFDS => format!(
            "this system has no pidfd to pin a process, and onlyone does not signal a pid that \
             may have been reused meanwhile; stop the holder yourself (e.g. `kill -TERM {pid}` \
             once you have checked it), then run again"
        ),
        (_, Some(pid), _) => format!(
            "onlyone cannot prove that pid {pid} holds it (the process that took the lock may have \
             exited, leaving it to a child, and its pid may belong to another process now; or \
             this system has no pidfds), and never signals a process it cannot prove is the holder"
        ),
    };
    Err(Failure::new(
        exit::UNAVAILABLE,
        format!("cannot replace the holder of {name:?} ({holder}): {why}"),
    ))
}

fn signal(target: &HolderProcess, kill: bool) -> Result<(), Failure> {
    let result = if kill {
        target.kill()
    } else {
        target.terminate()
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if has_exited(&e) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Failure::new(
            exit::NOPERM,
            format!("not permitted to signal the holder, pid {}", target.pid()),
        )),
        Err(e) => Err(Failure::os(
            &format!("cannot signal the holder, pid {}", target.pid()),
            e,
        )),
    }
}

/// Whether signalling failed because the holder has exited (`ESRCH`; on Windows the pinned
/// handle reports `NotFound`).
#[cfg(unix)]
fn has_exited(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ESRCH)
}

/// Whether signalling failed because the holder has exited (`ESRCH`; on Windows the pinned
/// handle reports `NotFound`).
#[cfg(windows)]
fn has_exited(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}
