// README.md, with its relative image drawn inline and its relative links made plain text, so the
// crate documentation renders on docs.rs (build.rs).
#![doc = include_str!(concat!(env!("OUT_DIR"), "/crate-doc.md"))]
// docs.rs builds with `--cfg docsrs` on nightly: badges naming the feature each item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The exceptions: registering an owned descriptor with tokio (src/asynchronous.rs), and the OS
// files that call FFI where no safe wrapper exists (src/os/{macos,freebsd,netbsd,illumos}.rs), and
// on Windows the OS file and its mutex part, which call the Win32 API through `windows-sys`
// (src/os/windows.rs, src/os/windows/mutex.rs; the named-mutex backend itself has no `unsafe`),
// and the handoff's named pipe (src/handoff/windows.rs).
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::all)]

#[cfg(all(feature = "tokio", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod asynchronous;
// The async wait registers the wake-up descriptors with tokio's reactor (`tokio::io::unix::AsyncFd`).
// Windows has no counterpart for waitable handles in tokio (its reactor is an I/O completion port,
// which cannot wait on a mutex or a process handle), and the named-mutex wait blocks a thread of
// its own in WaitForSingleObject: call `Lock::acquire_timeout` from `tokio::task::spawn_blocking`.
#[cfg(all(feature = "tokio", windows))]
compile_error!(
    "onlyone: the `tokio` feature is Unix only: tokio cannot wait on Windows mutex or process \
     handles; on Windows call `Lock::acquire_timeout` inside `tokio::task::spawn_blocking`"
);
pub mod backend;
mod error;
#[cfg(any(unix, windows))]
pub mod handoff;
mod lock;
pub mod name;
/// The former name of [`os`], kept so that code written against 0.1 still compiles.
pub use os as process;
pub mod os;
#[cfg(unix)]
mod queue;
pub mod record;

pub use backend::{Builder, DEFAULT_BACKEND};
pub use error::{Error, ErrorKind};
pub use lock::{
    Acquire, Attempt, BackendKind, Guard, HeldLock, Holder, HolderKind, HolderProcess, LazyHolder,
    Lock, WakeSource, WakeUp, format_utc, format_utc_rfc3339,
};
pub use name::{LockName, Scope};

#[cfg(all(
    feature = "abstract-socket",
    any(target_os = "linux", target_os = "android")
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "abstract-socket",
        any(target_os = "linux", target_os = "android")
    )))
)]
pub use backend::abstract_socket::AbstractSocketLock;
#[cfg(feature = "flock")]
#[cfg_attr(docsrs, doc(cfg(feature = "flock")))]
pub use backend::flock::FlockLock;
#[cfg(all(feature = "named-mutex", windows))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "named-mutex", windows))))]
pub use backend::named_mutex::NamedMutexLock;
#[cfg(feature = "pidfile")]
#[cfg_attr(docsrs, doc(cfg(feature = "pidfile")))]
pub use backend::pidfile::PidFileLock;
#[cfg(all(feature = "postgres", unix))]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use backend::postgres::{PostgresLock, SslMode};
