//! Starting the job as a child that dies with onlyone, and the places that need `unsafe`.
//!
//! The job is started the way posix_spawn(3) starts a program: `clone(CLONE_VM | CLONE_VFORK)`,
//! so the child borrows onlyone's memory until it calls execve(2) instead of copying its page
//! tables as fork(2) does (a fork costs more than the rest of onlyone's start-up; see
//! BENCHMARKS.md). Between clone and execve the child only makes system calls:
//! - `prctl(PR_SET_PDEATHSIG, SIGKILL)`, then checks that its parent is still onlyone (onlyone may
//!   have died before the request: then it exits at once, and no job runs without the lock);
//! - restores the signal mask onlyone had before it blocked the signals it forwards, and leaves
//!   SIGPIPE's disposition as onlyone's parent gave it, as flock(1) does - where that is known
//!   (see [`SIGPIPE_FROM_PARENT`]);
//! - execve(2) on each candidate path, as execvp(3) searches `PATH`; a file without `#!` that the
//!   kernel does not know how to run (`ENOEXEC`) is run by `/bin/sh`, as execvp(3) and shells do.
//!
//! The death signal is sent when the *thread* that created the child exits: onlyone starts the job
//! from its only thread. execve(2) keeps it, except for set-user-ID/set-group-ID programs and
//! programs with file capabilities.

use std::ffi::{CString, OsStr, OsString, c_char, c_int, c_void};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

/// Whether onlyone's own SIGPIPE disposition is the one its parent gave it, so that the job can
/// simply inherit it (ignored stays ignored, as under flock(1)).
///
/// - glibc Linux: yes. onlyone has no Rust `fn main` there (see `main.rs`): Rust's start-up, which
///   sets SIGPIPE to "ignore", never runs, and nothing else in onlyone changes it.
/// - Every other target (musl, ...): no. Rust's start-up has set SIGPIPE to "ignore" before any
///   code of onlyone runs, and what the parent gave is not kept anywhere (std offers no way to
///   keep it on stable Rust). The job then gets the default action, which most programs expect.
const SIGPIPE_FROM_PARENT: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Stack for the child between clone and execve: a few system calls deep.
const CHILD_STACK: usize = 64 * 1024;

/// The shell that runs a file the kernel cannot execute by itself.
const SH: &std::ffi::CStr = c"/bin/sh";

/// execve(2) errors after which execvp(3) tries the next `PATH` entry.
const NEXT_ON: [c_int; 6] = [
    libc::EACCES,
    libc::ENOENT,
    libc::ENOTDIR,
    libc::ESTALE,
    libc::ENODEV,
    libc::ETIMEDOUT,
];

/// A job ready to start: every string and pointer array built before the clone, so that the
/// child allocates nothing.
pub struct Job {
    /// Paths to try, in order (one if COMMAND contains a `/`, else one per `PATH` entry).
    candidates: Vec<CString>,
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    /// Owns the strings `envp_ptrs` points into.
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
}

impl Job {
    /// `argv[0]` is looked up in `PATH` (from `env`) unless it contains a `/`.
    pub fn new(argv: &[OsString], env: Vec<(OsString, OsString)>) -> io::Result<Job> {
        let argv: Vec<CString> = argv.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_bytes().to_vec());
        let envp: Vec<CString> = env
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).map_err(|_| invalid("an environment variable contains NUL"))
            })
            .collect::<Result<_, _>>()?;
        let program = argv[0].as_bytes();
        let candidates = if program.contains(&b'/') {
            vec![argv[0].clone()]
        } else {
            // execvp(3): an empty entry means the current directory; no PATH means the default.
            let path = path_var.unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
            path.split(|&b| b == b':')
                .map(|dir| {
                    let mut p = if dir.is_empty() {
                        b".".to_vec()
                    } else {
                        dir.to_vec()
                    };
                    p.push(b'/');
                    p.extend_from_slice(program);
                    CString::new(p).map_err(|_| invalid("PATH contains NUL"))
                })
                .collect::<Result<_, _>>()?
        };
        let argv_ptrs = null_terminated(&argv);
        let envp_ptrs = null_terminated(&envp);
        Ok(Job {
            candidates,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
        })
    }

    /// Starts the job as a child of `parent` (this process) that gets SIGKILL when `parent` dies,
    /// with signal mask `mask`. Returns once the child has called execve(2) successfully, or the
    /// error of the last execve(2) (ENOENT when no candidate exists, EACCES when one was found
    /// but was not executable), as execvp(3) reports it.
    #[allow(unsafe_code)]
    pub fn spawn(&self, parent: Pid, mask: SigSet) -> io::Result<Pid> {
        let error = AtomicI32::new(0);
        let mut stack = vec![0u8; CHILD_STACK];
        let parent_raw = parent.as_raw();
        let mask_ptr: *const libc::sigset_t = mask.as_ref();
        // For ENOEXEC: `/bin/sh PATH ARGS...`, the PATH slot filled in by the child.
        let mut sh_argv: Vec<*const c_char> = Vec::with_capacity(self.argv_ptrs.len() + 1);
        sh_argv.push(SH.as_ptr());
        sh_argv.push(std::ptr::null());
        sh_argv.extend_from_slice(&self.argv_ptrs[1..]);
        let mut child = || -> c_int {
            // SAFETY: this closure runs in the child created by clone(CLONE_VM | CLONE_VFORK)
            // below, on its own stack, while onlyone's only thread is suspended until the child
            // calls execve or exits. It calls only async-signal-safe system call wrappers
            // (prctl, getppid, signal, sigprocmask, execve, _exit), allocates nothing (every
            // string and pointer array was built by `Job::new` or above, `mask` is copied before
            // the clone), takes no lock, and writes to shared memory only the atomic `error` and
            // the reserved slot of `sh_argv`, which the parent reads or drops after it resumes. errno is written through the parent's
            // thread-local storage, which the suspended parent does not read until it resumes.
            unsafe {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    error.store(Errno::last_raw(), Ordering::Relaxed);
                    libc::_exit(127);
                }
                if libc::getppid() != parent_raw {
                    // onlyone died before the request took effect: nobody holds the lock for us.
                    libc::_exit(127);
                }
                if !SIGPIPE_FROM_PARENT {
                    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                }
                libc::sigprocmask(libc::SIG_SETMASK, mask_ptr, std::ptr::null_mut());
                // As execvp(3): look further along PATH after these errors; report EACCES if
                // any candidate gave it, else the last error.
                let mut result = libc::ENOENT;
                let mut saw_eacces = false;
                for path in &self.candidates {
                    libc::execve(
                        path.as_ptr(),
                        self.argv_ptrs.as_ptr(),
                        self.envp_ptrs.as_ptr(),
                    );
                    result = Errno::last_raw();
                    if result == libc::ENOEXEC {
                        sh_argv[1] = path.as_ptr();
                        libc::execve(SH.as_ptr(), sh_argv.as_ptr(), self.envp_ptrs.as_ptr());
                        break;
                    }
                    match result {
                        libc::EACCES => saw_eacces = true,
                        e if NEXT_ON.contains(&e) => {}
                        _ => break,
                    }
                }
                if saw_eacces && NEXT_ON.contains(&result) {
                    result = libc::EACCES;
                }
                error.store(result.max(1), Ordering::Relaxed);
                libc::_exit(127)
            }
        };
        extern "C" fn trampoline<F: FnMut() -> c_int>(data: *mut c_void) -> c_int {
            // SAFETY: `data` is the `&mut F` passed to clone below, alive until the parent resumes.
            let f = unsafe { &mut *(data as *mut F) };
            f()
        }
        fn trampoline_of<F: FnMut() -> c_int>(_: &F) -> extern "C" fn(*mut c_void) -> c_int {
            trampoline::<F>
        }
        let entry = trampoline_of(&child);
        // The stack grows down on every Linux architecture Rust supports: pass its top, 16-byte
        // aligned as the ABIs require.
        let top = stack.as_mut_ptr_range().end;
        let top = top.wrapping_sub(top as usize % 16) as *mut c_void;
        // SAFETY: clone(2) with CLONE_VM | CLONE_VFORK is how glibc's posix_spawn starts a child:
        // the child runs `child` (see its SAFETY note) on `stack`, which outlives it because this
        // thread is suspended until the child has called execve or _exit. SIGCHLD is reported to
        // onlyone when the job exits, as for any child.
        let pid = unsafe {
            libc::clone(
                entry,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&mut child as *mut _) as *mut c_void,
            )
        };
        drop(stack);
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        let pid = Pid::from_raw(pid);
        match error.load(Ordering::Relaxed) {
            0 => Ok(pid),
            e => {
                // The child has exited: reap it.
                let _ = nix::sys::wait::waitpid(pid, None);
                Err(io::Error::from_raw_os_error(e))
            }
        }
    }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| invalid("an argument contains NUL"))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Sets SIGCHLD to its default action. A parent that ignores SIGCHLD (SIG_IGN survives execve)
/// would make the kernel reap the job by itself, and its exit status would be lost.
#[allow(unsafe_code)]
pub fn default_sigchld() -> Result<(), Errno> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, sigaction};
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL installs no handler, so no code of ours can run in a signal context; the
    // previous action is dropped without being used.
    unsafe { sigaction(Signal::SIGCHLD, &action) }.map(drop)
}
