//! Windows: process identity from `OpenProcess` + `GetProcessTimes` (the creation time, in 100 ns
//! units since 1601, is the start token: it defeats pid reuse), liveness by a zero-timeout wait
//! on the process handle (opening a pid can succeed shortly after its process died), the image
//! path as the command, the user's SID from the process token, the default directories, and the
//! named mutex the `named-mutex` backend holds (`CreateMutexW`, private namespaces looked up at
//! run time). No uids: the "uid" onlyone reports is the relative id of the user's SID.
//!
//! Every call goes through `windows-sys`; each `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_INVALID_PARAMETER, FILETIME, GetLastError,
    HANDLE, LocalFree, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetLengthSid, GetSidSubAuthority, GetSidSubAuthorityCount, GetTokenInformation,
    PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, TOKEN_OWNER, TOKEN_QUERY, TOKEN_USER,
    TokenOwner, TokenUser,
};
use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessTimes, INFINITE, OpenProcess, OpenProcessToken,
    PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
    QueryFullProcessImageNameW, TerminateProcess, WaitForMultipleObjects, WaitForSingleObject,
};

use super::{Liveness, ProcStat, ProcessIdentity};
use crate::name::Scope;

#[cfg(any(feature = "flock", feature = "pidfile"))]
mod file;
#[cfg(any(feature = "flock", feature = "pidfile"))]
pub(crate) use file::{LOCK_OFFSET, try_lock_byte};
#[cfg(feature = "pidfile")]
pub(crate) use file::{delete_on_close, open_to_delete};
#[cfg(feature = "flock")]
pub(crate) use file::{file_id, unlock_byte};
#[cfg(feature = "named-mutex")]
mod mutex;
#[cfg(feature = "named-mutex")]
pub(crate) use mutex::{Mutex, MutexWait, Namespace, private_namespaces};

/// Seconds from 1601-01-01 (the FILETIME epoch) to 1970-01-01.
const FILETIME_UNIX_OFFSET_SECS: u64 = 11_644_473_600;

/// The most handles `WaitForMultipleObjects` takes (`MAXIMUM_WAIT_OBJECTS`).
const MAX_WAIT_HANDLES: usize = 64;

/// `text` as a NUL-terminated UTF-16 string.
#[cfg(feature = "named-mutex")]
pub(crate) fn wide(text: &str) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    std::ffi::OsStr::new(text)
        .encode_wide()
        .chain(std::iter::once(0))
        .collect()
}

/// A security descriptor built from SDDL (ConvertStringSecurityDescriptorToSecurityDescriptorW),
/// freed on drop (LocalFree): for the lock directory, the named mutexes and the handoff pipe.
pub(crate) struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

impl SecurityDescriptor {
    /// The descriptor `sddl` describes.
    pub(crate) fn from_sddl(sddl: &str) -> io::Result<SecurityDescriptor> {
        use std::os::windows::ffi::OsStrExt;
        let sddl: Vec<u16> = std::ffi::OsStr::new(sddl)
            .encode_wide()
            .chain(std::iter::once(0))
            .collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `sddl` is a NUL-terminated UTF-16 string; the descriptor the call allocates
        // (with LocalAlloc) is written to `descriptor` and freed on drop; the size out-pointer
        // may be NULL.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SecurityDescriptor(descriptor))
    }

    /// Non-inheritable attributes carrying this descriptor; valid while `self` lives.
    pub(crate) fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: frees the LocalAlloc'd descriptor once, after its last use.
        unsafe { LocalFree(self.0) };
    }
}

/// Takes ownership of a handle a Win32 call returned; `None` for NULL (the call failed; see
/// `GetLastError`).
fn owned(handle: HANDLE) -> Option<OwnedHandle> {
    // SAFETY: a non-NULL `handle` was just returned to us by the OS and is owned by nobody else.
    (!handle.is_null()).then(|| unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// The last Win32 error of this thread.
fn last_error() -> u32 {
    // SAFETY: reads this thread's last-error value; no arguments.
    unsafe { GetLastError() }
}

/// Opens process `pid` (OpenProcess); the `GetLastError` code when it cannot be opened
/// (`ERROR_INVALID_PARAMETER`: no such process; `ERROR_ACCESS_DENIED`: not ours to open).
fn open_process(pid: u32, access: u32) -> Result<OwnedHandle, u32> {
    // SAFETY: plain call; the returned handle, if any, is ours to close.
    let handle = unsafe { OpenProcess(access, 0, pid) };
    owned(handle).ok_or_else(last_error)
}

/// The creation time of a process (GetProcessTimes), in 100 ns units since 1601.
fn creation_time(process: BorrowedHandle<'_>) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: `process` is an open process handle; the four pointers are writable FILETIMEs.
    let ok = unsafe {
        GetProcessTimes(
            process.as_raw_handle(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    (ok != 0).then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

/// Whether a waitable handle is signalled now (a process: it has exited).
pub(crate) fn has_exited(handle: BorrowedHandle<'_>) -> bool {
    // SAFETY: `handle` is an open handle; a zero timeout never blocks.
    unsafe { WaitForSingleObject(handle.as_raw_handle(), 0) == WAIT_OBJECT_0 }
}

/// The state (`R` running, `Z` exited but still open somewhere) and start token of `pid`.
pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    let process =
        open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE).ok()?;
    let start_ticks = creation_time(process.as_handle_ref())?;
    let state = if has_exited(process.as_handle_ref()) {
        'Z'
    } else {
        'R'
    };
    Some(ProcStat { state, start_ticks })
}

/// Borrowing an `OwnedHandle` without importing `AsHandle` everywhere.
trait HandleRef {
    fn as_handle_ref(&self) -> BorrowedHandle<'_>;
}

impl HandleRef for OwnedHandle {
    fn as_handle_ref(&self) -> BorrowedHandle<'_> {
        std::os::windows::io::AsHandle::as_handle(self)
    }
}

/// The caller's own state and start token.
pub(crate) fn self_stat() -> Option<ProcStat> {
    stat(std::process::id())
}

/// Windows has no PID namespaces.
pub(crate) fn self_pid_namespace() -> Option<u64> {
    None
}

/// Windows has no PID namespaces.
pub(crate) fn pid_namespace(_pid: u32) -> Option<u64> {
    None
}

/// No boot id: the creation time in the start token already differs across boots.
pub(crate) fn boot_id() -> Option<String> {
    None
}

/// Start tokens need no translation between namespaces on Windows.
pub(crate) fn as_read_here(ticks: u64) -> u64 {
    ticks
}

/// The image path of `pid` (QueryFullProcessImageNameW): Windows keeps a process's arguments in
/// its own memory, which another process reads only with more rights than a lookup should need.
pub(crate) fn command_line(pid: u32) -> Option<String> {
    let process = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).ok()?;
    let mut buffer = vec![0u16; 32_768];
    let mut len = buffer.len() as u32;
    // SAFETY: `buffer` has `len` writable UTF-16 units; the call writes at most that many and
    // stores the length written in `len`.
    let ok = unsafe {
        QueryFullProcessImageNameW(
            process.as_raw_handle(),
            PROCESS_NAME_WIN32,
            buffer.as_mut_ptr(),
            &mut len,
        )
    };
    if ok == 0 {
        return None;
    }
    buffer.truncate(len as usize);
    Some(
        std::ffi::OsString::from_wide(&buffer)
            .to_string_lossy()
            .into_owned(),
    )
}

/// Windows has no uids to read from another process.
pub(crate) fn uid_of(_pid: u32) -> Option<u32> {
    None
}

/// A creation time (100 ns since 1601) as wall-clock time.
pub(crate) fn start_time(ticks: u64) -> Option<SystemTime> {
    let since_1601 = Duration::from_nanos(ticks.checked_mul(100)?);
    SystemTime::UNIX_EPOCH
        .checked_add(since_1601.checked_sub(Duration::from_secs(FILETIME_UNIX_OFFSET_SECS))?)
}

/// Whether a recorded process still runs: see [`ProcessIdentity::liveness`].
pub(crate) fn liveness(id: &ProcessIdentity) -> Liveness {
    match open_process(
        id.pid,
        PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE,
    ) {
        Err(ERROR_INVALID_PARAMETER) => Liveness::Dead("no process has that pid"),
        Err(ERROR_ACCESS_DENIED) => Liveness::Unknown("the process exists but cannot be opened"),
        Err(_) => Liveness::Unknown("OpenProcess failed"),
        Ok(process) => {
            if has_exited(process.as_handle_ref()) {
                return Liveness::Dead("the process has exited");
            }
            match (id.start_ticks, creation_time(process.as_handle_ref())) {
                (Some(recorded), Some(now)) if recorded != now => {
                    Liveness::Dead("the pid now belongs to a process started later")
                }
                _ => Liveness::Alive,
            }
        }
    }
}

/// Opens `pid` to terminate and wait for it later; the caller then checks its creation time.
pub(crate) fn pin_process(pid: u32) -> Option<OwnedHandle> {
    open_process(
        pid,
        PROCESS_TERMINATE | PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
    )
    .ok()
}

/// Waits up to `timeout` (`None`: no limit) for process `pid`, started at `start_ticks`, to
/// exit. `true` when it has exited or is not that process (any more); `false` on timeout.
#[cfg(feature = "named-mutex")]
pub(crate) fn wait_for_exit(pid: u32, start_ticks: Option<u64>, timeout: Option<Duration>) -> bool {
    let Ok(process) = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE)
    else {
        return true;
    };
    if start_ticks.is_some() && creation_time(process.as_handle_ref()) != start_ticks {
        return true;
    }
    // SAFETY: `process` is open with SYNCHRONIZE access.
    unsafe { WaitForSingleObject(process.as_raw_handle(), millis(timeout)) != WAIT_TIMEOUT }
}

/// Terminates the pinned process (TerminateProcess, exit code 1). `NotFound` when it has exited.
pub(crate) fn terminate_pinned(process: BorrowedHandle<'_>) -> io::Result<()> {
    if has_exited(process) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the process has exited",
        ));
    }
    // SAFETY: `process` is an open process handle with PROCESS_TERMINATE access.
    if unsafe { TerminateProcess(process.as_raw_handle(), 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sleeps in `WaitForMultipleObjects` until one of `handles` is signalled (`true`) or `timeout`
/// passes (`false`). Without handles it sleeps out the timeout (a backoff step).
pub(crate) fn wait_for_handles(
    handles: &[BorrowedHandle<'_>],
    timeout: Option<Duration>,
) -> io::Result<bool> {
    if handles.is_empty() {
        std::thread::sleep(timeout.unwrap_or(Duration::from_millis(50)));
        return Ok(false);
    }
    let raw: Vec<HANDLE> = handles
        .iter()
        .take(MAX_WAIT_HANDLES)
        .map(|h| h.as_raw_handle())
        .collect();
    // SAFETY: `raw` holds at most 64 open handles, borrowed for the duration of the call.
    let result =
        unsafe { WaitForMultipleObjects(raw.len() as u32, raw.as_ptr(), 0, millis(timeout)) };
    match result {
        WAIT_TIMEOUT => Ok(false),
        WAIT_FAILED => Err(io::Error::last_os_error()),
        _ => Ok(true),
    }
}

/// A timeout in whole milliseconds, rounded up, for the Win32 waits (`INFINITE` for none).
pub(crate) fn millis(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => INFINITE,
        Some(t) => u32::try_from(t.as_micros().div_ceil(1000))
            .unwrap_or(INFINITE - 1)
            .min(INFINITE - 1),
    }
}

/// The user this process runs as: its SID, and the default owner of the objects it creates
/// (the user, or for an elevated administrator the Administrators group).
#[derive(Debug)]
// Only the named mutex reads the SIDs; every build reads the relative id.
#[cfg_attr(not(feature = "named-mutex"), allow(dead_code))]
pub(crate) struct UserSid {
    /// The user's SID, as bytes.
    pub(crate) sid: Vec<u8>,
    /// The user's SID as text (`S-1-5-21-...-1001`).
    pub(crate) text: String,
    /// The token's default owner SID, as bytes.
    pub(crate) owner: Vec<u8>,
    /// The relative id (last sub-authority) of the user's SID.
    pub(crate) rid: u32,
}

/// The calling user, read once from the process token.
pub(crate) fn current_user() -> &'static UserSid {
    static USER: OnceLock<UserSid> = OnceLock::new();
    USER.get_or_init(|| read_user().expect("the process token names its user"))
}

/// The relative id of the user's SID, as onlyone's "uid" on Windows.
pub(crate) fn effective_uid() -> u32 {
    current_user().rid
}

/// One token information class, in an 8-byte aligned buffer (the pointers in the structure
/// point into it).
fn token_information(token: &OwnedHandle, class: i32) -> io::Result<Vec<u64>> {
    let mut len = 0u32;
    // SAFETY: a size query: NULL buffer of length 0; the needed length goes to `len`.
    unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            class,
            std::ptr::null_mut(),
            0,
            &mut len,
        )
    };
    // u64 elements keep the buffer aligned for the structures it holds.
    let mut buffer = vec![0u64; (len as usize).div_ceil(8).max(1)];
    // SAFETY: `buffer` has at least `len` writable, 8-byte aligned bytes.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            class,
            buffer.as_mut_ptr().cast(),
            len,
            &mut len,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buffer)
}

/// Copies the SID `sid` points to into bytes.
fn sid_bytes(sid: PSID) -> Vec<u8> {
    // SAFETY: `sid` points to a valid SID inside a live token-information buffer.
    let len = unsafe { GetLengthSid(sid) } as usize;
    // SAFETY: the SID is `len` readable bytes.
    unsafe { std::slice::from_raw_parts(sid.cast::<u8>(), len) }.to_vec()
}

/// A SID as text (ConvertSidToStringSidW).
pub(crate) fn sid_text(sid: &[u8]) -> String {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` holds a valid SID; the call allocates the string with LocalAlloc.
    if unsafe { ConvertSidToStringSidW(sid.as_ptr() as PSID, &mut text) } == 0 || text.is_null() {
        return "an unreadable SID".to_owned();
    }
    // SAFETY: `text` is a NUL-terminated UTF-16 string the call allocated.
    let len = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
    // SAFETY: `len` units were just read as initialised.
    let result = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
    // SAFETY: frees the LocalAlloc'd string once, after its last use.
    unsafe { LocalFree(text.cast::<c_void>()) };
    result
}

/// The user SID of a token (GetTokenInformation, TokenUser), as bytes.
fn token_user(token: &OwnedHandle) -> io::Result<Vec<u8>> {
    let user = token_information(token, TokenUser)?;
    // SAFETY: the buffer holds a TOKEN_USER (it was asked for TokenUser), aligned by construction.
    Ok(sid_bytes(unsafe {
        (*user.as_ptr().cast::<TOKEN_USER>()).User.Sid
    }))
}

/// The SID of the user process `pid` runs as (OpenProcess, OpenProcessToken, GetTokenInformation):
/// the handoff's check of its peer at the other end of a named pipe.
pub(crate) fn process_user_sid(pid: u32) -> io::Result<Vec<u8>> {
    let process = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is an open process handle; the token handle is written to `token`.
    if unsafe { OpenProcessToken(process.as_raw_handle(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = owned(token).ok_or_else(io::Error::last_os_error)?;
    token_user(&token)
}

fn read_user() -> io::Result<UserSid> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo handle of this process; the token handle is written to `token`.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = owned(token).ok_or_else(io::Error::last_os_error)?;
    let user_sid = token_user(&token)?;
    let owner = token_information(&token, TokenOwner)?;
    // SAFETY: the buffer holds a TOKEN_OWNER.
    let owner_sid = sid_bytes(unsafe { (*owner.as_ptr().cast::<TOKEN_OWNER>()).Owner });
    // SAFETY: `user_sid` is a valid SID; the count and the last sub-authority lie within it.
    let rid = unsafe {
        let sid = user_sid.as_ptr() as PSID;
        let count = *GetSidSubAuthorityCount(sid);
        if count == 0 {
            0
        } else {
            *GetSidSubAuthority(sid, u32::from(count) - 1)
        }
    };
    Ok(UserSid {
        text: sid_text(&user_sid),
        sid: user_sid,
        owner: owner_sid,
        rid,
    })
}

/// `%LOCALAPPDATA%\onlyone` (user scope) or `%ProgramData%\onlyone` (system scope), with the
/// documented locations when the variables are unset.
pub(crate) fn default_dir(scope: Scope) -> PathBuf {
    let base = match scope {
        Scope::User => std::env::var_os("LOCALAPPDATA")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("USERPROFILE")
                    .map(|p| PathBuf::from(p).join("AppData").join("Local"))
            })
            .unwrap_or_else(|| PathBuf::from(r"C:\Users\Default\AppData\Local")),
        Scope::System => std::env::var_os("ProgramData")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData")),
    };
    base.join("onlyone")
}

/// The DACL of the system-scope lock directory (`%ProgramData%\onlyone`), as SDDL. Protected
/// (`P`): nothing is inherited from `%ProgramData%`, whose default ACL lets Users create files but
/// also gives CREATOR OWNER rights that a shared lock directory must spell out itself.
///
/// - SYSTEM (`SY`) and Administrators (`BA`): full control of the directory and everything in it
///   (`OICI`), so an administrator can always clean up.
/// - Authenticated Users (`AU`), on the directory only: `0x1200ab` = list, add files (create a
///   lock file, a PID file, a holder record), read attributes and extended attributes, traverse,
///   read the security descriptor, synchronize. Not `FILE_DELETE_CHILD` (0x40), not
///   `FILE_ADD_SUBDIRECTORY`, not `WRITE_DAC`: nobody but an administrator deletes, renames or
///   replaces a file another user created.
/// - On the files (`OIIO`, inherited by files only): CREATOR OWNER (`CO`) full control, so the
///   user who created a file may rewrite, rename over and remove it (the holder's release, the
///   record renamed into place); Authenticated Users read and write (`FRFW`, no `DELETE`), so
///   every user may open a shared lock file to lock it (`LockFileEx` needs a read or write
///   handle) and read the records, but not remove or replace it. As in a sticky Unix directory,
///   another user's stale PID file or holder record is then replaced only by an administrator
///   (`onlyone break-lock --force`); a holder that cannot write its record there still holds its
///   lock (it is shown unidentified).
const LOCK_DIR_SDDL: &str =
    "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;;0x1200ab;;;AU)(A;OIIO;FRFW;;;AU)(A;OIIO;FA;;;CO)";

/// Creates a default lock directory: `%ProgramData%\onlyone` (system scope) with the protected
/// DACL of [`LOCK_DIR_SDDL`] when onlyone creates it (an existing directory is left as it is),
/// any other (`%LOCALAPPDATA%\onlyone`, private to its user already) with the inherited ACL.
pub(crate) fn create_lock_dir(dir: &Path) -> io::Result<()> {
    if dir != default_dir(Scope::System) || dir.is_dir() {
        return std::fs::create_dir_all(dir);
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    create_protected_dir(dir, LOCK_DIR_SDDL)
}

/// `CreateDirectoryW` with the security descriptor `sddl`; an existing directory is fine (another
/// process created it first).
fn create_protected_dir(dir: &Path, sddl: &str) -> io::Result<()> {
    use std::os::windows::ffi::OsStrExt;
    let path: Vec<u16> = dir
        .as_os_str()
        .encode_wide()
        .chain(std::iter::once(0))
        .collect();
    let descriptor = SecurityDescriptor::from_sddl(sddl).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot build the security descriptor for {}: {e}",
                dir.display()
            ),
        )
    })?;
    let attributes = descriptor.attributes();
    // SAFETY: `path` is a NUL-terminated UTF-16 path; `attributes` points to a live descriptor.
    let created = unsafe { CreateDirectoryW(path.as_ptr(), &attributes) } != 0;
    let error = (!created).then(io::Error::last_os_error);
    match error {
        None => Ok(()),
        Some(e) if e.raw_os_error() == Some(ERROR_ALREADY_EXISTS as i32) => Ok(()),
        Some(e) => Err(e),
    }
}
