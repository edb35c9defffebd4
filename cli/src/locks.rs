//! Building the lock a subcommand names, with errors a command-line user can act on.

use std::io;
use std::path::Path;

use onlyone::{BackendKind, Builder, DEFAULT_BACKEND, Lock};

use crate::cli::LockArgs;
use crate::exit::{self, Failure};

/// The lock `name` with the backend, scope and directory of `args`.
pub fn build(name: &str, args: &LockArgs) -> Result<Box<dyn Lock>, Failure> {
    let backend = args.backend.unwrap_or(DEFAULT_BACKEND);
    if backend == BackendKind::Postgres {
        if !backend.is_available() {
            return Err(Failure::new(
                exit::UNAVAILABLE,
                "backend postgres is not available in this build of onlyone (cargo feature `postgres`)",
            ));
        }
        if args.database_url.is_none()
            && std::env::var_os("DATABASE_URL").is_none()
            && !postgres_env_names_a_server()
        {
            return Err(Failure::new(
                exit::USAGE,
                "backend postgres needs a server: give --database-url URL, or set DATABASE_URL, \
                 or libpq's PGHOST/PGDATABASE/PGPORT/PGSERVICE",
            ));
        }
    }
    let mut builder = Builder::new(name).backend(backend).scope(args.scope);
    if let Some(dir) = &args.lock_dir {
        if matches!(backend, BackendKind::Flock | BackendKind::PidFile) {
            check_lock_dir(dir)?;
        }
        builder = builder.lock_dir(dir);
    }
    if let Some(url) = &args.database_url {
        builder = builder.database_url(&url.0);
    }
    #[cfg(feature = "postgres")]
    if backend == BackendKind::Postgres {
        return Ok(Box::new(postgres(name, args, true)?));
    }
    Ok(builder.build()?)
}

/// The PostgreSQL lock `name` of `args` (`--database-url`, else `DATABASE_URL`, else libpq's
/// variables); with `warn`, the warnings of its configuration (an ignored password file) go to
/// stderr, as libpq prints them.
#[cfg(feature = "postgres")]
pub fn postgres(name: &str, args: &LockArgs, warn: bool) -> Result<onlyone::PostgresLock, Failure> {
    let name = onlyone::LockName::new(name)?;
    let lock = match &args.database_url {
        Some(url) => onlyone::PostgresLock::new(name, &url.0)?,
        None => onlyone::PostgresLock::from_env(name)?,
    };
    for warning in lock.warnings().iter().filter(|_| warn) {
        say!("onlyone: warning: {warning}");
    }
    Ok(lock)
}

#[cfg(feature = "postgres")]
fn postgres_env_names_a_server() -> bool {
    onlyone::backend::postgres::env_names_a_server()
}

#[cfg(not(feature = "postgres"))]
fn postgres_env_names_a_server() -> bool {
    false
}

/// A `--lock-dir` the user gave must be a directory where lock files can live. Checked before
/// `run` creates a file there, and before `status` and `list` read it: a missing directory holds
/// no lock, and reading it as "free" would hide the typo. onlyone never creates such a directory
/// (only its default one).
pub fn check_lock_dir(dir: &Path) -> Result<(), Failure> {
    let shown = dir.display();
    let meta = std::fs::metadata(dir).map_err(|e| {
        let code = match e.kind() {
            io::ErrorKind::NotFound => exit::NOINPUT,
            io::ErrorKind::PermissionDenied => exit::NOPERM,
            _ => exit::CANTCREAT,
        };
        if e.kind() == io::ErrorKind::NotFound {
            Failure::new(code, format!("lock directory {shown} does not exist"))
        } else {
            Failure::new(code, format!("lock directory {shown}: {e}"))
        }
    })?;
    if !meta.is_dir() {
        return Err(Failure::new(
            exit::CANTCREAT,
            format!("lock directory {shown} is not a directory"),
        ));
    }
    if let Some(fs) = kernel_file_system(dir) {
        return Err(Failure::new(
            exit::CANTCREAT,
            format!(
                "lock directory {shown} is on a {fs} file system, a kernel interface where no \
                 file can be created; give a directory on a disk or a tmpfs (such as /run/lock), \
                 or leave out --lock-dir for the default"
            ),
        ));
    }
    Ok(())
}

/// The name of the kernel file system `dir` is on (proc, sysfs, cgroup ...), where no regular
/// file can be created, whatever the permissions say (`open(O_CREAT)` fails with ENOENT, EACCES
/// or EPERM even for root); `None` for storage and for anything statfs(2) cannot tell.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_file_system(dir: &Path) -> Option<&'static str> {
    use nix::sys::statfs::*;
    let kind = statfs(dir).ok()?.filesystem_type();
    let known = [
        (PROC_SUPER_MAGIC, "proc"),
        (SYSFS_MAGIC, "sysfs"),
        (CGROUP_SUPER_MAGIC, "cgroup"),
        (CGROUP2_SUPER_MAGIC, "cgroup2"),
        (DEBUGFS_MAGIC, "debugfs"),
        (TRACEFS_MAGIC, "tracefs"),
        (SECURITYFS_MAGIC, "securityfs"),
        (DEVPTS_SUPER_MAGIC, "devpts"),
        (BPF_FS_MAGIC, "bpf"),
        (SELINUX_MAGIC, "selinuxfs"),
        (SMACK_MAGIC, "smackfs"),
        (NSFS_MAGIC, "nsfs"),
        (RDTGROUP_SUPER_MAGIC, "resctrl"),
    ];
    known
        .iter()
        .find(|(magic, _)| *magic == kind)
        .map(|(_, name)| *name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn kernel_file_system(_dir: &Path) -> Option<&'static str> {
    None
}
