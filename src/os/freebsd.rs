//! FreeBSD: identity from `sysctl(KERN_PROC_PID)` (`kinfo_proc`: start time in microseconds since
//! the epoch, real uid, zombie state) and `KERN_PROC_ARGS` (command line); the boot from
//! `kern.boot_id` where the kernel has it (14.0 and later); kqueue waits. No `O_TMPFILE`: the
//! portable named temporary file.

use std::ffi::c_int;
use std::time::SystemTime;

pub(crate) use super::kqueue::{watch_file, watch_process};
#[cfg(feature = "pidfile")]
pub(crate) use super::unix::create_linked;
#[cfg(any(feature = "flock", feature = "pidfile"))]
pub(crate) use super::unix::flock_try_exclusive;
#[cfg(feature = "flock")]
pub(crate) use super::unix::{flock_shared_probe, flock_unlock};
#[cfg(feature = "flock")]
pub(crate) use super::unix::{flock_table_holder, holds_flock};
use super::{ProcStat, sysctl};

fn kinfo(pid: u32) -> Option<libc::kinfo_proc> {
    let pid = c_int::try_from(pid).ok()?;
    sysctl::read_struct(&[libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid])
}

pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    let info = kinfo(pid)?;
    let start = &info.ki_start;
    let micros = u64::try_from(start.tv_sec)
        .ok()?
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(start.tv_usec).ok()?);
    Some(ProcStat {
        state: if info.ki_stat == libc::SZOMB {
            'Z'
        } else {
            'R'
        },
        start_ticks: micros,
    })
}

/// A pid the OS does not describe may be hidden (`security.bsd.see_other_uids=0`), not gone.
pub(crate) fn can_see_processes() -> bool {
    false
}

/// `kern.boot_id`, random per boot (`kern.boottime` moves when the clock is stepped, so it cannot
/// tell boots apart).
pub(crate) fn boot_id() -> Option<String> {
    let id = sysctl::read_by_name(c"kern.boot_id")?;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn pid_namespace(_pid: u32) -> Option<u64> {
    None
}

pub(crate) fn command_line(pid: u32) -> Option<String> {
    let pid = c_int::try_from(pid).ok()?;
    let raw = sysctl::read(&[libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_ARGS, pid])?;
    sysctl::join_args(raw.split(|&b| b == 0))
}

pub(crate) fn uid_of(pid: u32) -> Option<u32> {
    kinfo(pid).map(|i| i.ki_ruid)
}

pub(crate) fn start_time(start_ticks: u64) -> Option<SystemTime> {
    sysctl::micros_to_time(start_ticks)
}
