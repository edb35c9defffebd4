// README.md, with its relative image drawn inline and its relative links made plain text, so the
// crate documentation renders on docs.rs (build.rs).
#![doc = include_str!(concat!(env!("OUT_DIR"), "/crate-doc.md"))]
// docs.rs builds with `--cfg docsrs` on nightly: badges naming the feature each item needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The exceptions: registering an owned descriptor with tokio (src/asynchronous.rs), and the OS
// files that call FFI where no safe wrapper exists (src/os/{macos,freebsd,netbsd,illumos}.rs).
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::all)]

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod asynchronous;
pub mod backend;
mod error;
#[cfg(unix)]
pub mod handoff;
mod lock;
pub mod name;
/// The former name of [`os`], kept so that code written against 0.1 still compiles.
pub use os as process;
pub mod os;
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
#[cfg(feature = "pidfile")]
#[cfg_attr(docsrs, doc(cfg(feature = "pidfile")))]
pub use backend::pidfile::PidFileLock;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use backend::postgres::{PostgresLock, SslMode};
