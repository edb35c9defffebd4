//! macOS (and iOS): identity from `proc_pidinfo(PROC_PIDTBSDINFO)` (start time in microseconds
//! since the epoch, real uid, zombie state) and `sysctl(KERN_PROCARGS2)` (command line); the boot
//! from `kern.bootsessionuuid`; kqueue waits. No `O_TMPFILE`: the portable named temporary file.
#![allow(unsafe_code)]

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

fn bsdinfo(pid: u32) -> Option<libc::proc_bsdinfo> {
    let pid = c_int::try_from(pid).ok()?;
    let size = c_int::try_from(std::mem::size_of::<libc::proc_bsdinfo>()).ok()?;
    // SAFETY: all-zero bytes are a valid `proc_bsdinfo` (integers and byte arrays only).
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is `size` writable bytes; proc_pidinfo writes at most `size` bytes and
    // returns how many it wrote.
    let n =
        unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, (&raw mut info).cast(), size) };
    (n == size).then_some(info)
}

pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    let info = bsdinfo(pid)?;
    Some(ProcStat {
        state: if info.pbi_status == libc::SZOMB {
            'Z'
        } else {
            'R'
        },
        start_ticks: info
            .pbi_start_tvsec
            .saturating_mul(1_000_000)
            .saturating_add(info.pbi_start_tvusec),
    })
}

/// A pid the OS does not describe may be hidden, not gone: unknown, never dead.
pub(crate) fn can_see_processes() -> bool {
    false
}

pub(crate) fn boot_id() -> Option<String> {
    let raw = sysctl::read_by_name(c"kern.bootsessionuuid")?;
    let text = raw.split(|&b| b == 0).next()?;
    (!text.is_empty()).then(|| String::from_utf8_lossy(text).into_owned())
}

pub(crate) fn pid_namespace(_pid: u32) -> Option<u64> {
    None
}

/// `KERN_PROCARGS2`: `argc` as a native int, the executable path, NUL padding, then the
/// arguments, each NUL-terminated.
pub(crate) fn command_line(pid: u32) -> Option<String> {
    let pid = c_int::try_from(pid).ok()?;
    let raw = sysctl::read(&[libc::CTL_KERN, libc::KERN_PROCARGS2, pid])?;
    let argc = i32::from_ne_bytes(raw.get(..4)?.try_into().ok()?);
    let rest = &raw[4..];
    let path_end = rest.iter().position(|&b| b == 0)?;
    let args_start = path_end + rest[path_end..].iter().position(|&b| b != 0)?;
    let argc = usize::try_from(argc).ok()?;
    sysctl::join_args(rest[args_start..].split(|&b| b == 0).take(argc))
}

pub(crate) fn uid_of(pid: u32) -> Option<u32> {
    bsdinfo(pid).map(|i| i.pbi_ruid)
}

pub(crate) fn start_time(start_ticks: u64) -> Option<SystemTime> {
    sysctl::micros_to_time(start_ticks)
}
