//! illumos (and Solaris): identity from the binary `/proc/PID/psinfo` (proc(5): start time in
//! nanoseconds since the epoch, real uid, the first 80 bytes of the arguments; no live LWPs means
//! a zombie); no boot id; no event to wait on, so waiters back off. `flock(3C)` has BSD semantics
//! (`F_FLOCK`), called directly: fs2 0.4 does not build here.

use std::time::{Duration, SystemTime};

use super::ProcStat;
#[cfg(feature = "pidfile")]
pub(crate) use super::unix::create_linked;
#[cfg(feature = "flock")]
pub(crate) use super::unix::{flock_table_holder, holds_flock};
pub(crate) use super::unix::{watch_file, watch_process};

// Offsets in the 64-bit `psinfo_t` of <sys/procfs.h>.
const PR_NLWP: usize = 4;
const PR_UID: usize = 24;
const PR_START: usize = 88;
const PR_PSARGS: usize = 152;
const PSARGS_LEN: usize = 80;

fn psinfo(pid: u32) -> Option<Vec<u8>> {
    let raw = std::fs::read(format!("/proc/{pid}/psinfo")).ok()?;
    (raw.len() >= PR_PSARGS + PSARGS_LEN).then_some(raw)
}

fn field<const N: usize>(raw: &[u8], at: usize) -> Option<[u8; N]> {
    raw.get(at..at + N)?.try_into().ok()
}

pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    let raw = psinfo(pid)?;
    let nlwp = i32::from_ne_bytes(field(&raw, PR_NLWP)?);
    let secs = u64::try_from(i64::from_ne_bytes(field(&raw, PR_START)?)).ok()?;
    let nanos = u64::try_from(i64::from_ne_bytes(field(&raw, PR_START + 8)?)).ok()?;
    Some(ProcStat {
        state: if nlwp == 0 { 'Z' } else { 'R' },
        start_ticks: secs.saturating_mul(1_000_000_000).saturating_add(nanos),
    })
}

/// A pid missing from this zone's `/proc` may live in another zone: unknown, never dead.
pub(crate) fn can_see_processes() -> bool {
    false
}

pub(crate) fn boot_id() -> Option<String> {
    None
}

pub(crate) fn pid_namespace(_pid: u32) -> Option<u64> {
    None
}

pub(crate) fn command_line(pid: u32) -> Option<String> {
    let raw = psinfo(pid)?;
    let args = &raw[PR_PSARGS..PR_PSARGS + PSARGS_LEN];
    let args = args.split(|&b| b == 0).next()?;
    (!args.is_empty()).then(|| String::from_utf8_lossy(args).into_owned())
}

pub(crate) fn uid_of(pid: u32) -> Option<u32> {
    Some(u32::from_ne_bytes(field(&psinfo(pid)?, PR_UID)?))
}

pub(crate) fn start_time(start_ticks: u64) -> Option<SystemTime> {
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(start_ticks))
}

#[cfg(any(feature = "flock", feature = "pidfile"))]
mod flock_calls {
    use std::fs::File;
    use std::io;

    use rustix::fs::{FlockOperation, flock};

    /// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file holds it.
    #[cfg(any(feature = "flock", feature = "pidfile"))]
    pub(crate) fn flock_try_exclusive(file: &File) -> io::Result<bool> {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// `flock(LOCK_UN)`.
    #[cfg(feature = "flock")]
    pub(crate) fn flock_unlock(file: &File) -> io::Result<()> {
        Ok(flock(file, FlockOperation::Unlock)?)
    }

    /// Whether a shared lock can be had at once (taken and dropped again).
    #[cfg(feature = "flock")]
    pub(crate) fn flock_shared_probe(file: &File) -> io::Result<bool> {
        match flock(file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                let _ = flock(file, FlockOperation::Unlock);
                Ok(true)
            }
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
#[cfg(any(feature = "flock", feature = "pidfile"))]
pub(crate) use flock_calls::flock_try_exclusive;
#[cfg(feature = "flock")]
pub(crate) use flock_calls::{flock_shared_probe, flock_unlock};
