//! The Win32 calls behind the named-mutex backend: `CreateMutexW`, `WaitForSingleObject`,
//! `ReleaseMutex`, the owner of an existing mutex (`GetSecurityInfo`), and private namespaces
//! (`CreateBoundaryDescriptorW`, `AddSIDToBoundaryDescriptor`, `CreatePrivateNamespaceW`,
//! `OpenPrivateNamespaceW`). The namespace functions are looked up with `GetProcAddress` at run
//! time, never imported: Wine lacks them, and merely calling an import of them aborts the process
//! there. Where they are missing the backend falls back to the session namespace (`Local\`).

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::sync::OnceLock;
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    ERROR_ALREADY_EXISTS, HANDLE, LocalFree, WAIT_ABANDONED, WAIT_FAILED, WAIT_OBJECT_0,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::Authorization::{GetSecurityInfo, SE_KERNEL_OBJECT};
use windows_sys::Win32::Security::{
    OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Threading::{CreateMutexW, ReleaseMutex, WaitForSingleObject};

use super::{SecurityDescriptor, last_error, millis, owned, sid_bytes, wide};

/// How a wait on a mutex ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MutexWait {
    /// This thread owns it.
    Acquired,
    /// This thread owns it, and the previous owner died holding it (`WAIT_ABANDONED`).
    Abandoned,
    /// Another thread owns it still.
    Timeout,
}

/// A named mutex, opened or created by this process.
#[derive(Debug)]
pub(crate) struct Mutex {
    handle: OwnedHandle,
    /// Whether the mutex existed before (`ERROR_ALREADY_EXISTS`).
    pub(crate) existed: bool,
}

impl Mutex {
    /// Creates the mutex `name` (a full object name: `Local\...`, `Global\...` or
    /// `alias\...` in a private namespace) not owned, or opens it if it exists. With
    /// `everyone_may_wait` a new mutex gets a DACL that lets every authenticated user wait on it
    /// (`SYNCHRONIZE | MUTEX_MODIFY_STATE`: take it when free; only the owner thread can release
    /// it), SYSTEM and administrators everything; else the creator's default DACL.
    pub(crate) fn create(name: &str, everyone_may_wait: bool) -> io::Result<Mutex> {
        let name = wide(name);
        let descriptor = everyone_may_wait
            .then(|| {
                SecurityDescriptor::from_sddl("D:(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x00100001;;;AU)")
            })
            .transpose()?;
        let attributes = descriptor.as_ref().map(SecurityDescriptor::attributes);
        let attributes_ptr = attributes
            .as_ref()
            .map_or(std::ptr::null(), |a| a as *const SECURITY_ATTRIBUTES);
        // SAFETY: `name` is NUL-terminated; `attributes_ptr` is NULL or points to attributes
        // whose descriptor lives until after the call. Not inheritable: a child never gets it.
        let handle = unsafe { CreateMutexW(attributes_ptr, 0, name.as_ptr()) };
        let error = last_error();
        let handle = owned(handle).ok_or_else(|| io::Error::from_raw_os_error(error as i32))?;
        Ok(Mutex {
            handle,
            existed: error == ERROR_ALREADY_EXISTS,
        })
    }

    /// Waits up to `timeout` (`None`: no limit) to own the mutex, blocked in
    /// `WaitForSingleObject` (the calling thread then owns it).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<MutexWait> {
        // SAFETY: `handle` is an open mutex handle with SYNCHRONIZE access.
        match unsafe { WaitForSingleObject(self.handle.as_raw_handle(), millis(timeout)) } {
            WAIT_OBJECT_0 => Ok(MutexWait::Acquired),
            WAIT_ABANDONED => Ok(MutexWait::Abandoned),
            WAIT_TIMEOUT => Ok(MutexWait::Timeout),
            WAIT_FAILED => Err(io::Error::last_os_error()),
            other => Err(io::Error::other(format!(
                "WaitForSingleObject returned {other}"
            ))),
        }
    }

    /// Releases the mutex; only the owning thread can (`ERROR_NOT_OWNER` from any other).
    pub(crate) fn release(&self) -> io::Result<()> {
        // SAFETY: `handle` is an open mutex handle.
        if unsafe { ReleaseMutex(self.handle.as_raw_handle()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The owner SID of the mutex object (GetSecurityInfo), as bytes.
    pub(crate) fn owner(&self) -> io::Result<Vec<u8>> {
        let mut owner: PSID = std::ptr::null_mut();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `handle` is an open mutex handle (READ_CONTROL is part of the access that
        // CreateMutexW grants its creator and, through the DACLs onlyone sets, its users);
        // `owner` points into `descriptor`, which the call allocates and we free below.
        let error = unsafe {
            GetSecurityInfo(
                self.handle.as_raw_handle(),
                SE_KERNEL_OBJECT,
                OWNER_SECURITY_INFORMATION,
                &mut owner,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut descriptor,
            )
        };
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error as i32));
        }
        let sid = if owner.is_null() {
            Vec::new()
        } else {
            sid_bytes(owner)
        };
        if !descriptor.is_null() {
            // SAFETY: allocated by GetSecurityInfo, freed once, after `owner`'s last use.
            unsafe { LocalFree(descriptor) };
        }
        Ok(sid)
    }
}

/// The private-namespace functions, resolved at run time.
struct NamespaceApi {
    create_boundary: unsafe extern "system" fn(*const u16, u32) -> HANDLE,
    add_sid: unsafe extern "system" fn(*mut HANDLE, PSID) -> i32,
    create:
        unsafe extern "system" fn(*const SECURITY_ATTRIBUTES, *const c_void, *const u16) -> HANDLE,
    open: unsafe extern "system" fn(*const c_void, *const u16) -> HANDLE,
    close: unsafe extern "system" fn(HANDLE, u32) -> u8,
    delete_boundary: unsafe extern "system" fn(HANDLE),
}

/// The private-namespace functions of kernel32, or `None` where any is missing (Wine 8).
fn namespace_api() -> Option<&'static NamespaceApi> {
    static API: OnceLock<Option<NamespaceApi>> = OnceLock::new();
    API.get_or_init(|| {
        let module_name = wide("kernel32.dll");
        // SAFETY: kernel32 is loaded in every process; the name is NUL-terminated.
        let module = unsafe { GetModuleHandleW(module_name.as_ptr()) };
        if module.is_null() {
            return None;
        }
        let find = |name: &[u8]| {
            // SAFETY: `name` is a NUL-terminated ASCII function name.
            unsafe { GetProcAddress(module, name.as_ptr()) }
        };
        // SAFETY: each pointer is the named kernel32 function, whose signature (per Microsoft's
        // documentation) is the one it is transmuted to.
        unsafe {
            Some(NamespaceApi {
                create_boundary: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(*const u16, u32) -> HANDLE,
                >(find(b"CreateBoundaryDescriptorW\0")?),
                add_sid: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(*mut HANDLE, PSID) -> i32,
                >(find(b"AddSIDToBoundaryDescriptor\0")?),
                create: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(
                        *const SECURITY_ATTRIBUTES,
                        *const c_void,
                        *const u16,
                    ) -> HANDLE,
                >(find(b"CreatePrivateNamespaceW\0")?),
                open: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(*const c_void, *const u16) -> HANDLE,
                >(find(b"OpenPrivateNamespaceW\0")?),
                close: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(HANDLE, u32) -> u8,
                >(find(b"ClosePrivateNamespace\0")?),
                delete_boundary: std::mem::transmute::<
                    unsafe extern "system" fn() -> isize,
                    unsafe extern "system" fn(HANDLE),
                >(find(b"DeleteBoundaryDescriptor\0")?),
            })
        }
    })
    .as_ref()
}

/// Whether this OS has private namespaces (all six functions are there; Wine 8 lacks some).
pub(crate) fn private_namespaces() -> bool {
    namespace_api().is_some()
}

/// A private namespace whose boundary holds the user's SID: only processes of this user can
/// open it, so nobody else can create a mutex inside it first. Kept open while its mutex is used.
#[derive(Debug)]
pub(crate) struct Namespace {
    handle: HANDLE,
    boundary: HANDLE,
}

// SAFETY: the handles are process-wide kernel handles, usable from any thread.
unsafe impl Send for Namespace {}

impl Namespace {
    /// Creates or opens the private namespace `alias` bounded by `sid`. `Ok(None)` where the OS
    /// has no private namespaces (Wine): the caller falls back to `Local\`.
    pub(crate) fn open(alias: &str, sid: &[u8]) -> io::Result<Option<Namespace>> {
        let Some(api) = namespace_api() else {
            return Ok(None);
        };
        let alias_wide = wide(alias);
        // SAFETY: the boundary name is NUL-terminated; the descriptor is deleted in Drop or below.
        let mut boundary = unsafe { (api.create_boundary)(alias_wide.as_ptr(), 0) };
        if boundary.is_null() {
            // Present but not implemented: treated as missing.
            return Ok(None);
        }
        let mut sid = sid.to_vec();
        // SAFETY: `boundary` is the descriptor just created; `sid` holds a valid SID the call copies.
        if unsafe { (api.add_sid)(&mut boundary, sid.as_mut_ptr().cast()) } == 0 {
            let e = io::Error::last_os_error();
            // SAFETY: deletes the descriptor created above, once.
            unsafe { (api.delete_boundary)(boundary) };
            return Err(e);
        }
        // SAFETY: `boundary` is a valid descriptor; default security; NUL-terminated alias.
        let mut handle = unsafe { (api.create)(std::ptr::null(), boundary, alias_wide.as_ptr()) };
        if handle.is_null() && last_error() == ERROR_ALREADY_EXISTS {
            // SAFETY: as above.
            handle = unsafe { (api.open)(boundary, alias_wide.as_ptr()) };
        }
        if handle.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: deletes the descriptor created above, once.
            unsafe { (api.delete_boundary)(boundary) };
            return Err(e);
        }
        Ok(Some(Namespace { handle, boundary }))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(api) = namespace_api() {
            // SAFETY: both were created in `open` and are closed once, here.
            unsafe {
                (api.close)(self.handle, 0);
                (api.delete_boundary)(self.boundary);
            }
        }
    }
}
