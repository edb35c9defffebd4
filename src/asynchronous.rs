//! Waiting for a lock on a tokio runtime (feature `tokio`).
//!
//! The wait queues like the blocking one (on Linux and Android, behind the waiter ahead of it in
//! the line of waiters, see [`Lock::acquire_timeout`]) and registers what it sleeps on with the
//! runtime's reactor — the connection to the waiter ahead, or at the head the connection to the
//! holder's socket, the inotify watch on the lock file, the holder's pidfd — so no worker thread
//! ever blocks: each try is a handful of non-blocking system calls, and between
//! tries the task sleeps until the kernel reports the release. No blocking pool is used by the
//! local backends (a flock head whose user has no inotify instance left waits through a thread of
//! the library's own, blocked in `flock(2)`). (A backend without wake-up descriptors, such as one that only implements
//! `try_acquire`, is retried with a backoff of 1 ms doubling to 50 ms.)
//!
//! Dropping the future (a `tokio::time::timeout`, a `select!` that went the other way) closes its
//! descriptors and leaves nothing behind: the lock was not taken, or its guard is dropped with the
//! future's output.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), onlyone::Error> {
//! use std::time::Duration;
//! use onlyone::{Acquire, Builder};
//!
//! # let dir = tempfile::tempdir().unwrap(); // lock files of this test (flock, pidfile) go there
//! let lock = Builder::new("nightly-report")
//! #   .lock_dir(dir.path())
//!     .build()?;
//! match onlyone::asynchronous::acquire(&*lock, Some(Duration::from_secs(30))).await? {
//!     Acquire::Acquired(guard) => { /* the work */ drop(guard) }
//!     Acquire::Held(holder) => eprintln!("still running after 30 s: {holder}"),
//! }
//! # Ok(()) }
//! ```

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use std::os::fd::BorrowedFd;

use crate::backend::{Line, Pacing, Sleep};
use crate::error::{Error, ErrorKind};
use crate::lock::{Acquire, Attempt, Lock, WakeSource};

/// Takes `lock`, waiting up to `timeout` (`None`: no limit; zero: one try) without blocking the
/// runtime. The async twin of [`Lock::acquire_timeout`]; on timeout the result is
/// [`Acquire::Held`] with the current holder.
///
/// Must be called within a tokio runtime with IO and time drivers enabled.
pub async fn acquire<L: Lock + ?Sized>(
    lock: &L,
    timeout: Option<Duration>,
) -> Result<Acquire, Error> {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    let register_error = |e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot register the wait for {}", lock.resource()),
            e,
        )
    };
    let mut line = match lock.try_acquire()? {
        Acquire::Acquired(g) => return Ok(Acquire::Acquired(g)),
        Acquire::Held(h) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => {
            return Ok(Acquire::Held(h));
        }
        Acquire::Held(_) => Line::join(lock),
    };
    let mut pacing = Pacing::default();
    loop {
        if let Some(pred) = line.predecessor() {
            // Someone is ahead in the line of waiters: sleep until it leaves it.
            let fd = register_borrowed(pred).map_err(register_error)?;
            let ready = fd.readable();
            let woke = match deadline {
                Some(t) => tokio::time::timeout_at(Instant::from_std(t), ready)
                    .await
                    .is_ok(),
                None => {
                    let _ = ready.await;
                    true
                }
            };
            drop(fd);
            if !woke {
                return line.last_try(lock);
            }
            line.predecessor_left();
            pacing = Pacing::default();
            continue;
        }
        let (holder, wake) = match lock.attempt()? {
            Attempt::Acquired(g) => return Ok(Acquire::Acquired(line.keep(g))),
            Attempt::Held(h, w) => (h, w),
        };
        if line.rescan() {
            // The waiter ahead left without the lock coming our way: queue behind the next one.
            continue;
        }
        let Some(sleep) = pacing.next(&wake, deadline, std::time::Instant::now()) else {
            return Ok(Acquire::Held(holder));
        };
        let Sleep::Until(until) = sleep else {
            continue;
        };
        let fds = wake
            .into_sources()
            .into_iter()
            .map(register)
            .collect::<std::io::Result<Vec<AsyncFd<WakeSource>>>>()
            .map_err(register_error)?;
        let any_ready = poll_fn(|cx| {
            // Every descriptor must be polled so that each registers this task for wake-up.
            let mut ready = false;
            for fd in &fds {
                ready |= fd.poll_read_ready(cx).is_ready();
            }
            if ready {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        match until {
            Some(t) => {
                let _ = tokio::time::timeout_at(Instant::from_std(t), any_ready).await;
            }
            None => any_ready.await,
        }
    }
}

/// Registers a descriptor with the runtime's reactor.
#[allow(unsafe_code)]
fn register(fd: WakeSource) -> std::io::Result<AsyncFd<WakeSource>> {
    // SAFETY: the `AsyncFd` owns the `WakeSource`, which owns its descriptor and keeps it open and
    // referring to the same open file description until it is dropped, after the `AsyncFd`
    // deregistered it; `as_raw_fd` always returns that descriptor.
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}

/// Registers a borrowed descriptor with the runtime's reactor, for as long as the borrow.
#[allow(unsafe_code)]
fn register_borrowed(fd: BorrowedFd<'_>) -> std::io::Result<AsyncFd<BorrowedFd<'_>>> {
    // SAFETY: the borrow keeps the descriptor open, referring to the same open file description,
    // for the whole life of the `AsyncFd`, which deregisters it when dropped.
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}
