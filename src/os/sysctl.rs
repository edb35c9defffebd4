//! sysctl(3) reads for macOS, FreeBSD and NetBSD: the one FFI the BSD identity code needs (the
//! `libc` crate declares it; no safe wrapper covers `KERN_PROC`).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};

/// The value of the sysctl `mib` as bytes; `None` when it does not exist or cannot be read (a
/// process that is gone, or hidden from this user).
pub(crate) fn read(mib: &[c_int]) -> Option<Vec<u8>> {
    let mut name = mib.to_vec();
    let namelen = name.len().try_into().ok()?;
    let mut len: libc::size_t = 0;
    // SAFETY: `name` holds `namelen` valid ints; a null `oldp` with a valid `oldlenp` asks only
    // for the size, which the kernel writes to `len`.
    let rc = unsafe {
        libc::sysctl(
            name.as_mut_ptr(),
            namelen,
            std::ptr::null_mut(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || len == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is `len` writable bytes and `len` says so; the kernel writes at most that
    // many and stores the count it wrote back into `len`.
    let rc = unsafe {
        libc::sysctl(
            name.as_mut_ptr(),
            namelen,
            buf.as_mut_ptr().cast::<c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    buf.truncate(len);
    Some(buf)
}

/// The value of the sysctl `mib` as a `T`, when the kernel returns exactly one `T`.
#[cfg(any(target_os = "freebsd", target_os = "netbsd"))]
///
/// `T` must be a plain C struct for which every bit pattern is valid (the `libc` process records).
pub(crate) fn read_struct<T: Copy>(mib: &[c_int]) -> Option<T> {
    let bytes = read(mib)?;
    if bytes.len() != std::mem::size_of::<T>() {
        // Another ABI revision of the record than the one `libc` declares: unknown, not gone.
        return None;
    }
    // SAFETY: `bytes` holds exactly `size_of::<T>()` bytes written by the kernel as a `T`;
    // `read_unaligned` copes with the Vec's alignment, and `T` is plain old data.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The value of the sysctl called `name` (sysctlbyname(3)) as bytes.
#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
pub(crate) fn read_by_name(name: &std::ffi::CStr) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let mut len: libc::size_t = buf.len();
    // SAFETY: `name` is NUL-terminated; `buf` is `len` writable bytes and `len` says so; the
    // kernel stores the count it wrote back into `len`.
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            buf.as_mut_ptr().cast::<c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    buf.truncate(len);
    Some(buf)
}

/// NUL-separated arguments (as `KERN_PROC_ARGS` gives them), joined by spaces.
pub(crate) fn join_args<'a>(args: impl Iterator<Item = &'a [u8]>) -> Option<String> {
    let args: Vec<String> = args
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

/// Microseconds since the epoch to wall-clock time (the BSDs' start token).
pub(crate) fn micros_to_time(micros: u64) -> Option<std::time::SystemTime> {
    std::time::SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_micros(micros))
}
