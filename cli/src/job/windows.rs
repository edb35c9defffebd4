//! Windows: the job runs in a job object, so that it dies with onlyone.
//!
//! The job is created suspended (`CREATE_SUSPENDED`), assigned to a job object made with
//! `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`, named in the lock's holder record, and only then
//! resumed: it never runs outside the job object, and when onlyone dies (killed too) the kernel
//! closes onlyone's handle to the job object and kills the job with everything it started. The
//! lock outlives the job: a named mutex is abandoned the moment onlyone dies, while the job may
//! take a little longer to be killed, so the next holder waits for the job its record names to
//! exit before it counts as holding the lock (see `onlyone::backend::named_mutex`).
//!
//! Ctrl-C and Ctrl-Break reach every process attached to the console, the job included: onlyone
//! ignores them itself (a handler that says "handled", which the job does not inherit) and
//! waits for the job, whose exit status it passes through (its low 8 bits; codes above 255, such
//! as the `0xC000013A` of a process ended by Ctrl-C, become 255 — the exit status onlyone gives is
//! one byte, as on Unix).
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::os::windows::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

use onlyone::Guard;
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject,
};
use windows_sys::Win32::System::Threading::{
    CREATE_SUSPENDED, OpenThread, ResumeThread, THREAD_SUSPEND_RESUME,
};

use crate::exit::{self, Failure};

/// A job ready to start: its argument vector and whole environment.
pub struct Job {
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Job {
    pub fn new(argv: &[OsString], env: Vec<(OsString, OsString)>) -> Job {
        Job {
            argv: argv.to_vec(),
            env,
        }
    }
}

/// Takes ownership of a handle a Win32 call returned; the last error for NULL.
fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle.is_null() || handle as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a valid handle just returned to us, owned by nobody else.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// A job object that kills its processes when its last handle closes (onlyone's exit or death).
fn kill_on_close_job_object() -> io::Result<OwnedHandle> {
    // SAFETY: an unnamed job object with default security.
    let job = owned(unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) })?;
    // SAFETY: all-zero bytes are a valid JOBOBJECT_EXTENDED_LIMIT_INFORMATION (integers only).
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: `info` is the structure the information class names, of the size given.
    let ok = unsafe {
        SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            (&raw const info).cast(),
            size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(job)
}

/// Resumes the (only) thread of the suspended process `pid`, found with a Toolhelp snapshot
/// (std's `Child` does not keep the thread handle `CreateProcessW` returned).
fn resume(pid: u32) -> io::Result<()> {
    // SAFETY: a snapshot of every thread; closed when `snapshot` drops.
    let snapshot = owned(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) })?;
    // SAFETY: all-zero bytes are a valid THREADENTRY32; dwSize is set as the API requires.
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = size_of::<THREADENTRY32>() as u32;
    let mut resumed = 0;
    // SAFETY: `entry` is a writable THREADENTRY32 with its size set.
    let mut more = unsafe { Thread32First(snapshot.as_raw_handle(), &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: opens a thread by id; the handle is closed when `thread` drops.
            let thread =
                owned(unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID) })?;
            // SAFETY: `thread` is open with THREAD_SUSPEND_RESUME access.
            if unsafe { ResumeThread(thread.as_raw_handle()) } == u32::MAX {
                return Err(io::Error::last_os_error());
            }
            resumed += 1;
        }
        // SAFETY: as for Thread32First.
        more = unsafe { Thread32Next(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    if resumed == 0 {
        return Err(io::Error::other("the job's thread was not found"));
    }
    Ok(())
}

/// Says "handled" to Ctrl-C and Ctrl-Break: the console sends them to the job too, and onlyone
/// waits for the job to act on them. Other events (closing the console, logoff) end onlyone, and
/// with it the job.
unsafe extern "system" fn on_console_event(event: u32) -> i32 {
    // CTRL_C_EVENT 0, CTRL_BREAK_EVENT 1.
    i32::from(event <= 1)
}

/// Starts the job in a kill-on-close job object, waits for it, releases the lock, and returns
/// the job's exit status.
pub fn supervise(
    job: &Job,
    mut guard: Guard,
    program: &OsString,
    _kill_after: Duration,
    verbose: bool,
) -> Result<u8, Failure> {
    // SAFETY: installs a handler function that lives as long as the program.
    if unsafe { SetConsoleCtrlHandler(Some(on_console_event), 1) } == 0 && verbose {
        say!("onlyone: warning: cannot handle Ctrl-C (no console?)");
    }
    let job_object =
        kill_on_close_job_object().map_err(|e| Failure::os("cannot create a job object", e))?;
    let mut command = Command::new(&job.argv[0]);
    command
        .args(&job.argv[1..])
        .env_clear()
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .creation_flags(CREATE_SUSPENDED);
    let mut child = command
        .spawn()
        .map_err(|e| crate::run::spawn_failure(program, e))?;
    if let Err(e) = start(&job_object, &child, &mut guard) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Failure::os("cannot start the job in its job object", e));
    }
    let pid = child.id();
    let status = child.wait();
    let lost = guard.verify().err();
    if let Some(e) = &lost {
        say!("onlyone: lost the lock while the job ran: {e}");
    } else if let Err(e) = guard.release() {
        say!("onlyone: warning: releasing the lock: {e}");
    }
    let status = status.map_err(|e| Failure::os("cannot wait for the job", e))?;
    let raw = status.code().map_or(u32::MAX, |c| c as u32);
    let code = if lost.is_some() {
        exit::LOST
    } else {
        u8::try_from(raw).unwrap_or(u8::MAX)
    };
    if verbose {
        say!("onlyone: job {pid} exited with status {raw:#x}; exiting with {code}");
    }
    drop(job_object);
    Ok(code)
}

/// Puts the suspended job in the job object, names it in the lock's record, and resumes it.
fn start(job_object: &OwnedHandle, child: &Child, guard: &mut Guard) -> io::Result<()> {
    // SAFETY: both handles are open; the child's handle has PROCESS_ALL_ACCESS (we created it).
    if unsafe { AssignProcessToJobObject(job_object.as_raw_handle(), child.as_raw_handle()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    guard.record_job(child.id()).map_err(io::Error::from)?;
    resume(child.id())
}
