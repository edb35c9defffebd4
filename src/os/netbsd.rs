//! NetBSD: identity from `sysctl(KERN_PROC2)` (`kinfo_proc2`: start time in microseconds since the
//! epoch, real uid, zombie state) and `KERN_PROC_ARGS` (command line); no boot id (a record from
//! another boot names a pid that is gone or started at another time); kqueue waits. No
//! `O_TMPFILE`: the portable named temporary file.

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

fn kinfo(pid: u32) -> Option<libc::kinfo_proc2> {
    let pid = c_int::try_from(pid).ok()?;
    let size = c_int::try_from(std::mem::size_of::<libc::kinfo_proc2>()).ok()?;
    sysctl::read_struct(&[
        libc::CTL_KERN,
        libc::KERN_PROC2,
        libc::KERN_PROC_PID,
        pid,
        size,
        1,
    ])
}

pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    let info = kinfo(pid)?;
    let micros = u64::from(info.p_ustart_sec)
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(info.p_ustart_usec));
    Some(ProcStat {
        state: if c_int::from(info.p_stat) == libc::LSZOMB {
            'Z'
        } else {
            'R'
        },
        start_ticks: micros,
    })
}

/// A pid the OS does not describe may be hidden, not gone.
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
    let pid = c_int::try_from(pid).ok()?;
    let raw = sysctl::read(&[
        libc::CTL_KERN,
        libc::KERN_PROC_ARGS,
        pid,
        libc::KERN_PROC_ARGV,
    ])?;
    sysctl::join_args(raw.split(|&b| b == 0))
}

pub(crate) fn uid_of(pid: u32) -> Option<u32> {
    kinfo(pid).map(|i| i.p_ruid)
}

pub(crate) fn start_time(start_ticks: u64) -> Option<SystemTime> {
    sysctl::micros_to_time(start_ticks)
}
