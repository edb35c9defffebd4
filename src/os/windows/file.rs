//! The Win32 calls behind the flock backend on Windows: `LockFileEx` on one byte at a fixed high
//! offset, and the file's identity (`GetFileInformationByHandle`: volume serial number and file
//! index, the counterpart of device and inode).
//!
//! Windows byte-range locks are mandatory: a locked range cannot be read or written through any
//! other handle. The lock therefore covers one byte far beyond the record (offset
//! [`LOCK_OFFSET`]), never the bytes contenders read. Wine does not enforce mandatory locks, so a
//! test there cannot catch a lock over the record: the offset is pinned by a test instead.

use std::fs::File;
use std::io;
use std::os::windows::io::AsRawHandle;

use windows_sys::Win32::Foundation::ERROR_LOCK_VIOLATION;
#[cfg(feature = "flock")]
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle, UnlockFileEx,
};
use windows_sys::Win32::Storage::FileSystem::{
    LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY, LockFileEx,
};
use windows_sys::Win32::System::IO::{OVERLAPPED, OVERLAPPED_0, OVERLAPPED_0_0};

/// Where the lock byte lies: far beyond any record, below the largest offset LockFileEx takes.
pub(crate) const LOCK_OFFSET: u64 = 0x7FFF_FFFF_0000_0000;

fn overlapped_at(offset: u64) -> OVERLAPPED {
    OVERLAPPED {
        Internal: 0,
        InternalHigh: 0,
        Anonymous: OVERLAPPED_0 {
            Anonymous: OVERLAPPED_0_0 {
                Offset: offset as u32,
                OffsetHigh: (offset >> 32) as u32,
            },
        },
        hEvent: std::ptr::null_mut(),
    }
}

/// Locks one byte at `offset` exclusively without waiting: `Ok(true)` when locked, `Ok(false)`
/// when another handle holds it (`ERROR_LOCK_VIOLATION`).
pub(crate) fn try_lock_byte(file: &File, offset: u64) -> io::Result<bool> {
    let mut overlapped = overlapped_at(offset);
    // SAFETY: `file` is an open handle opened for synchronous I/O; `overlapped` only carries the
    // offset and outlives the call, which completes before returning.
    let ok = unsafe {
        LockFileEx(
            file.as_raw_handle(),
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            1,
            0,
            &mut overlapped,
        )
    };
    if ok != 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32) {
        return Ok(false);
    }
    Err(e)
}

/// Unlocks the byte at `offset` (closing the handle unlocks it too).
#[cfg(feature = "flock")]
pub(crate) fn unlock_byte(file: &File, offset: u64) -> io::Result<()> {
    let mut overlapped = overlapped_at(offset);
    // SAFETY: as for `try_lock_byte`.
    if unsafe { UnlockFileEx(file.as_raw_handle(), 0, 1, 0, &mut overlapped) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What names an open file: its volume's serial number, its file index, and its attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg(feature = "flock")]
pub(crate) struct FileId {
    /// Volume serial number and file index: the same file whatever path reaches it.
    pub(crate) id: (u32, u64),
    /// `FILE_ATTRIBUTE_*` bits (a reparse point: a symbolic link or junction).
    pub(crate) attributes: u32,
}

/// The identity of an open file (GetFileInformationByHandle).
#[cfg(feature = "flock")]
pub(crate) fn file_id(file: &File) -> io::Result<FileId> {
    // SAFETY: all-zero bytes are a valid BY_HANDLE_FILE_INFORMATION (integers only).
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open; `info` is writable.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileId {
        id: (
            info.dwVolumeSerialNumber,
            (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        ),
        attributes: info.dwFileAttributes,
    })
}

/// Opens `path` to read it and, through the same handle, to delete it ([`delete_on_close`]):
/// what is read is then what is removed, whatever the name names by the time the handle closes.
/// Other handles may read, write and delete it meanwhile (the usual share mode).
#[cfg(feature = "pidfile")]
pub(crate) fn open_to_delete(path: &std::path::Path) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    use windows_sys::Win32::Storage::FileSystem::{DELETE, FILE_GENERIC_READ};
    std::fs::OpenOptions::new()
        .access_mode(FILE_GENERIC_READ | DELETE)
        .open(path)
}

/// Marks an open file for deletion (`SetFileInformationByHandle` with `FileDispositionInfo`): it
/// goes when its last handle closes, and only this file, never another linked under its name
/// meanwhile. `file` must be opened with `DELETE` access ([`open_to_delete`]).
#[cfg(feature = "pidfile")]
pub(crate) fn delete_on_close(file: &File) -> io::Result<()> {
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_DISPOSITION_INFO, FileDispositionInfo, SetFileInformationByHandle,
    };
    let info = FILE_DISPOSITION_INFO { DeleteFile: true };
    // SAFETY: `file` is an open handle; `info` is a FILE_DISPOSITION_INFO of the size passed,
    // read during the call only.
    let ok = unsafe {
        SetFileInformationByHandle(
            file.as_raw_handle(),
            FileDispositionInfo,
            (&raw const info).cast(),
            std::mem::size_of::<FILE_DISPOSITION_INFO>() as u32,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
