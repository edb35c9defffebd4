//! kqueue(2) waits for macOS, FreeBSD and NetBSD: `EVFILT_PROC`/`NOTE_EXIT` for a process's exit,
//! `EVFILT_VNODE` for a lock file's release. A kqueue descriptor is readable (poll(2)) while an
//! event is pending, so it serves as a wake-up source like a pidfd or an inotify instance.

use nix::errno::Errno;
use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};

/// A kqueue that reports `pid`'s exit, provided `pid` is still the process that started at
/// `start` once registered (the registration follows that very process).
#[cfg(any(feature = "flock", feature = "pidfile"))]
#[allow(dead_code)] // the portable build backs off instead
pub(crate) fn watch_process(pid: u32, start: Option<u64>) -> super::ProcessWatch {
    use super::ProcessWatch;
    let Ok(kq) = Kqueue::new() else {
        return ProcessWatch::Unsupported;
    };
    let exit = KEvent::new(
        pid as usize,
        EventFilter::EVFILT_PROC,
        EvFlags::EV_ADD | EvFlags::EV_ONESHOT,
        FilterFlag::NOTE_EXIT,
        0,
        0,
    );
    let zero = libc_timespec_zero();
    match kq.kevent(&[exit], &mut [], Some(zero)) {
        Ok(_) if super::is_same_process(pid, start) => ProcessWatch::Fd(Box::new(kq)),
        Ok(_) | Err(Errno::ESRCH) => ProcessWatch::Gone,
        Err(_) => ProcessWatch::Unsupported,
    }
}

/// A kqueue that reports a change of `path`'s attributes (a flock holder touches its file after
/// unlocking; an unlink changes the link count), its deletion or rename. `None` when the file
/// cannot be opened or watched.
#[cfg(any(feature = "flock", feature = "pidfile"))]
#[allow(dead_code)] // the portable build backs off instead
pub(crate) fn watch_file(path: &std::path::Path) -> Option<FileWatch> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;

    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let file = std::fs::File::from(open(path, flags, Mode::empty()).ok()?);
    let kq = Kqueue::new().ok()?;
    let change = KEvent::new(
        file.as_raw_fd() as usize,
        EventFilter::EVFILT_VNODE,
        EvFlags::EV_ADD | EvFlags::EV_CLEAR,
        FilterFlag::NOTE_ATTRIB
            | FilterFlag::NOTE_DELETE
            | FilterFlag::NOTE_RENAME
            | FilterFlag::NOTE_LINK,
        0,
        0,
    );
    kq.kevent(&[change], &mut [], Some(libc_timespec_zero()))
        .ok()?;
    Some(FileWatch { kq, _file: file })
}

/// A kqueue watching one open file.
#[cfg(any(feature = "flock", feature = "pidfile"))]
pub(crate) struct FileWatch {
    kq: Kqueue,
    /// The watch lasts as long as the descriptor it was registered on.
    _file: std::fs::File,
}

#[cfg(any(feature = "flock", feature = "pidfile"))]
impl std::os::fd::AsFd for FileWatch {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.kq.as_fd()
    }
}

/// A zero timeout: `kevent` applies the changes and returns at once.
fn libc_timespec_zero() -> nix::libc::timespec {
    nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }
}
